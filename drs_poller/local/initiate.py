"""``drs-poller initiate``: starts executions the way the API that starts them would.

For each planned execution: list the source servers (DescribeSourceServers), pick the
servers each wave needs by their ``drs-sim:behaviour`` tag, call StartRecovery for the
waves that start with the execution, then write the POLLING item (contract §1). A later
wave is started once the wave before it is final: StartRecovery first, then its job
ids go into the item with a path-level conditional UpdateItem, so nothing the daemon
wrote is rewritten, and nothing is written once the execution left POLLING.

A wave in another AWS account (``AccountId``) is started in that account: with
credentials from STS ``AssumeRole`` into ``arn:aws:iam::<AccountId>:role/<role>``
(moto's STS in the local stack, which does not require the role to exist), as an
orchestrator that starts DRS jobs in member accounts does.

DRS's quotas are respected, not worked around: a ServiceQuotaExceededException or
ConflictException (a source server still in an active job) is waited out and the
same StartRecovery tried again; so are throttling and 5xx. Any other error fails the
wave's servers to start (``Status FAILED`` with ``Error`` and no ``RecoveryJobId``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self

from botocore.exceptions import ClientError

from drs_poller.clients.dynamodb import item_key, to_python, to_wire
from drs_poller.clients.paging import paginate
from drs_poller.core.models import FINAL_STATUSES, ExecutionStatus
from drs_poller.local.items import ExecutionSpec, ServerSpec, WaveSpec, execution_item
from drs_poller.simulator.behaviour import BEHAVIOUR_TAG, Behaviour

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import aioboto3
    from types_aiobotocore_dynamodb.client import DynamoDBClient

    from drs_poller.local.scenarios import ExecutionPlan

# Errors that say "not now": DRS quotas, a busy source server, throttling, 5xx.
WAIT_AND_RETRY = frozenset(
    {
        "ServiceQuotaExceededException",
        "ConflictException",
        "ThrottlingException",
        "InternalServerException",
    }
)
EXECUTION_TAG = "drs-poller:execution"
WAVE_TAG = "drs-poller:wave"
# The role the initiator assumes in another account to start DRS jobs there.
INITIATOR_ROLE_NAME = "drs-poller-initiator"


class NotEnoughSourceServers(Exception):  # noqa: N818 - a finding about the inventory
    pass


def place_key(region: str, account: str | None = None) -> str:
    """An inventory's key: the region, ``<AccountId>/<Region>`` in another account (each
    account has its own source servers)."""
    return region if account is None else f"{account}/{region}"


@dataclass
class Inventory:
    """Source servers by place (:func:`place_key`) and behaviour; handed out round robin."""

    pools: dict[str, dict[Behaviour | None, list[str]]] = field(default_factory=dict)
    _cursors: dict[tuple[str, Behaviour | None], Iterator[str]] = field(default_factory=dict)

    def take(self, region: str, need: Behaviour | None) -> str:
        key = (region, need)
        if key not in self._cursors:
            pool = self.pools.get(region, {}).get(need, [])
            if not pool:
                wanted = need.value if need else "untagged"
                raise NotEnoughSourceServers(
                    f"no {wanted} source server in {region} (DescribeSourceServers found "
                    f"{sum(len(p) for p in self.pools.get(region, {}).values())})"
                )
            self._cursors[key] = itertools.cycle(pool)
        return next(self._cursors[key])


def behaviour_of(tags: Mapping[str, str]) -> Behaviour | None:
    """The behaviour tag, with "launches" counted as untagged (both simply launch)."""
    try:
        behaviour = Behaviour(tags.get(BEHAVIOUR_TAG, ""))
    except ValueError:
        return None
    return None if behaviour is Behaviour.LAUNCHES else behaviour


@dataclass
class StartedExecution:
    plan: ExecutionPlan
    server_ids: list[list[str]]  # per wave
    job_ids: list[str | None]  # per wave; None: not started (yet)
    written: bool = False
    start_time: float = 0.0


class Initiator:
    def __init__(
        self,
        *,
        session: aioboto3.Session,
        drs_endpoint_url: str | None,
        dynamodb: DynamoDBClient,
        table_name: str,
        speed: float,
        report: Callable[[str], None],
        watch_interval: float,
        sts_endpoint_url: str | None = None,
        account_role_name: str = INITIATOR_ROLE_NAME,
    ) -> None:
        self.session = session
        # Where roles in other accounts are assumed (waves with an AccountId only).
        self.sts_endpoint_url = sts_endpoint_url
        self.account_role_name = account_role_name
        self.drs_endpoint_url = drs_endpoint_url
        self.dynamodb = dynamodb
        self.table_name = table_name
        self.speed = speed
        self.report = report
        self.watch_interval = watch_interval
        # "Not now" answers are retried this often, and given up on after this long.
        self.retry_interval = max(0.2, 15.0 / speed)
        self.give_up_after = 3600.0 / speed
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str | None, str], Any] = {}
        self._sessions: dict[str, aioboto3.Session] = {}
        self.started: dict[str, StartedExecution] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def drs(self, region: str, account: str | None = None) -> Any:
        """A DRS client of ``region``, in ``account`` (None: the initiator's own)."""
        key = (account, region)
        if key not in self._clients:
            session = self.session if account is None else await self.session_in(account)
            self._clients[key] = await self._stack.enter_async_context(
                session.client("drs", region_name=region, endpoint_url=self.drs_endpoint_url)
            )
        return self._clients[key]

    async def session_in(self, account: str) -> aioboto3.Session:
        """A session with credentials assumed into ``account`` (once per account: the
        initiator starts its jobs within the credentials' hour)."""
        if account not in self._sessions:
            if self.sts_endpoint_url is None:
                raise ValueError(f"a wave in account {account} needs an STS endpoint")
            async with self.session.client("sts", endpoint_url=self.sts_endpoint_url) as sts:
                answer = await sts.assume_role(
                    RoleArn=f"arn:aws:iam::{account}:role/{self.account_role_name}",
                    RoleSessionName=INITIATOR_ROLE_NAME,
                )
            credentials = answer["Credentials"]
            self._sessions[account] = type(self.session)(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
                region_name=self.session.region_name,
            )
        return self._sessions[account]

    async def inventory(
        self,
        regions: tuple[str, ...],
        *,
        account: str | None = None,
        into: Inventory | None = None,
    ) -> Inventory:
        """The source servers of ``regions`` in ``account`` (None: the initiator's own),
        added to ``into`` (default: a new inventory)."""
        inventory = into or Inventory()
        for region in regions:
            drs = await self.drs(region, account)

            async def fetch(request: dict[str, Any], drs: Any = drs) -> dict[str, Any]:
                return dict(await drs.describe_source_servers(**request))

            pools: dict[Behaviour | None, list[str]] = {}
            async for page in paginate(
                fetch,
                {"maxResults": 200},
                what=f"DescribeSourceServers {region}",
                resume_with="nextToken",
                resume_from="nextToken",
            ):
                for server in page.get("items") or []:
                    behaviour = behaviour_of(server.get("tags") or {})
                    pools.setdefault(behaviour, []).append(server["sourceServerID"])
            inventory.pools[place_key(region, account)] = pools
        return inventory

    # ------------------------------------------------------------ StartRecovery

    async def start_job(
        self,
        region: str,
        server_ids: list[str],
        *,
        is_drill: bool,
        execution_id: str,
        wave: str,
        account: str | None = None,
    ) -> str:
        """StartRecovery (in ``account``; None: the initiator's own), waiting out quotas and
        conflicts; the job id, or ClientError."""
        drs = await self.drs(region, account)
        waited_since = time.monotonic()
        while True:
            try:
                response = await drs.start_recovery(
                    isDrill=is_drill,
                    sourceServers=[{"sourceServerID": sid} for sid in server_ids],
                    tags={EXECUTION_TAG: execution_id, WAVE_TAG: wave},
                )
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                waited = time.monotonic() - waited_since
                if code not in WAIT_AND_RETRY or waited > self.give_up_after:
                    raise
                self.report(f"{execution_id} {wave}: {code}, retrying StartRecovery")
                await asyncio.sleep(self.retry_interval)
                continue
            return str(response["job"]["jobID"])

    # ------------------------------------------------------------ executions

    async def run(self, plans: list[ExecutionPlan], *, started_at: float) -> None:
        places = dict.fromkeys(
            (wave.account_id, wave.region) for plan in plans for wave in plan.waves
        )
        inventory = Inventory()
        for account in dict.fromkeys(account for account, _ in places):
            regions = tuple(region for owner, region in places if owner == account)
            await self.inventory(regions, account=account, into=inventory)
        for plan in plans:
            self.started[plan.execution_id] = StartedExecution(
                plan=plan,
                server_ids=[
                    [
                        inventory.take(place_key(wave.region, wave.account_id), need)
                        for need in wave.needs
                    ]
                    for wave in plan.waves
                ],
                job_ids=[None] * len(plan.waves),
            )
        await asyncio.gather(
            *(self.run_execution(self.started[p.execution_id], started_at) for p in plans)
        )

    async def run_execution(self, execution: StartedExecution, started_at: float) -> None:
        plan = execution.plan
        await asyncio.sleep(max(0.0, started_at + plan.start_offset / self.speed - time.time()))
        execution.start_time = time.time()
        failures: dict[int, str] = {}
        first = [i for i, wave in enumerate(plan.waves) if wave.starts_with_execution]
        results = await asyncio.gather(
            *(self._start_wave_job(execution, index) for index in first), return_exceptions=True
        )
        for index, result in zip(first, results, strict=True):
            if isinstance(result, ClientError):
                failures[index] = f"StartRecovery failed: {result}"
            elif isinstance(result, BaseException):
                raise result
        await self._write_item(execution, failures)
        for index in plan.later_waves:
            if not await self._wait_for_final_wave(execution, index - 1):
                return
            await self.start_later_wave(execution, index)

    async def _start_wave_job(self, execution: StartedExecution, index: int) -> str:
        wave = execution.plan.waves[index]
        job_id = await self.start_job(
            wave.region,
            execution.server_ids[index],
            is_drill=wave.is_drill,
            execution_id=execution.plan.execution_id,
            wave=wave.name,
            account=wave.account_id,
        )
        execution.job_ids[index] = job_id
        return job_id

    async def _write_item(self, execution: StartedExecution, failures: Mapping[int, str]) -> None:
        plan = execution.plan
        spec = ExecutionSpec(
            execution_id=plan.execution_id,
            plan_id=plan.plan_id,
            execution_type=plan.execution_type,
            start_time=execution.start_time,
            waves=tuple(
                WaveSpec(
                    name=wave.name,
                    region=wave.region,
                    account_id=wave.account_id,
                    servers=tuple(
                        ServerSpec(
                            sid,
                            job_id=execution.job_ids[index],
                            failed_to_start=failures.get(index),
                        )
                        for sid in execution.server_ids[index]
                    ),
                )
                for index, wave in enumerate(plan.waves)
            ),
        )
        await self.dynamodb.put_item(
            TableName=self.table_name,
            Item={name: to_wire(value) for name, value in execution_item(spec).items()},
            ConditionExpression="attribute_not_exists(ExecutionId)",
        )
        execution.written = True
        jobs = ", ".join(job for job in execution.job_ids if job)
        self.report(f"{plan.execution_id} started ({plan.kind.value}; jobs {jobs or 'none'})")

    async def _wait_for_final_wave(self, execution: StartedExecution, index: int) -> bool:
        while True:
            item = await self.read(execution.plan)
            if item is None or item.get("Status") != ExecutionStatus.POLLING:
                status = None if item is None else item.get("Status")
                self.report(
                    f"{execution.plan.execution_id} left POLLING ({status}) before wave "
                    f"{index + 2} was started; leaving it alone"
                )
                return False
            if item["Waves"][index].get("Status") in FINAL_STATUSES:
                return True
            await asyncio.sleep(self.watch_interval)

    async def start_later_wave(self, execution: StartedExecution, index: int) -> None:
        plan = execution.plan
        try:
            job_id = await self._start_wave_job(execution, index)
        except ClientError as error:
            await self._fail_wave(execution, index, f"StartRecovery failed: {error}")
            return
        started_at = time.time()
        assignments = [f"Waves[{index}].#status = :in_progress", f"Waves[{index}].StartTime = :now"]
        for position in range(len(execution.server_ids[index])):
            server = f"Waves[{index}].Servers[{position}]"
            assignments += [f"{server}.RecoveryJobId = :job", f"{server}.LaunchTime = :now"]
        if await self._update_wave(
            plan,
            index,
            "SET " + ", ".join(assignments),
            {
                ":in_progress": to_wire("IN_PROGRESS"),
                ":now": to_wire(Decimal(f"{started_at:.3f}")),
                ":job": to_wire(job_id),
            },
        ):
            self.report(f"{plan.execution_id}: {plan.waves[index].name} started ({job_id})")

    async def _fail_wave(self, execution: StartedExecution, index: int, error: str) -> None:
        assignments = []
        for position in range(len(execution.server_ids[index])):
            server = f"Waves[{index}].Servers[{position}]"
            assignments += [f"{server}.#status = :failed", f"{server}.#error = :error"]
        await self._update_wave(
            execution.plan,
            index,
            "SET " + ", ".join(assignments),
            {":failed": to_wire("FAILED"), ":error": to_wire(error)},
            names={"#error": "Error"},
        )
        self.report(f"{execution.plan.execution_id}: wave {index + 1} failed to start: {error}")

    async def _update_wave(
        self,
        plan: ExecutionPlan,
        index: int,
        expression: str,
        values: dict[str, Any],
        *,
        names: Mapping[str, str] | None = None,
    ) -> bool:
        try:
            await self.dynamodb.update_item(
                TableName=self.table_name,
                Key=item_key((plan.execution_id, plan.plan_id)),
                UpdateExpression=expression,
                # Only while POLLING, and only once: a second start would re-point servers
                # the daemon may already be tracking.
                ConditionExpression=(
                    f"#status = :polling AND attribute_not_exists(Waves[{index}].Servers[0]"
                    ".RecoveryJobId)"
                ),
                ExpressionAttributeNames={"#status": "Status", **(names or {})},
                ExpressionAttributeValues={
                    ":polling": to_wire(ExecutionStatus.POLLING.value),
                    **values,
                },
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            self.report(
                f"{plan.execution_id}: wave {index + 1} not started (the item left POLLING "
                "or the wave was already started)"
            )
            return False
        return True

    async def read(self, plan: ExecutionPlan) -> dict[str, Any] | None:
        result = await self.dynamodb.get_item(
            TableName=self.table_name,
            Key=item_key((plan.execution_id, plan.plan_id)),
            ConsistentRead=True,
        )
        raw = result.get("Item")
        return to_python(raw) if raw else None

    async def wait_until_final(
        self, plans: list[ExecutionPlan], *, deadline: float
    ) -> dict[str, dict[str, Any] | None]:
        """Each execution's last item, once all are final or at ``deadline`` (monotonic)."""
        while True:
            items = {plan.execution_id: await self.read(plan) for plan in plans}
            done = all(
                item is not None and item.get("Status") in FINAL_STATUSES for item in items.values()
            )
            if done or time.monotonic() >= deadline:
                return items
            await asyncio.sleep(self.watch_interval)


__all__ = [
    "EXECUTION_TAG",
    "INITIATOR_ROLE_NAME",
    "WAIT_AND_RETRY",
    "WAVE_TAG",
    "Initiator",
    "Inventory",
    "NotEnoughSourceServers",
    "StartedExecution",
    "behaviour_of",
    "place_key",
]
