from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from drs_poller.clock import ManualClock
from drs_poller.observability.health import Health

TIMEOUT = 30.0


@dataclass(frozen=True)
class Case:
    name: str
    # Each step is an action name or ("advance", seconds).
    steps: tuple[str | tuple[str, float], ...]
    alive: bool
    ready: bool


CASES = [
    Case("fresh", (), alive=True, ready=False),
    Case("startup grace ends", (("advance", TIMEOUT + 0.1),), alive=False, ready=False),
    Case("at the timeout exactly", (("advance", TIMEOUT),), alive=True, ready=False),
    Case("ready", ("mark_ready",), alive=True, ready=True),
    Case("ready and beating", ("mark_ready", ("advance", 20), "beat", ("advance", 20)), True, True),
    Case("ready but hung", ("mark_ready", ("advance", 20), ("advance", 11)), False, False),
    Case("beat revives", ("mark_ready", ("advance", 100), "beat"), alive=True, ready=True),
    Case("stopping", ("mark_ready", "mark_stopping"), alive=True, ready=False),
    Case("stopping before ready", ("mark_stopping", "mark_ready"), alive=True, ready=False),
    Case("stopping is final", ("mark_ready", "mark_stopping", "beat"), alive=True, ready=False),
]


def _run(case: Case) -> tuple[Health, ManualClock]:
    clock = ManualClock()
    health = Health(clock, TIMEOUT)
    for step in case.steps:
        if isinstance(step, tuple):
            clock.advance(step[1])
        else:
            getattr(health, step)()
    return health, clock


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_health_table(case: Case) -> None:
    health, _ = _run(case)
    assert health.alive() is case.alive
    assert health.ready() is case.ready


def test_wall_clock_jump_does_not_affect_liveness() -> None:
    clock = ManualClock()
    health = Health(clock, TIMEOUT)
    clock.jump_wall(3600)
    assert health.alive()


def test_describe_is_json_and_reports_state() -> None:
    clock = ManualClock()
    health = Health(clock, TIMEOUT)
    health.mark_ready()
    clock.advance(12.5)
    detail = json.loads(json.dumps(health.describe()))
    assert detail["seconds_since_beat"] == 12.5
    assert detail["ready"] is True
    assert detail["stopping"] is False
    assert detail["alive"] is True


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_rejects_non_positive_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Health(ManualClock(), timeout)
