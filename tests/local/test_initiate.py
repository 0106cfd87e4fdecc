"""The initiator against the simulator and moto: StartRecovery, POLLING items, DRS quotas
waited out and never exceeded; and ``drs-poller initiate`` on the command line."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid

import pytest

from drs_poller import cli
from drs_poller.clients.dynamodb import to_python
from drs_poller.clock import SystemClock
from drs_poller.local.initiate import (
    EXECUTION_TAG,
    Initiator,
    Inventory,
    NotEnoughSourceServers,
)
from drs_poller.local.scenarios import (
    SECOND_ACCOUNT,
    ExecutionPlan,
    ScenarioKind,
    WavePlan,
    plan_workload,
)
from drs_poller.local.stack import local_stack
from drs_poller.local.table import create_table
from drs_poller.simulator.behaviour import Behaviour, Quotas, Simulation
from drs_poller.simulator.service import DrsSimulator

SPEED = 600.0  # a drill's job is active for (13.5 min + 30 s + 6 min) / 600 = 2 s


def _initiator(stack, ddb, name: str, *, report=lambda _: None, **overrides) -> Initiator:
    """The Initiator on the local stack's DRS simulator and the test's table."""
    return Initiator(
        session=stack.session(),
        drs_endpoint_url=stack.drs_url,
        dynamodb=ddb,
        table_name=name,
        speed=SPEED,
        report=report,
        watch_interval=0.05,
        **overrides,
    )


def drill(n: int, servers: int = 2) -> ExecutionPlan:
    return ExecutionPlan(
        kind=ScenarioKind.DRILL_ALL_LAUNCHED,
        execution_id=f"quota-{n}",
        waves=(WavePlan("wave-1", "us-east-1", is_drill=True, needs=(None,) * servers),),
        start_offset=0.0,
    )


@pytest.fixture
async def stack(moto_url):
    simulator = DrsSimulator(
        clock=SystemClock(),
        simulation=Simulation(speed=SPEED, generated_per_region=64, seed=1),
        quotas=Quotas(max_concurrent_jobs=2),
    )
    async with local_stack(clock=simulator.clock, moto_url=moto_url, simulator=simulator) as stack:
        yield stack


@pytest.fixture
async def table(stack):
    async with stack.session().client("dynamodb", endpoint_url=stack.moto_url) as ddb:
        name = f"initiate-{uuid.uuid4().hex[:8]}"
        await create_table(ddb, name)
        yield ddb, name


async def test_quotas_are_waited_out_and_never_exceeded(stack, table):
    ddb, name = table
    events: list[str] = []
    plans = [drill(n) for n in range(5)]
    async with _initiator(stack, ddb, name, report=events.append) as initiator:
        await initiator.run(plans, started_at=time.time())

    simulator = stack.drs
    refused = [c for c in simulator.calls if c.operation == "StartRecovery" and c.status == 402]
    assert refused, "five jobs against a quota of two must have been refused at least once"
    assert any("ServiceQuotaExceededException, retrying" in event for event in events)
    jobs = simulator.jobs("us-east-1")
    assert len(jobs) == 5
    # At no moment were more than two jobs active.
    for job in jobs:
        overlapping = [
            other
            for other in jobs
            if other.created_at <= job.created_at
            and (other.completed_at(float("inf")) or float("inf")) > job.created_at
        ]
        assert len(overlapping) <= 2, [j.job_id for j in overlapping]

    scanned = await ddb.scan(TableName=name, ConsistentRead=True)
    items = {i["ExecutionId"]: i for i in map(to_python, scanned["Items"])}
    assert set(items) == {plan.execution_id for plan in plans}
    by_tag = {job.tags[EXECUTION_TAG]: job for job in jobs}
    for execution_id, item in items.items():
        assert item["Status"] == "POLLING"
        (wave,) = item["Waves"]
        job = by_tag[execution_id]
        assert {s["RecoveryJobId"] for s in wave["Servers"]} == {job.job_id}
        assert [s["SourceServerId"] for s in wave["Servers"]] == [
            s.source_server_id for s in job.servers
        ]
        assert all(s["IsDrill"] for s in wave["Servers"])


async def test_servers_are_picked_by_their_behaviour_tag(stack, table):
    ddb, name = table
    async with _initiator(stack, ddb, name) as initiator:
        inventory = await initiator.inventory(("us-east-1",))
    pools = inventory.pools["us-east-1"]
    assert {len(pools[b]) for b in (Behaviour.LAUNCH_FAILS, Behaviour.ACTION_FAILS)} == {8}
    assert len(pools[None]) == 40
    first = inventory.take("us-east-1", Behaviour.LAUNCH_FAILS)
    assert (
        stack.drs.simulation.source_server("us-east-1", first).behaviour is Behaviour.LAUNCH_FAILS
    )
    taken = [inventory.take("us-east-1", None) for _ in range(41)]
    assert len(set(taken)) == 40  # round robin: every server once before any twice
    with pytest.raises(NotEnoughSourceServers, match="no conversion-stalls source server"):
        Inventory(pools={"us-east-1": {}}).take("us-east-1", Behaviour.CONVERSION_STALLS)


def test_the_mix_states_its_expectations():
    plans = plan_workload(executions=8, rng=random.Random(7))
    assert [p.kind for p in plans] == list(ScenarioKind)
    assert [p.expected_status for p in plans] == [
        "COMPLETED",
        "COMPLETED",
        "PARTIAL",
        "PARTIAL",
        "COMPLETED",
        "COMPLETED",
        "COMPLETED",
        "FAILED",
    ]
    assert {len(p.waves) for p in plans} == {1, 2, 3}
    assert {p.execution_type for p in plans} == {"DRILL", "RECOVERY"}
    assert [p.execution_id for p in plans] == [
        p.execution_id for p in plan_workload(executions=8, rng=random.Random(7))
    ]
    assert any(p.later_waves for p in plans)
    assert len({r for p in plans for r in p.regions}) == 2


def test_the_demos_mix_puts_two_executions_in_a_second_account():
    plain = plan_workload(executions=8, rng=random.Random(7))
    plans = plan_workload(executions=8, rng=random.Random(7), second_account=SECOND_ACCOUNT)
    # The same executions, servers and expectations; only where some waves run differs.
    assert [(p.execution_id, p.expected_status) for p in plans] == [
        (p.execution_id, p.expected_status) for p in plain
    ]
    assert all(w.account_id is None for p in plain for w in p.waves)
    by_kind = {p.kind: p for p in plans}
    later = by_kind[ScenarioKind.DRILL_LATER_WAVE]
    assert [w.account_id for w in later.waves] == [SECOND_ACCOUNT, SECOND_ACCOUNT]
    three = by_kind[ScenarioKind.RECOVERY_THREE_WAVES]
    assert [w.account_id for w in three.waves] == [None, SECOND_ACCOUNT, None]
    assert three.places == (
        three.waves[0].region,
        f"{SECOND_ACCOUNT}/{three.waves[1].region}",
    )
    others = [p for p in plans if p not in (later, three)]
    assert all(w.account_id is None for p in others for w in p.waves)


async def test_a_wave_in_another_account_is_started_there(stack, table):
    ddb, name = table
    plan = ExecutionPlan(
        kind=ScenarioKind.RECOVERY_THREE_WAVES,
        execution_id="two-accounts",
        waves=(
            WavePlan("wave-1", "us-east-1", is_drill=True, needs=(None,)),
            WavePlan(
                "wave-2", "us-west-2", is_drill=True, needs=(None, None), account_id=SECOND_ACCOUNT
            ),
        ),
        start_offset=0.0,
    )
    async with _initiator(stack, ddb, name, sts_endpoint_url=stack.moto_url) as initiator:
        await initiator.run([plan], started_at=time.time())
    simulator = stack.drs
    (own,) = simulator.jobs("us-east-1")
    assert simulator.jobs("us-west-2") == []
    with simulator.as_account(SECOND_ACCOUNT):
        (member,) = simulator.jobs("us-west-2")
        assert simulator.jobs("us-east-1") == []
    assert member.account_id == SECOND_ACCOUNT
    assert own.account_id != SECOND_ACCOUNT
    # Its source servers were listed there, and its StartRecovery signed there.
    starts = [c for c in simulator.calls if c.operation == "StartRecovery"]
    assert sorted(c.account for c in starts) == sorted([own.account_id, SECOND_ACCOUNT])
    listed = {c.account for c in simulator.calls if c.operation == "DescribeSourceServers"}
    assert listed == {own.account_id, SECOND_ACCOUNT}
    scanned = await ddb.scan(TableName=name, ConsistentRead=True)
    (item,) = map(to_python, scanned["Items"])
    first, second = item["Waves"]
    assert "AccountId" not in first
    assert second["AccountId"] == SECOND_ACCOUNT
    assert {s["RecoveryJobId"] for s in second["Servers"]} == {member.job_id}


async def test_a_wave_in_another_account_needs_an_sts_endpoint(stack, table):
    ddb, name = table
    async with _initiator(stack, ddb, name) as initiator:
        with pytest.raises(ValueError, match="needs an STS endpoint"):
            await initiator.drs("us-east-1", SECOND_ACCOUNT)


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The command line as a process, so this test's loop keeps serving the simulator."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drs_poller",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_initiate_command_line(stack, moto_url):
    # The stack's simulator allows two concurrent jobs; the command waits that out too.
    table = f"initiate-cli-{uuid.uuid4().hex[:8]}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DRS_POLLER_"))
    }
    env |= {
        "DRS_POLLER_TABLE_NAME": table,
        "DRS_POLLER_DYNAMODB_ENDPOINT_URL": moto_url,
        "DRS_POLLER_DRS_ENDPOINT_URL": stack.drs_url,
    }
    code, out, err = await run_cli("init-table", env=env)
    assert (code, err) == (0, "")
    assert f"table {table}: created; ACTIVE" in out
    code, out, err = await run_cli("initiate", "--executions", "3", "--speed", str(SPEED), env=env)
    assert code == 0, out + err
    assert "every wave of 3 executions started" in out
    assert out.count(" started (") == 3
    assert len(stack.drs.jobs("us-east-1")) + len(stack.drs.jobs("us-west-2")) == 3


def test_initiate_names_a_bad_variable(monkeypatch, capsys):
    monkeypatch.delenv("DRS_POLLER_TABLE_NAME", raising=False)
    assert cli.main(["initiate"]) == 2
    assert "DRS_POLLER_TABLE_NAME" in capsys.readouterr().err
