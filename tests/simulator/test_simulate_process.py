"""``drs-poller simulate`` as a real process: start, StartRecovery and DescribeJobs through
aiobotocore, recovery instances in moto's EC2, SIGTERM -> exit 0; bad input -> exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid

import aioboto3
import pytest

ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "DRS_POLLER_LOG_FORMAT": "json",
}


async def read_until(proc, event: str, lines: list[dict], *, within: float = 20.0) -> dict:
    async def read() -> dict:
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                raise AssertionError(f"simulate exited before {event!r}: {lines}")
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": "<not json>", "text": raw.decode()}
            lines.append(line)
            if line.get("event") == event:
                return line

    return await asyncio.wait_for(read(), within)


async def _drs_events_queue(moto_url: str) -> str:
    """A queue in us-west-2 that a rule on source aws.drs fills (moto's EventBridge)."""
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-west-2"
    )
    suffix = uuid.uuid4().hex[:8]
    async with (
        session.client("sqs", endpoint_url=moto_url) as sqs,
        session.client("events", endpoint_url=moto_url) as events,
    ):
        url = (await sqs.create_queue(QueueName=f"sim-events-{suffix}"))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        rule = f"sim-events-{suffix}"
        await events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.drs"]}))
        await events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])
    return url


async def test_simulate_serves_drs_and_stops_on_sigterm(moto_url):
    queue_url = await _drs_events_queue(moto_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drs_poller",
        "simulate",
        "--port",
        "0",
        "--speed",
        "600",  # a drill: 13.5 min + 30 s + 6 min -> 2 s
        "--seed",
        "3",
        "--source-servers",
        "8",
        "--ec2-endpoint-url",
        moto_url,
        "--events-endpoint-url",
        moto_url,
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[dict] = []
    try:
        ready = await read_until(proc, "simulator listening", lines)
        url = ready["url"]
        assert url.startswith("http://127.0.0.1:")
        session = aioboto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-west-2"
        )
        async with session.client("drs", endpoint_url=url) as drs:
            servers = (await drs.describe_source_servers())["items"]
            assert len(servers) == 8
            healthy = [s["sourceServerID"] for s in servers if "drs-sim:behaviour" not in s["tags"]]
            started = await drs.start_recovery(
                isDrill=True, sourceServers=[{"sourceServerID": healthy[0]}]
            )
            job_id = started["job"]["jobID"]
            # The launcher task creates the instance without being asked.
            launched = await read_until(proc, "recovery instance launched", lines)
            assert launched["job_id"] == job_id
            # The instance exists up to a second before DRS reports the launch.
            for _ in range(100):
                jobs = await drs.describe_jobs(filters={"jobIDs": [job_id]})
                (job,) = jobs["items"]
                (server,) = job["participatingServers"]
                if server["launchStatus"] == "LAUNCHED":
                    break
                await asyncio.sleep(0.05)
        assert server["launchStatus"] == "LAUNCHED"
        assert server["recoveryInstanceID"] == launched["recovery_instance_id"]
        async with session.client("ec2", endpoint_url=moto_url) as ec2:
            found = await ec2.describe_instances(InstanceIds=[server["recoveryInstanceID"]])
        assert found["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
        # The launch result went to EventBridge, and through the rule to the queue.
        async with session.client("sqs", endpoint_url=moto_url) as sqs:
            got = await sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)
            await sqs.delete_queue(QueueUrl=queue_url)
        (message,) = got["Messages"]
        event = json.loads(message["Body"])
        assert (event["source"], event["detail-type"]) == (
            "aws.drs",
            "DRS Source Server Launch Result",
        )
        assert event["region"] == "us-west-2"
        assert event["resources"] == [
            f"arn:aws:drs:us-west-2:123456789012:source-server/{healthy[0]}"
        ]
        assert event["detail"] == {"state": "DRILL_LAUNCH_SUCCEEDED", "job-id": job_id}

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    rest = (await proc.stdout.read()).decode()
    assert "simulator stopping" in rest
    assert any(line.get("event") == "job started" for line in lines)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command line, fixed arguments
        [sys.executable, "-m", "drs_poller", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ENV,
    )


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--throttle-rate", "1.5"], "--throttle-rate: must be between 0 and 1"),
        (["--speed", "0"], "--speed: must be above 0"),
        (["--source-servers", "-1"], "--source-servers must be 0 or more"),
    ],
)
def test_simulate_rejects_bad_options(args, complaint):
    completed = run_cli("simulate", "--port", "0", *args)
    assert completed.returncode == 2
    assert complaint in completed.stderr


def test_simulate_rejects_a_bad_scenario_file_at_start_up(tmp_path):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"sourceServers": [{"sourceServerID": "s-1"}]}))
    completed = run_cli("simulate", "--port", "0", "--scenario", str(scenario))
    assert completed.returncode == 2
    assert "$.sourceServers[0].sourceServerID" in completed.stderr
