"""nft JSON expressions and statements (`nft -j list ruleset`) printed as `nft list ruleset` prints them, for the
statements kube-proxy (and most firewalls) write; the JSON parser in `kpdoctor.dataplane.nft` keeps rules as
this text so both dump formats give the same model.
"""

from __future__ import annotations

import json
from typing import Any

# ---------------------------------------------------------------------------------------------
# JSON -> text for the expressions kube-proxy (and most firewalls) write

_UNQUALIFIED_META = frozenset(
    {"iif", "oif", "iifname", "oifname", "iiftype", "oiftype", "skuid", "skgid", "nftrace", "rtclassid",
     "ibrname", "obrname", "pkttype", "cpu", "iifgroup", "oifgroup", "cgroup"}
)
_QUOTED_META = frozenset({"iifname", "oifname", "ibrname", "obrname"})
_BINOPS = ("&", "|", "^", "<<", ">>")


class NftPrinter:
    """Prints JSON expressions the way `nft list ruleset` does (the subset in practical use)."""

    def __init__(self, family: str) -> None:
        self.family = family

    def expr(self, e: Any, ctx: str = "") -> str:
        if type(e) is str:
            return f'"{e}"' if ctx == "quoted" else e
        if isinstance(e, bool):
            return "true" if e else "false"
        if isinstance(e, int):
            return f"0x{e:08x}" if ctx == "mark" else str(e)
        if isinstance(e, str):
            return f'"{e}"' if ctx == "quoted" else e
        if isinstance(e, list):
            return ",".join(self.expr(x, ctx) for x in e)
        if not isinstance(e, dict) or len(e) != 1:
            raise TypeError(f"unexpected expression {e!r}")
        (k, v), = e.items()
        if k == "payload":
            if "base" in v:
                return f"@{v['base']},{v['offset']},{v['len']}"
            return f"{v['protocol']} {v['field']}"
        if k == "meta":
            key = v["key"]
            return key if key in _UNQUALIFIED_META else f"meta {key}"
        if k == "ct":
            parts = ["ct"]
            if "dir" in v:
                parts.append(v["dir"])
            if "family" in v:
                parts.append(v["family"])
            parts.append(v["key"])
            return " ".join(parts)
        if k == "fib":
            flags = v.get("flags", [])
            flags = [flags] if isinstance(flags, str) else flags
            return "fib " + " . ".join(flags) + f" {v['result']}"
        if k == "concat":
            if not ctx:
                return " . ".join(x if type(x) is str else str(x) if type(x) is int else self.expr(x) for x in v)
            return " . ".join(self.expr(x, ctx) for x in v)
        if k == "prefix":
            return f"{self.expr(v['addr'])}/{v['len']}"
        if k == "range":
            return f"{self.expr(v[0], ctx)}-{self.expr(v[1], ctx)}"
        if k == "set":
            if isinstance(v, list):
                return "{ " + ", ".join(self._set_item(x, ctx) for x in v) + " }"
            return self.expr(v, ctx)
        if k in _BINOPS:
            left, right = v
            lctx = "mark" if self._is_mark(left) else ctx
            return f"{self.expr(left, lctx)} {k} {self.expr(right, lctx)}"
        if k == "numgen":
            off = f" offset {v['offset']}" if v.get("offset") else ""
            return f"numgen {v['mode']} mod {v['mod']}{off}"
        if k in ("jhash", "symhash"):
            inner = f" {self.expr(v['expr'])}" if "expr" in v else ""
            return f"{k}{inner} mod {v['mod']}" + (f" seed 0x{v['seed']:x}" if "seed" in v else "")
        if k == "map":
            return f"{self.expr(v['key'])} map {self._data(v['data'])}"
        if k == "elem":
            return self.expr(v["val"], ctx)
        if k in ("tcp option", "exthdr", "rt", "socket", "osf", "ipsec", "hash"):
            return f"{k} " + json.dumps(v, sort_keys=True)
        raise TypeError(f"unknown expression {k!r}")

    @staticmethod
    def _is_mark(e: Any) -> bool:
        return isinstance(e, dict) and e.get("meta", {}).get("key") == "mark" if isinstance(e, dict) else False

    def _set_item(self, x: Any, ctx: str) -> str:
        if type(x) is list and len(x) == 2:
            k, d = x
            key = str(k) if type(k) is int and not ctx else self.expr(k, ctx)
            return f"{key} : {self.verdict_or_expr(d)}"
        return self.expr(x, ctx)

    def _data(self, d: Any) -> str:
        if isinstance(d, str):
            return d
        if isinstance(d, dict) and "set" in d and isinstance(d["set"], list):
            # `_set_item(x, "")` inlined: numgen maps have one item per endpoint (100,000s at scale)
            verdict_or_expr, expr = self.verdict_or_expr, self.expr
            items = []
            for x in d["set"]:
                if type(x) is list and len(x) == 2:
                    k, dv = x
                    if type(k) is int and type(dv) is dict and len(dv) == 1:
                        c = dv.get("concat")  # `0 : 10.1.2.3 . 8080`, verdict_or_expr's concat case
                        if type(c) is list and len(c) == 2 and type(c[0]) is str and type(c[1]) is int:
                            items.append(f"{k} : {c[0]} . {c[1]}")
                            continue
                    items.append(f"{str(k) if type(k) is int else expr(k, '')} : {verdict_or_expr(dv)}")
                else:
                    items.append(expr(x, ""))
            return "{ " + ", ".join(items) + " }"
        return self.expr(d)

    def verdict_or_expr(self, x: Any) -> str:
        if type(x) is dict and len(x) == 1:
            (k, v), = x.items()
            if k == "goto" or k == "jump":
                return f"{k} {v['target']}"
            if k in ("accept", "drop", "continue", "return"):
                return k
            if k == "concat" and type(v) is list:  # `ip . port` data of kube-proxy's numgen DNAT maps
                if len(v) == 2 and type(v[0]) is str and type(v[1]) is int:
                    return f"{v[0]} . {v[1]}"
                return " . ".join([y if type(y) is str else str(y) if type(y) is int else self.expr(y) for y in v])
        return self.expr(x)

    def match(self, v: dict[str, Any]) -> str:
        left, right, op = v["left"], v["right"], v.get("op", "==")
        if type(left) is dict and len(left) == 1:
            # Fast path for a single-key left side (nearly every match): the same text as the
            # general path below, without re-deriving the context from the left side three times.
            (lk, lv), = left.items()
            if lk == "meta":
                key = lv.get("key") if type(lv) is dict else None
                if type(key) is not str:
                    return self._match(left, right, op)
                ctx = "quoted" if key in _QUOTED_META else "mark" if key == "mark" else ""
                lt = key if key in _UNQUALIFIED_META else f"meta {key}"
            elif lk == "&":
                return self._match(left, right, op)
            else:
                ctx = ""
                if lk == "payload" and type(lv) is dict and "base" not in lv:
                    lt = f"{lv['protocol']} {lv['field']}"
                else:
                    lt = self.expr(left, ctx)
            tr = type(right)
            if tr is str:
                rt = f'"{right}"' if ctx == "quoted" else right
            elif tr is int:
                rt = f"0x{right:08x}" if ctx == "mark" else str(right)
            else:
                rt = self.expr(right, ctx)
            if op == "in" or (op == "==" and lk not in _BINOPS):
                return f"{lt} {rt}"
            return f"{lt} {op} {rt}"
        return self._match(left, right, op)

    def _match(self, left: Any, right: Any, op: Any) -> str:
        ctx = "mark" if self._is_mark(left) or (isinstance(left, dict) and "&" in left and self._is_mark(left["&"][0])) \
            else ""
        if isinstance(left, dict) and "meta" in left and left["meta"].get("key") in _QUOTED_META:
            ctx = "quoted"
        lt, rt = self.expr(left, ctx), self.expr(right, ctx)
        if op == "in" or (op == "==" and not (isinstance(left, dict) and set(left) & set(_BINOPS))):
            return f"{lt} {rt}"
        return f"{lt} {op} {rt}"

    def stmt(self, s: Any) -> str:
        if not isinstance(s, dict) or len(s) != 1:
            raise TypeError(f"unexpected statement {s!r}")
        (k, v), = s.items()
        if k == "match":
            return self.match(v)
        if k in ("jump", "goto"):
            return f"{k} {v['target']}"
        if k in ("accept", "drop", "continue", "return"):
            return k
        if k == "mangle":
            key = v["key"]
            ctx = "mark" if self._is_mark(key) else ""
            return f"{self.expr(key)} set {self.expr(v['value'], ctx)}"
        if k == "masquerade":
            return "masquerade" + self._nat_flags(v)
        if k == "reject":
            if not v:
                return "reject"
            rtype, rexpr = v.get("type"), v.get("expr")
            if rtype == "tcp reset":
                return "reject with tcp reset"
            if rexpr == "port-unreachable" and rtype in ("icmp", "icmpv6", "icmpx", None):
                return "reject"
            return f"reject with {rtype} {rexpr}".strip() if rexpr else f"reject with {rtype}"
        if k in ("dnat", "snat", "redirect"):
            return self._nat(k, v)
        if k == "vmap":
            return f"{self.expr(v['key'])} vmap {self._data(v['data'])}"
        if k == "set":
            return f"{v['op']} {v['set']} {{ {self.expr(v['elem'])} }}"
        if k == "counter":
            if isinstance(v, dict) and "packets" in v:
                return f"counter packets {v['packets']} bytes {v['bytes']}"
            return "counter" if not v else f"counter name {self.expr(v)}"
        if k == "log":
            parts = ["log"]
            if isinstance(v, dict):
                if "prefix" in v:
                    parts.append(f'prefix "{v["prefix"]}"')
                if "level" in v:
                    parts.append(f"level {v['level']}")
            return " ".join(parts)
        if k == "notrack":
            return "notrack"
        if k == "limit":
            return f"limit rate {v.get('rate')}/{v.get('per', 'second')}"
        if k == "xt":
            return f"xt {v.get('type', '')} {v.get('name', '')}".strip()
        return f"{k} " + json.dumps(v, sort_keys=True)

    @staticmethod
    def _nat_flags(v: Any) -> str:
        if not isinstance(v, dict) or "flags" not in v:
            return ""
        flags = v["flags"]
        flags = [flags] if isinstance(flags, str) else flags
        return " " + ",".join(flags)

    def _nat(self, kind: str, v: Any) -> str:
        if not v:
            return kind
        fam = f" {v['family']}" if "family" in v else ""
        addr = v.get("addr")
        port = v.get("port")
        if addr is None and port is not None:
            target = f":{self.expr(port)}"
        elif isinstance(addr, str) and port is not None:
            target = f"[{addr}]:{self.expr(port)}" if ":" in addr else f"{addr}:{self.expr(port)}"
        elif addr is not None:
            target = self.expr(addr)
            if port is not None:
                target += f":{self.expr(port)}"
        else:
            return kind + self._nat_flags(v)
        return f"{kind}{fam} to {target}{self._nat_flags(v)}"

    def rule(self, exprs: list[Any]) -> str:
        stmt = self.stmt
        return " ".join([stmt(s) for s in exprs])


_PRINTERS: dict[str, NftPrinter] = {}


def printer_for(family: str) -> NftPrinter:
    p = _PRINTERS.get(family)
    if p is None:
        p = _PRINTERS[family] = NftPrinter(family)
    return p
