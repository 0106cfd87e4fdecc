"""The benchmark workloads: seeded, pure data (DRS job scripts, execution items, the
expected final statuses and the moments each server's state changes).

Each tracker gets an identical copy, built from the same seed relative to its own
start time. Durations are real DRS durations divided by the speed factor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from drs_poller.local.items import ExecutionSpec, ServerSpec, WaveSpec, execution_item
from drs_poller.simulator.timelines import JobScript, LaunchActionScript, one_server_job

REGIONS = ("us-east-1", "us-west-2")
PLAN_ID = "plan-bench"

# Real DRS durations are one_server_job's (drs_poller/simulator/timelines.py), as in
# the demo and the fleet test.
JITTER = 0.2  # each execution's DRS runs up to 20 % faster or slower

# (execution type, outcome of each server by position, final status); cycled.
# "one" applies the outcome to the last server only, "all" to every server.
KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("DRILL", "all", "launched", "COMPLETED"),
    ("RECOVERY", "all", "launched", "COMPLETED"),
    ("DRILL", "one", "launch_failed", "PARTIAL"),
    ("RECOVERY", "one", "action_failed", "PARTIAL"),
    ("DRILL", "all", "terminated_after_launch", "COMPLETED"),
    ("DRILL", "all", "launched", "COMPLETED"),
    ("RECOVERY", "all", "launched", "COMPLETED"),
    ("DRILL", "all", "launch_failed", "FAILED"),
)


@dataclass(frozen=True)
class Workload:
    name: str
    executions: int
    waves: int
    servers_per_wave: int
    # Steady state: executions started this many real seconds ago at most (spread
    # evenly), so the fleet is in every phase at once from the first poll.
    started_over: float = 0.0

    @property
    def servers(self) -> int:
        return self.waves * self.servers_per_wave


WORKLOADS: dict[str, Workload] = {
    "W50": Workload("W50", executions=50, waves=3, servers_per_wave=2),
    "W1k": Workload("W1k", executions=1000, waves=2, servers_per_wave=5),
    "W10k": Workload("W10k", executions=10_000, waves=2, servers_per_wave=5, started_over=1500.0),
}


@dataclass(frozen=True)
class StateChange:
    """A server's DRS launchStatus changed (absolute time on the benchmark's clock)."""

    at: float
    execution_id: str
    source_server_id: str
    status: str


@dataclass
class Seeded:
    items: list[dict[str, Any]] = field(default_factory=list)
    scripts: list[JobScript] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)
    # execution id -> (execution type, [(job script, source server id)])
    executions: dict[str, tuple[str, list[tuple[JobScript, str]]]] = field(default_factory=dict)
    job_owner: dict[str, str] = field(default_factory=dict)  # job id -> execution id

    def launch_actions(self) -> dict[str, tuple[LaunchActionScript, ...]]:
        """What ListLaunchActions lists for each source server whose job runs post-launch
        actions: the actions its runs show. Real DRS knows a source server's actions
        before any job runs; the benchmark's source servers exist only through their
        jobs, so without this the daemon's GetLaunchConfiguration would find no server
        and every RECOVERY server would carry a "not known" note it never carries for
        real (and its item would be larger by that note)."""
        found: dict[str, tuple[LaunchActionScript, ...]] = {}
        for script in self.scripts:
            for server in script.servers:
                sid = server.source_server_id
                runs: dict[str, bool] = {}
                for snapshot in script.timeline:
                    for run in snapshot.server(sid).runs or ():
                        runs.setdefault(run.name, run.optional)
                if runs:
                    found[sid] = tuple(
                        LaunchActionScript(name, optional=optional)
                        for name, optional in runs.items()
                    )
        return found

    def changes(self) -> list[StateChange]:
        found = []
        for execution_id, (_, servers) in self.executions.items():
            for script, sid in servers:
                previous = "PENDING"
                for snapshot in script.timeline:
                    status = snapshot.server(sid).launch_status
                    if status != previous:
                        found.append(
                            StateChange(script.created_at + snapshot.at, execution_id, sid, status)
                        )
                        previous = status
        return found


def seed_workload(workload: Workload, *, speed: float, start: float, seed: int) -> Seeded:
    rng = random.Random(f"{seed}/{workload.name}")  # noqa: S311 - reproducible, not secret
    seeded = Seeded()
    for n in range(workload.executions):
        execution_type, scope, outcome, final = KINDS[n % len(KINDS)]
        jitter = 1 + rng.uniform(-JITTER, JITTER)
        ago = workload.started_over * (n / workload.executions) / speed
        created = start - ago
        execution_id = f"{workload.name.lower()}-{n:05d}"
        waves = []
        servers: list[tuple[JobScript, str]] = []
        for w in range(workload.waves):
            region = REGIONS[(n + w) % len(REGIONS)]
            specs = []
            for k in range(workload.servers_per_wave):
                index = w * workload.servers_per_wave + k
                last = index == workload.servers - 1
                this = outcome if scope == "all" or last else "launched"
                sid = f"s-{n:09d}{index:08d}"
                jid = f"drsjob-{n:09d}{index:08d}"
                script = one_server_job(
                    job_id=jid,
                    source_server_id=sid,
                    region=region,
                    is_drill=execution_type == "DRILL",
                    created_at=created,
                    outcome=this,  # type: ignore[arg-type]
                    speed=speed,
                    jitter=jitter,
                )
                seeded.scripts.append(script)
                seeded.job_owner[jid] = execution_id
                servers.append((script, sid))
                specs.append(ServerSpec(sid, jid))
            waves.append(WaveSpec(name=f"wave-{w + 1}", region=region, servers=tuple(specs)))
        seeded.items.append(
            execution_item(
                ExecutionSpec(
                    execution_id=execution_id,
                    execution_type=execution_type,
                    plan_id=PLAN_ID,
                    start_time=created,
                    waves=tuple(waves),
                )
            )
        )
        seeded.expected[execution_id] = final
        seeded.executions[execution_id] = (execution_type, servers)
    return seeded
