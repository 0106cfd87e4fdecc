"""The execution-history table and its StatusIndex exactly as contract §1 defines them, and
the replica lease table; ``drs-poller init-table`` creates both through :func:`init_tables`.
The StatusIndex is projected KEYS_ONLY unless asked otherwise (INCLUDE or ALL).

Creation is idempotent: a table that exists with the right schema is fine; one with
another schema is a :class:`SchemaMismatch` naming every difference, because a daemon
pointed at it would fail later and less clearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEASE_TTL_ATTRIBUTE = "ExpiresAt"


# What ``init-table`` and the stack give the StatusIndex unless told otherwise, and
# what each choice projects besides the keys (docs/contract.md §1 says why and what each
# costs). INCLUDE adds ``PollerRevision``: a lean discovery pass then notices a peer's
# write, at one small index write per daemon write; and ``TaskTokensPending``, so the
# sweep for unanswered task tokens filters on the index instead of reading items whole.
DEFAULT_PROJECTION = "KEYS_ONLY"
INCLUDED_ATTRIBUTES = ("PollerRevision", "TaskTokensPending")


def index_projection_definition(projection: str) -> dict[str, Any]:
    """The ``Projection`` of a CreateTable request for ``ALL``, ``KEYS_ONLY`` or ``INCLUDE``."""
    if projection == "INCLUDE":
        return {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(INCLUDED_ATTRIBUTES)}
    if projection in ("ALL", "KEYS_ONLY"):
        return {"ProjectionType": projection}
    raise ValueError(f"unknown projection {projection!r}: ALL, KEYS_ONLY or INCLUDE")


def table_definition(
    table: str, *, index: str = "StatusIndex", projection: str = DEFAULT_PROJECTION
) -> dict[str, Any]:
    return {
        "TableName": table,
        "KeySchema": [
            {"AttributeName": "ExecutionId", "KeyType": "HASH"},
            {"AttributeName": "PlanId", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "ExecutionId", "AttributeType": "S"},
            {"AttributeName": "PlanId", "AttributeType": "S"},
            {"AttributeName": "Status", "AttributeType": "S"},
            {"AttributeName": "StartTime", "AttributeType": "N"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": "Status", "KeyType": "HASH"},
                    {"AttributeName": "StartTime", "KeyType": "RANGE"},
                ],
                "Projection": index_projection_definition(projection),
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def lease_table_definition(name: str) -> dict[str, Any]:
    """The replica lease table: one item per (lease group, replica); TTL on ``ExpiresAt``."""
    return {
        "TableName": name,
        "KeySchema": [
            {"AttributeName": "LeaseGroup", "KeyType": "HASH"},
            {"AttributeName": "ReplicaId", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "LeaseGroup", "AttributeType": "S"},
            {"AttributeName": "ReplicaId", "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


class SchemaMismatch(Exception):  # noqa: N818 - it is a finding, not a crash
    """An existing table whose schema differs from the definition."""

    def __init__(self, table: str, differences: list[str]) -> None:
        super().__init__(f"table {table} exists with another schema: " + "; ".join(differences))
        self.table = table
        self.differences = differences


def _keys(schema: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    return [(key["AttributeName"], key["KeyType"]) for key in schema or []]


def schema_differences(definition: dict[str, Any], description: dict[str, Any]) -> list[str]:
    """What differs between a CreateTable request and a DescribeTable ``Table``."""
    differences = []
    if _keys(definition["KeySchema"]) != _keys(description.get("KeySchema")):
        differences.append(
            f"key schema is {_keys(description.get('KeySchema'))}, "
            f"expected {_keys(definition['KeySchema'])}"
        )
    types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
    found = {
        a["AttributeName"]: a["AttributeType"]
        for a in description.get("AttributeDefinitions") or []
    }
    differences.extend(
        f"attribute {name} has type {found[name]}, expected {kind}"
        for name, kind in types.items()
        if name in found and found[name] != kind
    )
    wanted_indexes = {i["IndexName"]: i for i in definition.get("GlobalSecondaryIndexes") or []}
    existing_indexes = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes") or []}
    for name, wanted in wanted_indexes.items():
        existing = existing_indexes.get(name)
        if existing is None:
            differences.append(f"global secondary index {name} is missing")
            continue
        if _keys(existing.get("KeySchema")) != _keys(wanted["KeySchema"]):
            differences.append(
                f"index {name} key schema is {_keys(existing.get('KeySchema'))}, "
                f"expected {_keys(wanted['KeySchema'])}"
            )
        # Another projection is no mismatch: the daemon works with each (contract §1),
        # and a table keeps the projection it was made with (see ensure_table's notes).
        projection = (existing.get("Projection") or {}).get("ProjectionType")
        if projection not in ("ALL", "KEYS_ONLY", "INCLUDE"):
            differences.append(f"index {name} projects {projection}")
    return differences


def projection_notes(definition: dict[str, Any], description: dict[str, Any]) -> list[str]:
    """Where an existing index projects otherwise than asked: kept, and said."""
    existing = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes") or []}
    notes = []
    for wanted in definition.get("GlobalSecondaryIndexes") or []:
        found = existing.get(wanted["IndexName"])
        if found is None:
            continue
        have, want = found.get("Projection") or {}, wanted["Projection"]
        if (have.get("ProjectionType"), sorted(have.get("NonKeyAttributes") or ())) != (
            want["ProjectionType"],
            sorted(want.get("NonKeyAttributes") or ()),
        ):
            included = sorted(have.get("NonKeyAttributes") or ())
            notes.append(
                f"index {wanted['IndexName']} projects {have.get('ProjectionType')}"
                f"{' ' + str(included) if included else ''}, not {want['ProjectionType']}: "
                "kept as it is (docs/operations.md: moving a table to another projection)"
            )
    return notes


@dataclass(frozen=True)
class TableOutcome:
    table: str
    created: bool  # False: it existed already, with the right schema
    notes: tuple[str, ...] = ()  # what differs and is kept (another index projection)


async def ensure_table(client: Any, definition: dict[str, Any]) -> TableOutcome:
    """Create the table unless it exists with this schema; wait until it is ACTIVE.

    Raises :class:`SchemaMismatch` when it exists with another schema.
    """
    table = definition["TableName"]
    created = True
    try:
        await client.create_table(**definition)
    except client.exceptions.ResourceInUseException:
        created = False
    waiter = client.get_waiter("table_exists")
    await waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    notes: list[str] = []
    if not created:
        description = (await client.describe_table(TableName=table))["Table"]
        differences = schema_differences(definition, description)
        if differences:
            raise SchemaMismatch(table, differences)
        notes = projection_notes(definition, description)
    return TableOutcome(table=table, created=created, notes=tuple(notes))


async def ensure_time_to_live(client: Any, table: str, attribute: str) -> None:
    """TTL on ``attribute``; an existing TTL on another attribute is a mismatch."""
    current = (await client.describe_time_to_live(TableName=table))["TimeToLiveDescription"]
    status = current.get("TimeToLiveStatus")
    if status in {"ENABLED", "ENABLING"}:
        if current.get("AttributeName") != attribute:
            raise SchemaMismatch(
                table,
                [f"TTL is on {current.get('AttributeName')}, expected {attribute}"],
            )
        return
    await client.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
    )


async def init_tables(
    client: Any,
    *,
    table: str,
    index: str = "StatusIndex",
    lease_table: str | None = None,
    projection: str = DEFAULT_PROJECTION,
) -> list[TableOutcome]:
    """What ``drs-poller init-table`` does: the history table, and the lease table if named."""
    outcomes = [
        await ensure_table(client, table_definition(table, index=index, projection=projection))
    ]
    if lease_table is not None:
        outcomes.append(await ensure_table(client, lease_table_definition(lease_table)))
        await ensure_time_to_live(client, lease_table, LEASE_TTL_ATTRIBUTE)
    return outcomes


async def create_table(
    client: Any, table: str, *, index: str = "StatusIndex", projection: str = DEFAULT_PROJECTION
) -> None:
    """Create the history table (idempotent) and wait until it is ACTIVE (tests use this)."""
    await ensure_table(client, table_definition(table, index=index, projection=projection))


__all__ = [
    "DEFAULT_PROJECTION",
    "INCLUDED_ATTRIBUTES",
    "LEASE_TTL_ATTRIBUTE",
    "SchemaMismatch",
    "TableOutcome",
    "create_table",
    "ensure_table",
    "index_projection_definition",
    "init_tables",
    "lease_table_definition",
    "projection_notes",
    "schema_differences",
    "table_definition",
]
