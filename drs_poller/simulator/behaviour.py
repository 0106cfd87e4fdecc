"""What the simulator does when StartRecovery is called: durations, outcomes, quotas.

Pure on purpose (no aiohttp, no botocore): the service asks :class:`Simulation` for a
job's timeline and checks :class:`Quotas` against the jobs it holds, and both are
tested without a server.

Every duration here is in *real* seconds, as long as real DRS takes; the simulation
divides by ``speed`` when it builds a timeline.

How a server ends is decided in this order:

1. a job profile (StartRecovery tag ``drs-sim:profile``) that sets a behaviour,
2. the source server's own behaviour (scenario file, or the generated inventory),
   which DescribeSourceServers shows as the tag ``drs-sim:behaviour``,
3. otherwise a draw with the seeded rng against the failure / stall rates.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from drs_poller.simulator.timelines import (
    LaunchActionScript,
    ServerOutcome,
    ServerPlan,
    Snapshot,
    planned_timeline,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

BEHAVIOUR_TAG = "drs-sim:behaviour"
PROFILE_TAG = "drs-sim:profile"
# The share of PENDING spent taking snapshots; conversion takes the rest.
SNAPSHOT_SHARE = 0.3
# A source server's launch actions when nothing scripts them: the one post-launch
# action every simulated recovery runs (none for the ``no-actions`` behaviour).
DEFAULT_LAUNCH_ACTIONS = (LaunchActionScript("Validate recovery"),)
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Behaviour(StrEnum):
    """A source server's scripted end, as its ``drs-sim:behaviour`` tag spells it."""

    LAUNCHES = "launches"
    LAUNCH_FAILS = "launch-fails"
    ACTION_FAILS = "action-fails"  # a recovery's post-launch action fails; a drill launches
    CONVERSION_STALLS = "conversion-stalls"  # IN_PROGRESS for ever; its job never completes
    NO_ACTIONS = "no-actions"  # launches; no post-launch actions configured

    @property
    def outcome(self) -> ServerOutcome:
        return _OUTCOMES[self]


_OUTCOMES: Mapping[Behaviour, ServerOutcome] = {
    Behaviour.LAUNCHES: "launched",
    Behaviour.LAUNCH_FAILS: "launch_failed",
    Behaviour.ACTION_FAILS: "action_failed",
    Behaviour.CONVERSION_STALLS: "conversion_stalled",
    Behaviour.NO_ACTIONS: "launched",
}


def server_succeeds(behaviour: Behaviour | None, *, is_drill: bool) -> bool | None:
    """Whether contract §2 counts a server of this behaviour a success; None: never ends.

    An untagged server (None) is expected to launch: that is what the simulator does
    with it unless failure rates are set.
    """
    match behaviour:
        case Behaviour.LAUNCH_FAILS:
            return False
        case Behaviour.ACTION_FAILS:
            return is_drill
        case Behaviour.CONVERSION_STALLS:
            return None
        case _:
            return True


@dataclass(frozen=True)
class Durations:
    """Real DRS durations in seconds (the defaults follow what real jobs take)."""

    pending: float = 13.5 * 60  # snapshot, then conversion set-up
    started: float = 30.0
    launching: float = 6 * 60
    post_launch_actions: float = 10 * 60

    def scaled(self, speed: float) -> Durations:
        return Durations(
            pending=self.pending / speed,
            started=self.started / speed,
            launching=self.launching / speed,
            post_launch_actions=self.post_launch_actions / speed,
        )


@dataclass(frozen=True)
class DurationOverrides:
    """Durations a scenario file sets; None keeps the default."""

    pending: float | None = None
    started: float | None = None
    launching: float | None = None
    post_launch_actions: float | None = None

    def over(self, base: Durations) -> Durations:
        return Durations(
            pending=base.pending if self.pending is None else self.pending,
            started=base.started if self.started is None else self.started,
            launching=base.launching if self.launching is None else self.launching,
            post_launch_actions=base.post_launch_actions
            if self.post_launch_actions is None
            else self.post_launch_actions,
        )


@dataclass(frozen=True)
class SourceServer:
    source_server_id: str
    hostname: str
    behaviour: Behaviour | None = None
    # Only launching and post_launch_actions are per server; the others belong to the job.
    durations: DurationOverrides = DurationOverrides()
    tags: Mapping[str, str] = field(default_factory=dict)
    region: str | None = None  # None: known in every region
    # Its launch actions (ListLaunchActions); None: DEFAULT_LAUNCH_ACTIONS, or none for
    # the no-actions behaviour. A recovery runs the active ones, in order.
    launch_actions: tuple[LaunchActionScript, ...] | None = None
    runs_one_at_a_time: bool = False  # DRS lists its runs one at a time
    # (field, value) shown instead of IN_PROGRESS: a value outside the DRS model, on
    # purpose (the scenario file requires "deliberatelyOutsideModel": true).
    outside_model: tuple[str, str] | None = None

    def effective_launch_actions(self) -> tuple[LaunchActionScript, ...]:
        if self.launch_actions is not None:
            return self.launch_actions
        return () if self.behaviour is Behaviour.NO_ACTIONS else DEFAULT_LAUNCH_ACTIONS

    def visible_tags(self) -> dict[str, str]:
        tags = dict(self.tags)
        if self.behaviour is not None:
            tags[BEHAVIOUR_TAG] = self.behaviour.value
        return tags


@dataclass(frozen=True)
class JobProfile:
    """Scenario-file behaviour for every job started with ``drs-sim:profile = name``."""

    name: str
    behaviour: Behaviour | None = None
    durations: DurationOverrides = DurationOverrides()


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file (see ``scenario_file.py`` for its format)."""

    durations: Durations = Durations()
    source_servers: tuple[SourceServer, ...] = ()
    profiles: Mapping[str, JobProfile] = field(default_factory=dict)


@dataclass(frozen=True)
class OutcomeRates:
    """Chances for an untagged server, drawn in this order at StartRecovery."""

    launch_failure: float = 0.0
    action_failure: float = 0.0
    stall: float = 0.0

    def draw(self, rng: random.Random) -> Behaviour:
        if self.launch_failure and rng.random() < self.launch_failure:
            return Behaviour.LAUNCH_FAILS
        if self.action_failure and rng.random() < self.action_failure:
            return Behaviour.ACTION_FAILS
        if self.stall and rng.random() < self.stall:
            return Behaviour.CONVERSION_STALLS
        return Behaviour.LAUNCHES


@dataclass(frozen=True)
class Quotas:
    """DRS's default service quotas (per account and region)."""

    max_concurrent_jobs: int = 20
    max_servers_per_job: int = 100
    max_servers_in_active_jobs: int = 500


# The generated inventory's rotation: 1 in 8 of each failure kind, 1 in 8 without
# post-launch actions, the rest untagged (they launch, or follow the rates).
_GENERATED_ROTATION: tuple[Behaviour | None, ...] = (
    Behaviour.LAUNCH_FAILS,
    Behaviour.ACTION_FAILS,
    Behaviour.NO_ACTIONS,
    None,
    None,
    None,
    None,
    None,
)


def generated_source_servers(*, count: int, region: str, seed: int) -> tuple[SourceServer, ...]:
    """``count`` source servers for ``region``, the same for the same seed and region."""
    servers = []
    for index in range(count):
        digest = hashlib.sha256(f"{seed}/{region}/{index}".encode()).digest()
        suffix = "".join(_ID_ALPHABET[byte % len(_ID_ALPHABET)] for byte in digest[:17])
        servers.append(
            SourceServer(
                source_server_id=f"s-{suffix}",
                hostname=f"app-{index + 1:03d}.{region}.example.internal",
                behaviour=_GENERATED_ROTATION[index % len(_GENERATED_ROTATION)],
                region=region,
            )
        )
    return tuple(servers)


@dataclass
class Simulation:
    """How StartRecovery jobs unfold: speed, durations, scenario, rates and their rng."""

    speed: float = 1.0
    scenario: Scenario = Scenario()
    rates: OutcomeRates = OutcomeRates()
    generated_per_region: int = 0
    seed: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311 - outcome dice
    _generated: dict[str, tuple[SourceServer, ...]] = field(default_factory=dict)

    def source_servers(self, region: str) -> tuple[SourceServer, ...]:
        if region not in self._generated:
            self._generated[region] = generated_source_servers(
                count=self.generated_per_region, region=region, seed=self.seed
            )
        scripted = tuple(s for s in self.scenario.source_servers if s.region in {None, region})
        return scripted + self._generated[region]

    def source_server(self, region: str, source_server_id: str) -> SourceServer | None:
        for server in self.source_servers(region):
            if server.source_server_id == source_server_id:
                return server
        return None

    def behaviours(
        self, region: str, server_ids: Sequence[str], *, profile: JobProfile | None
    ) -> dict[str, Behaviour]:
        """Each server's behaviour for one new job, drawing for the untagged ones."""
        chosen: dict[str, Behaviour] = {}
        for sid in server_ids:
            known = self.source_server(region, sid)
            if profile is not None and profile.behaviour is not None:
                chosen[sid] = profile.behaviour
            elif known is not None and known.behaviour is not None:
                chosen[sid] = known.behaviour
            else:
                chosen[sid] = self.rates.draw(self.rng)
        return chosen

    def timeline(
        self,
        region: str,
        behaviours: Mapping[str, Behaviour],
        *,
        is_drill: bool,
        profile: JobProfile | None,
    ) -> tuple[Snapshot, ...]:
        job_durations = self.scenario.durations
        if profile is not None:
            job_durations = profile.durations.over(job_durations)
        plans: dict[str, ServerPlan] = {}
        for sid, behaviour in behaviours.items():
            known = self.source_server(region, sid)
            durations = job_durations
            if known is not None:
                durations = known.durations.over(durations)
            if profile is not None:  # the job's profile is the most specific choice
                durations = profile.durations.over(durations)
            scaled = durations.scaled(self.speed)
            actions = DEFAULT_LAUNCH_ACTIONS if known is None else known.effective_launch_actions()
            active = tuple(action for action in actions if action.active)
            has_actions = not is_drill and behaviour is not Behaviour.NO_ACTIONS and bool(active)
            plans[sid] = ServerPlan(
                outcome=behaviour.outcome,
                launching=scaled.launching,
                actions=scaled.post_launch_actions if has_actions else None,
                action_names=tuple(action.name for action in active) or ("Validate recovery",),
                optional_actions=frozenset(a.name for a in active if a.optional),
                runs_one_at_a_time=known is not None and known.runs_one_at_a_time,
                outside_model=None if known is None else known.outside_model,
            )
        scaled_job = job_durations.scaled(self.speed)
        return planned_timeline(plans, pending=scaled_job.pending, started=scaled_job.started)

    def snapshot_seconds(self, profile: JobProfile | None) -> float:
        """How long a new job's snapshots take (the rest of PENDING is conversion)."""
        durations = self.scenario.durations
        if profile is not None:
            durations = profile.durations.over(durations)
        return durations.scaled(self.speed).pending * SNAPSHOT_SHARE

    def launch_actions(
        self, region: str, source_server_id: str
    ) -> tuple[LaunchActionScript, ...] | None:
        """What ListLaunchActions lists for a source server; None: DRS does not know it."""
        known = self.source_server(region, source_server_id)
        return None if known is None else known.effective_launch_actions()

    def profile(self, name: str | None) -> JobProfile | None:
        return None if name is None else self.scenario.profiles.get(name)

    def terminate_seconds(self) -> float:
        """A terminate job's length: about a minute in real DRS."""
        return 60.0 / self.speed


__all__ = [
    "BEHAVIOUR_TAG",
    "PROFILE_TAG",
    "Behaviour",
    "DurationOverrides",
    "Durations",
    "JobProfile",
    "OutcomeRates",
    "Quotas",
    "Scenario",
    "Simulation",
    "SourceServer",
    "generated_source_servers",
    "server_succeeds",
]
