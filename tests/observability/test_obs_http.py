from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import aiohttp
import pytest

from drs_poller.clock import ManualClock
from drs_poller.observability.health import Health
from drs_poller.observability.http import serve_http
from drs_poller.observability.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TIMEOUT = 30.0


class Stack:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.health = Health(self.clock, TIMEOUT)
        self.metrics = Metrics()
        self.url = ""
        self.session: aiohttp.ClientSession


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = Stack()
    async with (
        serve_http(metrics=s.metrics, health=s.health, host="127.0.0.1", port=0) as url,
        aiohttp.ClientSession() as session,
    ):
        s.url = url
        s.session = session
        yield s


async def _get(s: Stack, path: str) -> tuple[int, str, str]:
    async with s.session.get(s.url + path) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_binds_a_real_port(stack: Stack) -> None:
    assert stack.url.startswith("http://127.0.0.1:")
    assert not stack.url.endswith(":0")


async def test_metrics(stack: Stack) -> None:
    stack.metrics.polls.labels(outcome="updated").inc()
    status, content_type, body = await _get(stack, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "drs_poller_polls_total" in body
    assert 'drs_poller_polls_total{outcome="updated"} 1.0' in body


async def test_healthz_flips_when_heartbeat_stops(stack: Stack) -> None:
    status, _, _ = await _get(stack, "/healthz")
    assert status == 200
    async with stack.session.get(stack.url + "/healthz") as resp:
        detail = await resp.json()
    assert detail["status"] == "ok"

    stack.clock.advance(TIMEOUT + 1)
    async with stack.session.get(stack.url + "/healthz") as resp:
        assert resp.status == 503
        detail = await resp.json()
    assert detail["status"] != "ok"
    assert detail["seconds_since_beat"] == TIMEOUT + 1

    stack.health.beat()
    status, _, _ = await _get(stack, "/healthz")
    assert status == 200


async def test_readyz_lifecycle(stack: Stack) -> None:
    status, _, _ = await _get(stack, "/readyz")
    assert status == 503
    stack.health.mark_ready()
    status, _, body = await _get(stack, "/readyz")
    assert status == 200, body
    stack.health.mark_stopping()
    status, _, _ = await _get(stack, "/readyz")
    assert status == 503


async def test_readyz_fails_when_not_alive(stack: Stack) -> None:
    stack.health.mark_ready()
    stack.clock.advance(TIMEOUT + 1)
    status, _, _ = await _get(stack, "/readyz")
    assert status == 503


@pytest.mark.parametrize("path", ["/", "/metric", "/healthz/extra", "/nope"])
async def test_unknown_paths_404(stack: Stack, path: str) -> None:
    status, _, _ = await _get(stack, path)
    assert status == 404


async def test_no_access_log(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiohttp.access"):
        await _get(stack, "/metrics")
    assert not [r for r in caplog.records if r.name == "aiohttp.access"]


async def test_port_is_released_on_exit() -> None:
    metrics, health = Metrics(), Health(ManualClock(), TIMEOUT)
    async with serve_http(metrics=metrics, health=health, host="127.0.0.1", port=0) as url:
        pass
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url + "/healthz")
