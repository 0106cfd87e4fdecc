"""DRS adapter: batched DescribeJobs and DescribeRecoveryInstances, translated to core models.

One call asks for up to 1000 job ids; a job shared by several servers or executions
is asked for once. Job ids that DRS does not return are reported as not found.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from drs_poller.clients.paging import paginate
from drs_poller.core.models import (
    JOB_NOT_FOUND,
    InvalidDrsDataError,
    JobLookup,
    parse_job,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller

log = structlog.get_logger("drs_poller.drs")

_SNAKE = {
    "DescribeJobs": "describe_jobs",
    "DescribeRecoveryInstances": "describe_recovery_instances",
    "DescribeJobLogItems": "describe_job_log_items",
}
REASON_LIMIT = 500  # characters of DRS's rawError kept in a server's Error

JOB_IDS_PER_CALL = 1000  # DescribeJobs filters.jobIDs maximum
RECOVERY_INSTANCE_IDS_PER_CALL = (
    200  # DescribeRecoveryInstances filters.recoveryInstanceIDs maximum
)


@dataclass(slots=True)
class JobBatch:
    lookups: dict[str, JobLookup] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)  # job id -> why it was not usable


def chunked(values: Collection[str], size: int) -> list[list[str]]:
    ordered = sorted(values)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


class DrsAdapter:
    def __init__(self, *, clients: ClientPool, caller: Caller) -> None:
        self._clients = clients
        self._caller = caller

    def _fetch(
        self, client: Any, *, region: str, operation: str
    ) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        method = getattr(client, _SNAKE[operation])

        async def fetch(request: dict[str, Any]) -> dict[str, Any]:
            page: dict[str, Any] = await self._caller.call(
                service="drs",
                operation=operation,
                region=region,
                send=functools.partial(method, **request),
            )
            return page

        return fetch

    async def describe_jobs(self, region: str, job_ids: Collection[str]) -> JobBatch:
        batch = JobBatch()
        fetch = self._fetch(
            await self._clients.get("drs", region), region=region, operation="DescribeJobs"
        )
        for chunk in chunked(job_ids, JOB_IDS_PER_CALL):
            wanted = set(chunk)
            request = {"filters": {"jobIDs": chunk}, "maxResults": len(chunk)}
            async for page in paginate(fetch, request, what=f"DescribeJobs in {region}"):
                for wire in page.get("items") or []:
                    job_id = wire.get("jobID") if isinstance(wire, dict) else None
                    if job_id not in wanted:
                        continue
                    try:
                        batch.lookups[job_id] = parse_job(wire)
                    except InvalidDrsDataError as error:
                        batch.invalid[job_id] = str(error)
            for job_id in wanted - batch.lookups.keys() - batch.invalid.keys():
                batch.lookups[job_id] = JOB_NOT_FOUND
        return batch

    async def describe_recovery_instances(
        self, region: str, recovery_instance_ids: Collection[str]
    ) -> dict[str, str | None]:
        """Recovery instance id -> EC2 instance id, for the ids DRS knows."""
        found: dict[str, str | None] = {}
        fetch = self._fetch(
            await self._clients.get("drs", region),
            region=region,
            operation="DescribeRecoveryInstances",
        )
        for chunk in chunked(recovery_instance_ids, RECOVERY_INSTANCE_IDS_PER_CALL):
            request = {"filters": {"recoveryInstanceIDs": chunk}}
            what = f"DescribeRecoveryInstances in {region}"
            async for page in paginate(fetch, request, what=what):
                for wire in page.get("items") or []:
                    rid = wire.get("recoveryInstanceID")
                    if isinstance(rid, str):
                        ec2_id = wire.get("ec2InstanceID")
                        found[rid] = ec2_id if isinstance(ec2_id, str) and ec2_id else None
        return found

    async def describe_failures(self, region: str, job_id: str) -> dict[str, str]:
        """Why DRS failed servers of a job, from its log: source server id -> the last
        failure event's rawError (or the event name when DRS gave none)."""
        reasons: dict[str, str] = {}
        fetch = self._fetch(
            await self._clients.get("drs", region), region=region, operation="DescribeJobLogItems"
        )
        async for page in paginate(fetch, {"jobID": job_id}, what=f"job log of {job_id}"):
            for entry in page.get("items") or []:
                event = str(entry.get("event") or "")
                data = entry.get("eventData") or {}
                source = data.get("sourceServerID") if isinstance(data, dict) else None
                if isinstance(source, str) and event.endswith(("_FAIL", "_FAILED")):
                    raw = data.get("rawError") or event
                    reasons[source] = str(raw)[:REASON_LIMIT]
        return reasons
