"""The HTTP side of observability: /metrics, /healthz and /readyz."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from aiohttp import web

from drs_poller.observability.health import Health
from drs_poller.observability.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

_METRICS_KEY = web.AppKey("metrics", Metrics)
_HEALTH_KEY = web.AppKey("health", Health)

# Probe answers must reflect the moment they were asked; a cached 200 hides a hang.
_NO_STORE = {"Cache-Control": "no-store"}


async def _get_metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[_METRICS_KEY].render()
    # content_type carries parameters (version, charset), which aiohttp's content_type=
    # argument rejects; pass it as a raw header instead.
    return web.Response(body=body, headers={"Content-Type": content_type, **_NO_STORE})


async def _get_healthz(request: web.Request) -> web.Response:
    health = request.app[_HEALTH_KEY]
    ok = health.alive()
    return web.json_response(
        {"status": "ok" if ok else "unhealthy", **health.describe()},
        status=200 if ok else 503,
        headers=_NO_STORE,
    )


async def _get_readyz(request: web.Request) -> web.Response:
    health = request.app[_HEALTH_KEY]
    ok = health.ready()
    return web.json_response(
        {"status": "ok" if ok else "not ready", **health.describe()},
        status=200 if ok else 503,
        headers=_NO_STORE,
    )


def build_app(*, metrics: Metrics, health: Health) -> web.Application:
    app = web.Application()
    app[_METRICS_KEY] = metrics
    app[_HEALTH_KEY] = health
    app.router.add_get("/metrics", _get_metrics)
    app.router.add_get("/healthz", _get_healthz)
    app.router.add_get("/readyz", _get_readyz)
    return app


def _base_url(address: object) -> str:
    # A bound socket's address is (host, port) for IPv4 and (host, port, flow, scope)
    # for IPv6; the host is bracketed in a URL when it is IPv6.
    if not isinstance(address, tuple) or len(address) < 2:
        raise RuntimeError(f"unexpected bound address {address!r}")
    host, port = str(address[0]), int(address[1])
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@asynccontextmanager
async def serve_http(
    *, metrics: Metrics, health: Health, host: str, port: int
) -> AsyncIterator[str]:
    """Serve the observability endpoints until the block exits; yields the bound base URL.

    ``port=0`` binds an ephemeral port; the URL yielded carries the real one.
    """
    # access_log=None: aiohttp's access log would put non-JSON lines on stdout, and
    # scrapes every few seconds are not worth logging anyway.
    runner = web.AppRunner(build_app(metrics=metrics, health=health), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        addresses = runner.addresses
        if not addresses:
            raise RuntimeError(f"HTTP server bound no socket on {host}:{port}")
        yield _base_url(addresses[0])
    finally:
        await runner.cleanup()
