"""The benchmark's patched dynalite (benchmarks/local_dynamodb.py) answers the daemon's
requests as DynamoDB does, through the real aiobotocore client: the fenced write's
condition on a list of maps holds when the item is as read, and a failed condition hands
back the current item (ReturnValuesOnConditionCheckFailure=ALL_OLD). Both were wrong in
dynalite 4.0.0 as published. Skipped where Node.js or npm is missing."""

from __future__ import annotations

import re
import shutil
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aioboto3
import pytest
from botocore.exceptions import ClientError

from benchmarks import local_dynamodb
from benchmarks.local_dynamodb import LocalDynamoDBError, dynalite_process
from drs_poller.clients.dynamodb import to_wire
from drs_poller.local.table import create_table

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="dynalite needs Node.js and npm",
)

TABLE = "history"
KEY = {"ExecutionId": {"S": "e-1"}, "PlanId": {"S": "p-1"}}
WAVES = [
    {
        "Region": "us-east-1",
        "Servers": [
            {"SourceServerId": "s-1", "Status": "PENDING", "PollAttempts": 3},
            {
                "SourceServerId": "s-2",
                "Status": "LAUNCHED",
                "LaunchedTime": Decimal("1796512259.204"),
            },
        ],
    }
]


@pytest.fixture
async def ddb() -> AsyncIterator[Any]:
    async with dynalite_process(log=lambda _: None) as (url, _proc):
        session = aioboto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        async with session.client("dynamodb", endpoint_url=url) as client:
            await create_table(client, TABLE)
            item = {"Status": "POLLING", "StartTime": 100, "Waves": WAVES, "PollerRevision": 1}
            await client.put_item(
                TableName=TABLE, Item={**KEY, **{k: to_wire(v) for k, v in item.items()}}
            )
            yield client


async def _fenced_write(client: Any, *, read_waves: Any, revision: int) -> None:
    """The daemon's write (clients/dynamodb.py, ``write``), in its shape."""
    await client.update_item(
        TableName=TABLE,
        Key=KEY,
        UpdateExpression="SET #a0 = :v0, #revision = :v1",
        ConditionExpression=(
            "#status = :polling AND #waves = :read_waves AND #revision = :read_revision"
        ),
        ExpressionAttributeNames={
            "#status": "Status",
            "#waves": "Waves",
            "#a0": "Phase",
            "#revision": "PollerRevision",
        },
        ExpressionAttributeValues={
            ":polling": {"S": "POLLING"},
            ":read_waves": to_wire(read_waves),
            ":read_revision": {"N": str(revision)},
            ":v0": {"S": "IN_PROGRESS"},
            ":v1": {"N": str(revision + 1)},
        },
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )


async def test_the_fenced_write_lands_when_the_item_is_as_read(ddb: Any) -> None:
    await _fenced_write(ddb, read_waves=WAVES, revision=1)

    item = (await ddb.get_item(TableName=TABLE, Key=KEY, ConsistentRead=True))["Item"]
    assert item["Phase"] == {"S": "IN_PROGRESS"}
    assert item["PollerRevision"] == {"N": "2"}


async def test_a_lost_race_hands_back_the_current_item(ddb: Any) -> None:
    changed = [{**WAVES[0], "Servers": [*WAVES[0]["Servers"][:1]]}]

    with pytest.raises(ClientError) as failed:
        await _fenced_write(ddb, read_waves=changed, revision=1)

    error = failed.value.response
    assert error["Error"]["Code"] == "ConditionalCheckFailedException"
    assert error["Item"]["PollerRevision"] == {"N": "1"}  # type: ignore[typeddict-item]
    assert len(error["Item"]["Waves"]["L"][0]["M"]["Servers"]["L"]) == 2  # type: ignore[typeddict-item]


async def test_numbers_in_a_condition_compare_by_value(ddb: Any) -> None:
    # DynamoDB compares numbers as numbers: 3.0 inside the list equals the stored 3.
    as_read = [
        {
            **WAVES[0],
            "Servers": [
                {**WAVES[0]["Servers"][0], "PollAttempts": Decimal("3.0")},
                WAVES[0]["Servers"][1],
            ],
        }
    ]

    await _fenced_write(ddb, read_waves=as_read, revision=1)


def test_without_node_the_benchmark_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_dynamodb.shutil, "which", lambda _name: None)

    with pytest.raises(
        LocalDynamoDBError,
        match=re.escape("needs Node.js 20+ and npm on PATH; not found: node, npm"),
    ):
        local_dynamodb.ensure_dynalite(lambda _: None)


async def test_a_dynalite_that_exits_at_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_dynamodb, "free_port", lambda: 0)  # serve.js refuses port 0

    with pytest.raises(
        LocalDynamoDBError, match=re.escape("dynalite exited at start: usage: node serve.js PORT")
    ):
        async with dynalite_process(log=lambda _: None):
            pass
