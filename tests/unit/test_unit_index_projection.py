"""What the daemon reads from DescribeTable at start-up: the StatusIndex's projection,
or why it cannot work with the index (start-up stops, exit 2, naming it)."""

from __future__ import annotations

from typing import Any

import pytest

from drs_poller.clients.dynamodb import IndexProjection, UnusableIndexError, index_projection
from drs_poller.local.table import index_projection_definition, table_definition


def described(projection: dict[str, Any] | None = None, **index: Any) -> dict[str, Any]:
    table = table_definition("history")
    gsi = table["GlobalSecondaryIndexes"][0]
    if projection is not None:
        gsi["Projection"] = projection
    gsi.update({"IndexStatus": "ACTIVE", **index})
    return table


@pytest.mark.parametrize(
    ("projection", "expected", "revision"),
    [
        ({"ProjectionType": "ALL"}, IndexProjection("ALL"), True),
        ({"ProjectionType": "KEYS_ONLY"}, IndexProjection("KEYS_ONLY"), False),
        (
            {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["PollerRevision"]},
            IndexProjection("INCLUDE", frozenset({"PollerRevision"})),
            True,
        ),
        # INCLUDE without PollerRevision works as KEYS_ONLY does.
        (
            {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["Phase"]},
            IndexProjection("INCLUDE", frozenset({"Phase"})),
            False,
        ),
    ],
)
def test_each_projection_is_read(projection, expected, revision):
    found = index_projection(described(projection), index="StatusIndex")
    assert found == expected
    assert found.revision is revision
    assert found.whole is (expected.kind == "ALL")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            described(),
            (
                "table history has no global secondary index Other (DRS_POLLER_STATUS_INDEX); "
                "its indexes: StatusIndex"
            ),
        ),
        (
            described({"ProjectionType": "SOMETHING_NEW"}, IndexName="Other"),
            (
                "index Other of table history has projection 'SOMETHING_NEW'; this daemon "
                "works with ALL, KEYS_ONLY, INCLUDE"
            ),
        ),
        (
            described(IndexName="Other", IndexStatus="CREATING"),
            "index Other of table history is CREATING: it cannot be queried",
        ),
        (
            described(
                IndexName="Other",
                KeySchema=[{"AttributeName": "PlanId", "KeyType": "HASH"}],
            ),
            "index Other of table history is keyed on ['PlanId'], not Status",
        ),
    ],
)
def test_an_index_the_daemon_cannot_work_with_is_named(table, message):
    with pytest.raises(UnusableIndexError) as caught:
        index_projection(table, index="Other")
    assert message in str(caught.value)


def test_init_table_projections():
    assert index_projection_definition("INCLUDE") == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["PollerRevision", "TaskTokensPending"],
    }
    with pytest.raises(ValueError, match="unknown projection"):
        index_projection_definition("NONE")
