"""/healthz and /readyz tell the truth while the daemon is really running."""

from __future__ import annotations

import asyncio

import aiohttp
from harness import REGION, ServerSnapshot, server_id

from drs_poller.local.items import ServerSpec


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        return response.status


async def test_health_stays_alive_while_slow_batches_hold_every_slot(live_world):
    world = live_world
    first = world.job(
        [server_id(1)], [(0, "STARTED", {server_id(1): ServerSnapshot("IN_PROGRESS")})]
    )
    await world.put_spec(world.spec("first", [(REGION, [ServerSpec(server_id(1), first)])]))
    world.drs.faults.latency = 3.0  # each DescribeJobs takes 3 s
    daemon = await world.daemon(
        liveness_timeout=1.0,
        max_inflight_batches=1,
        discovery_interval=0.2,
        read_timeout=30,
        interval_started=0.1,
        interval_in_progress=0.1,
    )
    runner = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        async with aiohttp.ClientSession() as http:
            while daemon.metrics_url is None:
                await asyncio.sleep(0.02)
            assert await _status(http, f"{daemon.metrics_url}/readyz") in (200, 503)
            while not world.drs.calls:  # the first batch is in flight, holding the only slot
                await asyncio.sleep(0.02)
            second = world.job([server_id(2)], [(0, "PENDING", {})])
            await world.put_spec(
                world.spec("second", [(REGION, [ServerSpec(server_id(2), second)])])
            )
            codes = []
            for _ in range(12):  # 2.4 s: well past the 1 s liveness timeout
                codes.append(await _status(http, f"{daemon.metrics_url}/healthz"))
                await asyncio.sleep(0.2)
            assert set(codes) == {200}, codes
            assert await _status(http, f"{daemon.metrics_url}/readyz") == 200
            daemon.request_stop("test over")
            assert await runner == 0
    finally:
        if not runner.done():
            runner.cancel()
