"""Issue 15: one daemon, several AWS accounts. Real daemons and aiobotocore clients
against moto server (STS, DynamoDB, EC2) and the DRS simulator, which tells accounts
apart by the access key a request is signed with (moto's AssumeRole keys resolve to the
role's account). Waves in two accounts in one execution; an AssumeRole denied in one
account while another carries on; credentials expiring mid-run; a failover that moves
(account, region) shards."""

from __future__ import annotations

import json
import ssl
import uuid
from typing import Any

import aioboto3
import pytest
from botocore.httpsession import create_urllib3_context
from faultproxy import FaultProxy, status
from harness import OTHER_REGION, REGION, launched, metric, server_id, servers_of
from harness import owned_executions as _owned
from harness import replica_turn as _turn
from structlog.testing import capture_logs

from drs_poller.core.drs_events import LAUNCH_RESULT
from drs_poller.core.ownership import home_place, work_shard
from drs_poller.core.places import Place
from drs_poller.local.items import ServerSpec, execution_item

OWN = "123456789012"  # moto's default account, and the simulator's
MEMBER = "222233334444"
THIRD = "333344445555"


async def _put(world, execution_id: str, waves: list[tuple[str, str | None, list[ServerSpec]]]):
    """An execution whose waves are (region, AccountId or None, servers)."""
    item = world.spec(execution_id, [(region, servers) for region, _, servers in waves])
    raw = execution_item(item)
    for wave, (_, account, _) in zip(raw["Waves"], waves, strict=True):
        if account is not None:
            wave["AccountId"] = account
    await world.put(raw)
    return raw


def _assumed(daemon, account: str, outcome: str = "success") -> float:
    labels = {
        "service": "sts",
        "operation": "AssumeRole",
        "account": account,
        "region": REGION,
        "outcome": outcome,
    }
    return metric(daemon, "drs_poller_aws_calls_total", labels)


def _describe_jobs_per_place(world) -> dict[tuple[str | None, str | None], int]:
    found: dict[tuple[str | None, str | None], int] = {}
    for call in world.drs.calls:
        if call.operation == "DescribeJobs":
            key = (call.account, call.region)
            found[key] = found.get(key, 0) + 1
    return found


async def test_waves_in_two_accounts_in_one_execution_finish_with_one_call_per_place(
    world, moto_url
):
    s1, s2, s3 = server_id(1), server_id(2), server_id(3)
    own_job = world.job([s1], [(0, "STARTED", {}), (60, "COMPLETED", {s1: launched()})])
    member_job = world.job(
        [s2], [(0, "STARTED", {}), (120, "COMPLETED", {s2: launched()})], account=MEMBER
    )
    # A second execution in the member account's region: its job shares the call.
    other_job = world.job(
        [s3], [(0, "STARTED", {}), (120, "COMPLETED", {s3: launched()})], account=MEMBER
    )
    await _put(
        world,
        "ex-two",
        [(REGION, None, [ServerSpec(s1, own_job)]), (REGION, MEMBER, [ServerSpec(s2, member_job)])],
    )
    await _put(world, "ex-member", [(REGION, MEMBER, [ServerSpec(s3, other_job)])])
    daemon = await world.daemon(sts_endpoint_url=moto_url)

    assert await world.step(daemon) == 2
    # One DescribeJobs per (account, region) for the batch: the member account's call
    # carries both executions' jobs.
    assert _describe_jobs_per_place(world) == {(OWN, REGION): 1, (MEMBER, REGION): 1}
    assert _assumed(daemon, MEMBER) == 1
    assert metric(daemon, "drs_poller_account_reachable", {"account": MEMBER}) == 1

    item = await world.run_until_final(daemon, "ex-two", step=15)
    assert item["Status"] == "COMPLETED"
    assert [servers_of(item, wave)[0]["Status"] for wave in (0, 1)] == ["LAUNCHED", "LAUNCHED"]
    assert item["Waves"][1]["AccountId"] == MEMBER  # kept as the initiator wrote it
    assert (await world.run_until_final(daemon, "ex-member", step=15))["Status"] == "COMPLETED"
    # One AssumeRole for the whole run (credentials last an hour), and the calls are
    # counted by account.
    assert _assumed(daemon, MEMBER) == 1
    calls = {"service": "drs", "operation": "DescribeJobs", "region": REGION, "outcome": "success"}
    assert metric(daemon, "drs_poller_aws_calls_total", {**calls, "account": MEMBER}) >= 2
    assert metric(daemon, "drs_poller_aws_calls_total", {**calls, "account": "self"}) >= 2


def _sts_denied(account: str) -> dict[str, Any]:
    xml = (
        "<ErrorResponse xmlns='https://sts.amazonaws.com/doc/2011-06-15/'><Error>"
        "<Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to"
        f" perform: sts:AssumeRole on resource: arn:aws:iam::{account}:role/drs-poller-member"
        "</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId>"
        "</ErrorResponse>"
    )
    return {
        "action": status(403, headers={"Content-Type": "text/xml"}, body=xml.encode()),
        "operation": "AssumeRole",
        "when": lambda request: account in request.form.get("RoleArn", ""),
    }


async def test_a_denied_account_keeps_its_status_while_another_carries_on(world, moto_url):
    s1, s2 = server_id(11), server_id(12)
    denied_job = world.job(
        [s1], [(0, "STARTED", {}), (30, "COMPLETED", {s1: launched()})], account=MEMBER
    )
    fine_job = world.job(
        [s2], [(0, "STARTED", {}), (30, "COMPLETED", {s2: launched()})], account=THIRD
    )
    await _put(world, "ex-denied", [(REGION, MEMBER, [ServerSpec(s1, denied_job)])])
    await _put(world, "ex-fine", [(REGION, THIRD, [ServerSpec(s2, fine_job)])])
    async with FaultProxy(moto_url) as sts:
        rule = sts.add(**_sts_denied(MEMBER))
        daemon = await world.daemon(sts_endpoint_url=sts.url)
        before = await world.get("ex-denied")
        with capture_logs() as logs:
            await world.step(daemon)
            for _ in range(4):
                await world.step(daemon, 45)
        assert (await world.get("ex-fine"))["Status"] == "COMPLETED"  # the other account
        # Denied: nothing observed, nothing written (no heartbeat either), not failed.
        assert await world.get("ex-denied") == before
        assert metric(daemon, "drs_poller_account_reachable", {"account": MEMBER}) == 0
        assert metric(daemon, "drs_poller_account_reachable", {"account": THIRD}) == 1
        failures = metric(
            daemon,
            "drs_poller_account_credentials_failures_total",
            {"account": MEMBER, "reason": "denied"},
        )
        assert failures >= 1
        # Denied is permanent for the Caller: one request a try, and the tries back off
        # (5 s doubling): never more than one a poll.
        assert sts.count("AssumeRole", rule=rule) == failures <= 5
        outages = [e for e in logs if e["event"].startswith("member account unreachable")]
        assert len(outages) == 1  # logged once per outage
        assert outages[0]["account"] == MEMBER
        assert outages[0]["reason"] == "denied"

        sts.remove(rule)  # the member stack is fixed
        with capture_logs() as logs:
            item = await world.run_until_final(daemon, "ex-denied", step=60, limit=900)
        assert item["Status"] == "COMPLETED"
        assert metric(daemon, "drs_poller_account_reachable", {"account": MEMBER}) == 1
        assert [e["account"] for e in logs if e["event"] == "member account reachable again"] == [
            MEMBER
        ]


async def test_an_unreachable_account_ends_only_at_the_maximum_age_and_says_so(world, moto_url):
    sid = server_id(21)
    job = world.job([sid], [(0, "STARTED", {})], account=MEMBER)
    await _put(world, "ex-old", [(REGION, MEMBER, [ServerSpec(sid, job)])])
    async with FaultProxy(moto_url) as sts:
        sts.add(**_sts_denied(MEMBER))
        daemon = await world.daemon(
            sts_endpoint_url=sts.url, overdue_after=600, max_execution_age=1200
        )
        await world.step(daemon)
        await world.step(daemon, 600)
        assert (await world.get("ex-old"))["Status"] == "POLLING"
        item = await world.run_until_final(daemon, "ex-old", step=120, limit=1200)
    assert item["Status"] == "FAILED"
    assert f"account {MEMBER} unreachable (AssumeRole denied)" in item["ErrorMessage"]


async def test_credentials_expiring_mid_run_are_refreshed_without_a_failed_poll(world, moto_url):
    sid = server_id(31)
    # Pending for about two hours: longer than two of the assumed role's hours, counted
    # from the refresh at about 2800 s.
    job = world.job(
        [sid],
        [(0, "PENDING", {}), (6900, "STARTED", {}), (6960, "COMPLETED", {sid: launched()})],
        account=MEMBER,
    )
    await _put(world, "ex-long", [(REGION, MEMBER, [ServerSpec(sid, job)])])
    daemon = await world.daemon(sts_endpoint_url=moto_url)
    await world.step(daemon)
    assert _assumed(daemon, MEMBER) == 1
    # No refresh before botocore's window (15 minutes before the expiry) ...
    await world.step(daemon, 2600)
    assert _assumed(daemon, MEMBER) == 1
    # ... one in it, before any call is made with expired credentials.
    await world.step(daemon, 200)
    assert _assumed(daemon, MEMBER) == 2
    item = await world.run_until_final(daemon, "ex-long", step=300, limit=5400)
    assert item["Status"] == "COMPLETED"
    assert _assumed(daemon, MEMBER) == 3  # once an hour
    assert _assumed(daemon, MEMBER, "error") == 0
    assert (
        metric(
            daemon,
            "drs_poller_account_credentials_failures_total",
            {"account": MEMBER, "reason": "error"},
        )
        == 0
    )
    assert (
        metric(
            daemon,
            "drs_poller_unobserved_calls_total",
            {"operation": "DescribeJobs", "kind": "permanent"},
        )
        == 0
    )
    assert metric(daemon, "drs_poller_polls_total", {"outcome": "error"}) == 0


# --- replicas: shards by (account, region) --------------------------------------------


LEASE = 30.0
RENEW = LEASE / 3
PLACES = [
    (REGION, None),
    (OTHER_REGION, None),
    (REGION, MEMBER),
    (OTHER_REGION, MEMBER),
    (REGION, THIRD),
    (OTHER_REGION, THIRD),
]


@pytest.mark.parametrize("projection", ["ALL", "KEYS_ONLY"])
async def test_a_failover_moves_account_region_shards_whole(world, moto_url):
    names: dict[str, Place] = {}
    for n in range(24):
        region, account = PLACES[n % len(PLACES)]
        sid = server_id(4000 + n)
        job = world.job([sid], [(0, "PENDING", {})], region=region, account=account)
        name = f"ex-{n:03d}"
        await _put(world, name, [(region, account, [ServerSpec(sid, job)])])
        names[name] = Place(account, region)
    table = await world.lease_table()
    replicas = [
        await world.daemon(
            lease_table_name=table,
            replica_id=f"replica-{r}",
            lease_time=LEASE,
            sts_endpoint_url=moto_url,
        )
        for r in "ab"
    ]
    await _turn(world, *replicas)
    await _turn(world, *replicas, seconds=RENEW)
    owned = {d.settings.replica_id: _owned(d) for d in replicas}
    assert set.union(*owned.values()) == set(names)
    # Each place is one shard, named by its account and region, polled by one replica.
    for place in set(names.values()):
        owners = {r for r, mine in owned.items() for n in mine if names[n] == place}
        assert len(owners) == 1, (place, owners)
    shards = {
        work_shard(t.name, home_place(t.item), d.state.shards)
        for d in replicas
        for t in d.state.tracked.values()
    }
    assert shards == {
        f"{MEMBER}/{REGION}#0",
        f"{MEMBER}/{OTHER_REGION}#0",
        f"{THIRD}/{REGION}#0",
        f"{THIRD}/{OTHER_REGION}#0",
        f"{REGION}#0",
        f"{OTHER_REGION}#0",
    }

    # The replica that owns more stops (a crash: no renewal, no poll, ever again).
    victim, survivor = sorted(replicas, key=lambda d: -len(_owned(d)))
    moved = _owned(victim)
    assert moved
    for _ in range(12):
        await _turn(world, survivor, seconds=RENEW / 2)
        if _owned(survivor) == set(names):
            break
    assert _owned(survivor) == set(names)
    # Taken over whole: the next turn makes one DescribeJobs per (account, region).
    world.drs.reset_calls()
    await _turn(world, survivor, seconds=45)
    assert _describe_jobs_per_place(world) == {
        (account or OWN, region): 1 for region, account in PLACES
    }
    taken = metric(survivor, "drs_poller_ownership_changes_total", {"direction": "taken"})
    assert taken == len(moved)


async def _instance_in(world, moto_url: str, account: str) -> dict[str, Any]:
    """One EC2 instance in moto, in ``account`` (credentials assumed into it)."""
    session = world.stack.session(REGION)
    async with session.client("sts", endpoint_url=moto_url) as sts:
        answer = await sts.assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/test-setup", RoleSessionName="test"
        )
    keys = answer["Credentials"]
    member = aioboto3.Session(
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
        region_name=REGION,
    )
    async with member.client("ec2", endpoint_url=moto_url) as ec2:
        result = await ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m5.large"
        )
    return result["Instances"][0]


async def test_recovery_instances_are_described_in_the_waves_account(world, moto_url):
    sid = server_id(51)
    instance = await _instance_in(world, moto_url, MEMBER)
    job = world.job(
        [sid],
        [(0, "STARTED", {}), (60, "COMPLETED", {sid: launched()})],
        ec2_ids={sid: instance["InstanceId"]},
        account=MEMBER,
    )
    await _put(world, "ex-ec2", [(REGION, MEMBER, [ServerSpec(sid, job)])])
    daemon = await world.daemon(sts_endpoint_url=moto_url)
    item = await world.run_until_final(daemon, "ex-ec2", step=30)
    server = servers_of(item)[0]
    assert item["Status"] == "COMPLETED"
    # Found only in the member account: moto keeps each account's instances apart.
    assert server["InstanceId"] == instance["InstanceId"]
    assert server["PrivateIp"] == instance["PrivateIpAddress"]
    assert server["InstanceType"] == "m5.large"
    calls = {"service": "ec2", "operation": "DescribeInstances", "region": REGION}
    assert (
        metric(
            daemon, "drs_poller_aws_calls_total", {**calls, "account": MEMBER, "outcome": "success"}
        )
        == 1
    )
    assert (
        metric(
            daemon, "drs_poller_aws_calls_total", {**calls, "account": "self", "outcome": "success"}
        )
        == 0
    )


async def test_clients_of_every_account_share_one_class_and_keep_their_own_credentials(
    world, moto_url
):
    """The EC2 and DRS client classes are built once per process (clients/aws.py,
    ``share_client_classes``: 1.2 MB for each EC2 client otherwise). Each client still
    signs with its own account's credentials: the own account's instance and the member
    account's instance are each found only where they live."""
    own_sid, member_sid = server_id(61), server_id(62)
    own_instance = await _instance_in(world, moto_url, OWN)
    member_instance = await _instance_in(world, moto_url, MEMBER)
    own_job = world.job(
        [own_sid],
        [(0, "STARTED", {}), (60, "COMPLETED", {own_sid: launched()})],
        ec2_ids={own_sid: own_instance["InstanceId"]},
    )
    member_job = world.job(
        [member_sid],
        [(0, "STARTED", {}), (60, "COMPLETED", {member_sid: launched()})],
        ec2_ids={member_sid: member_instance["InstanceId"]},
        account=MEMBER,
    )
    await _put(
        world,
        "ex-shared",
        [
            (REGION, None, [ServerSpec(own_sid, own_job)]),
            (REGION, MEMBER, [ServerSpec(member_sid, member_job)]),
        ],
    )
    daemon = await world.daemon(sts_endpoint_url=moto_url)
    item = await world.run_until_final(daemon, "ex-shared", step=30)
    assert item["Status"] == "COMPLETED"
    found = {
        s["SourceServerId"]: s["InstanceId"] for wave in (0, 1) for s in servers_of(item, wave)
    }
    assert found == {
        own_sid: own_instance["InstanceId"],
        member_sid: member_instance["InstanceId"],
    }
    pool = daemon.components.clients
    for service in ("ec2", "drs"):
        own = await pool.get(service, REGION)
        member = await pool.get(service, REGION, account=MEMBER)
        other_region = await pool.get(service, OTHER_REGION, account=MEMBER)
        assert own is not member
        assert type(own) is type(member) is type(other_region)
        assert other_region.meta.region_name == OTHER_REGION
        own_keys = await own._request_signer._credentials.get_frozen_credentials()
        member_keys = await member._request_signer._credentials.get_frozen_credentials()
        assert own_keys.access_key != member_keys.access_key
        # One TLS context for all their connections (0.4 MB of OpenSSL memory each
        # otherwise), verifying certificates against the CA bundle as aiobotocore's own.
        contexts = {id(_tls_context(client)) for client in (own, member)}
        assert len(contexts) == 1
        context = _tls_context(own)
        reference = create_urllib3_context()
        assert context.verify_mode == reference.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname == reference.check_hostname
        assert context.cert_store_stats()["x509_ca"] > 0


def _tls_context(client: Any) -> ssl.SSLContext:
    """The TLS context of a client's connections (opened at its first call)."""
    (session,) = client._endpoint.http_session._sessions.values()
    context = session.connector._ssl
    assert isinstance(context, ssl.SSLContext)
    return context


def _member_event(account: str, server: str, job: str) -> str:
    """A DRS event of ``account``, as its default bus forwards it to the hub's."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": LAUNCH_RESULT,
            "source": "aws.drs",
            "account": account,
            "time": "2027-01-15T08:00:00Z",
            "region": REGION,
            "resources": [f"arn:aws:drs:{REGION}:{account}:source-server/{server}"],
            "detail": {"state": "DRILL_LAUNCH_SUCCEEDED", "job-id": job},
        }
    )


async def test_a_member_accounts_event_pulls_only_that_accounts_executions(world, moto_url):
    # The same source server id in two member accounts (each has its own servers).
    sid = server_id(71)
    jobs = {
        account: world.job(
            [sid], [(0, "PENDING", {}), (30, "STARTED", {sid: launched()})], account=account
        )
        for account in (MEMBER, THIRD)
    }
    for account, job in jobs.items():
        await _put(world, f"ex-{account}", [(REGION, account, [ServerSpec(sid, job)])])
    async with world.stack.session().client("sqs", endpoint_url=moto_url) as sqs:
        url = (await sqs.create_queue(QueueName=f"drs-events-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        daemon = await world.daemon(
            events_queue_url=url, sqs_endpoint_url=moto_url, sts_endpoint_url=moto_url
        )
        listener = daemon.built.listener
        listener.wait_seconds = 0
        assert await world.step(daemon) == 2  # both PENDING, next polls in 45 s
        world.clock.advance(40)  # both launched now
        world.drs.reset_calls()
        await sqs.send_message(QueueUrl=url, MessageBody=_member_event(THIRD, sid, jobs[THIRD]))
        assert await listener.turn()
        assert await world.dispatch(daemon) == 1  # THIRD's execution only
        assert _describe_jobs_per_place(world) == {(THIRD, REGION): 1}
        assert (await world.get(f"ex-{THIRD}"))["Status"] == "COMPLETED"
        assert (await world.get(f"ex-{MEMBER}"))["Status"] == "POLLING"
        assert metric(daemon, "drs_poller_events_hinted_total") == 1
        await sqs.delete_queue(QueueUrl=url)


async def test_a_wave_naming_the_daemons_own_account_shares_its_batch_and_credentials(
    world, moto_url
):
    s1, s2 = server_id(81), server_id(82)
    first = world.job([s1], [(0, "STARTED", {}), (60, "COMPLETED", {s1: launched()})])
    second = world.job([s2], [(0, "STARTED", {}), (60, "COMPLETED", {s2: launched()})])
    await _put(world, "ex-implicit", [(REGION, None, [ServerSpec(s1, first)])])
    await _put(world, "ex-explicit", [(REGION, OWN, [ServerSpec(s2, second)])])
    daemon = await world.daemon(sts_endpoint_url=moto_url)
    await world.step(daemon)  # learns its own account (GetCallerIdentity, once)
    world.drs.reset_calls()
    await world.step(daemon, 15)
    assert _describe_jobs_per_place(world) == {(OWN, REGION): 1}  # one batch for both
    for name in ("ex-implicit", "ex-explicit"):
        assert (await world.run_until_final(daemon, name, step=15))["Status"] == "COMPLETED"
    assert _assumed(daemon, OWN) == 0  # the task role itself
    identity = {
        "service": "sts",
        "operation": "GetCallerIdentity",
        "account": "self",
        "region": REGION,
        "outcome": "success",
    }
    assert metric(daemon, "drs_poller_aws_calls_total", identity) == 1
