"""DynamoDB side of answering task tokens: recording an answer, and the recovery sweep.

Recording is one narrow UpdateItem that sets only the answer attributes beside the
token, conditioned on that token still being there unanswered. It is the one write the
daemon makes to an item that is no longer POLLING (contract §3 and "Changes from the
outside reference"): it never touches Status, Waves' data or anything the daemon
decides from, so it cannot undo another writer's change; a lost condition means the
answer was already recorded (by a peer, or before a restart) or the token changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from drs_poller.clients.dynamodb import CONDITION_FAILED, finished_keys, item_key, to_wire
from drs_poller.core.answering import ANSWER, ANSWERED_TIME, PENDING, TOKEN

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from decimal import Decimal

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller
    from drs_poller.core.answering import Holder, Recorded


class AnswerRecords:
    def __init__(
        self, *, clients: ClientPool, caller: Caller, region: str, table: str, index: str
    ) -> None:
        self._clients = clients
        self._caller = caller
        self._region = region
        self._table = table
        self._index = index

    async def record(
        self,
        *,
        key: tuple[str, str],
        holder: Holder,
        token: str,
        recorded: Recorded,
        at: Decimal,
    ) -> bool:
        """Record the answer to ``token``; False if it was recorded already (or the token
        is no longer there)."""
        names = {"#token": TOKEN, "#at": ANSWERED_TIME, "#answer": ANSWER, "#pending": PENDING}
        prefix = ""
        if holder.wave_index is not None:
            names["#waves"] = "Waves"
            prefix = f"#waves[{holder.wave_index}]."
        values = {
            ":token": {"S": token},
            ":at": to_wire(at),
            ":answer": {"S": recorded.value},
            ":path": {"SS": [holder.path]},
        }
        client = await self._clients.get("dynamodb", self._region)
        try:
            await self._caller.call(
                service="dynamodb",
                operation="UpdateItem",
                region=self._region,
                send=lambda: client.update_item(
                    TableName=self._table,
                    Key=item_key(key),
                    UpdateExpression=(
                        f"SET {prefix}#at = :at, {prefix}#answer = :answer DELETE #pending :path"
                    ),
                    ConditionExpression=(
                        f"{prefix}#token = :token AND attribute_not_exists({prefix}#at)"
                    ),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                ),
                expected_errors=CONDITION_FAILED,
            )
        except ClientError:
            return False
        return True

    async def unanswered(
        self, *, statuses: tuple[str, ...], since: float, filter_on_index: bool = True
    ) -> AsyncIterator[tuple[str, str]]:
        """Keys of finished executions (``statuses``, StartTime at or after ``since``) that
        still have a token due (``TaskTokensPending``): a paged StatusIndex Query per
        status, never a Scan. DynamoDB charges for every item the key condition reads,
        before the filter: the sweep reads every finished execution in the window.
        ``filter_on_index`` False (the index does not project ``TaskTokensPending``):
        every finished execution's key, for the caller to read whole and check."""
        client = await self._clients.get("dynamodb", self._region)
        condition: tuple[str, dict[str, str], dict[str, Any]] = (
            "attribute_exists(#pending)",
            {"#pending": PENDING},
            {},
        )
        for status in statuses:
            async for key in finished_keys(
                caller=self._caller,
                client=client,
                region=self._region,
                table=self._table,
                index=self._index,
                status=status,
                since=since,
                condition=condition if filter_on_index else None,
                what=f"Query {self._index} (unanswered task tokens)",
            ):
                yield key
