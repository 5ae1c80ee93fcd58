"""Benchmark kpdoctor's start-up: `kpdoctor --help`, `-h`, `version`, `--version`, side by side with
`python3 -c pass` (the interpreter's own floor on this machine) and `kubectl version --client`.

kpdoctor runs as the console script pip/pipx install runs it: a file with a `#!python` line that imports
the `[project.scripts]` entry point of pyproject.toml (written to a temporary directory here, with PYTHONPATH
set to this checkout, and __pycache__ written by an untimed first run, as an install does). Each
round runs every command once, in a rotating order, so load changes hit all of them alike; the median and
the spread of wall times over the rounds are printed, with the load average before and after. `version`
runs with no kubeconfig (HOME points to an empty directory), as `kubectl version --client` does not ask
the server either.

    python3 bench/bench_startup.py --rounds 31 [--kubectl PATH] [--compare /work/main] [--json out.json]
                                   [--max-median 0.15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from childrun import run_child  # noqa: E402

KUBECTL = "/var/cache/kpdoctor-lab/bin/v1.37.2/kubectl"
ENTRY_POINT = """#!{python}
import sys
from {module} import {func}
if __name__ == "__main__":
    sys.exit({func}())
"""


def entry_point_script(root: Path = ROOT) -> str:
    """The console script pip writes for pyproject's `kpdoctor = "module:func"` (with that checkout on the path)."""
    import tomllib

    target = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]["kpdoctor"]
    module, _, func = target.partition(":")
    return ENTRY_POINT.format(python=sys.executable, module=module, func=func).replace(
        "import sys\n", f"import sys\nsys.path.insert(0, {str(root)!r})\n", 1)


def commands(script: Path, kubectl: str | None, other: Path | None = None) -> dict[str, list[str]]:
    cmds = {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "kpdoctor --help": [str(script), "--help"],
        "kpdoctor -h": [str(script), "-h"],
        "kpdoctor version": [str(script), "version"],
        "kpdoctor --version": [str(script), "--version"],
    }
    if kubectl:
        cmds["kubectl version --client"] = [kubectl, "version", "--client"]
    if other:
        cmds["(compared) kpdoctor --help"] = [str(other), "--help"]
        cmds["(compared) kpdoctor --version"] = [str(other), "--version"]
    return cmds


def time_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU user+sys) seconds of one run; the CPU time is what load on the machine does not inflate."""
    run = run_child(argv, env=env, stderr=subprocess.DEVNULL)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({run.returncode})")
    return run.wall, run.cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--kubectl", default=KUBECTL if Path(KUBECTL).is_file() else None)
    ap.add_argument("--json", help="write the raw times and medians here")
    ap.add_argument("--compare", type=Path, help="another checkout (e.g. /work/main) measured in the same rounds")
    ap.add_argument("--max-median", type=float, help="exit 1 when a kpdoctor median is above this (seconds)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="kpd-startup-") as tmp:
        script = Path(tmp) / "kpdoctor"
        script.write_text(entry_point_script())
        script.chmod(0o755)
        other = None
        if args.compare:
            other = Path(tmp) / "kpdoctor-compared"
            other.write_text(entry_point_script(args.compare.resolve()))
            other.chmod(0o755)
        home = Path(tmp) / "home"
        home.mkdir()
        # as installed: pip/pipx write __pycache__ at install time (the warm-up run writes it here)
        env = {k: v for k, v in os.environ.items()
               if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "PYTHONDONTWRITEBYTECODE")}
        env.update(PYTHONPATH=str(ROOT), HOME=str(home))
        cmds = commands(script, args.kubectl, other)
        names = list(cmds)
        for name in names:  # warm the page cache and __pycache__ once, untimed
            time_once(cmds[name], env)
        times: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        load_before = os.getloadavg()
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                wall, used = time_once(cmds[name], env)
                times[name].append(wall)
                cpu[name].append(used)
        load_after = os.getloadavg()

    medians = {n: statistics.median(t) for n, t in times.items()}
    print(f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, {args.rounds} rounds, "
          f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.compare:
        print(f"(compared) = {args.compare.resolve()}")
    print(f"{'command':30} {'median s':>9} {'min s':>7} {'p90 s':>7} {'CPU median s':>13}")
    for name in names:
        t = sorted(times[name])
        p90 = t[min(len(t) - 1, int(round(0.9 * (len(t) - 1))))]
        print(f"{name:30} {medians[name]:9.3f} {t[0]:7.3f} {p90:7.3f} {statistics.median(cpu[name]):13.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": medians, "times": times, "cpu": cpu, "rounds": args.rounds,
                                               "load": [load_before, load_after]}, indent=1) + "\n")
    if args.max_median is not None:
        over = [n for n in names if n.startswith("kpdoctor ") and medians[n] > args.max_median]
        if over:
            print(f"over {args.max_median} s: {', '.join(over)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
