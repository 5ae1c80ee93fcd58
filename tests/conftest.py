"""Shared test plumbing.

Root-only tests (network namespaces, real netfilter, sshd) are marked
`@pytest.mark.root`. Without root they skip with the reason; with
KPDOCTOR_REQUIRE_ROOT_TESTS=1 (set by CI) a missing privilege or tool is a
failure instead, so CI can never pass by skipping the real-parts tests.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# CI (CI=true) runs every property/fuzz test with a fixed seed and no example database, so a
# submission's result does not depend on the draw; developers keep the random exploration that
# finds new bugs (and the database that replays them).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI") or os.environ.get("KPDOCTOR_HYPOTHESIS_PROFILE") == "ci":
    settings.load_profile("ci")

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "kube-proxy-v1.36"
BUNDLES = FIXTURES / "bundles"
REQUIRE_ROOT = os.environ.get("KPDOCTOR_REQUIRE_ROOT_TESTS") == "1"


def root_unavailable_reason(*tools: str) -> str | None:
    """Why root-only tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and netfilter); run as root or in CI"
    missing = [t for t in ("ip", *tools) if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} installed (see .ci/run)"
    return None


def require_root(*tools: str) -> None:
    """Skip (or fail, under KPDOCTOR_REQUIRE_ROOT_TESTS=1) when root or a tool is missing."""
    reason = root_unavailable_reason(*tools)
    if reason is None:
        return
    if REQUIRE_ROOT:
        pytest.fail(f"KPDOCTOR_REQUIRE_ROOT_TESTS=1 but {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("root") is not None:
            tools = item.get_closest_marker("root").args  # type: ignore[union-attr]
            reason = root_unavailable_reason(*tools)
            if reason is not None and not REQUIRE_ROOT:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _root_required(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("root")
    if marker is not None:
        require_root(*marker.args)
