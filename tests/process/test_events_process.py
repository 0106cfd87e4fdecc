"""``drs-poller run`` as a real process with ``DRS_POLLER_EVENTS_QUEUE_URL``: the listener
runs as one of the daemon's root tasks; an event through the queue (a long poll against
moto) makes the daemon poll; a queue that does not exist leaves polling and /healthz alone
with one log line; SIGTERM still ends the process with 0, without waiting out a long poll."""

from __future__ import annotations

import json
import signal
import time
import uuid

import aiohttp
from harness import REGION, DaemonProcess, daemon_env, job_id, launched, server_id

from drs_poller.local.items import ServerSpec


def launch_result(sid: str, job: str) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "DRS Source Server Launch Result",
            "source": "aws.drs",
            "time": "2026-12-05T05:00:00Z",
            "region": REGION,
            "resources": [f"arn:aws:drs:{REGION}:123456789012:source-server/{sid}"],
            "detail": {"state": "DRILL_LAUNCH_SUCCEEDED", "job-id": job},
        }
    )


async def test_an_event_makes_the_running_daemon_poll_at_once(live_world, moto_url):
    sid, job = server_id(1), job_id()
    # The job appears in DRS only once the daemon has polled: the first poll finds nothing.
    await live_world.put_spec(live_world.spec("ex-live-ev", [(REGION, [ServerSpec(sid, job)])]))
    async with live_world.stack.session().client("sqs", endpoint_url=moto_url) as sqs:
        url = (await sqs.create_queue(QueueName=f"ev-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        daemon = DaemonProcess(
            daemon_env(
                stack=live_world.stack,
                table=live_world.table,
                events_queue_url=url,
                sqs_endpoint_url=moto_url,
                discovery_interval=0.2,
                # Polling alone would take a minute: only the event can finish it in time.
                interval_pending=60,
                interval_started=60,
                interval_in_progress=60,
                log_level="DEBUG",
            )
        )
        await daemon.start()
        try:
            await daemon.wait_for("discovered executions")
            for _ in range(300):  # until the first poll has written that DRS had no job
                item = await live_world.get("ex-live-ev")
                if item["Waves"][0]["Servers"][0].get("JobNotFoundPolls"):
                    break
                await live_world.sleep(0.05)
            else:
                raise AssertionError("the daemon never polled")
            live_world.job([sid], [(0, "COMPLETED", {sid: launched()})], job=job)
            sent = time.monotonic()
            await sqs.send_message(QueueUrl=url, MessageBody=launch_result(sid, job))
            await daemon.wait_for("execution finalized", within=15)
            took = time.monotonic() - sent
            stopping = time.monotonic()
            code = await daemon.stop(signal.SIGTERM)
            stop_took = time.monotonic() - stopping
        finally:
            await daemon.kill()
            await sqs.delete_queue(QueueUrl=url)
    assert code == 0
    assert took < 10  # the polling interval is 60 s
    assert stop_took < 15  # the 20 s long poll in progress was cancelled
    (event,) = daemon.events("drs event")
    assert event["hinted"] == 1


async def test_a_missing_queue_leaves_polling_and_health_alone(live_world, moto_url):
    sid = server_id(2)
    job = live_world.job([sid], [(0, "STARTED", {}), (1, "COMPLETED", {sid: launched()})])
    await live_world.put_spec(live_world.spec("ex-no-q", [(REGION, [ServerSpec(sid, job)])]))
    daemon = DaemonProcess(
        daemon_env(
            stack=live_world.stack,
            table=live_world.table,
            events_queue_url=f"{moto_url}/123456789012/no-such-queue-{uuid.uuid4().hex[:6]}",
            sqs_endpoint_url=moto_url,
            discovery_interval=0.2,
            interval_pending=0.2,
            interval_started=0.2,
            interval_in_progress=0.2,
        )
    )
    await daemon.start()
    try:
        started = await daemon.wait_for("drs-poller started")
        await daemon.wait_for("execution finalized", within=30)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{started['metrics_url']}/healthz") as health,
        ):
            assert health.status == 200
        await live_world.sleep(2.0)  # several retries meanwhile
        code = await daemon.stop(signal.SIGTERM)
    finally:
        await daemon.kill()
    assert code == 0
    unreachable = [
        line
        for line in daemon.lines
        if str(line.get("event", "")).startswith("events queue unreachable")
    ]
    assert len(unreachable) == 1
    assert unreachable[0]["reason"] == "queue_missing"
