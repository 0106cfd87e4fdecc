"""``drs-poller demo`` end to end: moto, the simulator, init-table, the initiator (through
StartRecovery) and the real daemon, in-process and as the command line runs it. The table
and moto's EC2 are read back independently of the demo's own report."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import aioboto3
import pytest
import structlog

from drs_poller.clients.dynamodb import to_python
from drs_poller.local.demo import DemoOptions, execute_demo, run_demo
from drs_poller.local.scenarios import SECOND_ACCOUNT, ExecutionPlan, ScenarioKind, WavePlan
from drs_poller.local.stack import FAKE_CREDENTIALS
from drs_poller.local.view import LiveView, build_rows, progress_line, render_rows
from drs_poller.simulator.behaviour import Behaviour


@pytest.fixture(autouse=True)
def restore_logging():
    """The demo configures logging for the process, onto the stdout capsys swaps in and
    then closes; later tests must not log into that closed stream."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


async def scan(moto_url: str, table: str, region: str) -> dict[str, dict]:
    session = aioboto3.Session(**FAKE_CREDENTIALS, region_name=region)
    async with session.client("dynamodb", endpoint_url=moto_url) as ddb:
        page = await ddb.scan(TableName=table, ConsistentRead=True)
    return {item["ExecutionId"]: item for item in map(to_python, page["Items"])}


async def ec2_states(
    moto_url: str, region: str, instance_ids: list[str], *, account: str | None = None
) -> dict[str, str]:
    """The instances' states in moto's EC2, read in ``account`` (None: moto's default) with
    credentials assumed into it, as the daemon reads them."""
    credentials = dict(FAKE_CREDENTIALS)
    if account is not None:
        sts_session = aioboto3.Session(**FAKE_CREDENTIALS, region_name=region)
        async with sts_session.client("sts", endpoint_url=moto_url) as sts:
            answer = await sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/test-reader", RoleSessionName="test"
            )
        raw = answer["Credentials"]
        credentials = {
            "aws_access_key_id": raw["AccessKeyId"],
            "aws_secret_access_key": raw["SecretAccessKey"],
            "aws_session_token": raw["SessionToken"],
        }
    session = aioboto3.Session(**credentials, region_name=region)
    async with session.client("ec2", endpoint_url=moto_url) as ec2:
        found = await ec2.describe_instances(InstanceIds=instance_ids)
    return {
        instance["InstanceId"]: instance["State"]["Name"]
        for reservation in found["Reservations"]
        for instance in reservation["Instances"]
    }


async def test_demo_ends_every_execution_as_expected(moto_url, capsys):
    result = await execute_demo(
        DemoOptions(executions=8, speed=600, seed=3, tty=False), moto_url=moto_url
    )
    out = capsys.readouterr().out

    assert result.exit_code == 0, out
    assert result.daemon_exit_code == 0
    assert len(result.reports) == 8
    assert "all 8 executions ended as expected" in out
    assert f"metrics were served at {result.metrics_url}/metrics" in out
    assert result.metrics_url.startswith("http://127.0.0.1:")
    assert "\x1b[" not in out  # not a terminal: plain progress lines, no escapes
    assert "8/8 finished" in out
    assert "RTO" in out
    assert "RPO" in out
    # A second account (issue 15): its waves started there, tracked there, and shown.
    assert f"other accounts: {SECOND_ACCOUNT}" in out
    in_second = [r for r in result.reports if any(w.account_id for w in r.plan.waves)]
    assert {r.plan.kind for r in in_second} == {
        ScenarioKind.DRILL_LATER_WAVE,
        ScenarioKind.RECOVERY_THREE_WAVES,
    }
    # DRS events in (docs/events.md): every launch that ended was published by the
    # simulator, went through moto's rule to the queue, and reached the daemon.
    (events_line,) = [line for line in out.splitlines() if line.startswith("DRS events: ")]
    published = int(events_line.split()[2])
    assert published > 0
    assert f"DRS events in: {published} received" in events_line
    assert int(events_line.split(" received, ")[1].split()[0]) > 0  # polls pulled forward
    # Events out: at least one "Execution Finished" per execution, after its final write.
    (received,) = [
        line for line in out.splitlines() if line.startswith("finalization events received")
    ]
    assert "from bus drs-poller-demo:" in received
    finished = {
        line.split()[4]
        for line in out.splitlines()
        if line.strip().startswith("DRS Poller Execution Finished")
    }
    assert finished == {report.plan.execution_id for report in result.reports}, received
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("demo-")}
    items = await scan(moto_url, result.table_name, result.region)
    kinds = set()
    for report in result.reports:
        plan = report.plan
        kinds.add(plan.kind)
        row = rows[plan.execution_id].split()
        assert plan.expected_status in row
        assert "✓" in row
        assert str(report.polls) in row
        assert str(report.drs_calls) in row
        assert report.drs_calls > 0

        item = items[plan.execution_id]
        assert item["Status"] == plan.expected_status, item
        assert item["EndTime"] >= item["StartTime"]
        assert item["ExecutionType"] == plan.execution_type
        for wave, planned in zip(item["Waves"], plan.waves, strict=True):
            assert wave["Status"] in {"COMPLETED", "PARTIAL", "FAILED"}
            assert wave["Region"] == planned.region
            assert wave.get("AccountId") == planned.account_id
            # One StartRecovery job per wave, tracked to the end.
            assert len({s["RecoveryJobId"] for s in wave["Servers"]}) == 1
            launched = [s for s in wave["Servers"] if s["Status"] == "LAUNCHED"]
            if launched:
                # The daemon found the simulator's recovery instances in moto's EC2.
                ids = [s["InstanceId"] for s in launched]
                states = await ec2_states(moto_url, planned.region, ids, account=planned.account_id)
                assert set(states.values()) == {"running"}, states
        servers = [server for wave in item["Waves"] for server in wave["Servers"]]
        # The evidence (issue 13): every server that launched has its timeline and its
        # figures; the execution its slowest; the summary prints them.
        for server in servers:
            if server["Status"] == "LAUNCHED":
                timeline = server["Timeline"]
                assert {"JobStart", "SnapshotStart", "ConversionEnd", "Launched"} <= set(timeline)
                assert timeline["JobStart"] <= timeline["SnapshotStart"] <= timeline["Launched"]
                assert server["RecoveryTimeSeconds"] > 0
                assert server["RecoveryPointSeconds"] == 2  # the simulator's replication lag
        if any(server["Status"] == "LAUNCHED" for server in servers):
            assert item["RecoveryTimeSeconds"] >= max(
                s.get("RecoveryTimeSeconds", 0) for s in servers
            )
            assert f"{item['RecoveryTimeSeconds']:.0f}" in row
            assert item["RecoveryPointSeconds"] == 2
        if plan.kind is ScenarioKind.RECOVERY_NO_ACTIONS:
            assert {s["PostLaunchActionsStatus"] for s in servers} == {"NOT_CONFIGURED"}
        if plan.kind is ScenarioKind.RECOVERY_ONE_ACTION_FAILS:
            assert sorted(s["PostLaunchActionsStatus"] for s in servers).count("FAILED") == 1
        if plan.kind is ScenarioKind.DRILL_ONE_LAUNCH_FAILS:
            (failed,) = [s for s in servers if s["Status"] == "FAILED"]
            assert "InsufficientInstanceCapacity" in failed["Error"]
        if plan.later_waves:
            # Started after the wave before it ended, and tracked to the end like the first.
            later = plan.later_waves[0]
            before, after = item["Waves"][later - 1], item["Waves"][later]
            assert after["StartTime"] >= before["EndTime"]
            assert {s["Status"] for s in after["Servers"]} == {"LAUNCHED"}
    assert kinds == set(ScenarioKind)


async def test_demo_fails_when_an_execution_ends_otherwise(moto_url, capsys, monkeypatch):
    # A wrong expectation stands in for a daemon that ends an execution wrongly.
    monkeypatch.setattr(ExecutionPlan, "expected_status", property(lambda _: "PARTIAL"))
    result = await execute_demo(
        DemoOptions(executions=1, speed=900, seed=3, tty=False), moto_url=moto_url
    )
    out = capsys.readouterr().out

    assert result.exit_code == 1
    assert "not as expected:" in out
    assert f"{result.reports[0].plan.execution_id} (drill, all launched): COMPLETED" in out
    assert "✗" in out


async def test_demo_rejects_bad_options(capsys):
    assert await run_demo(executions=0, speed=120, keep_running=False, seed=7) == 2
    assert "--executions must be between 1 and 500" in capsys.readouterr().out
    assert await run_demo(executions=1, speed=0.5, keep_running=False, seed=7) == 2
    assert "--speed must be between 1 and 10000" in capsys.readouterr().out


def test_demo_command_line(tmp_path):
    reports = tmp_path / "reports"
    completed = subprocess.run(  # noqa: S603 - our own command line, a temporary folder
        [
            sys.executable,
            "-m",
            "drs_poller",
            "demo",
            "--executions",
            "3",
            "--speed",
            "900",
            "--reports",
            str(reports),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "all 3 executions ended as expected" in completed.stdout
    assert completed.stdout.count("✓") == 3
    assert "DRS calls: DescribeJobs" in completed.stdout
    assert "StartRecovery 3" in completed.stdout
    # Every execution's HTML drill report, in the folder the summary names.
    assert f"drill reports: 3 HTML files in {reports.resolve()}" in completed.stdout
    pages = sorted(reports.glob("*.html"))
    assert len(pages) == 3
    assert all(page.read_text().startswith("<!DOCTYPE html>") for page in pages)


# ---------------------------------------------------------------- the live view

PLAN = ExecutionPlan(
    kind=ScenarioKind.DRILL_ONE_LAUNCH_FAILS,
    execution_id="demo-01-abcd",
    waves=(WavePlan("wave-1", "us-east-1", True, (None, Behaviour.LAUNCH_FAILS)),),
    start_offset=0.0,
)
OTHER = ExecutionPlan(
    kind=ScenarioKind.DRILL_ALL_LAUNCHED,
    execution_id="demo-02-ef01",
    waves=(WavePlan("wave-1", "us-east-1", True, (None,)),),
    start_offset=0.0,
)


def item(status: str, *, phase: str | None = None, launched: int = 0, end: float | None = None):
    servers = [{"LaunchedTime": 5} for _ in range(launched)] + [{}]
    found = {"Status": status, "StartTime": 100, "Waves": [{"Servers": servers}]}
    if phase:
        found["Phase"] = phase
    if end is not None:
        found["EndTime"] = end
    return found


def test_rows_show_phase_launched_elapsed_and_status():
    rows = build_rows(
        [PLAN, OTHER], {"demo-01-abcd": item("PARTIAL", launched=1, end=112.5)}, now=130
    )
    assert [(r.phase, r.launched, r.servers, r.elapsed, r.status) for r in rows] == [
        ("done", 1, 2, 12.5, "PARTIAL"),
        ("not started", 0, 1, None, ""),
    ]
    running = build_rows([OTHER], {"demo-02-ef01": item("POLLING", phase="IN_PROGRESS")}, now=130)
    assert (running[0].phase, running[0].elapsed, running[0].status) == ("IN_PROGRESS", 30, "")
    lines = render_rows(rows, speed=60)
    assert lines[0].split() == ["execution", "phase", "launched", "elapsed", "status", "scenario"]
    assert "12.5 s ≈ 12.5 min" in lines[1]
    assert progress_line(rows) == "1/2 finished, 1/3 servers launched · running: not started 1"


def test_a_terminal_gets_the_view_redrawn_in_place():
    stream = io.StringIO()
    view = LiveView(speed=60, started=0.0, stream=stream, tty=True)
    rows = build_rows([PLAN, OTHER], {}, now=0)
    view.update(rows)
    view.event("demo-01-abcd started")
    view.update(build_rows([PLAN, OTHER], {"demo-01-abcd": item("PARTIAL", end=110)}, now=0))
    frames = stream.getvalue().split("\x1b[")
    assert "4F" in stream.getvalue()  # the second frame starts 4 lines up: over the first
    assert any(part.startswith("2K") for part in frames)
    assert "demo-01-abcd PARTIAL (as expected)" in stream.getvalue()


def test_plain_output_prints_progress_and_each_end_once():
    stream = io.StringIO()
    view = LiveView(speed=60, started=0.0, stream=stream, tty=False)
    finished = {"demo-01-abcd": item("PARTIAL", end=110)}
    view.update(build_rows([PLAN, OTHER], {}, now=0))
    view.update(build_rows([PLAN, OTHER], finished, now=0))
    view.update(build_rows([PLAN, OTHER], finished, now=0))
    text = stream.getvalue()
    assert "\x1b[" not in text
    assert text.count("demo-01-abcd PARTIAL (as expected)") == 1
    assert text.count("finished,") == 2  # the third update changed nothing: no new line
