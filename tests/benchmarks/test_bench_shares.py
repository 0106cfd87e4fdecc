"""Where a poll's lateness and a change's detection go (benchmarks/analysis.py), the CPU
of everything on the machine over the measured period, and repeated runs combined
(benchmarks/run.py): table tests on hand-made records."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from benchmarks.analysis import (
    REAL_INTERVALS,
    detection,
    latencies_ms,
    phase_at,
    poll_shares,
)
from benchmarks.recording import DrsCall, ItemWrite
from benchmarks.run import CpuMeter, combine_runs
from benchmarks.workloads import WORKLOADS, Seeded, seed_workload
from drs_poller.core.models import ExecutionType

START = 1_800_000_000.0


@pytest.fixture(scope="module")
def seeded() -> Seeded:
    return seed_workload(WORKLOADS["W50"], speed=1.0, start=START, seed=7)


def _first(seeded: Seeded) -> tuple[str, float]:
    """An execution, and the interval of its phase at START (what a poll then sets)."""
    execution_id, (kind, servers) = next(iter(seeded.executions.items()))
    return execution_id, REAL_INTERVALS.of(phase_at(servers, ExecutionType(kind), START))


def _write(execution_id: str, at: float, sent: float | None) -> ItemWrite:
    return ItemWrite(at=at, execution_id=execution_id, servers=(), status=None, sent=sent)


# Each case: the second poll's lateness, and the previous poll's write as (sent, landed)
# after the first poll, both relative to when the second poll was due (None: no write);
# then the expected (lateness, write wait, at the table, own).
SHARES = [
    pytest.param(5.0, None, (5.0, 0.0, 0.0, 5.0), id="no write: all the daemon's own"),
    pytest.param(5.0, (-2.0, -1.0), (5.0, 0.0, 0.0, 5.0), id="write landed before due"),
    pytest.param(5.0, (-4.0, 3.0), (5.0, 3.0, 3.0, 2.0), id="sent before due, landed after"),
    pytest.param(5.0, (1.0, 4.0), (5.0, 4.0, 3.0, 1.0), id="queued for a writer past due"),
    pytest.param(5.0, (1.0, 5.0), (5.0, 5.0, 4.0, 0.0), id="landed as the poll started"),
    pytest.param(-2.0, (-4.0, -3.0), (-2.0, 0.0, 0.0, -2.0), id="pulled early"),
    pytest.param(5.0, ("old", 3.0), (5.0, 3.0, 3.0, 2.0), id="record without a send time"),
]


@pytest.mark.parametrize(("late", "write", "expected"), SHARES)
def test_a_polls_lateness_is_split_into_the_write_wait_and_the_daemons_own(
    seeded: Seeded, late: float, write: tuple[Any, float] | None, expected: tuple[float, ...]
) -> None:
    execution_id, interval = _first(seeded)
    due = START + interval
    writes = []
    if write is not None:
        sent, landed = write
        writes.append(_write(execution_id, due + landed, None if sent == "old" else due + sent))
    # A write before the first poll is never the one the second poll waited on.
    writes.append(_write(execution_id, START - 1.0, START - 2.0))
    polls = {execution_id: [START, due + late]}

    [shares] = poll_shares(seeded, polls, writes, speed=1.0, window=None)

    got = (shares.lateness, shares.write_wait, shares.at_table, shares.own)
    assert got == pytest.approx(expected)


def test_shares_are_on_the_real_scale_and_only_in_the_window(seeded: Seeded) -> None:
    execution_id, interval = _first(seeded)
    speed = 10.0
    due = START + interval / speed
    polls = {execution_id: [START, due + 0.5, due + 0.5 + interval]}
    writes = [_write(execution_id, due + 0.3, due + 0.1)]

    all_polls = poll_shares(seeded, polls, writes, speed=speed, window=None)
    first_only = poll_shares(seeded, polls, writes, speed=speed, window=(START, due + 1.0))

    first = all_polls[0]
    assert (first.lateness, first.write_wait, first.at_table) == pytest.approx((5.0, 3.0, 2.0))
    assert len(all_polls) == 2
    assert first_only == all_polls[:1]


def test_a_detection_is_split_into_the_poll_that_saw_it_and_the_write_that_stored_it(
    seeded: Seeded,
) -> None:
    change = min(seeded.changes(), key=lambda c: c.at)
    _, servers = seeded.executions[change.execution_id]
    [job_id] = {script.job_id for script, sid in servers if sid == change.source_server_id}
    calls = [
        # Before the change: it cannot have seen it.
        DrsCall(change.at - 1.0, "DescribeJobs", "us-east-1", (job_id,), change.at - 0.5),
        DrsCall(change.at + 2.0, "DescribeJobs", "us-east-1", (job_id,), change.at + 2.5),
        DrsCall(change.at + 3.0, "DescribeJobs", "us-east-1", (job_id,), change.at + 3.5),
    ]
    writes = [
        ItemWrite(
            at=change.at + 4.0,
            execution_id=change.execution_id,
            servers=((change.source_server_id, change.status),),
            status=None,
        )
    ]

    found = detection(seeded, writes, {}, speed=1.0, window=None, calls=calls)

    assert found["latency"]["count"] == 1
    assert found["latency"]["p50"] == pytest.approx(4.0)
    assert found["seen_by_poll"]["p50"] == pytest.approx(2.5)
    assert found["stored_by_write"]["p50"] == pytest.approx(1.5)


def test_request_latencies_are_per_operation_in_milliseconds() -> None:
    spans = [("UpdateItem", 1.0, 1.002), ("UpdateItem", 2.0, 2.010), ("Query", 3.0, 3.5)]

    found = latencies_ms(spans)

    assert list(found) == ["Query", "UpdateItem"]
    assert found["Query"]["p50"] == pytest.approx(500.0)
    assert found["UpdateItem"]["count"] == 2
    assert found["UpdateItem"]["max"] == pytest.approx(10.0)


class _Proc:
    def __init__(self, readings: list[float]) -> None:
        self.readings = iter(readings)

    def cpu_seconds(self) -> float:
        return next(self.readings)


class _Gone:
    def cpu_seconds(self) -> float:
        raise FileNotFoundError


@pytest.mark.parametrize(
    ("machine", "loaded"),
    [
        pytest.param(6.5, False, id="nothing else ran: 5 % of a core"),
        pytest.param(8.0, True, id="another process took 20 % of a core"),
    ],
)
def test_the_cpu_meter_tells_the_tracker_helpers_and_others_apart(
    machine: float, *, loaded: bool
) -> None:
    times = itertools.chain([100.0], itertools.repeat(110.0))
    meter = CpuMeter(
        _Proc([1.0, 3.0]),  # type: ignore[arg-type] - a fake /proc reader
        {"moto": _Proc([0.0, 3.0]), "bench": _Proc([5.0, 6.0]), "gone": _Gone()},  # type: ignore[dict-item]
        clock=lambda: next(times),
        machine_busy=iter([10.0, 10.0 + machine]).__next__,
    )

    meter.begin()
    figures = meter.figures()

    percent = figures["percent_of_core"]
    assert percent["tracker"] == 20.0
    assert percent["moto"] == 30.0
    assert percent["bench"] == 10.0
    assert "gone" not in percent
    assert percent["others"] == pytest.approx(100 * (machine - 6.0) / 10)
    assert figures["loaded"] is loaded


def _run(own_p99: float, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "lateness_real_s": {"p99": own_p99 + 1.0, "percentiles": [0.0, 1.0]},
        "lateness_shares_real_s": {"own": {"p99": own_p99}},
        "series": {"resources": [1, 2, 3]},
        "log": "path",
    }


def test_repeated_runs_keep_the_median_run_in_full_and_every_run_in_short() -> None:
    runs = [_run(3.0, "a"), _run(1.0, "b"), _run(2.0, "c")]

    combined = combine_runs(runs)

    assert combined["label"] == "c"  # own lateness p99 1, 2, 3: the median is c's
    assert combined["median_run"] == 2
    assert combined["series"] == {"resources": [1, 2, 3]}
    assert [run["label"] for run in combined["runs"]] == ["a", "b", "c"]
    for run in combined["runs"]:
        assert "series" not in run
        assert "log" not in run
        assert "percentiles" not in run["lateness_real_s"]


def test_one_run_is_kept_as_it_is() -> None:
    run = _run(1.0, "only")

    assert combine_runs([run]) is run
