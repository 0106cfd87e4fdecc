"""Sample execution items for the report tests (golden files, the browser test, the
README's screenshot), as the store deserializes them: numbers as ``Decimal``.

The evidence attributes follow the shapes of issue 13 (``Timeline``,
``RecoveryTimeSeconds``, ``RecoveryPoint*``, ``Stalled``, targets and verdicts). Each
sample fixes its own as-of time, so every rendering is deterministic.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

T0 = 1_800_000_000  # 2027-01-15 08:00:00 UTC


def _n(value: float) -> Decimal:
    return Decimal(str(value))


def _timeline(**offsets: int) -> dict[str, Decimal]:
    return {name: _n(T0 + offset) for name, offset in offsets.items()}


def _launched_drill_server(
    n: int, *, wave_start: int, snapshot: int, conversion: int, launched: int, rpo: int
) -> dict[str, Any]:
    job_start = wave_start + 5
    return {
        "SourceServerId": f"s-{n:017d}",
        "RecoveryJobId": f"drsjob-{wave_start:08d}{n:09d}",
        "Status": "LAUNCHED",
        "IsDrill": True,
        "LaunchedTime": _n(T0 + launched),
        "RecoveryInstanceId": f"i-0rec{n:013d}",
        "InstanceId": f"i-0{n:016x}",
        "InstanceType": "m5.large",
        "PrivateIp": f"10.0.1.{n}",
        "Timeline": _timeline(
            JobStart=job_start,
            SnapshotStart=job_start + 15,
            SnapshotEnd=job_start + 15 + snapshot,
            ConversionStart=job_start + 25 + snapshot,
            ConversionEnd=job_start + 25 + snapshot + conversion,
            LaunchStart=job_start + 30 + snapshot + conversion,
            Launched=launched,
        ),
        "RecoveryTimeSeconds": _n(launched - wave_start),
        "RecoveryPointTime": _n(T0 + job_start - rpo),
        "RecoveryPointSeconds": _n(rpo),
    }


def drill_completed() -> tuple[dict[str, Any], float]:
    """A DRILL in two waves, every server launched, RTO and RPO targets met."""
    wave1 = [
        _launched_drill_server(
            1, wave_start=0, snapshot=110, conversion=720, launched=1240, rpo=312
        ),
        _launched_drill_server(
            2, wave_start=0, snapshot=95, conversion=760, launched=1262, rpo=280
        ),
    ]
    wave2 = [
        _launched_drill_server(
            3, wave_start=1300, snapshot=60, conversion=330, launched=1815, rpo=190
        ),
    ]
    item = {
        "ExecutionId": "drill-2027-01-15-payments",
        "PlanId": "plan-payments",
        "ExecutionType": "DRILL",
        "Status": "COMPLETED",
        "StartTime": _n(T0),
        "EndTime": _n(T0 + 1830),
        "LastPolledTime": _n(T0 + 1830),
        "RtoTargetSeconds": _n(2400),
        "RtoTargetMet": True,
        "RpoTargetSeconds": _n(900),
        "RpoTargetMet": True,
        "RecoveryTimeSeconds": _n(1815),
        "RecoveryPointSeconds": _n(312),
        "Waves": [
            {
                "WaveName": "web tier",
                "ProtectionGroupId": "pg-web",
                "Region": "us-east-1",
                "Status": "COMPLETED",
                "StartTime": _n(T0),
                "EndTime": _n(T0 + 1270),
                "RecoveryTimeSeconds": _n(1262),
                "RecoveryPointSeconds": _n(312),
                "Servers": wave1,
            },
            {
                "WaveName": "database",
                "ProtectionGroupId": "pg-db",
                "Region": "us-west-2",
                "Status": "COMPLETED",
                "StartTime": _n(T0 + 1300),
                "EndTime": _n(T0 + 1830),
                "RecoveryTimeSeconds": _n(515),
                "RecoveryPointSeconds": _n(190),
                "RtoTargetSeconds": _n(900),
                "RtoTargetMet": True,
                "Servers": wave2,
            },
        ],
    }
    return item, float(T0 + 1830)


def _run(
    name: str, status: str, *, optional: bool = False, reason: str | None = None
) -> dict[str, Any]:
    run = {
        "Name": name,
        "ActionId": f"action-{name}",
        "RunId": f"run-{name}",
        "Status": status,
        "Optional": optional,
    }
    if reason is not None:
        run["FailureReason"] = reason
    return run


HOSTILE_REASON = 'exit code 2: relation "orders" does not exist | <script>alert(1)</script> & more'


def recovery_mixed() -> tuple[dict[str, Any], float]:
    """A RECOVERY still polling: wave 1 ended PARTIAL (one launch failed with DRS's
    reason, one required post-launch action failed, its RTO target missed); wave 2 runs,
    with one server stalled in conversion and one in its post-launch actions."""
    as_of = T0 + 2400
    launched_ok = {
        "SourceServerId": "s-00000000000000a1",
        "RecoveryJobId": "drsjob-00000000000000a",
        "Status": "LAUNCHED",
        "IsDrill": False,
        "LaunchedTime": _n(T0 + 1190),
        "RecoveryInstanceId": "i-0recaaaaaaaaaaaa1",
        "InstanceId": "i-0aaaaaaaaaaaaaaa1",
        "Hostname": "app-1.internal",
        "PostLaunchActionsStatus": "COMPLETED",
        "PostLaunchActionsCompleted": _n(T0 + 1620),
        "PostLaunchActions": [
            _run("AWS-CreateImage", "SUCCEEDED"),
            _run("configure-app", "SUCCEEDED"),
        ],
        "Timeline": _timeline(
            JobStart=4,
            SnapshotStart=20,
            SnapshotEnd=140,
            ConversionStart=150,
            ConversionEnd=900,
            LaunchStart=905,
            Launched=1190,
            ActionsDone=1620,
        ),
        "RecoveryTimeSeconds": _n(1190),
        "RecoveryTimeToActionsSeconds": _n(1620),
        "RecoveryPointTime": _n(T0 + 4 - 420),
        "RecoveryPointSeconds": _n(420),
    }
    launch_failed = {
        "SourceServerId": "s-00000000000000a2",
        "RecoveryJobId": "drsjob-00000000000000a",
        "Status": "FAILED",
        "IsDrill": False,
        "Error": (
            "LAUNCH_FAILED: Failed to launch recovery instance: the instance type r5.4xlarge "
            "is not supported in availability zone us-east-1e"
        ),
        "Timeline": _timeline(
            JobStart=4,
            SnapshotStart=22,
            SnapshotEnd=150,
            ConversionStart=160,
            ConversionEnd=880,
            LaunchStart=890,
            LaunchFailed=1010,
        ),
        "RecoveryPointTime": _n(T0 + 4 - 380),
        "RecoveryPointSeconds": _n(380),
    }
    actions_failed = {
        "SourceServerId": "s-00000000000000a3",
        "RecoveryJobId": "drsjob-00000000000000a",
        "Status": "LAUNCHED",
        "IsDrill": False,
        "LaunchedTime": _n(T0 + 1230),
        "RecoveryInstanceId": "i-0recaaaaaaaaaaaa3",
        "InstanceId": "i-0aaaaaaaaaaaaaaa3",
        "PostLaunchActionsStatus": "FAILED",
        "Error": "required post-launch action run-db-migrations FAILED: " + HOSTILE_REASON,
        "PostLaunchActions": [
            _run("run-db-migrations", "FAILED", reason=HOSTILE_REASON),
            _run("tag-instance", "FAILED", optional=True, reason="AccessDenied: ec2:CreateTags"),
            _run("AWS-CreateImage", "SUCCEEDED"),
        ],
        "Timeline": _timeline(
            JobStart=4,
            SnapshotStart=18,
            SnapshotEnd=130,
            ConversionStart=140,
            ConversionEnd=930,
            LaunchStart=940,
            Launched=1230,
            ActionsDone=1710,
        ),
        "RecoveryTimeSeconds": _n(1230),
        "RecoveryTimeToActionsSeconds": _n(1710),
    }
    stalled = {
        "SourceServerId": "s-00000000000000b1",
        "RecoveryJobId": "drsjob-00000000000000b",
        "Status": "IN_PROGRESS",
        "IsDrill": False,
        "Timeline": _timeline(
            JobStart=1804, SnapshotStart=1815, SnapshotEnd=1900, ConversionStart=1910
        ),
        "Stalled": {"Phase": "CONVERSION", "Since": _n(T0 + 1910), "BoundSeconds": _n(420)},
    }
    in_actions = {
        "SourceServerId": "s-00000000000000b2",
        "RecoveryJobId": "drsjob-00000000000000b",
        "Status": "LAUNCHED",
        "IsDrill": False,
        "LaunchedTime": _n(T0 + 2290),
        "RecoveryInstanceId": "i-0recbbbbbbbbbbbb2",
        "InstanceId": "i-0bbbbbbbbbbbbbbb2",
        "PostLaunchActionsStatus": "IN_PROGRESS",
        "PostLaunchActions": [_run("configure-db", "IN_PROGRESS")],
        "Timeline": _timeline(
            JobStart=1804,
            SnapshotStart=1812,
            SnapshotEnd=1880,
            ConversionStart=1890,
            ConversionEnd=2200,
            LaunchStart=2205,
            Launched=2290,
        ),
        "RecoveryTimeSeconds": _n(490),
        "RecoveryPointTime": _n(T0 + 1804 - 250),
        "RecoveryPointSeconds": _n(250),
    }
    item = {
        "ExecutionId": "recovery-2027-01-15-orders",
        "PlanId": "plan-orders",
        "ExecutionType": "RECOVERY",
        "Status": "POLLING",
        "Phase": "IN_PROGRESS",
        "StartTime": _n(T0),
        "LastPolledTime": _n(as_of - 20),
        "RtoTargetSeconds": _n(2700),
        "RpoTargetSeconds": _n(600),
        "Waves": [
            {
                "WaveName": "application",
                "Region": "us-east-1",
                "Status": "PARTIAL",
                "StartTime": _n(T0),
                "EndTime": _n(T0 + 1740),
                "RecoveryTimeSeconds": _n(1230),
                "RecoveryTimeToActionsSeconds": _n(1710),
                "RecoveryPointSeconds": _n(420),
                "RtoTargetSeconds": _n(1500),
                "RtoTargetMet": False,
                "RtoTargetNote": "1 server failed",
                "RpoTargetSeconds": _n(600),
                "RpoTargetMet": False,
                "RpoTargetNote": "1 server has no data timestamp",
                "Servers": [launched_ok, launch_failed, actions_failed],
            },
            {
                "WaveName": "database",
                "Region": "us-east-1",
                "Status": "IN_PROGRESS",
                "StartTime": _n(T0 + 1800),
                "Servers": [stalled, in_actions],
            },
        ],
    }
    return item, float(as_of)


def recovery_failed() -> tuple[dict[str, Any], float]:
    """A RECOVERY that FAILED: its only server's launch failed; the RTO target missed."""
    item = {
        "ExecutionId": "recovery-2027-01-15-ledger",
        "PlanId": "plan-ledger",
        "ExecutionType": "RECOVERY",
        "Status": "FAILED",
        "StartTime": _n(T0),
        "EndTime": _n(T0 + 960),
        "ErrorMessage": "every server failed",
        "RtoTargetSeconds": _n(1800),
        "RtoTargetMet": False,
        "RtoTargetNote": "1 server failed",
        "Waves": [
            {
                "WaveName": "ledger",
                "Region": "eu-west-1",
                "Status": "FAILED",
                "StartTime": _n(T0),
                "EndTime": _n(T0 + 960),
                "Servers": [
                    {
                        "SourceServerId": "s-00000000000000c1",
                        "RecoveryJobId": "drsjob-00000000000000c",
                        "Status": "FAILED",
                        "IsDrill": False,
                        "Error": "SNAPSHOT_FAILED: the source server's replication is stalled",
                        "Timeline": _timeline(JobStart=3, SnapshotStart=15, LaunchFailed=950),
                    }
                ],
            }
        ],
    }
    return item, float(T0 + 960)


def legacy_drill() -> tuple[dict[str, Any], float]:
    """An item written before the evidence existed: no Timeline, no figures, a target
    that was never judged."""
    item = {
        "ExecutionId": "drill-2026-11-02-legacy",
        "PlanId": "plan-legacy",
        "Status": "COMPLETED",
        "StartTime": _n(T0 - 86400),
        "EndTime": _n(T0 - 86400 + 1500.25),
        "RtoTargetSeconds": _n(3600),
        "Waves": [
            {
                "WaveName": "all",
                "Region": "us-east-1",
                "Status": "COMPLETED",
                "StartTime": _n(T0 - 86400),
                "EndTime": _n(T0 - 86400 + 1500.25),
                "Servers": [
                    {
                        "SourceServerId": f"s-0000000000000{n}d0",
                        "RecoveryJobId": "drsjob-0000000000000d0",
                        "Status": "LAUNCHED",
                        "LaunchedTime": _n(T0 - 86400 + 1400 + n),
                        "InstanceId": f"i-0ddddddddddddddd{n}",
                        "TransitionHistory": [
                            {"status": "PENDING", "timestamp": _n(T0 - 86400 + 10)},
                            {"status": "LAUNCHED", "timestamp": _n(T0 - 86400 + 1400 + n)},
                        ],
                    }
                    for n in (1, 2)
                ],
            }
        ],
    }
    return item, float(T0 - 86400 + 1500.25)


SAMPLES = {
    "drill-completed": drill_completed,
    "recovery-mixed": recovery_mixed,
    "recovery-failed": recovery_failed,
    "legacy-drill": legacy_drill,
}
