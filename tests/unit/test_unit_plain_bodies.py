"""The DynamoDB write bodies the daemon sends without botocore's walk of the service
model (:class:`PlainJsonBodies`) are the requests botocore would have sent."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import aioboto3
import botocore.session
import pytest
from botocore.serialize import create_serializer

from drs_poller.clients.aws import ClientPool, PlainJsonBodies, plain_json_bodies
from drs_poller.clients.dynamodb import to_wire
from drs_poller.settings import load_settings

SERVICE = botocore.session.get_session().get_service_model("dynamodb")

ITEM: dict[str, Any] = {
    "ExecutionId": "ex-1",
    "PlanId": "plan-1",
    "Count": Decimal("12.5"),
    "Flag": True,
    "Nothing": None,
    "Names": {"a", "b"},
    "Numbers": {Decimal(1), Decimal(2)},
    "Waves": [{"Servers": [{"SourceServerId": "s-1", "Status": "LAUNCHED", "Ünï": "çödé"}]}],
    "Empty": {},
}


def _update(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "TableName": "executions",
        "Key": {"ExecutionId": {"S": "ex-1"}, "PlanId": {"S": "plan-1"}},
        "UpdateExpression": "SET #w = :w",
        "ConditionExpression": "#s = :polling",
        "ExpressionAttributeNames": {"#w": "Waves", "#s": "Status"},
        "ExpressionAttributeValues": {
            ":w": to_wire(item),
            ":polling": {"S": "POLLING"},
        },
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _both(operation: str, parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    model = SERVICE.operation_model(operation)
    stock = create_serializer("json", include_validation=False).serialize_to_request(
        parameters, model
    )
    plain = PlainJsonBodies(
        create_serializer("json", include_validation=False), "dynamodb"
    ).serialize_to_request(parameters, model)
    return stock, plain


@pytest.mark.parametrize("operation", ["UpdateItem", "PutItem"])
def test_a_plain_body_is_the_body_botocore_sends(operation: str) -> None:
    parameters = (
        _update(ITEM)
        if operation == "UpdateItem"
        else {"TableName": "executions", "Item": to_wire(ITEM)["M"]}
    )
    stock, plain = _both(operation, parameters)
    assert json.loads(plain["body"]) == json.loads(stock["body"])
    assert {k: v for k, v in plain.items() if k != "body"} == {
        k: v for k, v in stock.items() if k != "body"
    }
    assert plain["headers"]["X-Amz-Target"] == f"DynamoDB_20120810.{operation}"


def test_binary_values_go_through_botocore() -> None:
    """bytes (a B value) are not JSON: botocore's walk encodes them in base64."""
    parameters = _update({**ITEM, "Blob": b"\x00\xffbinary"})
    stock, plain = _both("UpdateItem", parameters)
    assert plain == stock
    assert '"B": "AP9iaW5hcnk="' in plain["body"].decode()


def test_other_operations_go_through_botocore() -> None:
    parameters = {"TableName": "executions", "Key": {"ExecutionId": {"S": "ex-1"}}}
    stock, plain = _both("GetItem", parameters)
    assert plain == stock


class _Client:
    def __init__(self, *, validates: bool) -> None:
        self._serializer = create_serializer("json", include_validation=validates)


@pytest.mark.parametrize(
    ("service", "validates", "wrapped"),
    [("dynamodb", False, True), ("drs", False, False), ("dynamodb", True, False)],
)
def test_only_dynamodb_clients_without_validation_are_given_plain_bodies(
    service: str, validates: bool, wrapped: bool
) -> None:
    client = _Client(validates=validates)
    plain_json_bodies(client, service)
    assert isinstance(client._serializer, PlainJsonBodies) is wrapped


async def test_the_daemons_clients_get_plain_bodies_and_a_cached_user_agent() -> None:
    """Through the ClientPool, as the daemon makes its clients (no call is made)."""
    settings = load_settings(table_name="executions")
    session = aioboto3.Session(aws_access_key_id="x", aws_secret_access_key="y")
    pool = ClientPool(
        session=session,
        settings=settings,
        endpoints={"dynamodb": "http://127.0.0.1:9", "drs": "http://127.0.0.1:9"},
    )
    try:
        dynamodb = await pool.get("dynamodb", "us-east-1")
        drs = await pool.get("drs", "us-east-1")
        assert isinstance(dynamodb._serializer, PlainJsonBodies)
        assert not isinstance(drs._serializer, PlainJsonBodies)
        for client in (dynamodb, drs):
            assert "to_string" in vars(client._user_agent_creator)  # cache_user_agent's
    finally:
        await pool.aclose()
