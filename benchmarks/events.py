"""DRS launch-result events for the benchmark's event variants (issue 14).

The benchmark's simulator knows each server's whole script in advance, so the events
are planned from the workload (:meth:`Seeded.changes`): one "DRS Source Server Launch
Result" per server whose launch ends (LAUNCHED or FAILED), at the moment it ends, in
the shape the local simulator publishes (:func:`launch_result_event`). A variant may
drop a share of them (chosen by the seed, so a rerun drops the same ones) or deliver
each twice (the same event, same ``id``, as EventBridge's at-least-once delivery may).

Each event goes straight onto the daemon's queue, as the EventBridge envelope a rule
with an SQS target delivers (:func:`delivered_body`), ten to a SendMessageBatch, the
batches sent concurrently when due. EventBridge's own leg (DRS to the bus, the rule,
a cross-region forward) is not what the run measures and not what it can measure
here: moto's EventBridge takes about 0.3 s a PutEvents with a cross-region rule, so a
publisher through it fell minutes behind the launches (docs/benchmarks.md, issue 18's
run), and moto re-puts a forwarded event in the target region without its
``resources``. The local stack and the integration tests take the rule's path
(docs/events.md). A planned walk, rather than the local stack's publisher (which looks
at every job on each tick), so that the benchmark process spends next to nothing on
it at W10k.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from drs_poller.simulator.events import launch_result_event
from drs_poller.simulator.timelines import DEFAULT_ACCOUNT_ID

if TYPE_CHECKING:
    from benchmarks.workloads import Seeded

ENDED: Final = ("LAUNCHED", "FAILED")
SEND_BATCH_LIMIT: Final = 10  # SendMessageBatch's limit
SENDS_IN_FLIGHT: Final = 8


@dataclass(frozen=True)
class EventPlan:
    """``drop``: the share of events never put; ``copies``: how many times each is put."""

    drop: float = 0.0
    copies: int = 1


# The drs-poller trackers that run with DRS events (the rest run without).
EVENT_VARIANTS: Final = {
    "drs-poller-events": EventPlan(),
    "drs-poller-events-drop30": EventPlan(drop=0.3),
    "drs-poller-events-dup": EventPlan(copies=2),
    # Every feature on, as a user would run it (run.FULL): events in, drill reports put
    # to S3, finalization events put on a bus.
    "drs-poller-full": EventPlan(),
}


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    at: float  # when the launch ends, on the benchmark's (compressed) clock
    region: str
    entry: dict[str, Any]  # the PutEvents entry DRS would put
    copies: int
    event_id: str  # the ``id`` EventBridge gives it (copies share it)


@dataclass
class EventCounts:
    planned: int = 0
    dropped: int = 0
    before_start: int = 0  # launches that ended before the run started: not put
    put: int = 0  # messages the queue accepted, copies included
    forwarded: int = 0  # of those, from a region other than the queue's (a cross-region rule)
    failed: int = 0
    late_s: list[float] = field(default_factory=list)  # launch end to on the queue, a batch

    def figures(self) -> dict[str, Any]:
        late = sorted(self.late_s)
        return {
            "planned": self.planned,
            "dropped": self.dropped,
            "before_start": self.before_start,
            "put": self.put,
            "forwarded": self.forwarded,
            "failed": self.failed,
            "put_late_p99_s": late[int(0.99 * (len(late) - 1))] if late else None,
        }


def plan_events(
    seeded: Seeded, plan: EventPlan, *, seed: int, since: float | None = None
) -> tuple[list[PlannedEvent], int, int]:
    """The events of ``seeded`` in time order, how many ``plan`` dropped, and how many
    ended before ``since`` (the run's start) and are not put. A steady-state workload
    (W10k) starts its executions up to 25 minutes in the past: their earlier launches
    would have been read from the queue by a daemon running then, and put all at once
    at the start they were tens of thousands of messages that the queue's moto server
    worked through for the whole run, up to 487 s late. The daemon, started into that
    fleet, reads those servers' states by polling them."""
    rng = random.Random(f"{seed}/events")  # noqa: S311 - reproducible, not secret
    script_of = {
        (execution_id, sid): script
        for execution_id, (_, servers) in seeded.executions.items()
        for script, sid in servers
    }
    planned: list[PlannedEvent] = []
    dropped = before = 0
    for change in sorted(seeded.changes(), key=lambda c: (c.at, c.execution_id)):
        if change.status not in ENDED:
            continue
        if since is not None and change.at < since:
            before += 1
            continue
        script = script_of[(change.execution_id, change.source_server_id)]
        if rng.random() < plan.drop:
            dropped += 1
            continue
        entry = launch_result_event(
            region=script.region,
            account=DEFAULT_ACCOUNT_ID,
            source_server_id=change.source_server_id,
            job_id=script.job_id,
            is_drill=script.is_drill,
            launched=change.status == "LAUNCHED",
        )
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        planned.append(PlannedEvent(change.at, script.region, entry, plan.copies, event_id))
    return planned, dropped, before


async def create_events_queue(session: Any, *, endpoint_url: str, region: str, name: str) -> str:
    """The daemon's events queue, in its region, named for the run (a tracker never
    inherits another's messages). Returns its URL."""
    async with session.client("sqs", region_name=region, endpoint_url=endpoint_url) as sqs:
        return str((await sqs.create_queue(QueueName=name))["QueueUrl"])


async def delete_events_queue(session: Any, *, endpoint_url: str, region: str, url: str) -> None:
    async with session.client("sqs", region_name=region, endpoint_url=endpoint_url) as sqs:
        await sqs.delete_queue(QueueUrl=url)


def delivered_body(event: PlannedEvent, *, at: float) -> str:
    """The message body an EventBridge rule with an SQS target delivers for ``event``
    put at ``at``: the whole event, ``detail`` as an object."""
    entry = event.entry
    return json.dumps(
        {
            "version": "0",
            "id": event.event_id,
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": DEFAULT_ACCOUNT_ID,
            "time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": event.region,
            "resources": entry["Resources"],
            "detail": json.loads(entry["Detail"]),
        }
    )


def batches(events: list[PlannedEvent], *, window: float = 0.05) -> list[list[PlannedEvent]]:
    """Events due within ``window`` seconds of each other, at most ``SEND_BATCH_LIMIT``
    messages (copies counted) a batch, in time order."""
    found: list[list[PlannedEvent]] = []
    batch: list[PlannedEvent] = []
    for event in events:
        if (
            not batch
            or event.at - batch[0].at > window
            or sum(e.copies for e in batch) + event.copies > SEND_BATCH_LIMIT
        ):
            batch = []
            found.append(batch)
        batch.append(event)
    return found


async def publish_events(
    session: Any,
    *,
    endpoint_url: str,
    queue_url: str,
    region: str,
    events: list[PlannedEvent],
    counts: EventCounts,
) -> None:
    """Send each batch when it is due (wall clock), up to ``SENDS_IN_FLIGHT`` at once,
    until done or cancelled."""
    slots = asyncio.Semaphore(SENDS_IN_FLIGHT)

    async def send(sqs: Any, batch: list[PlannedEvent]) -> None:
        async with slots:
            entries = [
                {"Id": f"{index}-{copy}", "MessageBody": delivered_body(event, at=event.at)}
                for index, event in enumerate(batch)
                for copy in range(event.copies)
            ]
            try:
                result = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except Exception:  # noqa: BLE001 - counted; EventBridge is best effort too
                counts.failed += len(entries)
                return
            failed_ids = {entry["Id"] for entry in result.get("Failed") or ()}
            counts.failed += len(failed_ids)
            counts.put += len(entries) - len(failed_ids)
            counts.forwarded += sum(
                event.copies
                for index, event in enumerate(batch)
                if event.region != region and f"{index}-0" not in failed_ids
            )
            counts.late_s.append(max(0.0, time.time() - batch[0].at))

    async with session.client("sqs", region_name=region, endpoint_url=endpoint_url) as sqs:
        sending: set[asyncio.Task[None]] = set()
        try:
            for batch in batches(events):
                delay = batch[0].at - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(send(sqs, batch))
                sending.add(task)
                task.add_done_callback(sending.discard)
            if sending:
                await asyncio.gather(*sending)
        finally:
            for task in sending:
                task.cancel()
