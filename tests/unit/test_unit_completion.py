"""server_outcome and final_status: the completion rules of contract §2."""

from __future__ import annotations

from typing import Any

import pytest

from drs_poller.core.completion import Outcome, final_status, server_outcome
from drs_poller.core.models import ExecutionType, Server

DRILL = ExecutionType.DRILL
RECOVERY = ExecutionType.RECOVERY
S, F, A, N = Outcome.SUCCEEDED, Outcome.FAILED, Outcome.ACTIVE, Outcome.NOT_STARTED


def _server(
    *,
    job: str | None = "drsjob-1",
    status: str | None = None,
    launched: float | None = None,
    post: str | None = None,
    error: str | None = None,
) -> Server:
    raw: dict[str, Any] = {"SourceServerId": "s-1"}
    return Server(
        source_server_id="s-1",
        job_id=job,
        status=status,
        launched_time=launched,
        post_launch_status=post,
        error=error,
        job_not_found_polls=0,
        poll_attempts=0,
        raw=raw,
    )


OUTCOMES = [
    # id, server, mode, expected
    ("no job, FAILED: failed to start", _server(job=None, status="FAILED"), DRILL, F),
    ("no job, FAILED, recovery", _server(job=None, status="FAILED"), RECOVERY, F),
    ("no job, Error only", _server(job=None, status="PENDING", error="x"), DRILL, F),
    ("no job, PENDING: not started", _server(job=None, status="PENDING"), DRILL, N),
    ("no job, no status: not started", _server(job=None), RECOVERY, N),
    ("job, no status yet", _server(), DRILL, A),
    ("job, PENDING", _server(status="PENDING"), DRILL, A),
    ("job, IN_PROGRESS", _server(status="IN_PROGRESS"), RECOVERY, A),
    ("job, DRS FAILED", _server(status="FAILED", error="launch failed"), DRILL, F),
    ("job, FAILED status without Error", _server(status="FAILED"), DRILL, F),
    ("job, Error present", _server(status="IN_PROGRESS", error="job completed"), DRILL, F),
    ("error beats launch", _server(status="LAUNCHED", launched=10.0, error="x"), DRILL, F),
    ("drill launched", _server(status="LAUNCHED", launched=10.0), DRILL, S),
    ("drill launched then terminated", _server(status="TERMINATED", launched=10.0), DRILL, S),
    (
        "drill ignores post-launch",
        _server(status="LAUNCHED", launched=1.0, post="IN_PROGRESS"),
        DRILL,
        S,
    ),
    ("LAUNCHED status but no LaunchedTime", _server(status="LAUNCHED"), DRILL, A),
    ("recovery COMPLETED", _server(status="LAUNCHED", launched=1.0, post="COMPLETED"), RECOVERY, S),
    (
        "recovery NOT_CONFIGURED",
        _server(status="LAUNCHED", launched=1.0, post="NOT_CONFIGURED"),
        RECOVERY,
        S,
    ),
    (
        "recovery IN_PROGRESS",
        _server(status="LAUNCHED", launched=1.0, post="IN_PROGRESS"),
        RECOVERY,
        A,
    ),
    ("recovery post-launch missing", _server(status="LAUNCHED", launched=1.0), RECOVERY, A),
    (
        "recovery post-launch FAILED",
        _server(status="LAUNCHED", launched=1.0, post="FAILED", error="action failed"),
        RECOVERY,
        F,
    ),
    (
        "recovery post-launch FAILED, no Error",
        _server(status="LAUNCHED", launched=1.0, post="FAILED"),
        RECOVERY,
        F,
    ),
]


@pytest.mark.parametrize(
    ("server", "mode", "expected"),
    [case[1:] for case in OUTCOMES],
    ids=[case[0] for case in OUTCOMES],
)
def test_server_outcome(server, mode, expected):
    assert server_outcome(server, mode) is expected


@pytest.mark.parametrize(("outcome", "terminal"), [(S, True), (F, True), (A, False), (N, False)])
def test_terminal(outcome, terminal):
    assert outcome.terminal is terminal


FINALS = [
    ("all succeeded", [S, S, S], False, "COMPLETED"),
    ("one succeeded", [S], False, "COMPLETED"),
    ("none succeeded", [F, F], False, "FAILED"),
    ("one failed", [F], False, "FAILED"),
    ("mixed", [S, F, S], False, "PARTIAL"),
    ("an active one", [S, A], False, None),
    ("a not started one", [S, F, N], False, None),
    ("only not started", [N], False, None),
    ("empty list", [], False, "FAILED"),
    ("empty list and an empty wave", [], True, "FAILED"),
    ("all succeeded but an empty wave", [S, S], True, "PARTIAL"),
    ("all failed and an empty wave", [F], True, "FAILED"),
    ("empty wave does not finish an active one", [S, A], True, None),
]


@pytest.mark.parametrize(
    ("outcomes", "has_empty_wave", "expected"),
    [case[1:] for case in FINALS],
    ids=[case[0] for case in FINALS],
)
def test_final_status(outcomes, has_empty_wave, expected):
    assert final_status(outcomes, has_empty_wave=has_empty_wave) == expected


def test_final_status_default_has_no_empty_wave():
    assert final_status([S]) == "COMPLETED"
    assert final_status(()) == "FAILED"
