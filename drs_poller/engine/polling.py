"""The poller: polls one dispatched batch of due executions, then decides and writes back.

A batch is served by one DescribeJobs call per place (plus pages): per account and
region (issue 15), whatever the number of executions and servers in it. Each
execution is then decided and written back on its own, so one bad execution cannot
stop the others.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import structlog

from drs_poller.clients.accounts import AccountUnreachableError
from drs_poller.clients.calling import AwsCallError
from drs_poller.clients.paging import PagingError
from drs_poller.core.answering import with_pending
from drs_poller.core.backoff import ErrorKind
from drs_poller.core.completion import end_of_malformed
from drs_poller.core.deciding import (
    Decision,
    Policy,
    decide,
    failures_to_explain,
    instances_to_describe,
    is_overdue,
    jobs_to_poll,
    launch_actions_to_list,
    terminations_to_check,
    unknown_values,
)
from drs_poller.core.evidence import (
    JobLog,
    LogWatch,
    Signature,
    active_jobs,
    evidence_news,
    log_watches,
    stall_phase,
    worth_reading,
)
from drs_poller.core.models import (
    ExecutionStatus,
    FinalStatus,
    InstanceDetails,
    JobLookup,
    JobStatus,
    JobView,
    LaunchActionsLookup,
    LaunchActionsUnavailable,
)
from drs_poller.core.phases import Phase
from drs_poller.engine.tracking import LogRead, Tracked, queue_name
from drs_poller.observability.logs import bind_execution

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

    from drs_poller.clients.drs import DrsAdapter
    from drs_poller.clients.dynamodb import ExecutionStore
    from drs_poller.clients.ec2 import Ec2Adapter
    from drs_poller.clock import Clock
    from drs_poller.core.models import Execution
    from drs_poller.core.places import Place
    from drs_poller.core.scheduling import Due
    from drs_poller.engine.answering import Answerer
    from drs_poller.engine.publishing import EventPublisher
    from drs_poller.engine.reporting import ReportPublisher
    from drs_poller.engine.state import EngineState
    from drs_poller.observability.metrics import Metrics

log = structlog.get_logger("drs_poller.polling")

# How long a recovery instance that DRS knows no EC2 instance for is left alone.
UNRESOLVED_RETRY_SECONDS = 300.0
# Polls on which ListLaunchActions may fail transiently (after the Caller's own retries)
# before the server falls back to being judged on the runs DRS lists: it must never stop
# a RECOVERY server from finishing.
LAUNCH_ACTIONS_FAILED_POLLS = 3
# LaunchActionResourceId for a source server (botocore model): anything else DRS rejects.
_SOURCE_SERVER_ID = re.compile(r"^s-[0-9a-zA-Z]{17}$")
_UNAVAILABLE_REASONS = {
    "AccessDeniedException": "access_denied",
    "ResourceNotFoundException": "not_found",
    "ValidationException": "validation",
}


@dataclass(frozen=True, slots=True)
class _Seen:
    """What one poll learnt beside the jobs, shared by the batch's executions."""

    instances: dict[str, InstanceDetails]
    reasons: dict[tuple[str, str], str]
    terminated: dict[tuple[str, str], str]
    # Member accounts whose role could not be assumed this poll -> why (issue 15).
    unreachable: dict[str, str]


def _cut_off(execution: Execution, unreachable: dict[str, str]) -> bool:
    """Whether a wave of ``execution`` lives in an account that was not reachable."""
    return bool(unreachable) and any(
        wave.account in unreachable for wave in execution.waves if wave.account
    )


class HeldBack:
    """Keys left alone for ``span`` seconds from when each was held. Every key is held
    for the same span, so the order in which they were (last) held is the order in
    which they expire, and letting the expired go costs only them. (A dict swept whole
    at every batch once it held over 1,000 keys was 2.4 % of the daemon's profile
    samples at W10k.) Batches in flight together hold keys with times a few seconds
    apart, not always in order: a key is then let go up to that much later than its
    span, never sooner."""

    def __init__(self, span: float) -> None:
        self._span = span
        self._until: OrderedDict[str, float] = OrderedDict()

    def hold(self, key: str, now: float) -> None:
        self._until[key] = now + self._span
        self._until.move_to_end(key)

    def expire(self, now: float) -> None:
        """Let go of every key held ``span`` seconds ago or longer."""
        until = self._until
        while until:
            key = next(iter(until))
            if until[key] > now:
                return
            del until[key]

    def __contains__(self, key: object) -> bool:
        """Held, as of the last :meth:`expire`."""
        return key in self._until

    def __len__(self) -> int:
        return len(self._until)


def failure_kind(error: Exception) -> str:
    if isinstance(error, AwsCallError):
        return str(error.kind)
    if isinstance(error, PagingError):
        return "invalid_drs_data"  # a page token that repeats, or pages without end
    if isinstance(error, AccountUnreachableError):
        return "account_unreachable"  # the credentials ran out between two calls
    return "unexpected"


T = TypeVar("T")


def _own_jobs(tracked: Tracked, jobs: dict[str, JobLookup]) -> dict[str, JobLookup]:
    """The answers for the jobs an execution names, out of its batch's."""
    execution = tracked.execution
    if execution is None:
        return {}
    return {
        server.job_id: jobs[server.job_id]
        for wave in execution.waves
        for server in wave.servers
        if server.job_id is not None and server.job_id in jobs
    }


# A job's signature before anything of it was seen (evidence.worth_reading).
_NOTHING_SEEN: Signature = (JobStatus.PENDING.value, ())


async def in_turn(items: list[T], *, workers: int, work: Callable[[T], Awaitable[None]]) -> None:
    """``work`` on each of ``items``, in order, by at most ``workers`` coroutines at once.
    ``items`` is consumed: each is let go once its work is done, not with the last (a
    batch's answers for an execution are freed as soon as it is written)."""
    items.reverse()

    async def worker() -> None:
        while items:
            await work(items.pop())

    await asyncio.gather(*(worker() for _ in range(min(workers, len(items)))))


class Poller:
    def __init__(
        self,
        *,
        drs: DrsAdapter,
        ec2: Ec2Adapter,
        store: ExecutionStore,
        state: EngineState,
        metrics: Metrics,
        clock: Clock,
        write_attempts: int,
        max_concurrent_writes: int,
        max_concurrent_calls: int,
        stall_check_interval: float,
    ) -> None:
        self.drs = drs
        self.ec2 = ec2
        self.store = store
        self.state = state
        self.metrics = metrics
        self.clock = clock
        self.write_attempts = write_attempts
        self.max_concurrent_writes = max_concurrent_writes
        self._writes = asyncio.Semaphore(max_concurrent_writes)
        # Recovery instances DRS answered for without an EC2 instance id (or did not
        # know): not asked again for UNRESOLVED_RETRY_SECONDS.
        self._unresolved = HeldBack(UNRESOLVED_RETRY_SECONDS)
        # Sends task-token answers and heartbeats (contract §5); the daemon sets it.
        self.answerer: Answerer | None = None
        # Workers for a batch's job-log reads and launch-action lists.
        self.max_concurrent_calls = max_concurrent_calls
        # A job with a server not launched, once a stall could be declared, has its log
        # read again this often (DRS_POLLER_STALL_CHECK_INTERVAL).
        self.stall_check_interval = stall_check_interval
        # Puts the drill report of each execution this poller finalizes (docs/report.md).
        self.reporter: ReportPublisher | None = None
        # Puts a finalization event for each final status a landed write leaves, or a
        # read shows unannounced (docs/events.md); the daemon sets it with an event bus.
        self.publisher: EventPublisher | None = None

    @property
    def policy(self) -> Policy:
        return self.state.policy

    async def poll_batch(
        self, batch: list[Due], *, observed: Callable[[], None] = lambda: None
    ) -> None:
        """Poll ``batch``: ask DRS (and EC2) once, then decide and write each execution.

        ``observed`` is called once DRS has answered: the dispatcher frees the batch's
        slot then, so that slow writes (a throttled table) do not stop the polling of
        other executions. The writes still run in this task, bounded by the write
        semaphore (by ``max_concurrent_writes`` writers per batch, taking its executions
        in turn), and an execution is not polled again until its own write is done: it
        is released for its next poll as soon as that write has landed (or failed), not
        when the batch's last write has. One slow write, or a batch of thousands of
        executions behind a slow table (a restart's first poll at W10k), does not hold
        back the next poll of every execution already written.
        """
        started = self.clock.monotonic()
        members: list[Tracked] = []
        released: set[str] = set()

        def release(tracked: Tracked) -> None:
            if tracked.name not in released:
                released.add(tracked.name)
                self._release(tracked, polled_at=started)

        async def write_back(
            tracked: Tracked, jobs: dict[str, JobLookup], seen: _Seen, now: float
        ) -> None:
            try:
                await self._write_back(tracked, jobs=jobs, seen=seen, now=now)
            finally:
                release(tracked)
                # The dispatcher may be asleep: a slow write can leave this one due now.
                self.state.wakeup.set()

        for entry in batch:
            tracked = self.state.tracked.get(entry.name)
            if tracked is None or tracked.dropped:
                continue
            tracked.in_flight = True
            members.append(tracked)
            self.metrics.poll_lateness.observe(max(0.0, started - entry.due))
            if tracked.event_time is not None:  # a DRS event asked for this poll
                self.metrics.event_lag.observe(max(0.0, self.clock.time() - tracked.event_time))
                tracked.event_time = None
        if not members:
            return
        self.metrics.dispatch_batch_size.observe(len(members))
        try:
            jobs, unreachable = await self._describe_jobs(members)
            self._report_unknown_values(members, jobs)
            instances, reasons, terminated, _ = await asyncio.gather(
                self._describe_instances(members, jobs),
                self._read_job_logs(members, jobs),
                self._check_terminations(members, jobs),
                self._list_launch_actions(members, jobs),
            )
            observed()
            now = self.clock.time()
            seen = _Seen(
                instances=instances,
                reasons=reasons,
                terminated=terminated,
                unreachable=unreachable,
            )
            # A few writers per batch take its executions in turn: a batch of 10,000 (a
            # restart at W10k) does not wait as 10,000 tasks on the write semaphore
            # (about 2 KB each), and the writes of batches in flight share the table.
            # Each execution takes its own jobs' answers, and the batch's are let go: at
            # W10k the batches waiting for their writes held 100,000 jobs' answers.
            own = [(tracked, _own_jobs(tracked, jobs)) for tracked in members]
            jobs.clear()
            await in_turn(
                own,
                workers=self.max_concurrent_writes,
                work=lambda entry: write_back(entry[0], entry[1], seen, now),
            )
        finally:
            for tracked in members:
                release(tracked)
            # The dispatcher may be asleep on an empty queue: these are due again soon.
            self.state.wakeup.set()
            self.metrics.last_poll.set(self.clock.time())

    # --- DRS, batched per place (account, region) ------------------------------------

    async def _describe_jobs(
        self, members: list[Tracked]
    ) -> tuple[dict[str, JobLookup], dict[str, str]]:
        """One DescribeJobs (plus pages) per place of the batch. Returns the lookups, and
        the member accounts that could not be reached (account -> why): their jobs are
        not observed, so their servers keep their status."""
        wanted = self._jobs_to_poll(members)
        jobs: dict[str, JobLookup] = {}
        unreachable: dict[str, str] = {}

        async def one_place(place: Place, job_ids: set[str]) -> None:
            region = place.region
            try:
                batch = await self.drs.describe_jobs(place, job_ids)
            except AccountUnreachableError as error:
                # Counted and logged once per outage where it happened (clients/accounts.py).
                unreachable[error.account] = error.summary
                return
            except Exception as error:  # noqa: BLE001 - a failed place is reported and skipped
                self.metrics.unobserved.labels("DescribeJobs", failure_kind(error)).inc()
                log.warning(
                    "DescribeJobs failed; those jobs are not observed this poll",
                    region=region,
                    account=place.label,
                    jobs=len(job_ids),
                    error=str(error),
                )
                return
            jobs.update(batch.lookups)
            for lookup in batch.lookups.values():
                if isinstance(lookup, JobView) and lookup.broken_entries:
                    # Those entries degrade alone (contract §2); still a DRS answer to report.
                    self.metrics.execution_errors.labels("invalid_drs_data").inc()
                    log.error(
                        "DRS returned participating servers without sourceServerID; the job's"
                        " other servers are tracked, a server not listed is not judged",
                        region=region,
                        account=place.label,
                        job_id=lookup.job_id,
                        entries=lookup.broken_entries,
                    )
            for job_id, why in batch.invalid.items():
                self.metrics.execution_errors.labels("invalid_drs_data").inc()
                log.error(
                    "DRS returned a job the daemon will not act on",
                    region=region,
                    account=place.label,
                    job_id=job_id,
                    error=why,
                )

        await asyncio.gather(*(one_place(p, ids) for p, ids in wanted.items()))
        return jobs, unreachable

    def _jobs_to_poll(self, members: list[Tracked]) -> dict[Place, set[str]]:
        """The batch's job ids by place: one DescribeJobs (plus pages) each."""
        wanted: dict[Place, set[str]] = defaultdict(set)
        for tracked in members:
            if tracked.execution is not None:
                for place, job_ids in jobs_to_poll(tracked.execution).items():
                    wanted[self.drs.local(place)] |= job_ids
        if wanted:
            self.metrics.batch_places.observe(len(wanted))
        return wanted

    async def _describe_instances(
        self, members: list[Tracked], jobs: dict[str, JobLookup]
    ) -> dict[str, InstanceDetails]:
        now = self.clock.monotonic()
        self._unresolved.expire(now)
        wanted: dict[Place, set[str]] = defaultdict(set)
        for tracked in members:
            if tracked.execution is not None:
                for place, ids in instances_to_describe(tracked.execution, jobs).items():
                    wanted[self.drs.local(place)] |= {
                        rid for rid in ids if rid not in self._unresolved
                    }
        details: dict[str, InstanceDetails] = {}

        async def one_place(place: Place, recovery_ids: set[str]) -> None:
            # Details are best effort: a failed call is retried on the next poll,
            # because the item still lacks InstanceId.
            try:
                views = await self.drs.describe_recovery_instances(place, recovery_ids)
                known = {v.ec2_instance_id for v in views.values() if v.ec2_instance_id}
                instances = await self.ec2.describe_instances(place, known) if known else {}
            except Exception as error:  # noqa: BLE001 - see above
                self.metrics.unobserved.labels(
                    "DescribeRecoveryInstances", failure_kind(error)
                ).inc()
                log.warning(
                    "recovery instance lookup failed",
                    region=place.region,
                    account=place.label,
                    error=str(error),
                )
                return
            for rid in recovery_ids:
                view = views.get(rid)
                ec2_id = view.ec2_instance_id if view is not None else None
                if view is None or ec2_id is None:
                    self._unresolved.hold(rid, now)
                    continue
                instance = instances.get(ec2_id)
                details[rid] = InstanceDetails(
                    recovery_instance_id=rid,
                    ec2_instance_id=ec2_id,
                    private_ip=instance.private_ip if instance else None,
                    hostname=instance.hostname if instance else None,
                    instance_type=instance.instance_type if instance else None,
                    point_in_time=view.point_in_time,
                )

        await asyncio.gather(*(one_place(p, ids) for p, ids in wanted.items() if ids))
        return details

    async def _read_job_logs(
        self, members: list[Tracked], jobs: dict[str, JobLookup]
    ) -> dict[tuple[str, str], str]:
        """Read job logs (DescribeJobLogItems, one job a call, paged) only where the
        evidence needs it: the first sight of a job (after a restart too), if it already
        shows a result or a stall (``_first_read_due``); a server of this execution
        reaching a launch result (LAUNCHED, FAILED, TERMINATED, or a value outside the
        model), since its evidence is written complete with the write that ends it
        (contract §1); the job's end (read once); a job in which DRS now fails a server,
        for its Error; and, for a job with a server not launched yet, once a stall could
        be declared and every ``stall_check_interval`` seconds after
        (``_stall_read_due``). A job or server
        moving between the steps before a result (PENDING, STARTED, IN_PROGRESS) is not
        a read of its own: the marks it logs wait for the next read, and the server's
        evidence is written only when it ends (at W10k, with one job a server, these
        reads were 15,000 of 90,000 in five minutes).
        One read serves both the failure reasons and the Timeline (issue 13).

        Best effort: a failed read degrades the evidence alone (counted, logged) and is
        tried again after the interval or at the job's next change. Returns (job id,
        source server id) -> why DRS failed it, from every log this execution read."""
        wanted = self._job_logs_due(members, jobs)

        async def one_job(
            place: Place, job_id: str, readers: list[tuple[Tracked, LogRead]]
        ) -> None:
            try:
                log_read: JobLog | None = await self.drs.read_job_log(self.drs.local(place), job_id)
            except Exception as error:  # noqa: BLE001 - evidence is best effort (docstring)
                log_read = None
                self.metrics.unobserved.labels("DescribeJobLogItems", failure_kind(error)).inc()
                log.warning(
                    "job log read failed; the evidence of its servers waits for the next read"
                    " (statuses are not affected)",
                    region=place.region,
                    account=place.label,
                    job_id=job_id,
                    error=str(error),
                )
            for tracked, read in readers:
                if log_read is None:
                    tracked.job_log_reads[job_id] = LogRead(read.signature, at=read.at, failed=True)
                    continue
                tracked.job_log_reads[job_id] = read
                tracked.job_logs[job_id] = log_read
            if log_read is not None and log_read.ignored:
                self.metrics.evidence_degraded.labels("job_log_event").inc(log_read.ignored)

        # By as many workers as calls may run at once: a start or a take-over can want
        # thousands of reads in one batch, and a coroutine each would wait its turn.
        await in_turn(
            list(wanted.items()),
            workers=self.max_concurrent_calls,
            work=lambda entry: one_job(entry[0][0], entry[0][1], entry[1]),
        )
        reasons: dict[tuple[str, str], str] = {}
        for tracked in members:
            for job_id, job_log in tracked.job_logs.items():
                reasons.update({(job_id, sid): why for sid, why in job_log.reasons().items()})
        return reasons

    def _job_logs_due(
        self, members: list[Tracked], jobs: dict[str, JobLookup]
    ) -> dict[tuple[Place, str], list[tuple[Tracked, LogRead]]]:
        """(place, job id) -> the executions to read it for, and the read to record."""
        now = self.clock.monotonic()
        wall = self.clock.time()
        wanted: dict[tuple[Place, str], list[tuple[Tracked, LogRead]]] = defaultdict(list)
        for tracked in members:
            execution = tracked.execution
            if execution is None:
                continue
            explain = {
                job_id
                for job_ids in failures_to_explain(execution, jobs).values()
                for job_id in job_ids
            }
            self._forget_ended_jobs(tracked, execution)
            watches = log_watches(
                execution, jobs, logs=tracked.job_logs, bounds=self.policy.stall_bounds
            )
            for job_id, watch in watches.items():
                last = tracked.job_log_reads.get(job_id)
                if last is None:
                    # A first read (or its deferral) counts as made a share of an interval
                    # earlier, fixed by the job id: jobs first seen together are not read
                    # together at every interval after (evidence.stall_phase).
                    first = now - stall_phase(job_id) * self.stall_check_interval
                    read = LogRead(watch.signature, at=first)
                    if self._first_read_due(watch, wall):
                        wanted[(watch.place, job_id)].append((tracked, read))
                    else:
                        tracked.job_log_reads[job_id] = read
                    continue
                interval_passed = now - last.at >= self.stall_check_interval
                due = (
                    worth_reading(last.signature, watch.signature)
                    or (job_id in explain and last.failed)
                    or (last.failed and interval_passed)
                    or (watch.unlaunched and self._stall_read_due(watch, last, now, wall))
                )
                if due:
                    read = LogRead(watch.signature, at=now)
                    wanted[(watch.place, job_id)].append((tracked, read))
        return wanted

    @staticmethod
    def _forget_ended_jobs(tracked: Tracked, execution: Execution) -> None:
        """Let go of the logs (and last reads) of jobs whose servers here have all ended:
        nothing reads them again (an ended server keeps the evidence it was written
        with)."""
        if not tracked.job_log_reads and not tracked.job_logs:
            return
        active = active_jobs(execution)
        for held in (tracked.job_log_reads, tracked.job_logs):
            for job_id in [job_id for job_id in held if job_id not in active]:
                del held[job_id]

    @staticmethod
    def _first_read_due(watch: LogWatch, wall: float) -> bool:
        """Whether a job is read at its first sight (a start, a take-over, a new
        execution): when it already shows a result (a server's, or the job's end), or
        a stall could already be declared (a take-over keeps a stall it finds shown).
        Otherwise its marks wait for the next read, as they would between reads (at W10k,
        12 s after a start, about 46,000 first-sight reads were waiting for a call slot,
        a task each: most of the daemon's 523 MB peak)."""
        if worth_reading(_NOTHING_SEEN, watch.signature):
            return True
        return watch.unlaunched and (watch.stall_from is None or wall >= watch.stall_from)

    def _stall_read_due(self, watch: LogWatch, last: LogRead, now: float, wall: float) -> bool:
        """Whether a job with a server not launched yet is read for its stall now. Not
        before a stall could be declared (``watch.stall_from``: its phase's start plus
        the bound; at W10k, reading every such job each interval was 250 of the
        daemon's 300 AWS calls a second); then at once, so a stall is confirmed by a fresh
        log before it is written, and each interval after, to see it end. Where that
        moment is unknown, each interval."""
        interval_passed = now - last.at >= self.stall_check_interval
        if watch.stall_from is None:
            return interval_passed
        read_at_wall = wall - (now - last.at)
        return wall >= watch.stall_from and (read_at_wall < watch.stall_from or interval_passed)

    def _report_unknown_values(self, members: list[Tracked], jobs: dict[str, JobLookup]) -> None:
        """Count and log each out-of-model value once per execution (contract §2: it
        degrades that one field; the job's other servers are tracked as usual)."""
        for tracked in members:
            if tracked.execution is None:
                continue
            for unknown in sorted(unknown_values(tracked.execution, jobs), key=str):
                pair = (unknown.field, unknown.raw)
                if pair in tracked.reported_unknowns:
                    continue
                tracked.reported_unknowns |= {pair}
                self.metrics.count_unknown_value(*pair)
                with bind_execution(tracked.execution_id):
                    log.warning(
                        "DRS reported a value outside its model; that field is not terminal"
                        " and the job's other servers are tracked as usual",
                        field=unknown.field,
                        value=unknown.raw,
                    )

    async def _check_terminations(
        self, members: list[Tracked], jobs: dict[str, JobLookup]
    ) -> dict[tuple[str, str], str]:
        """For servers DRS reports TERMINATED that the daemon never saw launch: the
        recovery instance of their job DRS still holds ("" for none). A failed lookup
        leaves them out: they are judged on a later poll (or at the maximum age)."""
        wanted: dict[Place, set[tuple[str, str]]] = defaultdict(set)
        for tracked in members:
            if tracked.execution is not None:
                for place, pairs in terminations_to_check(tracked.execution, jobs).items():
                    wanted[self.drs.local(place)] |= pairs
        evidence: dict[tuple[str, str], str] = {}

        async def one_place(place: Place, pairs: set[tuple[str, str]]) -> None:
            try:
                found = await self.drs.recovery_instances_of(place, {sid for _, sid in pairs})
            except Exception as error:  # noqa: BLE001 - reported; judged on a later poll
                self.metrics.unobserved.labels(
                    "DescribeRecoveryInstances", failure_kind(error)
                ).inc()
                log.warning(
                    "recovery instance lookup for TERMINATED servers failed; judged later",
                    region=place.region,
                    account=place.label,
                    error=str(error),
                )
                return
            for job_id, sid in pairs:
                of_job = sorted(rid for rid, jid in found.get(sid, ()) if jid == job_id)
                evidence[(job_id, sid)] = of_job[0] if of_job else ""

        await asyncio.gather(*(one_place(p, pairs) for p, pairs in wanted.items()))
        return evidence

    async def _list_launch_actions(
        self, members: list[Tracked], jobs: dict[str, JobLookup]
    ) -> None:
        """Fill each execution's cache of its launched RECOVERY servers' launch actions:
        one paged ListLaunchActions per (place, source server) and execution."""
        wanted: dict[tuple[Place, str], list[Tracked]] = defaultdict(list)
        for tracked in members:
            if tracked.execution is not None:
                for key in launch_actions_to_list(tracked.execution, jobs):
                    if key not in tracked.launch_actions:
                        wanted[key].append(tracked)

        async def one(key: tuple[Place, str], trackers: list[Tracked]) -> None:
            place, sid = key
            if not _SOURCE_SERVER_ID.match(sid):
                found: LaunchActionsLookup = LaunchActionsUnavailable(
                    f"{sid!r} is not a DRS source server id"
                )
                reason = "validation"
            else:
                try:
                    found = await self.drs.expected_launch_actions(self.drs.local(place), sid)
                    reason = ""
                except Exception as error:  # noqa: BLE001 - classified below
                    permanent = isinstance(error, PagingError) or (
                        isinstance(error, AwsCallError) and error.kind is ErrorKind.PERMANENT
                    )
                    code = error.code if isinstance(error, AwsCallError) else type(error).__name__
                    reason = _UNAVAILABLE_REASONS.get(code, "other")
                    operation = (
                        error.operation if isinstance(error, AwsCallError) else "ListLaunchActions"
                    )
                    found = LaunchActionsUnavailable(f"{operation}: {code}")
                    if not permanent:
                        self._launch_actions_failed(trackers, key, found=found, error=error)
                        return
            for tracked in trackers:
                self._store_launch_actions(tracked, key, found=found, reason=reason)

        await in_turn(
            list(wanted.items()),
            workers=self.max_concurrent_calls,
            work=lambda entry: one(entry[0], entry[1]),
        )

    def _launch_actions_failed(
        self,
        trackers: list[Tracked],
        key: tuple[Place, str],
        *,
        found: LaunchActionsUnavailable,
        error: Exception,
    ) -> None:
        """A transient failure: the server is not finished on its runs alone until the
        list arrives, or until LAUNCH_ACTIONS_FAILED_POLLS polls failed."""
        for tracked in trackers:
            failures = tracked.launch_action_failures.get(key, 0) + 1
            tracked.launch_action_failures[key] = failures
            if failures >= LAUNCH_ACTIONS_FAILED_POLLS:
                given_up = LaunchActionsUnavailable(f"{found.reason}, on {failures} polls")
                self._store_launch_actions(tracked, key, found=given_up, reason="retries_exhausted")
            else:
                with bind_execution(tracked.execution_id):
                    log.info(
                        "ListLaunchActions failed; retried on the next poll",
                        source_server_id=key[1],
                        region=key[0].region,
                        account=key[0].label,
                        error=str(error),
                    )

    def _store_launch_actions(
        self, tracked: Tracked, key: tuple[Place, str], *, found: LaunchActionsLookup, reason: str
    ) -> None:
        tracked.launch_actions[key] = found
        tracked.launch_action_failures.pop(key, None)
        if not isinstance(found, LaunchActionsUnavailable):
            return
        self.metrics.launch_actions_unavailable.labels(reason).inc()
        if reason not in tracked.reported_unavailable:
            tracked.reported_unavailable |= {reason}
            with bind_execution(tracked.execution_id):
                log.warning(
                    "launch actions unavailable; the server is judged on the runs DRS lists"
                    " (add drs:ListLaunchActions and drs:GetLaunchConfiguration to the task"
                    " role if they are denied)",
                    source_server_id=key[1],
                    region=key[0].region,
                    account=key[0].label,
                    reason=found.reason,
                )

    # --- decide and write back, one execution at a time ------------------------------

    async def _write_back(
        self,
        tracked: Tracked,
        *,
        jobs: dict[str, JobLookup],
        seen: _Seen,
        now: float,
    ) -> None:
        with bind_execution(tracked.execution_id):
            try:
                async with self._writes:
                    outcome = await self._decide_and_write(tracked, jobs=jobs, seen=seen, now=now)
            except AwsCallError as error:
                outcome = "error"
                self.metrics.execution_errors.labels(error.kind.value).inc()
                # The message is complete; a traceback of the retry loop adds nothing.
                log.error("write-back failed; retried on the next poll", error=str(error))  # noqa: TRY400
            except Exception:
                outcome = "error"
                self.metrics.execution_errors.labels("unexpected").inc()
                log.exception("poll failed unexpectedly; retried on the next poll")
            self.metrics.polls.labels(outcome).inc()
            if self.answerer is not None and outcome in ("unchanged", "updated", "finalized"):
                # tracked.item is what the table holds now (after our write, if any).
                self.answerer.observe(tracked.item, landed_at=self.clock.monotonic())
            if self.publisher is not None and outcome in ("unchanged", "updated", "finalized"):
                # The same item: what the table holds, so an event follows its write.
                self.publisher.submit(tracked.item)

    async def _decide_and_write(
        self,
        tracked: Tracked,
        *,
        jobs: dict[str, JobLookup],
        seen: _Seen,
        now: float,
    ) -> str:
        tracked.polls_since_write += 1
        for _ in range(self.write_attempts):
            execution = tracked.execution
            if execution is None:
                return await self._end_if_malformed_too_long(tracked, now=now)
            self._report_overdue(tracked, now=now)
            decision = decide(
                execution,
                jobs=jobs,
                instances=seen.instances,
                now=now,
                policy=self.policy,
                polls_since_write=tracked.polls_since_write,
                reasons=seen.reasons,
                launch_actions=tracked.launch_actions,
                terminated_instances=seen.terminated,
                job_logs=tracked.job_logs,
                unreachable=seen.unreachable,
            )
            tracked.decided_phase = decision.phase
            self._report_evidence_error(tracked, decision)
            if not decision.writes or (
                decision.kind == "heartbeat" and _cut_off(execution, seen.unreachable)
            ):
                # Not observed is not polled: no heartbeat while a wave's account is
                # unreachable (its status stays as it is until the maximum age).
                return "unchanged"
            result = await self.store.write(
                key=tracked.item_key,
                read=tracked.item,
                updates=with_pending(read=tracked.item, updates=decision.updates),
            )
            if result.applied:
                assert result.item is not None  # noqa: S101 - applied writes return the item
                self._count_evidence(execution, before=tracked.item, after=result.item)
                tracked.load(result.item)
                tracked.polls_since_write = 0
                self.metrics.writes.labels(decision.kind).inc()
                self._log_changes(decision)
                if decision.final_status is not None:
                    self._finalized(tracked, decision, now=now)
                    return "finalized"
                return "updated"
            self.metrics.write_conflicts.inc()
            current = result.item
            if current is None or current.get("Status") != ExecutionStatus.POLLING:
                status = None if current is None else current.get("Status")
                log.info("execution changed by another writer; leaving it", status=status)
                self.state.finish(tracked.name, now=self.clock.monotonic())
                return "gone"
            log.debug("lost a conditional write; re-deciding from the current item")
            tracked.load(current)
        log.warning(
            "gave up after repeated lost writes; retried on the next poll",
            attempts=self.write_attempts,
        )
        return "conflict"

    async def _end_if_malformed_too_long(self, tracked: Tracked, *, now: float) -> str:
        """Report a malformed item once per problem; write it only when the core's rule
        (:func:`end_of_malformed`) ends it."""
        problem = tracked.problem
        assert problem is not None  # noqa: S101 - execution is None only when malformed
        if tracked.reported_problem != str(problem):
            tracked.reported_problem = str(problem)
            self.metrics.malformed_items.inc()
            log.error(
                "malformed execution item; not polled until it is fixed",
                field=problem.field,
                problem=problem.problem,
            )
        updates = end_of_malformed(
            tracked.item,
            problem=f"{problem.field}: {problem.problem}",
            now=now,
            max_execution_age=self.policy.max_execution_age,
        )
        if updates is None:
            return "error"
        result = await self.store.write(key=tracked.item_key, read=tracked.item, updates=updates)
        self.state.finish(tracked.name, now=self.clock.monotonic())
        if result.applied:
            if self.reporter is not None and result.item is not None:
                self.reporter.submit(result.item)
            if self.publisher is not None and result.item is not None:
                self.publisher.submit(result.item)
            self.metrics.finalized.labels("UNKNOWN", FinalStatus.FAILED).inc()
            log.error("ended malformed execution as FAILED", error_message=updates["ErrorMessage"])
            return "finalized"
        return "gone"

    def _count_evidence(
        self, execution: Execution, *, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        """Observe what a landed write newly holds: each server's RTO and RPO once, each
        target newly judged missed once, each stall begun once. The write was conditional
        on the item as read, so another replica (or this one after a restart) that writes
        next reads these and counts nothing again."""
        news = evidence_news(before, after)
        kind = execution.execution_type.value
        for place, seconds in news.recovery_times:
            self.metrics.recovery_time.labels(kind, place.label, place.region).observe(seconds)
        for place, seconds in news.recovery_points:
            self.metrics.recovery_point.labels(kind, place.label, place.region).observe(seconds)
        for target in news.missed:
            self.metrics.targets_missed.labels(target, kind).inc()
            log.warning("recovery target missed", target=target)
        for phase in news.stalls:
            self.metrics.stalls.labels(phase).inc()
            log.warning(
                "a server's phase outlasted its bound (marked Stalled; DRS stays the source"
                " of truth, nothing is failed for it)",
                phase=phase,
            )

    def _report_evidence_error(self, tracked: Tracked, decision: Decision) -> None:
        if decision.evidence_error is None:
            return
        self.metrics.evidence_degraded.labels("rules").inc()
        if tracked.reported_evidence_error != decision.evidence_error:
            tracked.reported_evidence_error = decision.evidence_error
            log.error(
                "the evidence could not be built; statuses are written as decided",
                error=decision.evidence_error,
            )

    def _finalized(self, tracked: Tracked, decision: Decision, *, now: float) -> None:
        execution = tracked.execution
        kind = execution.execution_type.value if execution else "UNKNOWN"
        status = decision.final_status or FinalStatus.FAILED
        self.metrics.finalized.labels(kind, status).inc()
        if execution is not None:
            self.metrics.execution_duration.labels(kind, status).observe(
                max(0.0, now - execution.start_time)
            )
        log.info(
            "execution finalized",
            status=status,
            execution_type=kind,
            error_message=decision.updates.get("ErrorMessage"),
        )
        self.state.finish(tracked.name, now=self.clock.monotonic())
        if self.reporter is not None:
            # tracked.item is the item the final write left: it has landed.
            self.reporter.submit(tracked.item)

    def _report_overdue(self, tracked: Tracked, *, now: float) -> None:
        execution = tracked.execution
        if (
            execution is not None
            and not tracked.overdue_reported
            and is_overdue(execution, now=now, policy=self.policy)
        ):
            tracked.overdue_reported = True
            log.warning(
                "execution overdue; still polling (DRS stays the source of truth)",
                age_seconds=round(now - execution.start_time),
                overdue_after=self.policy.overdue_after,
            )

    @staticmethod
    def _log_changes(decision: Decision) -> None:
        for change in decision.changes:
            log.info(
                "server status changed",
                wave=change.wave,
                source_server_id=change.source_server_id,
                old_status=change.old_status,
                new_status=change.new_status,
                error=change.error,
            )

    def _release(self, tracked: Tracked, *, polled_at: float) -> None:
        """Reschedule from when the poll started, so a slow poll does not drift the cadence."""
        tracked.in_flight = False
        if tracked.dropped:
            return
        if not self.state.owns(tracked.name, tracked.item):
            self.state.hand_over(tracked)
            return
        if tracked.newer_item is not None:
            newer, tracked.newer_item = tracked.newer_item, None
            tracked.offer(newer)
        phase = tracked.schedule_phase() or Phase.PENDING
        interval = self.policy.intervals.of(phase)
        due = polled_at + interval
        if tracked.rehint:  # a DRS event came while this poll was in flight
            tracked.rehint = False
            due = self.clock.monotonic()
            self.state.wakeup.set()
        self.state.queue.schedule(queue_name(*tracked.item_key), due)
