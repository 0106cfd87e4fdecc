"""Tracker-agnostic figures from what the DRS simulator and the DynamoDB proxy recorded.

*Poll lateness.* An execution is polled when DRS is asked about its jobs. Its DescribeJobs
calls are grouped into polls: a poll ends when one of its job ids is asked for again
(drs-poller asks for every job of an execution in one call; the baseline makes one call
per job, one after the other). A poll's time is its first call. Lateness is poll time
minus (previous poll + the interval of the phase the execution was in at the previous
poll), the phase being derived from what DRS reported at that moment with the project's
pure phase rules (``drs_poller.core.phases``). Negative lateness is a poll pulled early
(drs-poller coalesces polls due within a window).

*Where a poll's lateness goes* (:func:`poll_shares`). drs-poller polls an execution
again only once the write of its previous poll has landed, so a poll's lateness is the
wait for that write (from due to its landing, if it landed after due; of which the part
with the request at the local DynamoDB, as the proxy saw it, is told apart from the part
queued in the tracker for a writer), plus the daemon's own share: the rest, from due (or
the write's landing) to dispatched, to DRS asked. A real DynamoDB answers a write in
milliseconds; the local one, under W10k, in up to seconds: the own share is what a real
table would leave.

*Detection latency.* For every server launchStatus change in the scripts (PENDING →
IN_PROGRESS → LAUNCHED / FAILED, and TERMINATED), the time from the change to the first
UpdateItem that carried that status for that server, as the proxy saw it land. Changes
after the execution's final write are not counted (nobody tracks a finished execution).
A change no write ever carried is *missed*, of two kinds: a status that DRS showed in
an answer to the tracker (a DescribeJobs for its job, asked after the change and
answered before the server's next change), which the tracker then did not write: a
fault of the tracker; and a status that was gone before the tracker next asked about
its job: shorter than the tracker's polling gap, which a busy machine lengthens (at 60x
compression, one second of delay on the machine is a minute on DRS's time scale).
The latency is split in two: from the change to the answer of the first DescribeJobs
asked after it (the poll that saw it), and from that answer to the write that stored it
landing. The excess is the latency minus the interval of the phase seen at the execution's last
poll before the change (the cadence in force when it happened): the part a tracker
adds beyond its polling interval.

*DescribeJobs per (account, region) per batch* (:func:`describe_jobs_per_place`). The
daemon's batch asks each place once, all places at once; the recorder sees calls, not
batches. DescribeJobs calls are grouped into batches by arrival: a call within
:data:`BATCH_GAP` wall-clock seconds of the one before joins its batch. Two batches that
overlap in time are counted as one, so a place asked by both shows twice: the figure can
only overstate the calls per batch, never hide one. Batches overlap when they are
dispatched back to back (executions released one by one as their writes land), so the
exact figure comes from the daemon's own count of the places its batches asked
(``drs_poller_batch_places``, read from its /metrics at the measured period's start and
end: :func:`benchmarks.run.batch_figures`), set against the calls the simulator saw.

Every duration is measured in compressed (wall-clock) seconds and multiplied by the
speed factor to express it on the real DRS time scale.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drs_poller.core.models import ExecutionType, JobStatus, JobView, LaunchStatus, Participant
from drs_poller.core.phases import Phase, most_urgent, server_phase
from drs_poller.settings import load_settings, policy_from

if TYPE_CHECKING:
    from collections.abc import Callable

    from benchmarks.recording import DrsCall, ItemWrite
    from benchmarks.workloads import Seeded, StateChange
    from drs_poller.simulator.timelines import JobScript

REAL_INTERVALS = policy_from(load_settings(table_name="bench")).intervals  # the defaults
# DescribeJobs calls this close (wall-clock seconds) are taken for one batch's.
BATCH_GAP = 0.1


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.5), "p99": at(0.99), "max": ordered[-1], "count": len(ordered)}


def percentiles(values: list[float]) -> list[float]:
    """0th..100th percentiles plus 99.9th, for CDF plots."""
    if not values:
        return []
    ordered = sorted(values)
    points = [q / 100 for q in range(101)] + [0.999]
    return [ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))] for q in sorted(points)]


def _server_active(script: JobScript, sid: str, mode: ExecutionType, now: float) -> bool:
    snapshot = script.state_at(now)
    server = snapshot.server(sid)
    status = server.launch_status
    if status in ("FAILED", "TERMINATED") and mode is ExecutionType.DRILL:
        return False
    if status == "FAILED":
        return False
    if status in ("LAUNCHED", "TERMINATED"):
        if mode is ExecutionType.DRILL:
            return False
        runs = server.runs or ()
        done = runs and (
            all(r.status == "SUCCEEDED" for r in runs) or any(r.status == "FAILED" for r in runs)
        )
        return not done
    return snapshot.job_status != "COMPLETED"


def phase_at(servers: list[tuple[JobScript, str]], mode: ExecutionType, now: float) -> Phase:
    phases = []
    for script, sid in servers:
        if script.created_at > now or not _server_active(script, sid, mode, now):
            continue
        snapshot = script.state_at(now)
        launch = snapshot.server(sid).launch_status
        view = JobView(
            job_id=script.job_id,
            status=JobStatus(snapshot.job_status),
            servers={sid: Participant(sid, LaunchStatus(launch), None, ())},
        )
        phases.append(server_phase(view, sid, mode=mode))
    return most_urgent(phases, REAL_INTERVALS) or Phase.PENDING


def poll_times(seeded: Seeded, calls: list[DrsCall]) -> dict[str, list[float]]:
    """Per execution, the start times of its polls."""
    polls: dict[str, list[float]] = defaultdict(list)
    asked: dict[str, set[str]] = defaultdict(set)
    for call in calls:
        if call.operation != "DescribeJobs":
            continue
        touched: dict[str, list[str]] = defaultdict(list)
        for job_id in call.job_ids:
            owner = seeded.job_owner.get(job_id)
            if owner is not None:
                touched[owner].append(job_id)
        for execution_id, job_ids in touched.items():
            seen = asked[execution_id]
            if not polls[execution_id] or any(j in seen for j in job_ids):
                polls[execution_id].append(call.at)
                seen.clear()
            seen.update(job_ids)
    return polls


@dataclass(frozen=True, slots=True)
class PollShares:
    """One poll's lateness (real-scale seconds) and its parts: ``write_wait``, the part
    spent waiting for the previous poll's write to land (the daemon polls an execution
    again only once its write has landed), of which ``at_table`` passed with the request
    at the local DynamoDB (sent to landed, as the proxy saw it; the rest was queued in
    the tracker for a writer); and ``own``, the rest: from due, or from the write's
    landing if later, to dispatched, to DRS asked."""

    lateness: float
    write_wait: float
    at_table: float

    @property
    def own(self) -> float:
        return self.lateness - self.write_wait


def poll_shares(
    seeded: Seeded,
    polls: dict[str, list[float]],
    writes: list[ItemWrite],
    *,
    speed: float,
    window: tuple[float, float] | None,
) -> list[PollShares]:
    """The lateness of every poll after an execution's first (module docstring), split
    into its shares (:class:`PollShares`). The write a poll waited on is the execution's
    last write landed between its previous poll and it; a poll with none (nothing
    changed) waited on no write."""
    landed: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for write in writes:
        # A record without a send time (made before 2026-12-06): the whole wait counts
        # as the table's.
        sent = -math.inf if write.sent is None else write.sent
        landed[write.execution_id].append((write.at, sent))
    for spans in landed.values():
        spans.sort()
    found = []
    for execution_id, times in polls.items():
        kind, servers = seeded.executions[execution_id]
        mode = ExecutionType(kind)
        spans = landed.get(execution_id, [])
        for previous, current in itertools.pairwise(times):
            if window is not None and not window[0] <= current <= window[1]:
                continue
            due = previous + REAL_INTERVALS.of(phase_at(servers, mode, previous)) / speed
            late = current - due
            wait = table = 0.0
            last = bisect.bisect_right(spans, (current, math.inf)) - 1
            if late > 0 and last >= 0 and spans[last][0] > previous:
                at, sent = spans[last]
                wait = min(late, max(0.0, at - due))
                table = min(wait, max(0.0, at - max(sent, due)))
            found.append(PollShares(late * speed, wait * speed, table * speed))
    return found


def _job_polls(
    seeded: Seeded, calls: list[DrsCall]
) -> tuple[dict[str, list[tuple[float, float]]], dict[tuple[str, str], str]]:
    """Each job's DescribeJobs (asked, answered) spans in time order, and each (execution,
    source server)'s job."""
    asked: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for call in calls:
        if call.operation == "DescribeJobs":
            for job_id in call.job_ids:
                asked[job_id].append((call.at, call.answered))
    for spans in asked.values():
        spans.sort()
    job_of = {
        (execution_id, sid): script.job_id
        for execution_id, (_, servers) in seeded.executions.items()
        for script, sid in servers
    }
    return asked, job_of


def _seen_by_a_poll(seeded: Seeded, calls: list[DrsCall]) -> Callable[[StateChange, float], bool]:
    """Whether DRS showed a change's status to the tracker: a DescribeJobs for the
    server's job, asked at or after the change and answered before ``until`` (the
    server's next change)."""
    asked, job_of = _job_polls(seeded, calls)

    def seen(change: StateChange, until: float) -> bool:
        spans = asked.get(job_of.get((change.execution_id, change.source_server_id), ""), [])
        first = bisect.bisect_left(spans, (change.at, -math.inf))
        return any(answered < until for _, answered in spans[first:])

    return seen


def detection(  # noqa: C901 - one pass over the changes
    seeded: Seeded,
    writes: list[ItemWrite],
    polls: dict[str, list[float]],
    *,
    speed: float,
    window: tuple[float, float] | None,
    calls: list[DrsCall] | None = None,
) -> dict[str, Any]:
    seen = _seen_by_a_poll(seeded, calls or [])
    asked, job_of = _job_polls(seeded, calls or [])
    changes = sorted(seeded.changes(), key=lambda c: (c.execution_id, c.source_server_id, c.at))
    next_change: dict[StateChange, float] = {}
    for current, following in itertools.pairwise(changes):
        same = (current.execution_id, current.source_server_id) == (
            following.execution_id,
            following.source_server_id,
        )
        next_change[current] = following.at if same else math.inf
    if changes:
        next_change[changes[-1]] = math.inf
    missed_seen = 0
    missed_in: dict[str, set[str]] = {"seen": set(), "unseen": set()}
    shown: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    finished: dict[str, float] = {}
    for write in writes:
        for sid, status in write.servers:
            shown[(write.execution_id, sid, status)].append(write.at)
        if write.status is not None and write.status != "POLLING":
            finished.setdefault(write.execution_id, write.at)
    latencies, excesses, missed = [], [], 0
    seen_after: list[float] = []
    stored_after: list[float] = []
    by_status: dict[str, list[float]] = defaultdict(list)
    for change in seeded.changes():
        if window is not None and not window[0] <= change.at <= window[1]:
            continue
        end = finished.get(change.execution_id)
        if end is not None and change.at > end:
            continue  # a drill's clean-up after the execution was finalized
        times = sorted(shown.get((change.execution_id, change.source_server_id, change.status), []))
        position = bisect.bisect_left(times, change.at)
        if position == len(times):
            if end is not None or window is None:
                missed += 1
                was_seen = seen(change, next_change[change])
                missed_seen += was_seen
                missed_in["seen" if was_seen else "unseen"].add(change.execution_id)
            continue
        latency = (times[position] - change.at) * speed
        latencies.append(latency)
        # Split: until the first poll asked after the change had DRS's answer (the poll
        # that saw it), then until the write that stored it landed.
        spans = asked.get(job_of.get((change.execution_id, change.source_server_id), ""), [])
        first = bisect.bisect_left(spans, (change.at, -math.inf))
        if first < len(spans) and spans[first][1] <= times[position]:
            answered = spans[first][1]
            seen_after.append((answered - change.at) * speed)
            stored_after.append((times[position] - answered) * speed)
        by_status[change.status].append(latency)
        # The cadence in force at the change: the phase seen at the last poll before it.
        execution_polls = polls.get(change.execution_id, [])
        last = bisect.bisect_right(execution_polls, change.at) - 1
        if last >= 0:
            kind, servers = seeded.executions[change.execution_id]
            phase = phase_at(servers, ExecutionType(kind), execution_polls[last])
            excesses.append(latency - REAL_INTERVALS.of(phase))
    return {
        "latency": quantiles(latencies),
        "excess_over_interval": quantiles(excesses),
        # The latency's two parts (real scale): change to the answer of the poll that saw
        # it, and that answer to the landing of the write that stored it.
        "seen_by_poll": quantiles(seen_after),
        "stored_by_write": quantiles(stored_after),
        "by_status": {status: quantiles(values) for status, values in sorted(by_status.items())},
        "missed": missed,
        # Of the missed: statuses DRS showed the tracker, unwritten (a tracker's fault),
        # and statuses gone before the tracker asked (shorter than its polling gap).
        "missed_seen": missed_seen,
        "missed_unseen": missed - missed_seen,
        "missed_in_executions": {kind: sorted(ids) for kind, ids in missed_in.items()},
    }


def latencies_ms(spans: list[tuple[str, float, float]]) -> dict[str, dict[str, float | None]]:
    """Per operation, the quantiles of (start, end) request spans, in milliseconds."""
    by_operation: dict[str, list[float]] = defaultdict(list)
    for operation, started, ended in spans:
        by_operation[operation].append((ended - started) * 1000)
    return {operation: quantiles(values) for operation, values in sorted(by_operation.items())}


def describe_jobs_per_place(
    calls: list[DrsCall], *, window: tuple[float, float] | None
) -> dict[str, Any]:
    """DescribeJobs calls per (account, region) per batch (module docstring): the mean and
    maximum over (batch, place) pairs, how many pairs had more than one call, and the
    calls per place over the measured period."""
    asked = sorted((call for call in calls if call.operation == "DescribeJobs"), key=lambda c: c.at)
    if window is not None:
        asked = [call for call in asked if window[0] <= call.at <= window[1]]
    per_pair: list[int] = []
    per_place: dict[tuple[str | None, str | None], int] = defaultdict(int)
    batches = 0
    previous = -math.inf
    in_batch: dict[tuple[str | None, str | None], int] = defaultdict(int)
    for call in [*asked, None]:
        if call is None or call.at - previous > BATCH_GAP:
            per_pair += in_batch.values()
            batches += bool(in_batch)
            in_batch = defaultdict(int)
        if call is None:
            break
        place = (call.account, call.region)
        in_batch[place] += 1
        per_place[place] += 1
        previous = call.at
    return {
        "batches": batches,
        "places": len(per_place),
        "per_batch": {
            "mean": sum(per_pair) / len(per_pair) if per_pair else None,
            "max": max(per_pair, default=None),
        },
        "more_than_one": sum(1 for count in per_pair if count > 1),
        "per_place": {
            "mean": sum(per_place.values()) / len(per_place) if per_place else None,
            "max": max(per_place.values(), default=None),
            "min": min(per_place.values(), default=None),
        },
    }
