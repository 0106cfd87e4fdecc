"""The demo's workload: a seeded mix of drills and recoveries, each with its expected end.

Pure on purpose: a scenario is data (what the initiator writes, how DRS will behave,
and what CONTRACT §2 says the execution must end as), so the same seed always gives
the same workload and the expectation is stated before the daemon runs, not read
back from what it did.

Times are "demo seconds": real DRS durations divided by the demo's speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from drs_poller.localstack.initiator import ExecutionSpec, ServerSpec, WaveSpec
from drs_poller.simulator.timelines import (
    JobScript,
    ServerOutcome,
    ServerScript,
    Snapshot,
    new_job_id,
    new_source_server_id,
    standard_timeline,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping

PRIMARY_REGION = "us-east-1"
SECOND_REGION = "us-west-2"
PLAN_ID = "plan-demo"

# How long real DRS takes, in real seconds (what the timelines are scaled from).
REAL_PENDING = 13.5 * 60
REAL_STARTED = 30.0
REAL_LAUNCHING = 6 * 60
REAL_POST_LAUNCH_ACTIONS = 10 * 60
# Executions are started over about this many real seconds, so their StartTimes and
# schedules differ instead of moving in lock step.
REAL_START_SPREAD = 120.0
# Each execution's DRS is this much slower or faster than the standard durations.
JITTER = (0.8, 1.2)
MAX_SERVERS_PER_WAVE = 4

LAUNCHES: frozenset[ServerOutcome] = frozenset({"launched", "action_failed"})


class ScenarioKind(StrEnum):
    """What one execution exercises; the demo cycles through them in this order."""

    DRILL_ALL_LAUNCHED = "drill, all launched"
    RECOVERY_ACTIONS_SUCCEED = "recovery, post-launch actions succeed"
    DRILL_ONE_LAUNCH_FAILS = "drill, one launch fails"
    RECOVERY_ONE_ACTION_FAILS = "recovery, one post-launch action fails"
    DRILL_LATER_WAVE = "drill, wave 2 started after wave 1"
    RECOVERY_NO_ACTIONS = "recovery, no post-launch actions"
    DRILL_WAVES_ACROSS_REGIONS = "drill, parallel waves in two regions"
    DRILL_ALL_LAUNCHES_FAIL = "drill, every launch fails"


@dataclass(frozen=True)
class DrsDurations:
    """One execution's DRS phase durations, in demo seconds."""

    pending: float
    started: float
    launching: float
    post_launch_actions: float

    @classmethod
    def scaled(cls, *, speed: float, jitter: float = 1.0) -> DrsDurations:
        factor = jitter / speed
        return cls(
            pending=REAL_PENDING * factor,
            started=REAL_STARTED * factor,
            launching=REAL_LAUNCHING * factor,
            post_launch_actions=REAL_POST_LAUNCH_ACTIONS * factor,
        )


@dataclass(frozen=True)
class ScriptedWave:
    """One wave: the servers the initiator lists, and the single DRS job that recovers them."""

    name: str
    region: str
    job_id: str
    is_drill: bool
    outcomes: Mapping[str, ServerOutcome]  # every server of the wave, in order
    timeline: tuple[Snapshot, ...]
    # False: a later wave, started by the initiator once the wave before it is final.
    starts_with_execution: bool = True

    @property
    def server_ids(self) -> tuple[str, ...]:
        return tuple(self.outcomes)

    @property
    def launching_server_ids(self) -> tuple[str, ...]:
        """Servers DRS launches a recovery instance for (these need an EC2 instance)."""
        return tuple(sid for sid, outcome in self.outcomes.items() if outcome in LAUNCHES)

    @property
    def scripted_seconds(self) -> float:
        """When the job's last scripted change happens, counted from its creation."""
        return self.timeline[-1].at

    def spec(self) -> WaveSpec:
        """The wave as the initiator first writes it (no job ids when it starts later)."""
        job_id = self.job_id if self.starts_with_execution else None
        return WaveSpec(
            name=self.name,
            region=self.region,
            servers=tuple(ServerSpec(sid, job_id=job_id) for sid in self.server_ids),
        )

    def job_script(self, *, created_at: float, instance_ids: Mapping[str, str]) -> JobScript:
        """The DRS job, created at ``created_at``; ``instance_ids`` maps launching servers
        to the EC2 instance DRS reports for them (it doubles as the recovery instance id)."""
        return JobScript(
            job_id=self.job_id,
            region=self.region,
            is_drill=self.is_drill,
            created_at=created_at,
            servers=tuple(
                ServerScript(
                    source_server_id=sid,
                    recovery_instance_id=instance_ids.get(sid),
                    ec2_instance_id=instance_ids.get(sid),
                )
                for sid in self.server_ids
            ),
            timeline=self.timeline,
        )


@dataclass(frozen=True)
class Scenario:
    kind: ScenarioKind
    spec: ExecutionSpec
    waves: tuple[ScriptedWave, ...]
    expected_status: str  # COMPLETED, PARTIAL or FAILED, by CONTRACT §2
    # Whether the expected end waits for the post-launch grace period (no action runs).
    waits_for_grace: bool = False

    @property
    def execution_id(self) -> str:
        return self.spec.execution_id

    @property
    def execution_type(self) -> str:
        return self.spec.execution_type or "DRILL"

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(wave.region for wave in self.waves))

    @property
    def server_count(self) -> int:
        return sum(len(wave.outcomes) for wave in self.waves)

    @property
    def later_waves(self) -> tuple[int, ...]:
        return tuple(i for i, wave in enumerate(self.waves) if not wave.starts_with_execution)

    def scripted_seconds(self, *, post_launch_grace: float) -> float:
        """Demo seconds from StartTime until DRS has scripted everything this execution
        waits for: waves started together overlap, later waves follow the one before."""
        total = 0.0
        running = 0.0
        for wave in self.waves:
            length = wave.scripted_seconds + (post_launch_grace if self.waits_for_grace else 0.0)
            if wave.starts_with_execution:
                running = max(running, length)
            else:
                total += running
                running = length
        return total + running


class _Builder:
    """Builds one scenario's waves; all randomness comes from the demo's seeded rng."""

    def __init__(self, *, rng: random.Random, durations: DrsDurations) -> None:
        self.rng = rng
        self.durations = durations

    def servers(self, minimum: int = 1) -> list[str]:
        count = self.rng.randint(minimum, MAX_SERVERS_PER_WAVE)
        return [new_source_server_id(self.rng) for _ in range(count)]

    def all_launch(self, minimum: int = 1) -> dict[str, ServerOutcome]:
        return dict.fromkeys(self.servers(minimum), "launched")

    def one_fails(self, failure: ServerOutcome) -> dict[str, ServerOutcome]:
        # At least two servers, so one failing leaves a success: PARTIAL, not FAILED.
        outcomes = self.all_launch(minimum=2)
        outcomes[self.rng.choice(list(outcomes))] = failure
        return outcomes

    def wave(
        self,
        *,
        number: int,
        region: str,
        outcomes: Mapping[str, ServerOutcome],
        is_drill: bool = True,
        with_actions: bool = False,
        starts_with_execution: bool = True,
    ) -> ScriptedWave:
        durations = self.durations
        timeline = standard_timeline(
            list(outcomes),
            pending=durations.pending,
            started=durations.started,
            launching=durations.launching,
            actions=durations.post_launch_actions if with_actions else None,
            outcomes={sid: o for sid, o in outcomes.items() if o != "launched"},
        )
        return ScriptedWave(
            name=f"wave-{number}",
            region=region,
            job_id=new_job_id(self.rng),
            is_drill=is_drill,
            outcomes=dict(outcomes),
            timeline=timeline,
            starts_with_execution=starts_with_execution,
        )

    def waves_for(self, kind: ScenarioKind, *, region: str) -> tuple[ScriptedWave, ...]:
        waves: tuple[ScriptedWave, ...]
        match kind:
            case ScenarioKind.DRILL_ALL_LAUNCHED:
                waves = (self.wave(number=1, region=region, outcomes=self.all_launch()),)
            case ScenarioKind.RECOVERY_ACTIONS_SUCCEED:
                waves = (
                    self.wave(
                        number=1,
                        region=region,
                        outcomes=self.all_launch(),
                        is_drill=False,
                        with_actions=True,
                    ),
                )
            case ScenarioKind.DRILL_ONE_LAUNCH_FAILS:
                outcomes = self.one_fails("launch_failed")
                waves = (self.wave(number=1, region=region, outcomes=outcomes),)
            case ScenarioKind.RECOVERY_ONE_ACTION_FAILS:
                waves = (
                    self.wave(
                        number=1,
                        region=region,
                        outcomes=self.one_fails("action_failed"),
                        is_drill=False,
                        with_actions=True,
                    ),
                )
            case ScenarioKind.DRILL_LATER_WAVE:
                waves = (
                    self.wave(number=1, region=region, outcomes=self.all_launch()),
                    self.wave(
                        number=2,
                        region=region,
                        outcomes=self.all_launch(),
                        starts_with_execution=False,
                    ),
                )
            case ScenarioKind.RECOVERY_NO_ACTIONS:
                # No action runs at all: NOT_CONFIGURED once the grace period has passed.
                waves = (
                    self.wave(number=1, region=region, outcomes=self.all_launch(), is_drill=False),
                )
            case ScenarioKind.DRILL_WAVES_ACROSS_REGIONS:
                regions = (PRIMARY_REGION, SECOND_REGION, PRIMARY_REGION)
                waves = tuple(
                    self.wave(number=n + 1, region=regions[n], outcomes=self.all_launch())
                    for n in range(self.rng.randint(2, 3))
                )
            case ScenarioKind.DRILL_ALL_LAUNCHES_FAIL:
                failing: dict[str, ServerOutcome] = dict.fromkeys(self.servers(), "launch_failed")
                waves = (self.wave(number=1, region=region, outcomes=failing),)
        return waves


# What CONTRACT §2 says each kind must end as, stated before anything runs.
EXPECTED_STATUS: Mapping[ScenarioKind, str] = {
    ScenarioKind.DRILL_ALL_LAUNCHED: "COMPLETED",
    ScenarioKind.RECOVERY_ACTIONS_SUCCEED: "COMPLETED",
    ScenarioKind.DRILL_ONE_LAUNCH_FAILS: "PARTIAL",
    ScenarioKind.RECOVERY_ONE_ACTION_FAILS: "PARTIAL",
    ScenarioKind.DRILL_LATER_WAVE: "COMPLETED",
    ScenarioKind.RECOVERY_NO_ACTIONS: "COMPLETED",
    ScenarioKind.DRILL_WAVES_ACROSS_REGIONS: "COMPLETED",
    ScenarioKind.DRILL_ALL_LAUNCHES_FAIL: "FAILED",
}


def build_workload(
    *, executions: int, speed: float, rng: random.Random, start_time: float
) -> list[Scenario]:
    """``executions`` scenarios cycling through :class:`ScenarioKind`, so even a handful
    shows variety. Every third execution (from the second on) runs in :data:`SECOND_REGION`.
    StartTimes are ``start_time`` plus a staggered offset; the initiator starts each
    execution then."""
    if executions < 1:
        raise ValueError("the workload needs at least one execution")
    if speed <= 0:
        raise ValueError("speed must be positive")
    kinds = list(ScenarioKind)
    scenarios: list[Scenario] = []
    for index in range(executions):
        kind = kinds[index % len(kinds)]
        region = SECOND_REGION if index % 3 == 1 else PRIMARY_REGION
        durations = DrsDurations.scaled(speed=speed, jitter=rng.uniform(*JITTER))
        builder = _Builder(rng=rng, durations=durations)
        waves = builder.waves_for(kind, region=region)
        offset = rng.uniform(0.0, REAL_START_SPREAD) / speed
        execution_type = "DRILL" if all(wave.is_drill for wave in waves) else "RECOVERY"
        spec = ExecutionSpec(
            execution_id=f"demo-{index + 1:02d}-{rng.getrandbits(16):04x}",
            plan_id=PLAN_ID,
            execution_type=execution_type,
            start_time=round(start_time + offset, 3),
            waves=tuple(wave.spec() for wave in waves),
        )
        scenarios.append(
            Scenario(
                kind=kind,
                spec=spec,
                waves=waves,
                expected_status=EXPECTED_STATUS[kind],
                waits_for_grace=kind is ScenarioKind.RECOVERY_NO_ACTIONS,
            )
        )
    return scenarios
