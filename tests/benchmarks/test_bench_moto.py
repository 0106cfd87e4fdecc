"""The benchmark's moto launcher projects items as moto does, converting each item once."""

from __future__ import annotations

import time

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


def test_the_sqs_counts_are_remembered_a_second_and_the_retention_check_is_unchanged(
    monkeypatch,
):
    # The launcher's SQS patch, applied to moto's classes for this test alone.
    from moto.sqs.models import Message, Queue, SQSBackend  # noqa: PLC0415 - test-local

    from benchmarks import moto_server  # noqa: PLC0415

    for name in moto_server._COUNTS:
        monkeypatch.setattr(Queue, name, moto_server._remembered(name))
    original = SQSBackend.is_message_valid_based_on_retention_period
    monkeypatch.setattr(
        SQSBackend, "is_message_valid_based_on_retention_period", moto_server.retained
    )
    clock = [1000.0]
    monkeypatch.setattr(moto_server.time, "monotonic", lambda: clock[0])
    backend = SQSBackend(region_name="us-east-1", account_id="123456789012")
    backend.create_queue("q")
    backend.send_message("q", "one")  # counted as it is sent (0 before it)
    queue = backend.get_queue("q")
    clock[0] += moto_server.COUNT_TTL + 0.1
    assert queue.approximate_number_of_messages == 1
    backend.send_message("q", "two")
    assert queue.approximate_number_of_messages == 1  # remembered
    clock[0] += moto_server.COUNT_TTL + 0.1
    assert queue.approximate_number_of_messages == 2  # counted again
    fresh, old = Message("a", "x", {}), Message("b", "x", {})
    fresh.sent_timestamp = int(time.time() * 1000)
    old.sent_timestamp = 1  # 1970: far past the four days' retention
    for message in (fresh, old):
        assert backend.is_message_valid_based_on_retention_period("q", message) == original(
            backend, "q", message
        )
    assert backend.is_message_valid_based_on_retention_period("q", fresh)
    assert not backend.is_message_valid_based_on_retention_period("q", old)
