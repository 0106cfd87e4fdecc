"""``drs-poller simulate``: the DRS simulator as a standalone service on the real clock.

Runs until SIGTERM or SIGINT, then exits 0. Every duration is real DRS's divided by
``speed``. With an EC2 endpoint (moto server), recovery instances are real instances
there, in the job's account. With an STS endpoint (moto server; by default the EC2
endpoint), a request's account is its access key id's, as moto's STS tells it. Bad
options and bad scenario files stop start-up with exit 2 and a message naming what is
wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from drs_poller.clock import SystemClock
from drs_poller.simulator.accounts import StsAccounts
from drs_poller.simulator.behaviour import OutcomeRates, Quotas, Scenario, Simulation
from drs_poller.simulator.events import LaunchEventPublisher
from drs_poller.simulator.instances import DerivedInstances, Ec2Instances, InstanceBackend
from drs_poller.simulator.scenario_file import ScenarioFileError, load_scenario
from drs_poller.simulator.service import (
    DrsSimulator,
    Faults,
    RecoveryInstancesNotCreated,
    serve_drs_simulator,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from drs_poller.clock import Clock

EXIT_OK = 0
EXIT_BAD_OPTIONS = 2
THROTTLE_RETRY_AFTER_SECONDS = 1  # what `simulate` sends as Retry-After when it throttles
DEFAULT_SOURCE_SERVERS = 64
# How often the simulator creates due recovery instances when nobody is asking, so the
# log (and EC2) show launches as they happen rather than at the next request.
INSTANCE_TICK = 0.5

log = structlog.get_logger("drs_poller.simulator")


@dataclass(frozen=True)
class SimulatorOptions:
    host: str = "127.0.0.1"
    port: int = 8081
    speed: float = 1.0
    seed: int = 0
    ec2_endpoint_url: str | None = None
    # Where access key ids are resolved to accounts (moto's STS GetCallerIdentity);
    # None: the EC2 endpoint's, if any (moto server serves both); else every request is
    # in the default account.
    sts_endpoint_url: str | None = None
    events_endpoint_url: str | None = None  # EventBridge (moto) for DRS launch-result events
    scenario: Path | None = None
    quotas: bool = True
    source_servers: int = DEFAULT_SOURCE_SERVERS
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    latency: float = 0.0
    launch_failure_rate: float = 0.0
    action_failure_rate: float = 0.0
    stall_rate: float = 0.0

    def problems(self) -> list[str]:
        problems = []
        if not 0 <= self.port <= 65_535:
            problems.append(f"--port must be between 0 and 65535 (got {self.port})")
        if not 0 < self.speed <= 100_000:
            problems.append(f"--speed must be above 0 and at most 100000 (got {self.speed:g})")
        if self.source_servers < 0:
            problems.append(f"--source-servers must be 0 or more (got {self.source_servers})")
        if self.latency < 0:
            problems.append(f"--latency must be 0 or more seconds (got {self.latency:g})")
        for flag, rate in (
            ("--throttle-rate", self.throttle_rate),
            ("--error-rate", self.error_rate),
            ("--launch-failure-rate", self.launch_failure_rate),
            ("--action-failure-rate", self.action_failure_rate),
            ("--stall-rate", self.stall_rate),
        ):
            if not 0 <= rate <= 1:
                problems.append(f"{flag} must be a probability between 0 and 1 (got {rate:g})")
        return problems


def build_simulator(
    options: SimulatorOptions,
    *,
    clock: Clock,
    scenario: Scenario | None = None,
    instances: InstanceBackend | None = None,
) -> DrsSimulator:
    """The simulator as ``simulate`` configures it (the demo builds its own through this)."""
    simulation = Simulation(
        speed=options.speed,
        scenario=scenario or Scenario(),
        rates=OutcomeRates(
            launch_failure=options.launch_failure_rate,
            action_failure=options.action_failure_rate,
            stall=options.stall_rate,
        ),
        generated_per_region=options.source_servers,
        seed=options.seed,
        rng=random.Random(options.seed),  # noqa: S311 - reproducible outcomes
    )
    faults = Faults(
        # ThrottlingException's retryAfterSeconds is bound to the Retry-After header in
        # botocore's DRS model: a throttled answer says when to come back.
        retry_after_seconds=THROTTLE_RETRY_AFTER_SECONDS,
        throttle_rate=options.throttle_rate,
        error_rate=options.error_rate,
        latency=options.latency,
        rng=random.Random(f"faults/{options.seed}"),  # noqa: S311 - fault dice
    )
    sts_endpoint_url = options.sts_endpoint_url or options.ec2_endpoint_url
    if instances is None:
        instances = (
            Ec2Instances(options.ec2_endpoint_url, sts_endpoint_url=sts_endpoint_url)
            if options.ec2_endpoint_url
            else DerivedInstances(random.Random(f"instances/{options.seed}"))  # noqa: S311
        )
    return DrsSimulator(
        clock=clock,
        faults=faults,
        simulation=simulation,
        quotas=Quotas() if options.quotas else None,
        instances=instances,
        accounts=StsAccounts(sts_endpoint_url) if sts_endpoint_url else None,
    )


async def create_instances_continually(simulator: DrsSimulator) -> None:
    """The simulator's *launcher* task: recovery instances appear when servers launch."""
    while True:
        with contextlib.suppress(RecoveryInstancesNotCreated):  # logged; tried next tick
            await simulator.create_due_instances()
        await asyncio.sleep(INSTANCE_TICK)


async def _background_until(
    stop: asyncio.Event, simulator: DrsSimulator, options: SimulatorOptions
) -> None:
    """The launcher of recovery instances, and the publisher of DRS events with
    ``--events-endpoint-url``, until ``stop`` is set."""
    tasks = [
        asyncio.create_task(
            create_instances_continually(simulator), name="recovery instance launcher"
        )
    ]
    if options.events_endpoint_url:
        events = LaunchEventPublisher(simulator, endpoint_url=options.events_endpoint_url)
        tasks.append(asyncio.create_task(events.run(), name="DRS events publisher"))
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve_simulator(
    options: SimulatorOptions,
    *,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the simulator until SIGTERM/SIGINT (or ``stop`` is set); the exit code."""
    problems = options.problems()
    scenario = None
    if options.scenario is not None and not problems:
        try:
            scenario = load_scenario(options.scenario)
        except ScenarioFileError as error:
            problems.append(f"--scenario {error}")
    if problems:
        for problem in problems:
            log.error("bad option", problem=problem)
        return EXIT_BAD_OPTIONS
    simulator = build_simulator(options, clock=SystemClock(), scenario=scenario)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    try:
        async with serve_drs_simulator(simulator, host=options.host, port=options.port) as url:
            log.info(
                "simulator listening",
                url=url,
                speed=options.speed,
                seed=options.seed,
                quotas=options.quotas,
                source_servers_per_region=options.source_servers,
                scripted_source_servers=len(scenario.source_servers) if scenario else 0,
                ec2_endpoint_url=options.ec2_endpoint_url,
                sts_endpoint_url=options.sts_endpoint_url or options.ec2_endpoint_url,
                events_endpoint_url=options.events_endpoint_url,
            )
            if on_ready is not None:
                on_ready(url)
            await _background_until(stop, simulator, options)
            log.info("simulator stopping", calls=len(simulator.calls))
    except OSError as error:
        log.error("cannot listen", host=options.host, port=options.port, error=str(error))  # noqa: TRY400 - a start-up message; a traceback adds nothing
        return EXIT_BAD_OPTIONS
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return EXIT_OK


__all__ = [
    "DEFAULT_SOURCE_SERVERS",
    "SimulatorOptions",
    "build_simulator",
    "create_instances_continually",
    "serve_simulator",
]
