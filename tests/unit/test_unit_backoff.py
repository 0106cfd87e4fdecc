"""classify and BackoffPolicy: which errors are retried, and how long to wait."""

from __future__ import annotations

import random

import pytest

from drs_poller.core.backoff import BackoffPolicy, ErrorKind, classify

THROTTLED, TRANSIENT, PERMANENT = ErrorKind.THROTTLED, ErrorKind.TRANSIENT, ErrorKind.PERMANENT

CLASSIFY = [
    ("ThrottlingException", 400, THROTTLED),
    ("ThrottlingException", None, THROTTLED),
    ("ProvisionedThroughputExceededException", 400, THROTTLED),
    ("RequestLimitExceeded", 503, THROTTLED),
    ("TooManyRequestsException", 429, THROTTLED),
    (None, 429, THROTTLED),
    ("SomethingNew", 429, THROTTLED),
    ("InternalServerException", 500, TRANSIENT),
    ("InternalServerException", None, TRANSIENT),
    ("ServiceUnavailable", 503, TRANSIENT),
    ("RequestTimeout", 408, TRANSIENT),
    (None, 500, TRANSIENT),
    (None, 502, TRANSIENT),
    (None, 503, TRANSIENT),
    (None, 504, TRANSIENT),
    ("SomethingNew", 500, TRANSIENT),
    ("ValidationException", 400, PERMANENT),
    ("AccessDeniedException", 403, PERMANENT),
    ("AccessDeniedException", None, PERMANENT),
    ("ResourceNotFoundException", 404, PERMANENT),
    ("ConditionalCheckFailedException", 400, PERMANENT),
    (None, 400, PERMANENT),
    (None, 404, PERMANENT),
]


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.mark.parametrize(("code", "http_status", "expected"), CLASSIFY)
def test_classify(code, http_status, expected):
    assert classify(code, http_status) is expected


SHOULD_RETRY = [
    (THROTTLED, 1, True),
    (TRANSIENT, 1, True),
    (THROTTLED, 4, True),
    (TRANSIENT, 4, True),
    (THROTTLED, 5, False),
    (TRANSIENT, 5, False),
    (TRANSIENT, 6, False),
    (PERMANENT, 1, False),
    (PERMANENT, 4, False),
]


@pytest.mark.parametrize(("kind", "attempt", "expected"), SHOULD_RETRY)
def test_should_retry(kind, attempt, expected):
    assert BackoffPolicy(max_attempts=5).should_retry(kind, attempt=attempt) is expected


def test_single_attempt_never_retries():
    assert BackoffPolicy(max_attempts=1).should_retry(THROTTLED, attempt=1) is False


def _ceiling(policy: BackoffPolicy, attempt: int) -> float:
    return min(policy.cap, policy.base * 2 ** (attempt - 1))


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (6, 16.0), (7, 20.0), (20, 20.0)],
)
def test_full_jitter_stays_within_the_ceiling(attempt, ceiling):
    policy = BackoffPolicy(base=0.5, cap=20.0)
    rng = _rng(attempt)
    draws = [policy.delay(attempt, rng=rng) for _ in range(2_000)]
    assert all(0.0 <= draw <= ceiling for draw in draws)
    assert _ceiling(policy, attempt) == ceiling
    # Full jitter spreads over the whole range, not a narrow band near the top.
    assert min(draws) < 0.1 * ceiling
    assert max(draws) > 0.9 * ceiling
    assert len(set(draws)) > 1_900


def test_delay_grows_then_caps():
    policy = BackoffPolicy(base=1.0, cap=10.0)
    means = []
    for attempt in range(1, 9):
        rng = _rng(42)
        draws = [policy.delay(attempt, rng=rng) for _ in range(500)]
        means.append(sum(draws) / len(draws))
    assert means[0] < means[1] < means[2] < means[3] < means[4]
    # From attempt 5 (1 * 2**4 = 16 > 10) the ceiling is the cap: identical draws.
    assert means[4] == means[5] == means[6] == means[7]
    assert 4.0 < means[7] < 6.0


def test_delay_is_reproducible_with_a_seed():
    policy = BackoffPolicy()
    first = [policy.delay(3, rng=_rng(5)) for _ in range(3)]
    assert first[0] == first[1] == first[2]


RETRY_AFTER = [
    # retry_after, max_retry_after, floor
    (5.0, 60.0, 5.0),
    (0.1, 60.0, 0.1),
    (120.0, 60.0, 60.0),
    (60.0, 60.0, 60.0),
    (30.0, 10.0, 10.0),
]


@pytest.mark.parametrize(("retry_after", "max_retry_after", "floor"), RETRY_AFTER)
@pytest.mark.parametrize("attempt", [1, 3, 10])
def test_retry_after_is_a_bounded_floor(retry_after, max_retry_after, floor, attempt):
    policy = BackoffPolicy(base=0.5, cap=20.0, max_retry_after=max_retry_after)
    rng = _rng(attempt)
    jitter = min(policy.base, _ceiling(policy, attempt))
    draws = [policy.delay(attempt, rng=rng, retry_after=retry_after) for _ in range(500)]
    assert all(floor <= draw <= floor + jitter for draw in draws)
    assert len(set(draws)) > 450  # clients told the same value do not return in lockstep


@pytest.mark.parametrize("retry_after", [None, 0.0, -1.0])
def test_no_retry_after_means_plain_jitter(retry_after):
    policy = BackoffPolicy(base=0.5, cap=20.0)
    plain = policy.delay(2, rng=_rng(3))
    assert policy.delay(2, rng=_rng(3), retry_after=retry_after) == plain
    assert 0.0 <= plain <= 1.0


def test_defaults():
    policy = BackoffPolicy()
    assert (policy.base, policy.cap, policy.max_attempts, policy.max_retry_after) == (
        0.5,
        20.0,
        5,
        60.0,
    )
