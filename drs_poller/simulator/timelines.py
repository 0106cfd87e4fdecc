"""Scripted DRS jobs: what a job looks like at any instant, and its wire JSON.

Pure on purpose (no aiohttp, no botocore): a script is data, and its state at
``now`` is a function of the clock, so tests move a ``ManualClock`` instead of
sleeping, and the same script renders identically on every call.

A job's timeline is a sorted tuple of :class:`Snapshot`. The state at ``now``
is the last snapshot with ``created_at + at <= now``; before the first one the
job is PENDING and every server is PENDING.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping, Sequence

JobStatus = Literal["PENDING", "STARTED", "COMPLETED"]
LaunchStatus = Literal["PENDING", "IN_PROGRESS", "LAUNCHED", "FAILED", "TERMINATED"]
RunStatus = Literal["IN_PROGRESS", "SUCCEEDED", "FAILED"]
Ec2InstanceState = Literal[
    "PENDING", "RUNNING", "STOPPING", "STOPPED", "SHUTTING-DOWN", "TERMINATED", "NOT_FOUND"
]
ServerOutcome = Literal[
    "launched", "launch_failed", "action_failed", "terminated_after_launch", "conversion_stalled"
]
JobType = Literal["LAUNCH", "TERMINATE"]

DEFAULT_ACCOUNT_ID = "123456789012"
DATA_AGE_SECONDS = 2.0  # a simulated job's default replication lag (see JobScript.data_age)
LAUNCH_FAILED_RAW_ERROR = "Failed to launch recovery instance: InsufficientInstanceCapacity"
ACTION_FAILED_REASON = "SSM document execution failed: step 1 exited with code 1"

_ALPHANUMERIC = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX = "0123456789abcdef"
# A fixed namespace makes run and action ids stable across renders of the same script.
_ID_NAMESPACE = uuid.UUID("6f1c3a52-54b1-4c8e-9d0a-2f3f1b6f7a10")


# ---------------------------------------------------------------- ids


def new_job_id(rng: random.Random) -> str:
    return "drsjob-" + "".join(rng.choices(_ALPHANUMERIC, k=17))


def new_source_server_id(rng: random.Random) -> str:
    return "s-" + "".join(rng.choices(_ALPHANUMERIC, k=17))


def new_instance_id(rng: random.Random) -> str:
    """An EC2-style id that is also a valid RecoveryInstanceID (19 chars, the model's max)."""
    return "i-" + "".join(rng.choices(_HEX, k=17))


def _derived_instance_id(*parts: str) -> str:
    return "i-" + hashlib.sha256("/".join(parts).encode()).hexdigest()[:17]


def _derived_uuid(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def iso8601(epoch_seconds: float) -> str:
    """DRS's ISO8601DatetimeString: millisecond precision, ``Z`` suffix."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso8601(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# ---------------------------------------------------------------- the data model


# The enums of botocore's DRS model (shapes JobStatus, LaunchStatus, LaunchActionRunStatus).
# A script may use another value only when it says so (``deliberately_outside_model``):
# that is how a test stands for a value AWS adds later, and the conformance checker
# accepts exactly those (see :func:`deliberate_paths`).
JOB_STATUSES = frozenset({"PENDING", "STARTED", "COMPLETED"})
LAUNCH_STATUSES = frozenset({"PENDING", "IN_PROGRESS", "LAUNCHED", "FAILED", "TERMINATED"})
RUN_STATUSES = frozenset({"IN_PROGRESS", "SUCCEEDED", "FAILED"})


@dataclass(frozen=True)
class RunSnapshot:
    """One post-launch action run. ``name`` identifies the action across snapshots (its
    actionId is derived from it, the same as ListLaunchActions shows)."""

    status: RunStatus | str
    name: str
    failure_reason: str | None = None
    # LaunchAction.optional: "Whether the launch will not be marked as failed if this
    # action fails" (botocore's DRS model).
    optional: bool = False
    deliberately_outside_model: bool = False


@dataclass(frozen=True)
class ServerSnapshot:
    launch_status: LaunchStatus | str
    # None: the launchActionsStatus field is absent; (): present with an empty runs list.
    runs: tuple[RunSnapshot, ...] | None = None
    deliberately_outside_model: bool = False  # launch_status may be outside the model


@dataclass(frozen=True)
class LaunchActionScript:
    """One launch action of a source server, as ListLaunchActions lists it."""

    name: str
    optional: bool = False
    active: bool = True


PENDING_SERVER = ServerSnapshot("PENDING")


@dataclass(frozen=True)
class Snapshot:
    at: float
    job_status: JobStatus | str
    # A server left out of a snapshot is PENDING with no launchActionsStatus.
    servers: Mapping[str, ServerSnapshot] = field(default_factory=dict)
    deliberately_outside_model: bool = False  # job_status may be outside the model

    def server(self, source_server_id: str) -> ServerSnapshot:
        return self.servers.get(source_server_id, PENDING_SERVER)


@dataclass(frozen=True)
class ServerScript:
    source_server_id: str
    recovery_instance_id: str | None = None
    ec2_instance_id: str | None = None
    # Timed EC2 states (seconds after the job's created_at), overriding the state
    # derived from launchStatus; for scenarios like "instance stopped by someone".
    ec2_states: tuple[tuple[float, Ec2InstanceState], ...] = ()
    # False: the job never shows participatingServers[].recoveryInstanceID for it (the
    # model makes the member optional), while DescribeRecoveryInstances still does.
    job_reports_instance: bool = True


@dataclass(frozen=True)
class JobScript:
    job_id: str
    region: str
    is_drill: bool
    created_at: float
    servers: tuple[ServerScript, ...]
    timeline: tuple[Snapshot, ...]
    account_id: str = DEFAULT_ACCOUNT_ID
    job_type: JobType = "LAUNCH"
    tags: Mapping[str, str] = field(default_factory=dict)
    # Set for simulated jobs: the PENDING phase is snapshots for this many seconds, then
    # conversion, and the job log says so (see render_job_log).
    snapshot_seconds: float | None = None
    # How old the data of the snapshot each server launches from is when the job is
    # created: DRS's replication lag (its published RPO is "seconds"), or a point in time
    # chosen from the past. The job log's conversionProperties.dataTimestamp and the
    # recovery instance's pointInTimeSnapshotDateTime both say created_at - data_age.
    data_age: float = DATA_AGE_SECONDS

    @property
    def data_time(self) -> str:
        """ConversionProperties.dataTimestamp ("the timestamp of when the snapshot being
        converted was taken"), in DRS's ISO 8601 form."""
        return iso8601(self.created_at - self.data_age)

    def __post_init__(self) -> None:
        offsets = [snapshot.at for snapshot in self.timeline]
        if offsets != sorted(offsets):
            raise ValueError(f"{self.job_id}: timeline snapshots must be sorted by 'at'")
        known = {server.source_server_id for server in self.servers}
        for snapshot in self.timeline:
            unknown = set(snapshot.servers) - known
            if unknown:
                raise ValueError(f"{self.job_id}: snapshot names unknown servers {unknown}")
            _check_in_model(self.job_id, snapshot)

    @property
    def arn(self) -> str:
        return f"arn:aws:drs:{self.region}:{self.account_id}:job/{self.job_id}"

    def reached(self, now: float) -> list[Snapshot]:
        return [s for s in self.timeline if self.created_at + s.at <= now]

    def state_at(self, now: float) -> Snapshot:
        reached = self.reached(now)
        return reached[-1] if reached else Snapshot(at=0.0, job_status="PENDING")

    def completed_at(self, now: float) -> float | None:
        """When the job first became COMPLETED, if it has by ``now``."""
        for snapshot in self.reached(now):
            if snapshot.job_status == "COMPLETED":
                return self.created_at + snapshot.at
        return None


def _check_in_model(job_id: str, snapshot: Snapshot) -> None:
    """A value outside the DRS model must be flagged deliberate where it is set."""
    outside = []
    if snapshot.job_status not in JOB_STATUSES and not snapshot.deliberately_outside_model:
        outside.append(f"job status {snapshot.job_status!r}")
    for sid, server in snapshot.servers.items():
        if server.launch_status not in LAUNCH_STATUSES and not server.deliberately_outside_model:
            outside.append(f"{sid} launchStatus {server.launch_status!r}")
        outside.extend(
            f"{sid} run status {run.status!r}"
            for run in server.runs or ()
            if run.status not in RUN_STATUSES and not run.deliberately_outside_model
        )
    if outside:
        raise ValueError(
            f"{job_id}: values outside the DRS model must be flagged "
            f"deliberately_outside_model=True: {', '.join(outside)}"
        )


def deliberate_paths(script: JobScript, now: float, *, prefix: str = "$") -> frozenset[str]:
    """JSON paths in :func:`render_job`'s output (under ``prefix``) that hold a value
    outside the model on purpose: the conformance checker accepts exactly these."""
    state = script.state_at(now)
    paths: set[str] = set()
    if state.job_status not in JOB_STATUSES:
        paths.add(f"{prefix}.status")
    for index, server in enumerate(script.servers):
        snap = state.server(server.source_server_id)
        where = f"{prefix}.participatingServers[{index}]"
        if snap.launch_status not in LAUNCH_STATUSES:
            paths.add(f"{where}.launchStatus")
        for number, run in enumerate(snap.runs or ()):
            if run.status not in RUN_STATUSES:
                paths.add(f"{where}.launchActionsStatus.runs[{number}].status")
    return frozenset(paths)


# ---------------------------------------------------------------- the standard shape


@dataclass(frozen=True)
class _ServerPlan:
    """How one server ends in a standard timeline."""

    outcome: ServerOutcome
    actions: bool
    action_names: Sequence[str]

    def runs(self, status: RunStatus) -> tuple[RunSnapshot, ...] | None:
        if not self.actions:
            return None
        if self.outcome == "launch_failed":
            return ()  # the field is there, but nothing ran on a server that never came up
        if status == "IN_PROGRESS" or self.outcome != "action_failed":
            return tuple(RunSnapshot(status, name) for name in self.action_names)
        # The last action fails; the ones before it succeeded.
        *before, last = self.action_names
        return (
            *(RunSnapshot("SUCCEEDED", name) for name in before),
            RunSnapshot("FAILED", last, ACTION_FAILED_REASON),
        )

    def after_launch(self, run_status: RunStatus) -> ServerSnapshot:
        status: LaunchStatus = "FAILED" if self.outcome == "launch_failed" else "LAUNCHED"
        return ServerSnapshot(status, self.runs(run_status))


def standard_timeline(
    server_ids: Sequence[str],
    *,
    pending: float = 13.5 * 60,
    started: float = 30.0,
    launching: float = 6 * 60,
    actions: float | None = None,
    action_names: Sequence[str] = ("Validate recovery",),
    outcomes: Mapping[str, ServerOutcome] = MappingProxyType({}),
    terminate_after: float = 10 * 60,
    stall: bool = False,
) -> tuple[Snapshot, ...]:
    """Snapshots for the shape real DRS jobs take.

    PENDING for ``pending`` s, STARTED with servers PENDING for ``started`` s,
    servers IN_PROGRESS for ``launching`` s, then the job COMPLETED with servers
    LAUNCHED or FAILED. With ``actions`` (a recovery with post-launch actions),
    runs appear IN_PROGRESS at launch and finish ``actions`` s later. Servers not
    named in ``outcomes`` are "launched"; "terminated_after_launch" servers turn
    TERMINATED ``terminate_after`` s after everything else settled. ``stall``
    keeps the job PENDING forever.
    """
    if stall:
        return (Snapshot(0.0, "PENDING", dict.fromkeys(server_ids, PENDING_SERVER)),)
    if actions is None and "action_failed" in outcomes.values():
        raise ValueError("an 'action_failed' outcome needs post-launch actions (actions=...)")
    if actions is not None and not action_names:
        raise ValueError("post-launch actions need at least one action name")
    unknown = set(outcomes) - set(server_ids)
    if unknown:
        raise ValueError(f"outcomes name servers not in the job: {unknown}")
    plans = {
        sid: _ServerPlan(outcomes.get(sid, "launched"), actions is not None, action_names)
        for sid in server_ids
    }

    launch_done = pending + started + launching
    snapshots = [
        Snapshot(0.0, "PENDING", dict.fromkeys(server_ids, PENDING_SERVER)),
        Snapshot(pending, "STARTED", dict.fromkeys(server_ids, PENDING_SERVER)),
        Snapshot(
            pending + started, "STARTED", dict.fromkeys(server_ids, ServerSnapshot("IN_PROGRESS"))
        ),
        Snapshot(
            launch_done,
            "COMPLETED",
            {sid: plan.after_launch("IN_PROGRESS") for sid, plan in plans.items()},
        ),
    ]
    final = {sid: plan.after_launch("SUCCEEDED") for sid, plan in plans.items()}
    if actions is not None:
        snapshots.append(Snapshot(launch_done + actions, "COMPLETED", final))
    if "terminated_after_launch" in outcomes.values():
        terminated = {
            sid: ServerSnapshot("TERMINATED", snap.runs)
            if plans[sid].outcome == "terminated_after_launch"
            else snap
            for sid, snap in final.items()
        }
        at = launch_done + (actions or 0.0) + terminate_after
        snapshots.append(Snapshot(at, "COMPLETED", terminated))
    return tuple(snapshots)


@dataclass(frozen=True)
class ServerPlan:
    """How one server of a simulated job behaves, in seconds (already divided by the speed).

    ``launching``: from conversion start to the launch result. ``actions``: how long its
    post-launch actions run after launch; None when it has none (a drill, or a server
    with no actions configured).
    """

    outcome: ServerOutcome = "launched"
    launching: float = 6 * 60
    actions: float | None = None
    action_names: tuple[str, ...] = ("Validate recovery",)
    optional_actions: frozenset[str] = frozenset()  # names whose runs are optional
    # DRS lists the runs one at a time: each action's run appears when the one before
    # it ended (``actions`` s split evenly), instead of all of them at launch.
    runs_one_at_a_time: bool = False
    # (field, value): "launchStatus" or "runs.status" shows ``value`` instead of
    # IN_PROGRESS, a value outside the DRS model injected on purpose.
    outside_model: tuple[str, str] | None = None


def planned_timeline(
    plans: Mapping[str, ServerPlan], *, pending: float, started: float
) -> tuple[Snapshot, ...]:
    """Snapshots for a job whose servers each follow their own :class:`ServerPlan`.

    The job is PENDING for ``pending`` s (JOB_START, then snapshot and conversion, the
    order of DRS's job log: see ``render_job_log``), STARTED for ``started`` s with its
    servers still PENDING, then each server launches (IN_PROGRESS) for its ``launching``
    s and ends LAUNCHED or FAILED; its post-launch actions run ``actions`` s after that.
    The job is COMPLETED once every server's launch ended; a ``conversion_stalled``
    server stays IN_PROGRESS for ever, and so its job stays STARTED.
    """
    converting_from = pending + started
    launch_ends: dict[str, float] = {}
    action_ends: dict[str, float] = {}
    for sid, plan in plans.items():
        if plan.outcome == "conversion_stalled":
            continue
        launch_ends[sid] = converting_from + plan.launching
        if plan.actions is not None and plan.outcome != "launch_failed":
            action_ends[sid] = launch_ends[sid] + plan.actions
    stalled = len(launch_ends) < len(plans)
    job_done = None if stalled or not launch_ends else max(launch_ends.values())
    steps = {
        launch_ends[sid] + index * (action_ends[sid] - launch_ends[sid]) / len(plan.action_names)
        for sid, plan in plans.items()
        if plan.runs_one_at_a_time and sid in action_ends and plan.action_names
        for index in range(1, len(plan.action_names))
    }
    moments = sorted(
        {0.0, pending, converting_from, *launch_ends.values(), *action_ends.values(), *steps}
    )

    snapshots = []
    for moment in moments:
        job_status: JobStatus = "PENDING" if moment < pending else "STARTED"
        if job_done is not None and moment >= job_done:
            job_status = "COMPLETED"
        servers = {
            sid: _server_at(
                plan,
                moment,
                converting_from=converting_from,
                launch_end=launch_ends.get(sid),
                action_end=action_ends.get(sid),
            )
            for sid, plan in plans.items()
        }
        snapshots.append(Snapshot(moment, job_status, servers))
    return tuple(snapshots)


def _server_at(
    plan: ServerPlan,
    moment: float,
    *,
    converting_from: float,
    launch_end: float | None,
    action_end: float | None,
) -> ServerSnapshot:
    if moment < converting_from:
        return PENDING_SERVER
    if launch_end is None or moment < launch_end:
        if plan.outside_model and plan.outside_model[0] == "launchStatus":
            return ServerSnapshot(plan.outside_model[1], deliberately_outside_model=True)
        return ServerSnapshot("IN_PROGRESS")
    outcome = plan.outcome if plan.actions is not None else _without_actions(plan.outcome)
    shape = _ServerPlan(outcome, plan.actions is not None, plan.action_names)
    running = action_end is not None and moment < action_end
    snap = shape.after_launch("IN_PROGRESS" if running else "SUCCEEDED")
    if snap.runs and running and plan.runs_one_at_a_time and action_end is not None:
        share = (action_end - launch_end) / len(snap.runs)
        listed = min(len(snap.runs), int((moment - launch_end) // share) + 1)
        runs = tuple(
            replace(run, status="SUCCEEDED" if index < listed - 1 else "IN_PROGRESS")
            for index, run in enumerate(snap.runs[:listed])
        )
        snap = replace(snap, runs=runs)
    if snap.runs:
        snap = replace(snap, runs=tuple(_planned_run(plan, run) for run in snap.runs))
    return snap


def _planned_run(plan: ServerPlan, run: RunSnapshot) -> RunSnapshot:
    run = replace(run, optional=run.name in plan.optional_actions)
    if (
        run.status == "IN_PROGRESS"
        and plan.outside_model
        and plan.outside_model[0] == "runs.status"
    ):
        return replace(run, status=plan.outside_model[1], deliberately_outside_model=True)
    return run


def _without_actions(outcome: ServerOutcome) -> ServerOutcome:
    # An action cannot fail where no action runs (a drill, or none configured).
    return "launched" if outcome == "action_failed" else outcome


# ---------------------------------------------------------------- wire rendering

_LAUNCHED_OR_AFTER: frozenset[LaunchStatus] = frozenset({"LAUNCHED", "TERMINATED"})


def _action_code(name: str) -> str:
    return "AWS-" + re.sub(r"[^A-Za-z0-9-/:]", "-", name)


def action_id(region: str, name: str) -> str:
    """A launch action's id, the same in ListLaunchActions and in the runs of a job."""
    return _derived_uuid(region, "action", name)


def render_launch_action(
    region: str, source_server_id: str, action: LaunchActionScript, order: int
) -> dict[str, Any]:
    """One ``LaunchAction`` as ListLaunchActions returns it (botocore shape LaunchAction;
    the DRS user guide's "post-launch actions" are these, per source server)."""
    del source_server_id  # the id is per region and name, as the runs render it
    return {
        "actionId": action_id(region, action.name),
        "name": action.name,
        "actionCode": _action_code(action.name),
        "actionVersion": "$DEFAULT",
        "type": "SSM_AUTOMATION",
        "category": "VALIDATION",
        "description": f"{action.name} (simulated)",
        "order": order,
        "active": action.active,
        "optional": action.optional,
    }


def _render_run(script: JobScript, server_id: str, index: int, run: RunSnapshot) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "runId": _derived_uuid(script.job_id, server_id, "run", str(index), run.name),
        "status": run.status,
        "action": {
            "actionId": action_id(script.region, run.name),
            "name": run.name,
            "actionCode": _action_code(run.name),
            "actionVersion": "$DEFAULT",
            "type": "SSM_AUTOMATION",
            "category": "VALIDATION",
            "order": 2 + index,
            "active": True,
            "optional": run.optional,
        },
    }
    if run.failure_reason is not None:
        rendered["failureReason"] = run.failure_reason
    return rendered


def _initiated_by(script: JobScript) -> str:
    if script.job_type == "TERMINATE":
        return "TERMINATE_RECOVERY_INSTANCES"
    return "START_DRILL" if script.is_drill else "START_RECOVERY"


def render_job(script: JobScript, now: float) -> dict[str, Any]:
    """One ``Job`` exactly as DescribeJobs returns it."""
    state = script.state_at(now)
    servers: list[dict[str, Any]] = []
    for server in script.servers:
        snap = state.server(server.source_server_id)
        rendered: dict[str, Any] = {
            "sourceServerID": server.source_server_id,
            "launchStatus": snap.launch_status,
        }
        if (
            snap.launch_status in _LAUNCHED_OR_AFTER
            and server.recovery_instance_id
            and server.job_reports_instance
        ):
            rendered["recoveryInstanceID"] = server.recovery_instance_id
        if snap.runs is not None:
            rendered["launchActionsStatus"] = {
                "runs": [
                    _render_run(script, server.source_server_id, index, run)
                    for index, run in enumerate(snap.runs)
                ]
            }
        servers.append(rendered)
    job: dict[str, Any] = {
        "jobID": script.job_id,
        "arn": script.arn,
        "type": script.job_type,
        "initiatedBy": _initiated_by(script),
        "creationDateTime": iso8601(script.created_at),
        "status": state.job_status,
        "participatingServers": servers,
        "tags": dict(script.tags),
    }
    completed_at = script.completed_at(now)
    if completed_at is not None:
        job["endDateTime"] = iso8601(completed_at)
    return job


def launched_at(script: JobScript, server: ServerScript, now: float) -> float | None:
    """When the server's recovery instance first existed (LAUNCHED), if it has by ``now``."""
    for snapshot in script.reached(now):
        if snapshot.server(server.source_server_id).launch_status in _LAUNCHED_OR_AFTER:
            return script.created_at + snapshot.at
    return None


def ec2_state_at(script: JobScript, server: ServerScript, now: float) -> Ec2InstanceState:
    explicit = [state for at, state in server.ec2_states if script.created_at + at <= now]
    if explicit:
        return explicit[-1]
    launch_status = script.state_at(now).server(server.source_server_id).launch_status
    return "TERMINATED" if launch_status == "TERMINATED" else "RUNNING"


def render_recovery_instance(
    script: JobScript, server: ServerScript, now: float
) -> dict[str, Any] | None:
    """The ``RecoveryInstance`` for a server, or None while it has not launched."""
    if server.recovery_instance_id is None:
        return None
    born = launched_at(script, server, now)
    if born is None:
        return None
    rendered: dict[str, Any] = {
        "recoveryInstanceID": server.recovery_instance_id,
        "arn": (
            f"arn:aws:drs:{script.region}:{script.account_id}"
            f":recovery-instance/{server.recovery_instance_id}"
        ),
        "sourceServerID": server.source_server_id,
        "jobID": script.job_id,
        "isDrill": script.is_drill,
        "ec2InstanceState": ec2_state_at(script, server, now),
        "originEnvironment": "ON_PREMISES",
        "pointInTimeSnapshotDateTime": script.data_time,
        "tags": {},
    }
    if server.ec2_instance_id is not None:
        rendered["ec2InstanceID"] = server.ec2_instance_id
    return rendered


# Ranks of how far a server got, each rank adding its log events once.
_RANK_PENDING, _RANK_SNAPSHOTTING, _RANK_CONVERTING, _RANK_LAUNCH_ENDED = 0, 1, 2, 3


def _server_rank(job_status: str, launch_status: str) -> int:
    if launch_status in {"LAUNCHED", "FAILED", "TERMINATED"}:
        return _RANK_LAUNCH_ENDED
    if launch_status == "IN_PROGRESS":
        return _RANK_CONVERTING
    return _RANK_SNAPSHOTTING if job_status != "PENDING" else _RANK_PENDING


def render_job_log(script: JobScript, now: float) -> list[dict[str, Any]]:
    """``JobLog`` items derived from the snapshots reached by ``now``, oldest first."""
    if script.job_type == "TERMINATE":
        return _terminate_job_log(script, now)
    if script.snapshot_seconds is not None:
        return _staged_job_log(script, now, snapshot_seconds=script.snapshot_seconds)
    items: list[dict[str, Any]] = []
    job_started = job_ended = False
    ranks = {server.source_server_id: _RANK_PENDING for server in script.servers}

    def log(event: str, at: float, **event_data: Any) -> None:
        items.append({"event": event, "eventData": event_data, "logDateTime": iso8601(at)})

    for snapshot in script.reached(now):
        at = script.created_at + snapshot.at
        if snapshot.job_status != "PENDING" and not job_started:
            job_started = True
            log("JOB_START", at)
        for server in script.servers:
            sid = server.source_server_id
            launch_status = snapshot.server(sid).launch_status
            new_rank = _server_rank(snapshot.job_status, launch_status)
            for rank in range(ranks[sid] + 1, new_rank + 1):
                _log_server_stage(log, script=script, server=server, rank=rank, at=at)
            ended_now = new_rank == _RANK_LAUNCH_ENDED and ranks[sid] < _RANK_LAUNCH_ENDED
            if ended_now and launch_status == "FAILED":
                log("LAUNCH_FAILED", at, sourceServerID=sid, rawError=LAUNCH_FAILED_RAW_ERROR)
            ranks[sid] = max(ranks[sid], new_rank)
        if snapshot.job_status == "COMPLETED" and not job_ended:
            job_ended = True
            log("JOB_END", at)
    return items


def _terminate_job_log(script: JobScript, now: float) -> list[dict[str, Any]]:
    """A terminate job converts nothing: it only starts and ends."""
    items: list[dict[str, Any]] = []
    reached = script.reached(now)
    started = [s for s in reached if s.job_status != "PENDING"]
    if started:
        items.append(
            {"event": "JOB_START", "logDateTime": iso8601(script.created_at + started[0].at)}
        )
    ended = [s for s in reached if s.job_status == "COMPLETED"]
    if ended:
        items.append({"event": "JOB_END", "logDateTime": iso8601(script.created_at + ended[0].at)})
    return items


def _staged_job_log(
    script: JobScript, now: float, *, snapshot_seconds: float
) -> list[dict[str, Any]]:
    """The job log of a simulated job, where PENDING covers snapshot and conversion.

    JOB_START and SNAPSHOT_START at creation; SNAPSHOT_END and CONVERSION_START after
    ``snapshot_seconds``; CONVERSION_END when the job leaves PENDING (never, for a server
    whose conversion stalls); LAUNCH_START when the server goes IN_PROGRESS;
    LAUNCH_FAILED when it fails; JOB_END when the job completes.
    """
    events: list[tuple[float, int, dict[str, Any]]] = []

    def log(at: float, event: str, **event_data: Any) -> None:
        if script.created_at + at <= now:
            item: dict[str, Any] = {"event": event, "logDateTime": iso8601(script.created_at + at)}
            if event_data:
                item["eventData"] = event_data
            events.append((at, len(events), item))

    conversion_properties = {"dataTimestamp": script.data_time}

    final = script.timeline[-1] if script.timeline else Snapshot(0.0, "PENDING")
    left_pending = next((s.at for s in script.timeline if s.job_status != "PENDING"), None)
    completed = next((s.at for s in script.timeline if s.job_status == "COMPLETED"), None)
    log(0.0, "JOB_START")
    for server in script.servers:
        sid = server.source_server_id
        conversion = _derived_instance_id(script.job_id, sid, "conversion")
        log(0.0, "SNAPSHOT_START", sourceServerID=sid)
        log(snapshot_seconds, "SNAPSHOT_END", sourceServerID=sid)
        log(
            snapshot_seconds,
            "CONVERSION_START",
            sourceServerID=sid,
            conversionServerID=conversion,
            conversionProperties=conversion_properties,
        )
        stalls = final.server(sid).launch_status in {"PENDING", "IN_PROGRESS"}
        if left_pending is not None and not stalls:
            log(
                left_pending,
                "CONVERSION_END",
                sourceServerID=sid,
                conversionServerID=conversion,
                conversionProperties=conversion_properties,
            )
        launching = next(
            (s.at for s in script.timeline if s.server(sid).launch_status != "PENDING"), None
        )
        if launching is not None and not stalls:
            target = server.ec2_instance_id or _derived_instance_id(script.job_id, sid, "target")
            log(launching, "LAUNCH_START", sourceServerID=sid, targetInstanceID=target)
        failed = next(
            (s.at for s in script.timeline if s.server(sid).launch_status == "FAILED"), None
        )
        if failed is not None:
            log(failed, "LAUNCH_FAILED", sourceServerID=sid, rawError=LAUNCH_FAILED_RAW_ERROR)
    if completed is not None:
        log(completed, "JOB_END")
    return [item for _, _, item in sorted(events, key=lambda entry: (entry[0], entry[1]))]


def _log_server_stage(
    log: Callable[..., None], *, script: JobScript, server: ServerScript, rank: int, at: float
) -> None:
    sid = server.source_server_id
    conversion_server = _derived_instance_id(script.job_id, sid, "conversion")
    if rank == _RANK_SNAPSHOTTING:
        log("SNAPSHOT_START", at, sourceServerID=sid)
    elif rank == _RANK_CONVERTING:
        log("SNAPSHOT_END", at, sourceServerID=sid)
        log(
            "CONVERSION_START",
            at,
            sourceServerID=sid,
            conversionServerID=conversion_server,
            conversionProperties={"dataTimestamp": script.data_time},
        )
    elif rank == _RANK_LAUNCH_ENDED:
        log(
            "CONVERSION_END",
            at,
            sourceServerID=sid,
            conversionServerID=conversion_server,
            conversionProperties={"dataTimestamp": script.data_time},
        )
        target = server.ec2_instance_id or _derived_instance_id(script.job_id, sid, "target")
        log("LAUNCH_START", at, sourceServerID=sid, targetInstanceID=target)


def one_server_job(
    *,
    job_id: str,
    source_server_id: str,
    region: str,
    is_drill: bool,
    created_at: float,
    outcome: ServerOutcome,
    speed: float = 1.0,
    jitter: float = 1.0,
) -> JobScript:
    """A job of one server, with real DRS's durations divided by ``speed`` (pending and
    launching also scaled by ``jitter``), a recovery's post-launch actions, and a drill's
    clean-up: the unit the fleet tests and the benchmark's workloads are made of. Its
    recovery instance id is the job id's digits after ``i-``."""
    return JobScript(
        job_id=job_id,
        region=region,
        is_drill=is_drill,
        created_at=created_at,
        servers=(
            ServerScript(
                source_server_id, recovery_instance_id="i-" + job_id.removeprefix("drsjob-")
            ),
        ),
        timeline=standard_timeline(
            [source_server_id],
            pending=13.5 * 60 * jitter / speed,
            started=30.0 / speed,
            launching=6 * 60 * jitter / speed,
            actions=None if is_drill else 10 * 60 / speed,
            outcomes={source_server_id: outcome},
            terminate_after=10 * 60 / speed,  # a drill is cleaned up well after launch
        ),
    )
