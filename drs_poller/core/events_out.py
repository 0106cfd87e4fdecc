"""Finalization events: what drs-poller puts on EventBridge when a wave or an execution
reaches its final status (docs/events.md, "Events out").

Pure: :func:`events_due` reads an item (as the store deserializes it) and says which
final statuses it holds that have no event recorded yet; :func:`execution_detail` and
:func:`wave_detail` build the event's ``Detail`` from that same item, reading the
evidence through :func:`drs_poller.core.report.build_report`, so that the event, the
report and the table always say the same thing.

Every copy of one final status carries the same ``IdempotencyKey``
(:func:`idempotency_key`): a hash of the schema, ExecutionId, PlanId, the scope
(``execution`` or ``wave-<n>``) and the final status, and of nothing that changes with
a retry, a restart or a replica. Consumers drop a duplicate by it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from drs_poller.core.models import FINAL_STATUSES
from drs_poller.core.report import as_of_time, build_report, compact, number, text

if TYPE_CHECKING:
    from collections.abc import Mapping

SOURCE: Final = "drs-poller"
EXECUTION_FINISHED: Final = "DRS Poller Execution Finished"
WAVE_FINISHED: Final = "DRS Poller Wave Finished"
SCHEMA: Final = "drs-poller/event"
VERSION: Final = 1
# The item attribute (a string set) naming the final statuses whose event EventBridge
# accepted: ``execution:<Status>`` and ``wave-<n>:<Status>``.
PUBLISHED: Final = "EventsPublished"
# A PutEvents entry may be 256 KB in all (Source, DetailType, Detail, Resources). The
# detail is kept well below it; what is cut is said in the detail itself.
MAX_DETAIL_BYTES: Final = 200_000
MAX_FAILED_SERVERS: Final = 100
REASON_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class Finished:
    """One final status of an execution (``wave`` None) or of one of its waves (``wave``
    is the wave's number, from 1)."""

    execution_id: str
    plan_id: str
    status: str
    wave: int | None = None

    @property
    def scope(self) -> str:
        return "execution" if self.wave is None else f"wave-{self.wave}"

    @property
    def tag(self) -> str:
        """What :data:`PUBLISHED` holds once EventBridge accepted its event."""
        return f"{self.scope}:{self.status}"

    @property
    def detail_type(self) -> str:
        return EXECUTION_FINISHED if self.wave is None else WAVE_FINISHED

    @property
    def key(self) -> str:
        return idempotency_key(
            execution_id=self.execution_id,
            plan_id=self.plan_id,
            scope=self.scope,
            status=self.status,
        )


def idempotency_key(*, execution_id: str, plan_id: str, scope: str, status: str) -> str:
    """sha256 (hex) of ``["drs-poller/event", 1, ExecutionId, PlanId, scope, status]`` as
    compact JSON: the same for every copy of one final status, whoever sends it."""
    material = json.dumps(
        [SCHEMA, VERSION, execution_id, plan_id, scope, status], separators=(",", ":")
    )
    return hashlib.sha256(material.encode()).hexdigest()


def published_tags(item: Mapping[str, Any]) -> frozenset[str]:
    value = item.get(PUBLISHED)
    if isinstance(value, set | frozenset | list | tuple):
        return frozenset(str(tag) for tag in value)
    return frozenset()


def _waves(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    waves = item.get("Waves")
    if not isinstance(waves, list):
        return []
    return [wave if isinstance(wave, dict) else {} for wave in waves]


def final_statuses(item: Mapping[str, Any]) -> list[Finished]:
    """Every final status ``item`` holds: its waves' first, in order, then the
    execution's. Empty for an item without ExecutionId or PlanId."""
    execution_id, plan_id = text(item.get("ExecutionId")), text(item.get("PlanId"))
    if execution_id is None or plan_id is None:
        return []
    found = [
        Finished(execution_id, plan_id, str(wave.get("Status")), wave=number_ + 1)
        for number_, wave in enumerate(_waves(item))
        if wave.get("Status") in FINAL_STATUSES
    ]
    if item.get("Status") in FINAL_STATUSES:
        found.append(Finished(execution_id, plan_id, str(item.get("Status"))))
    return found


def events_due(item: Mapping[str, Any]) -> list[Finished]:
    """The final statuses of ``item`` whose event is not recorded as published."""
    published = published_tags(item)
    return [finished for finished in final_statuses(item) if finished.tag not in published]


# --- the detail ---------------------------------------------------------------------------


def _judgement(section: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The report's target section (docs/report.md) in the event's spelling."""
    if not section:
        return None
    return compact(
        {
            "Verdict": section.get("verdict"),
            "TargetSeconds": section.get("targetSeconds"),
            "MeasuredSeconds": section.get("measuredSeconds"),
            "Note": section.get("note"),
        }
    )


def _failed_servers(waves: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    failed = []
    for wave in waves:
        for server in wave.get("servers", []):
            if server.get("outcome") != "FAILED":
                continue
            reason = server.get("error")
            failed.append(
                compact(
                    {
                        "WaveNumber": int(wave["index"]) + 1,
                        "SourceServerId": server.get("sourceServerId"),
                        "Status": server.get("status"),
                        "Reason": None if reason is None else str(reason)[:REASON_CHARS],
                        "RecoveryJobId": server.get("recoveryJobId"),
                    }
                )
            )
    return failed


def _wave_summary(wave: Mapping[str, Any]) -> dict[str, Any]:
    return compact(
        {
            "WaveNumber": int(wave["index"]) + 1,
            "WaveName": wave.get("waveName"),
            "Region": wave.get("region"),
            "Status": wave.get("status"),
            "EndTime": wave.get("endTime"),
        }
    )


def _bounded(detail: dict[str, Any], failed: list[dict[str, Any]]) -> dict[str, Any]:
    """``detail`` with as many failed servers as fit (at most MAX_FAILED_SERVERS, and the
    whole detail under MAX_DETAIL_BYTES); the count left out in FailedServersOmitted."""
    keep = min(len(failed), MAX_FAILED_SERVERS)
    while True:
        bounded = {**detail, "FailedServers": failed[:keep]}
        if keep < len(failed):
            bounded["FailedServersOmitted"] = len(failed) - keep
        if keep == 0 or len(detail_json(bounded).encode()) <= MAX_DETAIL_BYTES:
            return bounded
        keep //= 2


def _report_location(execution_id: str, report: ReportLocation | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "Bucket": report.bucket,
        "HtmlKey": f"{report.prefix}{execution_id}.html",
        "JsonKey": f"{report.prefix}{execution_id}.json",
    }


@dataclass(frozen=True, slots=True)
class ReportLocation:
    """Where the daemon puts the drill reports (DRS_POLLER_REPORT_BUCKET and _PREFIX)."""

    bucket: str
    prefix: str


def _common(item: Mapping[str, Any], finished: Finished) -> dict[str, Any]:
    return {
        "Schema": SCHEMA,
        "SchemaVersion": VERSION,
        "IdempotencyKey": finished.key,
        "ExecutionId": finished.execution_id,
        "PlanId": finished.plan_id,
        "ExecutionType": text(item.get("ExecutionType")) or "DRILL",
    }


def execution_detail(
    item: Mapping[str, Any], finished: Finished, *, report: ReportLocation | None = None
) -> dict[str, Any]:
    """The detail of "DRS Poller Execution Finished" (docs/events.md)."""
    doc = build_report(item, as_of=as_of_time(item, now=0.0))
    execution = doc["execution"]
    detail = compact(
        {
            **_common(item, finished),
            "Status": finished.status,
            "StartTime": execution.get("startTime"),
            "EndTime": execution.get("endTime"),
            "DurationSeconds": execution.get("durationSeconds"),
            "ErrorMessage": execution.get("errorMessage"),
            "Rto": _judgement(doc.get("rto")),
            "Rpo": _judgement(doc.get("rpo")),
            "Counts": {
                "Waves": doc["counts"]["waves"],
                "Servers": doc["counts"]["servers"],
                "Succeeded": doc["counts"]["succeeded"],
                "Failed": doc["counts"]["failed"],
            },
            "Waves": [_wave_summary(wave) for wave in doc["waves"]],
            "Report": _report_location(finished.execution_id, report),
        }
    )
    return _bounded(detail, _failed_servers(doc["waves"]))


def wave_detail(item: Mapping[str, Any], finished: Finished) -> dict[str, Any]:
    """The detail of "DRS Poller Wave Finished" (docs/events.md)."""
    assert finished.wave is not None  # noqa: S101 - a wave's final status
    doc = build_report(item, as_of=as_of_time(item, now=0.0))
    wave = doc["waves"][finished.wave - 1]
    detail = compact(
        {
            **_common(item, finished),
            "WaveNumber": finished.wave,
            "WaveName": wave.get("waveName"),
            "Region": wave.get("region"),
            "Status": finished.status,
            "ExecutionStatus": text(item.get("Status")),
            "StartTime": wave.get("startTime"),
            "EndTime": wave.get("endTime"),
            "Error": wave.get("error"),
            "Rto": _judgement(wave.get("rto")),
            "Rpo": _judgement(wave.get("rpo")),
            "Servers": len(wave.get("servers", [])),
        }
    )
    return _bounded(detail, _failed_servers([wave]))


def detail_of(
    item: Mapping[str, Any], finished: Finished, *, report: ReportLocation | None = None
) -> dict[str, Any]:
    if finished.wave is None:
        return execution_detail(item, finished, report=report)
    return wave_detail(item, finished)


def detail_json(detail: Mapping[str, Any]) -> str:
    """The detail as PutEvents sends it: compact JSON, UTF-8 as is."""
    return json.dumps(detail, separators=(",", ":"), ensure_ascii=False)


def end_time(item: Mapping[str, Any]) -> float | None:
    value = number(item.get("EndTime"))
    return None if value is None else float(value)
