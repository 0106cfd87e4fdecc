"""SQS adapter: the DRS events queue (docs/events.md), through the Caller.

Throttling and 5xx are retried by the Caller with the usual backoff; anything else (the
queue gone, access denied) fails at once as :class:`AwsCallError`, and the listener
decides what to do (engine/hints.py).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller

_AWS_HOST: Final = re.compile(
    r"^(?:sqs\.(?P<a>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|(?P<b>[a-z0-9-]+)\.queue\.amazonaws\.com)$"
)
_ACCOUNT: Final = re.compile(r"^[0-9]{12}$")
# DeleteMessageBatch and ReceiveMessage take at most 10 entries.
BATCH_LIMIT: Final = 10


def queue_region(queue_url: str, *, default: str) -> str:
    """The region of an SQS queue URL (``https://sqs.<region>.amazonaws.com/...``);
    ``default`` for a URL that does not say (a local stack)."""
    host = urlsplit(queue_url).hostname or ""
    match = _AWS_HOST.match(host)
    if match is None:
        return default
    return match["a"] or match["b"] or default


def queue_account(queue_url: str) -> str | None:
    """The account that owns the queue (the URL's first path segment), if it is one."""
    parts = [part for part in urlsplit(queue_url).path.split("/") if part]
    return parts[0] if len(parts) == 2 and _ACCOUNT.match(parts[0]) else None


def queue_label(queue_url: str) -> str:
    """The queue's name (the URL's last path segment): the metric label."""
    return urlsplit(queue_url).path.rstrip("/").rsplit("/", 1)[-1][:80] or "queue"


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int  # ApproximateReceiveCount: 1 the first time


def _message(raw: dict[str, Any]) -> Message | None:
    receipt = raw.get("ReceiptHandle")
    if not isinstance(receipt, str):
        return None
    attributes = raw.get("Attributes") or {}
    try:
        count = int(attributes.get("ApproximateReceiveCount") or 1)
    except (TypeError, ValueError):
        count = 1
    body = raw.get("Body")
    return Message(
        message_id=str(raw.get("MessageId") or ""),
        receipt_handle=receipt,
        body=body if isinstance(body, str) else "",
        receive_count=count,
    )


class SqsAdapter:
    def __init__(self, *, clients: ClientPool, caller: Caller, queue_url: str, region: str) -> None:
        self._clients = clients
        self._caller = caller
        self.queue_url = queue_url
        self.region = region

    async def _call(self, operation: str, method: str, **kwargs: Any) -> dict[str, Any]:
        client = await self._clients.get("sqs", self.region)
        result: dict[str, Any] = await self._caller.call(
            service="sqs",
            operation=operation,
            region=self.region,
            send=functools.partial(getattr(client, method), QueueUrl=self.queue_url, **kwargs),
        )
        return result

    async def receive(self, *, wait_seconds: int, max_messages: int = BATCH_LIMIT) -> list[Message]:
        """One ReceiveMessage (a long poll of ``wait_seconds``)."""
        result = await self._call(
            "ReceiveMessage",
            "receive_message",
            WaitTimeSeconds=wait_seconds,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages = (_message(raw) for raw in result.get("Messages") or ())
        return [message for message in messages if message is not None]

    async def delete(self, messages: list[Message]) -> int:
        """DeleteMessageBatch, 10 at a time; returns how many entries failed (they come
        back after their visibility timeout, and are handled again: harmlessly)."""
        failed = 0
        for at in range(0, len(messages), BATCH_LIMIT):
            chunk = messages[at : at + BATCH_LIMIT]
            result = await self._call(
                "DeleteMessageBatch",
                "delete_message_batch",
                Entries=[
                    {"Id": str(n), "ReceiptHandle": message.receipt_handle}
                    for n, message in enumerate(chunk)
                ],
            )
            failed += len(result.get("Failed") or ())
        return failed

    async def release(self, message: Message) -> None:
        """Make ``message`` visible again at once (ChangeMessageVisibility 0)."""
        await self._call(
            "ChangeMessageVisibility",
            "change_message_visibility",
            ReceiptHandle=message.receipt_handle,
            VisibilityTimeout=0,
        )
