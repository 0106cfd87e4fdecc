"""Retry policy: capped exponential backoff with full jitter, honouring Retry-After.

Which errors are worth retrying is decided here too, from the error code and
HTTP status alone, so the adapters stay thin and the policy is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random


class ErrorKind(StrEnum):
    THROTTLED = "throttled"
    TRANSIENT = "transient"  # 5xx, timeouts, connection errors
    PERMANENT = "permanent"  # validation, access denied, unknown operation: never retried


_THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceededException",
        "SlowDown",
        "PriorRequestNotComplete",
        "BandwidthLimitExceeded",
        "LimitExceededException",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "InternalServerException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
    }
)


def classify(code: str | None, http_status: int | None) -> ErrorKind:
    if code in _THROTTLING_CODES or http_status == 429:
        return ErrorKind.THROTTLED
    if code in _TRANSIENT_CODES or (http_status is not None and http_status >= 500):
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base: float = 0.5
    cap: float = 20.0
    max_attempts: int = 5
    max_retry_after: float = 60.0

    def should_retry(self, kind: ErrorKind, *, attempt: int) -> bool:
        """``attempt`` counts from 1: the attempt that just failed."""
        return kind is not ErrorKind.PERMANENT and attempt < self.max_attempts

    def delay(self, attempt: int, *, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1).

        Full jitter (uniform over [0, min(cap, base * 2**(attempt-1))]) spreads many
        clients apart. A server-sent Retry-After is a floor, bounded by
        ``max_retry_after``; a little jitter on top keeps clients that were told the
        same value from returning in lockstep.
        """
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        jittered = rng.uniform(0.0, ceiling)
        if retry_after is None or retry_after <= 0:
            return jittered
        return min(retry_after, self.max_retry_after) + rng.uniform(0.0, min(self.base, ceiling))
