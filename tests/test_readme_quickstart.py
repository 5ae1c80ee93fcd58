"""README quickstart and docs (issue 13 item 5): every `kpdoctor` command line the README shows exists with
those flags, nothing links outside the repository, the test prerequisites name everything `.ci/run`
installs, and docs/rbac.yaml grants every API read the live loader makes (and nothing that writes)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer
import yaml

from kpdoctor.cli import app
from kpdoctor.cluster.live import KINDS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GLOBAL_FLAGS = {"--color"}


def code_lines(text: str) -> list[str]:
    """Lines of the ```sh blocks (shell to paste), continuation lines joined, comments dropped."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(line.split("  #")[0].strip())
    return lines


def kpdoctor_invocations(line: str) -> list[list[str]]:
    """Each `kpdoctor ...` command of a shell line (split at &&, |, ;)."""
    out = []
    for part in re.split(r"&&|\|\||[|;]", line):
        words = shlex.split(part.replace("$(command -v kpdoctor)", "kpdoctor").replace("<(", "("), posix=True)
        words = [w for w in words if w not in ("sudo", "source", "(", ")")]
        if words and words[0].strip("\"'") in ("kpdoctor", "(kpdoctor"):
            out.append([w.strip("()") for w in words[1:]])
    return out


def resolve(args: list[str]) -> tuple[Any, list[str]]:
    cmd = typer.main.get_command(app)
    rest = list(args)
    while rest and getattr(cmd, "commands", None) and rest[0] in cmd.commands:
        cmd = cmd.commands[rest.pop(0)]
    return cmd, rest


def test_every_readme_command_and_flag_exists() -> None:
    seen = 0
    text = README.read_text()
    inline = re.findall(r"`(kpdoctor [^`]+)`", text)  # commands quoted in the prose
    lines = [ln for ln in [*code_lines(text), *inline] if "kpdoctor" in ln]
    for line in lines:
        for args in kpdoctor_invocations(line):
            cmd, rest = resolve(args)
            known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | GLOBAL_FLAGS | {"-h", "--help"}
            flags = {w.split("=")[0] for w in rest if w.startswith("-") and not re.match(r"^-\d", w)}
            unknown = flags - known - {"-"}  # "-": stdin
            assert not unknown, (line, sorted(unknown))
            assert not getattr(cmd, "commands", None) or not rest or rest[0].startswith("-"), (line, "no such command")
            seen += 1
    assert seen >= 12, seen


def test_nothing_points_outside_the_repository() -> None:
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "../shared" not in text and "/work/" not in text, doc.name
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), (doc.name, target)


def test_prerequisites_name_everything_ci_installs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    installs = re.findall(r"apt-get install -y -qq --no-install-recommends (?:\\\n)?(.*?)(?:>|$)", ci, re.S)
    assert installs, "the apt-get install lines of .ci/run"
    packages = [p for line in installs for p in line.split()]
    readme = README.read_text()
    prereq = re.search(r"Run the tests \(as root, with `apt-get install ([^`]+)`", readme)
    assert prereq, "the README's test prerequisites"
    assert set(packages) <= set(prereq.group(1).split()), set(packages) - set(prereq.group(1).split())


def test_rbac_grants_every_read_and_no_write() -> None:
    docs = list(yaml.safe_load_all((ROOT / "docs" / "rbac.yaml").read_text()))
    granted: set[tuple[str, str, str, str]] = set()  # (scope, group, resource, verb)
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        scope = "cluster" if doc["kind"] == "ClusterRole" else doc["metadata"]["namespace"]
        for rule in doc["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    for verb in rule["verbs"]:
                        granted.add((scope, group, res, verb))
    groups = {"core": "", "discovery": "discovery.k8s.io", "apps": "apps", "networking": "networking.k8s.io"}
    for plural, _kind, call, in_kube_system in KINDS:
        api = call.split(":")[0]
        scope = "kube-system" if in_kube_system else "cluster"
        assert (scope, groups[api], plural, "list") in granted, (plural, scope)
    assert ("kube-system", "", "pods/log", "get") in granted
    assert ("kube-system", "", "pods/exec", "create") in granted  # kube-exec transport, the gate's agent exec
    writes = {g for g in granted if g[3] not in ("get", "list", "watch") and g[2] != "pods/exec"}
    assert writes == set()
