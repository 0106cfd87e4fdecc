"""contract §5 against moto server's Step Functions, which runs the state machines
(moto's ASL interpreter, ``execute_state_machine``): the tokens are real, written into
the item by a ``.waitForTaskToken`` aws-sdk:dynamodb:updateItem step, and Step
Functions moves on (or fails) when the daemon answers.

The daemon runs on the manual clock. Step Functions runs in moto's own threads on the
real clock, so waiting for a state machine's step is a short real-time wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from faultproxy import FaultProxy, status
from harness import REGION, ServerSnapshot, job_id, launched, metric, server_id
from moto.core import DEFAULT_ACCOUNT_ID
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from drs_poller.clock import SystemClock
from drs_poller.core.answering import PENDING
from drs_poller.local.items import ServerSpec, execution_item

S1, S2, S3 = server_id(1), server_id(2), server_id(3)
TEMPLATE = Path(__file__).parents[2] / "deploy" / "cloudformation" / "drs-poller.yaml"
FAILED_SNAPSHOT = ServerSnapshot("FAILED")


def _set_moto_config(moto_url: str, config: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - the loopback moto server
        f"{moto_url}/moto-api/config", data=json.dumps(config).encode(), method="POST"
    )
    with urllib.request.urlopen(request) as response:  # noqa: S310
        response.read()


@pytest.fixture
def sfn_runs_machines(moto_url):
    """moto's Step Functions executes state machines; its aws-sdk steps call moto back
    at ``localhost:$MOTO_PORT`` (moto/stepfunctions/parser/asl/utils/boto_client.py)."""
    port = moto_url.rsplit(":", 1)[1]
    previous = os.environ.get("MOTO_PORT")
    os.environ["MOTO_PORT"] = port
    _set_moto_config(moto_url, {"stepfunctions": {"execute_state_machine": True}})
    yield
    _set_moto_config(moto_url, {"stepfunctions": {"execute_state_machine": False}})
    if previous is None:
        os.environ.pop("MOTO_PORT", None)
    else:
        os.environ["MOTO_PORT"] = previous


def token_step(
    table: str,
    *,
    path: str,
    next_state: str | None,
    extra_set: str = "",
    heartbeat: int | None = None,
    timeout: int | None = None,
) -> dict[str, Any]:
    """A Task state that writes its task token at ``path`` (``TaskToken`` or
    ``Waves[i].TaskToken``) and waits for the answer."""
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:dynamodb:updateItem.waitForTaskToken",
        "Parameters": {
            "TableName": table,
            "Key": {"ExecutionId": {"S.$": "$.executionId"}, "PlanId": {"S": "plan-local"}},
            "UpdateExpression": f"SET {path} = :token{extra_set}",
            "ExpressionAttributeValues": {":token": {"S.$": "$$.Task.Token"}},
        },
        "ResultPath": f"$.answers.{path.replace('[', '').replace(']', '').replace('.', '_')}",
    }
    if heartbeat is not None:
        state["HeartbeatSeconds"] = heartbeat
    if timeout is not None:
        state["TimeoutSeconds"] = timeout
    if next_state is None:
        state["End"] = True
    else:
        state["Next"] = next_state
    return state


class StepFunctions:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def start(self, definition: dict[str, Any], execution_id: str) -> str:
        machine = await self.client.create_state_machine(
            name=f"sm-{uuid.uuid4().hex[:10]}",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/orchestrator",
        )
        started = await self.client.start_execution(
            stateMachineArn=machine["stateMachineArn"],
            input=json.dumps({"executionId": execution_id}),
        )
        return str(started["executionArn"])

    async def describe(self, arn: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.client.describe_execution(executionArn=arn)
        return result

    async def wait_until_done(self, arn: str, *, within: float = 10.0) -> dict[str, Any]:
        for _ in range(int(within / 0.05)):
            described = await self.describe(arn)
            if described["status"] != "RUNNING":
                return described
            await asyncio.sleep(0.05)  # moto runs the state machine on the real clock
        raise AssertionError(f"state machine still running: {described}")


async def wait_for_item(world, execution_id: str, check, *, within: float = 10.0):
    for _ in range(int(within / 0.05)):
        item = await world.get(execution_id)
        if check(item):
            return item
        await asyncio.sleep(0.05)  # written by moto's state machine thread
    raise AssertionError(f"{execution_id}: condition not met: {item}")


@pytest.fixture
async def sfn(world, sfn_runs_machines):
    session = world.stack.session()
    async with session.client("stepfunctions", endpoint_url=world.stack.moto_url) as client:
        yield StepFunctions(client)
        for machine in (await client.list_state_machines())["stateMachines"]:
            arn = machine["stateMachineArn"]
            for execution in (await client.list_executions(stateMachineArn=arn))["executions"]:
                if execution["status"] == "RUNNING":
                    await client.stop_execution(executionArn=execution["executionArn"])
    # moto 5.1.22 cannot start an execution once its backend holds one from before
    # (StepFunctionsParserBackend.start_execution deep-copies the state machine, whose
    # ``backend`` holds the earlier execution's locks: a 500). moto runs in this process.
    stepfunctions_parser_backends[DEFAULT_ACCOUNT_ID][REGION].reset()


async def daemon_for(world, **overrides):
    return await world.daemon(stepfunctions_endpoint_url=world.stack.moto_url, **overrides)


def answers(daemon, kind: str, outcome: str) -> float:
    return metric(daemon, "drs_poller_task_token_answers_total", {"kind": kind, "outcome": outcome})


async def test_state_machine_waits_for_each_wave_and_moves_on_when_it_ends(world, sfn):
    """End to end: the state machine writes wave 1's token and waits; drs-poller
    finalizes wave 1 and answers; the state machine starts wave 2 (its job id and token
    in one write) and waits; drs-poller answers; the state machine succeeds."""
    job1 = world.job([S1], [(0, "STARTED", {}), (60, "COMPLETED", {S1: launched()})])
    job2 = world.job([S2], [(0, "STARTED", {}), (60, "COMPLETED", {S2: launched()})])
    await world.put_spec(
        world.spec("ex-e2e", [(REGION, [ServerSpec(S1, job1)]), (REGION, [ServerSpec(S2)])])
    )
    definition = {
        "StartAt": "Wave1",
        "States": {
            "Wave1": token_step(
                world.table, path="Waves[0].TaskToken", next_state="Wave2", heartbeat=3600
            ),
            "Wave2": token_step(
                world.table,
                path="Waves[1].TaskToken",
                next_state=None,
                extra_set=f", Waves[1].Servers[0].RecoveryJobId = :job{job2[-3:]}",
            ),
        },
    }
    definition["States"]["Wave2"]["Parameters"]["ExpressionAttributeValues"][f":job{job2[-3:]}"] = {
        "S": job2
    }
    arn = await sfn.start(definition, "ex-e2e")
    await wait_for_item(world, "ex-e2e", lambda i: "TaskToken" in i["Waves"][0])
    daemon = await daemon_for(world)

    await world.step(daemon)
    await world.step(daemon, 70)  # wave 1 launched: the wave is final, the execution polls
    item = await world.get("ex-e2e")
    assert item["Status"] == "POLLING"
    assert item["Waves"][0]["Status"] == "COMPLETED"
    assert item[PENDING] == {"Waves[0]"}
    assert (await sfn.describe(arn))["status"] == "RUNNING"

    await daemon.answerer.drain()
    item = await wait_for_item(world, "ex-e2e", lambda i: "TaskToken" in i["Waves"][1])
    assert item["Waves"][0]["TaskTokenAnswer"] == "SUCCESS"
    assert item["Waves"][0]["TaskTokenAnsweredTime"] == int(world.clock.time())
    assert PENDING not in item
    assert item["Waves"][1]["Servers"][0]["RecoveryJobId"] == job2

    item = await world.run_until_final(daemon, "ex-e2e", step=15)
    assert item["Status"] == "COMPLETED"
    await daemon.answerer.drain()
    done = await sfn.wait_until_done(arn)
    assert done["status"] == "SUCCEEDED"
    output = json.loads(done["output"])
    wave1 = output["answers"]["Waves0_TaskToken"]
    assert wave1["schemaVersion"] == 1
    assert wave1["scope"] == "WAVE"
    assert wave1["waveName"] == "wave-1"
    assert wave1["status"] == "COMPLETED"
    assert wave1["counts"] == {"servers": 1, "succeeded": 1, "failed": 0}
    assert output["answers"]["Waves1_TaskToken"]["servers"][0]["sourceServerId"] == S2
    assert answers(daemon, "wave", "success") == 2
    item = await world.get("ex-e2e")
    assert PENDING not in item
    assert item["Waves"][1]["TaskTokenAnswer"] == "SUCCESS"


async def _execution_with_token(world, sfn, execution_id, servers, snapshots, **extra_set):
    job = world.job(servers, snapshots)
    spec = world.spec(execution_id, [(REGION, [ServerSpec(s, job) for s in servers])])
    await world.put_spec(spec)
    set_extra = "".join(f", {name} = :{name}" for name in extra_set)
    step = token_step(world.table, path="TaskToken", next_state=None, extra_set=set_extra)
    for name, value in extra_set.items():
        step["Parameters"]["ExpressionAttributeValues"][f":{name}"] = {"BOOL": value}
    arn = await sfn.start({"StartAt": "Run", "States": {"Run": step}}, execution_id)
    await wait_for_item(world, execution_id, lambda i: "TaskToken" in i)
    return arn


async def test_failed_execution_answers_with_a_failure(world, sfn):
    arn = await _execution_with_token(
        world, sfn, "ex-fail", [S1], [(0, "STARTED", {}), (60, "COMPLETED", {S1: FAILED_SNAPSHOT})]
    )
    daemon = await daemon_for(world)
    item = await world.run_until_final(daemon, "ex-fail", step=15)
    assert item["Status"] == "FAILED"
    await daemon.answerer.drain()
    done = await sfn.wait_until_done(arn)
    assert done["status"] == "FAILED"
    assert done["error"] == "DrsPoller.Failed"
    item = await world.get("ex-fail")
    assert item["TaskTokenAnswer"] == "FAILURE"
    assert answers(daemon, "execution", "failure") == 1


@pytest.mark.parametrize(
    ("fail_on_partial", "expected"),
    [(None, "SUCCEEDED"), (False, "SUCCEEDED"), (True, "FAILED")],
)
async def test_partial_answers_as_the_initiator_asked(world, sfn, fail_on_partial, expected):
    extra = {} if fail_on_partial is None else {"TaskTokenFailOnPartial": fail_on_partial}
    arn = await _execution_with_token(
        world,
        sfn,
        "ex-partial",
        [S1, S2],
        [(0, "STARTED", {}), (60, "COMPLETED", {S1: launched(), S2: FAILED_SNAPSHOT})],
        **extra,
    )
    daemon = await daemon_for(world)
    item = await world.run_until_final(daemon, "ex-partial", step=15)
    assert item["Status"] == "PARTIAL"
    await daemon.answerer.drain()
    done = await sfn.wait_until_done(arn)
    assert done["status"] == expected
    if expected == "FAILED":
        assert done["error"] == "DrsPoller.Partial"
    else:
        summary = json.loads(done["output"])["answers"]["TaskToken"]
        assert summary["status"] == "PARTIAL"
        assert summary["counts"] == {"servers": 2, "succeeded": 1, "failed": 1}
        failed = summary["servers"][0]
        assert failed["sourceServerId"] == S2
        assert failed["outcome"] == "FAILED"
        assert "FAILED" in failed["error"]


async def test_an_invalid_token_is_recorded_and_not_sent_again(world, sfn):
    job = world.job([S1], [(0, "STARTED", {}), (60, "COMPLETED", {S1: launched()})])
    spec = world.spec("ex-invalid", [(REGION, [ServerSpec(S1, job)])])
    await world.put({**_item(spec), "TaskToken": "not-a-token-step-functions-issued"})
    daemon = await daemon_for(world)
    item = await world.run_until_final(daemon, "ex-invalid", step=15)
    await daemon.answerer.drain()
    item = await world.get("ex-invalid")
    assert item["TaskTokenAnswer"] == "INVALID_TOKEN"
    assert PENDING not in item
    assert answers(daemon, "execution", "invalid_token") == 1
    # Neither the answerer nor the sweep sends it again.
    assert await daemon.answerer.sweep_once() == 0
    assert daemon.answerer.observe(item) == 0
    calls = {
        "operation": "SendTaskSuccess",
        "account": "self",
        "region": REGION,
        "service": "stepfunctions",
    }
    assert metric(daemon, "drs_poller_aws_calls_total", {**calls, "outcome": "rejected"}) == 1


def _item(spec):
    return execution_item(spec)


async def test_a_timed_out_token_is_recorded_and_not_retried(world, sfn):
    """The state's TimeoutSeconds passes before the execution ends. AWS answers
    TaskTimedOut; moto 5.1.22 never does (nothing in its ASL interpreter reports a
    CallbackConsumerTimeout), and answers InvalidToken once the state machine has
    failed on States.Timeout. Either is recorded, counted and not retried."""
    job = world.job([S1], [(0, "STARTED", {}), (60, "COMPLETED", {S1: launched()})])
    await world.put_spec(world.spec("ex-timeout", [(REGION, [ServerSpec(S1, job)])]))
    step = token_step(world.table, path="TaskToken", next_state=None, timeout=1)
    arn = await sfn.start({"StartAt": "Run", "States": {"Run": step}}, "ex-timeout")
    await wait_for_item(world, "ex-timeout", lambda i: "TaskToken" in i)
    timed_out = await sfn.wait_until_done(arn)  # Step Functions' own timer, real clock
    assert timed_out["status"] == "FAILED"
    assert timed_out["error"] == "States.Timeout"
    daemon = await daemon_for(world)
    await world.run_until_final(daemon, "ex-timeout", step=15)
    await daemon.answerer.drain()
    item = await world.get("ex-timeout")
    assert item["TaskTokenAnswer"] in {"TASK_TIMED_OUT", "INVALID_TOKEN"}
    assert PENDING not in item
    assert answers(daemon, "execution", item["TaskTokenAnswer"].lower()) == 1
    retries = metric(
        daemon,
        "drs_poller_aws_retries_total",
        {"service": "stepfunctions", "operation": "SendTaskSuccess"},
    )
    assert retries == 0


# The sweep filters on the index where it projects TaskTokensPending (ALL, INCLUDE) and
# reads finished items whole where it does not (KEYS_ONLY): both must find the token.
@pytest.mark.parametrize("projection", ["KEYS_ONLY", "INCLUDE", "ALL"])
async def test_replica_dies_between_the_final_write_and_the_answer(world, sfn, projection):
    """Replica A writes the final status and dies before it answers. Replica B's
    sweep finds the finished execution through TaskTokensPending and answers; A,
    back, answering the same token again changes nothing."""
    arn = await _execution_with_token(
        world, sfn, "ex-failover", [S1], [(0, "STARTED", {}), (60, "COMPLETED", {S1: launched()})]
    )
    replica_a = await daemon_for(world)
    item = await world.run_until_final(replica_a, "ex-failover", step=15)
    assert item["Status"] == "COMPLETED"
    assert item[PENDING] == {"execution"}
    lost = replica_a.answerer.queue.get_nowait()  # A dies with the answer queued

    replica_b = await daemon_for(world)
    assert await replica_b.answerer.sweep_once() == 1
    await replica_b.answerer.drain()
    done = await sfn.wait_until_done(arn)
    assert done["status"] == "SUCCEEDED"
    item = await world.get("ex-failover")
    answered_at = item["TaskTokenAnsweredTime"]
    assert item["TaskTokenAnswer"] == "SUCCESS"
    assert PENDING not in item
    assert await replica_b.answerer.sweep_once() == 0

    world.clock.advance(30)
    await replica_a.answerer.handle(lost)  # a second answer: already done
    item = await world.get("ex-failover")
    assert item["TaskTokenAnsweredTime"] == answered_at
    assert item["TaskTokenAnswer"] == "SUCCESS"
    assert (await sfn.describe(arn))["status"] == "SUCCEEDED"


async def test_wave_token_of_a_replica_that_died_is_answered_by_the_next_poller(world, sfn):
    job1 = world.job([S1], [(0, "STARTED", {}), (60, "COMPLETED", {S1: launched()})])
    await world.put_spec(
        world.spec("ex-wave", [(REGION, [ServerSpec(S1, job1)]), (REGION, [ServerSpec(S2)])])
    )
    definition = {
        "StartAt": "Wave1",
        "States": {"Wave1": token_step(world.table, path="Waves[0].TaskToken", next_state=None)},
    }
    arn = await sfn.start(definition, "ex-wave")
    await wait_for_item(world, "ex-wave", lambda i: "TaskToken" in i["Waves"][0])
    replica_a = await daemon_for(world)
    await world.step(replica_a)
    await world.step(replica_a, 70)
    item = await world.get("ex-wave")
    assert item["Waves"][0]["Status"] == "COMPLETED"
    assert "TaskTokenAnswer" not in item["Waves"][0]  # A dies with the answer queued
    assert not replica_a.answerer.queue.empty()

    replica_b = await daemon_for(world)
    await world.step(replica_b, 1)
    await replica_b.answerer.drain()
    assert (await sfn.wait_until_done(arn))["status"] == "SUCCEEDED"
    assert (await world.get("ex-wave"))["Waves"][0]["TaskTokenAnswer"] == "SUCCESS"


async def test_heartbeats_are_paced_per_token_while_the_wave_runs(world, sfn):
    job = world.job([S1], [(0, "STARTED", {}), (600, "COMPLETED", {S1: launched()})])
    await world.put_spec(world.spec("ex-beat", [(REGION, [ServerSpec(S1, job)])]))
    definition = {
        "StartAt": "Wave1",
        "States": {
            "Wave1": token_step(
                world.table, path="Waves[0].TaskToken", next_state=None, heartbeat=3600
            )
        },
    }
    arn = await sfn.start(definition, "ex-beat")
    await wait_for_item(world, "ex-beat", lambda i: "TaskToken" in i["Waves"][0])
    daemon = await daemon_for(world, task_heartbeat_interval=60)
    beats = {"outcome": "success"}
    for _ in range(20):  # 300 s of polls every 15 s
        await world.step(daemon, 15)
        await daemon.answerer.drain()
    sent = metric(daemon, "drs_poller_task_token_heartbeats_total", beats)
    assert 4 <= sent <= 6  # one a minute, not one a poll
    item = await world.run_until_final(daemon, "ex-beat", step=15)
    await daemon.answerer.drain()
    assert item["Status"] == "COMPLETED"
    assert (await sfn.wait_until_done(arn))["status"] == "SUCCEEDED"


async def test_a_heartbeat_rejected_as_invalid_stops_heartbeats_and_the_answer_records_it(
    world, sfn
):
    """InvalidToken on a heartbeat stops the heartbeats for that token, and is not
    recorded: moto rejects heartbeats as InvalidToken for a state without
    HeartbeatSeconds, and the answer must still be tried. The answer records it."""
    job = world.job([S1], [(0, "STARTED", {}), (600, "COMPLETED", {S1: launched()})])
    spec = world.spec("ex-beat-bad", [(REGION, [ServerSpec(S1, job)])])
    await world.put({**_item(spec), "TaskToken": "garbage"})
    daemon = await daemon_for(world, task_heartbeat_interval=60)
    for _ in range(10):
        await world.step(daemon, 15)
        await daemon.answerer.drain()
    item = await world.get("ex-beat-bad")
    assert "TaskTokenAnswer" not in item
    assert item["Status"] == "POLLING"
    beats = "drs_poller_task_token_heartbeats_total"
    assert metric(daemon, beats, {"outcome": "invalid_token"}) == 1
    item = await world.run_until_final(daemon, "ex-beat-bad", step=15)
    await daemon.answerer.drain()
    assert item["Status"] == "COMPLETED"
    item = await world.get("ex-beat-bad")
    assert item["TaskTokenAnswer"] == "INVALID_TOKEN"
    assert answers(daemon, "execution", "invalid_token") == 1
    assert metric(daemon, beats, {"outcome": "invalid_token"}) == 1


async def test_no_token_no_calls(world):
    job = job_id()
    world.job([S3], [(0, "STARTED", {}), (60, "COMPLETED", {S3: launched()})], job=job)
    await world.put_spec(world.spec("ex-plain", [(REGION, [ServerSpec(S3, job)])]))
    daemon = await daemon_for(world)
    item = await world.run_until_final(daemon, "ex-plain", step=15)
    assert item["Status"] == "COMPLETED"
    assert PENDING not in item
    assert daemon.answerer.queue.empty()


async def test_delay_from_the_final_write_to_the_answer(world, capsys):
    """The daemon on the real clock, its real loops: 50 waves end, and the delay from
    each wave's final write landing to Step Functions accepting the answer is printed
    (p50, p99). The waves end half a second apart; moto's default Step Functions
    backend accepts any token. The figure
    goes into the closing note; no timing is asserted."""
    count = 50
    # moto server imports its Step Functions backend on the first request (seconds):
    # that is moto's start-up, not the daemon's delay.
    session = world.stack.session()
    async with session.client("stepfunctions", endpoint_url=world.stack.moto_url) as client:
        await client.send_task_success(taskToken="warm-up", output="{}")
    for n in range(count):
        source = server_id(100 + n)
        # The waves end half a second apart (on the DRS simulator's clock, moved below).
        job = world.job(
            [source], [(0, "STARTED", {}), (1 + n / 2, "COMPLETED", {source: launched()})]
        )
        spec = world.spec(
            f"ex-delay-{n:02d}",
            [(REGION, [ServerSpec(source, job)]), (REGION, [ServerSpec(server_id(900 + n))])],
        )
        item = _item(spec)
        item["Waves"][0]["TaskToken"] = f"token-{n:02d}"
        await world.put(item)
    daemon = await world.daemon(
        clock=SystemClock(),
        stepfunctions_endpoint_url=world.stack.moto_url,
        discovery_interval=1,
        interval_started=1,
    )
    delays: list[float] = []
    histogram = daemon.metrics.task_token_answer_delay
    observe = histogram.observe

    def record(value: float, *args: Any, **kwargs: Any) -> None:
        delays.append(value)
        observe(value, *args, **kwargs)

    histogram.observe = record  # type: ignore[method-assign]
    running = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        for _ in range(1200):
            if len(delays) >= count:
                break
            await asyncio.sleep(0.05)  # the daemon runs on the real clock here
            world.clock.advance(0.05)
    finally:
        daemon.request_stop("test done")
        await running
    assert len(delays) == count
    ordered = sorted(delays)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    with capsys.disabled():
        print(  # noqa: T201 - the measurement is the output
            f"\ntask token answer delay over {count} waves: p50 {p50 * 1000:.1f} ms,"
            f" p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
        )
    item = await world.get("ex-delay-00")
    assert item["Waves"][0]["TaskTokenAnswer"] == "SUCCESS"
    assert item["Status"] == "POLLING"


class _CfnLoader(yaml.SafeLoader):
    """Reads the template's ``!Ref``/``!Sub``/... tags as plain values (unused here)."""


_CfnLoader.add_multi_constructor("!", lambda *_tag: None)


def example_definition(table: str) -> dict[str, Any]:
    """The template's example state machine, its wave starter (the initiator's Lambda,
    which moto cannot run without Docker) replaced by a Pass state: the test starts the
    wave itself."""
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    definition = template["Resources"]["ExampleStateMachine"]["Properties"]["Definition"]
    text = json.dumps(definition).replace("${TableName}", table)
    definition = json.loads(text)
    states = definition["States"]["Waves"]["ItemProcessor"]["States"]
    states["StartWave"] = {"Type": "Pass", "ResultPath": None, "Next": "WaitForWave"}
    return definition


async def test_the_example_state_machine_runs_two_waves(world, sfn):
    job1 = world.job([S1], [(0, "STARTED", {}), (60, "COMPLETED", {S1: launched()})])
    job2 = world.job([S2], [(0, "STARTED", {}), (60, "COMPLETED", {S2: launched()})])
    await world.put_spec(
        world.spec("ex-example", [(REGION, [ServerSpec(S1, job1)]), (REGION, [ServerSpec(S2)])])
    )
    machine = await sfn.client.create_state_machine(
        name=f"example-{uuid.uuid4().hex[:8]}",
        definition=json.dumps(example_definition(world.table)),
        roleArn="arn:aws:iam::123456789012:role/orchestrator",
    )
    started = await sfn.client.start_execution(
        stateMachineArn=machine["stateMachineArn"],
        input=json.dumps(
            {"executionId": "ex-example", "planId": "plan-local", "waveIndexes": [0, 1]}
        ),
    )
    arn = started["executionArn"]
    await wait_for_item(world, "ex-example", lambda i: "TaskToken" in i["Waves"][0])
    daemon = await daemon_for(world)
    await world.step(daemon)
    await world.step(daemon, 70)
    await daemon.answerer.drain()
    await wait_for_item(world, "ex-example", lambda i: "TaskToken" in i["Waves"][1])
    # The initiator starts wave 2 (the example's StartWave Lambda).
    await world.update("ex-example", "SET Waves[1].Servers[0].RecoveryJobId = :job", {":job": job2})
    item = await world.run_until_final(daemon, "ex-example", step=15)
    assert item["Status"] == "COMPLETED"
    await daemon.answerer.drain()
    done = await sfn.wait_until_done(arn)
    assert done["status"] == "SUCCEEDED"
    waves = json.loads(done["output"])
    assert [wave["wave"]["waveName"] for wave in waves] == ["wave-1", "wave-2"]
    assert all(wave["wave"]["status"] == "COMPLETED" for wave in waves)


async def test_throttling_and_5xx_are_retried_with_backoff(world):
    """Step Functions throttles twice and fails once with a 500: the Caller retries
    (three retries), and the answer lands and is recorded once."""
    job = world.job([S1], [(0, "STARTED", {}), (60, "COMPLETED", {S1: launched()})])
    spec = world.spec("ex-throttled", [(REGION, [ServerSpec(S1, job)])])
    await world.put({**_item(spec), "TaskToken": "token-throttled"})
    json_1_0 = {"Content-Type": "application/x-amz-json-1.0"}
    async with FaultProxy(world.stack.moto_url, seed=1) as proxy:
        proxy.add(
            status(400, {"__type": "ThrottlingException", "message": "slow down"}, json_1_0),
            operation="SendTaskSuccess",
            times=2,
        )
        proxy.add(
            status(500, {"__type": "ServiceUnavailable", "message": "try again"}, json_1_0),
            operation="SendTaskSuccess",
            times=1,
        )
        daemon = await world.daemon(stepfunctions_endpoint_url=proxy.url)
        await world.run_until_final(daemon, "ex-throttled", step=15)
        await daemon.answerer.drain()
    item = await world.get("ex-throttled")
    assert item["TaskTokenAnswer"] == "SUCCESS"
    assert answers(daemon, "execution", "success") == 1
    operation = {"service": "stepfunctions", "operation": "SendTaskSuccess"}
    assert metric(daemon, "drs_poller_aws_retries_total", operation) == 3
    throttled = {**operation, "account": "self", "region": REGION}
    assert metric(daemon, "drs_poller_throttles_total", throttled) == 2
