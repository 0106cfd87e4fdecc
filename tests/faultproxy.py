"""A fault-injecting HTTP proxy for tests: it sits on loopback in front of one upstream
(moto server, or the DRS simulator), forwards every request unchanged, and lets a test
inject the failures that real AWS endpoints and networks produce.

    async with FaultProxy(moto_url) as proxy:
        rule = proxy.add(reset_after_forward(), operation="UpdateItem", times=1)
        ... point a real aiobotocore client at proxy.url ...
        assert proxy.count("UpdateItem", outcome=Outcome.RESET) == 1

Requests are matched by the service and operation the AWS protocols put on the wire:
DynamoDB's JSON 1.0 ``X-Amz-Target``, DRS's rest-json path, EC2's query ``Action``;
the service and region come from the SigV4 credential scope. The first live rule that
matches (and wins its probability draw) fires; everything else is forwarded. Every
request is recorded with its outcome, so a test can assert what the client saw and
what the upstream saw.

Choices worth knowing:

* The ``Host`` header is forwarded as the client sent it, so the SigV4 signature
  still matches it (neither moto nor the simulator check signatures, nor route on Host).
* Responses are decompressed on the way through (``Content-Encoding`` is dropped), so
  a rewrite sees plain bytes. A rewrite recomputes DynamoDB's ``x-amz-crc32``: it
  models a server that answered that body, not a corrupted wire.
* When a client gives up (closes its connection), the proxy stops work on that request,
  including a forward in progress (aiohttp's ``handler_cancellation``). The record
  says ``client_gave_up``.
* ``close()`` drops black-holed connections first, then gives other requests in
  flight a quarter of a second, so closing never hangs.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

LOOPBACK = "127.0.0.1"

_CREDENTIAL_SCOPE = re.compile(
    r"Credential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request"
)
# Connection-level headers (RFC 9110 7.6.1) belong to one hop; lengths and encodings are
# recomputed by whoever writes the body next.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
    }
)
# A test names the failure it wants; the proxy must not add headers the client did not send.
_NO_AUTO_HEADERS = ("Content-Type", "User-Agent", "Accept", "Accept-Encoding")
_SHUTDOWN_GRACE = 0.25


class Outcome(StrEnum):
    FORWARDED = "forwarded"  # the upstream's answer, passed on unchanged (after any latency)
    REWRITTEN = "rewritten"  # the upstream's answer, with its body transformed
    INJECTED = "injected"  # answered by the proxy; the upstream never saw the request
    RESET = "reset"  # connection reset with RST; ``reached_upstream`` says before or after
    BLACK_HOLED = "black_holed"  # accepted, never answered
    UPSTREAM_FAILED = "upstream_failed"  # the upstream could not be reached: 502


@dataclass(frozen=True)
class ProxiedRequest:
    """A request as the proxy parsed it; rule predicates receive it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    service: str | None
    region: str | None
    operation: str | None

    @cached_property
    def json(self) -> Any:
        """The body as JSON (DynamoDB, DRS), or None when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else {}
        except (UnicodeDecodeError, ValueError):
            return None

    @cached_property
    def form(self) -> dict[str, str]:
        """The body as a query-protocol form (EC2): the first value of each field."""
        try:
            fields = parse_qs(self.body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            return {}
        return {name: values[0] for name, values in fields.items()}


def parse_request(
    *, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
) -> ProxiedRequest:
    scope = _CREDENTIAL_SCOPE.search(headers.get("Authorization", ""))
    service = scope.group("service") if scope else None
    region = scope.group("region") if scope else None
    target = headers.get("X-Amz-Target")
    content_type = headers.get("Content-Type", "")
    operation: str | None
    if target:  # JSON 1.0 / 1.1: "DynamoDB_20120810.UpdateItem"
        prefix, _, operation = target.rpartition(".")
        if service is None and prefix.startswith("DynamoDB"):
            service = "dynamodb"
    elif content_type.startswith("application/x-www-form-urlencoded") or "Action" in query:
        operation = (
            query.get("Action") or parse_qs(body.decode(errors="replace")).get("Action", [None])[0]
        )
    else:  # rest-json: "POST /DescribeJobs"
        operation = path.strip("/").split("/", 1)[0] or None
    return ProxiedRequest(
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        service=service,
        region=region,
        operation=operation,
    )


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Latency:
    seconds: float


@dataclass(frozen=True)
class BlackHole:
    pass


@dataclass(frozen=True)
class Reset:
    after_forward: bool


@dataclass(frozen=True)
class Status:
    code: int
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Rewrite:
    transform: Callable[[bytes], bytes]
    fix_crc32: bool = True


Action = Latency | BlackHole | Reset | Status | Rewrite


def latency(seconds: float) -> Latency:
    """Wait ``seconds``, then forward."""
    if seconds < 0:
        raise ValueError("latency must not be negative")
    return Latency(seconds)


def black_hole() -> BlackHole:
    """Accept the request and never answer, until the client gives up or the proxy closes."""
    return BlackHole()


def reset_before_forward() -> Reset:
    """Reset the client's connection (TCP RST); the upstream never sees the request."""
    return Reset(after_forward=False)


def reset_after_forward() -> Reset:
    """Forward, let the upstream apply the request, then reset the client's connection
    instead of answering: the write lands, the response is lost."""
    return Reset(after_forward=True)


def status(
    code: int,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    body: bytes | None = None,
) -> Status:
    """Answer ``code`` without forwarding: ``json_body`` serialized (Content-Type
    application/json unless ``headers`` say otherwise), or raw ``body`` bytes."""
    if json_body is not None and body is not None:
        raise ValueError("give json_body or body, not both")
    response_headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode()
        if not any(name.lower() == "content-type" for name in response_headers):
            response_headers["Content-Type"] = "application/json"
    return Status(code, body or b"", response_headers)


def rewrite(transform: Callable[[bytes], bytes], *, fix_crc32: bool = True) -> Rewrite:
    """Forward, then pass the upstream's answer on with ``transform(body)`` as its body.

    DynamoDB signs its bodies with ``x-amz-crc32``. By default the checksum is recomputed
    (a server that answered this body); ``fix_crc32=False`` keeps the upstream's, as a
    body damaged on the wire would arrive."""
    return Rewrite(transform, fix_crc32=fix_crc32)


def rewrite_json(transform: Callable[[Any], Any]) -> Rewrite:
    """Forward, then pass on ``transform(parsed JSON body)``, serialized again."""
    return Rewrite(lambda body: json.dumps(transform(json.loads(body))).encode())


def truncate(fraction: float = 0.5, *, fix_crc32: bool = True) -> Rewrite:
    """Forward, then pass on only the first ``fraction`` of the body (a cut-off JSON)."""
    return rewrite(lambda body: body[: int(len(body) * fraction)], fix_crc32=fix_crc32)


def repeat_next_token(member: str = "nextToken") -> Rewrite:
    """Forward; remember the first page token the upstream sends and put it on every later
    answer, so a paged listing never ends (the same token comes back forever)."""
    first: list[Any] = []

    def transform(page: Any) -> Any:
        if not first and page.get(member):
            first.append(page[member])
        if first:
            page[member] = first[0]
        return page

    return rewrite_json(transform)


# ------------------------------------------------------------ AWS error answers


def dynamodb_error(
    code: str, message: str = "injected by the fault proxy", *, http_status: int = 400
) -> Status:
    """A DynamoDB JSON 1.0 error (``ThrottlingException``,
    ``ProvisionedThroughputExceededException``, ``ValidationException`` at 400;
    ``InternalServerError`` at 500)."""
    return status(
        http_status,
        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message},
        {"Content-Type": "application/x-amz-json-1.0"},
    )


def drs_error(
    code: str,
    message: str = "injected by the fault proxy",
    *,
    http_status: int,
    headers: Mapping[str, str] | None = None,
    **members: Any,
) -> Status:
    """A DRS rest-json error: ``x-amzn-ErrorType`` names the code, the body its members."""
    return status(
        http_status,
        {"message": message, **members},
        {"x-amzn-ErrorType": code, **(headers or {})},
    )


def drs_throttle(retry_after_seconds: int | None = None) -> Status:
    """DRS's 429 ``ThrottlingException``, with ``retryAfterSeconds`` in the body and the
    ``Retry-After`` header (where botocore's model reads it from) when given."""
    if retry_after_seconds is None:
        return drs_error("ThrottlingException", "Rate exceeded", http_status=429, serviceCode="drs")
    return drs_error(
        "ThrottlingException",
        "Rate exceeded",
        http_status=429,
        headers={"Retry-After": str(retry_after_seconds)},
        serviceCode="drs",
        retryAfterSeconds=str(retry_after_seconds),
    )


def ec2_error(
    code: str, message: str = "injected by the fault proxy", *, http_status: int = 400
) -> Status:
    """An EC2 query-protocol XML error (``RequestLimitExceeded`` is 503 on the wire)."""
    xml = (
        "<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error>"
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
    )
    return status(http_status, headers={"Content-Type": "text/xml"}, body=xml.encode())


# ---------------------------------------------------------------- rules and records


@dataclass(eq=False)
class Rule:
    """When a request matches, ``action`` happens instead of a plain forward.

    ``times`` None fires forever; otherwise the rule expires after firing that often. With
    ``probability`` below 1 a matching request is drawn for (the proxy's seeded
    generator); one that loses the draw is matched against the next rules.
    """

    action: Action
    operation: str | None = None
    service: str | None = None
    when: Callable[[ProxiedRequest], bool] | None = None
    times: int | None = None
    probability: float = 1.0
    name: str = ""
    fired: int = 0

    @property
    def expired(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, request: ProxiedRequest) -> bool:
        return (
            (self.operation is None or request.operation == self.operation)
            and (self.service is None or request.service == self.service)
            and (self.when is None or bool(self.when(request)))
        )


@dataclass(eq=False)
class Record:
    """One request the proxy saw. ``outcome`` is None while it is still being handled."""

    at: float  # monotonic seconds when the request arrived
    method: str
    path: str
    service: str | None
    region: str | None
    operation: str | None
    rule: Rule | None
    outcome: Outcome | None = None
    status: int | None = None  # what the client received (None: reset, black hole, gave up)
    upstream_status: int | None = None  # what the upstream answered, when it was asked
    client_gave_up: bool = False
    finished_at: float | None = None
    request: ProxiedRequest | None = field(default=None, repr=False)  # when keep_requests

    @property
    def reached_upstream(self) -> bool:
        return self.upstream_status is not None


@dataclass
class _Upstream:
    status: int
    headers: CIMultiDict[str]
    body: bytes = field(repr=False)


class FaultProxy:
    def __init__(
        self,
        upstream_url: str,
        *,
        seed: int = 0,
        host: str = LOOPBACK,
        port: int = 0,
        upstream_timeout: float = 30.0,
        keep_requests: bool = False,
    ) -> None:
        """``keep_requests``: keep each parsed request (body included) on its record."""
        self.upstream_url = upstream_url.rstrip("/")
        self.keep_requests = keep_requests
        self.rng = random.Random(seed)
        self.rules: list[Rule] = []
        self.records: list[Record] = []
        self._host = host
        self._port = port
        self._upstream_timeout = upstream_timeout
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the proxy is not started: use `async with FaultProxy(...)`")
        return self._url

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._upstream_timeout),
            auto_decompress=True,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up releases its black hole at once.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._url = f"http://{bound_host}:{bound_port}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ rules

    def add(
        self,
        action: Action,
        *,
        operation: str | None = None,
        service: str | None = None,
        when: Callable[[ProxiedRequest], bool] | None = None,
        times: int | None = None,
        probability: float = 1.0,
        name: str = "",
    ) -> Rule:
        """Add a rule after the existing ones (the first live match fires)."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (None: forever)")
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        rule = Rule(
            action=action,
            operation=operation,
            service=service,
            when=when,
            times=times,
            probability=probability,
            name=name or f"{type(action).__name__.lower()} {service or '*'}:{operation or '*'}",
        )
        self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        self.rules.remove(rule)

    def clear_rules(self) -> None:
        self.rules.clear()

    def _choose(self, request: ProxiedRequest) -> Rule | None:
        # Synchronous from match to ``fired += 1``: concurrent requests cannot both take
        # the last firing of a ``times`` rule.
        for rule in self.rules:
            if rule.expired or not rule.matches(request):
                continue
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            rule.fired += 1
            return rule
        return None

    # ------------------------------------------------------------ records

    def select(
        self,
        operation: str | None = None,
        *,
        service: str | None = None,
        outcome: Outcome | str | None = None,
        rule: Rule | None = None,
    ) -> list[Record]:
        return [
            record
            for record in self.records
            if (operation is None or record.operation == operation)
            and (service is None or record.service == service)
            and (outcome is None or record.outcome == outcome)
            and (rule is None or record.rule is rule)
        ]

    def count(
        self,
        operation: str | None = None,
        *,
        service: str | None = None,
        outcome: Outcome | str | None = None,
        rule: Rule | None = None,
    ) -> int:
        return len(self.select(operation, service=service, outcome=outcome, rule=rule))

    def upstream_count(self, operation: str | None = None, *, service: str | None = None) -> int:
        """Requests the upstream answered (whatever the client then got)."""
        return sum(r.reached_upstream for r in self.select(operation, service=service))

    async def wait_until(self, predicate: Callable[[], bool], *, within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; it is checked whenever a record changes.
        Raises TimeoutError after ``within`` seconds."""
        async with asyncio.timeout(within):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _finish(self, record: Record, outcome: Outcome, *, status: int | None = None) -> None:
        record.outcome = outcome
        record.status = status
        record.finished_at = time.monotonic()
        self._notify()

    # ------------------------------------------------------------ handling

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        parsed = parse_request(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=request.headers,
            body=body,
        )
        rule = self._choose(parsed)
        record = Record(
            at=time.monotonic(),
            method=parsed.method,
            path=parsed.path,
            service=parsed.service,
            region=parsed.region,
            operation=parsed.operation,
            rule=rule,
            request=parsed if self.keep_requests else None,
        )
        self.records.append(record)
        self._notify()
        try:
            return await self._act(request, rule.action if rule else None, record)
        except asyncio.CancelledError:
            # The client closed its connection (or the proxy is closing).
            record.client_gave_up = not self._closing.is_set()
            if record.outcome is None:
                record.finished_at = time.monotonic()
            self._notify()
            raise

    async def _act(  # noqa: PLR0911 - one return per action: the match is the table of them
        self, request: web.Request, action: Action | None, record: Record
    ) -> web.StreamResponse:
        match action:
            case None:
                return await self._pass_on(request, record)
            case Latency(seconds):
                await asyncio.sleep(seconds)
                return await self._pass_on(request, record)
            case Status(code, body, headers):
                self._finish(record, Outcome.INJECTED, status=code)
                return web.Response(status=code, body=body, headers=headers)
            case Reset(after_forward=True):
                upstream = await self._forward(request, record)
                if upstream is None:
                    return _bad_gateway()
                self._finish(record, Outcome.RESET)
                return _reset(request)
            case Reset(after_forward=False):
                self._finish(record, Outcome.RESET)
                return _reset(request)
            case BlackHole():
                self._finish(record, Outcome.BLACK_HOLED)
                await self._closing.wait()
                transport = request.transport
                if transport is not None:
                    transport.abort()
                return web.Response(status=204)  # never written: the connection is gone
            case Rewrite(transform, fix_crc32):
                upstream = await self._forward(request, record)
                if upstream is None:
                    return _bad_gateway()
                new_body = transform(upstream.body)
                if fix_crc32 and "x-amz-crc32" in upstream.headers:
                    upstream.headers["x-amz-crc32"] = str(zlib.crc32(new_body) & 0xFFFFFFFF)
                self._finish(record, Outcome.REWRITTEN, status=upstream.status)
                return web.Response(status=upstream.status, body=new_body, headers=upstream.headers)
        raise TypeError(f"unknown action {action!r}")

    async def _pass_on(self, request: web.Request, record: Record) -> web.StreamResponse:
        upstream = await self._forward(request, record)
        if upstream is None:
            return _bad_gateway()
        self._finish(record, Outcome.FORWARDED, status=upstream.status)
        return web.Response(status=upstream.status, body=upstream.body, headers=upstream.headers)

    async def _forward(self, request: web.Request, record: Record) -> _Upstream | None:
        """The upstream's answer, or None (and the record finished) when it is unreachable."""
        if self._session is None:
            raise RuntimeError("the proxy is not started")
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED
        )
        try:
            async with self._session.request(
                request.method,
                URL(self.upstream_url + request.raw_path, encoded=True),
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
            ) as response:
                body = await response.read()
                answer = _Upstream(
                    status=response.status,
                    headers=CIMultiDict(
                        (name, value)
                        for name, value in response.headers.items()
                        if name.lower() not in _NOT_FORWARDED
                    ),
                    body=body,
                )
        except (aiohttp.ClientError, TimeoutError):
            self._finish(record, Outcome.UPSTREAM_FAILED, status=502)
            return None
        record.upstream_status = answer.status
        return answer


def _reset(request: web.Request) -> web.StreamResponse:
    """Close the client's connection with RST: SO_LINGER on with a zero timeout makes
    close() discard the socket instead of the FIN handshake."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # aiohttp finds the transport closed and drops this response quietly.
    return web.Response(status=204)


def _bad_gateway() -> web.Response:
    return web.Response(status=502, text="fault proxy: the upstream could not be reached")


__all__ = [
    "LOOPBACK",
    "Action",
    "BlackHole",
    "FaultProxy",
    "Latency",
    "Outcome",
    "ProxiedRequest",
    "Record",
    "Reset",
    "Rewrite",
    "Rule",
    "Status",
    "black_hole",
    "drs_error",
    "drs_throttle",
    "dynamodb_error",
    "ec2_error",
    "latency",
    "parse_request",
    "repeat_next_token",
    "reset_after_forward",
    "reset_before_forward",
    "rewrite",
    "rewrite_json",
    "status",
    "truncate",
]
