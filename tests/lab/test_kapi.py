"""kpdoctor/lab/kapi.py: the REST paths of the kinds the lab writes (RESOURCES, derived per API group).

The expected URLs are the Kubernetes API's own paths (API reference, "HTTP request" of each kind); the
real kube-apiserver answers them in tests/lab/test_klab_rbac.py and the other lab tests.
"""

from __future__ import annotations

import pytest

from kpdoctor.lab.kapi import RESOURCES, Api

API = Api("https://127.0.0.1:6443", ca="/nonexistent/ca.crt", cert="/nonexistent/c.crt", key="/nonexistent/c.key")


CASES = [
    ("Namespace", None, "kpd", "/api/v1/namespaces/kpd"),
    ("Node", None, None, "/api/v1/nodes"),
    ("Service", "kube-system", "kube-dns", "/api/v1/namespaces/kube-system/services/kube-dns"),
    ("Pod", None, None, "/api/v1/namespaces/default/pods"),
    ("ConfigMap", "kube-system", "kube-proxy", "/api/v1/namespaces/kube-system/configmaps/kube-proxy"),
    ("ServiceAccount", "kube-system", None, "/api/v1/namespaces/kube-system/serviceaccounts"),
    ("EndpointSlice", "web", "s-1", "/apis/discovery.k8s.io/v1/namespaces/web/endpointslices/s-1"),
    ("DaemonSet", "kube-system", "kube-proxy", "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy"),
    ("Job", "kpdoctor", "kpdoctor-scan", "/apis/batch/v1/namespaces/kpdoctor/jobs/kpdoctor-scan"),
    ("CronJob", "kpdoctor", None, "/apis/batch/v1/namespaces/kpdoctor/cronjobs"),
    ("PersistentVolume", None, "pv-1", "/api/v1/persistentvolumes/pv-1"),
    ("PersistentVolumeClaim", "kpdoctor", "reports", "/api/v1/namespaces/kpdoctor/persistentvolumeclaims/reports"),
    ("ClusterRole", None, "r", "/apis/rbac.authorization.k8s.io/v1/clusterroles/r"),
    ("ClusterRoleBinding", None, None, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
    ("Role", "kube-system", "r", "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/roles/r"),
    ("RoleBinding", "kube-system", None, "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings"),
]


@pytest.mark.parametrize(("kind", "namespace", "name", "url"), CASES)
def test_path_of_every_kind(kind: str, namespace: str | None, name: str | None, url: str) -> None:
    assert API.path(kind, namespace, name) == "https://127.0.0.1:6443" + url


def test_the_cases_cover_every_kind_the_lab_writes() -> None:
    assert sorted(RESOURCES) == sorted(case[0] for case in CASES)
