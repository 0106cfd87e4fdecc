"""The demo's workload: a seeded mix of drills and recoveries, each with its expected end.

Pure on purpose: a plan says which kinds of source servers each wave needs (by the
``drs-sim:behaviour`` the simulator shows on them), and what contract §2 says the
execution must end as, so the expectation is stated before anything runs, not read
back from what the daemon did. The initiator binds the plan to real source servers
from DescribeSourceServers and starts it through StartRecovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from drs_poller.simulator.behaviour import Behaviour, server_succeeds

if TYPE_CHECKING:
    import random

PRIMARY_REGION = "us-east-1"
SECOND_REGION = "us-west-2"
# The demo's second AWS account: its waves carry it as ``AccountId``; the daemon reaches it
# through a role assumed in moto's STS (docs/local-stack.md).
SECOND_ACCOUNT = "222233334444"
PLAN_ID = "plan-demo"
MAX_SERVERS_PER_WAVE = 4
# Executions are started over about this many real seconds, so their StartTimes and
# schedules differ instead of moving in lock step.
REAL_START_SPREAD = 120.0
# What a healthy server is: no behaviour tag (the simulator launches it).
HEALTHY: Behaviour | None = None


class ScenarioKind(StrEnum):
    """What one execution exercises; the demo cycles through them in this order."""

    DRILL_ALL_LAUNCHED = "drill, all launched"
    RECOVERY_ACTIONS_SUCCEED = "recovery, post-launch actions succeed"
    DRILL_ONE_LAUNCH_FAILS = "drill, one launch fails"
    RECOVERY_ONE_ACTION_FAILS = "recovery, one post-launch action fails"
    DRILL_LATER_WAVE = "drill, wave 2 started after wave 1"
    RECOVERY_NO_ACTIONS = "recovery, no post-launch actions"
    RECOVERY_THREE_WAVES = "recovery, 3 waves in two regions, wave 3 later"
    DRILL_ALL_LAUNCHES_FAIL = "drill, every launch fails"


@dataclass(frozen=True)
class WavePlan:
    name: str
    region: str
    is_drill: bool
    needs: tuple[Behaviour | None, ...]  # one entry per server: the behaviour it must have
    # False: a later wave, started by the initiator once the wave before it is final.
    starts_with_execution: bool = True
    # The AWS account of the wave's DRS; None: the daemon's own account.
    account_id: str | None = None

    @property
    def place(self) -> str:
        """Where the wave's DRS lives: its region, ``<AccountId>/<Region>`` in another
        account."""
        return self.region if self.account_id is None else f"{self.account_id}/{self.region}"

    def succeeded(self) -> list[bool]:
        return [server_succeeds(need, is_drill=self.is_drill) is True for need in self.needs]


@dataclass(frozen=True)
class ExecutionPlan:
    kind: ScenarioKind
    execution_id: str
    waves: tuple[WavePlan, ...]
    start_offset: float  # real seconds after the workload starts
    plan_id: str = PLAN_ID

    @property
    def execution_type(self) -> str:
        return "DRILL" if all(wave.is_drill for wave in self.waves) else "RECOVERY"

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(wave.region for wave in self.waves))

    @property
    def places(self) -> tuple[str, ...]:
        """Each wave's :attr:`WavePlan.place`, once each, in order."""
        return tuple(dict.fromkeys(wave.place for wave in self.waves))

    @property
    def server_count(self) -> int:
        return sum(len(wave.needs) for wave in self.waves)

    @property
    def later_waves(self) -> tuple[int, ...]:
        return tuple(i for i, wave in enumerate(self.waves) if not wave.starts_with_execution)

    @property
    def expected_status(self) -> str:
        """contract §2: COMPLETED if every server succeeds, FAILED if none, else PARTIAL."""
        outcomes = [ok for wave in self.waves for ok in wave.succeeded()]
        if all(outcomes):
            return "COMPLETED"
        return "PARTIAL" if any(outcomes) else "FAILED"


class _Builder:
    def __init__(self, rng: random.Random, *, second_account: str | None = None) -> None:
        self.rng = rng
        self.second_account = second_account

    def healthy(self, minimum: int = 1) -> list[Behaviour | None]:
        return [HEALTHY] * self.rng.randint(minimum, MAX_SERVERS_PER_WAVE)

    def one_of(self, failure: Behaviour) -> list[Behaviour | None]:
        # At least one healthy server beside it, so the execution is PARTIAL, not FAILED.
        needs = self.healthy(minimum=1)[: MAX_SERVERS_PER_WAVE - 1]
        needs.insert(self.rng.randint(0, len(needs)), failure)
        return needs

    def waves_for(self, kind: ScenarioKind, *, region: str) -> tuple[WavePlan, ...]:  # noqa: PLR0911 - one return per kind reads as a table
        def wave(number: int, needs: list[Behaviour | None], **options: object) -> WavePlan:
            return WavePlan(
                name=f"wave-{number}",
                region=str(options.get("region", region)),
                is_drill=bool(options.get("is_drill", True)),
                needs=tuple(needs),
                starts_with_execution=bool(options.get("starts_with_execution", True)),
                account_id=self.second_account if options.get("second_account") else None,
            )

        match kind:
            case ScenarioKind.DRILL_ALL_LAUNCHED:
                return (wave(1, self.healthy()),)
            case ScenarioKind.RECOVERY_ACTIONS_SUCCEED:
                return (wave(1, self.healthy(), is_drill=False),)
            case ScenarioKind.DRILL_ONE_LAUNCH_FAILS:
                return (wave(1, self.one_of(Behaviour.LAUNCH_FAILS)),)
            case ScenarioKind.RECOVERY_ONE_ACTION_FAILS:
                return (wave(1, self.one_of(Behaviour.ACTION_FAILS), is_drill=False),)
            case ScenarioKind.DRILL_LATER_WAVE:
                # With a second account, both waves are there: the later one is started
                # in that account too.
                return (
                    wave(1, self.healthy(), second_account=True),
                    wave(2, self.healthy(), starts_with_execution=False, second_account=True),
                )
            case ScenarioKind.RECOVERY_NO_ACTIONS:
                count = self.rng.randint(1, MAX_SERVERS_PER_WAVE)
                return (wave(1, [Behaviour.NO_ACTIONS] * count, is_drill=False),)
            case ScenarioKind.RECOVERY_THREE_WAVES:
                other = SECOND_REGION if region == PRIMARY_REGION else PRIMARY_REGION
                # With a second account, wave 2 is there: one execution, two accounts.
                return (
                    wave(1, self.healthy(), is_drill=False),
                    wave(2, self.healthy(), is_drill=False, region=other, second_account=True),
                    wave(3, self.healthy(), is_drill=False, starts_with_execution=False),
                )
            case ScenarioKind.DRILL_ALL_LAUNCHES_FAIL:
                count = self.rng.randint(1, 2)
                return (wave(1, [Behaviour.LAUNCH_FAILS] * count),)
        raise AssertionError(kind)  # pragma: no cover - the match is exhaustive


def plan_workload(
    *, executions: int, rng: random.Random, second_account: str | None = None
) -> list[ExecutionPlan]:
    """``executions`` plans cycling through :class:`ScenarioKind`, so even a handful shows
    variety. Every third execution (from the second on) runs in :data:`SECOND_REGION`.
    With ``second_account`` (the demo's :data:`SECOND_ACCOUNT`), the later-wave drill runs
    in that account, and the three-wave recovery has its second wave there."""
    if executions < 1:
        raise ValueError("the workload needs at least one execution")
    kinds = list(ScenarioKind)
    plans = []
    for index in range(executions):
        kind = kinds[index % len(kinds)]
        region = SECOND_REGION if index % 3 == 1 else PRIMARY_REGION
        waves = _Builder(rng, second_account=second_account).waves_for(kind, region=region)
        plans.append(
            ExecutionPlan(
                kind=kind,
                execution_id=f"demo-{index + 1:02d}-{rng.getrandbits(16):04x}",
                waves=waves,
                start_offset=0.0 if index == 0 else rng.uniform(0.0, REAL_START_SPREAD),
            )
        )
    return plans


__all__ = [
    "PLAN_ID",
    "PRIMARY_REGION",
    "SECOND_ACCOUNT",
    "SECOND_REGION",
    "ExecutionPlan",
    "ScenarioKind",
    "WavePlan",
    "plan_workload",
]
