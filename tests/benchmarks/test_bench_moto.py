"""The benchmark's moto launcher projects items as moto does, converting each item once."""

from __future__ import annotations

import pytest
from moto.dynamodb.models.dynamo_type import DynamoType, Item

from benchmarks.moto_server import project_once
from drs_poller.clients.dynamodb import to_wire

ITEM = {
    "ExecutionId": "ex-1",
    "PlanId": "plan",
    "Status": "POLLING",
    "PollerRevision": 3,
    "Waves": [
        {"Region": "us-east-1", "Servers": [{"SourceServerId": "s-1", "Status": "LAUNCHED"}]},
        {"Region": "eu-west-1", "Servers": []},
    ],
    "Tags": {"team": "dr", "nested": {"a": 1}},
}

PROJECTIONS = [
    [["ExecutionId"], ["PlanId"], ["Status"], ["PollerRevision"], ["Waves[0]", "Region"]],
    [["Waves[1]", "Region"], ["Waves[0]", "Servers"]],
    [["Tags"], ["Tags", "nested", "a"]],
    [["Tags", "team"], ["Missing"], ["Waves[5]", "Region"]],
    [["Waves"], ["Waves[0]", "Region"]],
    [["Waves[0]", "Region"], ["Waves"]],
    [["Waves[1]", "Servers"], ["Waves[0]", "Servers[0]", "Status"]],
    [["Tags", "nested"], ["Tags", "team"]],
    [["Status", "Deeper"], ["Tags[0]"], ["Waves", "Region"]],
]


def _item() -> Item:
    attrs = {name: to_wire(value) for name, value in ITEM.items()}
    return Item(
        hash_key=DynamoType(attrs["ExecutionId"]),
        range_key=DynamoType(attrs["PlanId"]),
        attrs=attrs,
    )


@pytest.mark.parametrize("paths", PROJECTIONS)
def test_projecting_once_gives_motos_answer(paths):
    assert project_once(_item(), paths).to_json() == _item().project(paths).to_json()
