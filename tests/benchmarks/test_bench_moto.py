"""The benchmark's moto launcher projects items as moto does, converting each item once."""

from __future__ import annotations

import time
from typing import Any

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


def _sqs_run(receive: Any, delete: Any) -> list[Any]:
    """One story of a standard queue through ``receive`` and ``delete``: what each step
    answered (bodies received, errors raised)."""
    from moto.sqs.exceptions import ReceiptHandleIsInvalid  # noqa: PLC0415 - test-local
    from moto.sqs.models import SQSBackend  # noqa: PLC0415

    backend = SQSBackend(region_name="us-east-1", account_id="123456789012")
    backend.create_queue("q")
    queue = backend.get_queue("q")
    seen: list[Any] = []
    for n in range(6):
        backend.send_message("q", f"m{n}", delay_seconds=30 if n == 4 else 0)
    first = receive(backend, "q", 2, 0, 30)
    seen.append([m.body for m in first])
    seen.append([m.body for m in receive(backend, "q", 10, 0, 30)])  # not m0, m1; not m4
    seen.append([m.body for m in receive(backend, "q", 10, 0, 30)])  # all in flight
    delete(queue, first[0].receipt_handle)
    delete(queue, first[0].receipt_handle)  # again: accepted
    try:
        delete(queue, "not-a-handle")
    except ReceiptHandleIsInvalid:
        seen.append("invalid")
    for message in queue._messages:  # every visibility timeout runs out
        message.visible_at = 0
    seen.append([m.body for m in receive(backend, "q", 10, 0, 30)])
    seen.append(sorted(m.body for m in queue._messages))
    seen.append(len(queue.pending_messages))
    return seen


def test_the_sqs_receive_and_delete_give_motos_answers():
    from moto.sqs.models import Queue, SQSBackend  # noqa: PLC0415 - test-local

    from benchmarks import moto_server  # noqa: PLC0415

    motos = _sqs_run(SQSBackend.receive_message, Queue.delete_message)
    ours = _sqs_run(moto_server.receive_message, moto_server.delete_message)
    assert ours == motos
    assert motos[:3] == [["m0", "m1"], ["m2", "m3", "m5"], []]
    assert motos[3] == "invalid"
    assert motos[4] == ["m1", "m2", "m3", "m5"]  # m4 is still delayed
