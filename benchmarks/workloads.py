"""The benchmark workloads: seeded, pure data (DRS job scripts, execution items, the
expected final statuses and the moments each server's state changes).

Each tracker gets an identical copy, built from the same seed relative to its own
start time. Durations are real DRS durations divided by the speed factor.

W50, W1k and W10k run in the daemon's own account, one DRS job per server, every job of
an execution created with it (DRS's quotas are not modelled: the simulator accepts
scripted jobs as they are). W10k-accounts (:func:`seed_accounts_workload`) spreads its
executions over member accounts and regions and stays within each account-region's
DRS quotas at every moment (benchmarks/METHOD.md, "W10k-accounts").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from drs_poller.local.items import ExecutionSpec, ServerSpec, WaveSpec, execution_item
from drs_poller.simulator.behaviour import Quotas
from drs_poller.simulator.timelines import (
    JobScript,
    LaunchActionScript,
    ServerOutcome,
    ServerScript,
    one_server_job,
    standard_timeline,
)

REGIONS = ("us-east-1", "us-west-2")
PLAN_ID = "plan-bench"
# W10k-accounts: the member accounts' regions, and DRS's quotas in each account-region.
ACCOUNT_REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2")
QUOTAS = Quotas()
# An account-region runs at most this many jobs at once: one "lane" per concurrent job
# DRS allows; each lane starts its next job once the one before is COMPLETED.
LANES = QUOTAS.max_concurrent_jobs
# Real seconds between a job's end and the next job of its lane: the orchestrator
# noticing that the wave ended and calling StartRecovery.
LANE_GAP = 30.0

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
    # evenly), so the fleet is in every phase at once from the first poll. With
    # accounts: each lane's first job started up to this long ago.
    started_over: float = 0.0
    # Member accounts (times ACCOUNT_REGIONS); 0: the daemon's own account only (REGIONS).
    accounts: int = 0

    @property
    def servers(self) -> int:
        return self.waves * self.servers_per_wave

    @property
    def steady(self) -> bool:
        """Measured in a steady-state window rather than run to completion."""
        return self.started_over > 0

    @property
    def places(self) -> list[tuple[str, str]]:
        """The (account, region) pairs the workload's DRS jobs run in (accounts only)."""
        return [(account, region) for region in ACCOUNT_REGIONS for account in self.account_ids]

    @property
    def account_ids(self) -> list[str]:
        return [member_account(k) for k in range(self.accounts)]


def member_account(k: int) -> str:
    """The benchmark's k-th member account id (none is moto's default 123456789012)."""
    return f"{210_000_000_000 + k:012d}"


WORKLOADS: dict[str, Workload] = {
    "W50": Workload("W50", executions=50, waves=3, servers_per_wave=2),
    "W1k": Workload("W1k", executions=1000, waves=2, servers_per_wave=5),
    "W10k": Workload("W10k", executions=10_000, waves=2, servers_per_wave=5, started_over=1500.0),
    "W10k-accounts": Workload(
        "W10k-accounts",
        executions=10_000,
        waves=2,
        servers_per_wave=5,
        started_over=1800.0,
        accounts=50,
    ),
}


@dataclass(frozen=True)
class StateChange:
    """A server's DRS launchStatus changed (absolute time on the benchmark's clock)."""

    at: float
    execution_id: str
    source_server_id: str
    status: str


@dataclass(frozen=True)
class WaveStart:
    """A wave whose job starts after the items are written (W10k-accounts): at ``at`` the
    benchmark, as the initiator, writes the job id into the wave's servers."""

    at: float
    execution_id: str
    wave: int
    job_id: str
    servers: int


@dataclass
class Seeded:
    items: list[dict[str, Any]] = field(default_factory=list)
    scripts: list[JobScript] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)
    # execution id -> (execution type, [(job script, source server id)])
    executions: dict[str, tuple[str, list[tuple[JobScript, str]]]] = field(default_factory=dict)
    job_owner: dict[str, str] = field(default_factory=dict)  # job id -> execution id
    # Waves started after the items are written, in time order (W10k-accounts only).
    wave_starts: list[WaveStart] = field(default_factory=list)

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


def completed_at(script: JobScript) -> float:
    """When the job turns COMPLETED (it no longer counts against DRS's quotas)."""
    for snapshot in script.timeline:
        if snapshot.job_status == "COMPLETED":
            return script.created_at + snapshot.at
    raise ValueError(f"job {script.job_id} never completes")


def seed_workload(workload: Workload, *, speed: float, start: float, seed: int) -> Seeded:
    if workload.accounts:
        return seed_accounts_workload(workload, speed=speed, start=start, seed=seed)
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


def _wave_job(
    *,
    n: int,
    wave: int,
    account: str,
    region: str,
    is_drill: bool,
    created_at: float,
    server_ids: list[str],
    outcomes: dict[str, ServerOutcome],
    speed: float,
    jitter: float,
) -> JobScript:
    """One wave's DRS job: its servers together, with real DRS's durations divided by
    ``speed`` (pending and launching also scaled by ``jitter``), as one_server_job."""
    job_id = f"drsjob-{n:09d}{wave:08d}"
    return JobScript(
        job_id=job_id,
        region=region,
        account_id=account,
        is_drill=is_drill,
        created_at=created_at,
        servers=tuple(
            ServerScript(sid, recovery_instance_id="i-" + sid.removeprefix("s-"))
            for sid in server_ids
        ),
        timeline=standard_timeline(
            server_ids,
            pending=13.5 * 60 * jitter / speed,
            started=30.0 / speed,
            launching=6 * 60 * jitter / speed,
            actions=None if is_drill else 10 * 60 / speed,
            outcomes=outcomes,
            terminate_after=10 * 60 / speed,
        ),
    )


def seed_accounts_workload(workload: Workload, *, speed: float, start: float, seed: int) -> Seeded:
    """Executions spread evenly over ``workload.places``, each of its waves one DRS job in
    its place, every place within DRS's quotas at every moment (METHOD.md).

    Each place runs :data:`LANES` lanes; a lane runs its executions one after another,
    wave after wave, each job starting :data:`LANE_GAP` real seconds after the one before
    it COMPLETED. Each lane's first job started up to ``started_over`` real seconds before
    ``start`` (seeded), so at ``start`` every lane is busy with its first execution, in
    its first or second wave. Every execution's item is written at ``start`` (POLLING):
    waves whose job starts later have no job ids yet, and ``wave_starts`` says when the
    initiator writes them.
    """
    rng = random.Random(f"{seed}/{workload.name}")  # noqa: S311 - reproducible, not secret
    seeded = Seeded()
    places = workload.places
    specs: dict[int, ExecutionSpec] = {}
    for q, (account, region) in enumerate(places):
        here = list(range(q, workload.executions, len(places)))
        for lane in range(LANES):
            at = start - rng.uniform(0, workload.started_over) / speed
            for n in here[lane::LANES]:
                execution_type, scope, outcome, final = KINDS[n % len(KINDS)]
                is_drill = execution_type == "DRILL"
                jitter = 1 + rng.uniform(-JITTER, JITTER)
                execution_id = f"{workload.name.lower()}-{n:05d}"
                first_start = at
                waves = []
                servers: list[tuple[JobScript, str]] = []
                for w in range(workload.waves):
                    sids = [
                        f"s-{n:09d}{w * workload.servers_per_wave + k:08d}"
                        for k in range(workload.servers_per_wave)
                    ]
                    outcomes: dict[str, ServerOutcome] = {}
                    for k, sid in enumerate(sids):
                        last = w * workload.servers_per_wave + k == workload.servers - 1
                        outcomes[sid] = outcome if scope == "all" or last else "launched"  # type: ignore[assignment]
                    script = _wave_job(
                        n=n,
                        wave=w,
                        account=account,
                        region=region,
                        is_drill=is_drill,
                        created_at=at,
                        server_ids=sids,
                        outcomes=outcomes,
                        speed=speed,
                        jitter=jitter,
                    )
                    seeded.scripts.append(script)
                    seeded.job_owner[script.job_id] = execution_id
                    servers += [(script, sid) for sid in sids]
                    started = script.created_at <= start
                    if not started:
                        seeded.wave_starts.append(
                            WaveStart(script.created_at, execution_id, w, script.job_id, len(sids))
                        )
                    waves.append(
                        WaveSpec(
                            name=f"wave-{w + 1}",
                            region=region,
                            account_id=account,
                            servers=tuple(
                                ServerSpec(sid, script.job_id if started else None) for sid in sids
                            ),
                        )
                    )
                    at = completed_at(script) + LANE_GAP / speed
                specs[n] = ExecutionSpec(
                    execution_id=execution_id,
                    execution_type=execution_type,
                    plan_id=PLAN_ID,
                    # Started with its first job; one waiting for its lane, now.
                    start_time=min(first_start, start),
                    waves=tuple(waves),
                )
                seeded.expected[execution_id] = final
                seeded.executions[execution_id] = (execution_type, servers)
    seeded.items = [execution_item(specs[n]) for n in sorted(specs)]
    seeded.executions = dict(sorted(seeded.executions.items()))
    seeded.wave_starts.sort(key=lambda entry: (entry.at, entry.execution_id, entry.wave))
    return seeded
