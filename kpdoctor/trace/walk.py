"""The netfilter path of one packet through a node's base chains, hook by hook, whatever wrote them.

Path (netfilter's, for IPv4/IPv6):
- locally generated: output -> routing -> postrouting; when the (possibly DNATed) destination is the node
  itself it then arrives on `lo`: input.
- arriving (from outside or from a pod): prerouting -> routing -> input when the destination is the node's
  own, else forward -> postrouting. Forwarding needs `net.ipv4.ip_forward` (`net.ipv6.conf.all.forwarding`).
At each hook every base chain runs in priority order, whoever wrote it: the iptables tables (priorities raw
-300, mangle -150, nat -100 in prerouting/output and 100 in input/postrouting, filter 0, security 50; from the
iptables dumps) and every nftables table's base chains (kube-proxy's, firewalld's, ... from the nft dump).
An accept ends one base chain, not the hook; a drop or reject ends the packet. nat-type chains see only the
first packet of a connection (ct state new). At equal priority the kernel runs the hook registered LAST first
(`nf_hook_entries_grow` inserts a new hook before the existing ones of the same priority; seen in
`nft monitor trace`, tests/test_trace_nft_monitor.py). nft base chains carry their registration order from the
nft dump (tables and their chains are listed in creation order): later first. iptables' tables have none the
dumps record: they keep their place, first, and the walk says so when it matters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kpdoctor.trace.model import Branch, TooManyBranches

MAX_BRANCHES = 256
# iptables table -> (hook -> priority)
IPT_PRIORITY = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
IPT_HOOKS: dict[str, tuple[str, ...]] = {
    "raw": ("prerouting", "output"),
    "mangle": ("prerouting", "input", "forward", "output", "postrouting"),
    "nat": ("prerouting", "input", "output", "postrouting"),
    "filter": ("input", "forward", "output"),
    "security": ("input", "forward", "output"),
}


def ipt_priority(table: str, hook: str) -> int:
    if table == "nat":
        return -100 if hook in ("prerouting", "output") else 100
    return IPT_PRIORITY[table]


@dataclass
class BaseChain:
    hook: str  # prerouting | input | forward | output | postrouting
    priority: int
    label: str  # "iptables-nft filter FORWARD" / "nft ip kube-proxy filter-forward"
    nat: bool  # a nat-type chain: only the first packet of a connection
    run: Callable[[Branch], list[tuple[Branch, str]]]  # -> [(branch, accept | drop | reject | queue)]
    registered: int = -1  # creation order of an nft base chain (its place in the nft dump); -1: not known


def run_order(c: BaseChain) -> tuple[int, bool, int]:
    """Priority; at equal priority the chains of unknown registration first (as given), then nft base chains
    registered later before earlier ones (the kernel's order)."""
    return c.priority, c.registered >= 0, -c.registered


@dataclass(frozen=True)
class Routing:
    """What routing needs to know: is forwarding on (None: sysctl not collected)."""

    forwarding: bool | None


class PathWalker:
    def __init__(self, chains: list[BaseChain], ctx: object, routing: Routing) -> None:
        self.by_hook: dict[str, list[BaseChain]] = {}
        for c in sorted(chains, key=run_order):  # stable: equal keys keep the given order
            self.by_hook.setdefault(c.hook, []).append(c)
        self.ctx = ctx
        self.routing = routing

    def run(self, packet: object, local_origin: bool) -> list[Branch]:
        """All leaf branches, each with a final `verdict`."""
        start = Branch(packet)  # type: ignore[arg-type]
        done: list[Branch] = []
        for b in self._hook("output" if local_origin else "prerouting", [start]):
            if b.verdict:
                done.append(b)
            else:
                done.extend(self._after_first(b, local_origin))
        return done

    def _after_first(self, b: Branch, local_origin: bool) -> list[Branch]:
        out: list[Branch] = []
        for lb, is_local in self._is_local(b):
            if local_origin:
                leaves = self._hook("postrouting", [lb])
                if is_local:
                    nxt = []
                    for leaf in leaves:
                        if leaf.verdict:
                            out.append(leaf)
                        else:
                            leaf.packet = leaf.packet.evolve(iif="lo")
                            nxt.append(leaf)
                    out.extend(self._after_input(self._hook("input", nxt)))
                else:
                    out.extend(self._finish(leaves, "leaves the node"))
            elif is_local:
                out.extend(self._after_input(self._hook("input", [lb])))
            else:
                fwd = self.routing.forwarding
                if fwd is False:
                    # what-if: would forward let it through were forwarding on? (a second blocker is shown)
                    for w in self._hook("forward", [lb.fork(1.0, None)]):
                        if w.verdict and w.verdict_by is not None and w.verdict_by not in lb.also_blocked_by:
                            lb.also_blocked_by.append(w.verdict_by)
                    key = "net.ipv4.ip_forward" if lb.packet.family == 4 else "net.ipv6.conf.all.forwarding"
                    lb.verdict_by = lb.add("verdict", "routing", f"IP forwarding is off ({key} = 0)", "sysctl.txt",
                                           "drop")
                    lb.verdict = "drop"
                    out.append(lb)
                    continue
                if fwd is None:
                    lb.assumptions += ("IP forwarding assumed on (sysctl.txt not collected)",)
                leaves = self._hook("forward", [lb])
                out.extend(x for x in leaves if x.verdict)
                rest = [x for x in leaves if not x.verdict]
                out.extend(self._finish(self._hook("postrouting", rest), "forwarded out of the node"))
        return out

    def _is_local(self, b: Branch) -> list[tuple[Branch, bool]]:
        local = self.ctx.local.is_local(b.packet.dst)  # type: ignore[attr-defined]
        why = self.ctx.local.why(b.packet.dst) if local is not None else ""  # type: ignore[attr-defined]
        b.add("hook", "routing", f"route lookup for {b.packet.dst}",
              detail={True: "local address of the node", False: "not local: forward",
                      None: "unknown (ip-addr.json not collected): both followed"}[local]
              + (f" ({why})" if why else ""))
        if local is not None:
            return [(b, local)]
        yes = b.fork(1.0, f"{b.packet.dst} is a local address: yes")
        no = b.fork(1.0, f"{b.packet.dst} is a local address: no")
        return [(yes, True), (no, False)]

    def _after_input(self, leaves: list[Branch]) -> list[Branch]:
        """Delivered locally, or (IPVS took it) sent on to the real server: output -> postrouting. Its
        conntrack entry's destination NAT is already set up, so nat-type chains at output do not see it."""
        local = [x for x in leaves if not x.ipvs or x.verdict]
        sent = [x for x in leaves if x.ipvs and not x.verdict]
        out = self._finish(local, "delivered to a local socket on the node")
        if sent:
            after = self._hook("output", sent, skip_nat=True)
            done = [x for x in after if x.verdict]
            out += done + self._finish(self._hook("postrouting", [x for x in after if not x.verdict]),
                                       "sent to the real server by IPVS")
        return out

    @staticmethod
    def _finish(leaves: list[Branch], where: str) -> list[Branch]:
        for leaf in leaves:
            if not leaf.verdict:
                leaf.verdict = "accept"
                leaf.add("verdict", "end", where, detail="accept")
        return leaves

    def _hook(self, hook: str, branches: list[Branch], skip_nat: bool = False) -> list[Branch]:
        """Run every base chain of `hook` over `branches`; a dropped branch gets its verdict set."""
        current = list(branches)
        for chain in self.by_hook.get(hook, ()):
            nxt: list[Branch] = []
            for b in current:
                if b.verdict or (chain.nat and (skip_nat or b.packet.ctstate != "NEW")):
                    nxt.append(b)
                    continue
                b.add("hook", chain.label, f"{hook} hook, priority {chain.priority}: {chain.label}")
                for leaf, verdict in chain.run(b):
                    if verdict != "accept":
                        leaf.verdict = verdict
                    nxt.append(leaf)
            if len(nxt) > MAX_BRANCHES:
                raise TooManyBranches(f"more than {MAX_BRANCHES} branches at {hook}")
            current = nxt
        return current
