"""S3 adapter: puts an object (the drill reports), through the Caller.

Throttling (``SlowDown``, 503) and 5xx are retried by the Caller with the usual backoff;
anything else (a missing bucket, access denied) fails at once as :class:`AwsCallError`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller


class S3Adapter:
    def __init__(self, *, clients: ClientPool, caller: Caller, region: str) -> None:
        self._clients = clients
        self._caller = caller
        self._region = region

    async def put_object(self, *, bucket: str, key: str, body: bytes, content_type: str) -> None:
        client = await self._clients.get("s3", self._region)
        await self._caller.call(
            service="s3",
            operation="PutObject",
            region=self._region,
            send=functools.partial(
                client.put_object, Bucket=bucket, Key=key, Body=body, ContentType=content_type
            ),
        )
