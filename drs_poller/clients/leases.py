"""DynamoDB adapter for the replica lease table: one entry per replica, in its group.

Key: ``LeaseGroup`` (S, hash) and ``ReplicaId`` (S, range). A replica only ever
writes its own entry, and only with UpdateItem: a renewal adds 1 to
``LeaseCounter`` (creating the entry on the first one), a release sets
``Released``. Nobody deletes entries: ``ExpiresAt`` (epoch seconds, this host's
wall clock) lets DynamoDB's TTL collect the entries of replicas long gone. That
wall time is never used to decide anything. Listing a group is a Query, never a scan.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from drs_poller.clients.dynamodb import query_pages
from drs_poller.core.ownership import LeaseEntry

if TYPE_CHECKING:
    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller

GROUP = "LeaseGroup"
REPLICA = "ReplicaId"
COUNTER = "LeaseCounter"
RELEASED = "Released"
EXPIRES_AT = "ExpiresAt"


class LeaseTable:
    def __init__(
        self, *, clients: ClientPool, caller: Caller, region: str, table: str, group: str
    ) -> None:
        self._clients = clients
        self._caller = caller
        self._region = region
        self._table = table
        self._group = group

    @property
    def table(self) -> str:
        return self._table

    def _key(self, replica_id: str) -> dict[str, Any]:
        return {GROUP: {"S": self._group}, REPLICA: {"S": replica_id}}

    async def _update(self, operation_args: dict[str, Any]) -> dict[str, Any]:
        client = await self._clients.get("dynamodb", self._region)
        result: dict[str, Any] = await self._caller.call(
            service="dynamodb",
            operation="UpdateItem",
            region=self._region,
            send=functools.partial(client.update_item, TableName=self._table, **operation_args),
        )
        return result

    async def renew(self, replica_id: str, *, expires_at: float, info: str) -> int:
        """Add 1 to our counter (creating the entry) and return its new value.

        A retried attempt whose first try had landed adds 2: the counter only has to
        move, so no condition is needed, and none can be lost.
        """
        result = await self._update(
            {
                "Key": self._key(replica_id),
                "UpdateExpression": "ADD #counter :one SET #expires = :expires, #info = :info "
                "REMOVE #released",
                "ExpressionAttributeNames": {
                    "#counter": COUNTER,
                    "#expires": EXPIRES_AT,
                    "#info": "Info",
                    "#released": RELEASED,
                },
                "ExpressionAttributeValues": {
                    ":one": {"N": "1"},
                    ":expires": {"N": str(int(expires_at))},
                    ":info": {"S": info},
                },
                "ReturnValues": "UPDATED_NEW",
            }
        )
        return int(result["Attributes"][COUNTER]["N"])

    async def release(self, replica_id: str, *, expires_at: float) -> None:
        """Mark our entry released: peers take our executions at their next read."""
        await self._update(
            {
                "Key": self._key(replica_id),
                "UpdateExpression": "SET #released = :true, #expires = :expires",
                "ExpressionAttributeNames": {"#released": RELEASED, "#expires": EXPIRES_AT},
                "ExpressionAttributeValues": {
                    ":true": {"BOOL": True},
                    ":expires": {"N": str(int(expires_at))},
                },
            }
        )

    async def entries(self) -> list[LeaseEntry]:
        """Every entry of our group (a consistent Query, paged)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#group = :group",
            "ExpressionAttributeNames": {"#group": GROUP},
            "ExpressionAttributeValues": {":group": {"S": self._group}},
            "ConsistentRead": True,
        }
        found: list[LeaseEntry] = []
        async for page in query_pages(
            caller=self._caller,
            client=await self._clients.get("dynamodb", self._region),
            region=self._region,
            request=request,
            what=f"Query {self._table}",
        ):
            for item in page.get("Items") or []:
                replica = item.get(REPLICA, {}).get("S")
                counter = item.get(COUNTER, {}).get("N")
                if replica is None or counter is None:
                    continue  # not an entry we wrote; ignore rather than guess
                found.append(
                    LeaseEntry(
                        replica_id=replica,
                        counter=int(counter),
                        released=bool(item.get(RELEASED, {}).get("BOOL", False)),
                    )
                )
        return found
