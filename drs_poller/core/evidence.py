"""The evidence a drill exists for (issue 13): per-server Timeline, measured RTO and RPO,
stalled phases, and the targets judged met or missed.

Pure. :func:`apply_evidence` runs on the waves a decision is about to write, after every
status of contract §2 was decided; it adds and updates only the evidence attributes
below, which no completion rule reads, so evidence can never change a status. What it
cannot read (a job log DRS did not answer for, a timestamp that does not parse, an event
name outside the model) leaves that one field unknown.

Attribute shapes (contract §1; every time epoch seconds, a whole number):

- per server: ``Timeline`` (at most the nine keys of :data:`TIMELINE_KEYS`),
  ``RecoveryTimeSeconds``, ``RecoveryTimeToActionsSeconds``, ``RecoveryPointTime``,
  ``RecoveryPointSeconds``, ``Stalled`` ``{Phase, Since, BoundSeconds}``;
- per wave and per execution, once final: the slowest server's figures, and
  ``RtoTargetMet`` / ``RpoTargetMet`` (with ``RtoTargetNote`` / ``RpoTargetNote`` when
  missed) beside a ``RtoTargetSeconds`` / ``RpoTargetSeconds`` the initiator wrote.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from drs_poller.core.completion import Outcome, server_outcome
from drs_poller.core.models import (
    Execution,
    ExecutionType,
    FinalStatus,
    InstanceDetails,
    JobView,
    PostLaunchStatus,
    Unknown,
)
from drs_poller.core.places import ACCOUNT_ID, Place

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from drs_poller.core.models import Server

TIMELINE_KEYS: Final = (
    "JobStart",
    "SnapshotStart",
    "SnapshotEnd",
    "ConversionStart",
    "ConversionEnd",
    "LaunchStart",
    "Launched",
    "LaunchFailed",
    "ActionsDone",
)

# Job-log events (botocore's JobLogEvent enum) that mark a server's progress. A start
# keeps the first time it was logged, an end the last (a retried phase ends late).
_FIRST: Final = {
    "SNAPSHOT_START": "SnapshotStart",
    "CONVERSION_START": "ConversionStart",
    "LAUNCH_START": "LaunchStart",
}
_LAST: Final = {
    "SNAPSHOT_END": "SnapshotEnd",
    # DRS used an earlier snapshot instead of taking one: the snapshot phase is over.
    "USING_PREVIOUS_SNAPSHOT": "SnapshotEnd",
    "CONVERSION_END": "ConversionEnd",
    # Not in the model today (JobLogEvent has no event for a launch that ended well);
    # taken if DRS ever logs it, else Launched is the poll that first saw LAUNCHED.
    "LAUNCH_END": "Launched",
}
# Failures that end a server's launch (LaunchFailed is written only for a failed server).
_LAUNCH_FAILURES: Final = frozenset(
    {"LAUNCH_FAILED", "SNAPSHOT_FAIL", "CONVERSION_FAIL", "USING_PREVIOUS_SNAPSHOT_FAILED"}
)
# The rest of the model's enum: known, and not evidence of a server's phase.
_OTHER_EVENTS: Final = frozenset(
    {
        "JOB_START",
        "JOB_END",
        "JOB_CANCEL",
        "SERVER_SKIPPED",
        "CLEANUP_START",
        "CLEANUP_END",
        "CLEANUP_FAIL",
        "NETWORK_RECOVERY_FAIL",
        "DEPLOY_NETWORK_CONFIGURATION_START",
        "DEPLOY_NETWORK_CONFIGURATION_END",
        "DEPLOY_NETWORK_CONFIGURATION_FAILED",
        "UPDATE_NETWORK_CONFIGURATION_START",
        "UPDATE_NETWORK_CONFIGURATION_END",
        "UPDATE_NETWORK_CONFIGURATION_FAILED",
        "UPDATE_LAUNCH_TEMPLATE_START",
        "UPDATE_LAUNCH_TEMPLATE_END",
        "UPDATE_LAUNCH_TEMPLATE_FAILED",
    }
)
_FINAL: Final = frozenset(status.value for status in FinalStatus)
REASON_LIMIT: Final = 500  # characters of DRS's rawError kept in a server's Error


class StallPhase(StrEnum):
    SNAPSHOT = "SNAPSHOT"
    CONVERSION = "CONVERSION"
    LAUNCH = "LAUNCH"
    POST_LAUNCH_ACTIONS = "POST_LAUNCH_ACTIONS"


@dataclass(frozen=True, slots=True)
class StallBounds:
    """Seconds each phase may last before its server is marked Stalled (the settings)."""

    snapshot: float
    conversion: float
    launch: float
    post_launch_actions: float

    def of(self, phase: StallPhase) -> float:
        return {
            StallPhase.SNAPSHOT: self.snapshot,
            StallPhase.CONVERSION: self.conversion,
            StallPhase.LAUNCH: self.launch,
            StallPhase.POST_LAUNCH_ACTIONS: self.post_launch_actions,
        }[phase]


# --- the job log ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One ``JobLog`` item as the DRS adapter read it (values as sent, not parsed)."""

    name: str
    at: str | None = None  # logDateTime
    source_server_id: str | None = None
    data_timestamp: str | None = None  # eventData.conversionProperties.dataTimestamp
    reason: str | None = None  # eventData.rawError


@dataclass(frozen=True, slots=True)
class ServerLog:
    """What one job's log says of one source server."""

    marks: Mapping[str, int] = field(default_factory=dict)  # Timeline keys
    data_time: int | None = None  # of the last conversion's snapshot
    failed_at: int | None = None  # the last launch failure logged
    failure: str | None = None  # the last failure's rawError (or its event name)


@dataclass(frozen=True, slots=True)
class JobLog:
    job_id: str
    servers: Mapping[str, ServerLog]
    started: int | None = None  # JOB_START
    # Events not used because their name is outside the model or their time unreadable.
    ignored: int = 0

    def reasons(self) -> dict[str, str]:
        """Source server id -> why DRS failed it, for the servers the log says failed."""
        return {sid: log.failure for sid, log in self.servers.items() if log.failure}


def parse_time(value: object) -> int | None:
    """Epoch seconds (whole) of a DRS time: ISO 8601 (``Z`` or an offset; none: UTC), or
    a number of epoch seconds (milliseconds when it is too large for seconds). None when
    it is neither: that one field stays unknown."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(Decimal(text))
        except (InvalidOperation, ValueError):
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return int(moment.timestamp())
    if not math.isfinite(number) or number < 0:
        return None
    return int(number / 1000 if number > 1e11 else number)


def job_log_of(job_id: str, events: Iterable[LogEvent]) -> JobLog:
    """What a job's log (oldest first, as DescribeJobLogItems pages it) says, per server."""
    marks: dict[str, dict[str, int]] = {}
    data: dict[str, int] = {}
    failed_at: dict[str, int] = {}
    failures: dict[str, str] = {}
    started: int | None = None
    ignored = 0
    for event in events:
        sid = event.source_server_id
        if sid and event.name.endswith(("_FAIL", "_FAILED")):
            failures[sid] = (event.reason or event.name)[:REASON_LIMIT]
        at = parse_time(event.at)
        known = event.name in _FIRST or event.name in _LAST or event.name in _LAUNCH_FAILURES
        if at is None or not (known or event.name in _OTHER_EVENTS):
            ignored += 1
            continue
        if event.name == "JOB_START":
            started = at if started is None else min(started, at)
        if not sid or not known:
            continue
        server = marks.setdefault(sid, {})
        if event.name in _FIRST:
            key = _FIRST[event.name]
            server[key] = min(server.get(key, at), at)
        elif event.name in _LAST:
            server[_LAST[event.name]] = max(server.get(_LAST[event.name], at), at)
        else:
            failed_at[sid] = max(failed_at.get(sid, at), at)
        data_time = parse_time(event.data_timestamp)
        if data_time is not None and event.name.startswith("CONVERSION_"):
            data[sid] = data_time
    servers = {
        sid: ServerLog(
            marks=marks.get(sid, {}),
            data_time=data.get(sid),
            failed_at=failed_at.get(sid),
            failure=failures.get(sid),
        )
        for sid in marks.keys() | failures.keys()
    }
    return JobLog(job_id=job_id, servers=servers, started=started, ignored=ignored)


@dataclass(frozen=True, slots=True)
class LogWatch:
    """What decides whether a job's log is worth reading again (see the engine's budget):
    the job's status and its servers' launch statuses, whether a server of this
    execution in it is still before its launch result (its phase can move unseen), and
    from when a stall of such a server could be declared (:func:`stall_possible_from`;
    None when nothing tells: the job's creation is unknown)."""

    place: Place
    signature: Signature
    unlaunched: bool
    stall_from: int | None = None


def log_watches(
    execution: Execution,
    jobs: Mapping[str, Any],
    *,
    logs: Mapping[str, JobLog],
    bounds: StallBounds,
) -> dict[str, LogWatch]:
    """Job id -> :class:`LogWatch`, for the jobs of this execution's active servers that
    DRS answered for this poll; ``logs`` are the job logs last read (in memory)."""
    found: dict[str, tuple[Place, dict[str, str], bool, int | None]] = {}
    for wave in execution.waves:
        mode = execution.mode_of(wave)
        place = wave.place
        for server in wave.servers:
            lookup = jobs.get(server.job_id) if server.job_id else None
            if (
                not isinstance(lookup, JobView)
                or place is None
                or server_outcome(server, mode) is not Outcome.ACTIVE
            ):
                continue
            where, statuses, unlaunched, stall_from = found.get(
                lookup.job_id, (place, {}, False, None)
            )
            participant = lookup.servers.get(server.source_server_id)
            launch = participant.launch_status if participant is not None else None
            statuses[server.source_server_id] = (
                "NONE"
                if launch is None
                else launch.raw
                if isinstance(launch, Unknown)
                else launch.value
            )
            if server.launched_time is None:
                log = logs.get(lookup.job_id)
                possible = stall_possible_from(
                    _stored_timeline(server.raw),
                    log=log.servers.get(server.source_server_id) if log is not None else None,
                    job_start=parse_time(lookup.created)
                    or (log.started if log is not None else None),
                    mode=mode,
                    bounds=bounds,
                )
                if not unlaunched:
                    stall_from = possible
                elif stall_from is not None:
                    stall_from = None if possible is None else min(stall_from, possible)
                unlaunched = True
            found[lookup.job_id] = (where, statuses, unlaunched, stall_from)
    return {
        job_id: LogWatch(
            place=where,
            signature=_signature(
                _job_status(jobs[job_id]), tuple(status for _, status in sorted(statuses.items()))
            ),
            unlaunched=unlaunched,
            stall_from=stall_from,
        )
        for job_id, (where, statuses, unlaunched, stall_from) in found.items()
    }


def active_jobs(execution: Execution) -> set[str]:
    """The job ids of this execution's servers still active (not ended): the only jobs
    whose logs its evidence can still use (an ended server keeps what it was written
    with, and its failure reason was taken with the write that failed it)."""
    return {
        server.job_id
        for wave in execution.waves
        for server in wave.servers
        if server.job_id and server_outcome(server, execution.mode_of(wave)) is Outcome.ACTIVE
    }


# The phases before a launch result, in the order DRS goes through them.
_BEFORE_LAUNCH: Final = (StallPhase.SNAPSHOT, StallPhase.CONVERSION, StallPhase.LAUNCH)


def stall_possible_from(
    stored: Mapping[str, int],
    *,
    log: ServerLog | None,
    job_start: int | None,
    mode: ExecutionType,
    bounds: StallBounds,
) -> int | None:
    """The earliest epoch second at which a server not launched yet could be marked
    Stalled, from what is known of it now: a phase only moves forward, and each move
    starts its clock again, so the current phase (or a later one) started no earlier
    than the phase last logged, or, when none is logged yet, than the job's creation.
    The bound is the smallest of that phase's and the later ones'. None when neither is
    known (the caller then reads at the stall-check interval).

    Until this moment a read of the job's log cannot mark a stall; from it the engine
    reads to confirm one before it is written (engine/polling.py, ``_job_logs_due``)."""
    timeline = build_timeline(
        stored,
        log=log,
        job_start=job_start,
        launched_time=None,
        failed=False,
        actions_done=None,
        now=0.0,
    )
    found = current_phase(timeline, mode=mode)
    since: int | None
    if found is not None and found[0] in _BEFORE_LAUNCH:
        since = found[1]
        later = _BEFORE_LAUNCH[_BEFORE_LAUNCH.index(found[0]) :]
    else:
        # Nothing logged yet (or a result logged ahead of DRS's answer): any phase.
        since = timeline.get("JobStart")
        later = _BEFORE_LAUNCH
    if since is None:
        return None
    return since + int(min(bounds.of(phase) for phase in later))


def stall_phase(job_id: str) -> float:
    """Where in the stall-check interval this job's reads fall, from 0 to 1, fixed by its
    id (CRC-32): the first read a daemon records for a job counts as made that share of
    an interval earlier, so the jobs a daemon first sees together (all of them, after a
    start or a failover) are not read together one interval later, and every interval
    after. At W10k they were: 50,000 reads within a minute, five minutes after start."""
    return zlib.crc32(job_id.encode()) / 2**32


# Steps before a result: a job or server moving between them logs marks that can wait in
# memory until the next read (engine/polling.py, ``_read_job_logs``).
_ON_THE_WAY = frozenset({"PENDING", "STARTED", "IN_PROGRESS", "NONE"})


def worth_reading(before: Signature, after: Signature) -> bool:
    """Whether a job's change from signature ``before`` to ``after`` (:class:`LogWatch`)
    is worth a read of its log: the job left the steps before a result (COMPLETED, or a
    status outside the model), or a server reached one (LAUNCHED, FAILED, TERMINATED,
    or a value outside the model). Moves between PENDING, STARTED and IN_PROGRESS are
    not. Servers are compared by position (both list the same servers, by id); lists of
    different lengths (nothing seen before) count every result in ``after`` as new."""
    job_before, servers_before = before
    job_after, servers_after = after
    if job_after != job_before and job_after not in _ON_THE_WAY:
        return True
    if len(servers_before) != len(servers_after):
        return any(status not in _ON_THE_WAY for status in servers_after)
    return any(
        status != held and status not in _ON_THE_WAY
        for status, held in zip(servers_after, servers_before, strict=True)
    )


# A job's signature: its status, and the launch status of each server of the execution
# in it, in the order of their ids ("NONE" for one the job does not list).
Signature = tuple[str, tuple[str, ...]]
# Signatures repeat (one-server jobs have a few dozen between them): one object each,
# not three tuples for every job an execution tracks (300,000 at W10k).
_SIGNATURES: dict[Signature, Signature] = {}
_SIGNATURES_HELD = 4096


def _signature(job_status: str, statuses: tuple[str, ...]) -> Signature:
    signature = (job_status, statuses)
    shared = _SIGNATURES.get(signature)
    if shared is None:
        if len(_SIGNATURES) >= _SIGNATURES_HELD:
            _SIGNATURES.clear()
        shared = _SIGNATURES[signature] = signature
    return shared


def _job_status(job: JobView) -> str:
    return job.unknown_status.raw if job.unknown_status is not None else job.status.value


# --- one server --------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return int(value)


def _stored_timeline(raw: Mapping[str, Any]) -> dict[str, int]:
    stored = raw.get("Timeline")
    if not isinstance(stored, dict):
        return {}
    return {k: v for k in TIMELINE_KEYS if (v := _int(stored.get(k))) is not None}


def build_timeline(
    stored: Mapping[str, int],
    *,
    log: ServerLog | None,
    job_start: int | None,
    launched_time: float | None,
    failed: bool,
    actions_done: float | None,
    now: float,
) -> dict[str, int]:
    """The Timeline: what was stored, overwritten by what the job log says now (a log is
    always read whole), with the poll's own observations where DRS logs nothing:
    ``Launched`` (the poll that first saw LAUNCHED), ``LaunchFailed`` (a failed server
    that never launched: the failure logged, else now), ``ActionsDone``."""
    timeline = dict(stored)
    if job_start is not None:
        timeline["JobStart"] = job_start
    if log is not None:
        timeline.update(log.marks)
    if launched_time is not None:
        timeline.setdefault("Launched", int(launched_time))
    if failed and "Launched" not in timeline:
        failed_at = log.failed_at if log is not None else None
        timeline["LaunchFailed"] = failed_at or timeline.get("LaunchFailed") or int(now)
    if actions_done is not None:
        timeline.setdefault("ActionsDone", int(actions_done))
    return {key: timeline[key] for key in TIMELINE_KEYS if key in timeline}


def current_phase(
    timeline: Mapping[str, int], *, mode: ExecutionType
) -> tuple[StallPhase, int] | None:
    """The phase an active server is in, and since when, as far as the Timeline shows;
    None when it shows nothing yet, or nothing is left to wait for."""
    if "Launched" in timeline:
        if mode is ExecutionType.RECOVERY and "ActionsDone" not in timeline:
            return StallPhase.POST_LAUNCH_ACTIONS, timeline["Launched"]
        return None
    if "LaunchFailed" in timeline:
        return None
    order = (
        ("LaunchStart", StallPhase.LAUNCH),
        ("ConversionEnd", StallPhase.LAUNCH),
        ("ConversionStart", StallPhase.CONVERSION),
        ("SnapshotEnd", StallPhase.CONVERSION),
        ("SnapshotStart", StallPhase.SNAPSHOT),
    )
    for key, phase in order:
        if key in timeline:
            return phase, timeline[key]
    return None


def stall_of(
    timeline: Mapping[str, int],
    *,
    mode: ExecutionType,
    active: bool,
    now: float,
    bounds: StallBounds,
) -> dict[str, Any] | None:
    """``Stalled`` while the current phase has lasted longer than its bound; never for a
    server that ended (DRS stays the source of truth: a stall fails nothing)."""
    if not active:
        return None
    found = current_phase(timeline, mode=mode)
    if found is None:
        return None
    phase, since = found
    bound = bounds.of(phase)
    if now - since <= bound:
        return None
    return {"Phase": phase.value, "Since": since, "BoundSeconds": int(bound)}


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What a poll knows of one server beside its map."""

    log: ServerLog | None = None
    job_start: int | None = None
    point_in_time: int | None = None  # RecoveryInstance.pointInTimeSnapshotDateTime


def server_evidence(
    raw: dict[str, Any],
    *,
    server: Server,
    mode: ExecutionType,
    facts: ServerFacts,
    wave_start: float,
    now: float,
    bounds: StallBounds,
) -> None:
    """Write the server's evidence attributes into ``raw`` (its new map), in place."""
    outcome = server_outcome(server, mode)
    post = server.post_launch_status
    actions_done: float | None = None
    if mode is ExecutionType.RECOVERY and post in (
        PostLaunchStatus.COMPLETED.value,
        PostLaunchStatus.FAILED.value,
    ):
        actions_done = _int(raw.get("PostLaunchActionsCompleted")) or now
    timeline = build_timeline(
        _stored_timeline(raw),
        log=facts.log,
        job_start=facts.job_start,
        launched_time=server.launched_time,
        failed=outcome is Outcome.FAILED,
        actions_done=actions_done,
        now=now,
    )
    point = facts.log.data_time if facts.log is not None else None
    if point is None:
        point = _int(raw.get("RecoveryPointTime")) or facts.point_in_time
    if point is not None:
        # A fact learnt once (the recovery instance is described once), kept at once.
        raw["RecoveryPointTime"] = point
    active = outcome is Outcome.ACTIVE
    if active:
        # The Timeline and the figures of a server still running are not written: every
        # write pays for the item's whole size, and they would ride on each one (at W1k,
        # 2.9 write units an execution). They are rebuilt each poll from the job logs kept
        # in memory (read again after a restart) and written, complete, with the write
        # that ends the server; after that the server is frozen and keeps them.
        for name in _SERVER_FIGURES:
            raw.pop(name, None)
    else:
        _figures_into(raw, timeline=timeline, point=point, start=int(wave_start))
    stalled = stall_of(timeline, mode=mode, active=active, now=now, bounds=bounds)
    if stalled is None:
        raw.pop("Stalled", None)
    elif not _same_stall(raw.get("Stalled"), stalled):
        raw["Stalled"] = stalled


# The evidence of a server written once, with the write that ends it.
_SERVER_FIGURES: Final = (
    "Timeline",
    "RecoveryTimeSeconds",
    "RecoveryTimeToActionsSeconds",
    "RecoveryPointSeconds",
)


def _figures_into(
    raw: dict[str, Any], *, timeline: Mapping[str, int], point: int | None, start: int
) -> None:
    if timeline:
        raw["Timeline"] = dict(timeline)
    if "Launched" in timeline:
        raw["RecoveryTimeSeconds"] = max(0, timeline["Launched"] - start)
    if "ActionsDone" in timeline and "Launched" in timeline:
        raw["RecoveryTimeToActionsSeconds"] = max(0, timeline["ActionsDone"] - start)
    if point is not None and "JobStart" in timeline:
        # A snapshot taken after the job started lost nothing from before it: 0.
        raw["RecoveryPointSeconds"] = max(0, timeline["JobStart"] - point)


def _same_stall(stored: Any, new: Mapping[str, Any]) -> bool:
    return (
        isinstance(stored, dict)
        and stored.get("Phase") == new["Phase"]
        and _int(stored.get("Since")) == new["Since"]
        and _int(stored.get("BoundSeconds")) == new["BoundSeconds"]
    )


# --- waves and the execution: the slowest figures, and the targets -----------------------


def _rto_figure(timeline: Mapping[str, int], start: int) -> int | None:
    """A server's recovery time for a target: to its actions done where it ran actions
    (a RECOVERY is usable then), else to its launch."""
    if "Launched" not in timeline:
        return None
    return max(0, timeline.get("ActionsDone", timeline["Launched"]) - start)


def judge_target(
    *,
    figures: Sequence[tuple[str, int | None, bool]],
    target: float,
    what: str,
) -> tuple[bool, str | None]:
    """Met only if every server succeeded and its figure is known and within ``target``;
    ``figures`` is (source server id, figure, succeeded). Returns (met, note when missed).
    A wrong "met" is as bad as a wrong COMPLETED: anything unknown makes it missed."""
    if not figures:
        return False, "no servers"
    failed = [sid for sid, _, succeeded in figures if not succeeded]
    unknown = [sid for sid, value, succeeded in figures if succeeded and value is None]
    over = sorted(
        ((value, sid) for sid, value, succeeded in figures if succeeded and value is not None),
        reverse=True,
    )
    notes = []
    if failed:
        notes.append(f"{len(failed)} server(s) did not recover ({', '.join(failed[:3])})")
    if unknown:
        notes.append(f"{len(unknown)} server(s) have no {what} ({', '.join(unknown[:3])})")
    if over and over[0][0] > target:
        value, sid = over[0]
        notes.append(f"slowest {sid}: {value} s > target {int(target)} s")
    if notes:
        return False, "; ".join(notes)
    return True, None


def _judge_into(
    raw: dict[str, Any],
    *,
    holder: Mapping[str, Any],
    prefix: str,
    figures: Sequence[tuple[str, int | None, bool]],
    what: str,
) -> None:
    target = _int(holder.get(f"{prefix}TargetSeconds"))
    if target is None:
        return
    met, note = judge_target(figures=figures, target=target, what=what)
    raw[f"{prefix}TargetMet"] = met
    if note is None:
        raw.pop(f"{prefix}TargetNote", None)
    else:
        raw[f"{prefix}TargetNote"] = note[:REASON_LIMIT]


def _scope_evidence(
    raw: dict[str, Any],
    *,
    holder: Mapping[str, Any],
    servers: Sequence[tuple[Mapping[str, Any], bool]],
    start: int,
) -> None:
    """The slowest figures of a finished scope and its targets, into ``raw`` in place.
    ``holder`` holds the targets the initiator wrote; ``servers`` is each server's new
    map and whether it succeeded."""
    rto: list[tuple[str, int | None, bool]] = []
    rpo: list[tuple[str, int | None, bool]] = []
    launched: list[int] = []
    done: list[int] = []
    points: list[int] = []
    for server, succeeded in servers:
        sid = str(server.get("SourceServerId"))
        timeline = _stored_timeline(server)
        rto.append((sid, _rto_figure(timeline, start), succeeded))
        point = _int(server.get("RecoveryPointSeconds"))
        rpo.append((sid, point, succeeded))
        if "Launched" in timeline:
            launched.append(timeline["Launched"])
            if "ActionsDone" in timeline:
                done.append(timeline["ActionsDone"])
        if point is not None:
            points.append(point)
    for name, values in (
        ("RecoveryTimeSeconds", [max(0, t - start) for t in launched]),
        ("RecoveryTimeToActionsSeconds", [max(0, t - start) for t in done]),
        ("RecoveryPointSeconds", points),
    ):
        if values:
            raw[name] = max(values)
    _judge_into(raw, holder=holder, prefix="Rto", figures=rto, what="recovery time")
    _judge_into(raw, holder=holder, prefix="Rpo", figures=rpo, what="data timestamp")


def apply_evidence(
    new_waves: list[dict[str, Any]],
    top: dict[str, Any],
    *,
    execution: Execution,
    read: Execution,
    jobs: Mapping[str, Any],
    logs: Mapping[str, JobLog],
    instances: Mapping[str, InstanceDetails],
    final: bool,
    now: float,
    bounds: StallBounds,
) -> None:
    """Add the evidence to the waves (and to ``top``, the execution's attributes to write)
    in place. ``execution`` is parsed from ``new_waves`` (the servers' statuses as
    decided; a wave's final status is read from ``new_waves`` itself), ``read`` is what
    was read: a server that had ended there is frozen, and keeps the evidence it was
    written with."""
    servers_of_execution: list[tuple[Mapping[str, Any], bool]] = []
    for index, wave in enumerate(execution.waves):
        mode = execution.mode_of(wave)
        wave_raw = new_waves[index]
        wave_start = _int(wave.raw.get("StartTime"))
        start = execution.start_time if wave_start is None else wave_start
        server_maps: list[dict[str, Any]] = wave_raw["Servers"]
        scope: list[tuple[Mapping[str, Any], bool]] = []
        for position, server in enumerate(wave.servers):
            raw = server_maps[position]
            was = read.waves[index].servers[position]
            if server.job_id is not None and server_outcome(was, mode) is Outcome.ACTIVE:
                facts = _facts(server, jobs=jobs, logs=logs, instances=instances)
                server_evidence(
                    raw,
                    server=server,
                    mode=mode,
                    facts=facts,
                    wave_start=start,
                    now=now,
                    bounds=bounds,
                )
            scope.append((raw, server_outcome(server, mode) is Outcome.SUCCEEDED))
        servers_of_execution.extend(scope)
        if wave_raw.get("Status") in _FINAL:
            _scope_evidence(wave_raw, holder=wave_raw, servers=scope, start=int(start))
    if final:
        _scope_evidence(
            top,
            holder=execution.raw,
            servers=servers_of_execution,
            start=int(execution.start_time),
        )


def _facts(
    server: Server,
    *,
    jobs: Mapping[str, Any],
    logs: Mapping[str, JobLog],
    instances: Mapping[str, InstanceDetails],
) -> ServerFacts:
    job_id = server.job_id or ""
    lookup = jobs.get(job_id)
    log = logs.get(job_id)
    job_start = None
    stored = server.raw.get("Timeline")
    if not (isinstance(stored, dict) and "JobStart" in stored):  # a job's creation is fixed
        job_start = parse_time(lookup.created) if isinstance(lookup, JobView) else None
        if job_start is None and log is not None:
            job_start = log.started
    point_in_time = None
    if isinstance(lookup, JobView):
        participant = lookup.servers.get(server.source_server_id)
        instance = (
            instances.get(participant.recovery_instance_id)
            if participant is not None and participant.recovery_instance_id
            else None
        )
        if instance is not None:
            point_in_time = parse_time(instance.point_in_time)
    return ServerFacts(
        log=log.servers.get(server.source_server_id) if log is not None else None,
        job_start=job_start,
        point_in_time=point_in_time,
    )


# --- what a landed write newly says (metrics count each once) -------------------------------


@dataclass(frozen=True, slots=True)
class EvidenceNews:
    # (wave place, seconds) of each server whose RecoveryTimeSeconds / ...PointSeconds is new
    recovery_times: tuple[tuple[Place, float], ...] = ()
    recovery_points: tuple[tuple[Place, float], ...] = ()
    missed: tuple[str, ...] = ()  # "rto" / "rpo", once per scope newly judged missed
    stalls: tuple[str, ...] = ()  # the phase of each server newly Stalled (or in a new phase)


def _server_maps(item: Mapping[str, Any]) -> dict[tuple[int, str], Mapping[str, Any]]:
    """(wave index, source server id) -> the server's map."""
    found: dict[tuple[int, str], Mapping[str, Any]] = {}
    for index, wave in enumerate(item.get("Waves") or []):
        if not isinstance(wave, dict):
            continue
        for server in wave.get("Servers") or []:
            if isinstance(server, dict):
                found[(index, str(server.get("SourceServerId")))] = server
    return found


def _place_of(item: Mapping[str, Any], index: int) -> Place:
    waves = item.get("Waves") or []
    wave = waves[index] if index < len(waves) else None
    region = wave.get("Region") if isinstance(wave, dict) else None
    account = wave.get("AccountId") if isinstance(wave, dict) else None
    return Place(
        account if isinstance(account, str) and ACCOUNT_ID.match(account) else None,
        region if isinstance(region, str) and region else "unknown",
    )


def _scopes(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [item, *(w for w in item.get("Waves") or [] if isinstance(w, dict))]


def evidence_news(before: Mapping[str, Any], after: Mapping[str, Any]) -> EvidenceNews:
    """What the write from ``before`` to ``after`` adds. A conditional write lands once,
    and the item remembers, so counting these counts each server (and each missed target)
    once across polls, replicas and restarts."""
    old = _server_maps(before)
    times: list[tuple[Place, float]] = []
    points: list[tuple[Place, float]] = []
    stalls: list[str] = []
    for key, server in _server_maps(after).items():
        was = old.get(key, {})
        for name, bucket in (
            ("RecoveryTimeSeconds", times),
            ("RecoveryPointSeconds", points),
        ):
            value = _int(server.get(name))
            if value is not None and _int(was.get(name)) is None:
                bucket.append((_place_of(after, key[0]), float(value)))
        stalled, was_stalled = server.get("Stalled"), was.get("Stalled")
        if isinstance(stalled, dict) and (
            not isinstance(was_stalled, dict) or was_stalled.get("Phase") != stalled.get("Phase")
        ):
            stalls.append(str(stalled.get("Phase")))
    missed: list[str] = []
    before_scopes = _scopes(before)
    for position, scope in enumerate(_scopes(after)):
        was = before_scopes[position] if position < len(before_scopes) else {}
        for prefix in ("Rto", "Rpo"):
            name = f"{prefix}TargetMet"
            if scope.get(name) is False and name not in was:
                missed.append(prefix.lower())
    return EvidenceNews(
        recovery_times=tuple(times),
        recovery_points=tuple(points),
        missed=tuple(missed),
        stalls=tuple(stalls),
    )


def stall_marks(waves: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    """Every server's ``Stalled`` (None where it has none), per wave. Of the evidence,
    only a stall that begins or ends is worth a write of its own (an operator acts on
    it); a server's Timeline and figures go with the write that ends it (the job logs
    they come from are kept in memory until then, and read again after a restart)."""
    return [
        [server.get("Stalled") for server in wave.get("Servers") or [] if isinstance(server, dict)]
        for wave in waves
    ]


def stalled_servers(item: Mapping[str, Any]) -> list[str]:
    """The Phase of each server of ``item`` marked Stalled (for the gauge)."""
    return [
        str(server["Stalled"].get("Phase"))
        for server in _server_maps(item).values()
        if isinstance(server.get("Stalled"), dict)
    ]
