"""A real Prometheus server (Debian's) scrapes a real ``drs-poller run`` process, against
moto server and the DRS simulator, and its HTTP API shows drs_poller_ series arriving and the
alert rules loaded."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from harness import REGION, DaemonProcess, ServerSnapshot, daemon_env, server_id
from test_prometheus_rules import ALERTS

from drs_poller.local.items import ServerSpec

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy/prometheus/rules/drs-poller.rules.yml"
LOOPBACK = "127.0.0.1"
# Bounds, not sleeps: each wait ends as soon as its condition holds.
PROMETHEUS_READY_WITHIN = 30.0
SERIES_WITHIN = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class PrometheusServer:
    """``prometheus`` as a process on loopback, with its own config and data directory."""

    def __init__(self, *, binary: str, directory: Path, target: str) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log = directory / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "drs-poller", "static_configs": [{"targets": [target]}]}
            ],
        }
        self.config = directory / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    async def stop(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + PROMETHEUS_READY_WITHIN
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/-/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"prometheus not ready in {PROMETHEUS_READY_WITHIN} s:\n{self.output()}"
        )

    async def api(self, http: aiohttp.ClientSession, path: str, **params: str) -> Any:
        async with http.get(f"{self.url}/api/v1/{path}", params=params) as response:
            body = await response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def wait_for_series(self, http: aiohttp.ClientSession, query: str) -> list[Any]:
        deadline = time.monotonic() + SERIES_WITHIN
        while time.monotonic() < deadline:
            result = (await self.api(http, "query", query=query))["result"]
            if result:
                return result
            await asyncio.sleep(0.25)
        targets = await self.api(http, "targets")
        raise AssertionError(f"no result for {query} in {SERIES_WITHIN} s; targets: {targets}")


async def test_prometheus_scrapes_the_running_daemon(live_world, prometheus_binary, tmp_path):
    world = live_world
    sid = server_id(1)
    job = world.job([sid], [(0, "STARTED", {sid: ServerSnapshot("IN_PROGRESS")})])
    await world.put_spec(world.spec("scraped-1", [(REGION, [ServerSpec(sid, job)])]))
    daemon = DaemonProcess(
        daemon_env(
            stack=world.stack,
            table=world.table,
            discovery_interval=0.2,
            interval_started=0.2,
            interval_in_progress=0.2,
        )
    )
    prometheus: PrometheusServer | None = None
    await daemon.start()
    try:
        started = await daemon.wait_for("drs-poller started")
        target = started["metrics_url"].removeprefix("http://")
        prometheus = PrometheusServer(binary=prometheus_binary, directory=tmp_path, target=target)
        await prometheus.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await prometheus.wait_ready(http)

            (build_info,) = await prometheus.wait_for_series(http, "drs_poller_build_info")
            assert build_info["metric"]["job"] == "drs-poller"
            assert build_info["metric"]["instance"] == target
            assert build_info["metric"]["version"]
            assert build_info["value"][1] == "1"

            # The execution is tracked (IN_PROGRESS) and polled: both families arrive.
            active = await prometheus.wait_for_series(
                http, 'drs_poller_active_executions{phase="IN_PROGRESS"} > 0'
            )
            assert active[0]["metric"]["execution_type"] == "DRILL"
            polls = await prometheus.wait_for_series(http, "drs_poller_polls_total > 0")
            assert {p["metric"]["outcome"] for p in polls} <= {
                "unchanged",
                "updated",
                "finalized",
                "conflict",
                "gone",
                "error",
            }
            (up,) = await prometheus.wait_for_series(http, 'up{job="drs-poller"}')
            assert up["value"][1] == "1"

            # The server loaded the alert rules, and none of them fires on a healthy daemon.
            groups = (await prometheus.api(http, "rules", type="alert"))["groups"]
            loaded = {rule["name"] for group in groups for rule in group["rules"]}
            assert loaded == ALERTS  # every alert of the rules file (test_prometheus_rules)
            assert all(rule["health"] != "err" for g in groups for rule in g["rules"]), groups
            # Before the first scrape, "no replica up" is pending; on a healthy daemon it
            # clears at the next evaluation (every second here), and nothing else starts.
            deadline = time.monotonic() + SERIES_WITHIN
            while alerts := (await prometheus.api(http, "alerts"))["alerts"]:
                assert time.monotonic() < deadline, alerts
                await asyncio.sleep(0.25)
    finally:
        if prometheus is not None:
            await prometheus.stop()
        code = await daemon.stop(signal.SIGTERM) if daemon.proc.returncode is None else None
        await daemon.kill()
    assert code in (0, None)
    assert prometheus.proc is not None
    assert prometheus.proc.returncode is not None  # stopped: nothing left running
