"""The simulator serving several AWS accounts: a request is in the account of the access key
id it is signed with (by hand, or through moto's STS); jobs, recovery instances, quotas,
the call log and ARNs are per account. Through HTTP and the real aiobotocore client, every
answer checked against botocore's DRS model. Time is a ManualClock; nothing sleeps."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aioboto3
import botocore.config
import pytest
from botocore.exceptions import ClientError
from test_simulation import HEALTHY, LAUNCHED_AT, NO_ACTIONS, at, make_simulator

from drs_poller.cli import build_parser
from drs_poller.simulator.accounts import KnownAccounts, StsAccounts, access_key_of
from drs_poller.simulator.behaviour import Quotas, Simulation
from drs_poller.simulator.conformance import output_violations
from drs_poller.simulator.events import LaunchEventPublisher
from drs_poller.simulator.instances import Ec2Instances
from drs_poller.simulator.service import DrsSimulator, serve_drs_simulator
from drs_poller.simulator.standalone import SimulatorOptions, build_simulator
from drs_poller.simulator.timelines import DEFAULT_ACCOUNT_ID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MEMBER = "222233334444"
THIRD = "333344445555"
REGION = "eu-west-1"
NO_RETRIES = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})
FAKE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def body(*server_ids: str) -> dict[str, Any]:
    return {"sourceServers": [{"sourceServerID": sid} for sid in server_ids]}


@asynccontextmanager
async def drs_as(url: str, credentials: dict[str, str]) -> AsyncIterator[Any]:
    """A real aiobotocore DRS client signed with ``credentials``."""
    session = aioboto3.Session(**credentials, region_name=REGION)
    async with session.client("drs", endpoint_url=url, config=NO_RETRIES) as client:
        yield client


async def assumed(moto_url: str, account: str) -> dict[str, str]:
    """Credentials from moto's STS AssumeRole into ``account``, as the daemon gets them."""
    session = aioboto3.Session(**FAKE, region_name="us-east-1")
    async with session.client("sts", endpoint_url=moto_url) as sts:
        answer = await sts.assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/drs-poller-member",
            RoleSessionName="drs-poller",
        )
    raw = answer["Credentials"]
    return {
        "aws_access_key_id": raw["AccessKeyId"],
        "aws_secret_access_key": raw["SecretAccessKey"],
        "aws_session_token": raw["SessionToken"],
    }


def test_the_access_key_id_comes_from_the_sigv4_credential():
    header = (
        "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261205/eu-west-1/drs/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0"
    )
    assert access_key_of(header) == "ASIAEXAMPLE"
    assert access_key_of("") is None


def test_direct_calls_act_in_the_default_account_or_as_another(clock):
    sim = make_simulator(clock)
    default_job = sim.start_recovery(REGION, body(HEALTHY))["job"]
    with sim.as_account(MEMBER):
        member_job = sim.start_recovery(REGION, body(HEALTHY))["job"]  # not busy here
        assert [script.job_id for script in sim.jobs(REGION)] == [member_job["jobID"]]
        assert sim.job(REGION, default_job["jobID"]) is None
    assert [script.job_id for script in sim.jobs(REGION)] == [default_job["jobID"]]
    assert default_job["arn"].split(":")[4] == DEFAULT_ACCOUNT_ID
    assert member_job["arn"].split(":")[4] == MEMBER
    for job in (default_job, member_job):
        assert output_violations("StartRecovery", {"job": job}) == []
    with pytest.raises(ValueError, match="12 digits"), sim.as_account("22223333444"):
        pass


async def test_two_accounts_are_isolated_over_http(clock):
    sim = make_simulator(clock, accounts=KnownAccounts({"AKIDMEMBER": MEMBER}))
    member_keys = {"aws_access_key_id": "AKIDMEMBER", "aws_secret_access_key": "x"}
    async with (
        serve_drs_simulator(sim) as url,
        drs_as(url, FAKE) as default,
        drs_as(url, member_keys) as member,
    ):
        mine = (await member.start_recovery(**body(HEALTHY, NO_ACTIONS)))["job"]
        theirs = (await default.start_recovery(**body(HEALTHY)))["job"]
        assert mine["arn"] == f"arn:aws:drs:{REGION}:{MEMBER}:job/{mine['jobID']}"
        listed = (await member.describe_jobs())["items"]
        assert [job["jobID"] for job in listed] == [mine["jobID"]]
        # Asking for the other account's job by id finds nothing, as DRS would.
        asked = await member.describe_jobs(filters={"jobIDs": [theirs["jobID"]]})
        assert asked["items"] == []
        assert [job["jobID"] for job in (await default.describe_jobs())["items"]] == [
            theirs["jobID"]
        ]
        assert (await member.describe_job_log_items(jobID=theirs["jobID"]))["items"] == []
        assert (await default.describe_job_log_items(jobID=theirs["jobID"]))["items"] != []
        servers = (await member.describe_source_servers(filters={}))["items"]
        assert {s["arn"].split(":")[4] for s in servers} == {MEMBER}
        assert {s["stagingArea"]["stagingAccountID"] for s in servers} == {MEMBER}
        staged = await member.describe_source_servers(
            filters={"stagingAccountIDs": [DEFAULT_ACCOUNT_ID]}
        )
        assert staged["items"] == []
        at(clock, LAUNCHED_AT + 1)
        instances = (await member.describe_recovery_instances())["items"]
        assert {i["jobID"] for i in instances} == {mine["jobID"]}
        assert {i["arn"].split(":")[4] for i in instances} == {MEMBER}
        assert {i["jobID"] for i in (await default.describe_recovery_instances())["items"]} == {
            theirs["jobID"]
        }
        # The default account cannot terminate the member's instances: unknown to it.
        with pytest.raises(ClientError) as caught:
            await default.terminate_recovery_instances(
                recoveryInstanceIDs=[instances[0]["recoveryInstanceID"]]
            )
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        terminated = await member.terminate_recovery_instances(
            recoveryInstanceIDs=[instances[0]["recoveryInstanceID"]]
        )
        assert terminated["job"]["arn"].split(":")[4] == MEMBER
    assert sim.count("DescribeJobs", account=MEMBER) == 2
    assert sim.count("DescribeJobs", account=DEFAULT_ACCOUNT_ID) == 1
    assert sim.count("DescribeJobs", REGION) == 3
    member_asked = [c for c in sim.calls if c.account == MEMBER and c.operation == "DescribeJobs"]
    assert [c.job_ids for c in member_asked] == [(), (theirs["jobID"],)]


async def test_quotas_are_per_account_and_region(clock):
    sim = make_simulator(
        clock,
        simulation=Simulation(speed=60.0),
        quotas=Quotas(max_concurrent_jobs=2),
        accounts=KnownAccounts({"AKIDMEMBER": MEMBER, "AKIDTHIRD": THIRD}),
    )
    sim.account_quotas[THIRD] = Quotas(max_concurrent_jobs=1)
    async with serve_drs_simulator(sim) as url, drs_as(url, FAKE) as default:
        for sid in ("s-00000000000000001", "s-00000000000000002"):
            await default.start_recovery(**body(sid))
        with pytest.raises(ClientError) as caught:
            await default.start_recovery(**body("s-00000000000000003"))
        error = caught.value.response
        assert error["Error"]["Code"] == "ServiceQuotaExceededException"
        assert error["quotaCode"] == "L-DRS-CONCURRENT-JOBS"
        # The default account is full in eu-west-1; the member account is not, nor is the
        # default account in another region; the same source server id is busy only in
        # the account whose job holds it.
        async with drs_as(
            url, {"aws_access_key_id": "AKIDMEMBER", "aws_secret_access_key": "x"}
        ) as member:
            started = await member.start_recovery(**body("s-00000000000000001"))
            assert started["job"]["arn"].split(":")[4] == MEMBER
            with pytest.raises(ClientError) as busy:
                await member.start_recovery(**body("s-00000000000000001"))
            assert busy.value.response["Error"]["Code"] == "ConflictException"
        async with drs_as(
            url, {"aws_access_key_id": "AKIDTHIRD", "aws_secret_access_key": "x"}
        ) as third:
            await third.start_recovery(**body("s-00000000000000001"))
            with pytest.raises(ClientError) as own_quota:
                await third.start_recovery(**body("s-00000000000000002"))
            assert own_quota.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    with sim.as_account(DEFAULT_ACCOUNT_ID):
        sim.start_recovery("us-west-2", body("s-00000000000000003"))
    for account, active in ((DEFAULT_ACCOUNT_ID, 2), (MEMBER, 1), (THIRD, 1)):
        with sim.as_account(account):
            assert len(sim.active_jobs(REGION, sim.clock.time())) == active


async def test_an_assumed_role_client_sees_its_own_accounts_jobs(clock, moto_url):
    sim = make_simulator(clock, accounts=StsAccounts(moto_url))
    member_credentials = await assumed(moto_url, MEMBER)
    async with (
        serve_drs_simulator(sim) as url,
        drs_as(url, member_credentials) as member,
        drs_as(url, FAKE) as default,
    ):
        job = (await member.start_recovery(**body(HEALTHY)))["job"]
        assert job["arn"].split(":")[4] == MEMBER
        for _ in range(3):
            listed = await member.describe_jobs(filters={"jobIDs": [job["jobID"]]})
            assert [item["jobID"] for item in listed["items"]] == [job["jobID"]]
        assert (await default.describe_jobs(filters={"jobIDs": [job["jobID"]]}))["items"] == []
    with sim.as_account(MEMBER):
        assert [script.job_id for script in sim.jobs(REGION)] == [job["jobID"]]
    # One GetCallerIdentity per access key, however many requests it signs.
    assert sim.accounts.lookups == 2
    assert {call.account for call in sim.calls} == {MEMBER, DEFAULT_ACCOUNT_ID}


async def test_an_unreachable_sts_is_a_retryable_error_and_is_asked_again(clock):
    sim = make_simulator(clock, accounts=StsAccounts("http://127.0.0.1:9"))
    async with serve_drs_simulator(sim) as url, drs_as(url, FAKE) as client:
        for _ in range(2):
            with pytest.raises(ClientError) as caught:
                await client.describe_jobs()
            error = caught.value.response
            assert error["Error"]["Code"] == "InternalServerException"
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert sim.accounts.lookups == 2  # not cached


async def test_an_instance_is_created_in_the_jobs_account(clock, moto_url):
    instances = Ec2Instances(moto_url)
    sim = make_simulator(clock, instances=instances)
    with sim.as_account(MEMBER):
        job = sim.start_recovery(REGION, body(HEALTHY, NO_ACTIONS))["job"]
    default_job = sim.start_recovery(REGION, body(HEALTHY))["job"]
    at(clock, LAUNCHED_AT)
    assert await sim.create_due_instances() == 3
    assert instances.assumed == 1  # the member account's credentials, once
    with sim.as_account(MEMBER):
        member_ids = sim.recovery_instance_ids(REGION)
        shown = sim.describe_recovery_instances(REGION, {})["items"]
    assert {item["jobID"] for item in shown} == {job["jobID"]}
    default_ids = sim.recovery_instance_ids(REGION)
    assert len(member_ids) == 2
    assert len(default_ids) == 1
    assert {i["jobID"] for i in sim.describe_recovery_instances(REGION, {})["items"]} == {
        default_job["jobID"]
    }
    # The daemon's view: DescribeInstances with credentials assumed into the member account
    # finds them; the hub's own credentials do not.
    member = aioboto3.Session(**await assumed(moto_url, MEMBER), region_name=REGION)
    async with member.client("ec2", endpoint_url=moto_url) as ec2:
        found = await ec2.describe_instances(InstanceIds=member_ids)
        owners = {r["OwnerId"] for r in found["Reservations"]}
        running = [i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]]
        assert owners == {MEMBER}
        assert running == ["running", "running"]
    hub = aioboto3.Session(**FAKE, region_name=REGION)
    async with hub.client("ec2", endpoint_url=moto_url) as ec2:
        with pytest.raises(ClientError) as caught:
            await ec2.describe_instances(InstanceIds=member_ids)
        assert caught.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    # Terminating them terminates them in the member account.
    at(clock, LAUNCHED_AT + 700)
    with sim.as_account(MEMBER):
        await sim.terminate_recovery_instances(REGION, {"recoveryInstanceIDs": member_ids})
        assert sim.recovery_instance_ids(REGION) == []
    async with member.client("ec2", endpoint_url=moto_url) as ec2:
        found = await ec2.describe_instances(InstanceIds=member_ids)
        states = {i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]}
        assert states <= {"shutting-down", "terminated"}
    assert instances.assumed == 1


def test_a_simulator_without_accounts_serves_the_default_one(clock):
    assert DrsSimulator(clock=clock).account() == DEFAULT_ACCOUNT_ID


def test_simulate_tells_accounts_apart_through_the_moto_it_is_given(clock):
    plain = build_simulator(SimulatorOptions(), clock=clock)
    assert type(plain.accounts) is KnownAccounts
    with_ec2 = build_simulator(
        SimulatorOptions(ec2_endpoint_url="http://127.0.0.1:5000"), clock=clock
    )
    assert isinstance(with_ec2.accounts, StsAccounts)
    assert with_ec2.accounts.endpoint_url == "http://127.0.0.1:5000"
    assert isinstance(with_ec2.instances, Ec2Instances)
    assert with_ec2.instances.sts_endpoint_url == "http://127.0.0.1:5000"
    options = SimulatorOptions(
        ec2_endpoint_url="http://127.0.0.1:5000", sts_endpoint_url="http://127.0.0.1:5001"
    )
    both = build_simulator(options, clock=clock)
    assert isinstance(both.accounts, StsAccounts)
    assert both.accounts.endpoint_url == "http://127.0.0.1:5001"
    args = build_parser().parse_args(["simulate", "--sts-endpoint-url", "http://127.0.0.1:5001"])
    assert args.sts_endpoint_url == "http://127.0.0.1:5001"


def test_a_member_accounts_launch_event_names_its_account(clock):
    sim = make_simulator(clock)
    with sim.as_account(MEMBER):
        job = sim.start_recovery(REGION, body(HEALTHY))["job"]
    sim.start_recovery(REGION, body(HEALTHY))
    at(clock, LAUNCHED_AT + 1)
    publisher = LaunchEventPublisher(sim, endpoint_url="http://127.0.0.1:9")
    entries = publisher.due()[REGION]
    accounts = sorted(entry["Resources"][0].split(":")[4] for entry in entries)
    assert accounts == sorted([MEMBER, DEFAULT_ACCOUNT_ID])
    assert job["jobID"] in {json.loads(entry["Detail"])["job-id"] for entry in entries}
