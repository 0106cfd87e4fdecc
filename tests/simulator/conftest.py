from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aioboto3
import aiohttp
import botocore.config
import pytest

from drs_poller.clock import ManualClock
from drs_poller.simulator.service import DrsSimulator, serve_drs_simulator
from drs_poller.simulator.timelines import (
    JobScript,
    ServerScript,
    Snapshot,
    new_instance_id,
    new_job_id,
    new_source_server_id,
    standard_timeline,
)

START = 1_800_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=START)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def simulator(clock: ManualClock) -> DrsSimulator:
    return DrsSimulator(clock=clock)


@pytest.fixture
async def endpoint(simulator: DrsSimulator) -> AsyncIterator[str]:
    async with serve_drs_simulator(simulator) as url:
        yield url


JobFactory = Callable[..., JobScript]


@pytest.fixture
def job_factory(rng: random.Random) -> JobFactory:
    """``job_factory(region=..., servers=n, timeline=lambda ids: ...)``: a job with fresh ids."""
    return lambda **options: _make_job(rng, **options)


def _make_job(
    rng: random.Random,
    *,
    region: str = "us-east-1",
    servers: int = 1,
    is_drill: bool = True,
    created_at: float = START,
    timeline: Callable[[list[str]], tuple[Snapshot, ...]] | None = None,
) -> JobScript:
    server_scripts = tuple(
        ServerScript(
            source_server_id=new_source_server_id(rng),
            recovery_instance_id=new_instance_id(rng),
            ec2_instance_id=new_instance_id(rng),
        )
        for _ in range(servers)
    )
    ids = [server.source_server_id for server in server_scripts]
    return JobScript(
        job_id=new_job_id(rng),
        region=region,
        is_drill=is_drill,
        created_at=created_at,
        servers=server_scripts,
        timeline=(timeline or standard_timeline)(ids),
    )


def auth_header(region: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential=testing/20261125/{region}/drs/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0"
    )


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body


RawPost = Callable[..., Any]


@pytest.fixture
async def raw_post(endpoint: str) -> AsyncIterator[RawPost]:
    """POST straight to the simulator, bypassing botocore (and its client-side validation)."""
    async with aiohttp.ClientSession() as session:

        async def post(
            operation: str,
            body: Any = None,
            *,
            region: str | None = "us-east-1",
            data: bytes | None = None,
            method: str = "POST",
        ) -> RawResponse:
            headers = {"Content-Type": "application/json"}
            if region is not None:
                headers["Authorization"] = auth_header(region)
            payload = data if data is not None else json.dumps(body or {}).encode()
            async with session.request(
                method, f"{endpoint}/{operation}", data=payload, headers=headers
            ) as response:
                text = await response.text()
                return RawResponse(
                    response.status,
                    {key.lower(): value for key, value in response.headers.items()},
                    json.loads(text) if text else None,
                )

        yield post


DrsClientFactory = Callable[[str], AbstractAsyncContextManager[Any]]


@pytest.fixture
def drs_client(endpoint: str) -> DrsClientFactory:
    """``async with drs_client(region) as client``: a real aiobotocore client, no retries."""

    def open_client(region: str = "us-east-1") -> AbstractAsyncContextManager[Any]:
        session = aioboto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        return session.client(
            "drs",
            endpoint_url=endpoint,
            region_name=region,
            config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )

    return open_client
