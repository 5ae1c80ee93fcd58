"""deploy/rbac-inpod-caller.yaml grants the caller of `scan --transport pod --analyze-in-pod` exactly the listed
rights: its own Role plus the read-only ClusterRoles of deploy/rbac.yaml it binds, resolved here from the
YAML as shipped. Nothing else: no `*`, no secrets, no create outside namespace kpdoctor, no
escalate/bind/impersonate, no nonResourceURLs, no binding to anything but its ServiceAccount.
That the rights are *enough* is proven on a real kube-apiserver: tests/lab/test_klab_inpod.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CALLER = ("kpdoctor", "kpdoctor-caller")  # namespace, ServiceAccount
ALL_NAMESPACES = "*"

# (namespace or "*" for cluster-wide, apiGroup, resource, verb): docs/in-cluster.md says what each is for
ALLOWED = {
    *{("kpdoctor", "", "pods", v) for v in ("create", "get", "list", "delete")},
    *{("kpdoctor", "", "pods/exec", v) for v in ("create", "get")},
    *{(ALL_NAMESPACES, "", r, "list") for r in ("services", "nodes")},
    (ALL_NAMESPACES, "discovery.k8s.io", "endpointslices", "list"),
    (ALL_NAMESPACES, "networking.k8s.io", "servicecidrs", "list"),
    *{("kube-system", "", r, "list") for r in ("configmaps", "pods")},
    ("kube-system", "", "pods/log", "get"),
    ("kube-system", "apps", "daemonsets", "list"),
}
FORBIDDEN_VERBS = {"escalate", "bind", "impersonate", "*"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _grants(caller: list[dict[str, Any]], roles_from: list[dict[str, Any]]) -> tuple[set[tuple[str, ...]], list[str]]:
    """Every (namespace, apiGroup, resource, verb) the caller's bindings grant, and every rule problem."""
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
             for d in roles_from + caller if d["kind"] in ("Role", "ClusterRole")}  # fmt: skip
    grants: set[tuple[str, ...]] = set()
    problems: list[str] = []
    for b in caller:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        where = b["metadata"].get("namespace", ALL_NAMESPACES) if b["kind"] == "RoleBinding" else ALL_NAMESPACES
        for s in b["subjects"]:
            if (s["kind"], s.get("namespace"), s["name"]) != ("ServiceAccount", *CALLER):
                problems.append(f"{b['metadata']['name']}: binds {s['kind']} {s['name']}")
        ref = b["roleRef"]
        key = (ref["kind"], "" if ref["kind"] == "ClusterRole" else where, ref["name"])
        role = roles.get(key)
        if role is None:
            problems.append(f"{b['metadata']['name']}: {ref['kind']} {ref['name']} is not in deploy/")
            continue
        for rule in role.get("rules", []):
            if rule.get("nonResourceURLs"):
                problems.append(f"{ref['name']}: nonResourceURLs {rule['nonResourceURLs']}")
            for group in rule.get("apiGroups", []):
                for res in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        grants.add((where, group, res, verb))
    return grants, problems


def _violations(caller: list[dict[str, Any]], roles_from: list[dict[str, Any]]) -> list[str]:
    grants, problems = _grants(caller, roles_from)
    for ns, group, res, verb in sorted(grants):
        what = f"{verb} {group or 'core'}/{res} in {ns}"
        if "*" in (group, res) or verb in FORBIDDEN_VERBS:
            problems.append(f"wildcard or privilege verb: {what}")
        if res.split("/")[0] in ("secrets", "serviceaccounts", "roles", "rolebindings", "clusterroles",
                                 "clusterrolebindings"):  # fmt: skip
            problems.append(f"sensitive resource: {what}")
        if verb in WRITE_VERBS and ns != "kpdoctor":
            problems.append(f"write outside namespace kpdoctor: {what}")
        if (ns, group, res, verb) not in ALLOWED:
            problems.append(f"not in the list: {what}")
    return problems


def test_the_shipped_manifest_grants_exactly_the_list() -> None:
    caller, base = _docs("rbac-inpod-caller.yaml"), _docs("rbac.yaml")
    assert _violations(caller, base) == []
    grants, _ = _grants(caller, base)
    assert grants == ALLOWED  # and every listed right is granted (the lab test proves they are enough)


@pytest.mark.parametrize(("rule", "expect"), [
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}, "sensitive resource: get core/secrets"),
    ({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, "wildcard or privilege verb: get core/*"),
    ({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["escalate"]},
     "wildcard or privilege verb: escalate"),
    ({"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}, "wildcard or privilege verb: impersonate"),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}, "not in the list: patch core/pods in kpdoctor"),
    ({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, "nonResourceURLs"),
])  # fmt: skip
def test_a_widened_role_is_caught(rule: dict[str, Any], expect: str) -> None:
    caller, base = _docs("rbac-inpod-caller.yaml"), _docs("rbac.yaml")
    wide = copy.deepcopy(caller)
    next(d for d in wide if d["kind"] == "Role")["rules"].append(rule)
    assert any(expect in p for p in _violations(wide, base)), _violations(wide, base)


def test_create_outside_kpdoctor_and_other_subjects_are_caught() -> None:
    caller, base = _docs("rbac-inpod-caller.yaml"), _docs("rbac.yaml")
    wide = copy.deepcopy(caller)
    binding = next(d for d in wide if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == "kpdoctor")
    binding["metadata"]["namespace"] = "kube-system"
    binding["subjects"].append({"kind": "Group", "name": "system:authenticated"})
    wide.append({**next(d for d in wide if d["kind"] == "Role"), "metadata": {"name": "kpdoctor-inpod-caller",
                                                                             "namespace": "kube-system"}})  # fmt: skip
    problems = _violations(wide, base)
    assert any("write outside namespace kpdoctor: create core/pods in kube-system" in p for p in problems), problems
    assert any("binds Group system:authenticated" in p for p in problems), problems
