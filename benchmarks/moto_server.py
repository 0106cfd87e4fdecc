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
them approximate too), and the retention check reads the retention period alone.

moto 5.1's SQS also lists every visible message of the queue for each receive (asking
the time twice a message), and scans the queue twice for each message it deletes. At
W10k the events queue then fell behind its publisher: 20,000 messages waited, each
receive and delete scanned them all, the moto server used a whole core, and events
were put up to 487 s late. Here a receive from a standard queue without a dead-letter
queue takes the oldest visible messages and stops, and a delete stops at the message
it deletes (the oldest, as a consumer deletes what it received); both give moto's
answers (``tests/benchmarks/test_bench_moto.py``). What moto answers is otherwise
unchanged. Nothing else of moto is changed.

Run as ``python -m benchmarks.moto_server`` with moto server's own arguments.
"""

from __future__ import annotations

import re
import time
from copy import deepcopy
from typing import Any

from botocore.utils import merge_dicts
from moto.core.utils import unix_time, unix_time_millis
from moto.dynamodb.models import dynamo_type
from moto.dynamodb.models.utilities import find_nested_key
from moto.server import main
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Message, Queue, SQSBackend, _filter_message_attributes

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


_receive_message = SQSBackend.receive_message


def receive_message(  # noqa: PLR0917 - moto's signature
    self: SQSBackend,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Message]:
    """moto's ReceiveMessage for a standard queue without a dead-letter queue, taking
    the oldest visible messages and stopping at ``count`` (moto lists every visible
    message first). FIFO queues and redrive go to moto's own."""
    queue: Any = self.get_queue(queue_name)
    if queue.fifo_queue or queue.dead_letter_queue is not None:
        return _receive_message(  # type: ignore[no-any-return]
            self, queue_name, count, wait_seconds_timeout, visibility_timeout,
            message_attribute_names,
        )  # fmt: skip
    names = message_attribute_names or []
    polling_end = unix_time() + wait_seconds_timeout
    while True:
        now = unix_time_millis()
        result: list[Message] = []
        for message in list(queue._messages):  # noqa: SLF001 - moto's queue, patched here
            # moto's Message.visible and Message.delayed, with the time asked once.
            if not now > message.visible_at or now < message.delayed_until:
                continue
            queue.pending_messages.add(message)  # a set: a timed-out receive is in it already
            message.mark_received(visibility_timeout=visibility_timeout)
            copy = deepcopy(message)
            _filter_message_attributes(copy, names)
            if not self.is_message_valid_based_on_retention_period(queue_name, message):
                break
            result.append(copy)
            if len(result) >= count:
                break
        remaining = polling_end - unix_time()
        if result or not wait_seconds_timeout or remaining <= 0:
            return result
        lock = queue._messages_lock  # noqa: SLF001 - add_message notifies it
        with lock:
            lock.wait(timeout=min(1.0, remaining))


def delete_message(self: Queue, receipt_handle: str) -> None:
    """moto's Queue.delete_message, in one pass that stops at the message it deletes."""
    if receipt_handle in self.deleted_messages:
        return  # already deleted: moto accepts it again
    for index, message in enumerate(self._messages):
        if message.had_receipt_handle(receipt_handle):
            del self._messages[index]
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)
            return
    raise ReceiptHandleIsInvalid


def patch() -> None:
    dynamo_type.Item.project = project_once  # type: ignore[method-assign]
    for name in _COUNTS:
        setattr(Queue, name, _remembered(name))
    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
    Queue.delete_message = delete_message  # type: ignore[method-assign]


if __name__ == "__main__":
    patch()
    main()
