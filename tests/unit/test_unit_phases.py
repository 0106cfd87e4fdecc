"""server_phase, most_urgent and Intervals: how soon an execution is polled again."""

from __future__ import annotations

from dataclasses import replace

import pytest
from drs_views import job_view, participant

from drs_poller.core.models import ExecutionType, JobStatus, JobView, LaunchStatus, Participant
from drs_poller.core.phases import Intervals, Phase, most_urgent, parse_phase, server_phase
from drs_poller.settings import load_settings, policy_from

DRILL = ExecutionType.DRILL
RECOVERY = ExecutionType.RECOVERY


def _job(status: JobStatus, launch: LaunchStatus | str | None = "absent") -> JobView:
    """A job with server s-1 at ``launch`` ("absent": the job does not list it)."""
    if launch == "absent":
        return job_view(status)
    assert launch is None or isinstance(launch, LaunchStatus)
    return job_view(status, participant("s-1", launch))


PHASES = [
    # id, job status, launch status ("absent": server not listed), mode, phase
    ("job PENDING", JobStatus.PENDING, "absent", DRILL, Phase.PENDING),
    (
        "job PENDING, server PENDING",
        JobStatus.PENDING,
        LaunchStatus.PENDING,
        RECOVERY,
        Phase.PENDING,
    ),
    (
        "job PENDING wins over LAUNCHED",
        JobStatus.PENDING,
        LaunchStatus.LAUNCHED,
        RECOVERY,
        Phase.PENDING,
    ),
    ("STARTED, server absent", JobStatus.STARTED, "absent", DRILL, Phase.STARTED),
    ("STARTED, no launchStatus", JobStatus.STARTED, None, DRILL, Phase.STARTED),
    ("STARTED, server PENDING", JobStatus.STARTED, LaunchStatus.PENDING, DRILL, Phase.STARTED),
    (
        "STARTED, server PENDING recovery",
        JobStatus.STARTED,
        LaunchStatus.PENDING,
        RECOVERY,
        Phase.STARTED,
    ),
    ("IN_PROGRESS", JobStatus.STARTED, LaunchStatus.IN_PROGRESS, DRILL, Phase.IN_PROGRESS),
    (
        "IN_PROGRESS recovery",
        JobStatus.STARTED,
        LaunchStatus.IN_PROGRESS,
        RECOVERY,
        Phase.IN_PROGRESS,
    ),
    ("LAUNCHED recovery", JobStatus.STARTED, LaunchStatus.LAUNCHED, RECOVERY, Phase.POST_LAUNCH),
    ("LAUNCHED drill", JobStatus.STARTED, LaunchStatus.LAUNCHED, DRILL, Phase.IN_PROGRESS),
    (
        "COMPLETED job, recovery",
        JobStatus.COMPLETED,
        LaunchStatus.LAUNCHED,
        RECOVERY,
        Phase.POST_LAUNCH,
    ),
    ("COMPLETED job, recovery, absent", JobStatus.COMPLETED, "absent", RECOVERY, Phase.POST_LAUNCH),
    ("COMPLETED job, drill", JobStatus.COMPLETED, LaunchStatus.LAUNCHED, DRILL, Phase.IN_PROGRESS),
    ("STARTED, server FAILED", JobStatus.STARTED, LaunchStatus.FAILED, DRILL, Phase.IN_PROGRESS),
    (
        "STARTED, server TERMINATED",
        JobStatus.STARTED,
        LaunchStatus.TERMINATED,
        DRILL,
        Phase.IN_PROGRESS,
    ),
]


@pytest.mark.parametrize(
    ("job_status", "launch", "mode", "expected"),
    [case[1:] for case in PHASES],
    ids=[case[0] for case in PHASES],
)
def test_server_phase(job_status, launch, mode, expected):
    assert server_phase(_job(job_status, launch), "s-1", mode=mode) is expected


def test_server_phase_looks_up_the_right_server():
    job = JobView(
        job_id="drsjob-1",
        status=JobStatus.STARTED,
        servers={
            "s-1": Participant("s-1", LaunchStatus.IN_PROGRESS, None, ()),
            "s-2": Participant("s-2", LaunchStatus.PENDING, None, ()),
        },
    )
    assert server_phase(job, "s-1", mode=DRILL) is Phase.IN_PROGRESS
    assert server_phase(job, "s-2", mode=DRILL) is Phase.STARTED
    assert server_phase(job, "s-3", mode=DRILL) is Phase.STARTED


P, ST, IP, PL = Phase.PENDING, Phase.STARTED, Phase.IN_PROGRESS, Phase.POST_LAUNCH
DEFAULT = policy_from(load_settings(table_name="executions")).intervals  # the settings' defaults
EQUAL = Intervals(pending=10, started=10, in_progress=10, post_launch=10)

URGENT = [
    # id, intervals, phases, expected
    ("empty", DEFAULT, [], None),
    ("single pending", DEFAULT, [P], P),
    ("default: started is shortest", DEFAULT, [P, IP, ST, PL], ST),
    ("default: in_progress vs pending", DEFAULT, [P, IP], IP),
    ("default tie in_progress/post_launch", DEFAULT, [PL, IP], IP),
    ("default: post_launch vs pending", DEFAULT, [P, PL, P], PL),
    ("equal: started first", EQUAL, [P, PL, IP, ST], ST),
    ("equal: in_progress before post_launch", EQUAL, [P, PL, IP], IP),
    ("equal: post_launch before pending", EQUAL, [P, PL], PL),
    ("custom: pending shortest", replace(DEFAULT, pending=5), [P, ST, IP, PL], P),
    ("custom: post_launch shortest", replace(DEFAULT, post_launch=1.5), [P, ST, IP, PL], PL),
    ("custom: interval beats urgency", replace(DEFAULT, started=40, in_progress=35), [ST, IP], IP),
    (
        "custom tie pending/post_launch",
        Intervals(pending=8, started=20, in_progress=20, post_launch=8),
        [P, ST, PL],
        PL,
    ),
]


@pytest.mark.parametrize(
    ("intervals", "phases", "expected"),
    [case[1:] for case in URGENT],
    ids=[case[0] for case in URGENT],
)
def test_most_urgent(intervals, phases, expected):
    assert most_urgent(phases, intervals) is expected
    assert most_urgent(iter(phases), intervals) is expected  # any iterable, consumed once


def test_intervals_defaults_match_the_contract():
    assert DEFAULT.of(P) == 45.0
    assert DEFAULT.of(ST) == 15.0
    assert DEFAULT.of(IP) == 30.0
    assert DEFAULT.of(PL) == 30.0


def test_intervals_of_custom():
    intervals = Intervals(pending=1.0, started=2.0, in_progress=3.0, post_launch=4.5)
    assert [intervals.of(phase) for phase in Phase] == [1.0, 2.0, 3.0, 4.5]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("PENDING", P), ("POST_LAUNCH", PL), (None, None), ("", None), ("LAUNCHING", None)],
)
def test_parse_phase(value, expected):
    assert parse_phase(value) is expected
