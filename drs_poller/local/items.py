"""Execution items as the API that starts drills and recoveries writes them (contract §1).

The demo's initiator and the tests build items here, so both write exactly what
the contract says an initiator writes, and nothing the daemon owns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class ServerSpec:
    source_server_id: str
    job_id: str | None = None  # None: not started yet (a later wave)
    failed_to_start: str | None = None  # the initiator's error when StartRecovery failed


@dataclass(frozen=True)
class WaveSpec:
    name: str
    region: str
    servers: tuple[ServerSpec, ...]
    protection_group_id: str = "pg-local"
    mode: str | None = None
    # The AWS account of the wave's DRS (12 digits); None: the attribute is left out,
    # which means the daemon's own account (contract §1).
    account_id: str | None = None


@dataclass(frozen=True)
class ExecutionSpec:
    execution_id: str
    waves: tuple[WaveSpec, ...]
    execution_type: str | None = "DRILL"  # None: the attribute is left out (means DRILL)
    plan_id: str = "plan-local"
    start_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _number(value: float) -> Decimal:
    return Decimal(f"{value:.3f}")


def server_map(spec: ServerSpec, *, is_drill: bool, start_time: float) -> dict[str, Any]:
    item: dict[str, Any] = {
        "SourceServerId": spec.source_server_id,
        "IsDrill": is_drill,
        "Status": "PENDING",
    }
    if spec.job_id is not None:
        item["RecoveryJobId"] = spec.job_id
        item["LaunchTime"] = _number(start_time)
    if spec.failed_to_start is not None:
        item["Status"] = "FAILED"
        item["Error"] = spec.failed_to_start
    return item


def wave_map(spec: WaveSpec, *, execution_type: str, start_time: float) -> dict[str, Any]:
    mode = spec.mode or execution_type
    started = any(s.job_id or s.failed_to_start for s in spec.servers)
    wave: dict[str, Any] = {
        "WaveName": spec.name,
        "ProtectionGroupId": spec.protection_group_id,
        "Region": spec.region,
        "Status": "IN_PROGRESS" if started else "PENDING",
        "StartTime": _number(start_time),
        "Servers": [
            server_map(s, is_drill=mode == "DRILL", start_time=start_time) for s in spec.servers
        ],
    }
    if spec.mode is not None:
        wave["ExecutionMode"] = spec.mode
    if spec.account_id is not None:
        wave["AccountId"] = spec.account_id
    return wave


def execution_item(spec: ExecutionSpec) -> dict[str, Any]:
    """A POLLING execution item, as the initiator writes it after starting DRS jobs."""
    execution_type = spec.execution_type or "DRILL"
    item: dict[str, Any] = {
        "ExecutionId": spec.execution_id,
        "PlanId": spec.plan_id,
        "Status": "POLLING",
        "StartTime": _number(spec.start_time),
        "Waves": [
            wave_map(w, execution_type=execution_type, start_time=spec.start_time)
            for w in spec.waves
        ],
        **spec.extra,
    }
    if spec.execution_type is not None:
        item["ExecutionType"] = spec.execution_type
    return item
