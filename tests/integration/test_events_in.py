"""DRS events in through SQS (docs/events.md): real aiobotocore clients against moto
server's SQS (and EventBridge), the DRS simulator, on the manual clock. The listener's turns
are driven by the test (one ReceiveMessage each, no long poll); the dispatcher is the real
loop. An event pulls polls forward; polling stays the truth."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from typing import Any

import structlog
from harness import REGION, job_id, launched, metric, server_id

from drs_poller.core.drs_events import LAUNCH_RESULT
from drs_poller.engine.tracking import queue_name
from drs_poller.local.items import ServerSpec
from drs_poller.simulator.events import LaunchEventPublisher
from drs_poller.simulator.timelines import ServerSnapshot

ACCOUNT = "123456789012"  # moto's


def drs_event(
    *,
    servers: tuple[str, ...] = (),
    job: str | None = None,
    region: str = REGION,
    account: str | None = ACCOUNT,
    detail_type: str = LAUNCH_RESULT,
    source: str = "aws.drs",
    time: str = "2027-01-15T08:00:00Z",
) -> str:
    """An EventBridge envelope, as a rule with an SQS target puts it in the body."""
    envelope: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "time": time,
        "region": region,
        "resources": [f"arn:aws:drs:{region}:{ACCOUNT}:source-server/{s}" for s in servers],
        "detail": {"state": "DRILL_LAUNCH_SUCCEEDED", **({"job-id": job} if job else {})},
    }
    if account is not None:
        envelope["account"] = account
    return json.dumps(envelope)


@asynccontextmanager
async def events_queue(world, moto_url):
    async with world.stack.session().client("sqs", endpoint_url=moto_url) as sqs:
        url = (await sqs.create_queue(QueueName=f"drs-events-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        try:
            yield sqs, url
        finally:
            await sqs.delete_queue(QueueUrl=url)


async def send(sqs, url: str, *bodies: str) -> None:
    for at in range(0, len(bodies), 10):
        entries = [
            {"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies[at : at + 10])
        ]
        result = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not result.get("Failed")


async def queued(sqs, url: str) -> int:
    attributes = await sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(value) for value in attributes["Attributes"].values())


async def listening_daemon(world, url: str, moto_url: str, **settings: Any):
    daemon = await world.daemon(events_queue_url=url, sqs_endpoint_url=moto_url, **settings)
    listener = daemon.built.listener
    assert listener is not None
    listener.wait_seconds = 0  # the test drives each turn: no long poll
    return daemon, listener


async def test_an_event_pulls_the_poll_forward_and_is_deleted(world, moto_url):
    s1, job = server_id(1), job_id()
    world.job([s1], [(0, "PENDING", {}), (30, "STARTED", {s1: launched()})], job=job)
    await world.put_spec(world.spec("ex-event", [(REGION, [ServerSpec(s1, job)])]))
    async with events_queue(world, moto_url) as (sqs, url):
        daemon, listener = await listening_daemon(world, url, moto_url)
        state = daemon.state
        name = queue_name("ex-event", "plan-local")
        assert await world.step(daemon) == 1  # discovered, polled at once: PENDING, +45 s
        world.clock.advance(40)  # launched now; the next poll is 5 s away
        due = state.queue.due_at(name)
        assert due is not None
        assert due > world.clock.monotonic()
        world.drs.reset_calls()

        await send(sqs, url, drs_event(servers=(s1,), job=job))
        assert await listener.turn()
        assert state.queue.due_at(name) == world.clock.monotonic()
        assert await world.dispatch(daemon) == 1
        assert world.drs.count("DescribeJobs") == 1
        item = await world.get("ex-event")
        assert item["Waves"][0]["Servers"][0]["Status"] == "LAUNCHED"

        assert await queued(sqs, url) == 0
        assert metric(daemon, "drs_poller_events_hinted_total") == 1
        labels = {"detail_type": LAUNCH_RESULT}
        assert metric(daemon, "drs_poller_events_received_total", labels) == 1
        assert metric(daemon, "drs_poller_event_to_poll_seconds_count") == 1
        assert metric(daemon, "drs_poller_events_queue_reachable", {"queue": url.split("/")[-1]})

        assert item["Status"] == "COMPLETED"  # a drill whose one server launched

        # The same event again (EventBridge delivers at least once): the execution is no
        # longer tracked, so the copy concerns nothing; deleted, counted, harmless.
        await send(sqs, url, drs_event(job=job))
        assert await listener.turn()
        assert await world.dispatch(daemon) == 0
        assert await queued(sqs, url) == 0
        labels = {"reason": "no_execution"}
        assert metric(daemon, "drs_poller_events_discarded_total", labels) == 1
        assert (await world.get("ex-event"))["Status"] == "COMPLETED"


async def test_a_burst_of_events_costs_one_describe_jobs_per_region(world, moto_url):
    count = 24
    servers = [server_id(100 + n) for n in range(count)]
    jobs = [world.job([s], [(0, "PENDING", {})]) for s in servers]
    for n, (s, job) in enumerate(zip(servers, jobs, strict=True)):
        await world.put_spec(world.spec(f"ex-burst-{n}", [(REGION, [ServerSpec(s, job)])]))
    async with events_queue(world, moto_url) as (sqs, url):
        daemon, listener = await listening_daemon(world, url, moto_url)
        assert await world.step(daemon) == count
        world.clock.advance(10)
        world.drs.reset_calls()

        await send(sqs, url, *(drs_event(servers=(s,)) for s in servers))
        while await queued(sqs, url):
            assert await listener.turn()
        assert metric(daemon, "drs_poller_events_hinted_total") == count
        assert await world.dispatch(daemon) == count
        assert world.drs.count("DescribeJobs") == 1
        assert metric(daemon, "drs_poller_event_to_poll_seconds_count") == count


async def test_malformed_unknown_and_irrelevant_events_are_deleted_and_counted(world, moto_url):
    s1, job = server_id(1), job_id()
    world.job([s1], [(0, "PENDING", {})], job=job)
    await world.put_spec(world.spec("ex-noise", [(REGION, [ServerSpec(s1, job)])]))
    async with events_queue(world, moto_url) as (sqs, url):
        daemon, listener = await listening_daemon(world, url, moto_url)
        assert await world.step(daemon) == 1
        world.drs.reset_calls()
        bodies = {
            "malformed_json": "{not json",
            "not_an_event": json.dumps({"Type": "Notification", "Message": "{}"}),
            "unknown_source": drs_event(servers=(s1,), source="aws.mgn"),
            "unknown_detail_type": drs_event(servers=(s1,), detail_type="DRS New Thing"),
            "other_account": drs_event(servers=(s1,), account="999999999999"),
            "no_resources": drs_event(),
            "no_execution": drs_event(servers=(server_id(999),)),
        }
        # Same server id, another region: not this execution's server.
        elsewhere = drs_event(servers=(s1,), region="eu-west-1")
        await send(sqs, url, *bodies.values(), elsewhere)
        assert await listener.turn()

        assert await queued(sqs, url) == 0
        for reason in bodies:
            expected = 2 if reason == "no_execution" else 1
            assert metric(daemon, "drs_poller_events_discarded_total", {"reason": reason}) == (
                expected
            ), reason
        assert metric(daemon, "drs_poller_events_hinted_total") == 0
        labels = {"detail_type": "unrecognised"}
        assert metric(daemon, "drs_poller_events_received_total", labels) == 4
        assert await world.dispatch(daemon) == 0
        assert world.drs.count("DescribeJobs") == 0


async def test_another_replicas_event_is_released_then_deleted_after_the_bound(world, moto_url):
    s1, job = server_id(7), job_id()
    async with events_queue(world, moto_url) as (sqs, url):
        daemon, listener = await listening_daemon(world, url, moto_url)
        state = daemon.state
        spec = world.spec("ex-peer", [(REGION, [ServerSpec(s1, job)])])
        item = await world.put_spec(spec)
        # Discovery set it aside for its owner, as with a lease table and a peer.
        state.others = {queue_name("ex-peer", "plan-local"): item}

        await send(sqs, url, drs_event(servers=(s1,)))
        for receive in range(1, listener.release_bound):
            assert await listener.turn()
            assert metric(daemon, "drs_poller_events_released_total") == receive
            assert await queued(sqs, url) == 1  # visible again at once, for the owner
        assert await listener.turn()  # received RELEASE_BOUND times: deleted
        assert await queued(sqs, url) == 0
        labels = {"reason": "owned_elsewhere"}
        assert metric(daemon, "drs_poller_events_discarded_total", labels) == 1
        assert metric(daemon, "drs_poller_events_hinted_total") == 0


async def test_a_deleted_queue_leaves_polling_alone_with_a_metric_and_one_log_line(world, moto_url):
    s1, job = server_id(1), job_id()
    world.job([s1], [(0, "PENDING", {})], job=job)
    await world.put_spec(world.spec("ex-gone", [(REGION, [ServerSpec(s1, job)])]))
    async with events_queue(world, moto_url) as (sqs, url):
        daemon, listener = await listening_daemon(world, url, moto_url)
        assert await world.step(daemon) == 1
        assert await listener.turn()
        await sqs.delete_queue(QueueUrl=url)
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                assert not await listener.turn()
                listener.rng.seed(0)
        unreachable = [
            line for line in logs if line["event"].startswith("events queue unreachable")
        ]
        assert len(unreachable) == 1
        assert unreachable[0]["reason"] == "queue_missing"
        labels = {"reason": "queue_missing"}
        assert metric(daemon, "drs_poller_events_queue_errors_total", labels) == 3
        queue = {"queue": url.split("/")[-1]}
        assert metric(daemon, "drs_poller_events_queue_reachable", queue) == 0
        assert 2.0 <= listener.retry_delay() <= 4.0  # doubling per failed turn
        listener.failures = 50
        assert listener.retry_delay() <= 180.0  # capped

        # Polling carries on as if there were no queue.
        assert await world.step(daemon, 45) == 1
        await sqs.create_queue(QueueName=url.split("/")[-1])  # for the fixture's clean-up


async def test_the_simulators_events_reach_the_daemon_through_an_eventbridge_rule(world, moto_url):
    """moto's EventBridge delivers a rule's matches to an SQS target; the simulator's
    launch results, put on the default bus, parse and pull the poll forward."""
    s1, s2, job = server_id(11), server_id(12), job_id()
    world.job(
        [s1, s2],
        [
            (0, "PENDING", {}),
            (30, "STARTED", {s1: launched(), s2: ServerSnapshot("FAILED")}),
        ],
        job=job,
    )
    await world.put_spec(
        world.spec("ex-bridge", [(REGION, [ServerSpec(s1, job), ServerSpec(s2, job)])])
    )
    publisher = LaunchEventPublisher(world.drs, endpoint_url=moto_url)
    session = world.stack.session()
    async with (
        events_queue(world, moto_url) as (sqs, url),
        session.client("events", endpoint_url=moto_url) as events,
    ):
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        rule = f"drs-{uuid.uuid4().hex[:8]}"
        await events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.drs"]}))
        await events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])
        try:
            daemon, listener = await listening_daemon(world, url, moto_url)
            assert await world.step(daemon) == 1
            assert await publisher.publish_due() == 0  # nothing ended yet
            world.clock.advance(31)
            world.drs.reset_calls()
            assert await publisher.publish_due() == 2
            while await queued(sqs, url):
                assert await listener.turn()
        finally:
            await publisher.aclose()
            await events.remove_targets(Rule=rule, Ids=["queue"])
            await events.delete_rule(Name=rule)
        labels = {"detail_type": LAUNCH_RESULT}
        assert metric(daemon, "drs_poller_events_received_total", labels) == 2
        assert metric(daemon, "drs_poller_events_hinted_total") == 1  # one execution
        assert await world.dispatch(daemon) == 1
        assert world.drs.count("DescribeJobs") == 1
        assert (await world.get("ex-bridge"))["Status"] == "PARTIAL"


async def test_a_lost_event_costs_latency_only_and_a_duplicate_one_poll(world, moto_url):
    """Of two drills launched at the same moment, one's event comes twice (EventBridge
    delivers at least once) and the other's never (best effort). The first is polled once,
    at once; the second at its interval. Both end as polling alone would end them."""
    twice, lost = server_id(201), server_id(202)
    jobs = {
        s: world.job([s], [(0, "PENDING", {}), (30, "STARTED", {s: launched()})])
        for s in (twice, lost)
    }
    for s, name in ((twice, "ex-twice"), (lost, "ex-lost")):
        await world.put_spec(world.spec(name, [(REGION, [ServerSpec(s, jobs[s])])]))
    async with events_queue(world, moto_url) as (sqs, url):
        daemon, listener = await listening_daemon(world, url, moto_url)
        assert await world.step(daemon) == 2  # both PENDING: next polls in 45 s
        world.clock.advance(40)  # both launched 10 s ago
        world.drs.reset_calls()

        event = drs_event(servers=(twice,), job=jobs[twice])
        await send(sqs, url, event, event)
        while await queued(sqs, url):
            assert await listener.turn()
        assert await world.dispatch(daemon) == 1  # the copy moved nothing more
        assert world.drs.count("DescribeJobs") == 1
        assert metric(daemon, "drs_poller_events_hinted_total") == 1
        assert (await world.get("ex-twice"))["Status"] == "COMPLETED"
        assert (await world.get("ex-lost"))["Status"] == "POLLING"  # no event: not yet

        assert await world.step(daemon, 5) == 1  # its interval is up: polling finds it
        assert (await world.get("ex-lost"))["Status"] == "COMPLETED"


async def test_events_half_a_window_apart_are_polled_together(world, moto_url):
    """An event pulls its execution forward to half COALESCE_WINDOW after it arrives:
    events that arrive within that half window of each other are polled in one batch,
    one DescribeJobs, not one each."""
    servers = [server_id(200 + n) for n in range(3)]
    for n, s in enumerate(servers):
        job = world.job([s], [(0, "PENDING", {})])
        await world.put_spec(world.spec(f"ex-half-{n}", [(REGION, [ServerSpec(s, job)])]))
    async with events_queue(world, moto_url) as (sqs, url):
        daemon, listener = await listening_daemon(world, url, moto_url, coalesce_window=2.0)
        assert listener.hint_delay == 1.0
        assert await world.step(daemon) == 3  # discovered and polled: PENDING, next in 45 s
        world.clock.advance(10)
        world.drs.reset_calls()
        names = [queue_name(f"ex-half-{n}", "plan-local") for n in range(3)]

        await send(sqs, url, drs_event(servers=(servers[0],)))
        assert await listener.turn()
        arrived = world.clock.monotonic()
        assert daemon.state.queue.due_at(names[0]) == arrived + 1.0
        assert await world.dispatch(daemon) == 0  # not yet: the other events may come
        world.clock.advance(0.5)
        await send(sqs, url, drs_event(servers=(servers[1],)), drs_event(servers=(servers[2],)))
        assert await listener.turn()
        assert daemon.state.queue.due_at(names[1]) == arrived + 1.5
        world.clock.advance(0.5)  # the first event's half window has passed
        assert await world.dispatch(daemon) == 3  # all three, coalesced
        assert world.drs.count("DescribeJobs") == 1
