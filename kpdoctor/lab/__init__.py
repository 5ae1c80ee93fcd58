"""The lab: real network namespaces acting as a Kubernetes node and its pods, for real-packet tests.

Everything here changes network state, but only inside namespaces it creates itself
(unique `kpd-<random>-*` names, deleted on exit, also on failure):

- `netns`: create/delete namespaces, run commands inside them with timeouts, veths, addresses, routes.
- `topology.Lab`: node + pods + client + dead-end gateway, as a context manager.
- `servers`: name-answering TCP servers in pods (stopped by PID) and bounded connect/timing clients.
- `cluster` / `rules`: Kubernetes objects for the lab's addresses and the reference proxier's rules for them.
- `apply`: load rules (iptables-nft/legacy-restore after creating kube-proxy's nfacct counters, or nft -f)
  and `dump_ruleset(netns)` (both iptables backends and families, nft, nfacct) for before/after comparisons.
- `scenario.load_services(lab, services, mode=, backend=)`: render + load in one call.
- `faults`: break a lab node the way real nodes break.
- `bench`: the per-new-connection cost measurement behind `kpdoctor lab bench`.
"""
