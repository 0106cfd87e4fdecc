"""The finalization events' detail (core/events_out.py, docs/events.md): which final
statuses an item is due an event for, the idempotency key, the schema, and the bound on
the detail's size."""

from __future__ import annotations

import copy
import json

import pytest
from report_samples import SAMPLES, drill_completed, recovery_failed, recovery_mixed

from drs_poller.core.events_out import (
    EXECUTION_FINISHED,
    MAX_DETAIL_BYTES,
    MAX_FAILED_SERVERS,
    PUBLISHED,
    WAVE_FINISHED,
    Finished,
    ReportLocation,
    detail_json,
    detail_of,
    events_due,
    execution_detail,
    final_statuses,
    idempotency_key,
    wave_detail,
)


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("drill-completed", ["wave-1:COMPLETED", "wave-2:COMPLETED", "execution:COMPLETED"]),
        ("recovery-mixed", ["wave-1:PARTIAL"]),  # still POLLING; wave 2 runs
        ("recovery-failed", ["wave-1:FAILED", "execution:FAILED"]),
    ],
)
def test_final_statuses_waves_first_then_the_execution(sample, expected):
    item, _ = SAMPLES[sample]()
    assert [f.tag for f in final_statuses(item)] == expected


@pytest.mark.parametrize(
    ("published", "due"),
    [
        (None, ["wave-1:FAILED", "execution:FAILED"]),
        ({"wave-1:FAILED"}, ["execution:FAILED"]),
        ({"wave-1:FAILED", "execution:FAILED"}, []),
        # A tag of another status does not cover this one.
        ({"wave-1:COMPLETED"}, ["wave-1:FAILED", "execution:FAILED"]),
    ],
)
def test_events_due_leave_out_what_is_recorded(published, due):
    item, _ = recovery_failed()
    if published is not None:
        item[PUBLISHED] = published
    assert [f.tag for f in events_due(item)] == due


@pytest.mark.parametrize(
    "item",
    [
        {"PlanId": "p", "Status": "COMPLETED", "Waves": []},  # no ExecutionId
        {"ExecutionId": "e", "Status": "COMPLETED"},  # no PlanId
        {"ExecutionId": "e", "PlanId": "p", "Status": "POLLING", "Waves": "not a list"},
        {"ExecutionId": "e", "PlanId": "p", "Status": "CANCELLED", "Waves": [{"Status": "X"}]},
    ],
)
def test_nothing_is_due_without_a_key_or_a_final_status(item):
    assert events_due(item) == []


def test_the_idempotency_key_depends_on_the_final_status_and_nothing_else():
    one = Finished("ex-1", "plan-1", "COMPLETED", wave=2)
    assert one.key == Finished("ex-1", "plan-1", "COMPLETED", wave=2).key
    assert one.key == idempotency_key(
        execution_id="ex-1", plan_id="plan-1", scope="wave-2", status="COMPLETED"
    )
    others = {
        Finished("ex-1", "plan-1", "COMPLETED", wave=1).key,
        Finished("ex-1", "plan-1", "PARTIAL", wave=2).key,
        Finished("ex-1", "plan-1", "COMPLETED").key,
        Finished("ex-2", "plan-1", "COMPLETED", wave=2).key,
        Finished("ex-1", "plan-2", "COMPLETED", wave=2).key,
    }
    assert one.key not in others
    assert len(others) == 5
    assert len(one.key) == 64


def test_the_key_is_the_same_for_an_item_read_again_later():
    item, _ = drill_completed()
    later = copy.deepcopy(item)
    later["LastPolledTime"] = later["EndTime"] + 600
    later[PUBLISHED] = {"wave-1:COMPLETED"}
    first = {f.tag: detail_of(item, f)["IdempotencyKey"] for f in final_statuses(item)}
    again = {f.tag: detail_of(later, f)["IdempotencyKey"] for f in final_statuses(later)}
    assert first == again


def test_execution_detail_of_a_failed_recovery():
    item, _ = recovery_failed()
    finished = final_statuses(item)[-1]
    assert finished.detail_type == EXECUTION_FINISHED
    detail = execution_detail(
        item, finished, report=ReportLocation(bucket="reports", prefix="drills/")
    )
    assert detail == {
        "Schema": "drs-poller/event",
        "SchemaVersion": 1,
        "IdempotencyKey": finished.key,
        "ExecutionId": "recovery-2027-01-15-ledger",
        "PlanId": "plan-ledger",
        "ExecutionType": "RECOVERY",
        "Status": "FAILED",
        "StartTime": 1_800_000_000,
        "EndTime": 1_800_000_960,
        "DurationSeconds": 960,
        "ErrorMessage": "every server failed",
        "Rto": {"Verdict": "MISSED", "TargetSeconds": 1800, "Note": "1 server failed"},
        "Rpo": {"Verdict": "NO_TARGET"},
        "Counts": {"Waves": 1, "Servers": 1, "Succeeded": 0, "Failed": 1},
        "Waves": [
            {
                "WaveNumber": 1,
                "WaveName": "ledger",
                "Region": "eu-west-1",
                "Status": "FAILED",
                "EndTime": 1_800_000_960,
            }
        ],
        "Report": {
            "Bucket": "reports",
            "HtmlKey": "drills/recovery-2027-01-15-ledger.html",
            "JsonKey": "drills/recovery-2027-01-15-ledger.json",
        },
        "FailedServers": [
            {
                "WaveNumber": 1,
                "SourceServerId": "s-00000000000000c1",
                "Status": "FAILED",
                "Reason": "SNAPSHOT_FAILED: the source server's replication is stalled",
                "RecoveryJobId": "drsjob-00000000000000c",
            }
        ],
    }
    json.loads(detail_json(detail))  # JSON as sent


def test_no_report_location_without_a_report_bucket():
    item, _ = recovery_failed()
    assert "Report" not in execution_detail(item, final_statuses(item)[-1])


def test_wave_detail_of_a_wave_that_ended_while_the_execution_runs():
    item, _ = recovery_mixed()
    (finished,) = final_statuses(item)
    assert finished.detail_type == WAVE_FINISHED
    detail = wave_detail(item, finished)
    assert detail["WaveNumber"] == 1
    assert detail["Status"] == "PARTIAL"
    assert detail["ExecutionStatus"] == "POLLING"
    assert detail["IdempotencyKey"] == finished.key
    assert detail["Rto"]["Verdict"] == "MISSED"
    assert [s["SourceServerId"] for s in detail["FailedServers"]]
    assert all(s["WaveNumber"] == 1 for s in detail["FailedServers"])
    assert "Report" not in detail


def _many_failed(count: int, *, reason_chars: int) -> dict:
    servers = [
        {
            "SourceServerId": f"s-{n:017d}",
            "RecoveryJobId": f"drsjob-{n:017d}",
            "Status": "FAILED",
            "IsDrill": True,
            "Error": "x" * reason_chars,
        }
        for n in range(count)
    ]
    return {
        "ExecutionId": "ex-big",
        "PlanId": "plan-big",
        "Status": "FAILED",
        "StartTime": 1_800_000_000,
        "EndTime": 1_800_000_100,
        "Waves": [{"WaveName": "w", "Region": "us-east-1", "Status": "FAILED", "Servers": servers}],
    }


@pytest.mark.parametrize(
    ("count", "reason_chars", "kept"),
    [
        (3, 10, 3),
        (MAX_FAILED_SERVERS + 50, 10, MAX_FAILED_SERVERS),  # the count bound
        (MAX_FAILED_SERVERS, 5000, MAX_FAILED_SERVERS),  # reasons cut to 1000 chars: fits
    ],
)
def test_failed_servers_are_bounded_and_what_is_cut_is_said(count, reason_chars, kept):
    item = _many_failed(count, reason_chars=reason_chars)
    for finished in final_statuses(item):
        detail = detail_of(item, finished)
        assert len(detail["FailedServers"]) == kept
        assert detail.get("FailedServersOmitted", 0) == count - kept
        assert len(detail_json(detail).encode()) <= MAX_DETAIL_BYTES
        assert all(len(s["Reason"]) <= 1000 for s in detail["FailedServers"])


def test_a_detail_over_the_byte_bound_keeps_fewer_servers(monkeypatch):
    monkeypatch.setattr("drs_poller.core.events_out.MAX_DETAIL_BYTES", 20_000)
    item = _many_failed(80, reason_chars=900)
    detail = execution_detail(item, final_statuses(item)[-1])
    assert len(detail_json(detail).encode()) <= 20_000
    assert 0 < len(detail["FailedServers"]) < 80
    assert detail["FailedServersOmitted"] == 80 - len(detail["FailedServers"])


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_every_sample_gives_a_detail_for_each_final_status(sample):
    item, _ = SAMPLES[sample]()
    for finished in final_statuses(item):
        detail = detail_of(item, finished)
        assert detail["Status"] == finished.status
        assert detail["IdempotencyKey"] == finished.key
        assert ("WaveNumber" in detail) == (finished.wave is not None)
