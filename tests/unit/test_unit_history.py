"""append_transition and epoch: bounded history with millisecond timestamps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from drs_poller.core.history import append_transition, epoch


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0.000"),
        (1800000000, "1800000000.000"),
        (1800000000.5, "1800000000.500"),
        (1800000000.25, "1800000000.250"),
        (12.3456, "12.346"),
        (12.3454, "12.345"),
    ],
)
def test_epoch_is_a_millisecond_decimal(seconds, expected):
    value = epoch(seconds)
    assert isinstance(value, Decimal)
    assert str(value) == expected
    assert value.as_tuple().exponent == -3


def test_append_to_nothing():
    assert append_transition(None, status="PENDING", at=10.0, limit=5) == [
        {"status": "PENDING", "timestamp": Decimal("10.000")}
    ]
    assert append_transition([], status="PENDING", at=10.0, limit=5) == [
        {"status": "PENDING", "timestamp": Decimal("10.000")}
    ]


def test_appends_on_change():
    history = [{"status": "PENDING", "timestamp": Decimal("10.000")}]
    result = append_transition(history, status="IN_PROGRESS", at=20.1234, limit=5)
    assert result == [
        {"status": "PENDING", "timestamp": Decimal("10.000")},
        {"status": "IN_PROGRESS", "timestamp": Decimal("20.123")},
    ]
    assert isinstance(result[-1]["timestamp"], Decimal)
    assert history == [{"status": "PENDING", "timestamp": Decimal("10.000")}]  # not mutated


def test_no_entry_on_repeat():
    history = [
        {"status": "PENDING", "timestamp": Decimal("10.000")},
        {"status": "IN_PROGRESS", "timestamp": Decimal("20.000")},
    ]
    assert append_transition(history, status="IN_PROGRESS", at=30.0, limit=5) == history


def test_status_seen_before_but_not_last_is_a_change():
    history = [
        {"status": "LAUNCHED", "timestamp": Decimal("10.000")},
        {"status": "TERMINATED", "timestamp": Decimal("20.000")},
    ]
    result = append_transition(history, status="LAUNCHED", at=30.0, limit=5)
    assert [entry["status"] for entry in result] == ["LAUNCHED", "TERMINATED", "LAUNCHED"]


@pytest.mark.parametrize("limit", [2, 3, 20])
def test_keeps_the_newest_limit_entries(limit):
    history: list = []
    for step in range(50):
        history = append_transition(
            history, status=f"S{step % 7}-{step}", at=float(step), limit=limit
        )
        assert len(history) == min(step + 1, limit)
    assert [entry["status"] for entry in history] == [
        f"S{step % 7}-{step}" for step in range(50 - limit, 50)
    ]
    assert history[-1]["timestamp"] == Decimal("49.000")


def test_extra_keys_of_entries_survive():
    history = [{"status": "PENDING", "timestamp": Decimal(1), "by": "initiator"}]
    result = append_transition(history, status="LAUNCHED", at=2.0, limit=5)
    assert result[0] == {"status": "PENDING", "timestamp": Decimal(1), "by": "initiator"}
