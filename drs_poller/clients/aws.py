"""AWS clients: one per service, account and region, created once and reused.

Every JSON response is checked before botocore parses it. botocore turns a body that
is not JSON into ``{"message": body}`` and returns it as an answer, and with one SDK
attempt it never acts on DynamoDB's ``x-amz-crc32``: a truncated StatusIndex page
would read as "no executions", a truncated DescribeJobs as "no such jobs". A damaged
body raises :class:`DamagedResponseError` instead, which the caller retries.

The same hook hands over the big members of the calls that dominate the daemon's
CPU as ``json.loads`` made them: a DynamoDB Query page's ``Items``, a GetItem's
``Item`` and a BatchGetItem's ``Responses`` (the wire form already is the
attribute-value form botocore produces, binary aside; BatchGetItem on a lean index was
31 % of the daemon's CPU at W10k-accounts, almost all of it botocore's parser), and a
DRS DescribeJobs page's ``items`` (strings, lists and maps only: what
botocore would give, plus any member the model does not know, which the parser
ignores). botocore's shape-driven parser spent about five times as long on them as
``json.loads``.

Every client's connections use one TLS context per CA bundle (:class:`SharedTlsSession`),
not one each: aiobotocore loads the CA bundle into a new context for every client, about
0.4 MB of OpenSSL memory, and the DRS and EC2 clients of 200 account-regions made 155 MB
of it (W10k-accounts).
"""

from __future__ import annotations

import asyncio
import json
import zlib
from contextlib import AsyncExitStack
from functools import cache
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from botocore.context import get_context
from botocore.exceptions import BotoCoreError
from botocore.httpsession import create_urllib3_context, get_cert_path
from botocore.validate import ParamValidationDecorator

if TYPE_CHECKING:
    import ssl

    import aioboto3

    from drs_poller.clients.accounts import MemberAccounts
    from drs_poller.settings import Settings


def client_config(settings: Settings, *, pool: int) -> AioConfig:
    """Explicit timeouts, and one SDK attempt per call: ``Caller`` owns retries, and it
    honours Retry-After, which botocore's standard mode does not.

    botocore's client-side parameter validation is off: it walked every request again
    (the Waves twice in each write), 6 % of the daemon's CPU at W10k. Our requests are
    built by code that the tests run against moto and the DRS simulator, and a request
    that is still wrong is refused by the service as a ValidationException, which the
    caller treats as permanent, as it would a local validation error.

    Connections verify TLS as aiobotocore's do, with one context per CA bundle
    (:class:`SharedTlsSession`)."""
    return AioConfig(
        http_session_cls=SharedTlsSession,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        parameter_validation=False,
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=pool,
        user_agent_extra="drs-poller",
    )


@cache
def shared_tls_context(ca_bundle: str) -> ssl.SSLContext:
    """The TLS context of every client that verifies with ``ca_bundle``: built as
    aiobotocore builds one (botocore's urllib3-style context, the bundle loaded)."""
    context: ssl.SSLContext = create_urllib3_context()
    context.load_verify_locations(ca_bundle)
    return context


class SharedTlsSession(AIOHTTPSession):
    """aiobotocore's HTTP session, except that the connections of every client share one
    TLS context per CA bundle (an ``SSLContext`` serves any number of connections):
    aiobotocore makes a new one for each client, loading the CA bundle into it again.

    Where a client needs its own context (a proxy, a client certificate, verification
    off), aiobotocore's own connector is used. This overrides
    ``AIOHTTPSession._create_connector``, a private method; the aiobotocore version is
    pinned (requirements/lock.txt), and tests/integration/test_accounts.py fails if
    clients stop sharing the context or stop verifying."""

    def _create_connector(self, proxy_url: str | None) -> aiohttp.TCPConnector:
        own: Any = self  # the attributes AIOHTTPSession.__init__ sets (not in its stubs)
        ca_bundle = get_cert_path(own._verify) if own._verify else None  # noqa: SLF001
        if proxy_url or own._cert_file or not isinstance(ca_bundle, str):  # noqa: SLF001
            connector: aiohttp.TCPConnector = getattr(super(), "_create_connector")(proxy_url)  # noqa: B009
            return connector
        return aiohttp.TCPConnector(
            limit=own._max_pool_connections,  # noqa: SLF001
            ssl=shared_tls_context(ca_bundle),
            **own._connector_args,  # noqa: SLF001
        )


class DamagedResponseError(BotoCoreError):
    """A 2xx response whose body is not what was sent: not JSON, or a checksum mismatch."""

    fmt = "damaged response to {operation}: {problem}"


_JSON_PROTOCOLS = frozenset({"json", "rest-json"})
_BINARY_MARKERS = (b'"B":', b'"BS":')
# (service, operation) -> the member handed over as json.loads made it.
_FAST_MEMBERS = {
    ("dynamodb", "Query"): "Items",
    ("dynamodb", "GetItem"): "Item",
    ("dynamodb", "BatchGetItem"): "Responses",
    ("drs", "DescribeJobs"): "items",
    # Strings, one boolean and a map of longs: json.loads gives what botocore's parser
    # would, for the call the daemon makes most at scale (one job a call).
    ("drs", "DescribeJobLogItems"): "items",
}


def _json_object(body: bytes | bytearray, *, operation: str) -> Any:
    """The body's JSON, decoded by orjson. At W10k, json.loads was 12 % of the daemon's
    profile samples (DescribeJobs answers above all); for a 1 MB answer of 1,000 jobs,
    orjson took 2.5 to 2.7 ms where json.loads took 3.4 ms. What orjson refuses and the
    standard library reads (an integer past 64 bits) is read by the standard library;
    what neither reads is damaged."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(body)
        except ValueError:
            raise DamagedResponseError(operation=operation, problem="body is not JSON") from None


def check_response_body(
    *,
    operation_model: Any,
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any],
    **_: Any,
) -> None:
    """``before-parse`` handler: reject a damaged body; take the big lists as they are."""
    if not 200 <= int(response_dict.get("status_code") or 0) < 300:
        return
    if operation_model.service_model.resolved_protocol not in _JSON_PROTOCOLS:
        return
    body = response_dict.get("body")
    if not isinstance(body, bytes | bytearray):
        return  # a streaming body: none of the operations we call
    operation = f"{operation_model.service_model.service_name}:{operation_model.name}"
    expected_crc = (response_dict.get("headers") or {}).get("x-amz-crc32")
    if expected_crc is not None and str(zlib.crc32(body)) != str(expected_crc).strip():
        raise DamagedResponseError(operation=operation, problem="x-amz-crc32 does not match")
    if not body.strip():
        return
    parsed = _json_object(body, operation=operation)
    if not isinstance(parsed, dict):
        raise DamagedResponseError(operation=operation, problem="body is not a JSON object")
    member = _FAST_MEMBERS.get((operation_model.service_model.service_name, operation_model.name))
    if (
        member is not None
        and isinstance(parsed.get(member), list | dict)
        and not any(marker in body for marker in _BINARY_MARKERS)
    ):
        customized_response_dict[member] = parsed.pop(member)
        response_dict["body"] = json.dumps(parsed).encode()


# (service, operation) whose request body is the parameters as given: their input
# shapes rename no member and hold no timestamp, and their only blobs are the
# AttributeValues' B and BS (bytes, which json.dumps refuses: such a request goes
# through botocore's own serializer).
_PLAIN_BODIES = frozenset({("dynamodb", "UpdateItem"), ("dynamodb", "PutItem")})


class PlainJsonBodies:
    """A client's JSON-protocol serializer, except that the body of the operations in
    :data:`_PLAIN_BODIES` is ``json.dumps`` of the parameters, without botocore's walk of
    every AttributeValue against the service model: that walk gives back the same
    parameters for them, and was about half of the CPU of a write at W10k (4.9 % of
    the daemon's profile samples). The request's method, headers and target are still
    botocore's. tests/unit/test_unit_plain_bodies.py checks that both give the same
    request for parameters with every attribute type."""

    def __init__(self, inner: Any, service: str) -> None:
        self._inner = inner
        self._service = service

    def serialize_to_request(self, parameters: dict[str, Any], operation_model: Any) -> Any:
        if (self._service, operation_model.name) in _PLAIN_BODIES:
            try:
                body = json.dumps(parameters).encode()
            except TypeError:
                pass  # bytes in a B or BS value: botocore encodes them in base64
            else:
                serialized = self._inner.serialize_to_request({}, operation_model)
                serialized["body"] = body
                return serialized
        return self._inner.serialize_to_request(parameters, operation_model)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def plain_json_bodies(client: Any, service: str) -> None:
    """Put :class:`PlainJsonBodies` in front of ``client``'s serializer (botocore's
    ``BaseClient._serializer``, a private attribute; the version is pinned in
    requirements/lock.txt). Only DynamoDB has operations it changes, and only a client
    that does not validate its parameters (:func:`client_config`) is changed: the
    wrapper asks botocore for the request of empty parameters. (Such a client's
    serializer is not a ``ParamValidationDecorator``; its ``meta.config`` still says
    ``parameter_validation`` True.)"""
    validates = isinstance(client._serializer, ParamValidationDecorator)  # noqa: SLF001
    if not validates and any(owner == service for owner, _ in _PLAIN_BODIES):
        client._serializer = PlainJsonBodies(client._serializer, service)  # noqa: SLF001


# A client's User-Agent strings, one per set of feature ids (the ``m/`` component): a
# handful in practice; past this many, it is built as botocore builds it.
_USER_AGENTS_PER_CLIENT = 64


def cache_user_agent(client: Any) -> None:
    """Build ``client``'s User-Agent header once for each set of feature ids, not twice
    for every request. botocore builds it from the session, the client's config and the
    environment, which do not change once the client exists, and from the feature ids
    of the request's context and of the client (botocore.useragent
    ``UserAgentString._build_feature_metadata``), which are the cache's key. Building
    it twice was 18 % of the CPU of a call in a cProfile of 3,000 DescribeJobLogItems
    against a local endpoint (without cProfile: 371 to 385 µs a call before, 301 to
    323 µs after);
    tests/unit/test_unit_user_agent.py checks both give the same string. This sets
    ``to_string`` on the client's ``_user_agent_creator``, a private attribute; the
    botocore version is pinned (requirements/lock.txt)."""
    creator = getattr(client, "_user_agent_creator", None)
    if creator is None or "to_string" in vars(creator):
        return
    build = creator.to_string
    built: dict[tuple[frozenset[str], frozenset[str]], str] = {}

    def to_string() -> str:
        context = get_context()
        features = (
            frozenset(context.features) if context is not None else frozenset(),
            frozenset(creator._client_features or ()),  # noqa: SLF001
        )
        header = built.get(features)
        if header is None:
            header = build()
            if len(built) < _USER_AGENTS_PER_CLIENT:
                built[features] = header
        return header

    creator.to_string = to_string


# Services whose client class is built once per process and shared by every client of
# the service (:func:`share_client_classes`). Only services with one client per place
# (account, region), and with no client-class customisation in boto3 or aioboto3.
SHARED_CLIENT_CLASSES = frozenset({"drs", "ec2"})
_client_classes: dict[tuple[str, str | None], type] = {}


def share_client_classes() -> None:
    """Build the DRS and EC2 client classes once per process, not once per client.

    botocore builds a new class for every client it creates, with a method and a
    docstring object per operation of the service: 1.2 MB for each EC2 client (its
    ~700 operations; tracemalloc, aiobotocore 2.25.1). With clients per place (issue
    15), the DRS and EC2 clients of 200 account-regions took 275 MB of RSS, and 41 MB
    with the classes shared. The methods close over the operation's name
    alone, and each client keeps its own ``meta`` (service model, endpoint, events,
    credentials), so one class serves every client of a service.

    This replaces ``AioClientCreator._create_client_class``, a private method; the
    aiobotocore version is pinned (requirements/lock.txt) and
    tests/integration/test_accounts.py fails if clients stop sharing their class.
    Idempotent."""
    from aiobotocore.client import AioClientCreator  # noqa: PLC0415 - patched once

    original = getattr(AioClientCreator, "_create_client_class")  # noqa: B009 - private, untyped
    if getattr(original, "_drs_poller_shared", False):
        return

    async def shared(self: Any, service_name: str, service_model: Any) -> type:
        if service_name not in SHARED_CLIENT_CLASSES:
            return await original(self, service_name, service_model)  # type: ignore[no-any-return]
        key = (service_name, service_model.api_version)
        cls = _client_classes.get(key)
        if cls is None:
            cls = _client_classes[key] = await original(self, service_name, service_model)
        return cls

    shared._drs_poller_shared = True  # type: ignore[attr-defined]  # noqa: SLF001
    setattr(AioClientCreator, "_create_client_class", shared)  # noqa: B010 - see above


class ClientPool:
    """Lazily opened clients keyed by (service, account, region), closed together.

    Account None is the daemon's own (its task role's credentials); another account's
    clients use that account's session from :attr:`members` (clients/accounts.py), whose
    credentials botocore refreshes. A wave whose AccountId is the daemon's own account
    uses the task role directly."""

    def __init__(
        self,
        *,
        session: aioboto3.Session,
        settings: Settings,
        endpoints: dict[str, str | None],
    ) -> None:
        share_client_classes()
        self._session = session
        self._settings = settings
        self._endpoints = endpoints
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str, str | None, str], Any] = {}
        self._lock = asyncio.Lock()
        # Member accounts' sessions (issue 15); the daemon sets it once the Caller exists.
        self.members: MemberAccounts | None = None

    @property
    def session(self) -> aioboto3.Session:
        """The daemon's own session (its task role's credentials)."""
        return self._session

    async def get(self, service: str, region: str, *, account: str | None = None) -> Any:
        """The client of ``service`` in ``region`` of ``account`` (None: the daemon's own).
        Raises :class:`~drs_poller.clients.accounts.AccountUnreachableError` while a
        member account's credentials cannot be had."""
        session = self._session
        if account is not None:
            if self.members is None:
                raise RuntimeError("member accounts are not set up")  # a wiring bug
            if await self.members.is_own(account):
                account = None
            else:
                # Every time: the credentials are refreshed here, outside any gate.
                session = await self.members.session_for(account)
        client = self._clients.get((service, account, region))
        if client is not None:
            return client
        async with self._lock:
            client = self._clients.get((service, account, region))
            if client is None:
                pool = max(self._settings.max_concurrent_calls_per_region * 2, 10)
                if service == "dynamodb":
                    pool = max(self._settings.max_concurrent_writes * 2, 10)
                opened = await self._stack.enter_async_context(
                    session.client(
                        service,
                        region_name=region,
                        endpoint_url=self._endpoints.get(service),
                        config=client_config(self._settings, pool=pool),
                    )
                )
                opened.meta.events.register("before-parse", check_response_body)
                plain_json_bodies(opened, service)
                cache_user_agent(opened)
                self._clients[(service, account, region)] = client = opened
        return client

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._clients.clear()
