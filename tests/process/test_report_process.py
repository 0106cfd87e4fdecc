"""``drs-poller run`` as a real process with ``DRS_POLLER_REPORT_BUCKET``: the sender of
reports runs as one of the daemon's root tasks, a finished drill's report lands in moto's
S3, and SIGTERM still ends the process with 0."""

from __future__ import annotations

import json
import signal
import uuid

from harness import REGION, DaemonProcess, daemon_env, launched, server_id

from drs_poller.local.items import ServerSpec


async def test_the_running_daemon_puts_the_report_and_stops_cleanly(live_world, moto_url):
    bucket = f"reports-{uuid.uuid4().hex[:8]}"
    sid = server_id(1)
    job = live_world.job([sid], [(0, "STARTED", {}), (1, "COMPLETED", {sid: launched()})])
    await live_world.put_spec(live_world.spec("ex-live", [(REGION, [ServerSpec(sid, job)])]))
    async with live_world.stack.session().client("s3", endpoint_url=moto_url) as s3:
        await s3.create_bucket(Bucket=bucket)
        daemon = DaemonProcess(
            daemon_env(
                stack=live_world.stack,
                table=live_world.table,
                report_bucket=bucket,
                report_prefix="drills/",
                s3_endpoint_url=moto_url,
                discovery_interval=0.2,
                interval_pending=0.2,
                interval_started=0.2,
                interval_in_progress=0.2,
            )
        )
        await daemon.start()
        try:
            await daemon.wait_for("execution finalized")
            await daemon.wait_for("report put")
            while len(daemon.events("report put")) < 2:
                await live_world.sleep(0.05)
            code = await daemon.stop(signal.SIGTERM)
        finally:
            await daemon.kill()
        found = await s3.get_object(Bucket=bucket, Key="drills/ex-live.json")
        document = json.loads(await found["Body"].read())
    assert code == 0
    assert sorted(line["key"] for line in daemon.events("report put")) == [
        "drills/ex-live.html",
        "drills/ex-live.json",
    ]
    assert document["execution"]["status"] == "COMPLETED"
    assert document["waves"][0]["servers"][0]["sourceServerId"] == sid
    assert daemon.events("drs-poller stopped")[0]["exit_code"] == 0
