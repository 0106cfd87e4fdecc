"""Tracker-agnostic figures from what the DRS simulator and the DynamoDB proxy recorded.

*Poll lateness.* An execution is polled when DRS is asked about its jobs. Its DescribeJobs
calls are grouped into polls: a poll ends when one of its job ids is asked for again
(drs-poller asks for every job of an execution in one call; the baseline makes one call
per job, one after the other). A poll's time is its first call. Lateness is poll time
minus (previous poll + the interval of the phase the execution was in at the previous
poll), the phase being derived from what DRS reported at that moment with the project's
pure phase rules (``drs_poller.core.phases``). Negative lateness is a poll pulled early
(drs-poller coalesces polls due within a window).

*Detection latency.* For every server launchStatus change in the scripts (PENDING →
IN_PROGRESS → LAUNCHED / FAILED, and TERMINATED), the time from the change to the first
UpdateItem that carried that status for that server, as the proxy saw it land. Changes
after the execution's final write are not counted (nobody tracks a finished execution).
The excess is the latency minus the interval of the phase seen at the execution's last
poll before the change (the cadence in force when it happened): the part a tracker
adds beyond its polling interval.

Every duration is measured in compressed (wall-clock) seconds and multiplied by the
speed factor to express it on the real DRS time scale.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from drs_poller.core.models import ExecutionType, JobStatus, JobView, LaunchStatus, Participant
from drs_poller.core.phases import Phase, most_urgent, server_phase
from drs_poller.settings import load_settings, policy_from

if TYPE_CHECKING:
    from benchmarks.recording import DrsCall, ItemWrite
    from benchmarks.workloads import Seeded
    from drs_poller.simulator.timelines import JobScript

REAL_INTERVALS = policy_from(load_settings(table_name="bench")).intervals  # the defaults


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


def lateness(
    seeded: Seeded,
    polls: dict[str, list[float]],
    *,
    speed: float,
    window: tuple[float, float] | None,
) -> list[float]:
    """Lateness of every poll after an execution's first, in real-scale seconds."""
    found = []
    for execution_id, times in polls.items():
        kind, servers = seeded.executions[execution_id]
        mode = ExecutionType(kind)
        for previous, current in itertools.pairwise(times):
            if window is not None and not window[0] <= current <= window[1]:
                continue
            interval = REAL_INTERVALS.of(phase_at(servers, mode, previous)) / speed
            found.append((current - (previous + interval)) * speed)
    return found


def detection(
    seeded: Seeded,
    writes: list[ItemWrite],
    polls: dict[str, list[float]],
    *,
    speed: float,
    window: tuple[float, float] | None,
) -> dict[str, Any]:
    shown: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    finished: dict[str, float] = {}
    for write in writes:
        for sid, status in write.servers:
            shown[(write.execution_id, sid, status)].append(write.at)
        if write.status is not None and write.status != "POLLING":
            finished.setdefault(write.execution_id, write.at)
    latencies, excesses, missed = [], [], 0
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
            continue
        latency = (times[position] - change.at) * speed
        latencies.append(latency)
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
        "by_status": {status: quantiles(values) for status, values in sorted(by_status.items())},
        "missed": missed,
    }
