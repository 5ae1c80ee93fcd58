"""Run one shell script inside a User-Mode-Linux guest and collect what it wrote (one job: a bounded guest run).

Why: the host kernel of the lab may lack a feature (IPVS) that a proof needs. A UML guest (Debian's
`user-mode-linux`: `/usr/bin/linux.uml`, modules in `/usr/lib/uml/modules/<release>/`) is a real Linux kernel
running as an ordinary process. The guest's root is the host's `/` through hostfs, read-only; `/run` and
`/lib/modules` are tmpfs inside the guest (the modules directory points at the UML modules, so `modprobe` and
the kernel's own module autoload work); one host directory is shared read-write at `$KPD_SHARE`: it holds the
script, its inputs, and what the script writes to `$KPD_OUT`. The guest powers itself off when the script
ends; a guest that is still running at the deadline is killed (its own process group, started here).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

UML_BINARY = "/usr/bin/linux.uml"
UML_MODULES = Path("/usr/lib/uml/modules")
MAX_FILE_BYTES = 4 << 20  # a file the guest wrote is read up to this size
GUEST_SHARE = "/run/kpd-share"

# PID 1 of the guest. Everything the guest writes lands in the shared directory; it never writes the host's root
# (mounted read-only). `echo o > /proc/sysrq-trigger` powers off at once (no init system to ask).
INIT = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs run /run
mkdir -p /run/lock /run/tmp {share}
mount -t hostfs -o {host_share} none {share}
mount -t tmpfs modules /lib/modules
ln -s {modules}/$(uname -r) /lib/modules/$(uname -r)
export TMPDIR=/run/tmp KPD_SHARE={share} KPD_OUT={share}/out
cd {share}
timeout {budget} sh ./script.sh > out/script-output.txt 2>&1
echo $? > out/script-rc
sync
echo o > /proc/sysrq-trigger
poweroff -f
"""


@dataclass(frozen=True)
class GuestRun:
    returncode: int | None  # the script's exit status; None when it never finished (guest killed or crashed)
    output: str  # the script's stdout and stderr
    files: dict[str, str]  # what the script wrote under $KPD_OUT (name -> text)
    console: str  # the guest kernel's console (tail)
    seconds: float
    timed_out: bool


def unavailable_reason() -> str | None:
    """Why a guest cannot be run here (None: it can)."""
    if not os.access(UML_BINARY, os.X_OK):
        return f"{UML_BINARY} is missing (apt-get install user-mode-linux)"
    if not UML_MODULES.is_dir() or not any(UML_MODULES.iterdir()):
        return f"{UML_MODULES} has no module tree (apt-get install user-mode-linux)"
    return None


def _read_out(out: Path) -> dict[str, str]:
    files = {}
    for path in sorted(out.iterdir()):
        if path.is_file() and path.name not in ("script-output.txt", "script-rc"):
            with path.open("rb") as fh:
                files[path.name] = fh.read(MAX_FILE_BYTES).decode("utf-8", "replace")
    return files


def run_in_guest(script: str, inputs: Mapping[str, str] | None = None, timeout: float = 60.0,
                 mem_mb: int = 384) -> GuestRun:
    """Boot a guest, run `script` (sh) in its share directory next to `inputs` (file name -> text), power off.

    The script gets `timeout - 10` seconds of its own (so the guest can still write its results and power off);
    the whole guest is killed at `timeout`."""
    reason = unavailable_reason()
    if reason is not None:
        raise FileNotFoundError(reason)
    share = Path(tempfile.mkdtemp(prefix="kpd-uml-"))
    try:
        (share / "out").mkdir()
        for name, text in (inputs or {}).items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"input file name {name!r}: a plain file name is needed")
            (share / name).write_text(text)
        (share / "script.sh").write_text(script)
        init = share / "init.sh"
        init.write_text(INIT.format(share=GUEST_SHARE, host_share=share, modules=UML_MODULES,
                                    budget=max(5, int(timeout) - 10)))
        init.chmod(0o755)
        cmd = [UML_BINARY, f"mem={mem_mb}M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
               f"init={init}", f"umid=kpd-{share.name}", f"uml_dir={share}", "con=null", "con0=fd:0,fd:1"]
        started = time.monotonic()
        with (share / "console.txt").open("wb") as console:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the guest's own group (new session above)
                proc.wait(timeout=10)
        seconds = time.monotonic() - started
        rc_text = (share / "out" / "script-rc").read_text().strip() if (share / "out" / "script-rc").exists() else ""
        output_path = share / "out" / "script-output.txt"
        output = output_path.read_text(errors="replace") if output_path.exists() else ""
        console_text = (share / "console.txt").read_bytes()[-20000:].decode("utf-8", "replace")
        return GuestRun(int(rc_text) if rc_text.lstrip("-").isdigit() else None, output, _read_out(share / "out"),
                        console_text, seconds, timed_out)
    finally:
        shutil.rmtree(share, ignore_errors=True)
