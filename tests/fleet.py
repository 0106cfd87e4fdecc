"""Fleets of scripted executions for the tests that run daemons as processes (the fleet
run, the replica process tests, the chaos run): DRS jobs on real durations compressed
by ``speed``, items as the initiator writes them, and the final status each must reach."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from harness import OTHER_REGION, REGION

from drs_poller.local.items import ExecutionSpec, ServerSpec, WaveSpec, execution_item
from drs_poller.local.stack import compressed_durations
from drs_poller.simulator.timelines import one_server_job

# (execution type, outcome of each of 5 servers, final status), cycled over the fleet.
KINDS: list[tuple[str, list[str], str]] = [
    *[("DRILL", ["launched"] * 5, "COMPLETED")] * 6,
    ("RECOVERY", ["launched"] * 5, "COMPLETED"),
    ("RECOVERY", ["launched"] * 5, "COMPLETED"),
    ("DRILL", ["launched"] * 4 + ["launch_failed"], "PARTIAL"),
    ("RECOVERY", ["launched"] * 3 + ["action_failed"] * 2, "PARTIAL"),
    ("DRILL", ["terminated_after_launch"] * 5, "COMPLETED"),
    ("DRILL", ["launch_failed"] * 5, "FAILED"),
]


@dataclass
class Fleet:
    items: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)
    starts: list[float] = field(default_factory=list)  # seconds from seeding, per item

    async def write_all(self, world: Any) -> None:
        for item in self.items:
            await world.put(item)

    async def write_as_started(self, world: Any) -> None:
        """Write each item when its jobs start, as the initiator would (real time)."""
        origin = world.clock.time()
        for start, item in sorted(zip(self.starts, self.items, strict=True), key=lambda p: p[0]):
            delay = origin + start - world.clock.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await world.put(item)


def seed_fleet(
    world: Any,
    *,
    executions: int,
    servers: int,
    speed: float,
    prefix: str = "fleet",
    spread: float = 0.0,
    first: int = 0,
) -> Fleet:
    """Add every execution's jobs to the DRS simulator and return the items to write.

    ``spread`` (real seconds): execution ``n`` starts ``n / executions * spread`` after
    now, so that they do not all start at once. Each server gets its own job. ``first``
    numbers the servers and jobs, so that two fleets in one DRS simulator do not collide.
    """
    fleet = Fleet()
    now = world.clock.time()
    for n in range(executions):
        kind, kind_outcomes, _ = KINDS[n % len(KINDS)]
        # Spread the kind's outcomes over however many servers there are, failures first.
        outcomes = [
            kind_outcomes[len(kind_outcomes) - 1 - k * len(kind_outcomes) // servers]
            for k in range(servers)
        ]
        status = expected_status(kind, outcomes)
        region = REGION if n % 2 else OTHER_REGION
        jitter = 1 + ((n * 37) % 21 - 10) / 100  # ±10 %: executions do not move in lockstep
        start = now + spread * n / executions
        specs = []
        for k in range(servers):
            sid = f"s-{first + n:012d}{k:05d}"
            jid = f"drsjob-{first + n:012d}{k:05d}"
            world.drs.add_job(
                one_server_job(
                    job_id=jid,
                    source_server_id=sid,
                    region=region,
                    is_drill=kind == "DRILL",
                    created_at=start,
                    outcome=outcomes[k],
                    speed=speed,
                    jitter=jitter,
                )
            )
            specs.append(ServerSpec(sid, jid))
        execution_id = f"{prefix}-{n:03d}"
        fleet.items.append(
            execution_item(
                ExecutionSpec(
                    execution_id=execution_id,
                    execution_type=kind,
                    start_time=start,
                    waves=(WaveSpec(name="wave-1", region=region, servers=tuple(specs)),),
                )
            )
        )
        fleet.expected[execution_id] = status
        fleet.starts.append(start - now)
    return fleet


def expected_status(kind: str, outcomes: list[str]) -> str:
    failing = {"launch_failed"} | ({"action_failed"} if kind == "RECOVERY" else set())
    succeeded = sum(1 for outcome in outcomes if outcome not in failing)
    if succeeded == len(outcomes):
        return "COMPLETED"
    return "FAILED" if succeeded == 0 else "PARTIAL"


def compressed_settings(speed: float) -> dict[str, float]:
    """The daemon's durations divided by ``speed``, as the fleet's DRS durations are."""
    return compressed_durations(speed)


async def polling_count(world: Any) -> int:
    result = await world.ddb.query(
        TableName=world.table,
        IndexName="StatusIndex",
        Select="COUNT",
        KeyConditionExpression="#s = :p",
        ExpressionAttributeNames={"#s": "Status"},
        ExpressionAttributeValues={":p": {"S": "POLLING"}},
    )
    return int(result["Count"])


async def wait_for_all(world: Any, expected: dict[str, str], *, deadline: float) -> dict[str, Any]:
    """Wait with one cheap count query a second (moto serves the daemons from this
    process too), then read every item once."""
    remaining = -1
    while world.clock.time() < deadline:
        remaining = await polling_count(world)
        if remaining == 0:
            return {execution_id: await world.get(execution_id) for execution_id in expected}
        await world.sleep(1.0)
    raise AssertionError(f"{remaining} executions still POLLING at the deadline")


LAUNCH_ORDER = {"PENDING": 0, "IN_PROGRESS": 1, "LAUNCHED": 2, "FAILED": 3, "TERMINATED": 3}


def history_problems(items: dict[str, Any]) -> list[str]:
    """Every server's TransitionHistory must follow DRS's order, with no repeats."""
    problems = []
    for execution_id, item in items.items():
        for wave in item["Waves"]:
            for server in wave["Servers"]:
                statuses = [entry["status"] for entry in server.get("TransitionHistory", [])]
                ranks = [LAUNCH_ORDER.get(s, -1) for s in statuses]
                if len(statuses) != len(set(statuses)) or ranks != sorted(ranks):
                    problems.append(f"{execution_id} {server['SourceServerId']}: {statuses}")
    return problems
