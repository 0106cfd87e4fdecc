"""Issue 15 without I/O: a wave's AccountId and place, shard groups, event routes by
account (and the engine's route index), the maximum-age message for an unreachable
account, the member-role settings, and the assumed credentials' expiry and failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aioboto3
import pytest

from drs_poller.clients.accounts import MemberAccounts, failure_reason, sts_endpoint
from drs_poller.clients.aws import ClientPool
from drs_poller.clients.calling import AwsCallError, Caller
from drs_poller.clock import ManualClock
from drs_poller.core.backoff import BackoffPolicy, ErrorKind
from drs_poller.core.deciding import decide, jobs_to_poll
from drs_poller.core.drs_events import DrsEvent, concerns, item_routes, parse_event
from drs_poller.core.models import MalformedItemError, parse_execution
from drs_poller.core.ownership import home_place, work_shard
from drs_poller.core.places import Place, partition_of, place_of, role_arn
from drs_poller.engine.state import EngineState
from drs_poller.engine.tracking import queue_name
from drs_poller.observability.metrics import Metrics
from drs_poller.settings import SettingsError, load_settings, policy_from

OTHER, THIRD, OWN = "222233334444", "333344445555", "123456789012"
S1, S2 = "s-00000000000000001", "s-00000000000000002"
JOB1, JOB2 = "drsjob-00000000000000001", "drsjob-00000000000000002"
START = 1_800_000_000


def _wave(region: str, server: str, job: str, **extra: Any) -> dict[str, Any]:
    return {
        "WaveName": f"w-{server}",
        "Region": region,
        "Servers": [{"SourceServerId": server, "RecoveryJobId": job, "Status": "PENDING"}],
        **extra,
    }


def _item(*waves: dict[str, Any]) -> dict[str, Any]:
    return {
        "ExecutionId": "ex",
        "PlanId": "plan",
        "Status": "POLLING",
        "StartTime": Decimal(START),
        "Waves": list(waves),
    }


# --- AccountId validation (contract §1) ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "account"),
    [
        pytest.param(None, None, id="absent: the daemon's own"),
        pytest.param(OTHER, OTHER, id="12 digits"),
        pytest.param("000000000000", "000000000000", id="leading zeros kept"),
    ],
)
def test_a_valid_account_id_is_the_waves_account(value, account):
    extra = {} if value is None else {"AccountId": value}
    execution = parse_execution(_item(_wave("us-east-1", S1, JOB1, **extra)))
    assert execution.waves[0].account == account
    assert execution.waves[0].place == Place(account, "us-east-1")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param("22223333444", "must be 12 digits", id="11 digits"),
        pytest.param("2222333344445", "must be 12 digits", id="13 digits"),
        pytest.param("22223333444a", "must be 12 digits", id="a letter"),
        pytest.param(" 222233334444", "must be 12 digits", id="a space"),
        pytest.param("", "must be 12 digits", id="empty string"),
        pytest.param(Decimal(222233334444), "must be a string (S)", id="a number (N)"),
        pytest.param(True, "must be a string (S)", id="a boolean"),
        pytest.param(["222233334444"], "must be a string (S)", id="a list"),
    ],
)
def test_a_malformed_account_id_makes_the_item_malformed_like_a_region(value, problem):
    with pytest.raises(MalformedItemError) as raised:
        parse_execution(
            _item(_wave("us-east-1", S1, JOB1), _wave("eu-west-1", S2, JOB2, AccountId=value))
        )
    assert raised.value.field == "Waves[1].AccountId"
    assert problem in raised.value.problem


# --- places ---------------------------------------------------------------------------------


def test_place_key_and_label():
    assert Place(None, "us-east-1").key == "us-east-1"
    assert Place(None, "us-east-1").label == "self"
    assert Place(OTHER, "us-east-1").key == f"{OTHER}/us-east-1"
    assert Place(OTHER, "us-east-1").label == OTHER
    assert str(Place(OTHER, "eu-west-1")) == f"{OTHER}/eu-west-1"


def test_the_own_account_named_explicitly_is_the_own_place():
    assert place_of(OWN, "us-east-1", own_account=OWN) == Place(None, "us-east-1")
    assert place_of(OTHER, "us-east-1", own_account=OWN) == Place(OTHER, "us-east-1")
    assert place_of(None, "us-east-1", own_account=OWN) == Place(None, "us-east-1")


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("eu-west-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
    ],
)
def test_the_role_arn_takes_its_partition_from_the_region(region, partition):
    arn = role_arn(OTHER, role_name="drs-poller-member", region=region)
    assert arn == f"arn:{partition}:iam::{OTHER}:role/drs-poller-member"
    assert partition_of(region) == partition


def test_jobs_are_batched_per_place():
    item = _item(
        _wave("us-east-1", S1, "drsjob-00000000000000011"),
        _wave("us-east-1", S2, "drsjob-00000000000000012", AccountId=OTHER),
        _wave("us-east-1", "s-00000000000000003", "drsjob-00000000000000013", AccountId=OTHER),
        _wave("eu-west-1", "s-00000000000000004", "drsjob-00000000000000014", AccountId=OTHER),
    )
    assert jobs_to_poll(parse_execution(item)) == {
        Place(None, "us-east-1"): {"drsjob-00000000000000011"},
        Place(OTHER, "us-east-1"): {"drsjob-00000000000000012", "drsjob-00000000000000013"},
        Place(OTHER, "eu-west-1"): {"drsjob-00000000000000014"},
    }


# --- shards by (account, region) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("waves", "group"),
    [
        pytest.param([_wave("us-east-1", S1, JOB1)], "us-east-1", id="own account: today's name"),
        pytest.param(
            [_wave("us-east-1", S1, JOB1, AccountId=OTHER), _wave("eu-west-1", S2, JOB2)],
            f"{OTHER}/us-east-1",
            id="the first wave's place",
        ),
        pytest.param(
            [_wave("us-east-1", S1, JOB1, AccountId="bad")], "us-east-1", id="malformed: ignored"
        ),
        pytest.param([], "", id="no wave"),
    ],
)
def test_an_items_shard_group_is_its_first_waves_place(waves, group):
    assert home_place(_item(*waves)) == group


def test_shard_names_carry_the_account_and_split_past_shard_jobs():
    assert work_shard("ex", "us-east-1", {}) == "us-east-1#0"
    assert work_shard("ex", f"{OTHER}/us-east-1", {}) == f"{OTHER}/us-east-1#0"
    slots = {
        work_shard(f"ex-{n}", f"{OTHER}/us-east-1", {f"{OTHER}/us-east-1": 4}) for n in range(64)
    }
    assert slots == {f"{OTHER}/us-east-1#{slot}" for slot in range(4)}


# --- DRS events by account -------------------------------------------------------------------


def _event(
    *servers: str, account: str | None, job: str | None = None, region: str = "us-east-1"
) -> DrsEvent:
    envelope: dict[str, Any] = {
        "source": "aws.drs",
        "detail-type": "DRS Source Server Launch Result",
        "region": region,
        "resources": [f"arn:aws:drs:{region}:{account or OWN}:source-server/{s}" for s in servers],
        "detail": {"job-id": job} if job else {},
    }
    if account is not None:
        envelope["account"] = account
    parsed = parse_event(json.dumps(envelope))
    assert isinstance(parsed, DrsEvent)
    return parsed


def test_an_event_of_account_b_never_concerns_a_wave_of_account_a():
    in_a = item_routes(_item(_wave("us-east-1", S1, JOB1, AccountId=OTHER)))
    in_b = item_routes(_item(_wave("us-east-1", S1, JOB1, AccountId=THIRD)))
    own = item_routes(_item(_wave("us-east-1", S1, JOB1)))
    by_server = _event(S1, account=THIRD)
    by_job = _event(account=THIRD, job=JOB1)
    for event in (by_server, by_job):
        assert not concerns(event, in_a, own_account=OWN)
        assert concerns(event, in_b, own_account=OWN)
        assert not concerns(event, own, own_account=OWN)


def test_the_daemons_own_events_concern_its_own_waves_and_those_naming_its_account():
    own = item_routes(_item(_wave("us-east-1", S1, JOB1)))
    named = item_routes(_item(_wave("us-east-1", S1, JOB1, AccountId=OWN)))
    member = item_routes(_item(_wave("us-east-1", S1, JOB1, AccountId=OTHER)))
    event = _event(S1, account=OWN)
    assert concerns(event, own, own_account=OWN)
    assert concerns(event, named, own_account=OWN)
    assert not concerns(event, member, own_account=OWN)
    # No account in the envelope (moto's): the daemon's own.
    assert concerns(_event(S1, account=None), own, own_account=OWN)
    assert not concerns(_event(S1, account=None), member, own_account=OWN)


def test_an_event_in_another_region_of_the_same_account_does_not_concern_the_wave():
    member = item_routes(_item(_wave("us-east-1", S1, JOB1, AccountId=OTHER)))
    assert not concerns(_event(S1, account=OTHER, region="eu-west-1"), member, own_account=OWN)


# --- an unreachable account at the maximum age ---------------------------------------------


def test_past_the_maximum_age_the_message_says_which_account_was_unreachable():
    policy = policy_from(load_settings(table_name="executions"))
    item = _item(_wave("us-east-1", S1, JOB1), _wave("us-east-1", S2, JOB2, AccountId=OTHER))
    execution = parse_execution(item)
    unreachable = {OTHER: "AssumeRole denied"}
    young = decide(
        execution, jobs={}, instances={}, now=START + 60, policy=policy, unreachable=unreachable
    )
    assert young.final_status is None  # never failed for it before the maximum age
    old = decide(
        execution,
        jobs={},
        instances={},
        now=START + policy.max_execution_age + 1,
        policy=policy,
        unreachable=unreachable,
    )
    assert old.final_status == "FAILED"
    assert f"account {OTHER} unreachable (AssumeRole denied)" in old.updates["ErrorMessage"]
    servers = [wave["Servers"][0] for wave in old.updates["Waves"]]
    assert "unreachable" not in servers[0]["Error"]  # the own account's server
    assert f"account {OTHER} unreachable: AssumeRole denied" in servers[1]["Error"]


def test_an_event_pulls_forward_only_the_executions_of_its_account():
    state = EngineState(
        metrics=Metrics(),
        policy=policy_from(load_settings(table_name="executions")),
        tombstone_seconds=90,
    )
    # The same source server id in three accounts (every account has its own servers).
    state.track(("own", "p"), _item(_wave("us-east-1", S1, JOB1)), now=0)
    state.track(("a", "p"), _item(_wave("us-east-1", S1, JOB1, AccountId=OTHER)), now=0)
    state.track(("b", "p"), _item(_wave("us-east-1", S1, JOB1, AccountId=THIRD)), now=0)
    own, a, b = (queue_name(n, "p") for n in ("own", "a", "b"))
    assert state.concerned(_event(S1, account=THIRD), own_account=OWN) == ([b], [])
    assert state.concerned(_event(S1, account=OTHER), own_account=OWN) == ([a], [])
    assert state.concerned(_event(S1, account=OWN), own_account=OWN) == ([own], [])
    assert state.concerned(_event(account=THIRD, job=JOB1), own_account=OWN) == ([b], [])
    assert state.concerned(_event(S1, account="444455556666"), own_account=OWN) == ([], [])


# --- the settings ------------------------------------------------------------------------


def test_the_member_role_settings():
    settings = load_settings(table_name="executions")
    assert settings.account_role_name == "drs-poller-member"
    assert settings.account_role_external_id is None
    assert settings.sts_endpoint_url is None
    # The stack passes its parameter's default "" when no external id is wanted.
    assert (
        load_settings(table_name="executions", account_role_external_id="").account_role_external_id
        is None
    )
    given = load_settings(
        table_name="executions",
        account_role_name="dr-reader",
        account_role_external_id="org-7f3a",
        sts_endpoint_url="http://127.0.0.1:5000/",
    )
    assert (given.account_role_name, given.account_role_external_id) == ("dr-reader", "org-7f3a")
    assert given.sts_endpoint_url == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    "overrides",
    [
        {"account_role_name": "role/with/slash"},
        {"account_role_name": "x" * 65},
        {"account_role_name": "rôle"},
        {"account_role_external_id": "a"},
        {"account_role_external_id": "has space"},
        {"sts_endpoint_url": "sts.us-east-1.amazonaws.com"},
    ],
)
def test_bad_member_role_settings_stop_start_up(overrides):
    with pytest.raises(SettingsError):
        load_settings(table_name="executions", **overrides)


# --- credentials: their expiry on the daemon's clock --------------------------------------


def _members(clock: ManualClock) -> MemberAccounts:
    settings = load_settings(table_name="executions")
    session = aioboto3.Session(aws_access_key_id="x", aws_secret_access_key="y")
    pool = ClientPool(session=session, settings=settings, endpoints={})
    caller = Caller(
        metrics=Metrics(), clock=clock, policy=BackoffPolicy(), max_concurrent=1, max_per_region=1
    )
    return MemberAccounts(
        clients=pool,
        caller=caller,
        settings=settings,
        region="us-east-1",
        clock=clock,
        metrics=Metrics(),
    )


@pytest.mark.parametrize(
    ("expiration", "date", "lifetime"),
    [
        pytest.param(
            datetime(2026, 12, 5, 9, 0, tzinfo=UTC),
            "Sat, 05 Dec 2026 08:00:00 GMT",
            3600,
            id="an hour, by STS's own Date",
        ),
        pytest.param(
            "2026-12-05T08:15:00Z", "Sat, 05 Dec 2026 08:00:00 GMT", 900, id="as a string"
        ),
        pytest.param(
            datetime(2026, 12, 5, 7, 0, tzinfo=UTC),
            "Sat, 05 Dec 2026 08:00:00 GMT",
            0,
            id="already expired: never negative",
        ),
    ],
)
def test_assumed_credentials_expire_on_the_daemons_clock(expiration, date, lifetime):
    clock = ManualClock(start=1_800_000_000.0)  # 2027, far from the host's (or STS's) date
    answer = {
        "Credentials": {
            "AccessKeyId": "ASIA",
            "SecretAccessKey": "secret",
            "SessionToken": "token",
            "Expiration": expiration,
        },
        "ResponseMetadata": {"HTTPHeaders": {"date": date}},
    }
    metadata = _members(clock)._metadata(answer)
    expiry = datetime.fromisoformat(metadata["expiry_time"])
    assert expiry.timestamp() == 1_800_000_000.0 + lifetime
    assert (metadata["access_key"], metadata["secret_key"], metadata["token"]) == (
        "ASIA",
        "secret",
        "token",
    )


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        ("AccessDenied", ErrorKind.PERMANENT, "denied"),
        ("RegionDisabledException", ErrorKind.PERMANENT, "denied"),
        ("Throttling", ErrorKind.THROTTLED, "throttled"),
        ("InternalFailure", ErrorKind.TRANSIENT, "error"),
        ("EndpointConnectionError", ErrorKind.TRANSIENT, "error"),
    ],
)
def test_assume_role_failures_are_classified(code, kind, reason):
    error = AwsCallError(service="sts", operation="AssumeRole", kind=kind, code=code, message="")
    assert failure_reason(error) == reason


def test_the_regional_sts_endpoint():
    assert sts_endpoint("eu-west-1") == "https://sts.eu-west-1.amazonaws.com"
    assert sts_endpoint("cn-north-1") == "https://sts.cn-north-1.amazonaws.com.cn"
