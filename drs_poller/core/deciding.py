"""Decide: from one execution item and one poll's DRS observations, the next item state.

``decide`` is pure. It returns the attributes to write (or nothing), the phase the
next poll is scheduled from, and the final status when the execution is done. The
write itself is conditional on the item being exactly what was read, so a lost
race is re-decided from the fresh item with the same observations.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from drs_poller.core.completion import Outcome, final_status, server_outcome
from drs_poller.core.history import append_transition, epoch
from drs_poller.core.models import (
    ExecutionType,
    InstanceDetails,
    JobLookup,
    JobStatus,
    JobView,
    LaunchStatus,
    Participant,
    PostLaunchStatus,
    RunStatus,
    Server,
    parse_execution,
)
from drs_poller.core.phases import Intervals, Phase, most_urgent, parse_phase, server_phase

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drs_poller.core.models import Execution

WriteKind = Literal["none", "heartbeat", "state", "finalize"]

# DRS's JobID pattern. An id that cannot match is never sent: DRS would reject the
# whole DescribeJobs call, and with it every other execution in the batch's region.
_JOB_ID = re.compile(r"^drsjob-[0-9a-zA-Z]{17}$")

# Attributes refreshed on every poll; a difference in these alone is not a change.
_BOOKKEEPING = ("LastPolledTime", "PollAttempts")

# DRS moves a server's launchStatus forward only: PENDING, IN_PROGRESS, LAUNCHED, then
# TERMINATED (a clean-up) or FAILED. An observation ranked below the stored status is
# older than what another poller already wrote (it polled later and won the write):
# nothing is taken from it, so a status never moves back and no transition repeats.
_LAUNCH_RANK = {
    LaunchStatus.PENDING.value: 0,
    LaunchStatus.IN_PROGRESS.value: 1,
    LaunchStatus.LAUNCHED.value: 2,
    LaunchStatus.FAILED.value: 3,
    LaunchStatus.TERMINATED.value: 3,
}


def is_older_observation(stored_status: str | None, observed: LaunchStatus | None) -> bool:
    """Whether DRS's ``observed`` launchStatus is behind the ``stored_status`` we hold."""
    if observed is None or stored_status not in _LAUNCH_RANK:
        return False
    return _LAUNCH_RANK[observed.value] < _LAUNCH_RANK[stored_status]


@dataclass(frozen=True, slots=True)
class Policy:
    intervals: Intervals = field(default_factory=Intervals)
    post_launch_grace: float = 600.0
    unknown_job_max_polls: int = 8
    history_limit: int = 20
    overdue_after: float = 1800.0
    max_execution_age: float = 43200.0
    heartbeat_interval: float = 300.0


@dataclass(frozen=True, slots=True)
class ServerChange:
    wave: str
    source_server_id: str
    old_status: str | None
    new_status: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    kind: WriteKind
    phase: Phase
    updates: Mapping[str, Any]  # top-level attributes to SET; empty when kind == "none"
    final_status: str | None = None
    changes: tuple[ServerChange, ...] = ()

    @property
    def writes(self) -> bool:
        return self.kind != "none"


def is_overdue(execution: Execution, *, now: float, policy: Policy) -> bool:
    return now - execution.start_time > policy.overdue_after


def jobs_to_poll(execution: Execution) -> dict[str, set[str]]:
    """Job ids per region whose servers still need DRS (not failed; succeeded ones are
    kept so that a drill's later TERMINATED is recorded while the execution runs)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for wave in execution.waves:
        for server in wave.servers:
            if (
                server.job_id
                and wave.region
                and _JOB_ID.match(server.job_id)
                and not _frozen(server, execution.mode_of(wave))
            ):
                wanted[wave.region].add(server.job_id)
    return dict(wanted)


def instances_to_describe(
    execution: Execution, jobs: Mapping[str, JobLookup]
) -> dict[str, set[str]]:
    """Recovery instance ids per region for servers that launched and whose EC2
    details are not in the item yet."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for wave in execution.waves:
        for server in wave.servers:
            lookup = jobs.get(server.job_id) if server.job_id else None
            if (
                not isinstance(lookup, JobView)
                or wave.region is None
                or _frozen(server, execution.mode_of(wave))
            ):
                continue
            participant = lookup.servers.get(server.source_server_id)
            if (
                participant is not None
                and participant.launch_status is LaunchStatus.LAUNCHED
                and participant.recovery_instance_id
                and (
                    "InstanceId" not in server.raw
                    or server.raw.get("RecoveryInstanceId") != participant.recovery_instance_id
                )
            ):
                wanted[wave.region].add(participant.recovery_instance_id)
    return dict(wanted)


def failures_to_explain(execution: Execution, jobs: Mapping[str, JobLookup]) -> dict[str, set[str]]:
    """Job ids per region in which DRS now reports FAILED for a server the item does not
    show as failed yet: their job log says why, for the server's Error."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for wave in execution.waves:
        for server in wave.servers:
            lookup = jobs.get(server.job_id) if server.job_id else None
            if not isinstance(lookup, JobView) or wave.region is None:
                continue
            participant = lookup.servers.get(server.source_server_id)
            if (
                participant is not None
                and participant.launch_status is LaunchStatus.FAILED
                and server_outcome(server, execution.mode_of(wave)) is Outcome.ACTIVE
            ):
                wanted[wave.region].add(lookup.job_id)
    return dict(wanted)


def _frozen(server: Server, mode: ExecutionType) -> bool:
    return server_outcome(server, mode) is Outcome.FAILED


class _ServerUpdate:
    """The new map of one server, built on a copy of what was read."""

    def __init__(self, server: Server, *, now: float, policy: Policy) -> None:
        self.server = server
        self.raw: dict[str, Any] = dict(server.raw)
        self.now = now
        self.policy = policy

    def set_status(self, status: str) -> None:
        if self.raw.get("Status") != status:
            self.raw["Status"] = status
            self.raw["TransitionHistory"] = append_transition(
                self.raw.get("TransitionHistory"),
                status=status,
                at=self.now,
                limit=self.policy.history_limit,
            )

    def fail(self, error: str, *, status: str | None = None) -> None:
        if status is not None:
            self.set_status(status)
        self.raw["Error"] = error

    def change(self, wave: str) -> ServerChange | None:
        before = {k: v for k, v in self.server.raw.items() if k not in _BOOKKEEPING}
        after = {k: v for k, v in self.raw.items() if k not in _BOOKKEEPING}
        if before == after:
            return None
        return ServerChange(
            wave=wave,
            source_server_id=self.server.source_server_id,
            old_status=self.server.status,
            new_status=self.raw.get("Status"),
            error=self.raw.get("Error"),
        )


def _advance_server(
    update: _ServerUpdate,
    *,
    mode: ExecutionType,
    lookup: JobLookup,
    instance: InstanceDetails | None,
    reason: str | None = None,
) -> None:
    server = update.server
    outcome = server_outcome(server, mode)
    if not isinstance(lookup, JobView):
        _job_not_found(update, succeeded=outcome is Outcome.SUCCEEDED)
        return
    update.raw.pop("JobNotFoundPolls", None)
    participant = lookup.servers.get(server.source_server_id)
    if participant is not None and is_older_observation(server.status, participant.launch_status):
        return
    launched_time = _observe_launch(update, participant=participant, instance=instance)
    if outcome is Outcome.SUCCEEDED:
        return  # never goes back: a later TERMINATED is a drill's normal clean-up
    launch_status = participant.launch_status if participant else None
    if launched_time is None:
        _judge_unlaunched(update, job=lookup, launch_status=launch_status, reason=reason)
    elif mode is ExecutionType.RECOVERY:
        _advance_post_launch(
            update,
            participant_runs=participant.runs if participant else (),
            launch_status=launch_status,
            launched_time=launched_time,
        )
    # A launched DRILL server has succeeded: nothing more to judge.


def _job_not_found(update: _ServerUpdate, *, succeeded: bool) -> None:
    if succeeded:
        return  # DRS may expire a job after it is done; success stands
    misses = update.server.job_not_found_polls + 1
    update.raw["JobNotFoundPolls"] = misses
    if misses >= update.policy.unknown_job_max_polls:
        update.fail(
            f"DRS does not know job {update.server.job_id} after {misses} polls", status="FAILED"
        )


def _observe_launch(
    update: _ServerUpdate, *, participant: Participant | None, instance: InstanceDetails | None
) -> float | None:
    """Record what DRS and EC2 report; return when the server launched, if it has."""
    launch_status = participant.launch_status if participant else None
    if launch_status is not None:
        update.set_status(launch_status.value)
    if participant is not None and participant.recovery_instance_id:
        update.raw["RecoveryInstanceId"] = participant.recovery_instance_id
    if instance is not None:
        for attribute, value in (
            ("InstanceId", instance.ec2_instance_id),
            ("PrivateIp", instance.private_ip),
            ("Hostname", instance.hostname),
            ("InstanceType", instance.instance_type),
        ):
            if value:
                update.raw[attribute] = value
    if update.server.launched_time is None and (
        launch_status is LaunchStatus.LAUNCHED
        # TERMINATED with a recovery instance: DRS keeps the evidence that it launched
        # (CONTRACT §2), and the LAUNCHED in between was gone before this poll (a drill
        # cleaned up while the daemon was down, stalled, or on a starved machine).
        or (
            launch_status is LaunchStatus.TERMINATED
            and participant is not None
            and participant.recovery_instance_id
        )
    ):
        update.raw["LaunchedTime"] = epoch(update.now)
        return update.now
    return update.server.launched_time


def _judge_unlaunched(
    update: _ServerUpdate,
    *,
    job: JobView,
    launch_status: LaunchStatus | None,
    reason: str | None = None,
) -> None:
    if launch_status is LaunchStatus.FAILED:
        because = f": {reason}" if reason else ""
        update.fail(f"DRS reported launchStatus FAILED (job {job.job_id}){because}")
    elif launch_status is LaunchStatus.TERMINATED:
        update.fail(f"DRS reported TERMINATED before the server launched (job {job.job_id})")
    elif job.status is JobStatus.COMPLETED:
        shown = launch_status.value if launch_status else "none reported"
        update.fail(
            f"job {job.job_id} completed but the server did not launch (launchStatus {shown})",
            status=None if launch_status else "FAILED",
        )


def _advance_post_launch(
    update: _ServerUpdate,
    *,
    participant_runs: tuple[Any, ...],
    launch_status: LaunchStatus | None,
    launched_time: float,
) -> None:
    """A launched RECOVERY server succeeds only when its post-launch actions do."""
    runs = participant_runs
    failed = [run for run in runs if run.status is RunStatus.FAILED]
    if failed:
        update.raw["PostLaunchActionsStatus"] = PostLaunchStatus.FAILED.value
        names = ", ".join(
            f"{run.name or 'unnamed'}" + (f" ({run.failure_reason})" if run.failure_reason else "")
            for run in failed
        )
        update.fail(f"post-launch action failed: {names}")
    elif runs and all(run.status is RunStatus.SUCCEEDED for run in runs):
        update.raw["PostLaunchActionsStatus"] = PostLaunchStatus.COMPLETED.value
        update.raw["PostLaunchActionsCompleted"] = epoch(update.now)
    elif launch_status is LaunchStatus.FAILED:
        update.fail("DRS reported launchStatus FAILED before its post-launch actions finished")
    # TERMINATED after LAUNCHED is no failure (CONTRACT §2): the runs and the grace
    # period still decide, and a run that can no longer finish ends at the maximum age.
    elif runs or update.now - launched_time < update.policy.post_launch_grace:
        update.raw["PostLaunchActionsStatus"] = PostLaunchStatus.IN_PROGRESS.value
    else:
        update.raw["PostLaunchActionsStatus"] = PostLaunchStatus.NOT_CONFIGURED.value


def decide(
    execution: Execution,
    *,
    jobs: Mapping[str, JobLookup],
    instances: Mapping[str, InstanceDetails],
    now: float,
    policy: Policy,
    polls_since_write: int = 1,
    reasons: Mapping[tuple[str, str], str] | None = None,
) -> Decision:
    """The next state of ``execution`` after one poll.

    ``jobs`` holds what DRS answered for each job id it was asked about; a job id
    missing from it was not observed (its region's call failed), and nothing is
    concluded about its servers. ``polls_since_write`` counts this poll and the
    unwritten ones before it, for PollAttempts. ``reasons`` maps (job id, source
    server id) to why DRS failed that server, from its job log, when known.
    """
    new_waves, changes = _advance_servers(
        execution,
        jobs=jobs,
        instances=instances,
        now=now,
        policy=policy,
        polls_since_write=polls_since_write,
        reasons=reasons or {},
    )
    updated = parse_execution({**execution.raw, "Waves": new_waves})
    phase = derive_phase(updated, jobs=jobs, intervals=policy.intervals)
    status, error_message = _settle_execution(
        updated, new_waves=new_waves, now=now, policy=policy, changes=changes
    )
    updates: dict[str, Any] = {
        "Waves": new_waves,
        "Phase": phase.value,
        "LastPolledTime": epoch(now),
    }
    if status is not None:
        updates.update(Status=status, EndTime=epoch(now))
        if error_message:
            updates["ErrorMessage"] = error_message
        return Decision(
            kind="finalize",
            phase=phase,
            updates=updates,
            final_status=status,
            changes=tuple(changes),
        )
    if (
        changes
        or _wave_attributes(new_waves) != _wave_attributes([wave.raw for wave in execution.waves])
        or phase.value != execution.phase
    ):
        return Decision(kind="state", phase=phase, updates=updates, changes=tuple(changes))
    if (
        execution.last_polled_time is None
        or now - execution.last_polled_time >= policy.heartbeat_interval
    ):
        return Decision(kind="heartbeat", phase=phase, updates=updates)
    return Decision(kind="none", phase=phase, updates={})


def _advance_servers(
    execution: Execution,
    *,
    jobs: Mapping[str, JobLookup],
    instances: Mapping[str, InstanceDetails],
    now: float,
    policy: Policy,
    polls_since_write: int,
    reasons: Mapping[tuple[str, str], str],
) -> tuple[list[dict[str, Any]], list[ServerChange]]:
    changes: list[ServerChange] = []
    new_waves: list[dict[str, Any]] = []
    for wave in execution.waves:
        mode = execution.mode_of(wave)
        servers: list[dict[str, Any]] = []
        for server in wave.servers:
            update = _ServerUpdate(server, now=now, policy=policy)
            lookup = jobs.get(server.job_id) if server.job_id else None
            if _frozen(server, mode) and server.error is None:
                # Another writer marked it failed without saying why; a failed server
                # always carries Error (CONTRACT §1).
                update.raw["Error"] = (
                    f"failed ({server.status or 'no status'}; no reason was recorded)"
                    if server.job_id
                    else "failed to start: no DRS job was started (no reason was recorded)"
                )
            if server.job_id and not _JOB_ID.match(server.job_id) and not _frozen(server, mode):
                update.fail(
                    f"RecoveryJobId {server.job_id!r} is not a DRS job id "
                    "(drsjob- and 17 letters or digits)",
                    status="FAILED",
                )
            elif lookup is not None and not _frozen(server, mode):
                _advance_server(
                    update,
                    mode=mode,
                    lookup=lookup,
                    instance=_instance_for(server, lookup, instances),
                    reason=reasons.get((server.job_id or "", server.source_server_id)),
                )
                update.raw["LastPolledTime"] = epoch(now)
                update.raw["PollAttempts"] = server.poll_attempts + polls_since_write
            change = update.change(wave.name)
            if change is not None:
                changes.append(change)
            servers.append(update.raw)
        new_waves.append({**wave.raw, "Servers": servers})
    return new_waves, changes


def _instance_for(
    server: Server, lookup: JobLookup, instances: Mapping[str, InstanceDetails]
) -> InstanceDetails | None:
    if not isinstance(lookup, JobView):
        return None
    participant = lookup.servers.get(server.source_server_id)
    if participant is None or not participant.recovery_instance_id:
        return None
    return instances.get(participant.recovery_instance_id)


def _wave_attributes(waves: list[dict[str, Any]] | list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in wave.items() if k != "Servers"} for wave in waves]


def derive_phase(
    execution: Execution, *, jobs: Mapping[str, JobLookup], intervals: Intervals
) -> Phase:
    """The most urgent phase among the execution's active servers' jobs.

    With no active server (between waves) the execution waits at the PENDING pace.
    A server whose job was not observed this poll keeps the stored phase in the mix,
    so a failed DRS call does not slow the schedule down.
    """
    phases: list[Phase] = []
    for wave in execution.waves:
        mode = execution.mode_of(wave)
        for server in wave.servers:
            if server.job_id is None or server_outcome(server, mode) is not Outcome.ACTIVE:
                continue
            lookup = jobs.get(server.job_id)
            if isinstance(lookup, JobView):
                phases.append(server_phase(lookup, server.source_server_id, mode=mode))
            elif (stored := parse_phase(execution.phase)) is not None:
                phases.append(stored)
    return most_urgent(phases, intervals) or Phase.PENDING


def _settle_execution(
    updated: Execution,
    *,
    new_waves: list[dict[str, Any]],
    now: float,
    policy: Policy,
    changes: list[ServerChange],
) -> tuple[str | None, str | None]:
    """Settle every wave; return the execution's final status and error, if it is done."""
    all_outcomes: list[Outcome] = []
    has_empty_wave = False
    for index, wave in enumerate(updated.waves):
        mode = updated.mode_of(wave)
        outcomes = [server_outcome(server, mode) for server in wave.servers]
        all_outcomes.extend(outcomes)
        has_empty_wave = has_empty_wave or not wave.servers
        _settle_wave(new_waves[index], outcomes=outcomes, now=now)
    status = final_status(all_outcomes, has_empty_wave=has_empty_wave)
    if status is None and now - updated.start_time >= policy.max_execution_age:
        return "FAILED", _abandon(
            new_waves, updated=updated, now=now, policy=policy, changes=changes
        )
    if status == "FAILED":
        return status, _failure_summary(updated, has_empty_wave=has_empty_wave)
    return status, None


def _settle_wave(raw: dict[str, Any], *, outcomes: list[Outcome], now: float) -> None:
    if not outcomes:
        status: str | None = "FAILED"
        raw.setdefault("Error", "wave has no servers to recover")
    else:
        status = final_status(outcomes)
    if status is not None:
        if raw.get("Status") != status:
            raw["Status"] = status
        raw.setdefault("EndTime", epoch(now))
    elif any(outcome is Outcome.ACTIVE for outcome in outcomes):
        raw["Status"] = "IN_PROGRESS"  # CONTRACT §1: while any of its jobs is active


def _failure_summary(execution: Execution, *, has_empty_wave: bool) -> str:
    failed = [
        f"{server.source_server_id}: {server.error or server.status}"
        for wave in execution.waves
        for server in wave.servers
    ]
    if not failed:
        return "the execution has no servers to recover"
    shown = "; ".join(failed[:5]) + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "")
    empty = " (and a wave with no servers)" if has_empty_wave else ""
    return f"all {len(failed)} servers failed{empty}: {shown}"


def _abandon(
    new_waves: list[dict[str, Any]],
    *,
    updated: Execution,
    now: float,
    policy: Policy,
    changes: list[ServerChange],
) -> str:
    """Past the maximum age: every unfinished server fails, and the execution ends FAILED."""
    age = int(policy.max_execution_age)
    active = not_started = 0
    for index, wave in enumerate(updated.waves):
        mode = updated.mode_of(wave)
        for position, server in enumerate(wave.servers):
            outcome = server_outcome(server, mode)
            if outcome.terminal:
                continue
            if outcome is Outcome.ACTIVE:
                active += 1
            else:
                not_started += 1
            update = _ServerUpdate(server, now=now, policy=policy)
            update.fail(
                f"not finished within the maximum execution age of {age} s", status="FAILED"
            )
            new_waves[index]["Servers"][position] = update.raw
            changes[:] = [
                c
                for c in changes
                if (c.wave, c.source_server_id) != (wave.name, server.source_server_id)
            ]
            changes.append(
                ServerChange(
                    wave=wave.name,
                    source_server_id=server.source_server_id,
                    old_status=server.status,
                    new_status="FAILED",
                    error=update.raw["Error"],
                )
            )
        _settle_wave(
            new_waves[index],
            outcomes=[
                Outcome.FAILED if not o.terminal else o
                for o in (server_outcome(s, mode) for s in wave.servers)
            ],
            now=now,
        )
    return (
        f"exceeded the maximum execution age of {age} s without finishing: "
        f"{active} server(s) still active, {not_started} never started"
    )
