"""AWS clients: one per service and region, created once and reused."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from botocore.config import Config

if TYPE_CHECKING:
    import aioboto3

    from drs_poller.settings import Settings


def client_config(settings: Settings, *, pool: int) -> Config:
    """Explicit timeouts, and one SDK attempt per call: ``Caller`` owns retries, and it
    honours Retry-After, which botocore's standard mode does not."""
    return Config(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=pool,
        user_agent_extra="drs-poller",
    )


class ClientPool:
    """Lazily opened clients keyed by (service, region), closed together."""

    def __init__(
        self,
        *,
        session: aioboto3.Session,
        settings: Settings,
        endpoints: dict[str, str | None],
    ) -> None:
        self._session = session
        self._settings = settings
        self._endpoints = endpoints
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = asyncio.Lock()

    async def get(self, service: str, region: str) -> Any:
        client = self._clients.get((service, region))
        if client is not None:
            return client
        async with self._lock:
            client = self._clients.get((service, region))
            if client is None:
                pool = max(self._settings.max_concurrent_calls_per_region * 2, 10)
                if service == "dynamodb":
                    pool = max(self._settings.max_concurrent_writes * 2, 10)
                client = await self._stack.enter_async_context(
                    self._session.client(
                        service,
                        region_name=region,
                        endpoint_url=self._endpoints.get(service),
                        config=client_config(self._settings, pool=pool),
                    )
                )
                self._clients[(service, region)] = client
        return client

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._clients.clear()
