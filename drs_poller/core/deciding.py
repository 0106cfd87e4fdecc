"""Decide: from one execution item and one poll's DRS observations, the next item state.

``decide`` is pure. It returns the attributes to write (or nothing), the phase the
next poll is scheduled from, and the final status when the execution is done. The
write itself is conditional on the item being exactly what was read, so a lost
race is re-decided from the fresh item with the same observations.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from drs_poller.clock import epoch
from drs_poller.core.completion import Outcome, final_status, server_outcome
from drs_poller.core.evidence import StallBounds, apply_evidence, stall_marks
from drs_poller.core.history import append_transition
from drs_poller.core.models import (
    ActionRun,
    ExecutionType,
    FinalStatus,
    InstanceDetails,
    JobLookup,
    JobStatus,
    JobView,
    LaunchAction,
    LaunchActionsLookup,
    LaunchActionsUnavailable,
    LaunchStatus,
    Participant,
    PostLaunchStatus,
    RunStatus,
    Server,
    Unknown,
    parse_execution,
)
from drs_poller.core.phases import Intervals, Phase, most_urgent, parse_phase, server_phase
from drs_poller.core.places import Place

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from drs_poller.core.evidence import JobLog
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


# The per-server list of post-launch action runs people read (contract §1), bounded in
# entries and in bytes, so that a 100-server item stays far below DynamoDB's 400 KB
# (tests/unit/test_unit_item_size.py): what did not succeed is kept first; entries past
# the bound are counted in PostLaunchActionsOmitted.
POST_LAUNCH_ACTIONS_LIMIT = 10
POST_LAUNCH_ACTIONS_BUDGET = 640  # bytes of names and values per server, about
_NAME_LIMIT = 48  # characters of an action's name kept in PostLaunchActions
_RUN_REASON_LIMIT = 120  # characters of a run's failureReason kept in PostLaunchActions
_REASON_LIMIT = 500  # characters of other explanations (shortfall, unavailable list)
NOT_RUN = "NOT_RUN"  # PostLaunchActions status of an expected action DRS never listed a run for

# RecoveryInstanceId evidence and what was checked, for a TERMINATED server's Error.
_EVIDENCE_CHECKED = (
    "the job reported no recoveryInstanceID for it, and DescribeRecoveryInstances shows "
    "no recovery instance of this job (the job log is not evidence: JobLogEvent has no "
    "event that shows a launch ended well)"
)


def is_older_observation(
    stored_status: str | None, observed: LaunchStatus | Unknown | None
) -> bool:
    """Whether DRS's ``observed`` launchStatus is behind the ``stored_status`` we hold."""
    if not isinstance(observed, LaunchStatus) or stored_status not in _LAUNCH_RANK:
        return False
    return _LAUNCH_RANK[observed.value] < _LAUNCH_RANK[stored_status]


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules' parameters. No defaults here: each lives once, in the settings
    (``drs_poller.settings.policy_from``)."""

    intervals: Intervals
    post_launch_grace: float
    # How long a RECOVERY server whose listed runs all ended waits for the runs of the
    # source server's other active launch actions (ListLaunchActions) to be listed.
    launch_actions_wait: float
    unknown_job_max_polls: int
    history_limit: int
    overdue_after: float
    max_execution_age: float
    heartbeat_interval: float
    # How long each phase may last before its server is marked Stalled (issue 13).
    stall_bounds: StallBounds


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
    final_status: FinalStatus | None = None
    changes: tuple[ServerChange, ...] = ()
    # Why the evidence (issue 13) could not be built this poll; the statuses stand.
    evidence_error: str | None = None

    @property
    def writes(self) -> bool:
        return self.kind != "none"


def is_overdue(execution: Execution, *, now: float, policy: Policy) -> bool:
    return now - execution.start_time > policy.overdue_after


def jobs_to_poll(execution: Execution) -> dict[Place, set[str]]:
    """Job ids per place (account, region) whose servers still need DRS (not failed;
    succeeded ones are kept so that a drill's later TERMINATED is recorded while the
    execution runs)."""
    wanted: dict[Place, set[str]] = defaultdict(set)
    for wave in execution.waves:
        place = wave.place
        for server in wave.servers:
            if (
                server.job_id
                and place is not None
                and place.region
                and _JOB_ID.match(server.job_id)
                and not _frozen(server, execution.mode_of(wave))
            ):
                wanted[place].add(server.job_id)
    return dict(wanted)


def instances_to_describe(
    execution: Execution, jobs: Mapping[str, JobLookup]
) -> dict[Place, set[str]]:
    """Recovery instance ids per place for servers that launched and whose EC2
    details are not in the item yet."""
    wanted: dict[Place, set[str]] = defaultdict(set)
    for wave in execution.waves:
        place = wave.place
        for server in wave.servers:
            lookup = jobs.get(server.job_id) if server.job_id else None
            if (
                not isinstance(lookup, JobView)
                or place is None
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
                wanted[place].add(participant.recovery_instance_id)
    return dict(wanted)


def _reported(
    execution: Execution, jobs: Mapping[str, JobLookup], status: LaunchStatus
) -> Iterator[tuple[Place, JobView, Server, Participant]]:
    """(place, job, server, DRS's view of it) of each still-active server whose job DRS
    answered for and reports ``status`` for it."""
    for wave in execution.waves:
        place = wave.place
        for server in wave.servers:
            lookup = jobs.get(server.job_id) if server.job_id else None
            if not isinstance(lookup, JobView) or place is None:
                continue
            participant = lookup.servers.get(server.source_server_id)
            if (
                participant is not None
                and participant.launch_status is status
                and server_outcome(server, execution.mode_of(wave)) is Outcome.ACTIVE
            ):
                yield place, lookup, server, participant


def failures_to_explain(
    execution: Execution, jobs: Mapping[str, JobLookup]
) -> dict[Place, set[str]]:
    """Job ids per place in which DRS now reports FAILED for a server the item does not
    show as failed yet: their job log says why, for the server's Error."""
    wanted: dict[Place, set[str]] = defaultdict(set)
    for place, job, _, _ in _reported(execution, jobs, LaunchStatus.FAILED):
        wanted[place].add(job.job_id)
    return dict(wanted)


def _launch_seen(server: Server, participant: Participant | None) -> bool:
    return server.launched_time is not None or (
        participant is not None
        and participant.launch_status in (LaunchStatus.LAUNCHED, LaunchStatus.TERMINATED)
    )


def launch_actions_to_list(
    execution: Execution, jobs: Mapping[str, JobLookup]
) -> set[tuple[Place, str]]:
    """(place, source server id) of the active RECOVERY servers that launched (or that
    DRS shows TERMINATED): their expected actions come from ListLaunchActions."""
    wanted: set[tuple[Place, str]] = set()
    for wave in execution.waves:
        place = wave.place
        if execution.mode_of(wave) is not ExecutionType.RECOVERY or place is None:
            continue
        for server in wave.servers:
            lookup = jobs.get(server.job_id) if server.job_id else None
            if (
                isinstance(lookup, JobView)
                and server_outcome(server, ExecutionType.RECOVERY) is Outcome.ACTIVE
                and _launch_seen(server, lookup.servers.get(server.source_server_id))
            ):
                wanted.add((place, server.source_server_id))
    return wanted


def terminations_to_check(
    execution: Execution, jobs: Mapping[str, JobLookup]
) -> dict[Place, set[tuple[str, str]]]:
    """(job id, source server id) per place of the servers DRS reports TERMINATED
    although the daemon never saw them launch, and for which the job reports no
    recoveryInstanceID: whether DRS still holds a recovery instance of their job decides
    if they launched."""
    wanted: dict[Place, set[tuple[str, str]]] = defaultdict(set)
    for place, job, server, participant in _reported(execution, jobs, LaunchStatus.TERMINATED):
        if server.launched_time is None and _reported_instance(server, participant) is None:
            wanted[place].add((job.job_id, server.source_server_id))
    return dict(wanted)


def _reported_instance(server: Server, participant: Participant) -> str | None:
    """The recovery instance id the job reports for the server, this poll or earlier."""
    stored = server.raw.get("RecoveryInstanceId")
    return participant.recovery_instance_id or (stored if isinstance(stored, str) else None)


def unknown_values(execution: Execution, jobs: Mapping[str, JobLookup]) -> set[Unknown]:
    """The out-of-model values DRS reports for this execution's active servers (a DRILL
    does not read action runs)."""
    found: set[Unknown] = set()
    for wave in execution.waves:
        mode = execution.mode_of(wave)
        for server in wave.servers:
            lookup = jobs.get(server.job_id) if server.job_id else None
            if not isinstance(lookup, JobView) or server_outcome(server, mode).terminal:
                continue
            found.update(_unknowns_of(server, lookup, mode))
    return found


def _unknowns_of(server: Server, job: JobView, mode: ExecutionType) -> list[Unknown]:
    found = [job.unknown_status] if job.unknown_status is not None else []
    participant = job.servers.get(server.source_server_id)
    if participant is not None:
        found += participant.unknown_values(with_runs=mode is ExecutionType.RECOVERY)
    return found


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


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What the poll learnt beyond the job itself, for one server."""

    instance: InstanceDetails | None = None
    reason: str | None = None
    # None: ListLaunchActions not read (yet) for this server; see decide's docstring.
    actions: LaunchActionsLookup | None = None
    read_actions: bool = False
    # For a TERMINATED server the job shows no recovery instance for: the recovery
    # instance of this job DRS still holds ("" when it holds none); None: not checked.
    terminated_instance: str | None = None


def _advance_server(
    update: _ServerUpdate,
    *,
    mode: ExecutionType,
    lookup: JobLookup,
    evidence: _Evidence,
) -> None:
    server = update.server
    outcome = server_outcome(server, mode)
    if not isinstance(lookup, JobView):
        _job_not_found(update, succeeded=outcome is Outcome.SUCCEEDED)
        return
    update.raw.pop("JobNotFoundPolls", None)
    participant = lookup.servers.get(server.source_server_id)
    if participant is None and lookup.broken_entries:
        return  # it may be the entry DRS sent unreadable: not observed this poll
    if participant is not None and is_older_observation(server.status, participant.launch_status):
        return
    launched_time = _observe_launch(update, participant=participant, instance=evidence.instance)
    if outcome is Outcome.SUCCEEDED:
        return  # never goes back: a later TERMINATED is a drill's normal clean-up
    launch_status = participant.launch_status if participant else None
    if launched_time is None and launch_status is LaunchStatus.TERMINATED:
        assert participant is not None  # noqa: S101 - launch_status came from it
        launched_time = _judge_terminated(
            update, job=lookup, participant=participant, evidence=evidence
        )
        if launched_time is None:
            return
    if launched_time is None:
        _judge_unlaunched(update, job=lookup, launch_status=launch_status, reason=evidence.reason)
    elif mode is ExecutionType.RECOVERY:
        _advance_post_launch(
            update,
            runs=participant.runs if participant else (),
            launch_status=launch_status,
            launched_time=launched_time,
            expected=evidence.actions,
            read_actions=evidence.read_actions,
        )
    # A launched DRILL server has succeeded: nothing more to judge.


def _judge_terminated(
    update: _ServerUpdate, *, job: JobView, participant: Participant, evidence: _Evidence
) -> float | None:
    """DRS reports TERMINATED and the daemon never saw LAUNCHED. The evidence DRS keeps,
    in order, first answer wins: (1) the job's ``participatingServers[].recoveryInstanceID``
    (this poll or stored from an earlier one); (2) a recovery instance whose ``jobID`` is
    this job (DescribeRecoveryInstances). The job log is not used: the model's
    ``JobLogEvent`` enum has LAUNCH_START and LAUNCH_FAILED but no event that shows a
    launch ended well. Returns the launch time taken (now) when the evidence shows it
    launched; fails the server when it shows nothing; None while not checked yet."""
    reported = _reported_instance(update.server, participant)
    if reported is not None:
        proof = f"job {job.job_id} reported recoveryInstanceID {reported}"
    elif evidence.terminated_instance is None:
        return None  # DescribeRecoveryInstances was not answered this poll: next poll
    elif evidence.terminated_instance:
        proof = (
            f"DescribeRecoveryInstances shows recovery instance "
            f"{evidence.terminated_instance} of job {job.job_id}"
        )
    else:
        update.fail(
            f"DRS reported TERMINATED before the server launched (job {job.job_id}); "
            f"no evidence that it launched: {_EVIDENCE_CHECKED}"
        )
        return None
    update.raw["LaunchedTime"] = epoch(update.now)
    update.raw["TerminatedAfterLaunch"] = True
    update.raw["LaunchEvidence"] = proof
    return update.now


def _job_not_found(update: _ServerUpdate, *, succeeded: bool) -> None:
    if succeeded:
        return  # DRS may expire a job after it is done; success stands
    misses = update.server.job_not_found_polls + 1
    update.raw["JobNotFoundPolls"] = misses
    if misses >= update.policy.unknown_job_max_polls:
        update.fail(
            f"DRS does not know job {update.server.job_id} after {misses} polls",
            status=LaunchStatus.FAILED.value,
        )


def _observe_launch(
    update: _ServerUpdate, *, participant: Participant | None, instance: InstanceDetails | None
) -> float | None:
    """Record what DRS and EC2 report; return when the server launched, if it has."""
    launch_status = participant.launch_status if participant else None
    if isinstance(launch_status, LaunchStatus):  # an out-of-model value is not written
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
    # TERMINATED with no LAUNCHED seen is judged on DRS's evidence (_judge_terminated).
    if launch_status is LaunchStatus.LAUNCHED and update.server.launched_time is None:
        update.raw["LaunchedTime"] = epoch(update.now)
        return update.now
    return update.server.launched_time


def _judge_unlaunched(
    update: _ServerUpdate,
    *,
    job: JobView,
    launch_status: LaunchStatus | Unknown | None,
    reason: str | None = None,
) -> None:
    if isinstance(launch_status, Unknown):
        return  # not terminal (contract §2): polled on, in phase IN_PROGRESS
    if launch_status is LaunchStatus.FAILED:
        because = f": {reason}" if reason else ""
        update.fail(f"DRS reported launchStatus FAILED (job {job.job_id}){because}")
    elif job.status is JobStatus.COMPLETED:
        shown = launch_status.value if launch_status else "none reported"
        update.fail(
            f"job {job.job_id} completed but the server did not launch (launchStatus {shown})",
            status=None if launch_status else LaunchStatus.FAILED.value,
        )


def _run_entry(run: ActionRun) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Name": (run.name or "unnamed")[:_NAME_LIMIT],
        "Status": run.status.value if isinstance(run.status, RunStatus) else run.status.raw,
        "Optional": run.optional,
    }
    if run.status is RunStatus.SUCCEEDED:
        # The ids are what someone looks up a run by: a run that succeeded needs no
        # looking up, and two UUIDs would double its entry (contract §1, changes).
        return entry
    optional_parts = {
        "ActionId": run.action_id,
        "RunId": run.run_id,
        "FailureReason": run.failure_reason and run.failure_reason[:_RUN_REASON_LIMIT],
    }
    entry.update({name: value for name, value in optional_parts.items() if value})
    return entry


def _not_run_entry(action: LaunchAction) -> dict[str, Any]:
    return {
        "Name": (action.name or "unnamed")[:_NAME_LIMIT],
        "ActionId": action.action_id,
        "Status": NOT_RUN,
        "Optional": action.optional,
    }


def _record_runs(update: _ServerUpdate, entries: list[dict[str, Any]]) -> None:
    """PostLaunchActions (contract §1): every run, bounded; what did not succeed first,
    so a failure that did not count is never the one cut off."""
    if not entries:
        return
    ordered = sorted(entries, key=lambda entry: entry["Status"] == RunStatus.SUCCEEDED.value)
    kept: list[dict[str, Any]] = []
    spent = 0
    for entry in ordered[:POST_LAUNCH_ACTIONS_LIMIT]:
        size = sum(len(key) + len(str(value)) for key, value in entry.items())
        if kept and spent + size > POST_LAUNCH_ACTIONS_BUDGET:
            break
        kept.append(entry)
        spent += size
    update.raw["PostLaunchActions"] = kept
    if len(kept) < len(entries):
        update.raw["PostLaunchActionsOmitted"] = len(entries) - len(kept)
    else:
        update.raw.pop("PostLaunchActionsOmitted", None)


def _names(runs: list[ActionRun]) -> str:
    return ", ".join(
        f"{run.name or 'unnamed'}" + (f" ({run.failure_reason})" if run.failure_reason else "")
        for run in runs
    )


def _advance_post_launch(
    update: _ServerUpdate,
    *,
    runs: tuple[ActionRun, ...],
    launch_status: LaunchStatus | Unknown | None,
    launched_time: float,
    expected: LaunchActionsLookup | None,
    read_actions: bool,
) -> None:
    """A launched RECOVERY server succeeds only when its post-launch actions do.

    Required runs must SUCCEED; optional runs (``action.optional``) must only end. A run
    whose status is outside the model has not ended. While every listed run has ended
    but an active action of the source server (``expected``) has no run, the server waits
    ``launch_actions_wait`` from the first poll that saw it so; then a missing required
    action fails it, a missing optional one is recorded. ``expected`` None with
    ``read_actions``: ListLaunchActions has not answered yet, so it is not finished.
    """
    entries = [_run_entry(run) for run in runs]
    terminated = launch_status is LaunchStatus.TERMINATED
    required_failed = [r for r in runs if r.status is RunStatus.FAILED and not r.optional]
    _record_runs(update, entries)
    if required_failed:
        update.raw["PostLaunchActionsStatus"] = PostLaunchStatus.FAILED.value
        update.fail(f"post-launch action failed: {_names(required_failed)}")
        return
    if launch_status is LaunchStatus.FAILED:
        update.fail("DRS reported launchStatus FAILED before its post-launch actions finished")
        return
    if isinstance(expected, LaunchActionsUnavailable):
        update.raw["PostLaunchActionsExpected"] = f"unknown: {expected.reason}"[:_REASON_LIMIT]
    status = PostLaunchStatus.IN_PROGRESS
    if not all(run.ended for run in runs):
        update.raw.pop("PostLaunchActionsWaitSince", None)
    elif expected is not None or not read_actions:
        ran = {run.action_id for run in runs if run.action_id}
        missing = [
            action
            for action in (expected if isinstance(expected, tuple) else ())
            if action.active and action.action_id not in ran
        ]
        if missing:
            status = _judge_shortfall(update, missing=missing, entries=entries, ended=terminated)
            _record_runs(update, entries)
        else:
            update.raw.pop("PostLaunchActionsWaitSince", None)  # nothing missing any more
            if runs or update.now - launched_time >= update.policy.post_launch_grace:
                status = PostLaunchStatus.COMPLETED if runs else PostLaunchStatus.NOT_CONFIGURED
    # else: ListLaunchActions has not answered yet; the server is not finished.
    if status is PostLaunchStatus.IN_PROGRESS and terminated:
        # The recovery instance is gone: its actions can no longer run or end, and a
        # recovery whose instance is gone did not recover.
        status = PostLaunchStatus.FAILED
        update.fail("the recovery instance was TERMINATED before its post-launch actions ended")
    update.raw["PostLaunchActionsStatus"] = status.value
    if status is PostLaunchStatus.COMPLETED:
        update.raw["PostLaunchActionsCompleted"] = epoch(update.now)


def _judge_shortfall(
    update: _ServerUpdate,
    *,
    missing: list[LaunchAction],
    entries: list[dict[str, Any]],
    ended: bool,
) -> PostLaunchStatus:
    """Every listed run ended, and active launch actions have no run yet."""
    since = update.raw.get("PostLaunchActionsWaitSince")
    if not isinstance(since, int | float | Decimal) or isinstance(since, bool):
        since = epoch(update.now)
        update.raw["PostLaunchActionsWaitSince"] = since
    wait = update.policy.launch_actions_wait
    if not ended and update.now - float(since) < wait:
        return PostLaunchStatus.IN_PROGRESS
    entries.extend(_not_run_entry(action) for action in missing)
    names = ", ".join(action.name or action.action_id for action in missing)
    update.raw["PostLaunchActionsShortfall"] = (
        f"{len(missing)} active launch action(s) never ran within {int(wait)} s: {names}"
    )[:_REASON_LIMIT]
    required = [action for action in missing if not action.optional]
    if required:
        shown = ", ".join(action.name or action.action_id for action in required)
        update.fail(
            f"required post-launch action(s) never ran: {shown} (DRS listed no run for them "
            f"within DRS_POLLER_LAUNCH_ACTIONS_WAIT = {int(wait)} s after the other runs ended)"
        )
        return PostLaunchStatus.FAILED
    return PostLaunchStatus.COMPLETED


def decide(
    execution: Execution,
    *,
    jobs: Mapping[str, JobLookup],
    instances: Mapping[str, InstanceDetails],
    now: float,
    policy: Policy,
    polls_since_write: int = 1,
    reasons: Mapping[tuple[str, str], str] | None = None,
    launch_actions: Mapping[tuple[Place, str], LaunchActionsLookup] | None = None,
    terminated_instances: Mapping[tuple[str, str], str] | None = None,
    job_logs: Mapping[str, JobLog] | None = None,
    unreachable: Mapping[str, str] | None = None,
) -> Decision:
    """The next state of ``execution`` after one poll.

    ``jobs`` holds what DRS answered for each job id it was asked about; a job id
    missing from it was not observed (its place's call failed), and nothing is
    concluded about its servers. ``polls_since_write`` counts this poll and the
    unwritten ones before it, for PollAttempts. ``reasons`` maps (job id, source
    server id) to why DRS failed that server, from its job log, when known.

    ``launch_actions`` maps (place, source server id) to its ListLaunchActions
    answer; None: the caller does not read ListLaunchActions (every RECOVERY server is
    judged on its listed runs); a mapping without a launched RECOVERY server's key: not
    answered yet, so that server is not finished this poll. ``terminated_instances``
    maps (job id, source server id) of a TERMINATED server the job shows no recovery
    instance for to the recovery instance of that job DRS still holds, "" for none; a
    key that is absent was not checked, and the server is judged on a later poll; None:
    the caller does not check (only the job's recoveryInstanceID is evidence).

    ``job_logs`` maps a job id to the last read of its log (the engine reads it only
    when the answer can have changed): the Timeline, RPO and stalls are built from it,
    after every status was decided (core/evidence.py), so that it never changes one.

    ``unreachable`` maps an account whose role could not be assumed to why (issue 15):
    its waves were not observed, and past the maximum age the message says so.
    """
    new_waves, changes = _advance_servers(
        execution,
        jobs=jobs,
        instances=instances,
        now=now,
        policy=policy,
        polls_since_write=polls_since_write,
        reasons=reasons or {},
        launch_actions=launch_actions,
        terminated_instances=terminated_instances,
    )
    updated = parse_execution({**execution.raw, "Waves": new_waves})
    phase = derive_phase(updated, jobs=jobs, intervals=policy.intervals)
    advanced = new_waves
    status, error_message, new_waves, changes = _conclude_execution(
        updated,
        new_waves=new_waves,
        now=now,
        policy=policy,
        changes=changes,
        jobs=jobs,
        unreachable=unreachable or {},
    )
    updates: dict[str, Any] = {
        "Waves": new_waves,
        "Phase": phase.value,
        "LastPolledTime": epoch(now),
    }
    evidence_error: str | None = None
    try:
        apply_evidence(
            new_waves,
            updates,
            # The servers as decided: past the maximum age they were failed since.
            execution=updated
            if new_waves is advanced
            else parse_execution({**execution.raw, "Waves": new_waves}),
            read=execution,
            jobs=jobs,
            logs=job_logs or {},
            instances=instances,
            final=status is not None,
            now=now,
            bounds=policy.stall_bounds,
        )
    except Exception as error:  # noqa: BLE001 - evidence degrades alone, never a status
        # Only evidence attributes can have been set; the statuses stand as decided.
        evidence_error = f"{type(error).__name__}: {error}"
    if status is not None:
        updates.update(Status=status.value, EndTime=epoch(now))
        if error_message:
            updates["ErrorMessage"] = error_message
        return Decision(
            kind="finalize",
            phase=phase,
            updates=updates,
            final_status=status,
            changes=tuple(changes),
            evidence_error=evidence_error,
        )
    # A change of phase alone is not written: it changes only the schedule, which the
    # caller keeps from ``Decision.phase``. `Phase` goes with the next write made for
    # another reason, as `LastPolledTime` does (contract §1). At W1k such writes were
    # 19 % of the daemon's writes, each at the item's whole size. Of the evidence, only
    # a stall that begins or ends is written on its own (core/evidence.py, stall_marks).
    read_waves = [wave.raw for wave in execution.waves]
    if (
        changes
        or _wave_attributes(new_waves) != _wave_attributes(read_waves)
        or stall_marks(new_waves) != stall_marks(read_waves)
    ):
        return Decision(
            kind="state",
            phase=phase,
            updates=updates,
            changes=tuple(changes),
            evidence_error=evidence_error,
        )
    # The heartbeat counts from the last write, or from the execution's start before
    # the first one: an execution whose first polls change nothing is not written until
    # a change or HEARTBEAT_INTERVAL after its StartTime (contract §1). A write at first
    # sight was one in eight of the daemon's write units at W1k, for an execution whose
    # first change came minutes later anyway.
    last_written = execution.last_polled_time
    if now - (execution.start_time if last_written is None else last_written) >= (
        policy.heartbeat_interval
    ):
        return Decision(
            kind="heartbeat", phase=phase, updates=updates, evidence_error=evidence_error
        )
    return Decision(kind="none", phase=phase, updates={}, evidence_error=evidence_error)


def _advance_servers(
    execution: Execution,
    *,
    jobs: Mapping[str, JobLookup],
    instances: Mapping[str, InstanceDetails],
    now: float,
    policy: Policy,
    polls_since_write: int,
    reasons: Mapping[tuple[str, str], str],
    launch_actions: Mapping[tuple[Place, str], LaunchActionsLookup] | None,
    terminated_instances: Mapping[tuple[str, str], str] | None,
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
                # always carries Error (contract §1).
                update.raw["Error"] = (
                    f"failed ({server.status or 'no status'}; no reason was recorded)"
                    if server.job_id
                    else "failed to start: no DRS job was started (no reason was recorded)"
                )
            if server.job_id and not _JOB_ID.match(server.job_id) and not _frozen(server, mode):
                update.fail(
                    f"RecoveryJobId {server.job_id!r} is not a DRS job id "
                    "(drsjob- and 17 letters or digits)",
                    status=LaunchStatus.FAILED.value,
                )
            elif lookup is not None and not _frozen(server, mode):
                key = (server.job_id or "", server.source_server_id)
                _advance_server(
                    update,
                    mode=mode,
                    lookup=lookup,
                    evidence=_Evidence(
                        instance=_instance_for(server, lookup, instances),
                        reason=reasons.get(key),
                        actions=None
                        if launch_actions is None
                        else launch_actions.get(
                            (wave.place or Place(None, ""), server.source_server_id)
                        ),
                        read_actions=launch_actions is not None,
                        terminated_instance=""
                        if terminated_instances is None
                        else terminated_instances.get(key),
                    ),
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
            hidden = (
                isinstance(lookup, JobView)
                and lookup.broken_entries > 0
                and server.source_server_id not in lookup.servers
            )  # it may be the entry DRS sent unreadable: not observed
            if isinstance(lookup, JobView) and not hidden:
                phases.append(server_phase(lookup, server.source_server_id, mode=mode))
            elif (stored := parse_phase(execution.phase)) is not None:
                phases.append(stored)
    return most_urgent(phases, intervals) or Phase.PENDING


def _conclude_execution(
    updated: Execution,
    *,
    new_waves: list[dict[str, Any]],
    now: float,
    policy: Policy,
    changes: list[ServerChange],
    jobs: Mapping[str, JobLookup],
    unreachable: Mapping[str, str],
) -> tuple[FinalStatus | None, str | None, list[dict[str, Any]], list[ServerChange]]:
    """Set each wave's status; return the execution's final status and error (None while
    it runs), and the waves and server changes to write (past the maximum age, those of
    the abandoned execution)."""
    all_outcomes: list[Outcome] = []
    has_empty_wave = False
    for index, wave in enumerate(updated.waves):
        mode = updated.mode_of(wave)
        outcomes = [server_outcome(server, mode) for server in wave.servers]
        all_outcomes.extend(outcomes)
        has_empty_wave = has_empty_wave or not wave.servers
        _set_wave_status(new_waves[index], outcomes=outcomes, now=now)
    status = final_status(all_outcomes, has_empty_wave=has_empty_wave)
    if status is None and now - updated.start_time >= policy.max_execution_age:
        message, abandoned, abandon_changes = _abandon(
            new_waves,
            updated=updated,
            now=now,
            policy=policy,
            changes=changes,
            jobs=jobs,
            unreachable=unreachable,
        )
        return FinalStatus.FAILED, message, abandoned, abandon_changes
    if status is FinalStatus.FAILED:
        return status, _failure_summary(updated, has_empty_wave=has_empty_wave), new_waves, changes
    return status, None, new_waves, changes


def _set_wave_status(raw: dict[str, Any], *, outcomes: list[Outcome], now: float) -> None:
    """Write a wave's Status (and EndTime, once final) into its raw map, in place."""
    if not outcomes:
        status: str | None = FinalStatus.FAILED.value
        raw.setdefault("Error", "wave has no servers to recover")
    else:
        status = final_status(outcomes)
    if status is not None:
        if raw.get("Status") != status:
            raw["Status"] = str(status)  # the plain string, as read back from the table
        raw.setdefault("EndTime", epoch(now))
    elif any(outcome is Outcome.ACTIVE for outcome in outcomes):
        raw["Status"] = "IN_PROGRESS"  # contract §1: while any of its jobs is active


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
    waves: list[dict[str, Any]],
    *,
    updated: Execution,
    now: float,
    policy: Policy,
    changes: list[ServerChange],
    jobs: Mapping[str, JobLookup],
    unreachable: Mapping[str, str],
) -> tuple[str, list[dict[str, Any]], list[ServerChange]]:
    """Past the maximum age every unfinished server fails, and the execution ends FAILED.
    A server held by a value outside the DRS model says which, and so does the message.
    Returns the execution's error message, the new waves and the server changes; the
    arguments are left as they were."""
    age = int(policy.max_execution_age)
    new_waves = [{**wave, "Servers": list(wave.get("Servers") or [])} for wave in waves]
    new_changes = list(changes)
    active = not_started = 0
    all_unknown: list[str] = []
    unreached: dict[str, str] = {}
    for index, wave in enumerate(updated.waves):
        mode = updated.mode_of(wave)
        cut_off = unreachable.get(wave.account) if wave.account else None
        for position, server in enumerate(wave.servers):
            outcome = server_outcome(server, mode)
            if outcome.terminal:
                continue
            if outcome is Outcome.ACTIVE:
                active += 1
            else:
                not_started += 1
            lookup = jobs.get(server.job_id) if server.job_id else None
            unknown = (
                sorted({str(u) for u in _unknowns_of(server, lookup, mode)})
                if isinstance(lookup, JobView)
                else []
            )
            all_unknown.extend(u for u in unknown if u not in all_unknown)
            held = f" (DRS reported values outside its model: {', '.join(unknown)})"
            if cut_off is not None and wave.account is not None:
                unreached[wave.account] = cut_off
                held = f" (account {wave.account} unreachable: {cut_off})"
            update = _ServerUpdate(server, now=now, policy=policy)
            update.fail(
                f"not finished within the maximum execution age of {age} s"
                + (held if unknown or cut_off is not None else ""),
                status=LaunchStatus.FAILED.value,
            )
            new_waves[index]["Servers"][position] = update.raw
            new_changes = [
                c
                for c in new_changes
                if (c.wave, c.source_server_id) != (wave.name, server.source_server_id)
            ]
            new_changes.append(
                ServerChange(
                    wave=wave.name,
                    source_server_id=server.source_server_id,
                    old_status=server.status,
                    new_status=LaunchStatus.FAILED.value,
                    error=update.raw["Error"],
                )
            )
        _set_wave_status(
            new_waves[index],
            outcomes=[
                Outcome.FAILED if not o.terminal else o
                for o in (server_outcome(s, mode) for s in wave.servers)
            ],
            now=now,
        )
    unknown_note = (
        f"; DRS reported values outside its model: {', '.join(all_unknown[:5])}"
        if all_unknown
        else ""
    )
    unreached_note = "".join(
        f"; account {account} unreachable ({why})" for account, why in sorted(unreached.items())
    )
    message = (
        f"exceeded the maximum execution age of {age} s without finishing: "
        f"{active} server(s) still active, {not_started} never started{unknown_note}"
        f"{unreached_note}"
    )
    return message, new_waves, new_changes
