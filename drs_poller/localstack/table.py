"""The execution-history table and its StatusIndex, exactly as CONTRACT §1 defines them."""

from __future__ import annotations

import contextlib
from typing import Any


def table_definition(table: str, *, index: str = "StatusIndex") -> dict[str, Any]:
    return {
        "TableName": table,
        "KeySchema": [
            {"AttributeName": "ExecutionId", "KeyType": "HASH"},
            {"AttributeName": "PlanId", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "ExecutionId", "AttributeType": "S"},
            {"AttributeName": "PlanId", "AttributeType": "S"},
            {"AttributeName": "Status", "AttributeType": "S"},
            {"AttributeName": "StartTime", "AttributeType": "N"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": "Status", "KeyType": "HASH"},
                    {"AttributeName": "StartTime", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


async def create_table(client: Any, table: str, *, index: str = "StatusIndex") -> None:
    """Create the table (idempotent) and wait until it is ACTIVE."""
    with contextlib.suppress(client.exceptions.ResourceInUseException):
        await client.create_table(**table_definition(table, index=index))
    waiter = client.get_waiter("table_exists")
    await waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
