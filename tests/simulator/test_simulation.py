"""The simulator running DRS: StartRecovery, quotas, behaviours, TerminateRecoveryInstances,
DescribeSourceServers and EC2 instances in moto, through HTTP and the real aiobotocore client,
every answer checked against botocore's DRS model. Time is a ManualClock; nothing sleeps."""

from __future__ import annotations

import random
from typing import Any

import aioboto3
import pytest
from botocore.exceptions import ClientError

from drs_poller.simulator.behaviour import (
    BEHAVIOUR_TAG,
    Behaviour,
    OutcomeRates,
    Quotas,
    Simulation,
    SourceServer,
    generated_source_servers,
)
from drs_poller.simulator.behaviour import Scenario as SimScenario
from drs_poller.simulator.conformance import error_violations, output_violations
from drs_poller.simulator.instances import DerivedInstances, Ec2Instances
from drs_poller.simulator.service import DrsSimulator
from drs_poller.simulator.timelines import new_source_server_id

SPEED = 60.0
# Real durations / 60: PENDING 13.5 s, STARTED 0.5 s, launching 6 s, actions 10 s.
PENDING, STARTED, LAUNCHING, ACTIONS = 13.5, 0.5, 6.0, 10.0
LAUNCHED_AT = PENDING + STARTED + LAUNCHING


def server_ids(count: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    return [new_source_server_id(rng) for _ in range(count)]


SCRIPTED = [
    SourceServer(sid, hostname=f"host-{i}", behaviour=behaviour)
    for i, (sid, behaviour) in enumerate(
        zip(
            server_ids(5),
            [
                None,
                Behaviour.LAUNCH_FAILS,
                Behaviour.ACTION_FAILS,
                Behaviour.CONVERSION_STALLS,
                Behaviour.NO_ACTIONS,
            ],
            strict=True,
        )
    )
]
HEALTHY, LAUNCH_FAILS, ACTION_FAILS, STALLS, NO_ACTIONS = (s.source_server_id for s in SCRIPTED)


def make_simulator(clock, **options: Any) -> DrsSimulator:
    simulation = options.pop(
        "simulation",
        Simulation(speed=SPEED, scenario=SimScenario(source_servers=tuple(SCRIPTED))),
    )
    return DrsSimulator(clock=clock, simulation=simulation, **options)


@pytest.fixture
def simulator(clock) -> DrsSimulator:
    """Overrides conftest's plain simulator: this one runs a simulation at speed 60."""
    return make_simulator(clock)


def at(clock, seconds: float) -> None:
    """Move the clock to ``seconds`` after the start."""
    clock.advance(seconds - (clock.time() - 1_800_000_000.0))


def statuses(job: dict[str, Any]) -> dict[str, str]:
    return {s["sourceServerID"]: s["launchStatus"] for s in job["participatingServers"]}


async def start(raw_post, servers: list[str], *, is_drill: bool = True, region: str = "us-east-1"):
    body = {"isDrill": is_drill, "sourceServers": [{"sourceServerID": s} for s in servers]}
    return await raw_post("StartRecovery", body, region=region)


async def test_start_recovery_follows_real_durations_divided_by_speed(drs_client, clock):
    async with drs_client() as client:
        started = await client.start_recovery(
            isDrill=False, sourceServers=[{"sourceServerID": HEALTHY}], tags={"plan": "p-1"}
        )
        job = started["job"]
        assert started["ResponseMetadata"]["HTTPStatusCode"] == 202
        assert (job["status"], job["initiatedBy"], job["tags"]) == (
            "PENDING",
            "START_RECOVERY",
            {"plan": "p-1"},
        )
        job_id = job["jobID"]

        async def seen() -> tuple[str, str, list[str]]:
            (found,) = (await client.describe_jobs(filters={"jobIDs": [job_id]}))["items"]
            (server,) = found["participatingServers"]
            runs = [run["status"] for run in server.get("launchActionsStatus", {}).get("runs", [])]
            return found["status"], server["launchStatus"], runs

        timeline = []
        for moment in (PENDING - 0.1, PENDING + 0.1, PENDING + STARTED + 0.1, LAUNCHED_AT - 0.1):
            at(clock, moment)
            timeline.append(await seen())
        at(clock, LAUNCHED_AT + 0.1)
        timeline.append(await seen())
        at(clock, LAUNCHED_AT + ACTIONS + 0.1)
        timeline.append(await seen())
    assert timeline == [
        ("PENDING", "PENDING", []),
        ("STARTED", "PENDING", []),
        ("STARTED", "IN_PROGRESS", []),
        ("STARTED", "IN_PROGRESS", []),
        ("COMPLETED", "LAUNCHED", ["IN_PROGRESS"]),
        ("COMPLETED", "LAUNCHED", ["SUCCEEDED"]),
    ]


async def test_job_log_shows_snapshot_then_conversion_during_pending(raw_post, clock):
    job_id = (await start(raw_post, [HEALTHY, LAUNCH_FAILS])).body["job"]["jobID"]

    async def events() -> list[tuple[str, str | None]]:
        log = await raw_post("DescribeJobLogItems", {"jobID": job_id})
        assert output_violations("DescribeJobLogItems", log.body) == []
        return [
            (item["event"], item.get("eventData", {}).get("sourceServerID"))
            for item in log.body["items"]
        ]

    at(clock, 1)
    assert await events() == [
        ("JOB_START", None),
        ("SNAPSHOT_START", HEALTHY),
        ("SNAPSHOT_START", LAUNCH_FAILS),
    ]
    at(clock, PENDING - 1)  # still PENDING, but converting
    assert ("CONVERSION_START", HEALTHY) in await events()
    assert ("CONVERSION_END", HEALTHY) not in await events()
    at(clock, LAUNCHED_AT + 1)
    final = await events()
    assert final[-2:] == [("LAUNCH_FAILED", LAUNCH_FAILS), ("JOB_END", None)]
    assert ("LAUNCH_START", HEALTHY) in final


async def test_behaviours_decide_each_servers_end(raw_post, clock):
    recovery = (
        await start(raw_post, [HEALTHY, LAUNCH_FAILS, ACTION_FAILS, NO_ACTIONS], is_drill=False)
    ).body
    drill = (await start(raw_post, [*server_ids(1, seed=9), STALLS])).body
    at(clock, LAUNCHED_AT + ACTIONS + 1)
    jobs = {job["jobID"]: job for job in (await raw_post("DescribeJobs", {})).body["items"]}
    servers = {
        s["sourceServerID"]: s for s in jobs[recovery["job"]["jobID"]]["participatingServers"]
    }
    runs = {
        sid: [r["status"] for r in s.get("launchActionsStatus", {}).get("runs", [])]
        for sid, s in servers.items()
    }
    assert statuses(jobs[recovery["job"]["jobID"]]) == {
        HEALTHY: "LAUNCHED",
        LAUNCH_FAILS: "FAILED",
        ACTION_FAILS: "LAUNCHED",
        NO_ACTIONS: "LAUNCHED",
    }
    assert runs == {
        HEALTHY: ["SUCCEEDED"],
        LAUNCH_FAILS: [],
        ACTION_FAILS: ["FAILED"],
        NO_ACTIONS: [],
    }
    assert "launchActionsStatus" not in servers[NO_ACTIONS]
    stalled = jobs[drill["job"]["jobID"]]
    assert stalled["status"] == "STARTED"  # never completes
    assert statuses(stalled)[STALLS] == "IN_PROGRESS"
    at(clock, 10 * 3600)
    later = await raw_post("DescribeJobs", {"filters": {"jobIDs": [drill["job"]["jobID"]]}})
    assert later.body["items"][0]["status"] == "STARTED"


async def test_probability_outcomes_are_drawn_with_the_seed(clock):
    async def outcomes(seed: int) -> dict[str, str]:
        simulation = Simulation(
            speed=SPEED,
            rates=OutcomeRates(launch_failure=0.3, action_failure=0.3, stall=0.2),
            rng=random.Random(seed),
        )
        sim = DrsSimulator(clock=clock, simulation=simulation)
        ids = server_ids(40, seed=seed)
        sim.start_recovery(
            "us-east-1", {"isDrill": False, "sourceServers": [{"sourceServerID": s} for s in ids]}
        )
        (job,) = sim.jobs("us-east-1")
        final = job.timeline[-1]
        return {sid: final.server(sid).launch_status + str(final.server(sid).runs) for sid in ids}

    first = await outcomes(3)
    assert first == await outcomes(3)
    kinds = set(first.values())
    assert any(k.startswith("FAILED") for k in kinds)
    assert any("FAILED" in k and k.startswith("LAUNCHED") for k in kinds)
    assert any(k.startswith("IN_PROGRESS") for k in kinds)
    assert any("SUCCEEDED" in k for k in kinds)


async def test_a_tagged_server_ignores_the_rates(clock):
    simulation = Simulation(
        speed=SPEED,
        scenario=SimScenario(source_servers=tuple(SCRIPTED)),
        rates=OutcomeRates(launch_failure=1.0),
    )
    sim = DrsSimulator(clock=clock, simulation=simulation)
    behaviours = simulation.behaviours("us-east-1", [NO_ACTIONS, "s-" + "z" * 17], profile=None)
    assert behaviours == {NO_ACTIONS: Behaviour.NO_ACTIONS, "s-" + "z" * 17: Behaviour.LAUNCH_FAILS}
    assert sim.quotas == Quotas()


# ---------------------------------------------------------------- quotas


async def test_quota_servers_per_job(raw_post, simulator):
    response = await start(raw_post, server_ids(101))
    assert response.status == 402
    assert response.headers["x-amzn-errortype"] == "ServiceQuotaExceededException"
    assert error_violations("ServiceQuotaExceededException", response.body) == []
    assert response.body["quotaCode"]
    assert response.body["serviceCode"] == "drs"
    assert (await start(raw_post, server_ids(100))).status == 202


async def test_quota_concurrent_jobs_and_their_end(raw_post, clock, simulator):
    ids = server_ids(21)
    for sid in ids[:20]:
        assert (await start(raw_post, [sid])).status == 202
    refused = await start(raw_post, [ids[20]])
    assert refused.status == 402
    assert "20 jobs" in refused.body["message"]
    # Another region has quotas of its own.
    assert (await start(raw_post, [ids[20]], region="eu-west-1")).status == 202
    at(clock, LAUNCHED_AT + 1)  # every job COMPLETED: no longer active
    assert (await start(raw_post, [ids[20]])).status == 202


async def test_quota_servers_in_active_jobs(raw_post, simulator):
    ids = server_ids(501)
    for offset in range(0, 500, 100):
        assert (await start(raw_post, ids[offset : offset + 100])).status == 202
    refused = await start(raw_post, ids[500:])
    assert refused.status == 402
    assert "500 source servers" in refused.body["message"]
    assert error_violations("ServiceQuotaExceededException", refused.body) == []


async def test_one_active_job_per_source_server(drs_client, clock):
    async with drs_client() as client:
        await client.start_recovery(sourceServers=[{"sourceServerID": HEALTHY}])
        with pytest.raises(ClientError) as caught:
            await client.start_recovery(
                sourceServers=[{"sourceServerID": LAUNCH_FAILS}, {"sourceServerID": HEALTHY}]
            )
        error = caught.value.response
        assert error["Error"]["Code"] == "ConflictException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 409
        assert (error["resourceId"], error["resourceType"]) == (HEALTHY, "SOURCE_SERVER")
        at(clock, LAUNCHED_AT + 1)
        await client.start_recovery(sourceServers=[{"sourceServerID": HEALTHY}])


async def test_no_quotas_when_turned_off(clock):
    sim = make_simulator(clock, quotas=None)
    for _ in range(3):
        sim.start_recovery("us-east-1", {"sourceServers": [{"sourceServerID": HEALTHY}]})
    assert len(sim.active_jobs("us-east-1", clock.time())) == 3


# ---------------------------------------------------------------- source servers


async def test_describe_source_servers_lists_the_inventory_with_behaviour_tags(drs_client, clock):
    sim = make_simulator(clock)
    sim.simulation.generated_per_region = 16
    sim.simulation.seed = 4
    generated = generated_source_servers(count=16, region="us-west-2", seed=4)
    assert generated == generated_source_servers(count=16, region="us-west-2", seed=4)
    assert generated != generated_source_servers(count=16, region="us-east-1", seed=4)
    from drs_poller.simulator.service import serve_drs_simulator  # noqa: PLC0415

    async with serve_drs_simulator(sim) as url:
        session = aioboto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-west-2"
        )
        async with session.client("drs", endpoint_url=url) as client:
            paginator = client.get_paginator("describe_source_servers")
            items = [
                item
                async for page in paginator.paginate(PaginationConfig={"PageSize": 7})
                for item in page["items"]
            ]
            one = await client.describe_source_servers(filters={"sourceServerIDs": [HEALTHY]})
            await client.start_recovery(sourceServers=[{"sourceServerID": LAUNCH_FAILS}])
            at(clock, LAUNCHED_AT + 1)
            after = await client.describe_source_servers(
                filters={"sourceServerIDs": [LAUNCH_FAILS]}
            )
    assert len(items) == 5 + 16
    tags = {item["sourceServerID"]: item["tags"].get(BEHAVIOUR_TAG) for item in items}
    assert tags[LAUNCH_FAILS] == "launch-fails"
    assert tags[HEALTHY] is None
    assert sorted(filter(None, tags.values())).count("launch-fails") == 1 + 2
    assert [item["sourceServerID"] for item in one["items"]] == [HEALTHY]
    assert one["items"][0]["sourceProperties"]["identificationHints"]["hostname"] == "host-0"
    assert after["items"][0]["lastLaunchResult"] == "FAILED"
    for call in sim.calls:
        assert call.status in {200, 202}


async def test_describe_source_servers_conforms(raw_post):
    response = await raw_post("DescribeSourceServers", {})
    assert response.status == 200
    assert output_violations("DescribeSourceServers", response.body) == []
    assert len(response.body["items"]) == 5


# ---------------------------------------------------------------- recovery instances


async def test_recovery_instances_appear_at_launch_and_terminate(raw_post, clock, simulator):
    job = (await start(raw_post, [HEALTHY, LAUNCH_FAILS])).body["job"]
    at(clock, LAUNCHED_AT - 5)
    assert (await raw_post("DescribeRecoveryInstances", {})).body["items"] == []
    at(clock, LAUNCHED_AT + 0.5)
    jobs = await raw_post("DescribeJobs", {"filters": {"jobIDs": [job["jobID"]]}})
    (healthy,) = [
        s for s in jobs.body["items"][0]["participatingServers"] if s["sourceServerID"] == HEALTHY
    ]
    instances = await raw_post("DescribeRecoveryInstances", {})
    assert output_violations("DescribeRecoveryInstances", instances.body) == []
    (instance,) = instances.body["items"]
    assert (
        instance["recoveryInstanceID"] == healthy["recoveryInstanceID"] == instance["ec2InstanceID"]
    )
    assert (instance["sourceServerID"], instance["jobID"]) == (HEALTHY, job["jobID"])

    terminated = await raw_post(
        "TerminateRecoveryInstances", {"recoveryInstanceIDs": [instance["recoveryInstanceID"]]}
    )
    assert terminated.status == 200
    assert output_violations("TerminateRecoveryInstances", terminated.body) == []
    terminate_job = terminated.body["job"]
    assert (terminate_job["type"], terminate_job["initiatedBy"]) == (
        "TERMINATE",
        "TERMINATE_RECOVERY_INSTANCES",
    )
    assert (await raw_post("DescribeRecoveryInstances", {})).body["items"] == []
    at(clock, LAUNCHED_AT + 5)
    both = {j["jobID"]: j for j in (await raw_post("DescribeJobs", {})).body["items"]}
    assert both[terminate_job["jobID"]]["status"] == "COMPLETED"
    assert statuses(both[job["jobID"]])[HEALTHY] == "TERMINATED"
    log = await raw_post("DescribeJobLogItems", {"jobID": terminate_job["jobID"]})
    assert [item["event"] for item in log.body["items"]] == ["JOB_START", "JOB_END"]
    assert output_violations("DescribeJobLogItems", log.body) == []


async def test_terminate_errors(raw_post, clock):
    await start(raw_post, [HEALTHY, LAUNCH_FAILS])
    unknown = await raw_post(
        "TerminateRecoveryInstances", {"recoveryInstanceIDs": ["i-0123456789abcdef0"]}
    )
    assert unknown.status == 400
    assert unknown.body["fieldList"][0]["name"] == "recoveryInstanceIDs"
    assert error_violations("ValidationException", unknown.body) == []
    # A recovery's job completes at launch while its actions still run: terminable.
    job = (await start(raw_post, [NO_ACTIONS, ACTION_FAILS], is_drill=False)).body["job"]
    at(clock, LAUNCHED_AT + 0.5)
    instances = await raw_post(
        "DescribeRecoveryInstances", {"filters": {"sourceServerIDs": [ACTION_FAILS]}}
    )
    (instance,) = instances.body["items"]
    assert instance["jobID"] == job["jobID"]
    done = await raw_post(
        "TerminateRecoveryInstances", {"recoveryInstanceIDs": [instance["recoveryInstanceID"]]}
    )
    assert done.status == 200
    # A stalled job never completes, so its launched servers' instances stay busy.
    busy = (await start(raw_post, [new_source_server_id(random.Random(2)), STALLS])).body["job"]
    at(clock, 2 * LAUNCHED_AT + 1)
    (running,) = [
        i
        for i in (await raw_post("DescribeRecoveryInstances", {})).body["items"]
        if i["jobID"] == busy["jobID"]
    ]
    conflict = await raw_post(
        "TerminateRecoveryInstances", {"recoveryInstanceIDs": [running["recoveryInstanceID"]]}
    )
    assert conflict.status == 409
    assert error_violations("ConflictException", conflict.body) == []
    assert conflict.body["resourceId"] == busy["jobID"]


async def test_recovery_instances_are_ec2_instances_in_moto(clock, moto_url):
    sim = make_simulator(clock, instances=Ec2Instances(moto_url))
    job = sim.start_recovery(
        "eu-west-1",
        {"sourceServers": [{"sourceServerID": HEALTHY}, {"sourceServerID": NO_ACTIONS}]},
    )
    at(clock, LAUNCHED_AT - 0.5)  # within the lookahead: created before DRS says LAUNCHED
    assert await sim.create_due_instances() == 2
    assert await sim.create_due_instances() == 0  # never twice
    at(clock, LAUNCHED_AT + 0.5)
    instances = sim.describe_recovery_instances("eu-west-1", {})["items"]
    ids = sorted(item["ec2InstanceID"] for item in instances)
    assert {item["jobID"] for item in instances} == {job["job"]["jobID"]}
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )
    async with session.client("ec2", endpoint_url=moto_url) as ec2:
        found = await ec2.describe_instances(InstanceIds=ids)
        states = [i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]]
        assert states == ["running", "running"]
        await sim.terminate_recovery_instances("eu-west-1", {"recoveryInstanceIDs": ids[:1]})
        found = await ec2.describe_instances(InstanceIds=ids[:1])
        (gone,) = [i for r in found["Reservations"] for i in r["Instances"]]
        assert gone["State"]["Name"] in {"shutting-down", "terminated"}
    remaining = sim.describe_recovery_instances("eu-west-1", {})["items"]
    assert [item["ec2InstanceID"] for item in remaining] == ids[1:]


async def test_new_operations_reject_bad_requests(raw_post):
    for operation, body in (
        ("StartRecovery", {}),
        ("StartRecovery", {"sourceServers": [{"sourceServerID": "s-short"}]}),
        ("StartRecovery", {"sourceServers": []}),
        ("TerminateRecoveryInstances", {"recoveryInstanceIDs": ["x"]}),
        ("DescribeSourceServers", {"maxResults": 0}),
    ):
        response = await raw_post(operation, body)
        assert response.status == 400, (operation, body)
        assert error_violations("ValidationException", response.body) == []


async def test_faults_apply_to_start_recovery(drs_client, simulator):
    simulator.faults.throttle_next = 1
    async with drs_client() as client:
        with pytest.raises(ClientError) as caught:
            await client.start_recovery(sourceServers=[{"sourceServerID": HEALTHY}])
        assert caught.value.response["Error"]["Code"] == "ThrottlingException"
        assert simulator.jobs("us-east-1") == []
        await client.start_recovery(sourceServers=[{"sourceServerID": HEALTHY}])
    assert len(simulator.jobs("us-east-1")) == 1


async def test_calls_record_the_jobs_they_ask_about(raw_post, simulator):
    job_id = (await start(raw_post, [HEALTHY])).body["job"]["jobID"]
    await raw_post("DescribeJobs", {"filters": {"jobIDs": [job_id]}})
    await raw_post("DescribeJobLogItems", {"jobID": job_id})
    await raw_post("DescribeJobs", {})
    assert [call.job_ids for call in simulator.calls] == [(), (job_id,), (job_id,), ()]


class SlowInstances(DerivedInstances):
    """RunInstances that takes ``seconds`` of simulated time (at ``--speed 600`` a 50 ms
    call to moto is 30 s), and fails while ``failing``."""

    def __init__(self, clock, seconds: float) -> None:
        super().__init__()
        self.clock = clock
        self.seconds = seconds
        self.failing = False

    async def launch(self, region: str, count: int, *, account: str) -> list[str]:
        self.clock.advance(self.seconds)
        if self.failing:
            raise RuntimeError("moto: dictionary changed size during iteration")
        return await super().launch(region, count, account=account)


async def test_an_answer_is_given_at_the_requests_time_however_long_the_launches_take(
    clock, simulator, drs_client
):
    # Two jobs two seconds apart; creating the first one's instance takes five.
    sim = simulator
    sim.instances = SlowInstances(clock, seconds=5.0)
    first = sim.start_recovery("eu-west-1", {"sourceServers": [{"sourceServerID": HEALTHY}]})
    clock.advance(2.0)
    second = sim.start_recovery("eu-west-1", {"sourceServers": [{"sourceServerID": NO_ACTIONS}]})
    ids = [first["job"]["jobID"], second["job"]["jobID"]]
    async with drs_client("eu-west-1") as drs:
        at(clock, LAUNCHED_AT)  # the first job's server launches now
        jobs = (await drs.describe_jobs(filters={"jobIDs": ids}))["items"]
        # Answered at the moment it was asked: the second server, due 2 s later, is not
        # LAUNCHED yet, although 5 s passed while the first one's instance was created.
        shown = {job["jobID"]: job["participatingServers"][0] for job in jobs}
        assert shown[ids[0]]["launchStatus"] == "LAUNCHED"
        assert "recoveryInstanceID" in shown[ids[0]]
        assert shown[ids[1]]["launchStatus"] != "LAUNCHED"
        # Asked again: its instance is created first, and it shows with it.
        jobs = (await drs.describe_jobs(filters={"jobIDs": ids}))["items"]
        for job in jobs:
            (server,) = job["participatingServers"]
            assert server["launchStatus"] == "LAUNCHED"
            found = await drs.describe_recovery_instances(
                filters={"recoveryInstanceIDs": [server["recoveryInstanceID"]]}
            )
            assert [item["jobID"] for item in found["items"]] == [job["jobID"]]


async def test_while_the_instances_cannot_be_created_drs_answers_a_retryable_500(
    clock, simulator, drs_client
):
    sim = simulator
    sim.instances = backend = SlowInstances(clock, seconds=0.0)
    backend.failing = True
    job_id = sim.start_recovery("eu-west-1", {"sourceServers": [{"sourceServerID": HEALTHY}]})[
        "job"
    ]["jobID"]
    async with drs_client("eu-west-1") as drs:
        at(clock, LAUNCHED_AT)
        with pytest.raises(ClientError) as failed:
            await drs.describe_jobs(filters={"jobIDs": [job_id]})
        assert failed.value.response["Error"]["Code"] == "InternalServerException"
        backend.failing = False
        (job,) = (await drs.describe_jobs(filters={"jobIDs": [job_id]}))["items"]
        (server,) = job["participatingServers"]
        assert server["launchStatus"] == "LAUNCHED"
        assert server["recoveryInstanceID"]
