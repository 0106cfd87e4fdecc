"""DRS adapter: batched DescribeJobs and DescribeRecoveryInstances, ListLaunchActions,
the job log; the wire JSON is parsed here into the core's typed observations.

One call asks for up to 1000 job ids; a job shared by several servers or executions
is asked for once. Job ids that DRS does not return are reported as not found.

Parsing follows botocore's DRS model (botocore/data/drs/2020-02-26/service-2.json):
shapes ``Job``, ``ParticipatingServer``, ``LaunchActionsStatus``, ``LaunchActionRun``,
``LaunchAction``, ``RecoveryInstance``. It is strict only where the daemon cannot act
without a value (a job's ``jobID``), and degrades per field everywhere else (contract
§2): an enum value outside the model becomes :class:`Unknown`, never an error that
sets the job aside; an unreadable ``participatingServers`` entry degrades that entry.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from drs_poller.clients.dynamodb import INTERNED_LENGTH
from drs_poller.clients.paging import paginate
from drs_poller.core.evidence import JobLog, LogEvent, job_log_of
from drs_poller.core.models import (
    JOB_NOT_FOUND,
    ActionRun,
    InvalidDrsDataError,
    JobLookup,
    JobStatus,
    JobView,
    LaunchAction,
    LaunchStatus,
    Participant,
    RunStatus,
    Unknown,
)
from drs_poller.core.places import Place

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller

log = structlog.get_logger("drs_poller.drs")

_SNAKE = {
    "DescribeJobs": "describe_jobs",
    "DescribeRecoveryInstances": "describe_recovery_instances",
    "DescribeJobLogItems": "describe_job_log_items",
    "ListLaunchActions": "list_launch_actions",
    "GetLaunchConfiguration": "get_launch_configuration",
}

JOB_IDS_PER_CALL = 1000  # DescribeJobs filters.jobIDs maximum
RECOVERY_INSTANCE_IDS_PER_CALL = (
    200  # DescribeRecoveryInstances filters.recoveryInstanceIDs maximum
)


UNKNOWN_VALUE_LIMIT = 40  # characters of an out-of-model value kept (logs, metrics, Error)


# --- parsing the wire (pure) --------------------------------------------------------

_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: Any, field_name: str) -> _E | Unknown:
    """``kind(value)`` by a dict lookup (a DescribeJobs page holds thousands of these,
    and calling the enum class was a few percent of the daemon's CPU); a value outside
    the model's enum is an :class:`Unknown`, not an error."""
    member = kind._value2member_map_.get(value) if isinstance(value, str) else None
    if member is None:
        return Unknown(field_name, str(value)[:UNKNOWN_VALUE_LIMIT])
    return member  # type: ignore[return-value]


def _shared(identifier: str) -> str:
    """The one copy of an id that the items held name too (``to_python`` interns their
    short strings): every poll's answer holds the ids of thousands of jobs, and at W10k
    the polls in flight hold about 100,000 of them."""
    return sys.intern(identifier) if len(identifier) <= INTERNED_LENGTH else identifier


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_run(run: Any) -> ActionRun:
    if not isinstance(run, dict):
        # Not a LaunchActionRun at all: an unknown run that never ends, so that it can
        # never let a server be judged done on the runs it hides.
        return ActionRun(status=Unknown("runs", type(run).__name__), name=None, failure_reason=None)
    wire_action = run.get("action")
    action: dict[str, Any] = wire_action if isinstance(wire_action, dict) else {}
    return ActionRun(
        status=_enum(RunStatus, run.get("status"), "runs.status"),
        name=_text(action.get("name")) or _text(action.get("actionCode")),
        failure_reason=_text(run.get("failureReason")),
        action_id=_text(action.get("actionId")),
        run_id=_text(run.get("runId")),
        # LaunchAction.optional: "Whether the launch will not be marked as failed if this
        # action fails." Only a true boolean makes a run optional.
        optional=action.get("optional") is True,
    )


def _parse_participant(entry: dict[str, Any], source_server_id: str) -> Participant:
    raw_status = entry.get("launchStatus")
    launch_status = None if raw_status is None else _enum(LaunchStatus, raw_status, "launchStatus")
    actions = entry.get("launchActionsStatus")
    runs = actions.get("runs") if isinstance(actions, dict) else None
    recovery_instance_id = entry.get("recoveryInstanceID")
    return Participant(
        source_server_id=source_server_id,
        launch_status=launch_status,
        recovery_instance_id=_text(recovery_instance_id),
        runs=tuple(_parse_run(run) for run in runs) if isinstance(runs, list) else (),
    )


def parse_job(wire: Mapping[str, Any]) -> JobView:
    """Parse one DescribeJobs item. Raises :class:`InvalidDrsDataError` only when the
    job cannot be used at all (no ``jobID``, ``participatingServers`` not a list)."""
    job_id = wire.get("jobID")
    if not isinstance(job_id, str):
        raise InvalidDrsDataError("job without jobID")
    job_id = _shared(job_id)
    status = _enum(JobStatus, wire.get("status"), "status")
    participating = wire.get("participatingServers") or []
    if not isinstance(participating, list):
        raise InvalidDrsDataError(f"job {job_id}: participatingServers is not a list")
    servers: dict[str, Participant] = {}
    broken = 0
    for entry in participating:
        source_server_id = entry.get("sourceServerID") if isinstance(entry, dict) else None
        if not isinstance(source_server_id, str) or not source_server_id:
            broken += 1
            continue
        source_server_id = _shared(source_server_id)
        servers[source_server_id] = _parse_participant(entry, source_server_id)
    return JobView(
        job_id=job_id,
        # An unknown job status reads as STARTED: the job exists and is not over.
        status=status if isinstance(status, JobStatus) else JobStatus.STARTED,
        servers=servers,
        unknown_status=status if isinstance(status, Unknown) else None,
        broken_entries=broken,
        created=_text(wire.get("creationDateTime")),
    )


def parse_log_event(wire: Any) -> LogEvent | None:
    """One ``JobLog`` item (botocore shapes ``JobLog``, ``JobLogEventData``,
    ``ConversionProperties``): values kept as sent, for the core to judge; None when it
    has no ``event`` at all."""
    if not isinstance(wire, dict) or not _text(wire.get("event")):
        return None
    data = wire.get("eventData")
    data = data if isinstance(data, dict) else {}
    conversion = data.get("conversionProperties")
    conversion = conversion if isinstance(conversion, dict) else {}
    raw_error = data.get("rawError")
    return LogEvent(
        name=wire["event"],
        at=_text(wire.get("logDateTime")),
        source_server_id=_text(data.get("sourceServerID")),
        data_timestamp=_text(conversion.get("dataTimestamp")),
        reason=str(raw_error) if raw_error else None,
    )


def parse_launch_action(wire: Any) -> LaunchAction | None:
    """One ``ListLaunchActions`` item (shape ``LaunchAction``); None without an
    ``actionId`` (runs are matched to actions by it)."""
    if not isinstance(wire, dict) or not _text(wire.get("actionId")):
        return None
    return LaunchAction(
        action_id=wire["actionId"],
        name=_text(wire.get("name")) or _text(wire.get("actionCode")),
        optional=wire.get("optional") is True,
        # LaunchAction.active: "Whether the launch action is active." Missing: the
        # conservative reading is that DRS will run it.
        active=wire.get("active") is not False,
    )


# --- calling DRS -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecoveryInstanceView:
    ec2_instance_id: str | None
    # pointInTimeSnapshotDateTime: "The date and time of the Point in Time (PIT) snapshot
    # that this Recovery Instance was launched from" (the RPO where the log has none).
    point_in_time: str | None = None


@dataclass(slots=True)
class JobBatch:
    lookups: dict[str, JobLookup] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)  # job id -> why it was not usable


def chunked(values: Collection[str], size: int) -> list[list[str]]:
    ordered = sorted(values)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


class DrsAdapter:
    def __init__(self, *, clients: ClientPool, caller: Caller) -> None:
        self._clients = clients
        self._caller = caller

    def local(self, place: Place) -> Place:
        """``place``, or the daemon's own place when its AccountId is the daemon's own
        account (known once a wave with an AccountId was polled): one batch, one gate and
        the task role's credentials for both ways of naming it."""
        members = self._clients.members
        own = members.own_account if members is not None else None
        if place.account is not None and place.account == own:
            return Place(None, place.region)
        return place

    async def _fetch(
        self, place: Place, *, operation: str
    ) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        """A sender of ``operation`` requests to DRS at ``place``. Raises
        :class:`~drs_poller.clients.accounts.AccountUnreachableError` when the place's
        account cannot be reached."""
        client = await self._clients.get("drs", place.region, account=place.account)
        method = getattr(client, _SNAKE[operation])

        async def fetch(request: dict[str, Any]) -> dict[str, Any]:
            page: dict[str, Any] = await self._caller.call(
                service="drs",
                operation=operation,
                region=place.region,
                account=place.account,
                send=functools.partial(method, **request),
            )
            return page

        return fetch

    async def describe_jobs(self, place: Place, job_ids: Collection[str]) -> JobBatch:
        batch = JobBatch()
        fetch = await self._fetch(place, operation="DescribeJobs")
        for chunk in chunked(job_ids, JOB_IDS_PER_CALL):
            wanted = set(chunk)
            request = {"filters": {"jobIDs": chunk}, "maxResults": len(chunk)}
            async for page in paginate(fetch, request, what=f"DescribeJobs in {place}"):
                for wire in page.get("items") or []:
                    job_id = wire.get("jobID") if isinstance(wire, dict) else None
                    if job_id not in wanted:
                        continue
                    try:
                        batch.lookups[job_id] = parse_job(wire)
                    except InvalidDrsDataError as error:
                        batch.invalid[job_id] = str(error)
            for job_id in wanted - batch.lookups.keys() - batch.invalid.keys():
                batch.lookups[job_id] = JOB_NOT_FOUND
        return batch

    async def describe_recovery_instances(
        self, place: Place, recovery_instance_ids: Collection[str]
    ) -> dict[str, RecoveryInstanceView]:
        """Recovery instance id -> its EC2 instance id and point in time, for the ids DRS
        knows."""
        found: dict[str, RecoveryInstanceView] = {}
        items = self._recovery_instances(
            place, "recoveryInstanceIDs", recovery_instance_ids, what=f"in {place}"
        )
        async for wire in items:
            rid = wire.get("recoveryInstanceID")
            if isinstance(rid, str):
                found[rid] = RecoveryInstanceView(
                    ec2_instance_id=_text(wire.get("ec2InstanceID")),
                    point_in_time=_text(wire.get("pointInTimeSnapshotDateTime")),
                )
        return found

    async def _recovery_instances(
        self, place: Place, filter_name: str, ids: Collection[str], *, what: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Every DescribeRecoveryInstances item matching ``filters.<filter_name>`` = ids,
        in chunks of :data:`RECOVERY_INSTANCE_IDS_PER_CALL`, paged."""
        fetch = await self._fetch(place, operation="DescribeRecoveryInstances")
        for chunk in chunked(ids, RECOVERY_INSTANCE_IDS_PER_CALL):
            request = {"filters": {filter_name: chunk}}
            async for page in paginate(fetch, request, what=f"DescribeRecoveryInstances {what}"):
                for wire in page.get("items") or []:
                    if isinstance(wire, dict):
                        yield wire

    async def read_job_log(self, place: Place, job_id: str) -> JobLog:
        """One job's whole log (DescribeJobLogItems, paged; one job id per call): why DRS
        failed servers (``JobLog.reasons``) and the Timeline events, read once for both."""
        fetch = await self._fetch(place, operation="DescribeJobLogItems")
        events: list[LogEvent] = []
        async for page in paginate(fetch, {"jobID": job_id}, what=f"job log of {job_id}"):
            events.extend(
                event
                for entry in page.get("items") or []
                if (event := parse_log_event(entry)) is not None
            )
        return job_log_of(job_id, events)

    async def expected_launch_actions(
        self, place: Place, source_server_id: str
    ) -> tuple[LaunchAction, ...]:
        """The launch actions DRS will run after one source server launches: none when its
        launch configuration has post-launch actions deactivated (GetLaunchConfiguration
        ``postLaunchEnabled``: "Whether we want to activate post-launch actions for the
        Source Server"), else every one ListLaunchActions lists. Without the first check,
        a server whose actions are configured but deactivated would wait for runs DRS
        never starts. Errors are the caller's to classify."""
        fetch = await self._fetch(place, operation="GetLaunchConfiguration")
        configuration = await fetch({"sourceServerID": source_server_id})
        if configuration.get("postLaunchEnabled") is False:
            return ()
        return await self.list_launch_actions(place, source_server_id)

    async def list_launch_actions(
        self, place: Place, source_server_id: str
    ) -> tuple[LaunchAction, ...]:
        """Every launch action of one source server (ListLaunchActions, paged;
        ``resourceId`` is the source server id). Errors are the caller's to classify."""
        fetch = await self._fetch(place, operation="ListLaunchActions")
        found: list[LaunchAction] = []
        what = f"launch actions of {source_server_id}"
        async for page in paginate(fetch, {"resourceId": source_server_id}, what=what):
            for wire in page.get("items") or []:
                action = parse_launch_action(wire)
                if action is not None:
                    found.append(action)
        return tuple(found)

    async def recovery_instances_of(
        self, place: Place, source_server_ids: Collection[str]
    ) -> dict[str, set[tuple[str, str]]]:
        """Source server id -> {(recovery instance id, job id)} of the recovery instances
        DRS still holds for it (DescribeRecoveryInstances, filter ``sourceServerIDs``;
        ``RecoveryInstance.jobID`` is "the ID of the Job that created the Recovery
        Instance")."""
        found: dict[str, set[tuple[str, str]]] = {sid: set() for sid in source_server_ids}
        items = self._recovery_instances(
            place, "sourceServerIDs", source_server_ids, what=f"by source server in {place}"
        )
        async for wire in items:
            sid, rid, jid = (
                wire.get(name) for name in ("sourceServerID", "recoveryInstanceID", "jobID")
            )
            if sid in found and isinstance(rid, str) and isinstance(jid, str):
                found[sid].add((rid, jid))
        return found
