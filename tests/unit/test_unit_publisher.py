"""The sender of finalization events (engine/publishing.py) with a stand-in EventBridge
and table: which entries are sent again and when, what is counted, and what is recorded.
The real calls, to moto through the daemon, are tests/integration/test_events_out.py."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from report_samples import recovery_failed

from drs_poller.clients.calling import AwsCallError
from drs_poller.clients.events import EntryResult
from drs_poller.clock import ManualClock
from drs_poller.core.backoff import BackoffPolicy, ErrorKind
from drs_poller.core.events_out import PUBLISHED, final_statuses
from drs_poller.engine.publishing import EventPublisher
from drs_poller.observability.metrics import Metrics


class FakeEvents:
    """Answers each PutEvents call with the next scripted list of error codes (None:
    accepted), or raises the scripted exception."""

    def __init__(self, script):
        self.script = list(script)
        self.calls: list[list[dict]] = []

    async def put_events(self, entries):
        self.calls.append(list(entries))
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        codes = step or [None] * len(entries)
        return [
            EntryResult(event_id=f"id-{n}") if code is None else EntryResult(None, code, "no")
            for n, code in enumerate(codes)
        ]


class FakeRecords:
    def __init__(self):
        self.recorded: list[tuple[tuple[str, str], list[str]]] = []

    async def record(self, *, key, tags):
        self.recorded.append((key, sorted(tags)))
        return True


def _publisher(events, *, attempts=3, queue_size=1000):
    sleeps: list[float] = []

    async def sleep(seconds):
        sleeps.append(seconds)

    caller = SimpleNamespace(
        policy=BackoffPolicy(base=0.5, cap=4.0, max_attempts=attempts),
        rng=random.Random(0),
        sleep=sleep,
    )
    publisher = EventPublisher(
        events=events,
        records=FakeRecords(),
        store=None,
        caller=caller,
        metrics=Metrics(),
        clock=ManualClock(start=1_800_000_000.0),
        bus="dr-events",
        report=None,
        max_execution_age=43200,
        queue_size=queue_size,
    )
    return publisher, sleeps


def count(publisher, kind, outcome):
    value = publisher.metrics.registry.get_sample_value(
        "drs_poller_events_published_total", {"type": kind, "outcome": outcome}
    )
    return value or 0.0


async def test_entries_go_out_in_one_call_and_are_recorded_together():
    item, _ = recovery_failed()
    events = FakeEvents([])
    publisher, sleeps = _publisher(events)
    assert publisher.submit(item) == 2
    assert publisher.submit(item) == 0  # queued already
    await publisher.drain()
    assert [[e["DetailType"] for e in call] for call in events.calls] == [
        ["DRS Poller Wave Finished", "DRS Poller Execution Finished"]
    ]
    assert all(e["Source"] == "drs-poller" for e in events.calls[0])
    assert all(e["EventBusName"] == "dr-events" for e in events.calls[0])
    assert publisher.records.recorded == [
        (("recovery-2027-01-15-ledger", "plan-ledger"), ["execution:FAILED", "wave-1:FAILED"])
    ]
    assert sleeps == []
    assert publisher.submit(item) == 0  # sent lately: not again from this process


async def test_an_item_that_shows_the_record_is_due_nothing():
    item, _ = recovery_failed()
    item[PUBLISHED] = {f.tag for f in final_statuses(item)}
    publisher, _ = _publisher(FakeEvents([]))
    assert publisher.submit(item) == 0


@pytest.mark.parametrize(
    ("script", "calls", "retried", "failed", "recorded"),
    [
        # A transient rejection of the second entry: it alone goes again, and lands.
        ([[None, "InternalFailure"]], [2, 1], 1, 0, 2),
        # Throttled on every attempt: three calls, then counted and left unrecorded.
        ([["ThrottlingException"] * 2] * 3, [2, 2, 2], 4, 2, 0),
        # A permanent code is not sent again.
        ([["AccessDeniedException", None]], [2], 0, 1, 1),
        # The whole call failed for good (after the Caller's own retries).
        (
            [
                AwsCallError(
                    service="events",
                    operation="PutEvents",
                    kind=ErrorKind.THROTTLED,
                    code="ThrottlingException",
                    message="slow down",
                )
            ],
            [2],
            0,
            2,
            0,
        ),
    ],
)
async def test_rejected_entries_are_retried_with_backoff_then_counted(
    script, calls, retried, failed, recorded
):
    item, _ = recovery_failed()
    events = FakeEvents(script)
    publisher, sleeps = _publisher(events)
    publisher.submit(item)
    await publisher.drain()
    assert [len(call) for call in events.calls] == calls
    assert len(sleeps) == len(calls) - 1
    assert all(0 <= s <= 4.0 for s in sleeps)
    total = {
        o: count(publisher, "wave", o) + count(publisher, "execution", o)
        for o in ("sent", "retried", "failed")
    }
    assert total == {"sent": recorded, "retried": retried, "failed": failed}
    tags = [tag for _, of_item in publisher.records.recorded for tag in of_item]
    assert len(tags) == recorded
    # What failed is not remembered: the next poll (or the sweep) offers it again.
    assert publisher.submit(item) == failed


async def test_a_full_queue_drops_counts_and_offers_again_later():
    item, _ = recovery_failed()
    publisher, _ = _publisher(FakeEvents([]), queue_size=1)
    assert publisher.submit(item) == 1
    assert count(publisher, "execution", "dropped") == 1
    await publisher.drain()
    assert publisher.submit(item) == 1  # the dropped one, offered again
    await publisher.drain()
    assert count(publisher, "wave", "sent") + count(publisher, "execution", "sent") == 2
