"""An in-process AWS Elastic Disaster Recovery simulator speaking DRS's rest-json protocol.

Point a real aiobotocore ``drs`` client at :func:`serve_drs_simulator`'s URL. The
region is taken from the SigV4 credential scope, as real DRS endpoints are
per region. Job state comes from :class:`~drs_poller.simulator.timelines.JobScript`
evaluated on the injected clock, so nothing here sleeps except the optional
``Faults.latency``.

Choices where real DRS leaves room (kept deliberately, tests rely on them):

* ``DescribeJobLogItems`` for an unknown job id answers 200 with no items; the
  operation's model lists no ResourceNotFoundException.
* Without ``maxResults`` a page holds up to :data:`DEFAULT_MAX_RESULTS` items;
  ``DrsSimulator(page_size=n)`` caps every page at ``n`` to force paging in tests.
* ``nextToken`` is opaque: urlsafe base64 of the offset and a digest of the
  operation and filters; reusing it with other filters is a ValidationException.
* Jobs are listed latest ``creationDateTime`` first, as the DescribeJobs API
  reference (and the operation's documentation in botocore's model) says: "The
  response is sorted by creationDataTime - latest date first"; a job whose
  ``created_at`` is still in the future does not exist yet.
* ``ListLaunchActions`` lists a source server's launch actions (shape
  ``LaunchAction``): those scripted with :meth:`DrsSimulator.set_launch_actions`, else
  the simulation inventory's (scenario file ``launchActions``). A source server known
  to neither is a ResourceNotFoundException (an operation error in the model); a
  launch configuration template id (``lct-``) has none. ``launch_actions_denied``
  answers AccessDeniedException, as for a task role without drs:ListLaunchActions.
* Request bodies are validated against the botocore model (lengths, patterns,
  ranges); unknown members are ignored.

Beyond the describes, the simulator also *runs* DRS (what ``drs-poller simulate`` serves):

* ``StartRecovery`` creates a job whose timeline comes from :class:`Simulation`
  (durations, per-server behaviours, failure rates) and checks :class:`Quotas` first:
  too many servers, active jobs or servers in active jobs is a 402
  ServiceQuotaExceededException; a source server already in an active job is a 409
  ConflictException. A source server the simulator does not know is accepted and treated
  as untagged (the rates decide its end).
* When a server launches, its recovery instance is created through the
  :class:`~drs_poller.simulator.instances.InstanceBackend` (EC2 RunInstances against
  moto, or made-up ids); that instance id is the recovery instance id, as in DRS.
  Creation happens before any request is answered, up to :data:`LAUNCH_LOOKAHEAD`
  seconds early, so no answer ever shows a launched server without its instance.
* ``TerminateRecoveryInstances`` terminates the instances, returns a TERMINATE job,
  marks the servers TERMINATED in a completed launch job, and drops the instances
  from DescribeRecoveryInstances. An id it does not know is a ValidationException;
  one whose launch job is still running is a ConflictException.
* ``DescribeSourceServers`` lists the simulation's inventory of the request's region,
  each server's scripted behaviour shown as the tag ``drs-sim:behaviour``. Its
  filters (shape ``DescribeSourceServersRequestFilters``) apply: ``sourceServerIDs``,
  ``hardwareId`` ("either an EC2 instance id, a VMware uuid or a mac address": each
  server has a made-up VMware uuid, shown as ``identificationHints.vmWareUuid``) and
  ``stagingAccountIDs`` (``stagingArea.stagingAccountID``, the request's account).

Accounts (DRS quotas are per account and region, so large fleets span many):

* A request is in the account of the access key id it is signed with, resolved by
  ``DrsSimulator.accounts`` (:mod:`drs_poller.simulator.accounts`: by hand, or through
  moto's STS ``GetCallerIdentity``); a key nobody resolves is
  :data:`~drs_poller.simulator.timelines.DEFAULT_ACCOUNT_ID`.
* Jobs, recovery instances, quotas and the call log are per (account, region), and ARNs
  carry the account: DescribeJobs in one account never shows another's jobs.
* Every account has the same inventory of source servers (the simulation's), so a
  source server id is busy in one account's active job without being busy in another's.
* Direct calls (``sim.start_recovery(region, body)``, ``sim.jobs(region)``, ...) act as
  the default account, or as another inside ``with sim.as_account("222233334444"):``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import hashlib
import inspect
import json
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from drs_poller.simulator.accounts import (
    AccountNotResolved,
    AccountResolver,
    KnownAccounts,
    StsAccounts,
    access_key_of,
    check_account_id,
)
from drs_poller.simulator.behaviour import PROFILE_TAG, Behaviour, Quotas, Simulation
from drs_poller.simulator.conformance import drs_service_model, shape_violations
from drs_poller.simulator.instances import DerivedInstances, InstanceBackend
from drs_poller.simulator.timelines import (
    DEFAULT_ACCOUNT_ID,
    JobScript,
    LaunchActionScript,
    ServerScript,
    ServerSnapshot,
    Snapshot,
    iso8601,
    launched_at,
    new_job_id,
    parse_iso8601,
    render_job,
    render_job_log,
    render_launch_action,
    render_recovery_instance,
)

if TYPE_CHECKING:
    from drs_poller.clock import Clock

DEFAULT_MAX_RESULTS = 1000
# Recovery instances are created this many seconds before their server shows LAUNCHED,
# so that a request answered a moment after the check still finds the instance.
LAUNCH_LOOKAHEAD = 1.0
# The simulated time a request is answered at, pinned when it arrives: the recovery
# instances due by then are created first, and every part of the answer is rendered at
# that one moment, however long creating them took (at ``--speed 600`` a 50 ms
# RunInstances is 30 simulated seconds, in which more servers would show LAUNCHED
# without their instance, which DRS never does).
_REQUEST_TIME: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "drs_simulator_request_time", default=None
)
# The account a request (or a direct call inside ``DrsSimulator.as_account``) acts in;
# None is the default account. Set the way ``_REQUEST_TIME`` is, for the request's life.
_ACCOUNT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "drs_simulator_account", default=None
)
# Made-up quota codes in DRS's style; real DRS names its own in the Service Quotas console.
QUOTA_CODES = {
    "servers_per_job": "L-DRS-SERVERS-PER-JOB",
    "concurrent_jobs": "L-DRS-CONCURRENT-JOBS",
    "servers_in_jobs": "L-DRS-SERVERS-IN-ACTIVE-JOBS",
}
log = structlog.get_logger("drs_poller.simulator")
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]+)/")


class RecoveryInstancesNotCreated(Exception):  # noqa: N818 - a state, not a mistake
    """The recovery instances of servers that launch by now could not be created (the
    EC2 backend failed); answering would show them LAUNCHED without an instance."""


class DrsError(Exception):
    """A DRS error response: HTTP status, ``x-amzn-ErrorType`` code and JSON body fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.body: dict[str, Any] = {"message": message, **fields}
        self.headers = headers or {}


def validation_error(
    message: str, *, reason: str = "fieldValidationFailed", fields: Iterable[str] = ()
) -> DrsError:
    field_list = [{"name": name, "message": message} for name in fields]
    extra: dict[str, Any] = {"fieldList": field_list} if field_list else {}
    return DrsError(400, "ValidationException", message, reason=reason, **extra)


@dataclass
class Faults:
    """Failures injected before an operation runs. Mutate freely between requests."""

    throttle_next: int = 0
    throttle_rate: float = 0.0
    error_next: int = 0
    error_rate: float = 0.0
    retry_after_seconds: int | None = None
    latency: float = 0.0
    # None: every operation is subject to faults; otherwise only the ones named.
    operations: frozenset[str] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311 - fault dice, not crypto

    def applies_to(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations

    def draw(self, operation: str) -> DrsError | None:
        """The fault for this request, consuming one ``*_next`` or rolling the rates."""
        if not self.applies_to(operation):
            return None
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return self._throttle()
        if self.error_next > 0:
            self.error_next -= 1
            return self.internal_error()
        if self.throttle_rate and self.rng.random() < self.throttle_rate:
            return self._throttle()
        if self.error_rate and self.rng.random() < self.error_rate:
            return self.internal_error()
        return None

    def _retry_headers(self) -> dict[str, str]:
        if self.retry_after_seconds is None:
            return {}
        return {"Retry-After": str(self.retry_after_seconds)}

    def _throttle(self) -> DrsError:
        return DrsError(
            429,
            "ThrottlingException",
            "Rate exceeded",
            headers=self._retry_headers(),
            serviceCode="drs",
        )

    def internal_error(self) -> DrsError:
        return DrsError(
            500,
            "InternalServerException",
            "An internal error occurred",
            headers=self._retry_headers(),
        )


@dataclass(frozen=True)
class CallRecord:
    operation: str
    region: str | None
    at: float
    # How many ids the request filtered on (jobIDs / recoveryInstanceIDs); None: no id filter.
    ids_count: int | None
    status: int
    # The DRS jobs the request asked about (by job id, or through their recovery instances).
    job_ids: tuple[str, ...] = ()
    # The account the request was signed in (its access key id's).
    account: str = DEFAULT_ACCOUNT_ID


Handler = Callable[
    ["DrsSimulator", str, dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]
]


def quota_exceeded(quota: str, message: str, *, resource_type: str) -> DrsError:
    error = DrsError(
        402,
        "ServiceQuotaExceededException",
        message,
        quotaCode=QUOTA_CODES[quota],
        serviceCode="drs",
        resourceType=resource_type,
    )
    error.body["code"] = "SERVICE_QUOTA_EXCEEDED"  # a body member named like DrsError's own
    return error


def conflict(message: str, *, resource_id: str, resource_type: str) -> DrsError:
    error = DrsError(
        409, "ConflictException", message, resourceId=resource_id, resourceType=resource_type
    )
    error.body["code"] = "CONFLICT"
    return error


class DrsSimulator:
    def __init__(
        self,
        *,
        clock: Clock,
        faults: Faults | None = None,
        page_size: int | None = None,
        simulation: Simulation | None = None,
        quotas: Quotas | None = Quotas(),  # noqa: B008 - frozen, so sharing it is safe
        instances: InstanceBackend | None = None,
        accounts: AccountResolver | None = None,
    ) -> None:
        self.clock = clock
        self.faults = faults or Faults()
        self.page_size = page_size
        self.simulation = simulation or Simulation()
        self.quotas = quotas  # None: no quotas (``simulate --no-quotas``)
        self.instances: InstanceBackend = instances or DerivedInstances()
        # Whose a request is (the access key id it is signed with).
        self.accounts: AccountResolver = accounts or KnownAccounts()
        # Quotas of accounts whose quotas differ from ``quotas`` (None: no quotas there).
        self.account_quotas: dict[str, Quotas | None] = {}
        # Keyed (account, region, job id).
        self._jobs: dict[tuple[str, str, str], JobScript] = {}
        # Recovery instances outlive their job record, as in DRS, so they are kept apart;
        # keyed (account, region, recovery instance id).
        self._instances: dict[tuple[str, str, str], tuple[JobScript, ServerScript]] = {}
        self._calls: list[CallRecord] = []
        # StartRecovery jobs' servers that will launch and have no instance yet.
        self._awaiting_instances: dict[tuple[str, str, str], set[str]] = {}
        self._launch_lock = asyncio.Lock()
        self._job_ids = random.Random(f"job-ids/{self.simulation.seed}")  # noqa: S311 - ids
        # Scripted launch actions per source server (ListLaunchActions), over the inventory.
        self._launch_actions: dict[str, tuple[LaunchActionScript, ...]] = {}
        self.launch_actions_denied = False  # ListLaunchActions answers AccessDeniedException
        # Source servers whose launch configuration has post-launch actions deactivated
        # (GetLaunchConfiguration ``postLaunchEnabled`` false): DRS runs none of them.
        self._post_launch_disabled: set[str] = set()

    def set_launch_actions(
        self, source_server_id: str, actions: Iterable[LaunchActionScript]
    ) -> None:
        """Script what ListLaunchActions lists for a source server, in every region."""
        self._launch_actions[source_server_id] = tuple(actions)

    def set_post_launch_enabled(self, source_server_id: str, *, enabled: bool) -> None:
        """Script GetLaunchConfiguration's ``postLaunchEnabled`` for a source server."""
        if enabled:
            self._post_launch_disabled.discard(source_server_id)
        else:
            self._post_launch_disabled.add(source_server_id)

    # ------------------------------------------------------------ accounts

    def account(self) -> str:
        """The account being acted in: the request's, or ``as_account``'s, else the
        default one."""
        return _ACCOUNT.get() or DEFAULT_ACCOUNT_ID

    @contextmanager
    def as_account(self, account: str) -> Iterator[None]:
        """Direct calls inside the block act in ``account`` (12 digits), as a request
        signed with that account's credentials would."""
        token = _ACCOUNT.set(check_account_id(account))
        try:
            yield
        finally:
            _ACCOUNT.reset(token)

    def quotas_of(self, account: str) -> Quotas | None:
        """The quotas of each of ``account``'s regions (``account_quotas``, else ``quotas``)."""
        return self.account_quotas.get(account, self.quotas)

    def resolve_accounts_with(self, sts_endpoint_url: str) -> None:
        """Resolve access keys through STS at ``sts_endpoint_url`` (moto server) from now on,
        keeping the keys mapped by hand so far."""
        known = self.accounts.keys if isinstance(self.accounts, KnownAccounts) else {}
        self.accounts = StsAccounts(sts_endpoint_url, keys=known)

    def _key(self, region: str, ident: str) -> tuple[str, str, str]:
        return (self.account(), region, ident)

    # ------------------------------------------------------------ state

    def add_job(self, script: JobScript) -> None:
        """Add a scripted job, in the script's ``account_id``."""
        key = (script.account_id, script.region, script.job_id)
        if key in self._jobs:
            raise ValueError(f"job {script.job_id} already exists in {script.region}")
        self._jobs[key] = script
        for server in script.servers:
            if server.recovery_instance_id is not None:
                instance = (script.account_id, script.region, server.recovery_instance_id)
                self._instances[instance] = (script, server)

    def remove_job(self, region: str, job_id: str) -> None:
        """DRS forgetting a job: it vanishes from DescribeJobs; its recovery instances stay."""
        del self._jobs[self._key(region, job_id)]

    def remove_recovery_instance(self, region: str, recovery_instance_id: str) -> None:
        del self._instances[self._key(region, recovery_instance_id)]

    def active_jobs(self, region: str, now: float) -> list[JobScript]:
        """Jobs that exist and have not COMPLETED: what DRS's quotas count."""
        return [
            script
            for script in self.jobs(region)
            if script.created_at <= now and script.state_at(now).job_status != "COMPLETED"
        ]

    def recovery_instance_ids(self, region: str) -> list[str]:
        account = self.account()
        return sorted(
            instance
            for (owner, where, instance) in self._instances
            if owner == account and where == region
        )

    def job_ids_asked(self, operation: str, region: str | None, body: Any) -> tuple[str, ...]:
        """The jobs a request is about, for per-execution call counts."""
        if not isinstance(body, dict):
            return ()
        raw_filters = body.get("filters")
        filters: dict[str, Any] = raw_filters if isinstance(raw_filters, dict) else {}
        if operation == "DescribeJobs" and isinstance(filters.get("jobIDs"), list):
            return tuple(str(job) for job in filters["jobIDs"])
        if operation == "DescribeJobLogItems" and isinstance(body.get("jobID"), str):
            return (body["jobID"],)
        if operation == "DescribeRecoveryInstances" and isinstance(
            filters.get("recoveryInstanceIDs"), list
        ):
            found = (
                self._instances.get(self._key(region or "", str(instance)))
                for instance in filters["recoveryInstanceIDs"]
            )
            return tuple(dict.fromkeys(entry[0].job_id for entry in found if entry is not None))
        return ()

    # ------------------------------------------------------------ recovery instances

    def now(self) -> float:
        """The simulated time to answer at: the request's pinned time (``_REQUEST_TIME``)
        inside a request, else the clock's."""
        pinned = _REQUEST_TIME.get()
        return self.clock.time() if pinned is None else pinned

    async def answer(
        self, handler: Handler, region: str, body: dict[str, Any], *, account: str | None = None
    ) -> Any:
        """``handler``'s answer at the request's time, pinned now, after the recovery
        instances due by then are created; in ``account`` (default: the one being acted
        in), pinned the same way."""
        now = self.clock.time()
        pinned = _REQUEST_TIME.set(now)
        acting = _ACCOUNT.set(account or self.account())
        try:
            try:
                await self.create_due_instances(now)
            except RecoveryInstancesNotCreated as error:
                # DRS would not answer with a LAUNCHED server whose instance does not
                # exist; a retryable 500 makes the caller ask again.
                raise self.faults.internal_error() from error
            result = handler(self, region, body)
            return await result if inspect.isawaitable(result) else result
        finally:
            _ACCOUNT.reset(acting)
            _REQUEST_TIME.reset(pinned)

    async def create_due_instances(self, at: float | None = None) -> int:
        """Create the recovery instances of servers that launch by ``at`` (default: now),
        plus the lookahead.

        Every account's, each in its own account. Returns how many were created; raises
        ``RecoveryInstancesNotCreated`` when the EC2 backend failed for an account-region
        (after trying every one; retried on the next call). Serialised: two requests
        arriving together must not launch the same server's instance twice.
        """
        if not self._awaiting_instances:
            return 0
        created = 0
        failed: list[str] = []
        async with self._launch_lock:
            soon = (self.clock.time() if at is None else at) + LAUNCH_LOOKAHEAD
            due: dict[tuple[str, str], list[tuple[tuple[str, str, str], str]]] = {}
            for key, waiting in list(self._awaiting_instances.items()):
                script = self._jobs.get(key)
                if script is None:
                    del self._awaiting_instances[key]
                    continue
                for server in script.servers:
                    sid = server.source_server_id
                    if sid in waiting and launched_at(script, server, soon) is not None:
                        due.setdefault(key[:2], []).append((key, sid))
            for (account, region), entries in due.items():
                try:
                    instance_ids = await self.instances.launch(
                        region, len(entries), account=account
                    )
                except Exception as error:  # noqa: BLE001 - retried on the next request
                    log.warning(
                        "recovery instances not created",
                        account=account,
                        region=region,
                        error=repr(error),
                    )
                    failed.append(f"{account}/{region}")
                    continue
                for (key, sid), instance_id in zip(entries, instance_ids, strict=True):
                    self._assign_instance(key, sid, instance_id)
                    created += 1
        if failed:
            raise RecoveryInstancesNotCreated(", ".join(sorted(failed)))
        return created

    def _assign_instance(self, key: tuple[str, str, str], sid: str, instance_id: str) -> None:
        script = self._jobs[key]
        servers = tuple(
            replace(server, recovery_instance_id=instance_id, ec2_instance_id=instance_id)
            if server.source_server_id == sid
            else server
            for server in script.servers
        )
        updated = replace(script, servers=servers)
        self._jobs[key] = updated
        for server in updated.servers:
            instance = (updated.account_id, updated.region, server.recovery_instance_id or "")
            # Existing entries follow the new script; the new instance joins them.
            if instance in self._instances or server.source_server_id == sid:
                self._instances[instance] = (updated, server)
        waiting = self._awaiting_instances[key]
        waiting.discard(sid)
        if not waiting:
            del self._awaiting_instances[key]
        log.info(
            "recovery instance launched",
            account=script.account_id,
            region=script.region,
            job_id=script.job_id,
            source_server_id=sid,
            recovery_instance_id=instance_id,
        )

    def jobs(self, region: str) -> list[JobScript]:
        """The jobs of ``region`` in the account being acted in, oldest first."""
        account = self.account()
        return sorted(
            (
                script
                for (owner, job_region, _), script in self._jobs.items()
                if owner == account and job_region == region
            ),
            key=lambda script: (script.created_at, script.job_id),
        )

    def launch_jobs(self) -> list[JobScript]:
        """Every LAUNCH job, all accounts and regions (the events publisher's watch list)."""
        return [script for script in self._jobs.values() if script.job_type == "LAUNCH"]

    def job(self, region: str, job_id: str) -> JobScript | None:
        return self._jobs.get(self._key(region, job_id))

    # ------------------------------------------------------------ call log

    @property
    def calls(self) -> list[CallRecord]:
        return list(self._calls)

    def count(
        self, operation: str, region: str | None = None, *, account: str | None = None
    ) -> int:
        """Calls of ``operation`` (in ``region``, in ``account``; None: any)."""
        return sum(
            1
            for call in self._calls
            if call.operation == operation
            and (region is None or call.region == region)
            and (account is None or call.account == account)
        )

    def reset_calls(self) -> None:
        self._calls.clear()

    def record(self, call: CallRecord) -> None:
        self._calls.append(call)

    # ------------------------------------------------------------ paging

    def page(
        self, items: list[dict[str, Any]], *, body: dict[str, Any], operation: str
    ) -> dict[str, Any]:
        limit = body.get("maxResults", DEFAULT_MAX_RESULTS)
        if self.page_size is not None:
            limit = min(limit, self.page_size)
        digest = _filter_digest(operation, body)
        offset = _decode_token(body["nextToken"], digest) if body.get("nextToken") else 0
        response: dict[str, Any] = {"items": items[offset : offset + limit]}
        if offset + limit < len(items):
            response["nextToken"] = _encode_token(offset + limit, digest)
        return response

    # ------------------------------------------------------------ operations

    def describe_jobs(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        filters = body.get("filters", {})
        wanted = set(filters["jobIDs"]) if filters.get("jobIDs") else None
        from_date = parse_iso8601(filters["fromDate"]) if "fromDate" in filters else None
        to_date = parse_iso8601(filters["toDate"]) if "toDate" in filters else None
        scripts = [
            script
            for script in self.jobs(region)
            if script.created_at <= now
            and (wanted is None or script.job_id in wanted)
            and (from_date is None or script.created_at >= from_date)
            and (to_date is None or script.created_at <= to_date)
        ]
        # DescribeJobs: "sorted by creationDataTime - latest date first" (API reference).
        scripts.sort(key=lambda script: (-script.created_at, script.job_id))
        items = [render_job(script, now) for script in scripts]
        return self.page(items, body=body, operation="DescribeJobs")

    def _launch_actions_of(self, region: str, resource: str) -> tuple[LaunchActionScript, ...]:
        if resource.startswith("lct-"):
            actions: tuple[LaunchActionScript, ...] | None = ()
        else:
            actions = self._launch_actions.get(resource)
            if actions is None:
                actions = self.simulation.launch_actions(region, resource)
        if actions is None:
            raise DrsError(
                404,
                "ResourceNotFoundException",
                f"Source server {resource} not found",
                resourceId=resource,
                resourceType="SOURCE_SERVER",
            )
        return actions

    def get_launch_configuration(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        """GetLaunchConfiguration (botocore shape ``LaunchConfiguration``); only
        ``postLaunchEnabled`` ("Whether we want to activate post-launch actions for the
        Source Server") is scripted, the rest is a plausible constant."""
        if self.launch_actions_denied:
            raise DrsError(
                403,
                "AccessDeniedException",
                "User is not authorized to perform: drs:GetLaunchConfiguration",
            )
        source_server_id = body["sourceServerID"]
        self._launch_actions_of(region, source_server_id)  # 404 for an unknown server
        return {
            "sourceServerID": source_server_id,
            "name": f"{source_server_id} launch configuration",
            "ec2LaunchTemplateID": "lt-"
            + hashlib.sha256(source_server_id.encode()).hexdigest()[:17],
            "launchDisposition": "STARTED",
            "copyPrivateIp": False,
            "copyTags": True,
            "licensing": {"osByol": False},
            "targetInstanceTypeRightSizingMethod": "BASIC",
            "postLaunchEnabled": source_server_id not in self._post_launch_disabled,
        }

    def list_launch_actions(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.launch_actions_denied:
            raise DrsError(
                403,
                "AccessDeniedException",
                "User is not authorized to perform: drs:ListLaunchActions",
            )
        resource = body["resourceId"]
        actions = self._launch_actions_of(region, resource)
        wanted = body.get("filters", {}).get("actionIds") or None
        items = [
            render_launch_action(region, resource, action, order)
            for order, action in enumerate(actions, start=2)  # LaunchActionOrder: min 2
        ]
        if wanted is not None:
            items = [item for item in items if item["actionId"] in wanted]
        return self.page(items, body=body, operation="ListLaunchActions")

    def describe_recovery_instances(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        filters = body.get("filters", {})
        wanted = set(filters["recoveryInstanceIDs"]) if filters.get("recoveryInstanceIDs") else None
        sources = set(filters["sourceServerIDs"]) if filters.get("sourceServerIDs") else None
        items = []
        account = self.account()
        for (owner, instance_region, instance_id), (script, server) in sorted(
            self._instances.items()
        ):
            if owner != account or instance_region != region:
                continue
            if wanted is not None and instance_id not in wanted:
                continue
            if sources is not None and server.source_server_id not in sources:
                continue
            rendered = render_recovery_instance(script, server, now)
            if rendered is not None:
                items.append(rendered)
        return self.page(items, body=body, operation="DescribeRecoveryInstances")

    def describe_job_log_items(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        script = self.job(region, body["jobID"])
        items = render_job_log(script, now) if script and script.created_at <= now else []
        return self.page(items, body=body, operation="DescribeJobLogItems")

    def start_recovery(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        server_ids = [entry["sourceServerID"] for entry in body["sourceServers"]]
        unique_ids = list(dict.fromkeys(server_ids))
        self._check_quotas(region, unique_ids, now)
        is_drill = bool(body.get("isDrill", False))
        tags = {str(k): str(v) for k, v in (body.get("tags") or {}).items()}
        simulation = self.simulation
        profile = simulation.profile(tags.get(PROFILE_TAG))
        behaviours = simulation.behaviours(region, unique_ids, profile=profile)
        account = self.account()
        script = JobScript(
            job_id=new_job_id(self._job_ids),
            region=region,
            account_id=account,
            is_drill=is_drill,
            created_at=now,
            servers=tuple(ServerScript(source_server_id=sid) for sid in unique_ids),
            timeline=simulation.timeline(region, behaviours, is_drill=is_drill, profile=profile),
            tags=tags,
            snapshot_seconds=simulation.snapshot_seconds(profile),
        )
        self._jobs[(account, region, script.job_id)] = script
        launching = {
            sid
            for sid, behaviour in behaviours.items()
            if behaviour not in {Behaviour.LAUNCH_FAILS, Behaviour.CONVERSION_STALLS}
        }
        if launching:
            self._awaiting_instances[(account, region, script.job_id)] = launching
        log.info(
            "job started",
            account=account,
            region=region,
            job_id=script.job_id,
            is_drill=is_drill,
            servers={sid: behaviour.value for sid, behaviour in behaviours.items()},
        )
        return {"job": render_job(script, now)}

    def _check_quotas(self, region: str, server_ids: list[str], now: float) -> None:
        """The account being acted in's quotas in ``region`` (DRS's are per account and
        region), counting only that account-region's active jobs."""
        quotas = self.quotas_of(self.account())
        if quotas is None:
            return
        if len(server_ids) > quotas.max_servers_per_job:
            raise quota_exceeded(
                "servers_per_job",
                f"A job may recover at most {quotas.max_servers_per_job} source servers "
                f"(asked for {len(server_ids)})",
                resource_type="SOURCE_SERVER",
            )
        active = self.active_jobs(region, now)
        if len(active) >= quotas.max_concurrent_jobs:
            raise quota_exceeded(
                "concurrent_jobs",
                f"At most {quotas.max_concurrent_jobs} jobs may be active at once "
                f"({len(active)} are)",
                resource_type="JOB",
            )
        busy = {server.source_server_id: script for script in active for server in script.servers}
        for sid in server_ids:
            if sid in busy:
                raise conflict(
                    f"Source server {sid} is already part of active job {busy[sid].job_id}",
                    resource_id=sid,
                    resource_type="SOURCE_SERVER",
                )
        in_jobs = sum(len(script.servers) for script in active)
        if in_jobs + len(server_ids) > quotas.max_servers_in_active_jobs:
            raise quota_exceeded(
                "servers_in_jobs",
                f"At most {quotas.max_servers_in_active_jobs} source servers may be in active "
                f"jobs at once ({in_jobs} are, {len(server_ids)} asked for)",
                resource_type="SOURCE_SERVER",
            )

    async def terminate_recovery_instances(
        self, region: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        now = self.now()
        account = self.account()
        wanted = list(dict.fromkeys(body["recoveryInstanceIDs"]))
        unknown = [
            instance for instance in wanted if (account, region, instance) not in self._instances
        ]
        if unknown:
            raise validation_error(
                f"Unknown recovery instances: {', '.join(unknown)}",
                reason="other",
                fields=["recoveryInstanceIDs"],
            )
        targets = [self._instances[(account, region, instance)] for instance in wanted]
        for script, _ in targets:
            current = self._jobs.get((account, region, script.job_id), script)
            if current.state_at(now).job_status != "COMPLETED":
                raise conflict(
                    f"Job {script.job_id} that launched these instances is still running",
                    resource_id=script.job_id,
                    resource_type="JOB",
                )
        await self.instances.terminate(region, wanted, account=account)
        for instance, (script, server) in zip(wanted, targets, strict=True):
            del self._instances[(account, region, instance)]
            self._mark_terminated(region, script.job_id, server.source_server_id, now)
        servers = tuple(server for _, server in targets)
        ends = now + self.simulation.terminate_seconds()
        terminate_job = JobScript(
            job_id=new_job_id(self._job_ids),
            region=region,
            account_id=account,
            is_drill=all(script.is_drill for script, _ in targets),
            created_at=now,
            servers=servers,
            timeline=(
                Snapshot(0.0, "PENDING"),
                Snapshot(
                    ends - now,
                    "COMPLETED",
                    {s.source_server_id: ServerSnapshot("TERMINATED") for s in servers},
                ),
            ),
            job_type="TERMINATE",
        )
        # Stored directly: add_job would index the terminated instances again.
        self._jobs[(account, region, terminate_job.job_id)] = terminate_job
        log.info(
            "recovery instances terminated",
            account=account,
            region=region,
            job_id=terminate_job.job_id,
            recovery_instance_ids=wanted,
        )
        return {"job": render_job(terminate_job, now)}

    def _mark_terminated(self, region: str, job_id: str, sid: str, now: float) -> None:
        """The launch job shows the server TERMINATED from now on (its timeline is done)."""
        key = self._key(region, job_id)
        script = self._jobs.get(key)
        if script is None:
            return
        current = script.state_at(now)
        servers = dict(current.servers)
        servers[sid] = ServerSnapshot("TERMINATED", current.server(sid).runs)
        at = max(now - script.created_at, script.timeline[-1].at if script.timeline else 0.0)
        self._jobs[key] = replace(
            script, timeline=(*script.timeline, Snapshot(at, current.job_status, servers))
        )

    def describe_source_servers(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        filters = body.get("filters", {})
        wanted = set(filters["sourceServerIDs"]) if filters.get("sourceServerIDs") else None
        hardware = filters.get("hardwareId")
        staging = set(filters["stagingAccountIDs"]) if filters.get("stagingAccountIDs") else None
        account = self.account()
        if staging is not None and account not in staging:
            return self.page([], body=body, operation="DescribeSourceServers")
        last_jobs: dict[str, JobScript] = {}
        for script in self.jobs(region):
            if script.job_type == "LAUNCH" and script.created_at <= now:
                for server in script.servers:
                    last_jobs[server.source_server_id] = script
        items = []
        for source in self.simulation.source_servers(region):
            sid = source.source_server_id
            if wanted is not None and sid not in wanted:
                continue
            if hardware is not None and hardware != vmware_uuid(sid):
                continue
            rendered: dict[str, Any] = {
                "sourceServerID": sid,
                "arn": f"arn:aws:drs:{region}:{account}:source-server/{sid}",
                "tags": source.visible_tags(),
                "lastLaunchResult": _last_launch_result(last_jobs.get(sid), sid, now),
                "lifeCycle": {"addedToServiceDateTime": iso8601(now - 30 * 86_400)},
                "dataReplicationInfo": {"dataReplicationState": "CONTINUOUS"},
                "replicationDirection": "FAILOVER",
                "stagingArea": {"status": "NOT_EXTENDED", "stagingAccountID": account},
                "sourceProperties": {
                    "identificationHints": {
                        "hostname": source.hostname,
                        "vmWareUuid": vmware_uuid(sid),
                    },
                    "recommendedInstanceType": "m5.large",
                },
            }
            items.append(rendered)
        return self.page(items, body=body, operation="DescribeSourceServers")


def vmware_uuid(source_server_id: str) -> str:
    """A source server's made-up hardware id (DescribeSourceServers' hardwareId filter)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"drs-sim/hardware/{source_server_id}"))


def _last_launch_result(script: JobScript | None, sid: str, now: float) -> str:
    if script is None:
        return "NOT_STARTED"
    status = script.state_at(now).server(sid).launch_status
    if status in {"LAUNCHED", "TERMINATED"}:
        return "SUCCEEDED"
    return "FAILED" if status == "FAILED" else "PENDING"


# The dispatch table: an operation is one method and one line here; any other answers
# 404 UnknownOperationException.
OPERATIONS: dict[str, Handler] = {
    "DescribeJobs": DrsSimulator.describe_jobs,
    "DescribeRecoveryInstances": DrsSimulator.describe_recovery_instances,
    "DescribeJobLogItems": DrsSimulator.describe_job_log_items,
    "DescribeSourceServers": DrsSimulator.describe_source_servers,
    "ListLaunchActions": DrsSimulator.list_launch_actions,
    "GetLaunchConfiguration": DrsSimulator.get_launch_configuration,
    "StartRecovery": DrsSimulator.start_recovery,
    "TerminateRecoveryInstances": DrsSimulator.terminate_recovery_instances,
}


# ---------------------------------------------------------------- tokens


def _filter_digest(operation: str, body: dict[str, Any]) -> str:
    scope = {
        "operation": operation,
        "filters": body.get("filters"),
        "jobID": body.get("jobID"),
        "resourceId": body.get("resourceId"),
    }
    return hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()[:16]


def _encode_token(offset: int, digest: str) -> str:
    raw = json.dumps({"offset": offset, "scope": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, digest: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = decoded["offset"]
        scope = decoded["scope"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise validation_error("Invalid nextToken", fields=["nextToken"]) from error
    if not isinstance(offset, int) or offset < 0 or scope != digest:
        raise validation_error("nextToken does not belong to this request", fields=["nextToken"])
    return offset


# ---------------------------------------------------------------- HTTP


def _region_of(request: web.Request) -> str | None:
    match = _CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
    return match.group("region") if match else None


def _ids_count(body: Any) -> int | None:
    filters = body.get("filters") if isinstance(body, dict) else None
    if not isinstance(filters, dict):
        return None
    for key in ("jobIDs", "recoveryInstanceIDs"):
        ids = filters.get(key)
        if isinstance(ids, list):
            return len(ids)
    return None


_UNPARSEABLE = object()


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return {}  # botocore sends no body when a call has no parameters
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _UNPARSEABLE


# Bounds an error body when a request breaks many rules (say 1001 malformed ids).
_MAX_REPORTED_VIOLATIONS = 10


def _validate_request(operation: str, body: Any) -> dict[str, Any]:
    if body is _UNPARSEABLE or not isinstance(body, dict):
        raise DrsError(400, "SerializationException", "Request body is not a JSON object")
    input_shape = drs_service_model().operation_model(operation).input_shape
    if input_shape is not None:
        problems = shape_violations(input_shape, body, allow_unknown_members=True)
        if problems:
            shown = problems[:_MAX_REPORTED_VIOLATIONS]
            raise DrsError(
                400,
                "ValidationException",
                "; ".join(str(problem) for problem in shown),
                reason="fieldValidationFailed",
                fieldList=[
                    {"name": problem.path.removeprefix("$."), "message": problem.message}
                    for problem in shown
                ],
            )
    return body


async def _account_of(simulator: DrsSimulator, request: web.Request) -> str:
    """The account of the access key id the request is signed with; a retryable 500 when
    it cannot be told (STS unreachable)."""
    try:
        return await simulator.accounts.account_of(
            access_key_of(request.headers.get("Authorization", ""))
        )
    except AccountNotResolved as error:
        raise simulator.faults.internal_error() from error


def _error_response(error: DrsError, request_id: str) -> web.Response:
    headers = {"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id, **error.headers}
    return web.json_response(error.body, status=error.status, headers=headers)


def build_app(simulator: DrsSimulator) -> web.Application:
    async def dispatch(request: web.Request) -> web.Response:
        operation = request.path.strip("/")
        region = _region_of(request)
        raw_body = _parse_body(await request.read())
        request_id = str(uuid.uuid4())
        account: str | None = None
        try:
            account = await _account_of(simulator, request)
            response = await _handle(request.method, operation, region, raw_body, account)
        except DrsError as error:
            response = _error_response(error, request_id)
        else:
            response.headers["x-amzn-RequestId"] = request_id
        with simulator.as_account(account or DEFAULT_ACCOUNT_ID):
            job_ids = simulator.job_ids_asked(operation, region, raw_body)
        simulator.record(
            CallRecord(
                operation=operation,
                region=region,
                at=simulator.clock.time(),
                ids_count=_ids_count(raw_body),
                status=response.status,
                job_ids=job_ids,
                account=account or DEFAULT_ACCOUNT_ID,
            )
        )
        if simulator.faults.latency > 0:
            await asyncio.sleep(simulator.faults.latency)
        return response

    async def _handle(
        method: str, operation: str, region: str | None, raw_body: Any, account: str
    ) -> web.Response:
        handler = OPERATIONS.get(operation)
        if method != "POST" or handler is None:
            raise DrsError(404, "UnknownOperationException", f"Unknown operation {operation!r}")
        if region is None:
            raise DrsError(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        fault = simulator.faults.draw(operation)
        if fault is not None:
            raise fault
        body = _validate_request(operation, raw_body)
        result = await simulator.answer(handler, region, body, account=account)
        status = drs_service_model().operation_model(operation).http.get("responseCode", 200)
        return web.json_response(result, status=status)

    app = web.Application()
    app.router.add_route("*", "/{operation:.*}", dispatch)
    return app


@asynccontextmanager
async def serve_drs_simulator(
    simulator: DrsSimulator, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the simulator over HTTP; yields its endpoint URL (port 0 picks a free port)."""
    # A simulator does not drain requests on the way out: a test that injected a long
    # latency must not wait it out in teardown.
    runner = web.AppRunner(build_app(simulator), access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()


__all__ = [
    "DEFAULT_MAX_RESULTS",
    "LAUNCH_LOOKAHEAD",
    "OPERATIONS",
    "CallRecord",
    "DrsError",
    "DrsSimulator",
    "Faults",
    "RecoveryInstancesNotCreated",
    "build_app",
    "serve_drs_simulator",
]
