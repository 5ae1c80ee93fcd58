"""docs/bundle.md names the commands and files the collector really runs and reads: every fixed FactSpec of
kpdoctor.node.collectors appears in the "What each node file is" table with its exact command line or path."""

from __future__ import annotations

from pathlib import Path

from kpdoctor.node import collectors as C

ROOT = Path(__file__).resolve().parents[2]


def table_rows() -> dict[str, str]:
    text = (ROOT / "docs" / "bundle.md").read_text()
    section = text.split("## What each node file is", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            files, _, source = line[2:].partition(" | ")
            for name in files.replace("`", "").replace(" etc.", "").split(", "):
                rows[name.strip()] = source
    return rows


def test_every_collected_fact_is_documented_with_its_command() -> None:
    rows = table_rows()
    specs = [*C.PHASE1, *C.PHASE2, C.IPVSADM, C.JOURNAL, C.NFT_TABLE_NAMES, C.NFT_TABLES]
    for spec in specs:
        source = " ".join(spec.argv) if spec.kind == "cmd" else spec.path
        if spec.key.startswith(("ip_tables_", "ip6_tables_")):  # one row: /proc/net/ip_tables_{names,...}
            row = rows["ip_tables_names.txt"]
            assert spec.path.rsplit("_", 1)[0] in row, (spec.key, row)
            continue
        assert spec.key in rows, (spec.key, "not in the table")
        assert source in rows[spec.key].replace("\\|", "|"), (spec.key, source, rows[spec.key])
    release = C.modules_builtin_spec("6.1.0-test")
    assert release is not None and "/lib/modules/$(uname -r)/modules.builtin" in rows["modules-builtin.txt"]
