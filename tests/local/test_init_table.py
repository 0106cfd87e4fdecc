"""``drs-poller init-table`` against moto server: create, idempotent re-run, wrong schema."""

from __future__ import annotations

import asyncio
import uuid

import aioboto3
import pytest

from drs_poller import cli
from drs_poller.local.table import (
    lease_table_definition,
    schema_differences,
    table_definition,
)

FAKE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture
def env(monkeypatch, moto_url):
    for name in ("DRS_POLLER_TABLE_NAME", "DRS_POLLER_LEASE_TABLE_NAME", "DRS_POLLER_STATUS_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRS_POLLER_DYNAMODB_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return monkeypatch


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def describe(moto_url: str, table: str) -> tuple[dict, dict]:
    session = aioboto3.Session(**FAKE, region_name="us-east-1")
    async with session.client("dynamodb", endpoint_url=moto_url) as ddb:
        description = (await ddb.describe_table(TableName=table))["Table"]
        ttl = (await ddb.describe_time_to_live(TableName=table))["TimeToLiveDescription"]
    return description, ttl


def test_creates_the_table_and_lease_table_then_reruns_idempotently(env, moto_url, capsys):
    table, lease = fresh("history"), fresh("leases")
    env.setenv("DRS_POLLER_TABLE_NAME", table)
    env.setenv("DRS_POLLER_LEASE_TABLE_NAME", lease)

    assert cli.main(["init-table"]) == 0
    first = capsys.readouterr().out
    assert f"table {table}: created; ACTIVE" in first
    assert f"table {lease}: created; ACTIVE" in first

    history, _ = asyncio.run(describe(moto_url, table))
    assert history["TableStatus"] == "ACTIVE"
    assert schema_differences(table_definition(table), history) == []
    (index,) = history["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "StatusIndex"
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}  # the lean default
    leases, ttl = asyncio.run(describe(moto_url, lease))
    assert schema_differences(lease_table_definition(lease), leases) == []
    assert [k["AttributeName"] for k in leases["KeySchema"]] == ["LeaseGroup", "ReplicaId"]
    assert leases["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ExpiresAt")

    assert cli.main(["init-table"]) == 0
    again = capsys.readouterr().out
    assert f"table {table}: already exists with the expected schema" in again
    assert f"table {lease}: already exists with the expected schema" in again


@pytest.mark.parametrize(
    ("flag", "projection"),
    [
        (
            "INCLUDE",
            {
                "ProjectionType": "INCLUDE",
                "NonKeyAttributes": ["PollerRevision", "TaskTokensPending"],
            },
        ),
        ("ALL", {"ProjectionType": "ALL"}),
        ("KEYS_ONLY", {"ProjectionType": "KEYS_ONLY"}),
    ],
)
def test_index_projection_flag_chooses_what_the_index_projects(
    env, moto_url, capsys, flag, projection
):
    table = fresh("projected")
    assert cli.main(["init-table", "--table", table, "--index-projection", flag]) == 0
    history, _ = asyncio.run(describe(moto_url, table))
    assert history["GlobalSecondaryIndexes"][0]["Projection"] == projection
    capsys.readouterr()
    # An existing table keeps the projection it has, and init-table says so.
    other = "KEYS_ONLY" if flag != "KEYS_ONLY" else "ALL"
    assert cli.main(["init-table", "--table", table, "--index-projection", other]) == 0
    out = capsys.readouterr().out
    assert f"table {table}: already exists with the expected schema" in out
    assert f"index StatusIndex projects {flag}" in out
    assert f"not {other}: kept as it is" in out


def test_flags_override_the_environment(env, moto_url, capsys):
    table = fresh("flagged")
    assert cli.main(["init-table", "--table", table, "--index", "ByStatus"]) == 0
    assert f"table {table}: created" in capsys.readouterr().out

    history, _ = asyncio.run(describe(moto_url, table))
    assert history["GlobalSecondaryIndexes"][0]["IndexName"] == "ByStatus"
    # The same table asked for with the contract's index name: a difference, exit 2.
    assert cli.main(["init-table", "--table", table]) == 2
    assert "global secondary index StatusIndex is missing" in capsys.readouterr().err


def test_a_table_with_another_schema_is_exit_2_naming_the_difference(env, moto_url, capsys):
    table = fresh("wrong")
    wrong = table_definition(table)
    wrong["KeySchema"] = [{"AttributeName": "ExecutionId", "KeyType": "HASH"}]
    wrong["AttributeDefinitions"] = [
        {"AttributeName": "ExecutionId", "AttributeType": "S"},
        {"AttributeName": "Status", "AttributeType": "S"},
        {"AttributeName": "StartTime", "AttributeType": "S"},
    ]

    async def create() -> None:
        session = aioboto3.Session(**FAKE, region_name="us-east-1")
        async with session.client("dynamodb", endpoint_url=moto_url) as ddb:
            await ddb.create_table(**wrong)

    asyncio.run(create())
    assert cli.main(["init-table", "--table", table]) == 2
    err = capsys.readouterr().err
    assert f"table {table} exists with another schema" in err
    assert "key schema is [('ExecutionId', 'HASH')]" in err
    assert "attribute StartTime has type S, expected N" in err


def test_a_lease_table_with_ttl_on_another_attribute_is_exit_2(env, moto_url, capsys):
    lease = fresh("leases")

    async def create() -> None:
        session = aioboto3.Session(**FAKE, region_name="us-east-1")
        async with session.client("dynamodb", endpoint_url=moto_url) as ddb:
            await ddb.create_table(**lease_table_definition(lease))
            await ddb.update_time_to_live(
                TableName=lease,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "Expiry"},
            )

    asyncio.run(create())
    code = cli.main(["init-table", "--table", fresh("history"), "--lease-table", lease])
    assert code == 2
    assert "TTL is on Expiry, expected ExpiresAt" in capsys.readouterr().err


def test_no_table_name_is_exit_2(env, capsys):
    assert cli.main(["init-table"]) == 2
    assert "DRS_POLLER_TABLE_NAME" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            lambda d: d["GlobalSecondaryIndexes"][0].update(
                Projection={"ProjectionType": "SOMETHING_NEW"}
            ),
            "projects SOMETHING_NEW",
        ),
        # Every projection the daemon works with is no difference (it is kept).
        (
            lambda d: d["GlobalSecondaryIndexes"][0].update(Projection={"ProjectionType": "ALL"}),
            None,
        ),
        (
            lambda d: d["GlobalSecondaryIndexes"][0]["KeySchema"].reverse(),
            "index StatusIndex key schema",
        ),
        (lambda d: d.pop("GlobalSecondaryIndexes"), "StatusIndex is missing"),
        (lambda _: None, None),
    ],
)
def test_schema_differences(change, complaint):
    described = table_definition("t")
    change(described)
    differences = schema_differences(table_definition("t"), described)
    if complaint is None:
        assert differences == []
    else:
        assert any(complaint in d for d in differences), differences
