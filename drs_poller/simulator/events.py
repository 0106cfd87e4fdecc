"""The simulator's DRS events: "DRS Source Server Launch Result" put on EventBridge when a
server's launch ends (LAUNCHED or FAILED), as real DRS does (best effort).

The event follows the shape documented for the DRS/MGN family (docs/events.md): source
``aws.drs``, detail-type ``DRS Source Server Launch Result``, the source server's ARN in
``resources``, and ``detail`` ``{"state": "<DRILL|RECOVERY>_LAUNCH_<SUCCEEDED|FAILED>",
"job-id": "drsjob-..."}``. EventBridge adds ``id``, ``time``, ``account`` and ``region``.
Each job's events go to the default bus of the job's region, as DRS's do; with
``bus_region``, every region's go to that region's default bus instead. That stands in for
the cross-region rule that forwards them on AWS (docs/events.md): moto (5.1) re-puts a
forwarded event in the target bus's region and drops its ``resources``, so a rule in moto
cannot forward them faithfully. The source server's ARN still names the job's region
and account; every account's events are put with the simulator's credentials (moto's
default account), standing in for the cross-account rule that forwards a member
account's events to the hub's bus.

Off unless an events endpoint is given (:func:`drs_poller.local.stack.local_stack`'s
``events_endpoint_url``). A PutEvents that fails is logged and not retried: a lost event
costs the daemon latency only, and it must never break the simulator.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Final

import aioboto3
import structlog
from botocore.config import Config

if TYPE_CHECKING:
    from drs_poller.simulator.service import DrsSimulator

log = structlog.get_logger("drs_poller.simulator.events")

SOURCE: Final = "aws.drs"
LAUNCH_RESULT: Final = "DRS Source Server Launch Result"
ENDED: Final = frozenset({"LAUNCHED", "FAILED"})
PUT_EVENTS_LIMIT: Final = 10
# Seconds of the simulator's clock between looks for launches that ended.
DEFAULT_INTERVAL: Final = 0.25
_CREDENTIALS: Final = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def launch_result_event(
    *,
    region: str,
    account: str,
    source_server_id: str,
    job_id: str,
    is_drill: bool,
    launched: bool,
) -> dict[str, Any]:
    """One PutEvents entry: a server's launch ended."""
    kind = "DRILL" if is_drill else "RECOVERY"
    return {
        "Source": SOURCE,
        "DetailType": LAUNCH_RESULT,
        "Resources": [f"arn:aws:drs:{region}:{account}:source-server/{source_server_id}"],
        "Detail": json.dumps(
            {
                "state": f"{kind}_LAUNCH_{'SUCCEEDED' if launched else 'FAILED'}",
                "job-id": job_id,
            }
        ),
    }


class LaunchEventPublisher:
    """Watches the simulator's LAUNCH jobs on its clock; publishes each server's launch
    result once."""

    def __init__(
        self,
        simulator: DrsSimulator,
        *,
        endpoint_url: str,
        interval: float = DEFAULT_INTERVAL,
        bus_region: str | None = None,
    ) -> None:
        self.simulator = simulator
        self.bus_region = bus_region
        self.endpoint_url = endpoint_url
        self.interval = interval
        self.published = 0
        self.failed = 0
        self._sent: set[tuple[str, str, str, str]] = set()  # (account, region, job, server)
        self._done_jobs: set[tuple[str, str, str]] = set()
        self._clients: dict[str, Any] = {}
        self._stack = AsyncExitStack()

    def due(self) -> dict[str, list[dict[str, Any]]]:
        """The entries of launches that ended by now and were not published, by region
        (and marks them published: best effort, once)."""
        now = self.simulator.clock.time()
        entries: dict[str, list[dict[str, Any]]] = {}
        for script in self.simulator.launch_jobs():
            key = (script.account_id, script.region, script.job_id)
            if key in self._done_jobs or script.created_at > now:
                continue
            state = script.state_at(now)
            ended = 0
            for server in script.servers:
                sid = server.source_server_id
                status = state.server(sid).launch_status
                if status not in ENDED and status != "TERMINATED":
                    continue
                ended += 1
                if (*key, sid) in self._sent or status not in ENDED:
                    continue
                self._sent.add((*key, sid))
                entries.setdefault(self.bus_region or script.region, []).append(
                    launch_result_event(
                        region=script.region,
                        account=script.account_id,
                        source_server_id=sid,
                        job_id=script.job_id,
                        is_drill=script.is_drill,
                        launched=status == "LAUNCHED",
                    )
                )
            if ended == len(script.servers):
                self._done_jobs.add(key)
        return entries

    async def publish_due(self) -> int:
        """Publish what ended; returns how many entries EventBridge accepted."""
        accepted = 0
        for region, entries in self.due().items():
            for at in range(0, len(entries), PUT_EVENTS_LIMIT):
                chunk = entries[at : at + PUT_EVENTS_LIMIT]
                try:
                    client = await self._client(region)
                    result = await client.put_events(Entries=chunk)
                except Exception as error:  # noqa: BLE001 - best effort, never fatal
                    self.failed += len(chunk)
                    log.warning("DRS events not published", region=region, error=repr(error))
                    continue
                failed = int(result.get("FailedEntryCount") or 0)
                self.failed += failed
                accepted += len(chunk) - failed
        self.published += accepted
        return accepted

    async def run(self) -> None:
        """Publish every ``interval`` seconds of the simulator's clock, until cancelled."""
        try:
            while True:
                try:
                    await self.publish_due()
                except Exception as error:  # noqa: BLE001 - the simulator goes on regardless
                    log.warning("DRS events publisher failed", error=repr(error))
                await self.simulator.clock.sleep(self.interval)
        finally:
            await self.aclose()

    async def _client(self, region: str) -> Any:
        client = self._clients.get(region)
        if client is None:
            session = aioboto3.Session(**_CREDENTIALS, region_name=region)
            client = await self._stack.enter_async_context(
                session.client(
                    "events",
                    endpoint_url=self.endpoint_url,
                    # Best effort: one try, short timeouts; the next launch tries again.
                    config=Config(
                        connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 1}
                    ),
                )
            )
            self._clients[region] = client
        return client

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._clients.clear()
