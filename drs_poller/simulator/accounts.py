"""Which AWS account a request to the simulator is in: the account of the access key id
its SigV4 ``Authorization`` header is signed with (``Credential=<AKID>/...``).

Real DRS knows the account from the caller's credentials; the simulator does the same
with the access key id alone (it checks no signature, as moto server does not):

* :class:`KnownAccounts`: access keys mapped to accounts by hand; any other key (or a
  request with no ``Authorization`` header) is :data:`DEFAULT_ACCOUNT_ID`.
* :class:`StsAccounts`: with moto server's URL, a key not mapped yet is resolved once
  by asking moto's STS ``GetCallerIdentity`` signed with that key, and cached. Keys
  from moto's ``AssumeRole`` into ``arn:aws:iam::222233334444:role/x`` are account
  ``222233334444``; moto answers its default account (``123456789012``, the same as
  the simulator's) for a key it never issued.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from drs_poller.simulator.timelines import DEFAULT_ACCOUNT_ID

if TYPE_CHECKING:
    from collections.abc import Mapping

ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
_ACCESS_KEY = re.compile(r"Credential=(?P<key>[^/,\s]+)/")
# Moto's STS answers in any region; the simulator asks this one.
STS_REGION = "us-east-1"
# moto server checks no signature; the secret only has to be present for botocore.
_ANY_SECRET = "drs-simulator"  # noqa: S105 - not a secret: moto checks no signature

log = structlog.get_logger("drs_poller.simulator")


def access_key_of(authorization: str) -> str | None:
    """The access key id of a SigV4 ``Authorization`` header, or None."""
    match = _ACCESS_KEY.search(authorization)
    return match.group("key") if match else None


def check_account_id(account: str) -> str:
    """``account`` when it is 12 digits; a ValueError otherwise."""
    if not ACCOUNT_ID.match(account):
        raise ValueError(f"an AWS account id is 12 digits (got {account!r})")
    return account


class AccountNotResolved(Exception):  # noqa: N818 - a state, not a mistake
    """STS could not say whose an access key is (moto unreachable); the request is
    answered with a retryable 500 and the key is asked about again next time."""


class AccountResolver(Protocol):
    async def account_of(self, access_key_id: str | None) -> str: ...


class KnownAccounts:
    """Access keys mapped to accounts by hand; any other key is the default account."""

    def __init__(self, keys: Mapping[str, str] | None = None) -> None:
        self.keys: dict[str, str] = {}
        for key, account in (keys or {}).items():
            self.add(key, account)

    def add(self, access_key_id: str, account: str) -> None:
        """Requests signed with ``access_key_id`` are in ``account`` from now on."""
        self.keys[access_key_id] = check_account_id(account)

    async def account_of(self, access_key_id: str | None) -> str:
        if access_key_id is None:
            return DEFAULT_ACCOUNT_ID
        return self.keys.get(access_key_id, DEFAULT_ACCOUNT_ID)


class StsAccounts(KnownAccounts):
    """Keys resolved through STS ``GetCallerIdentity`` at ``endpoint_url`` (moto server),
    once each (cached; concurrent requests with a new key ask once)."""

    def __init__(self, endpoint_url: str, *, keys: Mapping[str, str] | None = None) -> None:
        super().__init__(keys)
        self.endpoint_url = endpoint_url
        self.lookups = 0  # GetCallerIdentity calls made (tests check the cache)
        self._pending: dict[str, asyncio.Task[str]] = {}
        self._session: Any = None  # one aiobotocore session: its loaded models are reused

    async def account_of(self, access_key_id: str | None) -> str:
        if access_key_id is None:
            return DEFAULT_ACCOUNT_ID
        known = self.keys.get(access_key_id)
        if known is not None:
            return known
        task = self._pending.get(access_key_id)
        if task is None:
            task = asyncio.create_task(self._ask(access_key_id), name="STS GetCallerIdentity")
            self._pending[access_key_id] = task
        try:
            account = await asyncio.shield(task)
        finally:
            if task.done():
                self._pending.pop(access_key_id, None)
        self.keys[access_key_id] = account
        return account

    async def _ask(self, access_key_id: str) -> str:
        from aiobotocore.session import get_session  # noqa: PLC0415 - only with moto

        self.lookups += 1
        if self._session is None:
            self._session = get_session()
        try:
            async with self._session.create_client(
                "sts",
                region_name=STS_REGION,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=_ANY_SECRET,
            ) as sts:
                identity = await sts.get_caller_identity()
        except Exception as error:
            log.warning("account not resolved", access_key_id=access_key_id, error=repr(error))
            raise AccountNotResolved(access_key_id) from error
        account = str(identity["Account"])
        log.info("account resolved", access_key_id=access_key_id, account=account)
        return check_account_id(account)


__all__ = [
    "ACCOUNT_ID",
    "AccountNotResolved",
    "AccountResolver",
    "KnownAccounts",
    "StsAccounts",
    "access_key_of",
    "check_account_id",
]
