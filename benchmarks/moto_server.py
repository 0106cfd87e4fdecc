"""moto server for the benchmark, with two inefficiencies of moto's removed.

moto 5.1's ``Item.project`` (a Query's ``ProjectionExpression``) converts the whole item
to plain JSON once per projected path, so a lean discovery pass (five paths) cost moto
several times a full one (1.6 s against 0.4 s per page at W10k; 6.2 ms against 0.9 ms
for one 10-server item), where DynamoDB charges a projection nothing extra. Here the
paths are looked up in moto's typed item and only what they name is converted, then
moto's own path lookup runs on that (0.04 ms for that item); the answer is the same
(``tests/benchmarks/test_bench_moto.py``).

moto 5.1's SQS counts the queue's messages (three passes over all of them, each message
asking the time) for every message it sends and every message it receives: its
``SendMessage`` reads the queue's attributes, and each received message is checked
against the retention period through them. A burst of launch results (thousands within
seconds at W1k) then made each receive slower the longer the queue grew, and the queue
never drained. Here the three approximate counts are remembered for a second (AWS calls
them approximate too), and the retention check reads the retention period alone. What
moto answers is otherwise unchanged. Nothing else of moto is changed.

Run as ``python -m benchmarks.moto_server`` with moto server's own arguments.
"""

from __future__ import annotations

import re
import time
from typing import Any

from botocore.utils import merge_dicts
from moto.core.utils import unix_time
from moto.dynamodb.models import dynamo_type
from moto.dynamodb.models.utilities import find_nested_key
from moto.server import main
from moto.sqs.models import Message, Queue, SQSBackend

_INDEXED = re.compile(r"(.+)\[(\d+)\]$")


def _plain(value: dynamo_type.DynamoType) -> Any:
    return dynamo_type.deserializer.deserialize(value.to_regular_json())


def _prune(document: dict[str, Any], typed: dict[str, Any], keys: list[str]) -> None:
    """Copy into ``document`` (plain JSON) what the path ``keys`` names in ``typed`` (a
    map of moto's typed values), keeping list lengths so that indices mean the same."""
    indexed = _INDEXED.match(keys[0])
    name = indexed.group(1) if indexed else keys[0]
    value = typed.get(name)
    if value is None:
        return
    if indexed is None:
        if len(keys) > 1 and value.is_map():
            held = document.get(name)
            document[name] = held if isinstance(held, dict) else {}
            _prune(document[name], value.value, keys[1:])
        else:
            document[name] = _plain(value)
        return
    if not value.is_list():
        document[name] = _plain(value)
        return
    index = int(indexed.group(2))
    held = document.get(name)
    members = held if isinstance(held, list) else [None] * len(value.value)
    document[name] = members
    if index >= len(members):
        return
    element = value.value[index]
    if len(keys) > 1 and element.is_map():
        member = members[index]
        if not isinstance(member, dict):
            members[index] = member = {}
        _prune(member, element.value, keys[1:])
    else:
        members[index] = _plain(element)


def project_once(self: dynamo_type.Item, projection_expressions: list[list[str]]) -> Any:
    document: dict[str, Any] = {}
    for expression in projection_expressions:
        _prune(document, self.attrs, expression)
    result: dict[str, Any] = {}
    for expression in projection_expressions:
        merge_dicts(result, find_nested_key(expression, document))
    return dynamo_type.Item(
        hash_key=self.hash_key,
        range_key=self.range_key,
        attrs=dynamo_type.serializer.serialize(result)["M"],
    )


COUNT_TTL = 1.0  # seconds an SQS queue's approximate message counts are remembered
_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)


def _remembered(name: str) -> property:
    count = getattr(Queue, name).fget

    def get(self: Queue) -> int:
        remembered: dict[str, tuple[float, int]] = self.__dict__.setdefault("_bench_counts", {})
        now = time.monotonic()
        hit = remembered.get(name)
        if hit is None or now - hit[0] > COUNT_TTL:
            hit = remembered[name] = (now, count(self))
        return hit[1]

    return property(get)


def retained(self: SQSBackend, queue_name: str, message: Message) -> bool:
    """moto's retention check, reading the retention period alone."""
    queue: Any = self.get_queue(queue_name)  # attributes set from moto's defaults, untyped
    sent = message.sent_timestamp or 0
    return bool(int(queue.message_retention_period) + sent / 1000 > unix_time())


def patch() -> None:
    dynamo_type.Item.project = project_once  # type: ignore[method-assign]
    for name in _COUNTS:
        setattr(Queue, name, _remembered(name))
    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]


if __name__ == "__main__":
    patch()
    main()
