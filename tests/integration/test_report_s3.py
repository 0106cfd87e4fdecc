"""The daemon puts each finished execution's drill report to S3 (docs/report.md#in-s3):
real aiobotocore clients against moto server's S3 and DynamoDB, the DRS simulator, on a
manual clock. A put that fails is counted and changes nothing in the item."""

from __future__ import annotations

import json
import socket
import uuid

from harness import REGION, launched, metric, server_id

from drs_poller.engine.reporting import render_reports
from drs_poller.local.items import ServerSpec

S1, S2 = server_id(1), server_id(2)


async def _finish_a_drill(world, execution_id: str, **settings):
    job = world.job(
        [S1, S2],
        [
            (0, "PENDING", {}),
            (300, "STARTED", {}),
            (900, "COMPLETED", {S1: launched(), S2: launched()}),
        ],
    )
    await world.put_spec(
        world.spec(execution_id, [(REGION, [ServerSpec(S1, job), ServerSpec(S2, job)])])
    )
    daemon = await world.daemon(**settings)
    item = await world.run_until_final(daemon, execution_id, step=15)
    return daemon, item


async def test_a_finished_executions_report_lands_at_the_documented_keys(world, moto_url):
    bucket = f"reports-{uuid.uuid4().hex[:8]}"
    async with world.stack.session().client("s3", endpoint_url=moto_url) as s3:
        await s3.create_bucket(Bucket=bucket)
        daemon, item = await _finish_a_drill(
            world, "ex-report", report_bucket=bucket, s3_endpoint_url=moto_url
        )
        assert item["Status"] == "COMPLETED"
        reporter = daemon.built.reporter
        assert reporter is not None
        await reporter.drain()

        listed = await s3.list_objects_v2(Bucket=bucket)
        assert sorted(o["Key"] for o in listed["Contents"]) == [
            "drs-poller/reports/ex-report.html",
            "drs-poller/reports/ex-report.json",
        ]
        html = await s3.get_object(Bucket=bucket, Key="drs-poller/reports/ex-report.html")
        assert html["ContentType"] == "text/html; charset=utf-8"
        page = (await html["Body"].read()).decode()
        got = await s3.get_object(Bucket=bucket, Key="drs-poller/reports/ex-report.json")
        assert got["ContentType"] == "application/json"
        body = await got["Body"].read()

    assert page.startswith("<!DOCTYPE html>")
    assert page.count('class="lane"') == 2
    document = json.loads(body)
    assert (document["schema"], document["version"]) == ("drs-poller/report", 1)
    assert document["execution"]["status"] == "COMPLETED"
    assert document["asOf"] == document["execution"]["endTime"]
    assert [s["sourceServerId"] for s in document["waves"][0]["servers"]] == [S1, S2]
    # The same bytes `drs-poller report` makes from the table, now and later.
    table_item = await world.get("ex-report")
    assert body == render_reports(table_item)["json"]
    for fmt in ("html", "json"):
        labels = {"format": fmt, "outcome": "success"}
        assert metric(daemon, "drs_poller_report_puts_total", labels) == 1


async def test_a_failed_put_is_counted_and_leaves_the_final_status_alone(world, moto_url):
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"  # NoSuchBucket: permanent
    daemon, item = await _finish_a_drill(
        world, "ex-no-bucket", report_bucket=missing, s3_endpoint_url=moto_url
    )
    await daemon.built.reporter.drain()
    after = await world.get("ex-no-bucket")
    assert after == item
    assert after["Status"] == "COMPLETED"
    for fmt in ("html", "json"):
        labels = {"format": fmt, "outcome": "error"}
        assert metric(daemon, "drs_poller_report_puts_total", labels) == 1
    assert (
        metric(
            daemon,
            "drs_poller_executions_finalized_total",
            {"execution_type": "DRILL", "status": "COMPLETED"},
        )
        == 1
    )


async def test_an_unreachable_s3_is_retried_with_the_backoff_then_counted(world):
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    daemon, item = await _finish_a_drill(
        world,
        "ex-unreachable",
        report_bucket="reports",
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        max_attempts=3,
    )
    await daemon.built.reporter.drain()
    assert item["Status"] == "COMPLETED"
    assert (await world.get("ex-unreachable"))["Status"] == "COMPLETED"
    retries = {"service": "s3", "operation": "PutObject"}
    assert metric(daemon, "drs_poller_aws_retries_total", retries) == 2 * 2  # two puts
    labels = {"format": "html", "outcome": "error"}
    assert metric(daemon, "drs_poller_report_puts_total", labels) == 1


async def test_without_a_bucket_no_reports_are_put(world):
    daemon, item = await _finish_a_drill(world, "ex-no-reports")
    assert item["Status"] == "COMPLETED"
    assert daemon.built.reporter is None
    assert daemon.poller.reporter is None


async def test_a_malformed_item_ended_failed_still_gets_its_report(world, moto_url):
    bucket = f"reports-{uuid.uuid4().hex[:8]}"
    await world.put(
        {
            "ExecutionId": "ex-malformed",
            "PlanId": "plan-local",
            "Status": "POLLING",
            "StartTime": world.clock.time(),
            "Waves": [{"WaveName": "w", "Region": REGION, "Servers": [{"Status": 3}]}],
        }
    )
    async with world.stack.session().client("s3", endpoint_url=moto_url) as s3:
        await s3.create_bucket(Bucket=bucket)
        daemon = await world.daemon(
            report_bucket=bucket, s3_endpoint_url=moto_url, max_execution_age=7200
        )
        for _ in range(3):  # past the maximum age the daemon ends it, saying why
            await world.step(daemon, 3600)
        assert (await world.get("ex-malformed"))["Status"] == "FAILED"
        await daemon.built.reporter.drain()
        got = await s3.get_object(Bucket=bucket, Key="drs-poller/reports/ex-malformed.json")
        document = json.loads(await got["Body"].read())
    assert document["execution"]["status"] == "FAILED"
    assert "SourceServerId" in document["execution"]["errorMessage"]
    assert document["failures"][0]["scope"] == "EXECUTION"
    assert document["waves"][0]["servers"][0]["sourceServerId"] == "(no SourceServerId)"
