"""EventBridge and DynamoDB sides of the finalization events (docs/events.md).

:class:`EventsAdapter` sends one PutEvents call (up to 10 entries) through the Caller,
which retries the whole call on throttling, 5xx and timeouts; the entries EventBridge
rejects one by one (``FailedEntryCount``, ``Entries[].ErrorCode``) come back to the
caller, which retries those alone (engine/publishing.py).

:class:`EventRecords` records on the item, after EventBridge accepted an event, which
final status it announced (``ADD EventsPublished :tags``, a string set), and finds the
finished executions whose execution event is not recorded (the recovery sweep). Like
the task-token records (answer_records.py), the record touches neither Status, Waves
nor PollerRevision, so it never conflicts with the poller's fenced writes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from drs_poller.clients.dynamodb import CONDITION_FAILED, finished_keys, item_key
from drs_poller.core.events_out import PUBLISHED

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller

MAX_ENTRIES = 10  # PutEvents takes at most 10 entries a call


@dataclass(frozen=True, slots=True)
class EntryResult:
    """One entry's answer: an EventId, or EventBridge's ErrorCode and ErrorMessage."""

    event_id: str | None
    error_code: str | None = None
    error_message: str | None = None


class EventsAdapter:
    def __init__(self, *, clients: ClientPool, caller: Caller, region: str) -> None:
        self._clients = clients
        self._caller = caller
        self._region = region

    async def put_events(self, entries: Sequence[dict[str, Any]]) -> list[EntryResult]:
        """PutEvents ``entries`` (at most 10); one result per entry, in order."""
        client = await self._clients.get("events", self._region)
        response: dict[str, Any] = await self._caller.call(
            service="events",
            operation="PutEvents",
            region=self._region,
            send=functools.partial(client.put_events, Entries=list(entries)),
        )
        answers = response.get("Entries") or []
        results = []
        for position in range(len(entries)):
            answer = answers[position] if position < len(answers) else {}
            if answer.get("EventId") and not answer.get("ErrorCode"):
                results.append(EntryResult(event_id=str(answer["EventId"])))
            else:
                results.append(
                    EntryResult(
                        event_id=None,
                        error_code=str(answer.get("ErrorCode") or "NoEntryInResponse"),
                        error_message=str(answer.get("ErrorMessage") or ""),
                    )
                )
        return results


class EventRecords:
    def __init__(
        self, *, clients: ClientPool, caller: Caller, region: str, table: str, index: str
    ) -> None:
        self._clients = clients
        self._caller = caller
        self._region = region
        self._table = table
        self._index = index

    async def record(self, *, key: tuple[str, str], tags: Sequence[str]) -> bool:
        """Add ``tags`` to the item's EventsPublished; False if the item is gone."""
        client = await self._clients.get("dynamodb", self._region)
        try:
            await self._caller.call(
                service="dynamodb",
                operation="UpdateItem",
                region=self._region,
                send=lambda: client.update_item(
                    TableName=self._table,
                    Key=item_key(key),
                    UpdateExpression="ADD #published :tags",
                    ConditionExpression="attribute_exists(#id)",
                    ExpressionAttributeNames={"#published": PUBLISHED, "#id": "ExecutionId"},
                    ExpressionAttributeValues={":tags": {"SS": sorted(set(tags))}},
                ),
                expected_errors=CONDITION_FAILED,
            )
        except ClientError:
            return False
        return True

    async def unpublished(
        self, *, status: str, since: float, filter_on_index: bool = True
    ) -> AsyncIterator[tuple[str, str]]:
        """Keys of executions ended as ``status`` (StartTime at or after ``since``) whose
        execution event is not recorded: a paged StatusIndex Query, never a Scan.
        ``filter_on_index`` False (the index does not project EventsPublished): every
        such execution's key, for the caller to read whole and check."""
        client = await self._clients.get("dynamodb", self._region)
        condition: tuple[str, dict[str, str], dict[str, Any]] = (
            "NOT contains(#published, :tag)",
            {"#published": PUBLISHED},
            {":tag": {"S": f"execution:{status}"}},
        )
        async for key in finished_keys(
            caller=self._caller,
            client=client,
            region=self._region,
            table=self._table,
            index=self._index,
            status=status,
            since=since,
            condition=condition if filter_on_index else None,
            what=f"Query {self._index} (unpublished finalization events)",
        ):
            yield key
