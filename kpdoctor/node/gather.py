"""Run the fixed fact list over one transport, within one node deadline, and turn results into Facts.

Two phases: phase 1 reads the cheap facts (tool presence, kernel, proc files)
that decide what phase 2 may safely run (which iptables tables may be read per
table, whether IPVS is loaded, which nft tables exist). Within a phase facts
are read concurrently over the same connection, because a node's wall time is
what the fan-out waits for. Every failure becomes a Fact with an error; only
losing the connection itself is a node-level error.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kpdoctor.node import collectors as C
from kpdoctor.node.cut_dump import ends_mid_table, read_again
from kpdoctor.node.run_fact import decode, exit_reason, missing, to_fact
from kpdoctor.node.state import IPTABLES_V4_DUMPS, Fact
from kpdoctor.node.transport import NOT_FOUND, BatchItem, CancelToken, RunResult, Transport

_TABLE_NAME = re.compile(r"^[a-z_]{1,32}$")
_NFT_TABLE_LINE = re.compile(r"^table (\S+) (\S+) \{$")
_MIN_SLICE = 0.05


class Budget:
    """The node's deadline and cancel flag, shared by every fact of that node."""

    def __init__(self, deadline: float, cancel: CancelToken | None) -> None:
        self.deadline = deadline
        self.cancel = cancel

    def timeout(self, wanted: float) -> float | None:
        """The time a command may take, or None when it must not start (deadline passed or Ctrl-C)."""
        if self.cancel is not None and self.cancel.cancelled:
            return None
        left = self.deadline - time.monotonic()
        return None if left < _MIN_SLICE else min(wanted, left)

    def why_not(self) -> str:
        if self.cancel is not None and self.cancel.cancelled:
            return "interrupted (Ctrl-C) before it ran"
        return "skipped: the node's --timeout was reached"


class Gatherer:
    def __init__(
        self,
        transport: Transport,
        plan: C.CollectPlan,
        budget: Budget,
        *,
        workers: int = 4,
        legacy_reader: Callable[[Sequence[str]], str] | None = None,
    ) -> None:
        self.t = transport
        self.plan = plan
        self.budget = budget
        self.workers = workers
        self.legacy_reader = legacy_reader
        self.tools: set[str] = set()
        self.facts: dict[str, Fact] = {}
        self._rule_counts: dict[tuple[str, str], int] = {}

    # ---- primitives ------------------------------------------------------------------
    def _run(self, argv: Sequence[str], timeout: float, max_bytes: int) -> RunResult | None:
        slot = self.budget.timeout(timeout)
        if slot is None:
            return None
        return self.t.run(argv, timeout=slot, max_bytes=max_bytes)

    def spec_fact(self, spec: C.FactSpec) -> Fact:
        if spec.kind == "file":
            slot = self.budget.timeout(spec.timeout)
            if slot is None:
                return missing(spec.key, spec.path, self.budget.why_not())
            return to_fact(spec.key, spec.path, self.t.read_file(spec.path, timeout=slot, max_bytes=spec.max_bytes))
        if spec.tool not in self.tools:
            return missing(spec.key, spec.source, f"{spec.tool} not installed")
        res = self._run(spec.argv, spec.timeout, spec.max_bytes)
        if res is None:
            return missing(spec.key, spec.source, self.budget.why_not())
        return self.spec_result(spec, res)

    def spec_result(self, spec: C.FactSpec, res: RunResult) -> Fact:
        """The Fact of a spec from its RunResult (single or batched); a failed iptables dump is re-read per table."""
        fact = to_fact(spec.key, spec.source, res)
        if not fact.present and spec.per_table and res.exit_code != NOT_FOUND and not res.truncated:
            return self._per_table(spec, fact)
        if fact.content is not None and spec.per_table and not res.truncated and ends_mid_table(fact.content):
            return read_again(spec, fact, self._run)
        return fact

    def _loaded_tables(self, key: str) -> list[str]:
        text = self.facts.get(key)
        if text is None or text.content is None:
            return []
        return [t for t in text.content.split() if _TABLE_NAME.match(t)]

    def _per_table(self, spec: C.FactSpec, failed: Fact) -> Fact:
        """A full save failed (segfault, timeout): read table by table, but never create a legacy table."""
        default_nft = "nf_tables" in (self.facts.get("iptables-version.txt") or missing("", "", "")).content_or("")
        if spec.per_table == "nft" or (spec.per_table.startswith("default") and default_nft):
            tables = list(C.IPTABLES_TABLES)
        elif spec.per_table in ("legacy4", "default4"):
            tables = self._loaded_tables("ip_tables_names.txt")
        else:
            tables = self._loaded_tables("ip6_tables_names.txt")
        if not tables:
            return failed
        parts: list[str] = []
        ok: list[str] = []
        bad: list[str] = []
        total = 0.0
        for table in tables:
            res = self._run((*spec.argv, "-t", table), spec.timeout, spec.max_bytes)
            if res is None:
                bad.append(f"{table} ({self.budget.why_not()})")
                continue
            total += res.duration
            one = to_fact(spec.key, "", res)
            if one.content is not None:
                parts.append(one.content)
                ok.append(table)
            else:
                bad.append(f"{table} ({one.error})")
        if not ok:
            return failed
        note = f"{spec.source} failed ({failed.error}); read per table instead: {', '.join(ok)}"
        if bad:
            note += f"; could not read: {', '.join(bad)}"
        source = "; ".join(f"{spec.source} -t {t}" for t in ok)
        return Fact(spec.key, "".join(parts), source, 0, failed.stderr, round(failed.duration + total, 6), note, False)

    # ---- the two phases ----------------------------------------------------------------
    def run(self) -> dict[str, Fact]:
        if hasattr(self.t, "run_batch"):
            self._run_batched()
        else:
            self._run_each()
        if self.legacy_reader is not None and "iptables-legacy-save" not in self.tools:
            self.facts.update({f.key: f for f in [self.iptc_fact()]})
        return dict(sorted(self.facts.items()))

    def _run_each(self) -> None:
        """One command per fact (local subprocesses, kube-exec): facts of a phase run concurrently."""
        slot = self.budget.timeout(10.0)
        if slot is not None:
            self.tools = set(self.t.which(C.TOOLS, slot))
        jobs1: list[Callable[[], Iterable[Fact]]] = [_one(self.spec_fact, s) for s in C.PHASE1]
        jobs1 += [_one(self.http_fact, h) for h in self.plan.http]
        if "journalctl" in self.tools:
            jobs1.append(lambda: [self.journal_fact()])
        # the table names are cheap (`nft list flowtables`): read them with the cheap facts
        jobs1.append(lambda: [self.nft_tables_fact()])
        self._parallel(jobs1)
        same_as = self._default_backend_tool()
        phase2 = [s for s in C.PHASE2 if not (s.key == "iptables-save.txt" and same_as)]
        jobs2: list[Callable[[], Iterable[Fact]]] = [_one(self.spec_fact, s) for s in phase2]
        jobs2.append(lambda: [self.modules_builtin_fact()])
        jobs2.append(lambda: [self.ipvsadm_fact()])
        jobs2.append(lambda: [self.conntrack_services_fact()])
        if self.plan.health_check_ports:
            jobs2.append(lambda: [self.health_check_fact()])
        self._parallel(jobs2)
        if same_as:
            self.facts["iptables-save.txt"] = self._same_backend_save(same_as)
        # nft last: iptables-nft's own tables are already in iptables-nft-save.txt, so big ones are not re-listed
        nft_tables = self._nft_table_list()
        if nft_tables is not None:
            self.facts["nft-ruleset.json"] = self.nft_ruleset_fact(nft_tables)

    def _run_batched(self) -> None:
        """Remote transports: as few sessions as the facts' dependencies allow.

        Every SSH session is a fork (and shell) on the node plus channel set-up here, and in a fan-out the
        nodes' CPU and ours are what the wall time is made of. Session 1 carries the tool probe, the cheap
        facts, the journal and the nft table names, beside the HTTP reads (forwarded channels, no fork).
        Phase 2 is two sessions at once: the IPv4 iptables dumps, and everything else (IPv6 dump, ipset,
        modules.builtin, ipvsadm, per-IP conntrack, nft tables that are not iptables-nft's), so a big node's
        two big dumps still overlap. Phase 3 lists the small iptables-nft tables as nft JSON (that needs the
        iptables-nft dump's rule counts). Anything that failed is retried the single-command way.
        """
        journal = C.JOURNAL
        phase1 = [*C.PHASE1, journal, C.NFT_TABLE_NAMES]
        which = BatchItem("which", "which", C.TOOLS, 10.0, 65536)
        jobs1: list[Callable[[], Iterable[Fact]]] = [lambda: self._phase1_batch(which, phase1)]
        jobs1 += [_one(self.http_fact, h) for h in self.plan.http]
        self._parallel(jobs1)
        same_as = self._default_backend_tool()
        nft_tables = self._nft_table_list()
        specs: list[C.FactSpec] = [s for s in C.PHASE2 if not (s.key == "iptables-save.txt" and same_as)]
        release = (self.facts.get("uname-r.txt") or missing("", "", "")).content_or("")
        builtin = C.modules_builtin_spec(release)
        if builtin is None:
            self.facts["modules-builtin.txt"] = self.modules_builtin_fact()
        else:
            specs.append(builtin)
        ip_vs = self.facts.get("proc-net-ip_vs.txt")
        if ip_vs is None or ip_vs.content is None:
            self.facts[C.IPVSADM.key] = self.ipvsadm_fact()
        else:
            specs.append(C.IPVSADM)
        for spec in specs:
            if spec.kind == "cmd" and spec.tool not in self.tools:
                self.facts[spec.key] = missing(spec.key, spec.source, f"{spec.tool} not installed")
        runnable = [s for s in specs if s.key not in self.facts]
        conntrack = self._conntrack_argvs()
        ct_items = [BatchItem(f"conntrack:{i}", "cmd", argv, 10.0, C.CONNTRACK_SCAN_BYTES)
                    for i, argv in enumerate(conntrack or ())]  # fmt: skip
        nft_items = [] if nft_tables is None else [
            _nft_item(f, n) for f, n in nft_tables if not _compat_name(f, n) and C.safe_nft_name(f, n)
        ]  # fmt: skip
        # the v4 iptables dumps go in their own session, beside the rest (v4 and v6 / nft dumps of a big node overlap)
        group_a = [_item(s) for s in runnable if s.key in IPTABLES_V4_DUMPS]
        group_b = [_item(s) for s in runnable if s.key not in IPTABLES_V4_DUMPS] + ct_items + nft_items
        results: dict[str, RunResult] = {}

        def batch(items: list[BatchItem]) -> Iterable[Fact]:
            results.update(self._batch(items))
            return []

        jobs2: list[Callable[[], Iterable[Fact]]] = [_bind(batch, g) for g in (group_a, group_b) if g]
        if conntrack is None or (conntrack and not self._conntrack_batchable()):
            jobs2.append(lambda: [self.conntrack_services_fact()])
        if self.plan.health_check_ports:
            jobs2.append(lambda: [self.health_check_fact()])
        self._parallel(jobs2)
        for spec in runnable:
            res = results.get(spec.key)
            self.facts[spec.key] = (missing(spec.key, spec.source, self.budget.why_not()) if res is None
                                    else self.spec_result(spec, res))  # fmt: skip
        if conntrack and self._conntrack_batchable():
            got = [results.get(i.key) for i in ct_items]
            self.facts["conntrack-services.txt"] = self.conntrack_services_fact(got)
        if same_as:
            self.facts["iptables-save.txt"] = self._same_backend_save(same_as)
        if nft_tables is not None:
            done = {(i.argv[4], i.argv[5]): results[i.key] for i in nft_items if i.key in results}
            self.facts["nft-ruleset.json"] = self.nft_ruleset_fact(nft_tables, done)

    def _phase1_batch(self, which: BatchItem, specs: Sequence[C.FactSpec]) -> list[Fact]:
        items = [which, *(_item(s) for s in specs)]
        results = self._batch(items)
        found = results.get(which.key)
        if found is not None and (found.error or found.timed_out):
            found = None  # the batch itself failed: the facts carry its error, not "not installed"
        self.tools = set() if found is None else set(found.stdout.decode(errors="replace").split()) & set(C.TOOLS)
        facts: list[Fact] = []
        for spec in specs:
            res = results.get(spec.key)
            if spec.kind == "cmd" and found is not None and spec.tool not in self.tools:
                if spec is not C.JOURNAL:  # no journalctl: no journal fact (as with single commands)
                    facts.append(missing(spec.key, spec.source, f"{spec.tool} not installed"))
            elif res is None:
                facts.append(missing(spec.key, spec.source, self.budget.why_not()))
            elif spec is C.JOURNAL:
                facts.append(_journal(to_fact(spec.key, spec.source, res)))
            else:
                facts.append(to_fact(spec.key, spec.source, res))
        return facts

    def _batch(self, items: Sequence[BatchItem]) -> dict[str, RunResult]:
        """Run items in one session within the node's budget; {} when the budget is spent (callers say why)."""
        if not items:
            return {}
        slot = self.budget.timeout(sum(i.timeout for i in items))
        if slot is None:
            return {}
        return dict(self.t.run_batch(items, timeout=slot))  # type: ignore[attr-defined]

    def _default_backend_tool(self) -> str:
        """`iptables-nft-save` / `iptables-legacy-save` when plain `iptables` is that backend (read it once)."""
        version = (self.facts.get("iptables-version.txt") or missing("", "", "")).content_or("")
        tool = "iptables-nft-save" if "(nf_tables)" in version else "iptables-legacy-save" if "(legacy)" in version else ""
        return tool if tool in self.tools and "iptables-save" in self.tools else ""

    def _same_backend_save(self, tool: str) -> Fact:
        key = f"{tool}.txt"
        base = self.facts.get(key)
        if base is None:
            return missing("iptables-save.txt", "iptables-save", f"{tool} was not read")
        source = f"{base.source} (iptables-save is the same backend per iptables --version: dumped once)"
        return Fact("iptables-save.txt", base.content, source, base.exit_code, base.stderr, 0.0, base.error,
                    base.truncated)  # fmt: skip

    def _parallel(self, jobs: list[Callable[[], Iterable[Fact]]]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="kpd-fact") as pool:
            for facts in pool.map(lambda job: list(job()), jobs):
                for fact in facts:
                    self.facts[fact.key] = fact

    # ---- facts that need more than one command ------------------------------------------
    def http_fact(self, target: C.HttpTarget) -> Fact:
        source = f"GET http://{_hostport(target.host, target.port)}{target.path}"
        slot = self.budget.timeout(5.0)
        if slot is None:
            return missing(target.key, source, self.budget.why_not())
        res = self.t.http_get(target.host, target.port, target.path, timeout=slot, max_bytes=C.HTTP_MAX)
        return to_fact(target.key, source, res, http=True)

    def health_check_fact(self) -> Fact:
        key = "kube-proxy/healthcheck-nodeports.json"
        host = self.plan.extra.get("node_ip") or "127.0.0.1"
        answers: dict[str, Any] = {}
        answered = 0
        total = 0.0
        for port in self.plan.health_check_ports:
            slot = self.budget.timeout(3.0)
            if slot is None:
                answers[str(port)] = {"error": self.budget.why_not()}
                continue
            res = self.t.http_get(host, port, "/", timeout=slot, max_bytes=1 * C.MiB)
            total += res.duration
            if res.error or res.exit_code is None:
                answers[str(port)] = {"error": res.error or "no response"}
                continue
            answered += 1
            body, _ = decode(res.stdout)
            try:
                answers[str(port)] = {"status": res.exit_code, "body": json.loads(body)}
            except ValueError:
                answers[str(port)] = {"status": res.exit_code, "body": body}
        source = f"GET http://{_hostport(host, 0).rsplit(':', 1)[0]}:<healthCheckNodePort>/"
        if not answered:
            return Fact(key, None, source, None, "", round(total, 6), "no health-check node port answered")
        return Fact(key, json.dumps(answers, indent=1, sort_keys=True) + "\n", source, 0, "", round(total, 6))

    def modules_builtin_fact(self) -> Fact:
        release = (self.facts.get("uname-r.txt") or missing("", "", "")).content_or("")
        spec = C.modules_builtin_spec(release)
        if spec is None:
            return missing("modules-builtin.txt", "/lib/modules/$(uname -r)/modules.builtin",
                           "kernel release unknown (uname -r failed)")  # fmt: skip
        return self.spec_fact(spec)

    def ipvsadm_fact(self) -> Fact:
        ip_vs = self.facts.get("proc-net-ip_vs.txt")
        if ip_vs is None or ip_vs.content is None:
            # ipvsadm modprobes ip_vs when it is absent: collection must not load kernel modules.
            return missing(C.IPVSADM.key, C.IPVSADM.source, "IPVS not loaded (/proc/net/ip_vs absent); ipvsadm not run")
        return self.spec_fact(C.IPVSADM)

    def journal_fact(self) -> Fact:
        return _journal(self.spec_fact(C.JOURNAL))

    # ---- nftables: list tables, then each table, so one huge table cannot hide the others -----
    def nft_tables_fact(self) -> Fact:
        """The table names: `nft list flowtables` (cheap; see collectors.NFT_TABLE_NAMES), else the JSON listing."""
        if "nft" not in self.tools:
            return self.spec_fact(C.NFT_TABLES)  # "nft not installed"
        fact = self.spec_fact(C.NFT_TABLE_NAMES)
        return fact if _table_names(fact) is not None else self.spec_fact(C.NFT_TABLES)

    def _nft_table_list(self) -> list[tuple[str, str]] | None:
        listing = self.facts.pop(C.NFT_TABLES.key, None)
        if listing is None:
            return None
        if listing.content is not None and not listing.content.lstrip().startswith("{"):
            names = _table_names(listing)
            if names is not None:
                return names
            listing = self.spec_fact(C.NFT_TABLES)  # the cheap listing was not usable: ask the authoritative way
        if listing.content is None:
            self.facts[C.NFT_TABLES.key] = listing
            return None
        try:
            doc = json.loads(listing.content)
            return [
                (str(o["table"]["family"]), str(o["table"]["name"]))
                for o in doc.get("nftables", [])
                if isinstance(o, dict) and "table" in o
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            self.facts[C.NFT_TABLES.key] = Fact(C.NFT_TABLES.key, None, listing.source, listing.exit_code,
                                                listing.stderr, listing.duration, "nft printed invalid JSON")
            return None

    def nft_ruleset_fact(self, tables: list[tuple[str, str]],
                         prefetched: Mapping[tuple[str, str], RunResult] | None = None) -> Fact:  # fmt: skip
        """nft-ruleset.json, table by table (`prefetched`: listings already read in a batch)."""
        key = "nft-ruleset.json"
        done = dict(prefetched or {})
        if hasattr(self.t, "run_batch"):
            wanted = [(f, n) for f, n in tables if (f, n) not in done and C.safe_nft_name(f, n)
                      and not self._compat_table_rules(f, n)]  # fmt: skip
            items = {_nft_item(f, n).key: (f, n) for f, n in wanted}
            listed = self._batch([_nft_item(f, n) for f, n in wanted])
            done.update({items[k]: r for k, r in listed.items()})
        objects: list[Any] = []
        meta: Any = None
        problems: list[str] = []
        total = 0.0
        partial = False
        for family, name in tables:
            big = self._compat_table_rules(family, name)
            if big:
                objects.append({"table": {"family": family, "name": name}})
                problems.append(f"table {family} {name}: iptables-nft table with {big} rules, not listed again "
                                f"(its rules are in {'ip6tables' if family == 'ip6' else 'iptables'}-nft dump)")
                continue
            if not C.safe_nft_name(family, name):
                problems.append(f"table {family} {name!r}: name not read (unexpected characters)")
                partial = True
                continue
            res = done.get((family, name)) or self._run(("nft", "-j", "list", "table", family, name), C.NFT_TIMEOUT,
                                                        C.RULES_MAX)  # fmt: skip
            if res is None:
                problems.append(f"table {family} {name}: {self.budget.why_not()}")
                partial = True
                continue
            total += res.duration
            got = _nft_objects(res)
            if got is None:
                problems.append(f"table {family} {name}: {res.error or exit_reason(res)}")
                partial = True
                if name == "kube-proxy":
                    objects.extend(self._nft_kube_proxy_objects(family, problems))
                continue
            table_meta, table_objects = got
            meta = meta or table_meta
            objects.extend(table_objects)
        doc = {"nftables": ([meta] if meta else []) + objects}
        source = "nft list flowtables (table names); nft -j list table <family> <name> (each table)"
        return Fact(key, json.dumps(doc, separators=(", ", ": ")), source, 0, "", round(total, 6),
                    "; ".join(problems), partial)  # fmt: skip

    def _compat_table_rules(self, family: str, name: str) -> int:
        """Rule count of an iptables-nft table above the re-list threshold (0 = list it in nft JSON)."""
        if not _compat_name(family, name):
            return 0
        key = "iptables-nft-save.txt" if family == "ip" else "ip6tables-save.txt"
        cached = self._rule_counts.get((key, name))
        if cached is not None:
            return cached
        text = (self.facts.get(key) or missing("", "", "")).content_or("")
        count = 0
        header = f"*{name}\n"
        # every `*name` section (a dump read table by table may hold one per read); count its rule lines
        starts = [len(header)] if text.startswith(header) else []
        at = text.find("\n" + header)
        while at >= 0:
            starts.append(at + 1 + len(header))
            at = text.find("\n" + header, at + 1)
        for start in starts:
            stop = text.find("\n*", start)
            count += text.count("\n-A ", start - 1, len(text) if stop < 0 else stop)
        count = count if count > C.NFT_COMPAT_RELIST_MAX else 0
        self._rule_counts[(key, name)] = count
        return count

    def _nft_kube_proxy_objects(self, family: str, problems: list[str]) -> list[Any]:
        found: list[Any] = []
        for kind, obj in C.NFT_KUBE_PROXY_OBJECTS:
            res = self._run(("nft", "-j", "list", kind, family, "kube-proxy", obj), 10.0, C.RULES_MAX)
            got = None if res is None else _nft_objects(res)
            if got is None:
                problems.append(f"{kind} {family} kube-proxy {obj}: not read")
                continue
            found.extend(got[1])
        return found

    # ---- conntrack towards Service IPs (bounded) -------------------------------------
    def _conntrack_argvs(self) -> list[tuple[str, ...]] | None:
        """The conntrack reads for the plan's Service IPs (None: none to run, the fact says why)."""
        if "conntrack" not in self.tools or not self.plan.service_ips:
            return None
        ips = self.plan.service_ips
        if len(ips) <= C.CONNTRACK_PER_IP_LIMIT:
            return [C.conntrack_per_ip_argv(ip) for ip in ips]
        return [("conntrack", "-L", "-f", fam) for fam in ("ipv4", "ipv6")]

    def _conntrack_batchable(self) -> bool:
        """Per-IP reads go in a batch; whole-table scans do not (their byte cap must stop the read at once)."""
        return len(self.plan.service_ips) <= C.CONNTRACK_PER_IP_LIMIT

    def conntrack_services_fact(self, prefetched: Sequence[RunResult | None] | None = None) -> Fact:
        key = "conntrack-services.txt"
        ips = self.plan.service_ips
        if "conntrack" not in self.tools:
            return missing(key, "conntrack -L", "conntrack not installed")
        if not ips:
            return missing(key, "conntrack -L", "no Service IPs known (no cluster source)")
        wanted = set(ips)
        lines: list[str] = []
        capped = False
        total = 0.0
        errors: list[str] = []
        if len(ips) <= C.CONNTRACK_PER_IP_LIMIT:
            source = "conntrack -L -f <family> -d <Service IP> (each Service IP)"
        else:
            source = f"conntrack -L -f ipv4|ipv6 (first {C.CONNTRACK_SCAN_BYTES // C.MiB} MiB, filtered by Service IP)"
        argvs = self._conntrack_argvs() or []
        for index, argv in enumerate(argvs):
            res = prefetched[index] if prefetched is not None else self._run(argv, 10.0, C.CONNTRACK_SCAN_BYTES)
            if res is None:
                errors.append(self.budget.why_not())
                break
            total += res.duration
            if not (res.ok or res.truncated):
                errors.append(res.error or exit_reason(res))
                continue
            capped = capped or res.truncated
            for line in decode(res.stdout)[0].splitlines():
                if original_in(line, wanted):
                    if len(lines) >= C.CONNTRACK_MAX_LINES:
                        capped = True
                        break
                    lines.append(line)
        if errors and not lines and len(errors) == len(argvs):
            return missing(key, source, errors[0])
        note = f"capped at {C.CONNTRACK_MAX_LINES} entries / {C.CONNTRACK_SCAN_BYTES // C.MiB} MiB read" if capped else ""
        if errors:
            note = "; ".join(filter(None, [note, *errors]))
        text = "".join(line + "\n" for line in lines)
        return Fact(key, text, source, 0, "", round(total, 6), note, capped)

    # ---- legacy tables via python-iptables (local only, when iptables-legacy-save is absent) -----
    def iptc_fact(self) -> Fact:
        key = "iptables-legacy-iptc.json"
        tables = self._loaded_tables("ip_tables_names.txt")
        if not tables:
            return missing(key, "python-iptables", "no legacy tables loaded (/proc/net/ip_tables_names empty)")
        assert self.legacy_reader is not None
        start = time.monotonic()
        try:
            text = self.legacy_reader(tables)
        except Exception as exc:  # python-iptables raises bare exceptions from libiptc
            return missing(key, "python-iptables", f"python-iptables failed: {exc}")
        return Fact(key, text, "python-iptables (libiptc) tables " + ",".join(tables), 0, "",
                    round(time.monotonic() - start, 6))  # fmt: skip


def original_in(line: str, wanted: set[str]) -> bool:
    dst = C.original_destination(line)
    return dst is not None and dst in wanted


def _nft_objects(res: RunResult) -> tuple[Any, list[Any]] | None:
    if not res.ok:
        return None
    try:
        doc = json.loads(res.stdout)
        items = doc["nftables"]
    except (ValueError, KeyError, TypeError):
        return None
    meta = next((o for o in items if isinstance(o, dict) and "metainfo" in o), None)
    return meta, [o for o in items if not (isinstance(o, dict) and "metainfo" in o)]


def _item(spec: C.FactSpec) -> BatchItem:
    # the cheap facts (5 s limit) are bounded by their batch's timeout; anything slower gets its own
    return BatchItem(spec.key, spec.kind, spec.argv if spec.kind == "cmd" else (spec.path,), spec.timeout,
                     spec.max_bytes, guard=spec.timeout > C.CHEAP_TIMEOUT)  # fmt: skip


def _nft_item(family: str, name: str) -> BatchItem:
    return BatchItem(f"nft:{family}:{name}", "cmd", ("nft", "-j", "list", "table", family, name), C.NFT_TIMEOUT,
                     C.RULES_MAX)  # fmt: skip


def _compat_name(family: str, name: str) -> bool:
    """A table name iptables-nft uses (its rules are in the iptables-nft dump)."""
    return name in C.IPTABLES_TABLES and family in ("ip", "ip6")


def _journal(fact: Fact) -> Fact:
    if fact.content is not None and fact.content.strip() in ("", "-- No entries --"):
        return missing(C.JOURNAL.key, C.JOURNAL.source, "no journal entries for unit kube-proxy")
    return fact


def _table_names(listing: Fact) -> list[tuple[str, str]] | None:
    """Tables from `nft list flowtables` text; None when unusable (failed, odd line, or a flowtable shown)."""
    if listing.content is None:
        return None
    names: list[tuple[str, str]] = []
    for line in listing.content.splitlines():
        if not line.strip() or line == "}":
            continue
        match = _NFT_TABLE_LINE.match(line)
        if match is None:
            return None  # a flowtable declaration, or a name printed in a way this parser does not know
        names.append((match.group(1), match.group(2)))
    return names


def _bind(fn: Callable[[Any], Iterable[Fact]], arg: Any) -> Callable[[], Iterable[Fact]]:
    return lambda: fn(arg)


def _one(fn: Callable[[Any], Fact], arg: Any) -> Callable[[], Iterable[Fact]]:
    return lambda: [fn(arg)]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
