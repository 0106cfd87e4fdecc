"""``drs-poller run`` as a real process: SIGTERM and SIGINT with polls in flight."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import pytest
from faultproxy import FaultProxy, black_hole
from harness import REGION, DaemonProcess, ServerSnapshot, daemon_env, server_id

from drs_poller.engine.daemon import Daemon
from drs_poller.local.items import ServerSpec
from drs_poller.settings import load_settings


async def _seed(world, count: int = 3) -> None:
    for n in range(count):
        sid = server_id(n)
        job = world.job([sid], [(0, "STARTED", {sid: ServerSnapshot("IN_PROGRESS")})])
        await world.put_spec(world.spec(f"ex-{n}", [(REGION, [ServerSpec(sid, job)])]))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stop_signal_with_polls_in_flight_finishes_them_and_exits_0(live_world, sig):
    await _seed(live_world)
    live_world.drs.faults.latency = 1.5  # every DRS answer takes 1.5 s: polls are in flight
    daemon = DaemonProcess(
        daemon_env(
            stack=live_world.stack,
            table=live_world.table,
            shutdown_grace=10,
            discovery_interval=0.2,
            interval_started=0.2,
            interval_in_progress=0.2,
        )
    )
    await daemon.start()
    try:
        await daemon.wait_for("discovered executions")
        while not any(c.operation == "DescribeJobs" for c in live_world.drs.calls):
            await live_world.sleep(0.02)
        started = time.monotonic()
        code = await daemon.stop(sig)
        elapsed = time.monotonic() - started
    finally:
        await daemon.kill()
    assert code == 0
    assert elapsed < 10  # the in-flight poll finished; no waiting out the whole grace
    assert daemon.events("stop requested; no new polls will start")[0]["reason"] == sig.name
    assert daemon.events("waiting for polls in flight")
    assert not daemon.events("cancelled polls still in flight after the grace period")
    assert daemon.events("drs-poller stopped")[0]["exit_code"] == 0
    # The poll that was in flight completed its write-back.
    item = await live_world.get("ex-0")
    assert item["Status"] == "POLLING"
    assert item["Waves"][0]["Servers"][0]["Status"] == "IN_PROGRESS"
    assert all(isinstance(line, dict) and "event" in line for line in daemon.lines)
    # contract §4: every line about one execution is bound to its execution_id.
    changes = daemon.events("server status changed")
    assert changes
    assert {line["execution_id"] for line in changes} <= {"ex-0", "ex-1", "ex-2"}


async def test_polls_that_outlast_the_grace_period_are_cancelled_and_exit_is_still_0(live_world):
    await _seed(live_world, count=1)
    live_world.drs.faults.latency = 20.0  # DRS hangs far past the grace period
    daemon = DaemonProcess(
        daemon_env(
            stack=live_world.stack, table=live_world.table, shutdown_grace=1, read_timeout=60
        )
    )
    await daemon.start()
    try:
        await daemon.wait_for("discovered executions")
        while not any(
            c.operation == "DescribeJobs" for c in live_world.drs.calls
        ) and not daemon.events("aws call retry"):
            await live_world.sleep(0.05)
        await live_world.sleep(0.3)
        started = time.monotonic()
        code = await daemon.stop(signal.SIGTERM)
        elapsed = time.monotonic() - started
    finally:
        await daemon.kill()
    assert code == 0
    assert elapsed < 5  # grace 1 s, then cancelled: does not wait for DRS
    assert daemon.events("cancelled polls still in flight after the grace period")
    item = await live_world.get("ex-0")
    assert item["Status"] == "POLLING"  # nothing half-written
    assert "LastPolledTime" not in item


async def test_bad_configuration_stops_start_up_naming_the_variable(live_world):
    daemon = DaemonProcess(
        daemon_env(stack=live_world.stack, table=live_world.table, interval_pending="soon")
    )
    await daemon.start()
    code = await daemon.proc.wait()
    await daemon._reader
    assert code == 2
    assert any("DRS_POLLER_INTERVAL_PENDING" in line for line in daemon.raw)


async def test_a_status_index_the_daemon_cannot_use_stops_start_up_naming_it(live_world):
    daemon = DaemonProcess(
        daemon_env(stack=live_world.stack, table=live_world.table, status_index="ByStatus")
    )
    await daemon.start()
    code = await daemon.proc.wait()
    await daemon._reader
    assert code == 2
    assert any(
        f"table {live_world.table} has no global secondary index ByStatus "
        "(DRS_POLLER_STATUS_INDEX)" in line
        for line in daemon.raw
    )


async def test_a_metrics_port_in_use_stops_start_up_naming_the_variable(live_world):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = DaemonProcess(
            daemon_env(stack=live_world.stack, table=live_world.table, metrics_port=port)
        )
        await daemon.start()
        code = await daemon.proc.wait()
        await daemon._reader
    assert code == 2
    assert any("DRS_POLLER_METRICS_PORT" in line and "in use" in line for line in daemon.raw)
    assert daemon.events("drs-poller stopped")[0]["exit_code"] == 2


@pytest.mark.parametrize("after", [0.05, 0.3])
async def test_sigterm_while_still_starting_up_exits_0(live_world, after):
    # An orchestrator may stop a task that has only just started (a quick rollback, the
    # chaos run): the signal arrives while Python is still importing.
    lease_table = await live_world.lease_table()
    daemon = DaemonProcess(
        daemon_env(stack=live_world.stack, table=live_world.table, lease_table_name=lease_table)
    )
    await daemon.start()
    try:
        # Counted from the moment Python can catch it (cli.main's first lines): before
        # that, on a starved machine, no Python code has run yet and nothing can.
        await _until_sigterm_is_caught(daemon.proc.pid, live_world)
        await live_world.sleep(after)
        code = await daemon.stop(signal.SIGTERM, within=20)
    finally:
        await daemon.kill()
    assert code == 0, "\n".join(daemon.raw)
    assert daemon.events("stop requested; no new polls will start")[0]["reason"] == "SIGTERM"


def _catches_sigterm(pid: int) -> bool | None:
    """Whether the process has a handler for SIGTERM (SigCgt in /proc); None: gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


async def _until_sigterm_is_caught(pid: int, live_world, *, within: float = 30.0) -> None:
    """Wait until the process can catch SIGTERM (or is gone: the stop reports how)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _catches_sigterm(pid) is not False:
            return
        await live_world.sleep(0.005)
    pytest.fail(f"process {pid} installed no SIGTERM handler within {within} s")


async def test_a_stop_during_a_slow_start_up_abandons_it_and_exits_0(live_world):
    """A stop requested while a start-up call hangs (a table that does not answer) does
    not wait out that call's timeouts and retries: ECS sends SIGKILL after its stop
    timeout, and the chaos run stops replicas that are still starting (issue 17)."""
    async with FaultProxy(live_world.stack.moto_url) as proxy:
        proxy.add(black_hole(), operation="DescribeTable")
        daemon = Daemon(
            load_settings(
                table_name=live_world.table,
                dynamodb_endpoint_url=proxy.url,
                drs_endpoint_url=live_world.stack.drs_url,
                ec2_endpoint_url=live_world.stack.moto_url,
                metrics_host="127.0.0.1",
                metrics_port=0,
                read_timeout=60,
            ),
            session=live_world.stack.session(),
        )
        runner = asyncio.create_task(daemon.run(handle_signals=False))
        try:
            while not any(r.operation == "DescribeTable" for r in proxy.records):
                await live_world.sleep(0.01)
            daemon.request_stop("test")
            # Far below the 60 s the hanging call would take to time out.
            assert await asyncio.wait_for(runner, 15) == 0
        finally:
            if not runner.done():
                runner.cancel()
    assert daemon.roots is None  # no root task was started
