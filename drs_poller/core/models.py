"""What the daemon reads: execution items from the table, and jobs from DRS.

Items arrive as plain Python values (the DynamoDB adapter deserializes them); DRS
arrives as the typed observations below (the DRS adapter, clients/drs.py, parses the
wire JSON into them). Parsing is strict about what the daemon
relies on and tolerant of everything else: unknown attributes are kept verbatim
in ``raw`` so that a write-back never loses what another writer stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from drs_poller.core.places import ACCOUNT_ID, Place

if TYPE_CHECKING:
    from collections.abc import Mapping


class ExecutionType(StrEnum):
    DRILL = "DRILL"
    RECOVERY = "RECOVERY"


class ExecutionStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    POLLING = "POLLING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


class FinalStatus(StrEnum):
    """What an execution, a wave or a server's run ends as (contract §2). A StrEnum:
    it compares and serialises as its string."""

    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


FINAL_STATUSES: Final = frozenset(FinalStatus)


class JobStatus(StrEnum):
    PENDING = "PENDING"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"


class LaunchStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    LAUNCHED = "LAUNCHED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"


class RunStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class PostLaunchStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    NOT_CONFIGURED = "NOT_CONFIGURED"


class MalformedItemError(ValueError):
    """An execution item the daemon cannot act on. Names the item and the field."""

    def __init__(self, *, execution_id: str, field: str, problem: str) -> None:
        super().__init__(f"execution {execution_id!r}: field {field}: {problem}")
        self.execution_id = execution_id
        self.field = field
        self.problem = problem


class InvalidDrsDataError(ValueError):
    """A DRS job the daemon cannot act on at all (no jobID, participatingServers not a
    list). A value outside the model's enums is not this: it degrades one field."""


# --- the table -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    source_server_id: str
    job_id: str | None
    status: str | None
    launched_time: float | None
    post_launch_status: str | None
    error: str | None
    job_not_found_polls: int
    poll_attempts: int
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Wave:
    name: str
    region: str | None
    status: str | None
    mode: ExecutionType | None
    servers: tuple[Server, ...]
    raw: Mapping[str, Any]
    # AccountId (contract §1): the account its DRS lives in; None: the daemon's own.
    account: str | None = None

    @property
    def place(self) -> Place | None:
        """Where the wave's DRS lives; None without a Region (no job can be polled)."""
        return None if self.region is None else Place(self.account, self.region)


@dataclass(frozen=True, slots=True)
class Execution:
    execution_id: str
    plan_id: str
    execution_type: ExecutionType
    status: str
    start_time: float
    waves: tuple[Wave, ...]
    phase: str | None
    last_polled_time: float | None
    raw: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.execution_id, self.plan_id)

    def mode_of(self, wave: Wave) -> ExecutionType:
        """A wave's own ExecutionMode wins; otherwise the execution's type."""
        return wave.mode or self.execution_type


class _Reader:
    """Typed access to one map of an item, with errors that say where."""

    def __init__(self, data: Any, *, execution_id: str, path: str) -> None:
        if not isinstance(data, dict):
            raise MalformedItemError(
                execution_id=execution_id, field=path or "item", problem="is not a map"
            )
        self.data: dict[str, Any] = data
        self.execution_id = execution_id
        self.path = path

    def _where(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _bad(self, name: str, problem: str) -> MalformedItemError:
        return MalformedItemError(
            execution_id=self.execution_id, field=self._where(name), problem=problem
        )

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self._bad(name, "is missing")
            return None
        if not isinstance(value, str):
            raise self._bad(name, f"must be a string (S), got {type(value).__name__}")
        if required and not value:
            raise self._bad(name, "is empty")
        return value

    def number(self, name: str, *, required: bool = False) -> float | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self._bad(name, "is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise self._bad(name, f"must be a number (N), got {type(value).__name__}")
        return float(value)

    def items(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if value is None:
            raise self._bad(name, "is missing")
        if not isinstance(value, list):
            raise self._bad(name, f"must be a list (L), got {type(value).__name__}")
        return value

    def account(self, name: str) -> str | None:
        """An AWS account id (S, 12 digits), or None when absent."""
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(name, f"must be a string (S) of 12 digits, got {type(value).__name__}")
        if not ACCOUNT_ID.match(value):
            raise self._bad(name, f"must be 12 digits, got {value[:40]!r}")
        return value

    def mode(self, name: str) -> ExecutionType | None:
        value = self.string(name)
        if value is None:
            return None
        try:
            return ExecutionType(value)
        except ValueError:
            raise self._bad(name, f"must be DRILL or RECOVERY, got {value!r}") from None


def _parse_server(data: Any, *, execution_id: str, path: str) -> Server:
    read = _Reader(data, execution_id=execution_id, path=path)
    source_server_id = read.string("SourceServerId", required=True)
    assert source_server_id is not None  # noqa: S101 - required=True never returns None
    return Server(
        source_server_id=source_server_id,
        job_id=read.string("RecoveryJobId") or None,
        status=read.string("Status"),
        launched_time=read.number("LaunchedTime"),
        post_launch_status=read.string("PostLaunchActionsStatus"),
        error=read.string("Error") or None,
        job_not_found_polls=int(read.number("JobNotFoundPolls") or 0),
        poll_attempts=int(read.number("PollAttempts") or 0),
        raw=read.data,
    )


def _parse_wave(data: Any, *, execution_id: str, index: int) -> Wave:
    path = f"Waves[{index}]"
    read = _Reader(data, execution_id=execution_id, path=path)
    servers = tuple(
        _parse_server(server, execution_id=execution_id, path=f"{path}.Servers[{position}]")
        for position, server in enumerate(read.items("Servers"))
    )
    region = read.string("Region") or None
    if region is None and any(server.job_id for server in servers):
        raise read._bad("Region", "is missing, but the wave has started DRS jobs")  # noqa: SLF001 - same module
    return Wave(
        name=read.string("WaveName") or f"wave-{index + 1}",
        region=region,
        status=read.string("Status"),
        mode=read.mode("ExecutionMode"),
        servers=servers,
        raw=read.data,
        account=read.account("AccountId"),
    )


def parse_execution(item: Mapping[str, Any]) -> Execution:
    """Parse a deserialized execution item. Raises :class:`MalformedItemError`."""
    execution_id = item.get("ExecutionId")
    if not isinstance(execution_id, str) or not execution_id:
        raise MalformedItemError(
            execution_id=str(execution_id), field="ExecutionId", problem="is missing"
        )
    read = _Reader(dict(item), execution_id=execution_id, path="")
    plan_id = read.string("PlanId", required=True)
    status = read.string("Status", required=True)
    start_time = read.number("StartTime", required=True)
    assert plan_id is not None  # noqa: S101 - required=True never returns None
    assert status is not None  # noqa: S101
    assert start_time is not None  # noqa: S101
    waves = tuple(
        _parse_wave(wave, execution_id=execution_id, index=index)
        for index, wave in enumerate(read.items("Waves"))
    )
    return Execution(
        execution_id=execution_id,
        plan_id=plan_id,
        execution_type=read.mode("ExecutionType") or ExecutionType.DRILL,
        status=status,
        start_time=start_time,
        waves=waves,
        phase=read.string("Phase"),
        last_polled_time=read.number("LastPolledTime"),
        raw=read.data,
    )


def peek_start_time(item: Mapping[str, Any]) -> float | None:
    """StartTime of an item that may be malformed elsewhere (for the maximum-age rule)."""
    value = item.get("StartTime")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


# --- DRS ---------------------------------------------------------------------------
# Typed observations of DRS. The DRS adapter (clients/drs.py) turns the wire JSON into
# these; the core judges them and never sees the wire.


@dataclass(frozen=True, slots=True)
class Unknown:
    """A value outside the DRS model's enum (AWS adds values over time), kept as seen.

    ``field`` names the wire field (``launchStatus``, ``runs.status``, ``status``);
    ``raw`` is what DRS sent, as a string. Never terminal (contract §2)."""

    field: str
    raw: str

    def __str__(self) -> str:
        return f"{self.field} {self.raw!r}"


@dataclass(frozen=True, slots=True)
class ActionRun:
    """One ``LaunchActionRun`` (botocore shape): its ``action`` carries ``actionId``,
    ``name`` and ``optional`` ("whether the launch will not be marked as failed if this
    action fails", the model's documentation of ``LaunchAction.optional``)."""

    status: RunStatus | Unknown
    name: str | None
    failure_reason: str | None
    action_id: str | None = None
    run_id: str | None = None
    optional: bool = False

    @property
    def ended(self) -> bool:
        return self.status is RunStatus.SUCCEEDED or self.status is RunStatus.FAILED


@dataclass(frozen=True, slots=True)
class Participant:
    source_server_id: str
    launch_status: LaunchStatus | Unknown | None
    recovery_instance_id: str | None
    runs: tuple[ActionRun, ...]

    def unknown_values(self, *, with_runs: bool) -> tuple[Unknown, ...]:
        """The out-of-model values of this server; a DRILL does not read runs."""
        found = [self.launch_status] if isinstance(self.launch_status, Unknown) else []
        if with_runs:
            found += [run.status for run in self.runs if isinstance(run.status, Unknown)]
        return tuple(found)


@dataclass(frozen=True, slots=True)
class JobView:
    job_id: str
    status: JobStatus  # an unknown job status is read as STARTED (see unknown_status)
    servers: Mapping[str, Participant]
    unknown_status: Unknown | None = None
    # participatingServers entries the adapter could not read (no sourceServerID): a
    # server absent from ``servers`` may be one of them, so it is not judged absent.
    broken_entries: int = 0
    # creationDateTime as sent (parsed only where the evidence needs it, issue 13).
    created: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchAction:
    """One item of ``ListLaunchActions`` (botocore shape ``LaunchAction``) for a source
    server: the actions DRS will run after launch while ``active``."""

    action_id: str
    name: str | None
    optional: bool
    active: bool


@dataclass(frozen=True, slots=True)
class LaunchActionsUnavailable:
    """ListLaunchActions could not be read for good (denied, not found, or failing on
    every try): the server is judged on the runs DRS lists, as before."""

    reason: str


# What the engine knows of one source server's launch actions for this execution.
LaunchActionsLookup: TypeAlias = tuple[LaunchAction, ...] | LaunchActionsUnavailable


@dataclass(frozen=True, slots=True)
class InstanceDetails:
    recovery_instance_id: str
    ec2_instance_id: str | None
    private_ip: str | None = None
    hostname: str | None = None
    instance_type: str | None = None
    # RecoveryInstance.pointInTimeSnapshotDateTime, as sent: "the date and time of the
    # Point in Time (PIT) snapshot that this Recovery Instance was launched from".
    point_in_time: str | None = None


class JobNotFound:
    """DRS answered, and does not know the job."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "JOB_NOT_FOUND"


JOB_NOT_FOUND: Final = JobNotFound()

# What one poll learnt about one job id: its view, or that DRS does not know it.
# A job id absent from the mapping was not observed (its place's call failed).
JobLookup: TypeAlias = JobView | JobNotFound
