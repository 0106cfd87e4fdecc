"""The fault proxy, through the real aiobotocore clients against moto server and the
DRS simulator; then how the project's retrying ``Caller`` classifies each fault it injects.

What arrives through aiobotocore (``retries.total_max_attempts = 1``), measured here:

* a TCP reset, before or after the upstream saw the request:
  ``botocore.exceptions.EndpointConnectionError`` wrapping
  ``aiohttp.ClientOSError(104, 'Connection reset by peer')``;
* a black hole, past the client's read timeout: ``botocore.exceptions.ReadTimeoutError``
  wrapping ``aiohttp.SocketTimeoutError``;
* a black-holed connection the proxy drops when it closes:
  ``botocore.exceptions.ConnectionClosedError`` wrapping
  ``aiohttp.ServerDisconnectedError``;
* a 200 whose JSON is cut short: no error at all. botocore parses an unparseable body
  into ``{"message": ...}``, so the result simply lacks its members; for DynamoDB even a
  stale ``x-amz-crc32`` is not caught, because the checksum is only a retry reason.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import random
import time
import uuid
from typing import Any

import aioboto3
import aiohttp
import botocore.config
import pytest
from aiohttp import web
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from faultproxy import (
    FaultProxy,
    Outcome,
    black_hole,
    drs_error,
    drs_throttle,
    dynamodb_error,
    ec2_error,
    latency,
    parse_request,
    repeat_next_token,
    reset_after_forward,
    reset_before_forward,
    rewrite,
    rewrite_json,
    status,
    truncate,
)
from yarl import URL

from drs_poller.clients.aws import ClientPool
from drs_poller.clients.calling import AwsCallError, Caller
from drs_poller.clients.drs import DrsAdapter
from drs_poller.clients.paging import PagingError, paginate
from drs_poller.clock import ManualClock
from drs_poller.core.backoff import BackoffPolicy, ErrorKind
from drs_poller.core.models import JOB_NOT_FOUND, JobStatus, JobView, Unknown
from drs_poller.core.places import Place
from drs_poller.local.items import ServerSpec
from drs_poller.local.stack import FAKE_CREDENTIALS, LOOPBACK
from drs_poller.observability.metrics import Metrics
from drs_poller.settings import load_settings
from drs_poller.simulator.service import DrsSimulator, serve_drs_simulator
from drs_poller.simulator.timelines import (
    JobScript,
    ServerScript,
    ServerSnapshot,
    Snapshot,
    new_job_id,
    new_source_server_id,
)

REGION = "us-east-1"
START = 1_800_000_000.0


def _session() -> aioboto3.Session:
    return aioboto3.Session(**FAKE_CREDENTIALS, region_name=REGION)


def _client(service: str, proxy: FaultProxy, *, read_timeout: float = 10.0) -> Any:
    """A real client through the proxy, one SDK attempt (as the daemon configures it)."""
    return _session().client(
        service,
        endpoint_url=proxy.url,
        config=botocore.config.Config(
            connect_timeout=2,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )


# ---------------------------------------------------------------- fixtures


@pytest.fixture
async def ddb_proxy(moto_url):
    async with FaultProxy(moto_url, seed=7) as proxy:
        yield proxy


@pytest.fixture
async def ddb(ddb_proxy):
    async with _client("dynamodb", ddb_proxy) as client:
        yield client


@pytest.fixture
async def table(moto_url):
    """A fresh table, made straight on moto so the proxy's records start empty."""
    name = f"faults-{uuid.uuid4().hex[:12]}"
    async with _session().client("dynamodb", endpoint_url=moto_url) as direct:
        await direct.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        await direct.put_item(TableName=name, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        yield name
        await direct.delete_table(TableName=name)


@pytest.fixture
def simulator() -> DrsSimulator:
    return DrsSimulator(clock=ManualClock(start=START))


@pytest.fixture
async def drs_url(simulator):
    async with serve_drs_simulator(simulator, host=LOOPBACK) as url:
        yield url


@pytest.fixture
async def drs_proxy(drs_url):
    async with FaultProxy(drs_url, seed=7) as proxy:
        yield proxy


@pytest.fixture
async def drs(drs_proxy):
    async with _client("drs", drs_proxy) as client:
        yield client


_rng = random.Random(99)


def add_jobs(simulator: DrsSimulator, count: int) -> list[str]:
    """``count`` launched one-server drill jobs in REGION; returns their ids."""
    ids = []
    for _ in range(count):
        server = new_source_server_id(_rng)
        job = new_job_id(_rng)
        simulator.add_job(
            JobScript(
                job_id=job,
                region=REGION,
                is_drill=True,
                created_at=START,
                servers=(ServerScript(source_server_id=server),),
                timeline=(Snapshot(0, "STARTED", {server: ServerSnapshot("IN_PROGRESS")}),),
            )
        )
        ids.append(job)
    return ids


async def get_n(ddb, table: str) -> str | None:
    item = (await ddb.get_item(TableName=table, Key={"pk": {"S": "a"}}, ConsistentRead=True)).get(
        "Item"
    )
    return None if item is None else item["n"]["N"]


# ---------------------------------------------------------------- parsing, pure


@pytest.mark.parametrize(
    ("headers", "path", "query", "body", "expected"),
    [
        (
            {
                "X-Amz-Target": "DynamoDB_20120810.UpdateItem",
                "Authorization": "AWS4-HMAC-SHA256 Credential=AK/20261125/eu-west-1/dynamodb/"
                "aws4_request, SignedHeaders=host, Signature=0",
            },
            "/",
            {},
            b'{"TableName": "t"}',
            ("dynamodb", "eu-west-1", "UpdateItem"),
        ),
        (
            {"X-Amz-Target": "DynamoDB_20120810.GetItem"},
            "/",
            {},
            b"{}",
            ("dynamodb", None, "GetItem"),
        ),
        (
            {
                "Content-Type": "application/json",
                "Authorization": "AWS4-HMAC-SHA256 Credential=AK/20261125/us-west-2/drs/"
                "aws4_request, SignedHeaders=host, Signature=0",
            },
            "/DescribeJobs",
            {},
            b"{}",
            ("drs", "us-west-2", "DescribeJobs"),
        ),
        (
            {
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "Authorization": "AWS4-HMAC-SHA256 Credential=AK/20261125/us-east-1/ec2/"
                "aws4_request, SignedHeaders=host, Signature=0",
            },
            "/",
            {},
            b"Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-1",
            ("ec2", "us-east-1", "DescribeInstances"),
        ),
        ({}, "/", {"Action": "RunInstances"}, b"", (None, None, "RunInstances")),
        ({}, "/", {}, b"", (None, None, None)),
    ],
    ids=["dynamodb", "dynamodb-unsigned", "drs-rest-json", "ec2-form", "ec2-query", "nothing"],
)
def test_service_region_and_operation_are_read_from_the_wire(headers, path, query, body, expected):
    parsed = parse_request(method="POST", path=path, query=query, headers=headers, body=body)
    assert (parsed.service, parsed.region, parsed.operation) == expected


def test_request_bodies_parse_as_json_or_form():
    as_json = parse_request(method="POST", path="/", query={}, headers={}, body=b'{"a": 1}')
    assert as_json.json == {"a": 1}
    broken = parse_request(method="POST", path="/", query={}, headers={}, body=b'{"a": ')
    assert broken.json is None
    form = parse_request(method="POST", path="/", query={}, headers={}, body=b"Action=X&B=c")
    assert form.form == {"Action": "X", "B": "c"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"times": 0}, "times"),
        ({"probability": 0.0}, "probability"),
        ({"probability": 1.5}, "probability"),
    ],
)
def test_bad_rules_are_refused(options, message):
    proxy = FaultProxy("http://127.0.0.1:9")
    with pytest.raises(ValueError, match=message):
        proxy.add(black_hole(), **options)


def test_the_url_is_only_there_once_started():
    with pytest.raises(RuntimeError, match="not started"):
        _ = FaultProxy("http://127.0.0.1:9").url


# ---------------------------------------------------------------- pass-through


async def test_dynamodb_passes_through_unchanged(ddb_proxy, ddb):
    name = f"pass-{uuid.uuid4().hex[:12]}"
    await ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"pk": {"S": "x"}, "list": {"L": [{"N": "1"}, {"S": "two"}]}, "m": {"M": {}}}
    await ddb.put_item(TableName=name, Item=item)
    got = await ddb.get_item(TableName=name, Key={"pk": {"S": "x"}}, ConsistentRead=True)
    await ddb.delete_table(TableName=name)

    assert got["Item"] == item
    assert [(r.service, r.region, r.operation, r.outcome, r.status) for r in ddb_proxy.records] == [
        ("dynamodb", REGION, op, Outcome.FORWARDED, 200)
        for op in ("CreateTable", "PutItem", "GetItem", "DeleteTable")
    ]
    assert all(r.rule is None and r.reached_upstream for r in ddb_proxy.records)


async def test_drs_describe_jobs_passes_through_unchanged(simulator, drs_url, drs_proxy, drs):
    jobs = add_jobs(simulator, 3)
    through_proxy = await drs.describe_jobs(filters={"jobIDs": jobs})
    async with _session().client("drs", endpoint_url=drs_url) as direct:
        straight = await direct.describe_jobs(filters={"jobIDs": jobs})

    assert through_proxy["items"] == straight["items"]
    assert sorted(job["jobID"] for job in through_proxy["items"]) == sorted(jobs)
    assert simulator.count("DescribeJobs", REGION) == 2
    assert drs_proxy.count("DescribeJobs", service="drs", outcome=Outcome.FORWARDED) == 1


async def test_ec2_query_protocol_is_matched_by_action(ddb_proxy):
    async with _client("ec2", ddb_proxy) as ec2:
        await ec2.describe_instances()
        ddb_proxy.add(
            ec2_error("RequestLimitExceeded", http_status=503), operation="DescribeInstances"
        )
        with pytest.raises(ClientError) as raised:
            await ec2.describe_instances()

    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert [(r.service, r.operation, r.outcome) for r in ddb_proxy.records] == [
        ("ec2", "DescribeInstances", Outcome.FORWARDED),
        ("ec2", "DescribeInstances", Outcome.INJECTED),
    ]


async def test_the_upstream_receives_exactly_what_the_client_sent():
    received: list[tuple[str, str, dict[str, str], bytes]] = []

    async def echo(request: web.Request) -> web.Response:
        received.append(
            (request.method, request.raw_path, dict(request.headers), await request.read())
        )
        return web.json_response({"ok": True}, headers={"x-upstream": "yes"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    upstream = "http://{}:{}".format(*runner.addresses[0][:2])
    sent_headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AK/20261125/us-east-1/drs/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc",
        "X-Amz-Date": "20261125T000000Z",
        "Content-Type": "application/json",
        "Host": "drs.us-east-1.amazonaws.com",
    }
    body = json.dumps({"filters": {"jobIDs": ["drsjob-1"]}, "ü": "ß"}).encode()
    try:
        async with (
            FaultProxy(upstream) as proxy,
            aiohttp.ClientSession() as session,
            session.post(
                # encoded=True: yarl would otherwise normalise %2F before it left the client.
                URL(f"{proxy.url}/DescribeJobs?x=1&y=a%2Fb", encoded=True),
                data=body,
                headers=sent_headers,
            ) as response,
        ):
            answer = await response.json()
            upstream_header = response.headers.get("x-upstream")
    finally:
        await runner.cleanup()

    assert answer == {"ok": True}
    assert upstream_header == "yes"
    [(method, raw_path, headers, forwarded_body)] = received
    assert (method, raw_path, forwarded_body) == ("POST", "/DescribeJobs?x=1&y=a%2Fb", body)
    for name, value in sent_headers.items():
        assert headers[name] == value


async def test_an_unreachable_upstream_is_a_502(unused_port):
    async with (
        FaultProxy(f"http://{LOOPBACK}:{unused_port}") as proxy,
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/DescribeJobs", data=b"{}") as response,
    ):
        assert response.status == 502
    assert proxy.count(outcome=Outcome.UPSTREAM_FAILED) == 1


@pytest.fixture
def unused_port() -> int:
    import socket  # noqa: PLC0415 - only this fixture needs it

    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- resets


async def test_reset_after_forward_loses_the_response_but_the_write_lands(ddb_proxy, ddb, table):
    rule = ddb_proxy.add(reset_after_forward(), operation="UpdateItem", times=1)
    with pytest.raises(EndpointConnectionError) as raised:
        await ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "a"}},
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "42"}},
        )

    cause = raised.value.kwargs["error"]
    assert isinstance(cause, aiohttp.ClientOSError)
    assert cause.errno == errno.ECONNRESET
    assert await get_n(ddb, table) == "42"
    [record] = ddb_proxy.select("UpdateItem")
    assert (record.outcome, record.upstream_status, record.status) == (Outcome.RESET, 200, None)
    assert record.rule is rule
    assert rule.expired


async def test_reset_before_forward_never_reaches_the_upstream(ddb_proxy, ddb, table):
    ddb_proxy.add(reset_before_forward(), operation="UpdateItem", times=1)
    with pytest.raises(EndpointConnectionError) as raised:
        await ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "a"}},
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "42"}},
        )

    assert isinstance(raised.value.kwargs["error"], aiohttp.ClientOSError)
    assert await get_n(ddb, table) == "1"
    [record] = ddb_proxy.select("UpdateItem")
    assert record.outcome is Outcome.RESET
    assert not record.reached_upstream


# ---------------------------------------------------------------- black hole


async def test_black_hole_times_the_client_out_and_the_proxy_still_closes_promptly(moto_url, table):
    proxy = FaultProxy(moto_url)
    await proxy.start()
    try:
        proxy.add(black_hole(), operation="GetItem")
        async with _client("dynamodb", proxy, read_timeout=1.0) as ddb:
            started = time.monotonic()
            with pytest.raises(ReadTimeoutError) as raised:
                await ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})
            waited = time.monotonic() - started
        await proxy.wait_until(lambda: proxy.records[0].client_gave_up, within=2)
    finally:
        closing = time.monotonic()
        await proxy.close()
        closed_in = time.monotonic() - closing

    assert isinstance(raised.value.kwargs["error"], aiohttp.SocketTimeoutError)
    assert 0.9 <= waited < 3.0
    [record] = proxy.records
    assert (record.outcome, record.reached_upstream) == (Outcome.BLACK_HOLED, False)
    assert closed_in < 0.5


async def test_closing_drops_black_holed_requests_still_waiting(moto_url, table):
    proxy = FaultProxy(moto_url)
    await proxy.start()
    proxy.add(black_hole(), operation="GetItem")
    async with _client("dynamodb", proxy, read_timeout=30.0) as ddb:
        waiting = asyncio.create_task(ddb.get_item(TableName=table, Key={"pk": {"S": "a"}}))
        await proxy.wait_until(lambda: proxy.count(outcome=Outcome.BLACK_HOLED) == 1)
        closing = time.monotonic()
        await proxy.close()
        closed_in = time.monotonic() - closing
        with pytest.raises(ConnectionClosedError) as raised:
            await asyncio.wait_for(waiting, 5)

    assert closed_in < 0.5
    assert isinstance(raised.value.kwargs["error"], aiohttp.ServerDisconnectedError)
    assert not proxy.records[0].client_gave_up


# ---------------------------------------------------------------- injected answers


@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException"])
async def test_dynamodb_throttling_is_parsed_by_botocore(ddb_proxy, ddb, table, code):
    ddb_proxy.add(dynamodb_error(code), operation="PutItem", times=1)
    with pytest.raises(ClientError) as raised:
        await ddb.put_item(TableName=table, Item={"pk": {"S": "b"}})

    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    [record] = ddb_proxy.records
    assert (record.outcome, record.status, record.reached_upstream) == (
        Outcome.INJECTED,
        400,
        False,
    )
    async with _session().client("dynamodb", endpoint_url=ddb_proxy.upstream_url) as direct:
        missing = await direct.get_item(TableName=table, Key={"pk": {"S": "b"}})
    assert "Item" not in missing


async def test_drs_throttling_carries_retry_after(simulator, drs_proxy, drs):
    jobs = add_jobs(simulator, 1)
    drs_proxy.add(drs_throttle(retry_after_seconds=7), operation="DescribeJobs", times=1)
    with pytest.raises(ClientError) as raised:
        await drs.describe_jobs(filters={"jobIDs": jobs})

    response = raised.value.response
    assert response["Error"]["Code"] == "ThrottlingException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["retryAfterSeconds"] == "7"
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "7"
    assert simulator.count("DescribeJobs") == 0
    assert (await drs.describe_jobs(filters={"jobIDs": jobs}))["items"]
    assert simulator.count("DescribeJobs") == 1


async def test_a_bare_5xx_without_a_body_reaches_the_client_as_its_status(ddb_proxy, ddb, table):
    ddb_proxy.add(status(503, body=b"<html>Service Unavailable</html>"), operation="GetItem")
    with pytest.raises(ClientError) as raised:
        await ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


# ---------------------------------------------------------------- rewrites


async def test_a_truncated_json_body_arrives_as_is(simulator, drs_proxy, drs):
    jobs = add_jobs(simulator, 2)
    body = json.dumps({"filters": {"jobIDs": jobs}}).encode()
    headers = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=AK/20261125/{REGION}/drs/aws4_request, "
        "SignedHeaders=host, Signature=0",
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{drs_proxy.url}/DescribeJobs", data=body, headers=headers) as r:
            whole = await r.read()
        drs_proxy.add(truncate(0.5), operation="DescribeJobs")
        async with session.post(f"{drs_proxy.url}/DescribeJobs", data=body, headers=headers) as r:
            cut = await r.read()
            assert r.status == 200

    assert cut == whole[: len(whole) // 2]
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        json.loads(cut)
    # Through botocore the cut body raises nothing: the answer just has no items.
    answer = await drs.describe_jobs(filters={"jobIDs": jobs})
    assert "items" not in answer
    assert drs_proxy.count("DescribeJobs", outcome=Outcome.REWRITTEN) == 2


async def test_an_unknown_job_status_and_a_dropped_field_arrive(simulator, drs_proxy, drs):
    jobs = add_jobs(simulator, 2)

    def corrupt(page: dict[str, Any]) -> dict[str, Any]:
        first, second = sorted(page["items"], key=lambda job: job["jobID"])
        first["status"] = "PAUSED"
        del second["participatingServers"][0]["launchStatus"]
        return page

    drs_proxy.add(rewrite_json(corrupt), operation="DescribeJobs", times=1)
    answer = await drs.describe_jobs(filters={"jobIDs": jobs})

    first, second = sorted(answer["items"], key=lambda job: job["jobID"])
    assert first["status"] == "PAUSED"
    assert "launchStatus" not in second["participatingServers"][0]
    assert second["participatingServers"][0]["sourceServerID"]


async def test_a_repeating_next_token_arrives_and_paging_stops_on_it(simulator, drs_proxy, drs):
    simulator.page_size = 1
    jobs = add_jobs(simulator, 3)
    drs_proxy.add(repeat_next_token(), operation="DescribeJobs")

    first = await drs.describe_jobs(filters={"jobIDs": jobs})
    token = first["nextToken"]
    seen_jobs = [first["items"][0]["jobID"]]
    for _ in range(4):
        page = await drs.describe_jobs(filters={"jobIDs": jobs}, nextToken=token)
        assert page["nextToken"] == token
        seen_jobs.append(page["items"][0]["jobID"])
    assert len(set(seen_jobs)) == 2  # page one, then page two forever

    fetched: list[dict[str, Any]] = []

    async def fetch(request: dict[str, Any]) -> dict[str, Any]:
        fetched.append(request)
        return await drs.describe_jobs(**request)

    async def drain() -> None:
        async for _ in paginate(fetch, {"filters": {"jobIDs": jobs}}, what="DescribeJobs"):
            pass

    with pytest.raises(PagingError, match="repeated a page token"):
        await drain()
    assert [request.get("nextToken") for request in fetched] == [None, token]


async def test_a_rewrite_recomputes_dynamodb_crc32_unless_told_not_to(ddb_proxy, ddb, table):
    ddb_proxy.add(rewrite(lambda body: body.replace(b'"1"', b'"7"')), operation="GetItem", times=1)
    assert await get_n(ddb, table) == "7"  # botocore accepted the rewritten body's checksum

    ddb_proxy.add(
        rewrite(lambda body: body.replace(b'"1"', b'"8"'), fix_crc32=False),
        operation="GetItem",
        times=1,
    )
    # With one SDK attempt a checksum mismatch is not even detected (it is a retry reason).
    assert await get_n(ddb, table) == "8"


# ---------------------------------------------------------------- latency


async def test_latency_delays_the_answer_by_at_least_the_configured_time(ddb_proxy, ddb, table):
    ddb_proxy.add(latency(0.25), operation="GetItem", times=1)
    started = time.monotonic()
    assert await get_n(ddb, table) == "1"
    elapsed = time.monotonic() - started

    assert elapsed >= 0.25
    [record] = ddb_proxy.records
    assert record.outcome is Outcome.FORWARDED
    assert record.finished_at is not None
    assert record.finished_at - record.at >= 0.25


# ---------------------------------------------------------------- rules


async def test_a_rule_fires_its_times_then_expires(ddb_proxy, ddb, table):
    rule = ddb_proxy.add(dynamodb_error("ThrottlingException"), operation="GetItem", times=2)
    outcomes = []
    for _ in range(4):
        try:
            await get_n(ddb, table)
            outcomes.append("ok")
        except ClientError:
            outcomes.append("throttled")

    assert outcomes == ["throttled", "throttled", "ok", "ok"]
    assert (rule.fired, rule.expired) == (2, True)
    assert ddb_proxy.count("GetItem", outcome=Outcome.INJECTED) == 2
    assert ddb_proxy.count("GetItem", outcome="forwarded") == 2
    assert ddb_proxy.count("GetItem", rule=rule) == 2
    assert ddb_proxy.upstream_count("GetItem") == 2


async def test_a_forever_rule_fires_until_removed(ddb_proxy, ddb, table):
    rule = ddb_proxy.add(status(500, {"message": "boom"}), operation="GetItem")
    for _ in range(3):
        with pytest.raises(ClientError):
            await get_n(ddb, table)
    ddb_proxy.remove(rule)
    assert await get_n(ddb, table) == "1"
    assert rule.fired == 3
    assert not rule.expired


async def test_probability_draws_come_from_the_seeded_generator(moto_url, table):
    async with FaultProxy(moto_url, seed=42) as proxy, _client("dynamodb", proxy) as ddb:
        proxy.add(dynamodb_error("ThrottlingException"), operation="GetItem", probability=0.5)
        outcomes = []
        for _ in range(16):
            try:
                await get_n(ddb, table)
                outcomes.append(Outcome.FORWARDED)
            except ClientError:
                outcomes.append(Outcome.INJECTED)

    draws = random.Random(42)
    expected = [Outcome.INJECTED if draws.random() < 0.5 else Outcome.FORWARDED for _ in range(16)]
    assert outcomes == expected
    assert [r.outcome for r in proxy.records] == expected
    assert 0 < expected.count(Outcome.INJECTED) < 16


async def test_a_predicate_on_the_body_and_the_service_narrow_a_rule(ddb_proxy, ddb, table):
    ddb_proxy.add(status(500), service="drs")  # another service: never matches here
    only_b = ddb_proxy.add(
        dynamodb_error("ValidationException"),
        operation="PutItem",
        when=lambda request: request.json["Item"]["pk"]["S"] == "b",
    )
    await ddb.put_item(TableName=table, Item={"pk": {"S": "c"}})
    with pytest.raises(ClientError, match="ValidationException"):
        await ddb.put_item(TableName=table, Item={"pk": {"S": "b"}})

    assert [(r.outcome, r.rule) for r in ddb_proxy.records] == [
        (Outcome.FORWARDED, None),
        (Outcome.INJECTED, only_b),
    ]


async def test_the_first_live_matching_rule_wins(ddb_proxy, ddb, table):
    first = ddb_proxy.add(status(500), operation="GetItem", times=1)
    second = ddb_proxy.add(status(503), operation="GetItem", times=1)
    statuses = []
    for _ in range(3):
        try:
            await get_n(ddb, table)
            statuses.append(200)
        except ClientError as error:
            statuses.append(error.response["ResponseMetadata"]["HTTPStatusCode"])
    assert statuses == [500, 503, 200]
    assert (first.fired, second.fired) == (1, 1)


async def test_rules_change_while_requests_are_in_flight(ddb_proxy, ddb, table):
    slow = ddb_proxy.add(latency(0.2), operation="GetItem")
    in_flight = [asyncio.create_task(get_n(ddb, table)) for _ in range(3)]
    await ddb_proxy.wait_until(lambda: ddb_proxy.count("GetItem") == 3)
    ddb_proxy.remove(slow)
    ddb_proxy.add(dynamodb_error("ThrottlingException"), operation="GetItem", times=1)
    with pytest.raises(ClientError, match="ThrottlingException"):
        await get_n(ddb, table)
    assert await get_n(ddb, table) == "1"

    assert await asyncio.gather(*in_flight) == ["1", "1", "1"]
    assert [r.outcome for r in ddb_proxy.records] == [
        Outcome.FORWARDED,
        Outcome.FORWARDED,
        Outcome.FORWARDED,
        Outcome.INJECTED,
        Outcome.FORWARDED,
    ]
    assert ddb_proxy.count("GetItem", rule=slow) == 3


# ---------------------------------------------------------------- the project's Caller


class CallerUnderTest:
    """A real ``Caller`` over a real ``ClientPool``, built as ``Daemon.open`` builds them,
    with the endpoints pointed at the proxies; its backoff sleeps are recorded, not slept."""

    MAX_ATTEMPTS = 3

    def __init__(
        self, *, ddb_proxy: FaultProxy, drs_proxy: FaultProxy, read_timeout: float = 10.0
    ) -> None:
        self.ddb_proxy = ddb_proxy
        self.drs_proxy = drs_proxy
        self.settings = load_settings(
            table_name="unused",
            dynamodb_endpoint_url=ddb_proxy.url,
            ec2_endpoint_url=ddb_proxy.url,
            drs_endpoint_url=drs_proxy.url,
            connect_timeout=1.0,
            # Long enough that a forwarded request to a moto slowed by a busy machine is
            # not read as a fault (./dev test --busy); the black-hole cases pass a short one.
            read_timeout=read_timeout,
            max_attempts=self.MAX_ATTEMPTS,
        )
        self.pool = ClientPool(
            session=_session(),
            settings=self.settings,
            endpoints={
                "dynamodb": ddb_proxy.url,
                "drs": drs_proxy.url,
                "ec2": ddb_proxy.url,
            },
        )
        self.sleeps: list[float] = []
        self.metrics = Metrics()

        async def record(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.caller = Caller(
            metrics=self.metrics,
            clock=ManualClock(),
            policy=BackoffPolicy(base=0.5, cap=20, max_attempts=self.MAX_ATTEMPTS),
            max_concurrent=4,
            max_per_region=4,
            rng=random.Random(3),
            sleep=record,
        )

    async def call(self, service: str, operation: str, **params: Any) -> Any:
        client = await self.pool.get(service, REGION)
        method = getattr(client, _SNAKE[operation])
        return await self.caller.call(
            service=service,
            operation=operation,
            region=REGION,
            send=functools.partial(method, **params),
        )


_SNAKE = {
    "GetItem": "get_item",
    "UpdateItem": "update_item",
    "DescribeJobs": "describe_jobs",
    "DescribeInstances": "describe_instances",
}


@pytest.fixture
async def calls(ddb_proxy, drs_proxy):
    under_test = CallerUnderTest(ddb_proxy=ddb_proxy, drs_proxy=drs_proxy)
    try:
        yield under_test
    finally:
        await under_test.pool.aclose()


def _params(operation: str, *, table: str, jobs: list[str]) -> dict[str, Any]:
    return {
        "GetItem": {"TableName": table, "Key": {"pk": {"S": "a"}}, "ConsistentRead": True},
        "UpdateItem": {
            "TableName": table,
            "Key": {"pk": {"S": "a"}},
            "UpdateExpression": "SET n = :n",
            "ExpressionAttributeValues": {":n": {"N": "5"}},
        },
        "DescribeJobs": {"filters": {"jobIDs": jobs}},
        "DescribeInstances": {},
    }[operation]


CLASSIFICATION_CASES = [
    # (fault, service, operation, action, kind, code the Caller reports)
    ("reset before forward", "dynamodb", "GetItem", reset_before_forward, ErrorKind.TRANSIENT,
     "EndpointConnectionError"),
    ("reset after forward", "dynamodb", "UpdateItem", reset_after_forward, ErrorKind.TRANSIENT,
     "EndpointConnectionError"),
    ("reset on DRS", "drs", "DescribeJobs", reset_after_forward, ErrorKind.TRANSIENT,
     "EndpointConnectionError"),
    ("black hole", "drs", "DescribeJobs", black_hole, ErrorKind.TRANSIENT, "ReadTimeoutError"),
    ("black hole on a write", "dynamodb", "UpdateItem", black_hole, ErrorKind.TRANSIENT,
     "ReadTimeoutError"),
    ("DynamoDB 500", "dynamodb", "GetItem",
     lambda: dynamodb_error("InternalServerError", http_status=500), ErrorKind.TRANSIENT,
     "InternalServerError"),
    ("bare 503", "dynamodb", "UpdateItem", lambda: status(503, body=b"<html>busy</html>"),
     ErrorKind.TRANSIENT, "503"),
    ("DRS 500", "drs", "DescribeJobs",
     lambda: drs_error("InternalServerException", http_status=500), ErrorKind.TRANSIENT,
     "InternalServerException"),
    ("DRS 502 from a load balancer", "drs", "DescribeJobs",
     lambda: status(502, body=b"Bad Gateway"), ErrorKind.TRANSIENT, "502"),
    ("DynamoDB throttling", "dynamodb", "UpdateItem",
     lambda: dynamodb_error("ThrottlingException"), ErrorKind.THROTTLED, "ThrottlingException"),
    ("DynamoDB provisioned throughput", "dynamodb", "GetItem",
     lambda: dynamodb_error("ProvisionedThroughputExceededException"), ErrorKind.THROTTLED,
     "ProvisionedThroughputExceededException"),
    ("DRS 429", "drs", "DescribeJobs", lambda: drs_throttle(retry_after_seconds=1),
     ErrorKind.THROTTLED, "ThrottlingException"),
    ("EC2 request limit", "ec2", "DescribeInstances",
     lambda: ec2_error("RequestLimitExceeded", http_status=503), ErrorKind.THROTTLED,
     "RequestLimitExceeded"),
    ("DynamoDB validation", "dynamodb", "UpdateItem",
     lambda: dynamodb_error("ValidationException"), ErrorKind.PERMANENT, "ValidationException"),
    ("DRS validation", "drs", "DescribeJobs",
     lambda: drs_error("ValidationException", http_status=400, reason="fieldValidationFailed"),
     ErrorKind.PERMANENT, "ValidationException"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [case[1:] for case in CLASSIFICATION_CASES],
    ids=[case[0] for case in CLASSIFICATION_CASES],
)
async def test_the_caller_classifies_each_injected_fault(
    ddb_proxy, drs_proxy, simulator, table, case
):
    action = case[2]
    # A black hole is found out only by the read timeout: a short one keeps those cases
    # quick. Every other case keeps the long default, so that the attempt forwarded to a
    # moto slowed by a busy machine is not mistaken for one more fault.
    calls = CallerUnderTest(
        ddb_proxy=ddb_proxy,
        drs_proxy=drs_proxy,
        read_timeout=BLACK_HOLE_READ_TIMEOUT if action is black_hole else 10.0,
    )
    try:
        await _classify(calls, simulator, table, case)
    finally:
        await calls.pool.aclose()


BLACK_HOLE_READ_TIMEOUT = 2.0


async def _classify(calls, simulator, table, case):
    service, operation, action, kind, code = case
    proxy = calls.drs_proxy if service == "drs" else calls.ddb_proxy
    params = _params(operation, table=table, jobs=add_jobs(simulator, 1))
    retried = kind is not ErrorKind.PERMANENT

    # Once: a retryable fault is ridden out by the next attempt.
    proxy.add(action(), operation=operation, times=1)
    if retried:
        await calls.call(service, operation, **params)
        assert proxy.count(operation) == 2
        assert len(calls.sleeps) == 1
    else:
        with pytest.raises(AwsCallError) as raised:
            await calls.call(service, operation, **params)
        assert (raised.value.kind, raised.value.code) == (kind, code)
        assert proxy.count(operation) == 1
        assert calls.sleeps == []

    # Forever: the attempts are bounded and the error names the kind and code.
    proxy.records.clear()
    calls.sleeps.clear()
    proxy.add(action(), operation=operation)
    with pytest.raises(AwsCallError) as raised:
        await calls.call(service, operation, **params)
    attempts = CallerUnderTest.MAX_ATTEMPTS if retried else 1
    assert (raised.value.kind, raised.value.code) == (kind, code)
    assert proxy.count(operation) == attempts
    assert len(calls.sleeps) == attempts - 1


async def test_the_caller_honours_drs_retry_after_sent_through_the_proxy(
    calls, drs_proxy, simulator
):
    jobs = add_jobs(simulator, 1)
    drs_proxy.add(drs_throttle(retry_after_seconds=7), operation="DescribeJobs", times=2)
    answer = await calls.call("drs", "DescribeJobs", filters={"jobIDs": jobs})
    assert [job["jobID"] for job in answer["items"]] == jobs
    assert len(calls.sleeps) == 2
    assert all(7 <= delay <= 7.5 for delay in calls.sleeps)
    assert simulator.count("DescribeJobs") == 1


async def test_a_write_retried_after_a_lost_response_lands_twice(calls, ddb_proxy, table):
    """Why the daemon stamps each write with a PollerWriteId: the first attempt's write
    landed, so a non-idempotent retry applies it again."""
    ddb_proxy.add(reset_after_forward(), operation="UpdateItem", times=1)
    await calls.call(
        "dynamodb",
        "UpdateItem",
        TableName=table,
        Key={"pk": {"S": "a"}},
        UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    item = await calls.call("dynamodb", "GetItem", TableName=table, Key={"pk": {"S": "a"}})
    assert item["Item"]["n"]["N"] == "3"
    assert ddb_proxy.upstream_count("UpdateItem") == 2


async def test_an_unknown_job_status_degrades_that_field_in_the_drs_adapter(
    calls, drs_proxy, simulator
):
    """Contract §2 (issue 11): a value outside the model degrades one field, never the
    job; the job reads as STARTED and carries the value for counting."""
    jobs = add_jobs(simulator, 2)

    def pause_first(page: dict[str, Any]) -> dict[str, Any]:
        for job in page["items"]:
            if job["jobID"] == jobs[0]:
                job["status"] = "PAUSED"
        return page

    drs_proxy.add(rewrite_json(pause_first), operation="DescribeJobs")
    adapter = DrsAdapter(clients=calls.pool, caller=calls.caller)
    batch = await adapter.describe_jobs(Place(None, REGION), jobs)
    assert batch.invalid == {}
    paused = batch.lookups[jobs[0]]
    assert isinstance(paused, JobView)
    assert paused.status is JobStatus.STARTED
    assert paused.unknown_status == Unknown("status", "PAUSED")
    assert batch.lookups[jobs[1]] is not JOB_NOT_FOUND


async def test_a_truncated_dynamodb_answer_is_a_transient_error(calls, ddb_proxy, table):
    ddb_proxy.add(truncate(0.5, fix_crc32=False), operation="GetItem")
    with pytest.raises(AwsCallError) as raised:
        await calls.call("dynamodb", "GetItem", TableName=table, Key={"pk": {"S": "a"}})
    assert raised.value.kind is ErrorKind.TRANSIENT


async def test_a_truncated_describe_jobs_answer_is_not_read_as_unknown_jobs(
    calls, drs_proxy, simulator
):
    jobs = add_jobs(simulator, 2)
    drs_proxy.add(truncate(0.5), operation="DescribeJobs")
    adapter = DrsAdapter(clients=calls.pool, caller=calls.caller)
    # Today every job comes back JOB_NOT_FOUND, a step towards failing its server.
    with pytest.raises(AwsCallError) as raised:
        await adapter.describe_jobs(Place(None, REGION), jobs)
    assert raised.value.kind is ErrorKind.TRANSIENT


async def test_a_truncated_status_index_page_does_not_make_discovery_forget_executions(world):
    sid = "s-00000000000000001"
    job = world.job([sid], [(0, "STARTED", {sid: ServerSnapshot("IN_PROGRESS")})])
    await world.put_spec(world.spec("ex-1", [(REGION, [ServerSpec(sid, job)])]))
    async with FaultProxy(world.stack.moto_url) as proxy:
        daemon = await world.daemon(dynamodb_endpoint_url=proxy.url)
        assert await daemon.discover_once() == 1
        assert len(daemon.state.tracked) == 1

        proxy.add(truncate(0.5), operation="Query", times=1)
        await daemon.discover_once()
        # Today the cut page reads as "no POLLING items": the execution is forgotten
        # ("execution left POLLING") until the next discovery finds it again.
        assert proxy.count("Query", outcome=Outcome.REWRITTEN) == 1
        assert len(daemon.state.tracked) == 1
