"""An embedded local stack: moto server (DynamoDB, EC2, SQS, EventBridge) and the DRS
simulator, on loopback.

moto's in-process ``mock_aws`` does not intercept aiobotocore, so moto runs as a
real HTTP server in a thread, and the daemon talks to it through its real clients.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioboto3

from drs_poller.simulator.accounts import KnownAccounts
from drs_poller.simulator.events import LaunchEventPublisher
from drs_poller.simulator.service import DrsSimulator, Faults, serve_drs_simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drs_poller.clock import Clock

LOOPBACK = "127.0.0.1"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def compressed_durations(speed: float) -> dict[str, float]:
    """The daemon's default durations divided by ``speed``, as settings overrides: what a
    run against DRS timelines compressed by ``speed`` uses (the fleet tests, the
    benchmark)."""
    return {
        "interval_pending": 45 / speed,
        "interval_started": 15 / speed,
        "interval_in_progress": 30 / speed,
        "interval_post_launch": 30 / speed,
        "discovery_interval": 30 / speed,
        "full_discovery_interval": 300 / speed,
        "coalesce_window": 2 / speed,
        "post_launch_grace": 600 / speed,
        "heartbeat_interval": max(1.0, 900 / speed),  # the setting's floor
        "overdue_after": 1800 / speed,
        "max_execution_age": 4 * 3600 / speed,
    }


@dataclass(frozen=True)
class LocalStack:
    moto_url: str
    drs_url: str
    drs: DrsSimulator
    region: str
    events: LaunchEventPublisher | None = None  # with an events endpoint

    def session(self, region: str | None = None) -> aioboto3.Session:
        return aioboto3.Session(**FAKE_CREDENTIALS, region_name=region or self.region)


@asynccontextmanager
async def moto_server() -> AsyncIterator[str]:
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is only needed locally

    # werkzeug logs every request to stderr; the daemon's own logs are what matter here.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        await asyncio.to_thread(warm_up_moto, url)
        yield url
    finally:
        server.stop()


def warm_up_moto(url: str) -> None:
    """Answer one DynamoDB, EC2, SQS, EventBridge and STS request each, so that moto has loaded
    those backends.

    moto loads a service's backend at its first request, under a lock every request
    waits on; EC2's import alone parses megabytes of instance-type data. On a busy
    machine that took tens of seconds, spent inside the first poll's deadline (the
    demo's patience, a test's wait) instead of before it.
    """
    import boto3  # noqa: PLC0415 - a one-off, synchronous, before anything runs

    session = boto3.Session(**FAKE_CREDENTIALS, region_name="us-east-1")
    session.client("dynamodb", endpoint_url=url).list_tables(Limit=1)
    session.client("ec2", endpoint_url=url).describe_instances(MaxResults=5)
    session.client("sqs", endpoint_url=url).list_queues(MaxResults=1)
    session.client("events", endpoint_url=url).list_rules(Limit=1)
    session.client("sts", endpoint_url=url).get_caller_identity()


@asynccontextmanager
async def local_stack(
    *,
    clock: Clock,
    region: str = "us-east-1",
    faults: Faults | None = None,
    page_size: int | None = None,
    moto_url: str | None = None,
    simulator: DrsSimulator | None = None,
    events: bool = False,
) -> AsyncIterator[LocalStack]:
    """Start the DRS simulator (and moto server, unless ``moto_url`` names a running one).
    The simulator tells accounts apart through moto's STS (``resolve_accounts_with``)
    unless it was given a resolver of its own.

    ``simulator`` serves a simulator configured elsewhere (the demo's simulator); ``faults``
    and ``page_size`` then do not apply. ``events``: the simulator publishes a "DRS Source
    Server Launch Result" event to moto's EventBridge (the default bus of ``region``) when a
    launch ends (simulator/events.py); off by default.
    """
    simulator = simulator or DrsSimulator(clock=clock, faults=faults, page_size=page_size)
    async with AsyncExitStack() as scope:
        drs_url = await scope.enter_async_context(
            serve_drs_simulator(simulator, host=LOOPBACK, port=0)
        )
        if moto_url is None:
            moto_url = await scope.enter_async_context(moto_server())
        if type(simulator.accounts) is KnownAccounts:
            # Accounts from the credentials' access key ids, as moto's STS tells them.
            simulator.resolve_accounts_with(moto_url)
        publisher: LaunchEventPublisher | None = None
        if events:
            # Every region's events on the stack region's bus: moto cannot forward them
            # between regions faithfully (simulator/events.py).
            publisher = LaunchEventPublisher(simulator, endpoint_url=moto_url, bus_region=region)
            task = asyncio.create_task(publisher.run(), name="DRS events publisher")
            scope.push_async_callback(_cancel, task)
        yield LocalStack(
            moto_url=moto_url, drs_url=drs_url, drs=simulator, region=region, events=publisher
        )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
