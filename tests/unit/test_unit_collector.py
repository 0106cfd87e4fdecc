"""The cycle collector's settings for the daemon (drs_poller/engine/collector.py).

``tune`` changes the whole interpreter's collector, so it runs in a child process here,
never in the test session's."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from drs_poller import cli
from drs_poller.engine import collector

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import pytest


def _tuned_in_child(call: str) -> dict[str, Any]:
    script = (
        "import gc, json\n"
        "from drs_poller.engine import collector\n"
        "before = gc.get_threshold()\n"
        f"after = {call}\n"
        "print(json.dumps({'before': before, 'after': after, 'now': gc.get_threshold(),"
        " 'frozen': gc.get_freeze_count()}))\n"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_tune_sets_the_thresholds_and_freezes_what_is_alive() -> None:
    result = _tuned_in_child("collector.tune(version=(3, 11))")
    assert tuple(result["after"]) == collector.THRESHOLDS
    assert tuple(result["now"]) == collector.THRESHOLDS
    assert tuple(result["before"]) != collector.THRESHOLDS
    # The modules imported before it (drs_poller's, json's) are in the permanent generation.
    assert result["frozen"] > 1_000


def test_an_incremental_collector_keeps_its_thresholds_and_is_frozen_alone() -> None:
    result = _tuned_in_child("collector.tune(version=collector.INCREMENTAL_FROM)")
    assert result["now"] == result["before"]
    assert result["frozen"] > 1_000


def test_the_daemon_is_tuned_once_built_and_before_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRS_POLLER_TABLE_NAME", "executions")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    steps: list[str] = []

    def tune(**_: Any) -> tuple[int, ...]:
        steps.append("tune")
        return gc.get_threshold()

    def run(coroutine: Coroutine[Any, Any, int]) -> int:
        coroutine.close()
        steps.append("run")
        return 0

    monkeypatch.setattr(collector, "tune", tune)
    monkeypatch.setattr(cli, "_run_coroutine", run)
    monkeypatch.setattr("drs_poller.observability.logs.configure_logging", lambda **_: None)
    assert cli._run() == 0
    assert steps == ["tune", "run"]
