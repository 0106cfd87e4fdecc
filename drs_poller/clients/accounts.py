"""Credentials for member accounts (issue 15): one assumed role per account, refreshed by
botocore before it expires.

For a wave whose ``AccountId`` is another account, the daemon assumes
``arn:<partition>:iam::<AccountId>:role/<DRS_POLLER_ACCOUNT_ROLE_NAME>`` through the
regional STS endpoint of its own region (``DRS_POLLER_STS_ENDPOINT_URL`` overrides it),
with ``RoleSessionName`` ``drs-poller`` and the ``ExternalId`` when one is set.

Each account gets one session whose credentials are aiobotocore's
:class:`AioDeferredRefreshableCredentials`: the first request fetches them, and a
request made within botocore's refresh window of their expiry (15 minutes advisory, 10
minutes mandatory) fetches new ones first, one refresh at a time. So there is no timer
of ours: AssumeRole is called once per account per credential lifetime (an hour), and
only for accounts the daemon still polls. The fetch goes through the :class:`Caller`
(retries with backoff, metrics ``drs_poller_aws_calls_total{service="sts"}``), outside
its concurrency gates, because a gated DRS call may be waiting on it.

Their expiry is read on the daemon's clock: the credentials' lifetime is their
``Expiration`` less the STS answer's ``Date``, counted from when the answer arrived. A
host clock that is off, or a test's clock, then refreshes them as it should.

When AssumeRole fails for good (denied, throttled past the retries, STS unreachable):
the failure is counted by reason, the account is marked unreachable once credentials
run out (``drs_poller_account_reachable`` 0), the outage is logged once, and no new
AssumeRole is tried for that account until a backoff delay (core/backoff.py, capped
at :data:`RETRY_CAP`) has passed. Meanwhile :class:`AccountUnreachableError` says so
at once; the poller leaves that account's executions as they are.
"""

from __future__ import annotations

import asyncio
import functools
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final

import aioboto3
import structlog
from aiobotocore.credentials import AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession

from drs_poller.clients.calling import AwsCallError
from drs_poller.core.backoff import BackoffPolicy, ErrorKind
from drs_poller.core.places import role_arn

if TYPE_CHECKING:
    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller
    from drs_poller.clock import Clock
    from drs_poller.observability.metrics import Metrics
    from drs_poller.settings import Settings

log = structlog.get_logger("drs_poller.accounts")

ROLE_SESSION_NAME: Final = "drs-poller"
RETRY_BASE: Final = 5.0  # seconds before the first new AssumeRole after a failure
RETRY_CAP: Final = 300.0  # the longest wait between AssumeRole tries for one account
_DENIED: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "RegionDisabledException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
    }
)


class AccountUnreachableError(Exception):
    """No valid credentials for a member account now: its calls are not made."""

    def __init__(self, account: str, *, reason: str, detail: str) -> None:
        super().__init__(f"account {account} unreachable ({reason}): {detail}")
        self.account = account
        self.reason = reason
        self.detail = detail

    @property
    def summary(self) -> str:
        """What an execution's ErrorMessage says of it (short, no request ids)."""
        return f"AssumeRole {self.reason}"


def failure_reason(error: AwsCallError) -> str:
    """The ``reason`` label of a failed AssumeRole: denied, throttled or error."""
    if error.code in _DENIED:
        return "denied"
    if error.kind is ErrorKind.THROTTLED:
        return "throttled"
    return "error"


def sts_endpoint(region: str) -> str:
    """The regional STS endpoint of ``region``."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://sts.{region}.{suffix}"


class _Account:
    """One member account: its session, and how its last AssumeRole went."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.session: aioboto3.Session | None = None
        self.credentials: AioDeferredRefreshableCredentials | None = None
        self.failures = 0  # consecutive failed AssumeRole calls
        self.retry_at = 0.0  # monotonic: no AssumeRole before this
        self.last_error: AccountUnreachableError | None = None
        self.unreachable = False  # the outage being logged (once)


class MemberAccounts:
    """Sessions for member accounts, one per account, created on first use."""

    def __init__(
        self,
        *,
        clients: ClientPool,  # with the "sts" endpoint of the daemon's region (sts_endpoint)
        caller: Caller,
        settings: Settings,
        region: str,
        clock: Clock,
        metrics: Metrics,
        rng: random.Random | None = None,
    ) -> None:
        self._clients = clients
        self._loader = clients.session._session.get_component("data_loader")  # noqa: SLF001
        self._caller = caller
        self._role_name = settings.account_role_name
        self._external_id = settings.account_role_external_id
        self._region = region
        self._clock = clock
        self._metrics = metrics
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._backoff = BackoffPolicy(base=RETRY_BASE, cap=RETRY_CAP, max_attempts=1_000_000)
        self._accounts: dict[str, _Account] = {}
        self._own: str | None = None
        self._own_known = False
        self._own_retry_at = 0.0  # monotonic: GetCallerIdentity not asked again before
        self._own_lock = asyncio.Lock()
        self.assume_role_calls = 0  # AssumeRole requests sent (the benchmark reads it)

    # --- the daemon's own account -----------------------------------------------------

    @property
    def own_account(self) -> str | None:
        """The daemon's own account, once asked (None before, or when the ask failed)."""
        return self._own

    async def is_own(self, account: str) -> bool:
        """Whether ``account`` is the daemon's own: asked once (GetCallerIdentity), lazily,
        only when a wave carries an AccountId. Unknown (the call failed): not own, so the
        role is assumed, and the question is asked again next time."""
        if not self._own_known and self._clock.monotonic() >= self._own_retry_at:
            async with self._own_lock:
                if not self._own_known and self._clock.monotonic() >= self._own_retry_at:
                    await self._ask_own()
        return account == self._own

    async def _ask_own(self) -> None:
        client = await self._clients.get("sts", self._region)
        try:
            answer: dict[str, Any] = await self._caller.call(
                service="sts",
                operation="GetCallerIdentity",
                region=self._region,
                send=client.get_caller_identity,
                gated=False,
            )
        except AwsCallError as error:
            self._own_retry_at = self._clock.monotonic() + RETRY_CAP
            log.warning("GetCallerIdentity failed; asked again later", error=str(error))
            return
        own = answer.get("Account")
        self._own = own if isinstance(own, str) else None
        self._own_known = True

    # --- member accounts ----------------------------------------------------------------

    async def session_for(self, account: str) -> aioboto3.Session:
        """The session of a member account, with credentials valid now. Raises
        :class:`AccountUnreachableError` while none can be had."""
        entry = self._accounts.get(account)
        if entry is None:
            entry = self._accounts[account] = _Account(account)
        if entry.credentials is None or entry.session is None:
            entry.credentials = AioDeferredRefreshableCredentials(
                refresh_using=functools.partial(self._assume, entry),
                method="assume-role",
                time_fetcher=self._now,
            )
            core = AioSession()
            # The daemon's own session's loader: its service models are parsed once for
            # every account (measured: 22 MB an account with a loader of its own, for
            # the DRS and EC2 models; 0.5 MB with the shared one).
            core.register_component("data_loader", self._loader)
            # What get_credentials() returns; botocore has no public setter for a
            # credentials object (set_credentials() makes static ones).
            core._credentials = entry.credentials  # type: ignore[attr-defined]  # noqa: SLF001
            entry.session = aioboto3.Session(botocore_session=core)
        if (
            entry.unreachable
            and entry.last_error is not None
            and self._clock.monotonic() < entry.retry_at
        ):
            raise entry.last_error  # backing off: no credentials, and no AssumeRole yet
        try:
            # Outside any gate: this is where a refresh happens when one is due.
            await entry.credentials.get_frozen_credentials()
        except AccountUnreachableError as error:
            self._unreachable(entry, error)
            raise
        except Exception as error:
            # botocore's own complaint (credentials refreshed but already expired).
            failed = AccountUnreachableError(account, reason="error", detail=str(error))
            self._unreachable(entry, failed)
            raise failed from error
        self._reachable(entry)
        return entry.session

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), tz=UTC)

    async def _assume(self, entry: _Account) -> dict[str, Any]:
        """botocore's refresh callback: AssumeRole now (unless backing off), as metadata."""
        now = self._clock.monotonic()
        if now < entry.retry_at and entry.last_error is not None:
            raise entry.last_error
        request: dict[str, Any] = {
            "RoleArn": role_arn(entry.account, role_name=self._role_name, region=self._region),
            "RoleSessionName": ROLE_SESSION_NAME,
        }
        if self._external_id:
            request["ExternalId"] = self._external_id
        client = await self._clients.get("sts", self._region)
        self.assume_role_calls += 1
        try:
            answer: dict[str, Any] = await self._caller.call(
                service="sts",
                operation="AssumeRole",
                region=self._region,
                account=entry.account,
                send=functools.partial(client.assume_role, **request),
                gated=False,
            )
        except AwsCallError as error:
            reason = failure_reason(error)
            self._metrics.account_credentials_failures.labels(entry.account, reason).inc()
            entry.failures += 1
            entry.retry_at = now + self._backoff.delay(entry.failures, rng=self._rng)
            entry.last_error = AccountUnreachableError(
                entry.account, reason=reason, detail=f"{error.code}: {error}"
            )
            raise entry.last_error from error
        entry.failures = 0
        entry.last_error = None
        return self._metadata(answer)

    def _metadata(self, answer: dict[str, Any]) -> dict[str, Any]:
        """AssumeRole's answer as botocore's refresh metadata, its expiry on our clock."""
        credentials = answer["Credentials"]
        expiration = credentials["Expiration"]
        if isinstance(expiration, str):
            expiration = datetime.fromisoformat(expiration)
        headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        try:
            issued = parsedate_to_datetime(headers["date"])
        except (KeyError, TypeError, ValueError):
            issued = datetime.now(tz=UTC)
        if issued.tzinfo is None:
            issued = issued.replace(tzinfo=UTC)
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        lifetime = max(0.0, (expiration - issued).total_seconds())
        expiry = datetime.fromtimestamp(self._clock.time() + lifetime, tz=UTC)
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": expiry.isoformat(),
        }

    def _unreachable(self, entry: _Account, error: AccountUnreachableError) -> None:
        self._metrics.account_reachable.labels(entry.account).set(0)
        if not entry.unreachable:
            entry.unreachable = True
            log.error(
                "member account unreachable; its executions keep their status and are"
                " retried with backoff (never failed for it before the maximum age)",
                account=entry.account,
                reason=error.reason,
                error=error.detail,
            )

    def _reachable(self, entry: _Account) -> None:
        self._metrics.account_reachable.labels(entry.account).set(1)
        if entry.unreachable:
            entry.unreachable = False
            log.info("member account reachable again", account=entry.account)
