"""``drs-poller report`` against moto server's DynamoDB: the item read by key, each
format, the exit codes and messages of a missing or ambiguous execution and of a
failing table."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import aioboto3
import pytest
from report_samples import SAMPLES

from drs_poller import cli
from drs_poller.clients.dynamodb import to_wire
from drs_poller.local.table import create_table

FAKE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "report"


async def _put(moto_url: str, table: str, items: list[dict], *, create: bool = True) -> None:
    session = aioboto3.Session(**FAKE, region_name="us-east-1")
    async with session.client("dynamodb", endpoint_url=moto_url) as ddb:
        if create:
            await create_table(ddb, table)
        for item in items:
            await ddb.put_item(TableName=table, Item={k: to_wire(v) for k, v in item.items()})


@pytest.fixture
def table(monkeypatch, moto_url):
    name = f"history-{uuid.uuid4().hex[:8]}"
    for variable in ("DRS_POLLER_STATUS_INDEX", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DRS_POLLER_TABLE_NAME", name)
    monkeypatch.setenv("DRS_POLLER_DYNAMODB_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return name


def test_each_format_of_a_finished_execution(table, moto_url, capsys, tmp_path):
    drill, _ = SAMPLES["drill-completed"]()
    asyncio.run(_put(moto_url, table, [drill]))
    execution_id = drill["ExecutionId"]

    assert cli.main(["report", execution_id, "--format", "json"]) == 0
    # A finished execution's report stands at its EndTime: the golden file, exactly.
    assert capsys.readouterr().out == (GOLDEN / "drill-completed.json").read_text()
    assert cli.main(["report", execution_id]) == 0  # md by default
    assert capsys.readouterr().out == (GOLDEN / "drill-completed.md").read_text()

    page = tmp_path / "report.html"
    assert cli.main(["report", execution_id, "--format", "html", "-o", str(page)]) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert str(page) in capsys.readouterr().err


def test_a_missing_execution_is_exit_2_naming_it(table, moto_url, capsys):
    asyncio.run(_put(moto_url, table, []))
    assert cli.main(["report", "ex-nowhere"]) == 2
    err = capsys.readouterr().err
    assert "no execution 'ex-nowhere'" in err
    assert table in err
    assert cli.main(["report", "ex-nowhere", "--plan-id", "plan-x"]) == 2
    assert "with plan id 'plan-x'" in capsys.readouterr().err


def test_several_plans_under_one_id_need_a_plan_id(table, moto_url, capsys):
    first, _ = SAMPLES["legacy-drill"]()
    second = {**first, "PlanId": "plan-other", "Status": "FAILED"}
    asyncio.run(_put(moto_url, table, [first, second]))
    execution_id = first["ExecutionId"]
    assert cli.main(["report", execution_id]) == 2
    err = capsys.readouterr().err
    assert "'plan-legacy', 'plan-other'" in err
    assert "--plan-id" in err
    assert cli.main(["report", execution_id, "--plan-id", "plan-other", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["execution"]["planId"] == "plan-other"
    assert document["execution"]["status"] == "FAILED"


def test_a_running_execution_stands_at_now(table, moto_url, capsys):
    running, _ = SAMPLES["recovery-mixed"]()
    asyncio.run(_put(moto_url, table, [running]))
    assert cli.main(["report", running["ExecutionId"], "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["execution"]["final"] is False
    assert abs(document["asOf"] - time.time()) < 300  # the wall clock, not the sample's


def test_a_table_that_does_not_exist_is_exit_1(table, capsys):
    assert cli.main(["report", "ex-1"]) == 1
    assert "DynamoDB failed" in capsys.readouterr().err


def test_no_table_name_is_exit_2(table, monkeypatch, capsys):
    monkeypatch.delenv("DRS_POLLER_TABLE_NAME")
    assert cli.main(["report", "ex-1"]) == 2
    assert "DRS_POLLER_TABLE_NAME" in capsys.readouterr().err
