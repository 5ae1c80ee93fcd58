"""kpdoctor.node.apireason on the errors the real kube-apiserver gave. The texts below were captured from the
lab's kube-apiserver 1.37 (tests/lab/test_klab_inpod.py::test_inpod_caller_without_pods_exec_is_a_one_line_node_error,
before this module existed: the node's reason was this whole handshake dump); they are put in the kubernetes
client's own ApiException as its websocket and REST paths raise it."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from kpdoctor.node.apireason import MAX_MESSAGE, api_reason, status_of

STATUS = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \\"kpdoctor-collect-'
          '104626c818-49e497\\" is forbidden: User \\"system:serviceaccount:kpdoctor:kpdoctor-caller\\" cannot get '
          'resource \\"pods/exec\\" in API group \\"\\" in the namespace \\"kpdoctor\\"","reason":"Forbidden",'
          '"details":{"name":"kpdoctor-collect-104626c818-49e497","kind":"pods"},"code":403}')  # fmt: skip
HANDSHAKE = ("Handshake status 403 Forbidden -+-+- {'audit-id': '4a88443a-cbf4-4bb3-be49-4cab432d4ea7', 'cache-control': "
             "'no-cache, private', 'content-type': 'application/json', 'x-content-type-options': 'nosniff', 'date': "
             "'Mon, 07 Dec 2026 18:35:06 GMT', 'content-length': '379'} -+-+- " + STATUS)  # fmt: skip
WANT = ('HTTP 403 Forbidden: pods "kpdoctor-collect-104626c818-49e497" is forbidden: User '
        '"system:serviceaccount:kpdoctor:kpdoctor-caller" cannot get resource "pods/exec" in API group "" in the '
        'namespace "kpdoctor"')  # fmt: skip


def test_a_refused_exec_handshake_names_the_missing_right() -> None:
    exc = ApiException(status=0, reason=HANDSHAKE)
    assert "audit-id" in str(exc)  # what the node's reason used to be
    assert api_reason(exc) == WANT


def test_a_rest_error_keeps_its_status_and_adds_the_message() -> None:
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = STATUS
    assert api_reason(exc) == WANT


def test_without_a_status_object_nothing_changes() -> None:
    assert api_reason(ApiException(status=404, reason="Not Found")) == "HTTP 404 Not Found"
    oci = 'OCI runtime exec failed: exec failed: unable to start container process: exec: "kpdoctor": executable file not found'
    assert api_reason(RuntimeError(oci)) == oci  # inpod.analyze_node matches needles in this text
    assert api_reason(TimeoutError()) == "TimeoutError"


def test_hostile_status_text() -> None:
    assert status_of('{"kind":"Status", broken') is None
    assert status_of('{"kind":"Status","message":7}') is None
    long = '{"kind":"Status","message":"' + "x\\n" * 5000 + '","code":"403"}'
    exc = ApiException(status=0, reason="Handshake status 403 -+-+- " + long)
    reason = api_reason(exc)
    assert "\n" not in reason
    assert len(reason) <= MAX_MESSAGE + 30 and reason.startswith("HTTP ?: x x"), reason
