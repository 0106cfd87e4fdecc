"""Every AWS call goes through :class:`Caller`: bounded concurrency, timeouts,
capped exponential backoff with full jitter (honouring Retry-After), metrics.

The SDK is configured to make exactly one attempt per call (see ``aws.py``), so
this is the only retry loop and attempts cannot multiply.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import structlog
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from drs_poller.clients.aws import DamagedResponseError
from drs_poller.core.backoff import BackoffPolicy, ErrorKind, classify
from drs_poller.core.places import SELF

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from drs_poller.clock import Clock
    from drs_poller.observability.metrics import Metrics

T = TypeVar("T")
log = structlog.get_logger("drs_poller.calls")

_TRANSPORT_ERRORS = (
    DamagedResponseError,  # a body cut short or corrupted on the way: ask again
    asyncio.TimeoutError,
    ConnectTimeoutError,
    ReadTimeoutError,
    EndpointConnectionError,
    ConnectionClosedError,
    aiohttp.ClientError,
    OSError,
)


class AwsCallError(Exception):
    """An AWS call that failed for good: a permanent error, or retries exhausted."""

    def __init__(
        self, *, service: str, operation: str, kind: ErrorKind, code: str, message: str
    ) -> None:
        super().__init__(f"{service}:{operation} failed ({kind}): {code}: {message}")
        self.service = service
        self.operation = operation
        self.kind = kind
        self.code = code


def retry_after_of(error: ClientError) -> float | None:
    """DRS sends ``retryAfterSeconds`` as the Retry-After header (botocore also
    parses it into the error shape). Either place will do."""
    response: dict[str, Any] = error.response  # type: ignore[assignment]
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    for value in (response.get("retryAfterSeconds"), headers.get("retry-after")):
        try:
            if value is not None:
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


class Caller:
    def __init__(
        self,
        *,
        metrics: Metrics,
        clock: Clock,
        policy: BackoffPolicy,
        max_concurrent: int,
        max_per_region: int,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self.policy = policy
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.sleep = sleep
        self._global = asyncio.BoundedSemaphore(max_concurrent)
        self._max_per_region = max_per_region
        # DRS quotas are per account and region: one gate per place (issue 15).
        self._places: dict[tuple[str | None, str], asyncio.BoundedSemaphore] = {}

    def _place_gate(self, account: str | None, region: str) -> asyncio.BoundedSemaphore:
        gate = self._places.get((account, region))
        if gate is None:
            gate = self._places[(account, region)] = asyncio.BoundedSemaphore(self._max_per_region)
        return gate

    async def call(
        self,
        *,
        service: str,
        operation: str,
        region: str,
        send: Callable[[], Awaitable[T]],
        expected_errors: frozenset[str] = frozenset(),
        account: str | None = None,
        gated: bool = True,
    ) -> T:
        """Send with retries. A ClientError whose code is in ``expected_errors`` is an
        answer, not a failure (a lost conditional write): it is re-raised unchanged.
        ``account``: the account the call goes to (None: the daemon's own); DRS and EC2
        calls share one gate per (account, region). ``gated`` False: no gate at all (STS
        AssumeRole, which a gated call may wait on: it must never wait for a slot)."""
        attempt = 0
        label = account or SELF
        while True:
            attempt += 1
            started = self.clock.monotonic()
            retry_after: float | None = None
            async with AsyncExitStack() as gates:
                if gated:
                    await self._enter_gates(gates, service=service, place=(account, region))
                try:
                    result = await send()
                except ClientError as error:
                    code = str(error.response.get("Error", {}).get("Code", "Unknown"))
                    if code in expected_errors:
                        self._observe(service, operation, (label, region), "rejected", started)
                        raise
                    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    kind = classify(code, status)
                    message = str(error.response.get("Error", {}).get("Message", ""))
                    retry_after = retry_after_of(error)
                except _TRANSPORT_ERRORS as error:
                    kind, code, message = ErrorKind.TRANSIENT, type(error).__name__, str(error)
                except BotoCoreError as error:
                    kind, code, message = ErrorKind.PERMANENT, type(error).__name__, str(error)
                else:
                    self._observe(service, operation, (label, region), "success", started)
                    return result
            outcome = {
                ErrorKind.THROTTLED: "throttled",
                ErrorKind.TRANSIENT: "timeout" if "Timeout" in code else "error",
                ErrorKind.PERMANENT: "error",
            }[kind]
            self._observe(service, operation, (label, region), outcome, started)
            if kind is ErrorKind.THROTTLED:
                self.metrics.throttles.labels(service, operation, label, region).inc()
            if not self.policy.should_retry(kind, attempt=attempt):
                raise AwsCallError(
                    service=service, operation=operation, kind=kind, code=code, message=message
                )
            delay = self.policy.delay(attempt, rng=self.rng, retry_after=retry_after)
            self.metrics.aws_retries.labels(service, operation).inc()
            log.debug(
                "aws call retry",
                service=service,
                operation=operation,
                region=region,
                account=label,
                code=code,
                attempt=attempt,
                delay=round(delay, 3),
            )
            await self.sleep(delay)

    async def _enter_gates(
        self, gates: AsyncExitStack, *, service: str, place: tuple[str | None, str]
    ) -> None:
        """The global gate, and for DRS and EC2 the gate of the (account, region)."""
        await gates.enter_async_context(self._global)
        if service != "dynamodb":
            await gates.enter_async_context(self._place_gate(*place))

    def _observe(
        self, service: str, operation: str, where: tuple[str, str], outcome: str, started: float
    ) -> None:
        account, region = where
        self.metrics.aws_calls.labels(service, operation, account, region, outcome).inc()
        self.metrics.aws_call_duration.labels(service, operation).observe(
            max(0.0, self.clock.monotonic() - started)
        )
