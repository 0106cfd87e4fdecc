"""The benchmark's DRS events (issue 14): one per launch result, in time order, the same
ones dropped for a seed, copies counted against SendMessageBatch's limit of 10 entries,
each delivered as the envelope the daemon's own parser reads."""

from __future__ import annotations

import json
from collections import Counter

from benchmarks.events import (
    EVENT_VARIANTS,
    SEND_BATCH_LIMIT,
    batches,
    delivered_body,
    plan_events,
)
from benchmarks.workloads import WORKLOADS, seed_workload
from drs_poller.core.drs_events import DrsEvent, parse_event, parse_time

START = 1_800_000_000.0


def _seeded():
    return seed_workload(WORKLOADS["W50"], speed=20, start=START, seed=7)


def test_one_event_per_launch_result_in_time_order():
    seeded = _seeded()
    events, dropped, _ = plan_events(seeded, EVENT_VARIANTS["drs-poller-events"], seed=7)
    ended = [c for c in seeded.changes() if c.status in ("LAUNCHED", "FAILED")]
    assert dropped == 0
    assert len(events) == len(ended) > 0
    assert [e.at for e in events] == sorted(e.at for e in events)
    states = Counter(json.loads(e.entry["Detail"])["state"].rsplit("_", 1)[-1] for e in events)
    assert states == Counter("SUCCEEDED" if c.status == "LAUNCHED" else "FAILED" for c in ended)
    for event in events:
        region = event.entry["Resources"][0].split(":")[3]
        assert region == event.region
        assert json.loads(event.entry["Detail"])["job-id"].startswith("drsjob-")


def test_the_drop_variant_drops_about_30_percent_and_the_same_ones_for_a_seed():
    seeded = _seeded()
    all_events, _, _ = plan_events(seeded, EVENT_VARIANTS["drs-poller-events"], seed=7)
    kept, dropped, _ = plan_events(seeded, EVENT_VARIANTS["drs-poller-events-drop30"], seed=7)
    again, _, _ = plan_events(seeded, EVENT_VARIANTS["drs-poller-events-drop30"], seed=7)
    assert len(kept) + dropped == len(all_events)
    assert 0.2 < dropped / len(all_events) < 0.4
    assert [e.entry for e in kept] == [e.entry for e in again]


def test_batches_hold_at_most_10_messages_copies_counted_in_time_order():
    seeded = _seeded()
    events, _, _ = plan_events(seeded, EVENT_VARIANTS["drs-poller-events-dup"], seed=7)
    assert all(e.copies == 2 for e in events)
    found = batches(events, window=10_000)  # one window: only the limit splits them
    assert [e for b in found for e in b] == events
    assert all(sum(e.copies for e in batch) <= SEND_BATCH_LIMIT for batch in found)
    assert len(found) < len(events)  # they are batched
    spread = batches(events, window=0.0)  # no window: one launch moment a batch
    assert all(len({e.at for e in batch}) == 1 for batch in spread)


def test_each_message_is_the_envelope_the_daemon_reads_with_its_job_and_server():
    seeded = _seeded()
    events, _, _ = plan_events(seeded, EVENT_VARIANTS["drs-poller-events"], seed=7)
    assert len({e.event_id for e in events}) == len(events)
    for event in events[:50]:
        parsed = parse_event(delivered_body(event, at=event.at))
        assert isinstance(parsed, DrsEvent), parsed
        detail = json.loads(event.entry["Detail"])
        assert parsed.job_id == detail["job-id"]
        assert parsed.region == event.region
        server_id = event.entry["Resources"][0].rsplit("/", 1)[1]
        assert parsed.source_servers == (server_id,)
        envelope = json.loads(delivered_body(event, at=event.at))
        assert envelope["id"] == event.event_id
        assert abs(parse_time(envelope["time"]) - event.at) < 1


def test_launches_that_ended_before_the_run_started_are_not_put():
    """A steady-state workload starts its executions in the past (W10k: up to 1,500 s
    before the run): their earlier launch results are counted, not put."""
    seeded = seed_workload(WORKLOADS["W10k"], speed=1, start=START, seed=7)
    every, _, before = plan_events(seeded, EVENT_VARIANTS["drs-poller-events"], seed=7)
    assert before == 0
    later, _, before = plan_events(seeded, EVENT_VARIANTS["drs-poller-events"], seed=7, since=START)
    assert before > 0
    assert len(later) + before == len(every)
    assert all(event.at >= START for event in later)
    assert [e.entry for e in later] == [e.entry for e in every if e.at >= START]
