"""A rule dump that ended inside a table although its command succeeded, read once more.

Exec streams (the kube-exec and collector-pod transports) can lose the end of a large output and still report
exit status 0 (kubernetes/kubernetes#124571 "kubectl exec truncates stdout without reporting error"; seen here
once in 8 reads of a 5.5 MB iptables-save through a collector pod, bench/bench_collector_pod.py). A cut dump is
read again once; a second cut read is kept as it is: the parser then names the line where it stops and the
checks that need it say "not evaluated".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kpdoctor.dataplane.iptables_save import ends_mid_table
from kpdoctor.node import collectors as C
from kpdoctor.node.run_fact import to_fact
from kpdoctor.node.state import Fact
from kpdoctor.node.transport import RunResult

__all__ = ["ends_mid_table", "read_again"]


def read_again(spec: C.FactSpec, cut: Fact, run: Callable[[Sequence[str], float, int], RunResult | None]) -> Fact:
    """The dump read a second time when that read is whole, with a note saying why; else `cut` unchanged."""
    res = run(spec.argv, spec.timeout, spec.max_bytes)
    if res is None or res.truncated:
        return cut
    again = to_fact(spec.key, spec.source, res)
    if again.content is None or ends_mid_table(again.content):
        return cut
    why = (f"the first read ended inside a table ({len(cut.content or ''):,} bytes, exit status 0: the transport "
           "lost the end of the output); read again")
    return Fact(again.key, again.content, again.source, again.exit_code, again.stderr,
                round(cut.duration + again.duration, 6), why, False)
