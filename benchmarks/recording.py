"""What the benchmark sees of each tracker: every DRS call at the DRS simulator, and every
DynamoDB request and response through a recording proxy in front of moto server.

The proxy prices each request in request units from real item sizes (``sizes``):
reads from the items a response returns (a StatusIndex Query from the index entries
it reads: the whole item under projection ALL, the projected attributes otherwise);
writes from the larger of the item before and after (DynamoDB's rule for UpdateItem),
plus the StatusIndex writes that the table write causes (:func:`index_write_units`:
an entry that changes is rewritten at its projected size; a Status change is a delete
of the old entry and a put of the new one; a write that changes nothing the index
projects costs the index nothing). To know the item after an UpdateItem without
changing what the tracker receives, the proxy asks moto for ``ReturnValues=ALL_NEW``
when the tracker asked for nothing, and strips the returned attributes from the
response it hands back. Each write is also sorted by kind (:func:`write_kind`), so
that a run says where its write units went.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter, defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from benchmarks.sizes import item_size, read_units, write_units
from drs_poller.simulator import service
from drs_poller.simulator.accounts import AccountNotResolved, access_key_of
from drs_poller.simulator.service import DrsSimulator, build_app
from drs_poller.simulator.timelines import render_job, render_recovery_instance

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drs_poller.simulator.timelines import JobScript

LOOPBACK = "127.0.0.1"

# --------------------------------------------------------------------------- DRS


class IndexedDrsSimulator(DrsSimulator):
    """The project's simulator, with DescribeJobs by job id and DescribeRecoveryInstances by
    instance id served from an index.

    The stock simulator sorts and scans every job (every recovery instance) of the region
    on each call; with 100,000 scripted jobs (W10k), or the baseline's one
    DescribeRecoveryInstances per launched server (W1k: 76 % of this process's samples
    went there before the index), that alone saturates the benchmark's process. Answers
    are identical (same order, same filters, same paging).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._by_id: dict[tuple[str, str, str], JobScript] = {}  # (account, region, job)

    def add_job(self, script: JobScript) -> None:
        super().add_job(script)
        self._by_id[(script.account_id, script.region, script.job_id)] = script

    def describe_jobs(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        filters = body.get("filters") or {}
        ids = filters.get("jobIDs")
        if not ids or "fromDate" in filters or "toDate" in filters:
            return super().describe_jobs(region, body)
        now = self.clock.time()
        scripts = sorted(
            (
                script
                for job_id in set(ids)
                if (script := self._by_id.get(self._key(region, job_id))) is not None
                and script.created_at <= now
            ),
            # The stock simulator's order: latest creationDateTime first, as DRS lists them.
            key=lambda script: (-script.created_at, script.job_id),
        )
        items = [render_job(script, now) for script in scripts]
        return self.page(items, body=body, operation="DescribeJobs")

    def describe_recovery_instances(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        filters = body.get("filters") or {}
        ids = filters.get("recoveryInstanceIDs")
        if not ids or filters.get("sourceServerIDs"):
            return super().describe_recovery_instances(region, body)
        now = self.clock.time()
        items = []
        for instance_id in sorted(set(ids)):
            found = self._instances.get(self._key(region, instance_id))
            if found is not None and (rendered := render_recovery_instance(*found, now)):
                items.append(rendered)
        return self.page(items, body=body, operation="DescribeRecoveryInstances")


# The stock dispatch table holds the base class's function; dispatch on the instance
# instead, so the subclass's index serves DescribeJobs (same answers, this process only).
service.OPERATIONS["DescribeJobs"] = lambda simulator, region, body: simulator.describe_jobs(
    region, body
)
service.OPERATIONS["DescribeRecoveryInstances"] = lambda simulator, region, body: (
    simulator.describe_recovery_instances(region, body)
)


@dataclass(frozen=True, slots=True)
class DrsCall:
    """One call at the DRS simulator: asked at ``at``, answered by ``answered`` (the simulator
    rendered its answer in between, from its state at that moment)."""

    at: float
    operation: str
    region: str | None
    job_ids: tuple[str, ...]
    answered: float = 0.0
    # The account the call was signed in (its access key id's, as the simulator resolved
    # it); None when it could not be told.
    account: str | None = None


@dataclass
class DrsRecorder:
    calls: list[DrsCall] = field(default_factory=list)

    def count(self, operation: str | None = None) -> int:
        return sum(1 for c in self.calls if operation is None or c.operation == operation)


_REGION = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]+)/")


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free loopback port, until the block ends."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0, backlog=1024)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_recorded_drs(simulator: DrsSimulator, recorder: DrsRecorder) -> AsyncIterator[str]:
    """The DRS simulator over HTTP, every call recorded with the job ids it asked about."""

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        at = time.time()
        raw = await request.read()
        operation = request.path.strip("/")
        job_ids: tuple[str, ...] = ()
        if operation == "DescribeJobs" and raw:
            try:
                job_ids = tuple((json.loads(raw).get("filters") or {}).get("jobIDs") or ())
            except ValueError:
                job_ids = ()
        authorization = request.headers.get("Authorization", "")
        match = _REGION.search(authorization)
        response: web.StreamResponse = await handler(request)
        try:  # cached: the simulator resolved the key to answer the call
            account: str | None = await simulator.accounts.account_of(access_key_of(authorization))
        except AccountNotResolved:
            account = None
        recorder.calls.append(
            DrsCall(
                at,
                operation,
                match.group("region") if match else None,
                job_ids,
                answered=time.time(),
                account=account,
            )
        )
        return response

    app = build_app(simulator)
    app.middlewares.append(record)
    async with _serve(app) as url:
        yield url


# ---------------------------------------------------------------------- DynamoDB


WRITES = frozenset({"UpdateItem", "PutItem"})


@dataclass(frozen=True, slots=True)
class DynamoCall:
    """One request through the proxy, priced. For a write (UpdateItem, PutItem) also
    whether it landed (``status`` 200; a failed condition or an error did not) and
    whether the item was in StatusIndex before or after it (``in_index``). Under load
    a tracker's write can time out after it landed; its retry then fails its own
    condition, costing table units and no index units: ``landed`` tells those apart."""

    started: float
    ended: float
    operation: str
    status: int
    read_units: float
    table_write_units: int
    index_write_units: int
    kind: str = ""  # writes only: see write_kind
    in_index: bool = False

    @property
    def landed(self) -> bool:
        return self.operation in WRITES and self.status == 200


@dataclass(frozen=True, slots=True)
class ItemWrite:
    """An UpdateItem that landed: when the table showed it, and the server statuses
    (and the execution Status, if it was set) it carried. ``sent`` is when the request
    reached the proxy: ``at - sent`` is the local DynamoDB's share of the write."""

    at: float
    execution_id: str
    servers: tuple[tuple[str, str], ...]
    status: str | None
    sent: float | None = None  # records made before 2026-12-06 lack it


@dataclass(slots=True)
class _Shadow:
    size: int
    status: str | None
    indexed: bool
    entry: dict[str, Any] | None = None  # the StatusIndex entry (None: not in the index)
    waves: str = ""  # a digest of Waves and Phase, to sort writes by kind


def _indexed(item: dict[str, Any]) -> bool:
    return "Status" in item and "StartTime" in item


def _status(item: dict[str, Any]) -> str | None:
    value = item.get("Status")
    return value.get("S") if isinstance(value, dict) else None


# ------------------------------------------------- the StatusIndex's projection


@dataclass(frozen=True, slots=True)
class IndexShape:
    """What the recorded table's StatusIndex projects: ``ALL``, ``KEYS_ONLY``, or
    ``INCLUDE`` with ``attributes``."""

    kind: str = "ALL"
    attributes: frozenset[str] = frozenset()


INDEX_KEYS = frozenset({"ExecutionId", "PlanId", "Status", "StartTime"})


def index_entry(item: dict[str, Any], shape: IndexShape) -> dict[str, Any] | None:
    """The StatusIndex entry DynamoDB keeps for ``item`` (wire form): the item itself
    under ALL, its keys (and included attributes) otherwise; None when the item has no
    Status or StartTime (the index is sparse)."""
    if not _indexed(item):
        return None
    if shape.kind == "ALL":
        return item
    keep = INDEX_KEYS | shape.attributes
    return {name: value for name, value in item.items() if name in keep}


def index_write_units(old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
    """Index write units of one table write, from the index entry before and after
    (DynamoDB Developer Guide, "Global secondary indexes", write capacity): an entry
    put or removed costs one write of its size; a changed index key (``Status``) costs
    a delete of the old entry and a put of the new; a change to projected attributes
    only, one write of the new entry; a write that changes nothing projected, none.
    An index write is priced by the size of the index entry, not of the item."""
    if old is None and new is None:
        return 0
    if old is None:
        return write_units(item_size(new or {}))
    if new is None:
        return write_units(item_size(old))
    if old.get("Status") != new.get("Status") or old.get("StartTime") != new.get("StartTime"):
        return write_units(item_size(old)) + write_units(item_size(new))
    if old == new:
        return 0
    return write_units(item_size(new))


_BOOKKEEPING = frozenset({"LastPolledTime", "PollAttempts"})


def _without_bookkeeping(value: Any) -> Any:
    """A wire value without the per-poll bookkeeping (a server's LastPolledTime and
    PollAttempts), which every write refreshes."""
    if isinstance(value, dict):
        return {k: _without_bookkeeping(v) for k, v in value.items() if k not in _BOOKKEEPING}
    if isinstance(value, list):
        return [_without_bookkeeping(v) for v in value]
    return value


def _digest(item: dict[str, Any]) -> str:
    """What a write's kind is told from: the item's Waves (without bookkeeping) and Phase."""
    waves = _without_bookkeeping(item.get("Waves"))
    text = json.dumps([waves, item.get("Phase")], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def write_kind(
    request: dict[str, Any], status: int, old: _Shadow | None, new: dict[str, Any]
) -> str:
    """What a write did: ``finalize`` (set a final Status), ``state`` (changed Waves or
    Phase), ``unchanged`` (neither: LastPolledTime and bookkeeping only, a heartbeat),
    or ``rejected`` (its condition failed)."""
    if status != 200:
        return "rejected"
    names = request.get("ExpressionAttributeNames") or {}
    values = request.get("ExpressionAttributeValues") or {}
    for target, placeholder in re.findall(
        r"([#\w]+)\s*=\s*(:\w+)", request.get("UpdateExpression") or ""
    ):
        if (
            names.get(target, target) == "Status"
            and (values.get(placeholder) or {}).get("S") != "POLLING"
        ):
            return "finalize"
    if old is None or old.waves != _digest(new):
        return "state"
    return "unchanged"


# Requests DynamoDB does not charge request units for.
FREE = frozenset({"DescribeTable"})


@dataclass
class DynamoRecorder:
    calls: list[DynamoCall] = field(default_factory=list)
    writes: list[ItemWrite] = field(default_factory=list)
    unpriced: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    index: IndexShape = field(default_factory=IndexShape)
    _items: dict[tuple[str, str], _Shadow] = field(default_factory=dict)
    last_kind: str = ""

    @staticmethod
    def key_of(key: dict[str, Any]) -> tuple[str, str]:
        return key["ExecutionId"]["S"], key["PlanId"]["S"]

    def know(self, item: dict[str, Any]) -> None:
        """Register an item's current size (seeded items; items a read returned whole)."""
        key = (item["ExecutionId"]["S"], item["PlanId"]["S"])
        self._items[key] = self._shadow(item)

    def _shadow(self, item: dict[str, Any]) -> _Shadow:
        entry = index_entry(item, self.index)
        return _Shadow(item_size(item), _status(item), entry is not None, entry, _digest(item))

    def _whole_size(self, projected: dict[str, Any]) -> int:
        """The size of the index entry a projected copy came from: the whole item's under
        ALL (the copy's own size if the item was never seen whole)."""
        try:
            shadow = self._items.get(self.key_of(projected))
        except KeyError:
            shadow = None
        if shadow is None:
            return item_size(projected)
        return shadow.size if shadow.entry is None else item_size(shadow.entry)

    def in_index(self, operation: str, request: dict[str, Any]) -> bool:
        """Whether a write's item is in StatusIndex now, as far as the proxy knows."""
        if operation not in WRITES:
            return False
        try:
            key = self.key_of(request["Key"] if operation == "UpdateItem" else request["Item"])
        except KeyError:
            return False
        shadow = self._items.get(key)
        return shadow is not None and shadow.indexed

    def price(  # noqa: C901, PLR0911 - one branch per DynamoDB operation
        self, operation: str, request: dict[str, Any], status: int, response: dict[str, Any]
    ) -> tuple[float, int, int]:
        if operation in FREE:
            return 0.0, 0, 0
        if operation == "BatchGetItem":
            return self._price_batch_get(request, response), 0, 0
        if operation in ("Query", "Scan"):
            items = response.get("Items") or []
            lean_index = "IndexName" in request and self.index.kind != "ALL"
            if "ProjectionExpression" in request or lean_index:
                # DynamoDB charges the index entry read (the whole item under ALL), not
                # the attributes the expression picked.
                total = sum(self._whole_size(item) for item in items)
            else:
                for item in items:
                    if "ExecutionId" in item and "PlanId" in item:
                        self.know(item)
                total = sum(item_size(item) for item in items)
            consistent = bool(request.get("ConsistentRead")) and "IndexName" not in request
            return read_units(total, consistent=consistent), 0, 0
        if operation == "GetItem":
            item = response.get("Item") or {}
            if item:
                self.know(item)
            return read_units(item_size(item), consistent=bool(request.get("ConsistentRead"))), 0, 0
        if operation in ("UpdateItem", "PutItem"):
            key = self.key_of(request["Key"] if operation == "UpdateItem" else request["Item"])
            old = self._items.get(key)
            old_size = old.size if old else 0
            if status != 200:
                self.last_kind = "rejected"
                # A failed condition still costs the existing item's size in write units.
                failed = response.get("__type", "").endswith("ConditionalCheckFailedException")
                return 0.0, write_units(old_size) if failed else 0, 0
            new = response.get("Attributes") if operation == "UpdateItem" else request["Item"]
            new = new or {}
            shadow = self._shadow(new)
            self.last_kind = write_kind(request, status, old, new)
            table = write_units(max(old_size, shadow.size))
            index = index_write_units(old.entry if old else None, shadow.entry)
            self._items[key] = shadow
            return 0.0, table, index
        self.unpriced[operation] += 1
        return 0.0, 0, 0

    def _price_batch_get(self, request: dict[str, Any], response: dict[str, Any]) -> float:
        """BatchGetItem: each item returned is priced on its own (rounded up to 4 KB),
        consistent or not as its table's request asked."""
        units = 0.0
        for table, items in (response.get("Responses") or {}).items():
            consistent = bool(
                (request.get("RequestItems") or {}).get(table, {}).get("ConsistentRead")
            )
            for item in items:
                if "ExecutionId" in item and "PlanId" in item:
                    self.know(item)
                units += read_units(item_size(item), consistent=consistent)
        return units

    def note_write(self, at: float, request: dict[str, Any], *, sent: float | None = None) -> None:
        """Which server statuses (and execution Status) a landed UpdateItem carried."""
        names = request.get("ExpressionAttributeNames") or {}
        values = request.get("ExpressionAttributeValues") or {}
        expression = request.get("UpdateExpression") or ""
        assigned: dict[str, Any] = {}
        for target, placeholder in re.findall(r"([#\w]+)\s*=\s*(:\w+)", expression):
            assigned[names.get(target, target)] = values.get(placeholder)
        waves = assigned.get("Waves")
        servers: list[tuple[str, str]] = []
        if isinstance(waves, dict):
            for wave in waves.get("L", []):
                for server in wave.get("M", {}).get("Servers", {}).get("L", []):
                    fields = server.get("M", {})
                    sid = fields.get("SourceServerId", {}).get("S")
                    status = fields.get("Status", {}).get("S")
                    if sid and status:
                        servers.append((sid, status))
        status_value = assigned.get("Status")
        self.writes.append(
            ItemWrite(
                at=at,
                execution_id=request["Key"]["ExecutionId"]["S"],
                servers=tuple(servers),
                status=status_value.get("S") if isinstance(status_value, dict) else None,
                sent=sent,
            )
        )


_HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@asynccontextmanager
async def serve_dynamodb_proxy(moto_url: str, recorder: DynamoRecorder) -> AsyncIterator[str]:
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as upstream:

        async def forward(request: web.Request) -> web.Response:
            started = time.time()
            raw = await request.read()
            operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
            body: dict[str, Any] = json.loads(raw) if raw else {}
            strip = operation == "UpdateItem" and body.get("ReturnValues", "NONE") == "NONE"
            if strip:
                body["ReturnValues"] = "ALL_NEW"
                raw = json.dumps(body).encode()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            async with upstream.request(
                request.method, moto_url + request.path_qs, data=raw, headers=headers
            ) as reply:
                payload = await reply.read()
                status = reply.status
                reply_headers = {
                    k: v
                    for k, v in reply.headers.items()
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"
                }
            ended = time.time()
            try:
                response_body: dict[str, Any] = json.loads(payload) if payload else {}
            except ValueError:
                # moto answered something that is not JSON (an HTML 500 under load):
                # the tracker gets it as it came, and it is counted, unpriced.
                recorder.unpriced[f"{operation} (status {status}, not JSON)"] += 1
                recorder.calls.append(DynamoCall(started, ended, operation, status, 0.0, 0, 0))
                return web.Response(body=payload, status=status, headers=reply_headers)
            recorder.last_kind = ""
            was_in_index = recorder.in_index(operation, body)
            units = recorder.price(operation, body, status, response_body)
            in_index = was_in_index or recorder.in_index(operation, body)
            recorder.calls.append(
                DynamoCall(
                    started,
                    ended,
                    operation,
                    status,
                    *units,
                    kind=recorder.last_kind,
                    in_index=in_index,
                )
            )
            if operation == "UpdateItem" and status == 200:
                recorder.note_write(ended, body, sent=started)
            if strip and status == 200:
                response_body.pop("Attributes", None)
                payload = json.dumps(response_body).encode()
                reply_headers.pop("x-amz-crc32", None)
                reply_headers.pop("X-Amz-Crc32", None)
            return web.Response(body=payload, status=status, headers=reply_headers)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        async with _serve(app) as url:
            yield url


# ---------------------------------------------------------------------- SQS


def _form_action(request: web.Request, raw: bytes) -> str:
    """The query protocol's ``Action`` in a form-encoded body, else "unknown"."""
    if request.content_type != "application/x-www-form-urlencoded":
        return "unknown"
    actions = parse_qs(raw.decode(errors="replace")).get("Action")
    return actions[0] if actions else "unknown"


@asynccontextmanager
async def serve_counting_proxy(
    upstream_url: str, counts: Counter[str], *, log: list[tuple[float, str]] | None = None
) -> AsyncIterator[str]:
    """A pass-through to ``upstream_url`` counting each request by its operation: the
    JSON protocol's ``X-Amz-Target`` (``AmazonSQS.ReceiveMessage``), else the query
    protocol's ``Action`` (in the query string, or the form body botocore sends, as for
    STS). SQS bills each request (a batch of ten is one), so the count is what the
    daemon's queue costs; for STS it is the daemon's AssumeRole calls. ``log`` also gets
    each request's (wall-clock time, operation)."""
    async with aiohttp.ClientSession() as upstream:

        async def forward(request: web.Request) -> web.Response:
            raw = await request.read()
            target = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
            action = target or request.query.get("Action") or _form_action(request, raw)
            counts[action] += 1
            if log is not None:
                log.append((time.time(), action))
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            for attempt in (1, 2):
                try:
                    async with upstream.request(
                        request.method, upstream_url + request.path_qs, data=raw, headers=headers
                    ) as reply:
                        payload = await reply.read()
                        reply_headers = {
                            k: v
                            for k, v in reply.headers.items()
                            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"
                        }
                        return web.Response(
                            body=payload, status=reply.status, headers=reply_headers
                        )
                except aiohttp.ServerDisconnectedError:
                    # moto server closed a kept-alive connection as it was reused: the
                    # request was not read. Sent again once, on a new connection.
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        async with _serve(app) as url:
            yield url
