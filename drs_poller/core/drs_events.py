"""DRS events, as EventBridge delivers them to an SQS queue: parsed, or rejected with a reason.

An EventBridge rule with an SQS target puts the event's envelope, as JSON, in the message
body (docs/events.md)::

    {"version": "0", "id": "...", "detail-type": "DRS Source Server Launch Result",
     "source": "aws.drs", "account": "111122223333", "time": "2026-12-05T04:50:00Z",
     "region": "us-east-1",
     "resources": ["arn:aws:drs:us-east-1:111122223333:source-server/s-1234567890abcdef0"],
     "detail": {"state": "DRILL_LAUNCH_SUCCEEDED", "job-id": "drsjob-1234567890abcdef0"}}

The detail-types are the ones the EventBridge events reference lists for Elastic Disaster
Recovery (source ``aws.drs``, best-effort delivery). The daemon reads only what routes the
event to executions: the source servers named in ``resources`` (source-server ARNs, or bare
ids), the job id in ``detail`` when there is one, the region and the account. Everything
else is kept as it came, for the logs. Any value out of shape degrades its own field (to
None, or out of the tuple); only an envelope the daemon cannot read at all, or an event
that is not a DRS event it knows, is rejected, with the reason counted.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from drs_poller.core.places import ACCOUNT_ID, Place

DRS_SOURCE: Final = "aws.drs"
LAUNCH_RESULT: Final = "DRS Source Server Launch Result"
# The EventBridge events reference for Elastic Disaster Recovery ("DRS sends the following
# events directly to EventBridge"). Each can concern a tracked execution's source servers.
DETAIL_TYPES: Final = frozenset(
    {
        LAUNCH_RESULT,
        "DRS Source Server Data Replication Stalled Change",
        "DRS PIT Snapshot Taken",
        "DRS Recovery Instance Failback State Change",
        "DRS Source Network Protection Status Change",
        "DRS Source Network Recovery Result",
    }
)

SOURCE_SERVER_ID: Final = re.compile(r"^s-[0-9a-zA-Z]{17}$")
JOB_ID: Final = re.compile(r"^drsjob-[0-9a-zA-Z]{17}$")
REGION: Final = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
# arn:<partition>:drs:<region>:<account>:source-server/<id>
_SOURCE_SERVER_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:drs:(?P<region>[a-z0-9-]*):(?P<account>[0-9]*):source-server/(?P<id>[^/]+)$"
)
# Where a job id may sit in ``detail``: the MGN/DRS family names it ``job-id``.
_JOB_ID_KEYS: Final = ("job-id", "jobID", "jobId", "job_id")
MAX_BODY: Final = 256 * 1024  # SQS's own largest message


class Rejection(StrEnum):
    """Why a message is not a DRS event the daemon can act on (the metric's ``reason``)."""

    MALFORMED_JSON = "malformed_json"  # not JSON, or too big
    NOT_AN_EVENT = "not_an_event"  # JSON, but not an EventBridge envelope
    UNKNOWN_SOURCE = "unknown_source"  # an event, but not from aws.drs
    UNKNOWN_DETAIL_TYPE = "unknown_detail_type"  # from aws.drs, a detail-type not modelled


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Rejection
    why: str  # for the log line, short


@dataclass(frozen=True, slots=True)
class DrsEvent:
    detail_type: str
    event_id: str | None
    time: float | None  # epoch seconds of the envelope's ``time``; None if unreadable
    region: str | None
    account: str | None
    source_servers: tuple[str, ...]  # source server ids (from ARNs in ``resources``)
    job_id: str | None
    state: str | None  # ``detail.state`` as DRS sent it (not interpreted)
    # The region of each source server: its ARN's, else the envelope's. They agree on
    # AWS; a bus that re-puts a forwarded event in its own region (moto) keeps the ARN's.
    server_regions: tuple[str | None, ...] = ()

    @property
    def routable(self) -> bool:
        """Whether anything in the event can name an execution."""
        return bool(self.source_servers or self.job_id)


def parse_event(body: str | bytes) -> DrsEvent | Rejected:
    """The DRS event in an SQS message body (an EventBridge envelope), or why not."""
    envelope = _envelope(body)
    if isinstance(envelope, Rejected):
        return envelope
    detail_type: str = envelope["detail-type"]
    region = _matching(envelope.get("region"), REGION)
    account = _matching(envelope.get("account"), ACCOUNT_ID)
    detail = envelope.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    state = detail.get("state")
    event_id = envelope.get("id")
    return DrsEvent(
        detail_type=detail_type,
        event_id=event_id[:128] if isinstance(event_id, str) else None,
        time=parse_time(envelope.get("time")),
        region=region,
        account=account,
        **_source_servers(envelope.get("resources"), region=region, account=account),
        job_id=_job_id(detail),
        state=state[:64] if isinstance(state, str) else None,
    )


def _envelope(body: str | bytes) -> dict[str, Any] | Rejected:
    """The envelope of a DRS event of a known detail-type, or why not."""
    try:
        if len(body) > MAX_BODY:
            raise ValueError("body larger than an SQS message")  # noqa: TRY301 - one rejection
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Rejected(Rejection.MALFORMED_JSON, "body is not JSON, or too large")
    if not isinstance(envelope, dict):
        return Rejected(Rejection.NOT_AN_EVENT, "body is not a JSON object")
    source, detail_type = envelope.get("source"), envelope.get("detail-type")
    if not isinstance(source, str) or not isinstance(detail_type, str):
        return Rejected(Rejection.NOT_AN_EVENT, "no source or detail-type")
    if source != DRS_SOURCE:
        return Rejected(Rejection.UNKNOWN_SOURCE, f"source {source[:64]!r}")
    if detail_type not in DETAIL_TYPES:
        return Rejected(Rejection.UNKNOWN_DETAIL_TYPE, f"detail-type {detail_type[:64]!r}")
    return envelope


def parse_time(value: Any) -> float | None:
    """EventBridge's ``time`` (ISO 8601, UTC, ``Z``) as epoch seconds; None if unreadable."""
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.removesuffix("Z") + "+00:00")
    except ValueError:
        return None
    return parsed.timestamp()


def _matching(value: Any, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.match(value) else None


def _source_servers(
    resources: Any, *, region: str | None, account: str | None
) -> dict[str, tuple[Any, ...]]:
    """Source server ids named in ``resources`` (a source-server ARN, or a bare id), each
    with its region (the ARN's, else the event's). An ARN of another account than the
    event's is skipped; anything else that is not a source server is too."""
    found: dict[str, str | None] = {}
    for resource in resources[:100] if isinstance(resources, list) else ():
        if not isinstance(resource, str):
            continue
        if SOURCE_SERVER_ID.match(resource):
            found.setdefault(resource, region)
            continue
        arn = _SOURCE_SERVER_ARN.match(resource)
        if arn is None or not SOURCE_SERVER_ID.match(arn["id"]):
            continue
        if account and arn["account"] and arn["account"] != account:
            continue  # another account's server of the same id: not ours
        found.setdefault(arn["id"], arn["region"] or region)
    return {"source_servers": tuple(found), "server_regions": tuple(found.values())}


def _job_id(detail: dict[str, Any]) -> str | None:
    for key in _JOB_ID_KEYS:
        value = detail.get(key)
        if isinstance(value, str) and JOB_ID.match(value):
            return value
    return None


def item_routes(item: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """What a DRS event can name an execution by: (wave place, source server id) and
    (wave place, job id) for every server of an execution item. The place is written as
    :attr:`Place.key`: the Region for the daemon's own account, ``<AccountId>/<Region>``
    for a wave with an AccountId (``""`` for an unreadable Region, ``<AccountId>/`` with
    one). An item out of shape yields what can be read of it."""
    routes: set[tuple[str, str]] = set()
    waves = item.get("Waves")
    if not isinstance(waves, list):
        return frozenset()
    for wave in waves:
        if not isinstance(wave, Mapping):
            continue
        region = wave.get("Region")
        account = wave.get("AccountId")
        place = Place(
            account if isinstance(account, str) and ACCOUNT_ID.match(account) else None,
            region if isinstance(region, str) else "",
        ).key
        servers = wave.get("Servers")
        if not isinstance(servers, list):
            continue
        for server in servers:
            if not isinstance(server, Mapping):
                continue
            for key in ("SourceServerId", "RecoveryJobId"):
                value = server.get(key)
                if isinstance(value, str) and value:
                    routes.add((place, value))
    return frozenset(routes)


def event_routes(event: DrsEvent) -> tuple[str, ...]:
    """The ids an event can name executions by: its source servers, then its job."""
    return (*event.source_servers, *((event.job_id,) if event.job_id else ()))


def _accounts_of(event: DrsEvent, own_account: str | None) -> tuple[str | None, ...]:
    """The wave accounts (None: the daemon's own) an event of ``event.account`` may
    concern: its own account's waves only; the daemon's own waves too when the event is
    of the daemon's account, names none, or the daemon's account is not known."""
    if event.account is None:
        return (None,)
    if own_account is None or event.account == own_account:
        return (None, event.account)
    return (event.account,)


def concerns(
    event: DrsEvent, routes: frozenset[tuple[str, str]], *, own_account: str | None = None
) -> bool:
    """Whether an execution with ``routes`` (:func:`item_routes`) is one the event
    concerns: it names one of its servers (in that server's place) or its job (in the
    event's place); any region of the account when the one to check is unreadable, or
    the wave's. An event of account B never concerns a wave of account A."""
    accounts = _accounts_of(event, own_account)
    regions = (*event.server_regions, *((event.region,) if event.job_id else ()))
    for name, region in zip(event_routes(event), regions, strict=False):
        if region is None:
            if any(found == name and _account_of(place) in accounts for place, found in routes):
                return True
            continue
        for account in accounts:
            if (Place(account, region).key, name) in routes or (
                Place(account, "").key,
                name,
            ) in routes:
                return True
    return False


def _account_of(place_key: str) -> str | None:
    account, slash, _ = place_key.partition("/")
    return account if slash else None
