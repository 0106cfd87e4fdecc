"""DRS adapter: batched DescribeJobs and DescribeRecoveryInstances, translated to core models.

One call asks for up to 1000 job ids; a job shared by several servers or executions
is asked for once. Job ids that DRS does not return are reported as not found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from drs_poller.core.models import (
    JOB_NOT_FOUND,
    InvalidDrsDataError,
    JobLookup,
    parse_job,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Collection

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller

log = structlog.get_logger("drs_poller.drs")

JOB_IDS_PER_CALL = 1000  # DescribeJobs filters.jobIDs maximum
RECOVERY_INSTANCE_IDS_PER_CALL = (
    200  # DescribeRecoveryInstances filters.recoveryInstanceIDs maximum
)
MAX_PAGES = 1000  # a nextToken that never ends is a DRS bug, not a reason to loop forever


class PagingError(Exception):
    """DRS paging went wrong (a repeated token, or too many pages)."""


@dataclass(slots=True)
class JobBatch:
    lookups: dict[str, JobLookup] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)  # job id -> why it was not usable


def chunked(values: Collection[str], size: int) -> list[list[str]]:
    ordered = sorted(values)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


async def pages(
    fetch: Callable[[str | None], Awaitable[dict[str, Any]]], *, what: str
) -> AsyncIterator[dict[str, Any]]:
    token: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = await fetch(token)
        yield page
        token = page.get("nextToken") or None
        if token is None:
            return
        if token in seen:
            raise PagingError(f"{what}: DRS repeated nextToken {token[:16]!r}")
        seen.add(token)
    raise PagingError(f"{what}: more than {MAX_PAGES} pages")


class DrsAdapter:
    def __init__(self, *, clients: ClientPool, caller: Caller) -> None:
        self._clients = clients
        self._caller = caller

    async def describe_jobs(self, region: str, job_ids: Collection[str]) -> JobBatch:
        batch = JobBatch()
        client = await self._clients.get("drs", region)
        for chunk in chunked(job_ids, JOB_IDS_PER_CALL):

            async def fetch(token: str | None, chunk: list[str] = chunk) -> dict[str, Any]:
                request: dict[str, Any] = {"filters": {"jobIDs": chunk}, "maxResults": len(chunk)}
                if token:
                    request["nextToken"] = token
                result: dict[str, Any] = await self._caller.call(
                    service="drs",
                    operation="DescribeJobs",
                    region=region,
                    send=lambda: client.describe_jobs(**request),
                )
                return result

            wanted = set(chunk)
            async for page in pages(fetch, what=f"DescribeJobs in {region}"):
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
        client = await self._clients.get("drs", region)
        for chunk in chunked(recovery_instance_ids, RECOVERY_INSTANCE_IDS_PER_CALL):

            async def fetch(token: str | None, chunk: list[str] = chunk) -> dict[str, Any]:
                request: dict[str, Any] = {"filters": {"recoveryInstanceIDs": chunk}}
                if token:
                    request["nextToken"] = token
                result: dict[str, Any] = await self._caller.call(
                    service="drs",
                    operation="DescribeRecoveryInstances",
                    region=region,
                    send=lambda: client.describe_recovery_instances(**request),
                )
                return result

            async for page in pages(fetch, what=f"DescribeRecoveryInstances in {region}"):
                for wire in page.get("items") or []:
                    rid = wire.get("recoveryInstanceID")
                    if isinstance(rid, str):
                        ec2_id = wire.get("ec2InstanceID")
                        found[rid] = ec2_id if isinstance(ec2_id, str) and ec2_id else None
        return found
