"""The daemon as the template deploys it: its tables, its environment, its health check.

Both tables are created in moto server from the template's own properties, and
``drs-poller run`` gets the container's environment exactly as the template resolves
it with default parameters. Only what a local stack needs is added: fake credentials
and the endpoint overrides the template leaves out on purpose, plus loopback for the
metrics address. Then the container's health-check command runs against the real
``/healthz``, and SIGTERM must end the process well within the task's ``stopTimeout``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
import uuid
from typing import Any

import aiohttp
from harness import DaemonProcess
from test_cloudformation import Stack

from drs_poller.local.stack import FAKE_CREDENTIALS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _create_from_template(ddb: Any, props: dict[str, Any], name: str) -> None:
    """CreateTable with the template's properties (CloudFormation's names → the API's)."""
    request = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    if "GlobalSecondaryIndexes" in props:
        request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    sse = props["SSESpecification"]
    request["SSESpecification"] = {"Enabled": sse["SSEEnabled"], "SSEType": sse["SSEType"]}
    await ddb.create_table(**request)
    await ddb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    if "TimeToLiveSpecification" in props:
        await ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"]
        )


async def _until_ok(http: aiohttp.ClientSession, url: str, *, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered 200"
        await asyncio.sleep(0.1)


async def test_the_daemon_runs_with_the_templates_tables_environment_and_health_check(
    live_world,
):
    world = live_world
    port = _free_port()
    stack = Stack(MetricsHost="127.0.0.1", MetricsPort=str(port))
    suffix = uuid.uuid4().hex[:8]
    names = {"{ExecutionTable}": f"tpl-executions-{suffix}", "{LeaseTable}": f"tpl-leases-{suffix}"}
    for logical_id in ("ExecutionTable", "LeaseTable"):
        props = stack.properties(logical_id)
        await _create_from_template(world.ddb, props, names["{" + logical_id + "}"])

    env = {name: names.get(value, value) for name, value in stack.environment().items()}
    env.update(
        {
            "AWS_REGION": world.stack.region,
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
            "AWS_EC2_METADATA_DISABLED": "true",
            "DRS_POLLER_DYNAMODB_ENDPOINT_URL": world.stack.moto_url,
            "DRS_POLLER_EC2_ENDPOINT_URL": world.stack.moto_url,
            "DRS_POLLER_DRS_ENDPOINT_URL": world.stack.drs_url,
        }
    )
    daemon = DaemonProcess(env)
    await daemon.start()
    try:
        started = await daemon.wait_for("drs-poller started")
        assert started["table"] == names["{ExecutionTable}"]
        async with aiohttp.ClientSession() as http:
            # /readyz turns 200 after a discovery: the StatusIndex query on the template's table.
            await _until_ok(http, f"http://127.0.0.1:{port}/readyz", within=30)

        kind, _, flag, code = stack.container()["HealthCheck"]["Command"]
        assert (kind, flag) == ("CMD", "-c")
        check = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
        assert await asyncio.wait_for(check.wait(), 30) == 0

        stop_timeout = stack.container()["StopTimeout"]
        began = time.monotonic()
        assert await daemon.stop(signal.SIGTERM, within=stop_timeout) == 0
        assert time.monotonic() - began < stop_timeout
        assert daemon.events("drs-poller stopped")
        assert not [line for line in daemon.lines if line.get("level") == "error"]
    finally:
        await daemon.kill()
        for name in names.values():
            await world.ddb.delete_table(TableName=name)
