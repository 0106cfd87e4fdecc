"""``drs-poller demo`` end to end: the real daemon on the embedded stack, in-process and as
the command line runs it. The table is read back independently of the demo's own report."""

from __future__ import annotations

import logging
import random
import subprocess
import sys

import aioboto3
import pytest
import structlog

from drs_poller.clients.dynamodb import to_python
from drs_poller.localstack import scenarios
from drs_poller.localstack.demo import DemoOptions, execute_demo, run_demo
from drs_poller.localstack.scenarios import ScenarioKind, build_workload
from drs_poller.localstack.stack import FAKE_CREDENTIALS

START = 1_800_000_000.0


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


def workload(executions: int, seed: int = 3):
    rng = random.Random(seed)
    return build_workload(executions=executions, speed=120, rng=rng, start_time=START)


def test_workload_cycles_through_kinds_and_is_reproducible():
    four = workload(4)
    assert [s.kind for s in four] == list(ScenarioKind)[:4]
    assert {s.expected_status for s in four} == {"COMPLETED", "PARTIAL"}
    assert any("us-west-2" in s.regions for s in four)

    again = workload(4)
    assert [s.spec for s in again] == [s.spec for s in four]

    eight = workload(8)
    later = [s for s in eight if s.later_waves]
    assert [s.kind for s in later] == [ScenarioKind.DRILL_LATER_WAVE]
    # The later wave is written without job ids: the initiator adds them when it starts it.
    assert all(server.job_id is None for server in later[0].spec.waves[1].servers)
    for scenario in eight:
        assert 1 <= len(scenario.waves) <= 3
        assert all(1 <= len(wave.server_ids) <= 4 for wave in scenario.waves)
        assert scenario.spec.start_time >= START


async def test_demo_ends_every_execution_as_expected(moto_url, capsys):
    result = await execute_demo(
        DemoOptions(executions=6, speed=600, keep_running=False, seed=3), moto_url=moto_url
    )
    out = capsys.readouterr().out

    assert result.exit_code == 0, out
    assert result.daemon_exit_code == 0
    assert len(result.reports) == 6
    assert "all 6 executions ended as expected" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("demo-")}
    items = await scan(moto_url, result.table_name, result.region)
    for report in result.reports:
        scenario = report.scenario
        expected = scenario.expected_status
        assert expected in rows[scenario.execution_id].split()
        assert "✓" in rows[scenario.execution_id]

        item = items[scenario.execution_id]
        assert item["Status"] == expected, item
        assert item["EndTime"] >= item["StartTime"]
        for wave, scripted in zip(item["Waves"], scenario.waves, strict=True):
            assert wave["Status"] in {"COMPLETED", "PARTIAL", "FAILED"}
            assert {s["RecoveryJobId"] for s in wave["Servers"]} == {scripted.job_id}
        servers = [server for wave in item["Waves"] for server in wave["Servers"]]
        if scenario.kind is ScenarioKind.RECOVERY_NO_ACTIONS:
            assert {s["PostLaunchActionsStatus"] for s in servers} == {"NOT_CONFIGURED"}
        if scenario.kind is ScenarioKind.DRILL_LATER_WAVE:
            # Started after wave 1 ended, and tracked to the end like the first wave.
            first, second = item["Waves"]
            assert second["StartTime"] >= first["EndTime"]
            assert {s["Status"] for s in second["Servers"]} == {"LAUNCHED"}
            assert all(s.get("InstanceId", "").startswith("i-") for s in second["Servers"])


async def test_demo_fails_when_an_execution_ends_otherwise(moto_url, capsys, monkeypatch):
    # A wrong expectation stands in for a daemon that ends an execution wrongly.
    monkeypatch.setitem(scenarios.EXPECTED_STATUS, ScenarioKind.DRILL_ALL_LAUNCHED, "PARTIAL")
    result = await execute_demo(
        DemoOptions(executions=1, speed=900, keep_running=False, seed=3), moto_url=moto_url
    )
    out = capsys.readouterr().out

    assert result.exit_code == 1
    assert "not as expected:" in out
    assert f"{result.reports[0].scenario.execution_id} (drill, all launched): COMPLETED" in out


async def test_demo_rejects_bad_options(capsys):
    assert await run_demo(executions=0, speed=120, keep_running=False, seed=7) == 2
    assert "--executions must be at least 1" in capsys.readouterr().out


def test_demo_command_line():
    completed = subprocess.run(
        [sys.executable, "-m", "drs_poller", "demo", "--executions", "3", "--speed", "900"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "all 3 executions ended as expected" in completed.stdout
    assert completed.stdout.count("✓") == 3
    assert "DRS calls: DescribeJobs" in completed.stdout
