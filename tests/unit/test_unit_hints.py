"""EngineState.hint and the route index (DRS events in, docs/events.md), without I/O."""

from __future__ import annotations

import json
import time
from copy import deepcopy

import aioboto3

from drs_poller.clock import SystemClock
from drs_poller.core.drs_events import DrsEvent, parse_event
from drs_poller.engine.components import build_components
from drs_poller.engine.state import EngineState
from drs_poller.engine.tracking import RouteIndex, queue_name
from drs_poller.local.items import ExecutionSpec, ServerSpec, WaveSpec, execution_item
from drs_poller.observability.health import Health
from drs_poller.observability.metrics import Metrics
from drs_poller.settings import load_settings, policy_from

S1, S2, S3 = "s-00000000000000001", "s-00000000000000002", "s-00000000000000003"
JOB1, JOB2 = "drsjob-00000000000000001", "drsjob-00000000000000002"


def item(execution_id: str, *waves: tuple[str, list[ServerSpec]]) -> dict:
    return execution_item(
        ExecutionSpec(
            execution_id=execution_id,
            waves=tuple(
                WaveSpec(name=f"w{n}", region=region, servers=tuple(servers))
                for n, (region, servers) in enumerate(waves)
            ),
        )
    )


def event(*servers: str, job: str | None = None, region: str = "us-east-1") -> DrsEvent:
    parsed = parse_event(
        json.dumps(
            {
                "source": "aws.drs",
                "detail-type": "DRS Source Server Launch Result",
                "region": region,
                "time": "2027-01-15T08:00:00Z",
                "resources": [
                    f"arn:aws:drs:{region}:123456789012:source-server/{s}" for s in servers
                ],
                "detail": {"job-id": job} if job else {},
            }
        )
    )
    assert isinstance(parsed, DrsEvent)
    return parsed


def state() -> EngineState:
    return EngineState(
        metrics=Metrics(),
        policy=policy_from(load_settings(table_name="executions")),
        tombstone_seconds=90,
    )


def test_an_event_finds_its_executions_by_server_job_and_region():
    s = state()
    s.track(("a", "p"), item("a", ("us-east-1", [ServerSpec(S1, JOB1)])), now=0)
    s.track(("b", "p"), item("b", ("us-west-2", [ServerSpec(S2, JOB2)])), now=0)
    a, b = queue_name("a", "p"), queue_name("b", "p")
    assert s.concerned(event(S1)) == ([a], [])
    assert s.concerned(event(job=JOB1)) == ([a], [])
    assert s.concerned(event(S2)) == ([], [])  # S2 is in us-west-2
    assert s.concerned(event(S2, region="us-west-2")) == ([b], [])
    assert s.concerned(event(S3)) == ([], [])
    # Forwarded from us-west-2 by a bus that re-puts it in its own region: the ARN says.
    forwarded = parse_event(
        json.dumps(
            {
                "source": "aws.drs",
                "detail-type": "DRS Source Server Launch Result",
                "region": "us-east-1",
                "resources": [f"arn:aws:drs:us-west-2:123456789012:source-server/{S2}"],
                "detail": {"job-id": JOB2},
            }
        )
    )
    assert isinstance(forwarded, DrsEvent)
    assert s.concerned(forwarded) == ([b], [])


def test_hint_pulls_forward_never_back():
    s = state()
    s.track(("a", "p"), item("a", ("us-east-1", [ServerSpec(S1, JOB1)])), now=0)
    name = queue_name("a", "p")
    s.queue.schedule(name, 100.0)
    s.wakeup.clear()
    assert s.hint(name, now=50.0, event_time=1.0)
    assert s.queue.due_at(name) == 50.0
    assert s.wakeup.is_set()
    assert not s.hint(name, now=60.0)  # already due: nothing moves
    assert s.queue.due_at(name) == 50.0
    assert s.tracked[name].event_time == 1.0
    assert not s.hint("unknown", now=60.0)


def test_a_hint_during_a_poll_makes_the_next_one_due_at_once():
    s = state()
    s.track(("a", "p"), item("a", ("us-east-1", [ServerSpec(S1, JOB1)])), now=0)
    name = queue_name("a", "p")
    s.queue.pop_due(0.0)
    s.tracked[name].in_flight = True
    assert s.hint(name, now=5.0)
    assert s.tracked[name].rehint
    assert not s.hint(name, now=6.0)  # once is enough
    assert name not in s.queue  # the poller reschedules it when the poll ends


def test_the_index_follows_the_item_and_forgets_with_it():
    s = state()
    first = item("a", ("us-east-1", [ServerSpec(S1, JOB1)]), ("us-east-1", [ServerSpec(S2)]))
    s.track(("a", "p"), first, now=0)
    name = queue_name("a", "p")
    assert s.concerned(event(job=JOB2)) == ([], [])
    later = deepcopy(first)  # the initiator started wave 2: a new job id
    later["Waves"][1]["Servers"][0]["RecoveryJobId"] = JOB2
    later["PollerRevision"] = 1
    assert s.tracked[name].offer(later)
    assert s.concerned(event(job=JOB2)) == ([name], [])
    s.finish(name, now=1.0)
    assert s.concerned(event(S1)) == ([], [])
    assert len(s.routes) == 0


def test_another_replicas_executions_are_found_too():
    s = state()
    s.others = {queue_name("peer", "p"): item("peer", ("us-east-1", [ServerSpec(S3, JOB2)]))}
    assert s.concerned(event(S3)) == ([], [queue_name("peer", "p")])
    s.others = {}
    assert s.concerned(event(S3)) == ([], [])


def test_ten_thousand_executions_route_without_a_scan():
    s = state()
    for n in range(10_000):
        servers = [ServerSpec(f"s-{n:07d}{k:010d}", f"drsjob-{n:017d}") for k in range(10)]
        s.track((f"ex-{n}", "p"), item(f"ex-{n}", ("us-east-1", servers)), now=0)
    probe = event(f"s-{4242:07d}{3:010d}")
    started = time.perf_counter()
    for _ in range(1000):
        ours, _ = s.concerned(probe)
    elapsed = time.perf_counter() - started
    assert ours == [queue_name("ex-4242", "p")]
    assert elapsed < 1.0  # 1000 lookups; a scan of 100,000 servers each would take minutes


def test_the_route_index_holds_one_name_or_several_per_id_and_forgets_them():
    index = RouteIndex()
    a = frozenset({("server", "s-1"), ("job", "drsjob-1")})
    b = frozenset({("server", "s-1"), ("server", "s-2")})  # s-1 named by two executions
    index.add("ex-a", a)
    index.add("ex-a", a)  # again: no change
    index.add("ex-b", b)
    assert index.names(("s-1",)) == {"ex-a", "ex-b"}
    assert index.names(("drsjob-1", "s-2", "s-unknown")) == {"ex-a", "ex-b"}
    assert len(index) == 3
    index.remove("ex-b", b)
    assert index.names(("s-1", "s-2")) == {"ex-a"}
    index.remove("ex-b", b)  # gone already: nothing to do
    index.remove("ex-a", a)
    assert index.names(("s-1", "drsjob-1")) == set()
    assert len(index) == 0


def test_without_events_in_no_routes_are_kept_and_tracking_works_the_same():
    s = EngineState(
        metrics=Metrics(),
        policy=policy_from(load_settings(table_name="executions")),
        tombstone_seconds=90,
        route_events=False,
    )
    first = item("a", ("us-east-1", [ServerSpec(S1, JOB1)]), ("us-east-1", [ServerSpec(S2)]))
    s.track(("a", "p"), first, now=0)
    name = queue_name("a", "p")
    later = deepcopy(first)
    later["Waves"][1]["Servers"][0]["RecoveryJobId"] = JOB2
    later["PollerRevision"] = 1
    assert s.tracked[name].offer(later)
    assert (len(s.routes), s.tracked[name].routes, s.tracked[name].index) == (0, frozenset(), None)
    assert name in s.queue
    s.finish(name, now=1.0)
    assert name not in s.tracked


async def test_the_daemon_keeps_routes_only_when_events_come_in():
    kept = {}
    for queue in (None, "https://sqs.us-east-1.amazonaws.com/123456789012/drs-events"):
        settings = load_settings(table_name="executions", events_queue_url=queue)
        clock = SystemClock()
        components = build_components(
            settings,
            session=aioboto3.Session(),
            region="us-east-1",
            clock=clock,
            metrics=Metrics(),
            health=Health(clock, liveness_timeout=60),
        )
        kept[queue is not None] = components.state.route_events
        await components.aclose()
    assert kept == {False: False, True: True}
