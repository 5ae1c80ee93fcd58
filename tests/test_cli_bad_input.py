"""Bad input to every command gives ONE line `kpdoctor: error: ...` and exit 2 (input) or 3 (unreachable).

Never a traceback, never exit 70 ("internal error"). The inputs are real files made here: a missing path,
a directory where a file is expected, a truncated and a fake .tar.gz, an empty snapshot directory, a
random JSON document as a bundle, binary garbage, an unreadable file (/proc/self/mem: EIO on read, even
for root), unwritable output locations, and flags click rejects.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import BUNDLES, GOLDEN
from tests.support import cli
from tests.support.cli import NO_CLUSTER

B1 = BUNDLES / "B1-healthy" / "bundle"
V1 = GOLDEN / "V1-basic-clusterip" / "cluster"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "emptydir").mkdir()
    (root / "adir").mkdir()
    (root / "random.json").write_text('{"hello": [1, 2, 3]}\n')
    (root / "garbage.bin").write_bytes(bytes(range(256)) * 8)
    (root / "fake.tar.gz").write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for path in sorted(B1.rglob("*")):
            if path.is_file() and "cluster" not in path.parts:  # nodes first; cut before any cluster file
                archive.add(path, arcname=str(path.relative_to(B1)))
    data = buf.getvalue()
    (root / "truncated.tar.gz").write_bytes(data[: len(data) // 3])
    (root / "bad-silences.yaml").write_text("silences: 7\n")
    (root / "bad-config.yaml").write_text("mode: [\n")
    return root


def kpd(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.kpd(*args, env=NO_CLUSTER, drop=("KPDOCTOR_DEBUG",), cwd="/tmp")


CASES: list[tuple[str, tuple[str, ...], int, str]] = [
    # (id, argv with {B}=bad-input dir, {V1}, {B1}; exit code; fragment of the one line)
    ("bare-command", (), 2, ""),
    ("unknown-flag", ("scan", "--bogus-flag"), 2, "No such option: --bogus-flag"),
    ("unknown-command", ("frobnicate",), 2, "No such command"),
    ("extra-argument", ("proxier", "render", "--snapshot", "{V1}", "--node", "kpnode1", "extra"), 2,
     "unexpected extra argument"),
    ("non-number-flag", ("scan", "--bundle", "{B1}", "--timeout", "abc"), 2, "--timeout"),
    ("missing-argument", ("node",), 2, "Missing argument"),
    ("scan-bundle-missing", ("scan", "--bundle", "{B}/nope"), 2, "bundle not found"),
    ("scan-bundle-empty-dir", ("scan", "--bundle", "{B}/emptydir"), 2, "not a kpdoctor bundle"),
    ("scan-bundle-truncated", ("scan", "--bundle", "{B}/truncated.tar.gz"), 2, "no cluster/"),
    ("scan-bundle-fake-tgz", ("scan", "--bundle", "{B}/fake.tar.gz"), 2, "not a readable .tar.gz"),
    ("scan-bundle-random-json", ("scan", "--bundle", "{B}/random.json"), 2, "not a readable .tar.gz"),
    ("scan-bundle-unreadable", ("scan", "--bundle", "/proc/self/mem"), 2, "not a readable .tar.gz"),
    ("scan-snapshot-empty", ("scan", "--snapshot", "{B}/emptydir"), 2, "no *.json / *.yaml"),
    ("scan-snapshot-is-file", ("scan", "--snapshot", "{B}/random.json"), 2, "not a directory"),
    ("scan-config-file-dir", ("scan", "--bundle", "{B1}", "--config-file", "{B}/adir"), 2, "cannot read"),
    ("scan-config-file-binary", ("scan", "--bundle", "{B1}", "--config-file", "{B}/garbage.bin"), 2, "cannot read"),
    ("scan-config-file-bad", ("scan", "--bundle", "{B1}", "--config-file", "{B}/bad-silences.yaml"), 2, "silences"),
    ("scan-output-dir", ("scan", "--bundle", "{B1}", "--output-file", "{B}/adir"), 2, "cannot write"),
    ("scan-kubeconfig-binary", ("scan", "--kubeconfig", "{B}/garbage.bin"), 2, "kubeconfig"),  # issue 9: input error
    ("scan-kubeconfig-dir", ("scan", "--kubeconfig", "{B}/adir"), 2, "cannot read the kubeconfig"),
    ("scan-kubeconfig-random-json", ("scan", "--kubeconfig", "{B}/random.json"), 3, "cannot load cluster credentials"),
    ("node-bundle-random-json", ("node", "edge-1", "--bundle", "{B}/random.json"), 2, "not a readable .tar.gz"),
    ("node-not-in-bundle", ("node", "edge-9", "--bundle", "{B1}"), 2, "not in this bundle"),
    ("node-ssh-key-dir", ("node", "edge-1", "--transport", "ssh", "--address", "127.0.0.1", "--ssh-key", "{B}/adir"),
     2, "no such key file"),
    ("collect-output-exists", ("collect", "-f", "{B}/random.json", "--snapshot", "{V1}", "--no-nodes"), 2,
     "output exists"),
    ("collect-output-unwritable", ("collect", "-f", "/proc/kpd-bad.tar.gz", "--snapshot", "{V1}", "--no-nodes"), 2,
     "cannot write the bundle"),
    ("collect-output-unwritable-dir", ("collect", "-f", "/proc/kpd-bad-dir", "--snapshot", "{V1}", "--no-nodes"), 2,
     "cannot write the bundle"),
    ("collect-snapshot-binary", ("collect", "-f", "{B}/never", "--snapshot", "{B}/garbage.bin", "--no-nodes"), 2,
     "not a directory"),
    ("gate-bundle-truncated", ("gate", "kube-proxy-removal", "--bundle", "{B}/truncated.tar.gz"), 2, "no cluster/"),
    ("gate-snapshot-empty", ("gate", "kube-proxy-removal", "--snapshot", "{B}/emptydir"), 2, "no *.json / *.yaml"),
    ("proxier-config-binary", ("proxier", "render", "--snapshot", "{V1}", "--node", "kpnode1", "--config",
                               "{B}/garbage.bin"), 2, "not UTF-8"),
    ("proxier-config-unreadable", ("proxier", "render", "--snapshot", "{V1}", "--node", "kpnode1", "--config",
                                   "/proc/self/mem"), 2, "cannot read"),
    ("proxier-config-bad-yaml", ("proxier", "render", "--snapshot", "{V1}", "--node", "kpnode1", "--config",
                                 "{B}/bad-config.yaml"), 2, "invalid YAML"),
    ("proxier-view-binary-dump", ("proxier", "view", "--iptables-save", "{B}/garbage.bin"), 2,
     "not an iptables-save line"),
    ("proxier-view-dump-dir", ("proxier", "view", "--iptables-save", "{B}/adir"), 2, "cannot read"),
    ("checks-show-unknown", ("checks", "show", "NOPE"), 2, "unknown check id"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "code", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2_or_3(bad: Path, argv: tuple[str, ...], code: int, fragment: str) -> None:
    args = [a.format(B=bad, V1=V1, B1=B1) for a in argv]
    proc = kpd(*args)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    if not argv:  # bare `kpdoctor`: the help text on stdout, nothing on stderr
        assert lines == [] and "Usage" in proc.stdout
        return
    assert len(lines) == 1 and lines[0].startswith("kpdoctor: error: "), proc.stderr
    assert fragment in lines[0], lines[0]


def test_truncated_bundle_gives_the_partial_node_and_says_so(bad: Path) -> None:
    """`kpdoctor node` on a truncated bundle shows what was read and names the cut (a partial result)."""
    proc = kpd("node", "edge-1", "--bundle", str(bad / "truncated.tar.gz"), "--facts-json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "bundle truncated while reading" in proc.stdout
