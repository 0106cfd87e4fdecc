"""``to_python`` gives exactly what boto3's TypeDeserializer gives, for every type."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from drs_poller.clients.dynamodb import to_python, to_wire
from drs_poller.clock import epoch
from drs_poller.core.models import ExecutionStatus

WIRE = {
    "s": {"S": "text"},
    "n": {"N": "1800000000.125"},
    "big": {"N": "12345678901234567890123456789012345678"},
    "t": {"BOOL": True},
    "null": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "b": {"B": b"\x00\x01"},
    "bs": {"BS": [b"\x02", b"\x03"]},
    "l": {"L": [{"S": "x"}, {"N": "3"}, {"L": []}, {"M": {}}]},
    "m": {"M": {"Servers": {"L": [{"M": {"Status": {"S": "LAUNCHED"}, "N": {"N": "-0.5"}}}]}}},
}


def test_to_python_matches_boto3_for_every_type():
    expected = {name: TypeDeserializer().deserialize(value) for name, value in WIRE.items()}
    assert to_python(WIRE) == expected
    # And back: the same values (a set's members come back in any order).
    again = {name: to_wire(value) for name, value in to_python(WIRE).items()}
    assert to_python(again) == expected


def test_binary_straight_from_json_is_base64_decoded():
    # The fast Query path hands over the JSON wire form, where binary is base64 text.
    item = to_python({"b": {"B": base64.b64encode(b"\x00\xff").decode()}})
    assert item["b"].value == b"\x00\xff"


def test_an_unknown_type_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="unknown DynamoDB attribute type 'X'"):
        to_python({"x": {"X": "?"}})


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "",
        True,
        False,
        0,
        -7,
        12345678901234567890123456789012345678,
        Decimal("1800000000.125"),
        Decimal("-0.5"),
        Decimal("1E+3"),
        None,
        {"a", "b"},
        {Decimal(1), 2},
        Binary(b"\x00"),
        b"\x01",
        [],
        {},
        ("tuple", 1),
        ExecutionStatus.POLLING,
        {"Waves": [{"Servers": [{"Status": "LAUNCHED", "N": Decimal("1.5"), "B": None}]}]},
    ],
    ids=repr,
)
def test_to_wire_matches_boto3(value):
    assert to_wire(value) == TypeSerializer().serialize(value)


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        Decimal("NaN"),
        Decimal("Infinity"),
        10**40,
        Decimal("1.000000000000000000000000000000000000001"),
    ],
)
def test_to_wire_rejects_what_boto3_rejects(value):
    with pytest.raises((TypeError, ArithmeticError)) as ours:
        to_wire(value)
    with pytest.raises((TypeError, ArithmeticError)) as boto3s:
        TypeSerializer().serialize(value)
    assert type(ours.value) is type(boto3s.value)


def test_a_number_repeated_in_an_item_is_one_decimal_and_still_equal_to_boto3s():
    wire = {
        "StartTime": {"N": "1796514918.045"},
        "Waves": {
            "L": [
                {
                    "M": {
                        "StartTime": {"N": "1796514918.045"},
                        "Servers": {
                            "L": [
                                {"M": {"LaunchTime": {"N": "1796514918.045"}, "N": {"N": "1"}}},
                                {"M": {"LaunchTime": {"N": "1796514918.045"}, "N": {"N": "2"}}},
                            ]
                        },
                    }
                }
            ]
        },
    }
    item = to_python(wire)
    assert item == {name: TypeDeserializer().deserialize(v) for name, v in wire.items()}
    wave = item["Waves"][0]
    times = [item["StartTime"], wave["StartTime"]] + [s["LaunchTime"] for s in wave["Servers"]]
    assert len({id(t) for t in times}) == 1
    # Items do not share numbers: each is freed with its item.
    assert to_python(wire)["StartTime"] is not item["StartTime"]


def test_one_poll_time_is_one_decimal_on_every_server():
    assert epoch(1796514918.0454) is epoch(1796514918.0454)
    assert epoch(1796514918.0454) == Decimal("1796514918.045")
