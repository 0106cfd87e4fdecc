"""An in-process AWS Elastic Disaster Recovery double speaking DRS's rest-json protocol.

Point a real aiobotocore ``drs`` client at :func:`serve_drs_double`'s URL. The
region is taken from the SigV4 credential scope, as real DRS endpoints are
per region. Job state comes from :class:`~drs_poller.simulator.timelines.JobScript`
evaluated on the injected clock, so nothing here sleeps except the optional
``Faults.latency``.

Choices where real DRS leaves room (kept deliberately, tests rely on them):

* ``DescribeJobLogItems`` for an unknown job id answers 200 with no items; the
  operation's model lists no ResourceNotFoundException.
* Without ``maxResults`` a page holds up to :data:`DEFAULT_MAX_RESULTS` items;
  ``DrsDouble(page_size=n)`` caps every page at ``n`` to force paging in tests.
* ``nextToken`` is opaque: urlsafe base64 of the offset and a digest of the
  operation and filters; reusing it with other filters is a ValidationException.
* Jobs are listed oldest first; a job whose ``created_at`` is still in the
  future does not exist yet.
* Request bodies are validated against the botocore model (lengths, patterns,
  ranges); unknown members are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from drs_poller.simulator.conformance import drs_service_model, shape_violations
from drs_poller.simulator.timelines import (
    JobScript,
    ServerScript,
    parse_iso8601,
    render_job,
    render_job_log,
    render_recovery_instance,
)

if TYPE_CHECKING:
    from drs_poller.clock import Clock

DEFAULT_MAX_RESULTS = 1000
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]+)/")


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
            return self._internal_error()
        if self.throttle_rate and self.rng.random() < self.throttle_rate:
            return self._throttle()
        if self.error_rate and self.rng.random() < self.error_rate:
            return self._internal_error()
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

    def _internal_error(self) -> DrsError:
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


Handler = Callable[["DrsDouble", str, dict[str, Any]], dict[str, Any]]


class DrsDouble:
    def __init__(
        self,
        *,
        clock: Clock,
        faults: Faults | None = None,
        page_size: int | None = None,
    ) -> None:
        self.clock = clock
        self.faults = faults or Faults()
        self.page_size = page_size
        self._jobs: dict[tuple[str, str], JobScript] = {}
        # Recovery instances outlive their job record, as in DRS, so they are kept apart.
        self._instances: dict[tuple[str, str], tuple[JobScript, ServerScript]] = {}
        self._calls: list[CallRecord] = []

    # ------------------------------------------------------------ state

    def add_job(self, script: JobScript) -> None:
        key = (script.region, script.job_id)
        if key in self._jobs:
            raise ValueError(f"job {script.job_id} already exists in {script.region}")
        self._jobs[key] = script
        for server in script.servers:
            if server.recovery_instance_id is not None:
                self._instances[(script.region, server.recovery_instance_id)] = (script, server)

    def remove_job(self, region: str, job_id: str) -> None:
        """DRS forgetting a job: it vanishes from DescribeJobs; its recovery instances stay."""
        del self._jobs[(region, job_id)]

    def remove_recovery_instance(self, region: str, recovery_instance_id: str) -> None:
        del self._instances[(region, recovery_instance_id)]

    def jobs(self, region: str) -> list[JobScript]:
        return sorted(
            (script for (job_region, _), script in self._jobs.items() if job_region == region),
            key=lambda script: (script.created_at, script.job_id),
        )

    def job(self, region: str, job_id: str) -> JobScript | None:
        return self._jobs.get((region, job_id))

    # ------------------------------------------------------------ call log

    @property
    def calls(self) -> list[CallRecord]:
        return list(self._calls)

    def count(self, operation: str, region: str | None = None) -> int:
        return sum(
            1
            for call in self._calls
            if call.operation == operation and (region is None or call.region == region)
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
        now = self.clock.time()
        filters = body.get("filters", {})
        wanted = set(filters["jobIDs"]) if filters.get("jobIDs") else None
        from_date = parse_iso8601(filters["fromDate"]) if "fromDate" in filters else None
        to_date = parse_iso8601(filters["toDate"]) if "toDate" in filters else None
        items = [
            render_job(script, now)
            for script in self.jobs(region)
            if script.created_at <= now
            and (wanted is None or script.job_id in wanted)
            and (from_date is None or script.created_at >= from_date)
            and (to_date is None or script.created_at <= to_date)
        ]
        return self.page(items, body=body, operation="DescribeJobs")

    def describe_recovery_instances(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.time()
        filters = body.get("filters", {})
        wanted = set(filters["recoveryInstanceIDs"]) if filters.get("recoveryInstanceIDs") else None
        sources = set(filters["sourceServerIDs"]) if filters.get("sourceServerIDs") else None
        items = []
        for (instance_region, instance_id), (script, server) in sorted(self._instances.items()):
            if instance_region != region or (wanted is not None and instance_id not in wanted):
                continue
            if sources is not None and server.source_server_id not in sources:
                continue
            rendered = render_recovery_instance(script, server, now)
            if rendered is not None:
                items.append(rendered)
        return self.page(items, body=body, operation="DescribeRecoveryInstances")

    def describe_job_log_items(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.time()
        script = self.job(region, body["jobID"])
        items = render_job_log(script, now) if script and script.created_at <= now else []
        return self.page(items, body=body, operation="DescribeJobLogItems")


# The dispatch table: later operations (StartRecovery, TerminateRecoveryInstances,
# DescribeSourceServers, ...) are one method and one line here.
OPERATIONS: dict[str, Handler] = {
    "DescribeJobs": DrsDouble.describe_jobs,
    "DescribeRecoveryInstances": DrsDouble.describe_recovery_instances,
    "DescribeJobLogItems": DrsDouble.describe_job_log_items,
}


# ---------------------------------------------------------------- tokens


def _filter_digest(operation: str, body: dict[str, Any]) -> str:
    scope = {"operation": operation, "filters": body.get("filters"), "jobID": body.get("jobID")}
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


def _error_response(error: DrsError, request_id: str) -> web.Response:
    headers = {"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id, **error.headers}
    return web.json_response(error.body, status=error.status, headers=headers)


def build_app(double: DrsDouble) -> web.Application:
    async def dispatch(request: web.Request) -> web.Response:
        operation = request.path.strip("/")
        region = _region_of(request)
        raw_body = _parse_body(await request.read())
        request_id = str(uuid.uuid4())
        try:
            response = _handle(request.method, operation, region, raw_body)
        except DrsError as error:
            response = _error_response(error, request_id)
        else:
            response.headers["x-amzn-RequestId"] = request_id
        double.record(
            CallRecord(
                operation=operation,
                region=region,
                at=double.clock.time(),
                ids_count=_ids_count(raw_body),
                status=response.status,
            )
        )
        if double.faults.latency > 0:
            await asyncio.sleep(double.faults.latency)
        return response

    def _handle(method: str, operation: str, region: str | None, raw_body: Any) -> web.Response:
        handler = OPERATIONS.get(operation)
        if method != "POST" or handler is None:
            raise DrsError(404, "UnknownOperationException", f"Unknown operation {operation!r}")
        if region is None:
            raise DrsError(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        fault = double.faults.draw(operation)
        if fault is not None:
            raise fault
        body = _validate_request(operation, raw_body)
        return web.json_response(handler(double, region, body))

    app = web.Application()
    app.router.add_route("*", "/{operation:.*}", dispatch)
    return app


@asynccontextmanager
async def serve_drs_double(
    double: DrsDouble, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the double over HTTP; yields its endpoint URL (port 0 picks a free port)."""
    # A double does not drain requests on the way out: a test that injected a long
    # latency must not wait it out in teardown.
    runner = web.AppRunner(build_app(double), access_log=None, shutdown_timeout=0.25)
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
    "OPERATIONS",
    "CallRecord",
    "DrsDouble",
    "DrsError",
    "Faults",
    "build_app",
    "serve_drs_double",
]
