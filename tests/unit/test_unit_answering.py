"""core/answering on hand-built items (contract §5): which tokens are due, success or
failure, the summary's schema, and its bound."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from drs_poller.core.answering import (
    ERROR_FAILED,
    ERROR_PARTIAL,
    MAX_OUTPUT_BYTES,
    PENDING,
    SCHEMA_VERSION,
    Holder,
    answers_due,
    bound_json,
    build_summary,
    heartbeats_due,
    pending_paths,
    with_pending,
)

START = Decimal(1_800_000_000)


def server(source: str, status: str, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "SourceServerId": source,
        "RecoveryJobId": "drsjob-00000000000000001",
        "Status": status,
        "IsDrill": True,
        **extra,
    }
    if status == "LAUNCHED":
        raw.setdefault("LaunchedTime", START + 100)
    if status == "FAILED":
        raw.setdefault("Error", f"DRS reported launchStatus FAILED for {source}")
    return raw


def wave(name: str, status: str | None, servers: list[dict[str, Any]], **extra: Any):
    data: dict[str, Any] = {"WaveName": name, "Region": "us-east-1", "Servers": servers, **extra}
    if status is not None:
        data["Status"] = status
    return data


def item(status: str, waves: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "ExecutionId": "exec-1",
        "PlanId": "plan-1",
        "ExecutionType": "DRILL",
        "Status": status,
        "StartTime": START,
        "Waves": waves,
        **extra,
    }


LAUNCHED = server("s-1", "LAUNCHED")
FAILED = server("s-2", "FAILED")
RUNNING = server("s-3", "IN_PROGRESS")


@pytest.mark.parametrize(
    ("case", "data", "expected"),
    [
        # (holder path, success, error) for each answer due
        (
            "wave 1 completed while the execution polls",
            item(
                "POLLING",
                [
                    wave("w1", "COMPLETED", [LAUNCHED], TaskToken="t1"),
                    wave("w2", None, [server("s-9", "PENDING", RecoveryJobId=None)]),
                ],
                TaskToken="te",
            ),
            [("Waves[0]", True, None)],
        ),
        (
            "a running wave is due no answer",
            item("POLLING", [wave("w1", "IN_PROGRESS", [RUNNING], TaskToken="t1")]),
            [],
        ),
        (
            "execution and last wave end together",
            item(
                "COMPLETED",
                [wave("w1", "COMPLETED", [LAUNCHED], TaskToken="t1")],
                TaskToken="te",
            ),
            [("execution", True, None), ("Waves[0]", True, None)],
        ),
        (
            "an answered token is not due again",
            item(
                "COMPLETED",
                [wave("w1", "COMPLETED", [LAUNCHED], TaskToken="t1", TaskTokenAnsweredTime=1)],
                TaskToken="te",
                TaskTokenAnsweredTime=Decimal(2),
            ),
            [],
        ),
        (
            "FAILED answers with a failure",
            item("FAILED", [wave("w1", "FAILED", [FAILED])], TaskToken="te"),
            [("execution", False, ERROR_FAILED)],
        ),
        (
            "PARTIAL answers with success by default",
            item("PARTIAL", [wave("w1", "PARTIAL", [LAUNCHED, FAILED])], TaskToken="te"),
            [("execution", True, None)],
        ),
        (
            "PARTIAL answers with a failure when asked",
            item(
                "PARTIAL",
                [wave("w1", "PARTIAL", [LAUNCHED, FAILED])],
                TaskToken="te",
                TaskTokenFailOnPartial=True,
            ),
            [("execution", False, ERROR_PARTIAL)],
        ),
        (
            "a wave takes the execution's TaskTokenFailOnPartial",
            item(
                "POLLING",
                [wave("w1", "PARTIAL", [LAUNCHED, FAILED], TaskToken="t1"), wave("w2", None, [])],
                TaskTokenFailOnPartial=True,
            ),
            [("Waves[0]", False, ERROR_PARTIAL)],
        ),
        (
            "a wave's own TaskTokenFailOnPartial wins",
            item(
                "POLLING",
                [
                    wave(
                        "w1",
                        "PARTIAL",
                        [LAUNCHED, FAILED],
                        TaskToken="t1",
                        TaskTokenFailOnPartial=False,
                    )
                ],
                TaskTokenFailOnPartial=True,
            ),
            [("Waves[0]", True, None)],
        ),
        (
            "a CANCELLED execution is not the daemon's to answer",
            item("CANCELLED", [wave("w1", "COMPLETED", [LAUNCHED], TaskToken="t1")]),
            [],
        ),
        (
            "the execution token waits while it polls",
            item("POLLING", [wave("w1", "COMPLETED", [LAUNCHED])], TaskToken="te"),
            [],
        ),
    ],
)
def test_answers_due(case, data, expected):
    got = sorted((a.holder.path, a.success, a.error) for a in answers_due(data))
    assert got == sorted(expected), case


def test_heartbeats_only_for_running_holders_of_a_polling_execution():
    data = item(
        "POLLING",
        [
            wave("w1", "COMPLETED", [LAUNCHED], TaskToken="t1"),
            wave("w2", "IN_PROGRESS", [RUNNING], TaskToken="t2"),
            wave("w3", "IN_PROGRESS", [RUNNING], TaskToken="t3", TaskTokenAnsweredTime=1),
        ],
        TaskToken="te",
    )
    assert sorted(b.token for b in heartbeats_due(data)) == ["t2", "te"]
    assert heartbeats_due({**data, "Status": "COMPLETED"}) == []


def test_the_final_write_records_which_tokens_are_due():
    read = item("POLLING", [wave("w1", "IN_PROGRESS", [RUNNING], TaskToken="t1")], TaskToken="te")
    final_waves = [wave("w1", "COMPLETED", [LAUNCHED], TaskToken="t1")]
    updates = {"Waves": final_waves, "Status": "COMPLETED"}
    assert with_pending(read=read, updates=updates)[PENDING] == {"execution", "Waves[0]"}
    # Nothing due: the write is left as it was.
    plain = {"Waves": read["Waves"], "LastPolledTime": 1}
    assert with_pending(read=read, updates=plain) is plain
    assert with_pending(read=read, updates={}) == {}
    assert pending_paths(item("COMPLETED", final_waves)) == {"Waves[0]"}


def test_summary_schema_version_1():
    data = item(
        "PARTIAL",
        [
            wave("w1", "PARTIAL", [LAUNCHED, FAILED], EndTime=Decimal("1800000100.5")),
        ],
        TaskToken="te",
        EndTime=Decimal(1_800_000_200),
        RtoTargetSeconds=Decimal(900),
    )
    summary = build_summary(data, Holder())
    assert summary == {
        "schemaVersion": SCHEMA_VERSION,
        "scope": "EXECUTION",
        "executionId": "exec-1",
        "planId": "plan-1",
        "executionType": "DRILL",
        "status": "PARTIAL",
        "startTime": 1_800_000_000,
        "endTime": 1_800_000_200,
        "counts": {"servers": 2, "succeeded": 1, "failed": 1},
        "rto": {"targetSeconds": 900},
        "servers": [
            {
                "sourceServerId": "s-2",
                "waveName": "w1",
                "outcome": "FAILED",
                "status": "FAILED",
                "recoveryJobId": "drsjob-00000000000000001",
                "error": "DRS reported launchStatus FAILED for s-2",
            },
            {
                "sourceServerId": "s-1",
                "waveName": "w1",
                "outcome": "SUCCEEDED",
                "status": "LAUNCHED",
                "recoveryJobId": "drsjob-00000000000000001",
            },
        ],
    }
    wave_summary = build_summary(data, Holder(0))
    assert wave_summary["scope"] == "WAVE"
    assert wave_summary["waveName"] == "w1"
    assert wave_summary["waveIndex"] == 0
    assert wave_summary["endTime"] == 1800000100.5
    json.dumps(summary)  # plain JSON: no Decimal left


def test_measured_rto_and_rpo_slot_in_when_every_server_has_them():
    servers = [
        server("s-1", "LAUNCHED", RecoveryTimeSeconds=Decimal(300), RecoveryPointSeconds=12),
        server("s-2", "LAUNCHED", RecoveryTimeSeconds=Decimal(420), RecoveryPointSeconds=30),
    ]
    summary = build_summary(item("COMPLETED", [wave("w1", "COMPLETED", servers)]), Holder())
    assert summary["rto"] == {"measuredSeconds": 420}
    assert summary["rpo"] == {"measuredSeconds": 30}
    assert summary["servers"][0]["recoveryTimeSeconds"] in (300, 420)


def test_output_is_bounded_and_keeps_failed_servers_first():
    servers = [server(f"s-{n:05d}", "LAUNCHED") for n in range(3000)]
    servers += [server(f"f-{n:05d}", "FAILED", Error="x" * 5000) for n in range(100)]
    data = item("PARTIAL", [wave("w1", "PARTIAL", servers)], TaskToken="te")
    (answer,) = answers_due(data)
    assert len(answer.output.encode()) <= MAX_OUTPUT_BYTES
    output = json.loads(answer.output)
    assert output["serversOmitted"] > 0
    assert output["serversOmitted"] + len(output["servers"]) == 3100
    assert all(s["outcome"] == "FAILED" for s in output["servers"][:100])
    assert output["counts"] == {"servers": 3100, "succeeded": 3000, "failed": 100}
    # Each error is cut to a bounded length.
    assert len(output["servers"][0]["error"]) <= 1000


def test_bound_json_leaves_a_small_summary_whole():
    summary = {"schemaVersion": 1, "servers": [{"a": 1}]}
    assert json.loads(bound_json(summary, limit=1000)) == summary
    assert json.loads(bound_json(summary, limit=30)) == {
        "schemaVersion": 1,
        "servers": [],
        "serversOmitted": 1,
    }
