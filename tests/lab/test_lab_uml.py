"""kpdoctor.lab.uml: a script runs in a real User-Mode-Linux guest (its own kernel, the host's root read-only),
gets its inputs, writes its results back, and the guest powers off; a script past its budget is stopped."""

from __future__ import annotations

import pytest

from kpdoctor.lab import uml

ROOT = pytest.mark.root("linux.uml")


def _guest_or_skip() -> None:
    from conftest import REQUIRE_ROOT

    reason = uml.unavailable_reason()
    if reason is not None:
        if REQUIRE_ROOT:
            pytest.fail(f"KPDOCTOR_REQUIRE_ROOT_TESTS=1 but {reason}")
        pytest.skip(reason)


@ROOT
def test_script_runs_in_the_guest_kernel_with_its_inputs_and_modules() -> None:
    _guest_or_skip()
    script = ('uname -r > "$KPD_OUT/release"\n'
              'cat greeting.txt\n'
              'modprobe ip_vs && cat /proc/net/ip_vs > "$KPD_OUT/ip_vs"\n'
              'awk \'$2 == "/" {print $3, $4}\' /proc/mounts > "$KPD_OUT/root"\n'
              'exit 3\n')
    run = uml.run_in_guest(script, {"greeting.txt": "hello from the host\n"}, timeout=40)
    assert not run.timed_out
    assert run.returncode == 3
    assert "hello from the host" in run.output
    fstype, options = run.files["root"].split()[-2:]  # the host's root, read-only through hostfs
    assert fstype == "hostfs" and options.split(",")[0] == "ro"
    assert run.files["release"].strip().startswith("6.")  # the guest's kernel, not the host's
    assert run.files["ip_vs"].startswith("IP Virtual Server version")
    assert "Power down" in run.console


@ROOT
def test_a_script_past_its_budget_is_stopped_and_the_guest_still_powers_off() -> None:
    _guest_or_skip()
    run = uml.run_in_guest("sleep 60\n", timeout=15)  # script budget: 15 - 10 = 5 s
    assert run.returncode == 124  # timeout(1)
    assert not run.timed_out and run.seconds < 15


def test_input_names_must_be_plain_file_names() -> None:
    if uml.unavailable_reason() is not None:
        pytest.skip("linux.uml not installed: run_in_guest refuses before it reads its inputs")
    with pytest.raises(ValueError, match="plain file name"):
        uml.run_in_guest("true\n", {"../escape": "x"})
