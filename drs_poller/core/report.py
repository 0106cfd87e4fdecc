"""The drill report: what an execution item says about one drill or recovery, as a
versioned JSON document (schema ``drs-poller/report`` version 1, docs/report.md).

Everything here is pure: :func:`build_report` reads a deserialized item (numbers as
``Decimal``, as the store gives them) and returns the document; ``report_md`` and
``report_html`` render that same document, so the three formats always agree. The
report reads what the daemon wrote and never judges anything itself: the measured RTO
and RPO, the stalls and the target verdicts are the daemon's evidence (issue 13),
shown as they are, and "not measured" where an item does not hold them (an item
written before the evidence existed still renders).

The report is a function of the item and its "as of" time only (no clock is read): an
open phase (a start and no end yet) is drawn up to the as-of time. For a finished
execution the as-of time is its ``EndTime`` (:func:`as_of_time`), so the report the
daemon puts to S3 and the one ``drs-poller report`` prints are the same bytes.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from drs_poller.core.completion import server_outcome
from drs_poller.core.evidence import TIMELINE_KEYS
from drs_poller.core.models import (
    FINAL_STATUSES,
    ExecutionType,
    MalformedItemError,
    parse_execution,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drs_poller.core.models import Execution

SCHEMA: Final = "drs-poller/report"
VERSION: Final = 1

PHASES: Final = ("SNAPSHOT", "CONVERSION", "LAUNCH", "POST_LAUNCH_ACTIONS")
PHASE_LABELS: Final = {
    "SNAPSHOT": "snapshot",
    "CONVERSION": "conversion",
    "LAUNCH": "launch",
    "POST_LAUNCH_ACTIONS": "post-launch actions",
}
# A phase's state in the report: it ended, it ended in a failure, or no end is recorded
# (drawn up to the as-of time).
ENDED: Final = "ENDED"
FAILED: Final = "FAILED"
OPEN: Final = "OPEN"
# Run statuses that are a failure of the action (NOT_RUN: an active launch action DRS
# never listed a run for, contract §1).
FAILED_RUNS: Final = frozenset({"FAILED", "NOT_RUN"})
NOT_CONFIGURED: Final = "NOT_CONFIGURED"


# --- values from the item ---------------------------------------------------------------


def number(value: Any) -> int | float | None:
    """A number from the item (``Decimal``), as JSON has it; anything else is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    result = float(value)
    if not math.isfinite(result):
        return None
    return int(result) if result.is_integer() else result


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def compact(mapping: dict[str, Any]) -> dict[str, Any]:
    """Only what is known: absent means unknown, never null."""
    return {k: v for k, v in mapping.items() if v is not None}


def _maps(value: Any) -> list[Mapping[str, Any]]:
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


# --- the document -------------------------------------------------------------------------


def as_of_time(item: Mapping[str, Any], *, now: float) -> float:
    """The time a report of ``item`` stands at: the ``EndTime`` of a finished execution,
    otherwise ``now``."""
    end = number(item.get("EndTime"))
    if item.get("Status") in FINAL_STATUSES and end is not None:
        return float(end)
    return now


def judgement(data: Mapping[str, Any], *, kind: str, measured: Any) -> dict[str, Any]:
    """A target and its verdict, as the daemon wrote them (``RtoTargetSeconds``,
    ``RtoTargetMet``, ``RtoTargetNote``; the same for Rpo) beside the measured figure.

    ``verdict``: ``MET`` or ``MISSED`` (the daemon's ``...TargetMet``), ``NOT_JUDGED``
    (a target and no verdict yet), ``NO_TARGET``."""
    target = number(data.get(f"{kind}TargetSeconds"))
    met = flag(data.get(f"{kind}TargetMet"))
    if met is not None:
        verdict = "MET" if met else "MISSED"
    else:
        verdict = "NOT_JUDGED" if target is not None else "NO_TARGET"
    return compact(
        {
            "targetSeconds": target,
            "measuredSeconds": number(measured),
            "verdict": verdict,
            "note": text(data.get(f"{kind}TargetNote")),
        }
    )


def _timeline(raw: Mapping[str, Any]) -> dict[str, int | float]:
    timeline = raw.get("Timeline")
    if not isinstance(timeline, dict):
        return {}
    found: dict[str, int | float] = {}
    for key in TIMELINE_KEYS:
        value = number(timeline.get(key))
        if value is not None:
            found[key[0].lower() + key[1:]] = value
    return found


def _phase(
    name: str, start: Any, end: Any, *, failed: bool = False, stalled: str | None
) -> dict[str, Any] | None:
    if start is None:
        return None
    state = OPEN if end is None else (FAILED if failed else ENDED)
    return compact(
        {
            "phase": name,
            "start": start,
            "end": end,
            "state": state,
            "stalled": True if stalled == name else None,
        }
    )


def phases_of(
    timeline: Mapping[str, Any],
    *,
    recovery: bool,
    post_launch_status: str | None,
    stalled: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """The server's phases from its Timeline: SNAPSHOT (SnapshotStart to SnapshotEnd),
    CONVERSION, LAUNCH (LaunchStart to Launched, or to LaunchFailed: failed), and for a
    RECOVERY server with post-launch actions POST_LAUNCH_ACTIONS (Launched to ActionsDone).

    A phase with a start and no end is ``OPEN``, unless the server failed to launch
    (``LaunchFailed``) after it began: then it ended there, ``FAILED`` (a failure during
    the snapshot, say). The phase a ``Stalled`` map names is marked; if the timeline has no
    start for it (the daemon counts a conversion from SnapshotEnd when DRS logged no
    CONVERSION_START), it is drawn from the stall's ``Since``."""
    launched, launch_failed = timeline.get("launched"), timeline.get("launchFailed")
    stalled_phase = None if stalled is None else stalled.get("phase")
    spans: dict[str, tuple[Any, Any, bool]] = {
        "SNAPSHOT": (timeline.get("snapshotStart"), timeline.get("snapshotEnd"), False),
        "CONVERSION": (timeline.get("conversionStart"), timeline.get("conversionEnd"), False),
        "LAUNCH": (
            timeline.get("launchStart"),
            launched if launched is not None else launch_failed,
            launched is None and launch_failed is not None,
        ),
    }
    if recovery and post_launch_status != NOT_CONFIGURED and launched is not None:
        spans["POST_LAUNCH_ACTIONS"] = (
            launched,
            timeline.get("actionsDone"),
            post_launch_status == "FAILED",
        )
    phases = []
    for name, (span_start, span_end, failed) in spans.items():
        start, end, ended_in_failure = span_start, span_end, failed
        if start is None and name == stalled_phase and stalled is not None:
            start = stalled.get("since")
        if start is None:
            continue
        failed_after_start = launch_failed is not None and launch_failed >= start
        if end is None and launched is None and failed_after_start:
            end, ended_in_failure = launch_failed, True
        phase = _phase(name, start, end, failed=ended_in_failure, stalled=stalled_phase)
        if phase is not None:
            phases.append(phase)
    return phases


def _runs(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        compact(
            {
                "name": text(run.get("Name")),
                "actionId": text(run.get("ActionId")),
                "runId": text(run.get("RunId")),
                "status": text(run.get("Status")),
                "optional": flag(run.get("Optional")),
                "failureReason": text(run.get("FailureReason")),
            }
        )
        for run in _maps(raw.get("PostLaunchActions"))
    ]


def _post_launch(raw: Mapping[str, Any], timeline: Mapping[str, Any]) -> dict[str, Any] | None:
    runs = _runs(raw)
    section = compact(
        {
            "status": text(raw.get("PostLaunchActionsStatus")),
            "completedTime": number(raw.get("PostLaunchActionsCompleted")),
            "actionsDone": timeline.get("actionsDone"),
            "waitSince": number(raw.get("PostLaunchActionsWaitSince")),
            "shortfall": text(raw.get("PostLaunchActionsShortfall")),
            "expected": text(raw.get("PostLaunchActionsExpected")),
            "omitted": number(raw.get("PostLaunchActionsOmitted")),
            "runs": runs or None,
        }
    )
    return section or None


def _stalled(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    stalled = raw.get("Stalled")
    if not isinstance(stalled, dict):
        return None
    section = compact(
        {
            "phase": text(stalled.get("Phase")),
            "since": number(stalled.get("Since")),
            "boundSeconds": number(stalled.get("BoundSeconds")),
        }
    )
    return section or None


def _server(raw: Mapping[str, Any], *, outcome: str | None, recovery: bool) -> dict[str, Any]:
    timeline = _timeline(raw)
    stalled = _stalled(raw)
    post_launch = _post_launch(raw, timeline) if recovery else None
    return compact(
        {
            "sourceServerId": text(raw.get("SourceServerId")) or "(no SourceServerId)",
            "outcome": outcome,
            "status": text(raw.get("Status")),
            "recoveryJobId": text(raw.get("RecoveryJobId")),
            "recoveryInstanceId": text(raw.get("RecoveryInstanceId")),
            "instanceId": text(raw.get("InstanceId")),
            "instanceType": text(raw.get("InstanceType")),
            "privateIp": text(raw.get("PrivateIp")),
            "hostname": text(raw.get("Hostname")),
            "launchedTime": number(raw.get("LaunchedTime")),
            "error": text(raw.get("Error")),
            "terminatedAfterLaunch": flag(raw.get("TerminatedAfterLaunch")),
            "launchEvidence": text(raw.get("LaunchEvidence")),
            "recoveryTimeSeconds": number(raw.get("RecoveryTimeSeconds")),
            "recoveryTimeToActionsSeconds": number(raw.get("RecoveryTimeToActionsSeconds")),
            "recoveryPointTime": number(raw.get("RecoveryPointTime")),
            "recoveryPointSeconds": number(raw.get("RecoveryPointSeconds")),
            "stalled": stalled,
            "timeline": timeline or None,
            "phases": phases_of(
                timeline,
                recovery=recovery,
                post_launch_status=text(raw.get("PostLaunchActionsStatus")),
                stalled=stalled,
            ),
            "postLaunchActions": post_launch,
        }
    )


def _parsed(item: Mapping[str, Any]) -> Execution | None:
    try:
        return parse_execution(item)
    except MalformedItemError:
        return None


def _waves(item: Mapping[str, Any], execution: Execution | None) -> list[dict[str, Any]]:
    item_type = text(item.get("ExecutionType")) or ExecutionType.DRILL.value
    waves = []
    for index, wave in enumerate(_maps(item.get("Waves"))):
        parsed = execution.waves[index] if execution is not None else None
        mode = text(wave.get("ExecutionMode")) or item_type
        servers = []
        for position, raw in enumerate(_maps(wave.get("Servers"))):
            outcome = None
            if execution is not None and parsed is not None:
                outcome = server_outcome(parsed.servers[position], execution.mode_of(parsed)).value
            servers.append(_server(raw, outcome=outcome, recovery=mode == "RECOVERY"))
        waves.append(
            compact(
                {
                    "index": index,
                    "waveName": text(wave.get("WaveName")) or f"wave-{index + 1}",
                    "region": text(wave.get("Region")),
                    "accountId": text(wave.get("AccountId")),
                    "executionMode": mode,
                    "status": text(wave.get("Status")),
                    "startTime": number(wave.get("StartTime")),
                    "endTime": number(wave.get("EndTime")),
                    "error": text(wave.get("Error")),
                    "rto": judgement(wave, kind="Rto", measured=wave.get("RecoveryTimeSeconds")),
                    "rpo": judgement(wave, kind="Rpo", measured=wave.get("RecoveryPointSeconds")),
                    "recoveryTimeToActionsSeconds": number(
                        wave.get("RecoveryTimeToActionsSeconds")
                    ),
                    "servers": servers,
                }
            )
        )
    return waves


def _failures(item: Mapping[str, Any], waves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every failure the item records, each with its own reason (DRS's, where it gave one):
    the execution's ``ErrorMessage``, a wave's ``Error``, a server's ``Error``, and each
    post-launch action run that failed or never ran (optional ones too, marked so)."""
    failures: list[dict[str, Any]] = []
    message = text(item.get("ErrorMessage"))
    if message is not None:
        failures.append({"scope": "EXECUTION", "reason": message})
    for wave in waves:
        where = {"waveIndex": wave["index"], "waveName": wave["waveName"]}
        if "error" in wave:
            failures.append({"scope": "WAVE", **where, "reason": wave["error"]})
        for server in wave["servers"]:
            at = {**where, "sourceServerId": server["sourceServerId"]}
            if "error" in server:
                failures.append(
                    compact(
                        {"scope": "SERVER", **at, "status": server.get("status")}
                        | {"reason": server["error"]}
                    )
                )
            runs = (server.get("postLaunchActions") or {}).get("runs") or []
            failures.extend(
                compact(
                    {
                        "scope": "POST_LAUNCH_ACTION",
                        **at,
                        "action": run.get("name"),
                        "actionId": run.get("actionId"),
                        "runId": run.get("runId"),
                        "status": run.get("status"),
                        "optional": run.get("optional"),
                        "reason": run.get("failureReason"),
                    }
                )
                for run in runs
                if run.get("status") in FAILED_RUNS
            )
    return failures


def _counts(waves: list[dict[str, Any]]) -> dict[str, int]:
    servers = [server for wave in waves for server in wave["servers"]]
    counts = {"waves": len(waves), "servers": len(servers)}
    for name, outcome in (
        ("succeeded", "SUCCEEDED"),
        ("failed", "FAILED"),
        ("active", "ACTIVE"),
        ("notStarted", "NOT_STARTED"),
    ):
        counts[name] = sum(server.get("outcome") == outcome for server in servers)
    counts["stalled"] = sum("stalled" in server for server in servers)
    return counts


def build_report(item: Mapping[str, Any], *, as_of: float) -> dict[str, Any]:
    """The report of ``item`` standing at ``as_of`` (epoch seconds): schema version 1."""
    execution = _parsed(item)
    waves = _waves(item, execution)
    start = number(item.get("StartTime"))
    end = number(item.get("EndTime"))
    status = text(item.get("Status"))
    final = status in FINAL_STATUSES
    until = end if final and end is not None else as_of
    return compact(
        {
            "schema": SCHEMA,
            "version": VERSION,
            "asOf": number(as_of),
            "execution": compact(
                {
                    "executionId": text(item.get("ExecutionId")) or "(no ExecutionId)",
                    "planId": text(item.get("PlanId")),
                    "executionType": text(item.get("ExecutionType")) or ExecutionType.DRILL.value,
                    "status": status,
                    "final": final,
                    "startTime": start,
                    "endTime": end,
                    "durationSeconds": None if start is None else number(until - start),
                    "lastPolledTime": number(item.get("LastPolledTime")),
                    "errorMessage": text(item.get("ErrorMessage")),
                }
            ),
            "rto": judgement(item, kind="Rto", measured=item.get("RecoveryTimeSeconds")),
            "rpo": judgement(item, kind="Rpo", measured=item.get("RecoveryPointSeconds")),
            "recoveryTimeToActionsSeconds": number(item.get("RecoveryTimeToActionsSeconds")),
            "counts": _counts(waves),
            "waves": waves,
            "failures": _failures(item, waves),
        }
    )


def report_json(report: Mapping[str, Any]) -> str:
    """The document as JSON: two-space indented, keys in the documented order, UTF-8
    as is, one trailing newline."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


# --- shared by the renderers ----------------------------------------------------------------


def fmt_time(epoch: float | None) -> str:
    """``2026-12-05 01:31:28 UTC``; "—" when unknown."""
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(seconds: float | None) -> str:
    """``45 s``, ``12 min 30 s``, ``2 h 05 min``; "—" when unknown."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    sign = "-" if whole < 0 else ""
    whole = abs(whole)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours} h {minutes:02d} min"
    if minutes:
        return f"{sign}{minutes} min {secs:02d} s"
    return f"{sign}{secs} s"


def fmt_offset(seconds: float) -> str:
    """A time relative to the execution's start: ``+0:12:30``."""
    whole = round(seconds)
    sign = "-" if whole < 0 else "+"
    hours, rest = divmod(abs(whole), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}"


VERDICT_WORDS: Final = {
    "MET": "met",
    "MISSED": "missed",
    "NOT_JUDGED": "not judged yet",
    "NO_TARGET": "no target",
}


def fmt_judgement(section: Mapping[str, Any] | None) -> str:
    """``12 min 30 s against a target of 15 min 00 s: met``; "not measured" where the
    item holds no figure."""
    section = section or {}
    measured = section.get("measuredSeconds")
    shown = "not measured" if measured is None else fmt_duration(measured)
    target = section.get("targetSeconds")
    verdict = str(section.get("verdict") or "NO_TARGET")
    if target is None and verdict == "NO_TARGET":
        return f"{shown} (no target)"
    against = "" if target is None else f" against a target of {fmt_duration(target)}"
    note = section.get("note")
    tail = f" ({note})" if note else ""
    return f"{shown}{against}: {VERDICT_WORDS.get(verdict, verdict)}{tail}"


def time_origin(report: Mapping[str, Any]) -> float | None:
    """The zero of every relative time shown: the execution's StartTime, else the first
    time any wave or timeline holds."""
    start = report["execution"].get("startTime")
    if start is not None:
        return float(start)
    times = [
        value
        for wave in report["waves"]
        for value in [wave.get("startTime")]
        + [v for server in wave["servers"] for v in (server.get("timeline") or {}).values()]
        if value is not None
    ]
    return float(min(times)) if times else None


def fmt_phase(phase: Mapping[str, Any], *, origin: float | None, as_of: float) -> str:
    """``+0:01:10 → +0:04:40 (3 min 30 s)``, marked when failed, open or stalled."""
    start = float(phase["start"])
    end = phase.get("end")
    base = start if origin is None else origin
    until = as_of if end is None else float(end)
    shown_end = "open" if end is None else fmt_offset(float(end) - base)
    marks = []
    if phase.get("state") == FAILED:
        marks.append("failed")
    if phase.get("state") == OPEN:
        marks.append(f"no end as of {fmt_offset(as_of - base)}")
    if phase.get("stalled"):
        marks.append("stalled")
    tail = f", {', '.join(marks)}" if marks else ""
    return f"{fmt_offset(start - base)} → {shown_end} ({fmt_duration(until - start)}{tail})"


def title_of(report: Mapping[str, Any]) -> str:
    kind = "Recovery" if report["execution"].get("executionType") == "RECOVERY" else "Drill"
    return f"{kind} report: {report['execution']['executionId']}"
