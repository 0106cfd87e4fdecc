"""DynamoDB adapter: the StatusIndex query, consistent reads, and fenced writes.

Every write is one UpdateItem conditioned on ``Status = POLLING AND Waves = <the
Waves that were read> AND PollerRevision = <the revision that was read>`` (the
fence: the status, the data, and the daemons' version counter). DynamoDB compares
lists and maps by value, so any change by any writer since the read (the initiator's
job ids for a later wave, a peer's transition, a CANCELLED) fails the condition
instead of being overwritten; and a deleted item is never recreated.
``ReturnValuesOnConditionCheckFailure=ALL_OLD`` hands back the current item, so a
lost race costs no extra read. Each write also stores a fresh ``PollerWriteId``:
when a write's response was lost and the retry finds its own id in the item, the
write had landed and counts as a success.
"""

from __future__ import annotations

import base64
import functools
import sys
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary, TypeSerializer
from botocore.exceptions import ClientError

from drs_poller.clients.calling import AwsCallError
from drs_poller.clients.paging import paginate
from drs_poller.core.backoff import ErrorKind
from drs_poller.core.models import ExecutionStatus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller

_serializer = TypeSerializer()

WRITE_ID = "PollerWriteId"
REVISION = "PollerRevision"
CONDITION_FAILED = frozenset({"ConditionalCheckFailedException"})
# What a lean discovery pass reads of each POLLING item, besides ``Waves[0].Region``
# (``PollerRevision`` and the region only where the index projects them).
LEAN_FIELDS = ("ExecutionId", "PlanId", "Status", REVISION)
# BatchGetItem takes at most this many keys per request.
BATCH_GET_LIMIT = 100
PROJECTIONS = ("ALL", "KEYS_ONLY", "INCLUDE")


@dataclass(frozen=True, slots=True)
class IndexProjection:
    """What the StatusIndex projects: ``ALL``, ``KEYS_ONLY`` or ``INCLUDE`` (with
    ``attributes``, its non-key attributes). Every projection carries the table key and
    the index key (``Status``, ``StartTime``), which is all discovery needs; with
    ``PollerRevision`` projected too, a lean pass also notices a peer's write."""

    kind: str = "ALL"
    attributes: frozenset[str] = field(default_factory=frozenset)

    @property
    def whole(self) -> bool:
        """The index holds whole items: a full pass reads them from the Query."""
        return self.kind == "ALL"

    @property
    def revision(self) -> bool:
        """``PollerRevision`` is in the index."""
        return self.whole or REVISION in self.attributes

    def describe(self) -> str:
        if self.kind != "INCLUDE":
            return self.kind
        return f"INCLUDE ({', '.join(sorted(self.attributes)) or 'nothing'})"


class UnusableIndexError(Exception):
    """The StatusIndex is missing, or is not something the daemon can work with."""


def index_projection(table: Mapping[str, Any], *, index: str) -> IndexProjection:
    """The StatusIndex's projection, from a DescribeTable ``Table``.

    Raises :class:`UnusableIndexError`, naming the index and what is wrong, when the
    index is missing, not keyed on ``Status``, not queryable yet, or projected in a way
    this daemon does not know.
    """
    name = table.get("TableName", "?")
    indexes = {i.get("IndexName"): i for i in table.get("GlobalSecondaryIndexes") or []}
    found = indexes.get(index)
    if found is None:
        others = ", ".join(sorted(str(i) for i in indexes)) or "none"
        raise UnusableIndexError(
            f"table {name} has no global secondary index {index} (DRS_POLLER_STATUS_INDEX); "
            f"its indexes: {others}"
        )
    hash_keys = [
        k.get("AttributeName") for k in found.get("KeySchema") or [] if k.get("KeyType") == "HASH"
    ]
    if hash_keys != ["Status"]:
        raise UnusableIndexError(
            f"index {index} of table {name} is keyed on {hash_keys or 'nothing'}, not Status "
            "(contract §1)"
        )
    status = found.get("IndexStatus", "ACTIVE")
    if status in {"CREATING", "DELETING"}:
        raise UnusableIndexError(
            f"index {index} of table {name} is {status}: it cannot be queried "
            "(start the daemon on it once it is ACTIVE)"
        )
    projection = found.get("Projection") or {}
    kind = projection.get("ProjectionType")
    if kind not in PROJECTIONS:
        raise UnusableIndexError(
            f"index {index} of table {name} has projection {kind!r}; this daemon works with "
            + ", ".join(PROJECTIONS)
        )
    attributes = (
        frozenset(projection.get("NonKeyAttributes") or ()) if kind == "INCLUDE" else frozenset()
    )
    return IndexProjection(kind=kind, attributes=attributes)


def to_python(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item from its wire form, as boto3's ``TypeDeserializer`` gives it (numbers as
    ``Decimal``, binary as ``Binary``), about three times faster: discovery turns every
    POLLING item into Python on every pass.

    A number that occurs more than once in the item is one ``Decimal`` (immutable, 104
    bytes): an item repeats its times (every server's ``LaunchTime`` and
    ``LastPolledTime``, the waves' ``StartTime``), and 10,000 items held in memory
    repeat them about ten times each."""
    numbers: dict[str, Decimal] = {}
    return {name: _from_wire(value, numbers) for name, value in item.items()}


# Strings this short are interned where items and answers are read: ids, statuses,
# regions and names repeat across every item held in memory and every poll in flight.
INTERNED_LENGTH = 32


def _from_wire(value: Mapping[str, Any], numbers: dict[str, Decimal]) -> Any:
    ((kind, data),) = value.items()
    if kind == "S":
        # Statuses, regions and names repeat across every item held in memory.
        return sys.intern(data) if len(data) <= INTERNED_LENGTH else data
    if kind == "BOOL":
        return data
    if kind == "N":
        number = numbers.get(data)
        if number is None:
            number = numbers[data] = Decimal(data)
        return number
    if kind == "M":
        return {name: _from_wire(member, numbers) for name, member in data.items()}
    if kind == "L":
        return [_from_wire(member, numbers) for member in data]
    convert = _RARE_TYPES.get(kind)
    if convert is None:
        raise ValueError(f"unknown DynamoDB attribute type {kind!r}")
    return convert(data)


def _binary(data: bytes | str) -> Binary:
    # botocore decodes base64 for its parsed responses; the fast Query path does not.
    return Binary(data if isinstance(data, bytes | bytearray) else base64.b64decode(data))


_RARE_TYPES: dict[str, Callable[[Any], Any]] = {
    "NULL": lambda _: None,
    "SS": set,
    "NS": lambda numbers: {Decimal(number) for number in numbers},
    "B": _binary,
    "BS": lambda members: {_binary(member) for member in members},
}


def item_key(key: tuple[str, str]) -> dict[str, Any]:
    """The table key (ExecutionId, PlanId) on the wire."""
    return {"ExecutionId": {"S": key[0]}, "PlanId": {"S": key[1]}}


def with_decimals(value: Any) -> Any:
    """``value`` with every float, however deep, as the Decimal it prints as: DynamoDB
    numbers are Decimals, and boto3 refuses floats."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: with_decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_decimals(v) for v in value]
    return value


def to_wire(value: Any) -> dict[str, Any]:
    """A value in its wire form, as boto3's ``TypeSerializer`` gives it, faster for the
    types an execution item is made of: every write sends the Waves twice (the new value
    and the condition's), and ``TypeSerializer`` tries each type in turn for every member."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is dict:
        return {"M": {name: to_wire(member) for name, member in value.items()}}
    if kind is list:
        return {"L": [to_wire(member) for member in value]}
    if kind is bool:
        return {"BOOL": value}
    if kind is Decimal or kind is int:
        # The same rounding and limits as boto3 (38 digits, no NaN or Infinity).
        number = str(DYNAMODB_CONTEXT.create_decimal(value))
        if number in ("Infinity", "NaN"):
            raise TypeError("Infinity and NaN not supported")
        return {"N": number}
    wire: dict[str, Any] = _serializer.serialize(value)
    return wire


async def query_pages(
    *, caller: Caller, client: Any, region: str, request: dict[str, Any], what: str
) -> AsyncIterator[dict[str, Any]]:
    """Every page of a DynamoDB Query, through the retrying caller."""

    async def fetch(params: dict[str, Any]) -> dict[str, Any]:
        page: dict[str, Any] = await caller.call(
            service="dynamodb",
            operation="Query",
            region=region,
            send=functools.partial(client.query, **params),
        )
        return page

    async for page in paginate(
        fetch,
        request,
        what=what,
        resume_with="ExclusiveStartKey",
        resume_from="LastEvaluatedKey",
    ):
        yield page


async def finished_keys(
    *,
    caller: Caller,
    client: Any,
    region: str,
    table: str,
    index: str,
    status: str,
    since: float,
    condition: tuple[str, dict[str, str], dict[str, Any]] | None,
    what: str,
) -> AsyncIterator[tuple[str, str]]:
    """Keys of the executions StatusIndex holds under ``status`` (StartTime at or after
    ``since``): a paged Query, never a Scan. ``condition`` (a FilterExpression with its
    names and values) keeps only the items it holds for, when the index projects what it
    reads; None keeps every one, for the caller to read whole and check. DynamoDB charges
    for every item the key condition reads, before the filter."""
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "#status = :status AND #start >= :since",
        "ProjectionExpression": "#id, #plan",
        "ExpressionAttributeNames": {
            "#status": "Status",
            "#start": "StartTime",
            "#id": "ExecutionId",
            "#plan": "PlanId",
        },
        "ExpressionAttributeValues": {":status": {"S": status}, ":since": to_wire(int(since))},
    }
    if condition is not None:
        expression, names, values = condition
        request["FilterExpression"] = expression
        request["ExpressionAttributeNames"].update(names)
        request["ExpressionAttributeValues"].update(values)
    async for page in query_pages(
        caller=caller, client=client, region=region, request=request, what=what
    ):
        for item in page.get("Items") or []:
            execution_id = item.get("ExecutionId", {}).get("S")
            plan_id = item.get("PlanId", {}).get("S")
            if execution_id and plan_id:
                yield (execution_id, plan_id)


@dataclass(frozen=True, slots=True)
class WriteResult:
    applied: bool
    item: dict[str, Any] | None  # after the write when applied; else the current item (None: gone)


class ExecutionStore:
    def __init__(
        self,
        *,
        clients: ClientPool,
        caller: Caller,
        region: str,
        table: str,
        index: str,
        page_size: int | None = None,
    ) -> None:
        """``page_size`` caps a Query page (tests); unset, DynamoDB pages at 1 MB."""
        self._clients = clients
        self._caller = caller
        self._region = region
        self._table = table
        self._index = index
        self._page_size = page_size
        # What the index projects: ALL until :meth:`describe_index` reads it.
        self.projection = IndexProjection()

    async def _client(self) -> Any:
        return await self._clients.get("dynamodb", self._region)

    async def describe_index(self) -> IndexProjection:
        """Read the StatusIndex's projection (DescribeTable, once at start-up) and keep it.

        Raises :class:`UnusableIndexError` when the daemon cannot work with the index.
        """
        client = await self._client()
        result: dict[str, Any] = await self._caller.call(
            service="dynamodb",
            operation="DescribeTable",
            region=self._region,
            send=lambda: client.describe_table(TableName=self._table),
        )
        self.projection = index_projection(result["Table"], index=self._index)
        return self.projection

    async def query_polling(self, *, lean: bool = False) -> AsyncIterator[list[dict[str, Any]]]:
        """Every item with ``Status = POLLING``, page by page, from the GSI (never a scan).

        ``lean`` projects each item to what a lean discovery pass needs (:data:`LEAN_FIELDS`,
        and the first wave's ``Region`` for the shard), of what the index projects: on an
        index projected ALL, the same pages and read units (DynamoDB charges the whole
        entry) for a fraction of the bytes to decode. On a KEYS_ONLY or INCLUDE index the
        Query always asks for exactly those attributes, never one outside the projection
        (DynamoDB would refuse it), whatever ``lean`` says.
        """
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": self._index,
            "KeyConditionExpression": "#status = :polling",
            "ExpressionAttributeNames": {"#status": "Status"},
            "ExpressionAttributeValues": {":polling": {"S": ExecutionStatus.POLLING.value}},
        }
        if lean or not self.projection.whole:
            fields = [name for name in LEAN_FIELDS if name != REVISION or self.projection.revision]
            request["ExpressionAttributeNames"].update(
                {f"#l{position}": name for position, name in enumerate(fields)}
            )
            paths = [f"#l{position}" for position in range(len(fields))]
            if self.projection.whole:
                request["ExpressionAttributeNames"]["#region"] = "Region"
                paths.append("Waves[0].#region")
            request["ProjectionExpression"] = ", ".join(paths)
        if self._page_size:
            request["Limit"] = self._page_size
        async for page in query_pages(
            caller=self._caller,
            client=await self._client(),
            region=self._region,
            request=request,
            what=f"Query {self._index}",
        ):
            yield [to_python(item) for item in page.get("Items") or []]

    async def find_execution(
        self, execution_id: str, *, plan_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every item whose ``ExecutionId`` is ``execution_id`` (and ``PlanId`` is
        ``plan_id``, when given): a consistent, paged Query on the table's key, for
        ``drs-poller report``. The daemon itself never reads the table this way."""
        names = {"#id": "ExecutionId"}
        values: dict[str, Any] = {":id": {"S": execution_id}}
        condition = "#id = :id"
        if plan_id is not None:
            names["#plan"] = "PlanId"
            values[":plan"] = {"S": plan_id}
            condition += " AND #plan = :plan"
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        found: list[dict[str, Any]] = []
        async for page in query_pages(
            caller=self._caller,
            client=await self._client(),
            region=self._region,
            request=request,
            what=f"Query {self._table} by ExecutionId",
        ):
            found.extend(to_python(item) for item in page.get("Items") or [])
        return found

    async def get_many(
        self, keys: Sequence[tuple[str, str]], *, consistent: bool = True
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Read items whole with BatchGetItem, :data:`BATCH_GET_LIMIT` keys a request.

        Returns the items found, by key; a key missing from the answer has no item.
        ``UnprocessedKeys`` (DynamoDB's answer under load) are sent again after the
        retry policy's capped exponential backoff with full jitter, for as many rounds
        as the policy allows attempts; then :class:`AwsCallError` (throttled).
        """
        unique = list(dict.fromkeys(keys))  # BatchGetItem refuses a key twice
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            found.update(
                await self._batch_get(
                    unique[start : start + BATCH_GET_LIMIT], consistent=consistent
                )
            )
        return found

    async def _batch_get(
        self, keys: Sequence[tuple[str, str]], *, consistent: bool
    ) -> dict[tuple[str, str], dict[str, Any]]:
        client = await self._client()
        caller = self._caller
        found: dict[tuple[str, str], dict[str, Any]] = {}
        pending: list[dict[str, Any]] = [item_key(key) for key in keys]
        attempt = 0
        while pending:
            attempt += 1
            request = {self._table: {"Keys": pending, "ConsistentRead": consistent}}
            result: dict[str, Any] = await caller.call(
                service="dynamodb",
                operation="BatchGetItem",
                region=self._region,
                send=functools.partial(client.batch_get_item, RequestItems=request),
            )
            for wire in (result.get("Responses") or {}).get(self._table) or []:
                item = to_python(wire)
                found[(item["ExecutionId"], item["PlanId"])] = item
            pending = ((result.get("UnprocessedKeys") or {}).get(self._table) or {}).get(
                "Keys"
            ) or []
            if not pending:
                break
            if not caller.policy.should_retry(ErrorKind.THROTTLED, attempt=attempt):
                raise AwsCallError(
                    service="dynamodb",
                    operation="BatchGetItem",
                    kind=ErrorKind.THROTTLED,
                    code="UnprocessedKeys",
                    message=f"{len(pending)} keys still unprocessed after {attempt} requests",
                )
            caller.metrics.aws_retries.labels("dynamodb", "BatchGetItem").inc()
            await caller.sleep(caller.policy.delay(attempt, rng=caller.rng))
        return found

    async def write(
        self,
        *,
        key: tuple[str, str],
        read: Mapping[str, Any],
        updates: Mapping[str, Any],
    ) -> WriteResult:
        """Apply ``updates`` (top-level attributes) iff the item is still as ``read``.

        On success the new item is built here rather than returned by DynamoDB
        (``ReturnValues=NONE``): the condition pinned ``Status`` and ``Waves``, so
        read + updates is exact for everything the daemon decides from, and parsing
        a returned copy of every written item would be the write path's main cost.
        """
        write_id = uuid.uuid4().hex
        revision = int(read.get(REVISION) or 0) + 1
        # An attribute the item already holds (the condition pins the item as read) is
        # not sent again: the request is smaller (DynamoDB prices the item, so the units
        # are the same).
        changed = {name: value for name, value in updates.items() if read.get(name) != value}
        attributes = {**changed, WRITE_ID: write_id, REVISION: revision}
        names: dict[str, str] = {"#status": "Status", "#waves": "Waves", "#revision": REVISION}
        values: dict[str, Any] = {":polling": {"S": ExecutionStatus.POLLING.value}}
        assignments = []
        for position, (name, value) in enumerate(attributes.items()):
            names[f"#a{position}"] = name
            values[f":v{position}"] = to_wire(value)
            assignments.append(f"#a{position} = :v{position}")
        conditions = ["#status = :polling"]
        if "Waves" in read:
            values[":read_waves"] = to_wire(read["Waves"])
            conditions.append("#waves = :read_waves")
        else:
            conditions.append("attribute_not_exists(#waves)")
        if REVISION in read:
            values[":read_revision"] = to_wire(read[REVISION])
            conditions.append("#revision = :read_revision")
        else:
            conditions.append("attribute_not_exists(#revision)")
        condition = " AND ".join(conditions)
        client = await self._client()
        try:
            await self._caller.call(
                service="dynamodb",
                operation="UpdateItem",
                region=self._region,
                send=lambda: client.update_item(
                    TableName=self._table,
                    Key=item_key(key),
                    UpdateExpression="SET " + ", ".join(assignments),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
                expected_errors=CONDITION_FAILED,
            )
        except ClientError as error:
            current: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if current is None:
                return WriteResult(applied=False, item=None)
            item = to_python(current)
            if item.get(WRITE_ID) != write_id:
                return WriteResult(applied=False, item=item)
            # Our own write landed, and its response was lost (a retried attempt): the
            # table was slow to answer, or the connection dropped. Applied, and counted.
            self._caller.metrics.writes_landed_on_retry.inc()
            return WriteResult(applied=True, item=item)
        return WriteResult(applied=True, item={**read, **attributes})
