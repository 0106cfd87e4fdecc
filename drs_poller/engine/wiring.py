"""The AWS plumbing built from the settings: one place for the daemon
(:mod:`drs_poller.engine.components`) and the one-shot commands
(:func:`drs_poller.engine.reporting.read_execution`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drs_poller.clients.calling import Caller
from drs_poller.clients.dynamodb import ExecutionStore
from drs_poller.settings import backoff_from

if TYPE_CHECKING:
    import random

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clock import Clock
    from drs_poller.observability.metrics import Metrics
    from drs_poller.settings import Settings


def caller_from(
    settings: Settings, *, metrics: Metrics, clock: Clock, rng: random.Random | None = None
) -> Caller:
    """Every AWS call's retries and concurrency limits, as the settings say."""
    return Caller(
        metrics=metrics,
        clock=clock,
        policy=backoff_from(settings),
        max_concurrent=settings.max_concurrent_calls,
        max_per_region=settings.max_concurrent_calls_per_region,
        rng=rng,
    )


def store_from(
    settings: Settings, *, clients: ClientPool, caller: Caller, region: str
) -> ExecutionStore:
    """The execution-history table and its StatusIndex, as the settings name them."""
    return ExecutionStore(
        clients=clients,
        caller=caller,
        region=region,
        table=settings.table_name,
        index=settings.status_index,
    )
