"""The netfilter path of one packet through a node's iptables tables (both backends), hook by hook.

Path (netfilter's, for IPv4/IPv6):
- locally generated: OUTPUT (raw, mangle, nat, filter, security) -> routing -> POSTROUTING (mangle, nat);
  when the (possibly DNATed) destination is the node itself it then arrives on `lo`: INPUT.
- arriving (from outside or from a pod): PREROUTING (raw, mangle, nat) -> routing -> INPUT (mangle, filter,
  security, nat) when the destination is the node's own, else FORWARD (mangle, filter, security) ->
  POSTROUTING (mangle, nat). Forwarding needs `net.ipv4.ip_forward` (`net.ipv6.conf.all.forwarding`) = 1.
Within a hook the tables run in hook-priority order (raw -300, mangle -150, nat DNAT -100, filter 0,
security 50, nat SNAT 100). The nat table sees only the first packet of a connection (ct state NEW).
With rules in both backends (iptables-nft and iptables-legacy) both run at each hook; their relative order
at equal priority depends on registration order, which no dump records: nf_tables is walked first and the
report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpdoctor.trace.ipt_eval import IptablesRules, IptablesWalker
from kpdoctor.trace.model import Branch, Packet, TooManyBranches

# hook -> tables in priority order (nat's DNAT half in PREROUTING/OUTPUT, SNAT half in INPUT/POSTROUTING)
HOOK_TABLES: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "security", "nat"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat"),
}
MAX_BRANCHES = 256


@dataclass
class Backend:
    name: str  # "iptables-nft" | "iptables-legacy"
    walker: IptablesWalker


@dataclass(frozen=True)
class Routing:
    """What routing needs to know: is forwarding on (None: sysctl not collected)."""

    forwarding: bool | None


class PathWalker:
    def __init__(self, backends: list[Backend], ctx: object, routing: Routing) -> None:
        self.backends = backends
        self.ctx = ctx
        self.routing = routing

    def run(self, packet: Packet, local_origin: bool) -> list[Branch]:
        """All leaf branches, each with a final `verdict`."""
        start = Branch(packet)
        done: list[Branch] = []
        first = "OUTPUT" if local_origin else "PREROUTING"
        for b in self._hook(first, [start]):
            if b.verdict:
                done.append(b)
                continue
            done.extend(self._after_first(b, local_origin))
        return done

    def _after_first(self, b: Branch, local_origin: bool) -> list[Branch]:
        local = self._is_local(b)
        out: list[Branch] = []
        for lb, is_local in local:
            if local_origin:
                leaves = self._hook("POSTROUTING", [lb])
                if is_local:
                    nxt = []
                    for leaf in leaves:
                        if leaf.verdict:
                            out.append(leaf)
                        else:
                            leaf.packet = leaf.packet.evolve(iif="lo")
                            nxt.append(leaf)
                    out.extend(self._finish(self._hook("INPUT", nxt), "delivered to a local socket on the node"))
                else:
                    out.extend(self._finish(leaves, "leaves the node"))
            elif is_local:
                out.extend(self._finish(self._hook("INPUT", [lb]), "delivered to a local socket on the node"))
            else:
                fwd = self.routing.forwarding
                if fwd is False:
                    # what-if: would FORWARD let it through were forwarding on? (a second blocker is shown)
                    for w in self._hook("FORWARD", [lb.fork(1.0, None)]):
                        if w.verdict and w.verdict_by is not None and w.verdict_by not in lb.also_blocked_by:
                            lb.also_blocked_by.append(w.verdict_by)
                    lb.verdict_by = lb.add("verdict", "routing", "IP forwarding is off (net.ipv4.ip_forward = 0)",
                                           "sysctl.txt", "drop")
                    lb.verdict = "drop"
                    out.append(lb)
                    continue
                if fwd is None:
                    lb.assumptions += ("IP forwarding assumed on (sysctl.txt not collected)",)
                leaves = self._hook("FORWARD", [lb])
                rest = [x for x in leaves if not x.verdict]
                out.extend(x for x in leaves if x.verdict)
                out.extend(self._finish(self._hook("POSTROUTING", rest), "forwarded out of the node"))
        return out

    def _is_local(self, b: Branch) -> list[tuple[Branch, bool]]:
        local = self.ctx.local.is_local(b.packet.dst)  # type: ignore[attr-defined]
        b.add("hook", "routing", f"route lookup for {b.packet.dst}",
              detail={True: "local address of the node", False: "not local: forward",
                      None: "unknown (ip-addr.json not collected): both followed"}[local])
        if local is not None:
            return [(b, local)]
        yes = b.fork(1.0, f"{b.packet.dst} is a local address: yes")
        no = b.fork(1.0, f"{b.packet.dst} is a local address: no")
        return [(yes, True), (no, False)]

    @staticmethod
    def _finish(leaves: list[Branch], where: str) -> list[Branch]:
        for leaf in leaves:
            if not leaf.verdict:
                leaf.verdict = "accept"
                leaf.add("verdict", "end", where, detail="accept")
        return leaves

    def _hook(self, hook: str, branches: list[Branch]) -> list[Branch]:
        """Run every table of `hook` (each backend) over `branches`; a dropped branch gets its verdict set."""
        current = list(branches)
        for table in HOOK_TABLES[hook]:
            if table == "nat":
                current_nat = [b for b in current if b.packet.ctstate == "NEW" and not b.verdict]
                if not current_nat:
                    continue
            for backend in self.backends:
                rules = backend.walker.r
                found = rules.rules(table, hook)
                if found is None or (not found and (rules.policy(table, hook) or "ACCEPT") == "ACCEPT"):
                    continue  # an absent or empty ACCEPT chain decides nothing
                nxt: list[Branch] = []
                for b in current:
                    if b.verdict or (table == "nat" and b.packet.ctstate != "NEW"):
                        nxt.append(b)
                        continue
                    b.add("hook", f"{backend.name} {table} {hook}", f"{hook} hook, {table} table ({backend.name})")
                    for leaf, verdict in backend.walker.run_builtin(table, hook, b):
                        if verdict != "accept":
                            leaf.verdict = verdict
                        nxt.append(leaf)
                if len(nxt) > MAX_BRANCHES:
                    raise TooManyBranches(f"more than {MAX_BRANCHES} branches at {hook}")
                current = nxt
        return current


def make_backends(dumps: list[tuple[str, IptablesRules]], ctx: object) -> list[Backend]:
    return [Backend(name, IptablesWalker(rules, ctx)) for name, rules in dumps]
