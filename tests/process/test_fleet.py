"""The fleet run: ``drs-poller run`` as a process against moto and the DRS simulator, with
200 executions of 5 servers across 2 regions, on time compressed 60 times.

It asserts every final status, and that DescribeJobs calls grow with dispatch batches
(at most one per region per batch, plus pages), not with servers or executions. The
figures it prints are the ones quoted in docs/reference.md ("What one execution costs")."""

from __future__ import annotations

import json
import os
import signal
import socket

import aiohttp
import pytest
from fleet import compressed_settings, seed_fleet, wait_for_all
from harness import DaemonProcess, daemon_env
from prometheus_client.parser import text_string_to_metric_families

# CI runs it at 60x; set DRS_POLLER_FLEET_SPEED to measure at other compressions.
SPEED = float(os.environ.get("DRS_POLLER_FLEET_SPEED", "60"))
EXECUTIONS = 200
SERVERS = 5


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """histogram_quantile over cumulative (upper bound, count) buckets."""
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / span if span else 0
            )
        lower_bound, lower_count = bound, count
    return lower_bound


@pytest.mark.slow
async def test_fleet_of_200_executions_across_two_regions(live_world):
    world = live_world
    fleet = seed_fleet(world, executions=EXECUTIONS, servers=SERVERS, speed=SPEED)
    expected = fleet.expected
    await fleet.write_all(world)
    daemon = DaemonProcess(
        daemon_env(
            stack=world.stack,
            table=world.table,
            log_level="WARNING",
            **compressed_settings(SPEED),
        )
    )
    # WARNING level: the start-up line is not logged, so find /metrics another way.
    daemon.env["DRS_POLLER_METRICS_PORT"] = str(await _free_port())
    metrics_url = f"http://127.0.0.1:{daemon.env['DRS_POLLER_METRICS_PORT']}"
    started = world.clock.time()
    await daemon.start()
    try:
        # The longest scripted life is about 45 real minutes; allow twice that, plus start-up.
        finals = await wait_for_all(world, expected, deadline=started + 2 * 2700 / SPEED + 60)
        elapsed = world.clock.time() - started
        async with aiohttp.ClientSession() as http, http.get(f"{metrics_url}/metrics") as r:
            exposition = await r.text()
        code = await daemon.stop(signal.SIGTERM)
    finally:
        await daemon.kill()
    assert code == 0
    assert not daemon.events("poll failed unexpectedly; retried on the next poll")

    wrong = {e: (finals[e]["Status"], s) for e, s in expected.items() if finals[e]["Status"] != s}
    assert not wrong, wrong

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    batches = samples[("drs_poller_dispatch_batch_size_count", ())]
    describe_jobs = world.drs.count("DescribeJobs")
    server_polls = sum(
        int(s["PollAttempts"]) for i in finals.values() for s in i["Waves"][0]["Servers"]
    )
    # At most one DescribeJobs per region per batch (500 jobs a region: one page).
    assert describe_jobs <= 2 * batches
    assert describe_jobs * 20 < server_polls  # what one call per server job would cost
    # Recovery instances are described once, batched too: a batch's DescribeJobs of a
    # region is followed by at most one DescribeRecoveryInstances per 200 servers it
    # shows launched (the call's maximum). A starved machine that polls once in a long
    # while sees hundreds launch in one batch: hence the second term.
    launched_servers = sum(
        1 for i in finals.values() for s in i["Waves"][0]["Servers"] if "LaunchedTime" in s
    )
    assert world.drs.count("DescribeRecoveryInstances") <= describe_jobs + launched_servers // 200
    assert all(
        s.get("RecoveryInstanceId")
        for i in finals.values()
        for s in i["Waves"][0]["Servers"]
        if "LaunchedTime" in s
    )
    writes = [int(i["PollerRevision"]) for i in finals.values()]
    lateness = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "drs_poller_poll_lateness_seconds_bucket"
    )
    figures = {
        "executions": EXECUTIONS,
        "servers": EXECUTIONS * SERVERS,
        "regions": 2,
        "speed": SPEED,
        "elapsed_s": round(elapsed, 1),
        "dispatch_batches": int(batches),
        "describe_jobs_calls": describe_jobs,
        "server_polls (servers x polls)": server_polls,
        "calls_per_server_poll": round(describe_jobs / server_polls, 4),
        "describe_recovery_instances_calls": world.drs.count("DescribeRecoveryInstances"),
        "launched_servers": launched_servers,
        "dynamodb_writes_per_execution": {
            "mean": round(sum(writes) / len(writes), 2),
            "max": max(writes),
            "min": min(writes),
        },
        "lost_conditional_writes": samples[("drs_poller_conditional_write_conflicts_total", ())],
        "lateness_p50_s": round(_quantile(lateness, 0.5), 4),
        "lateness_p99_s": round(_quantile(lateness, 0.99), 4),
        "aws_calls": {
            f"{dict(labels)['operation']}:{dict(labels)['outcome']}": value
            for (name, labels), value in samples.items()
            if name == "drs_poller_aws_calls_total"
        },
    }
    print("\nFLEET FIGURES " + json.dumps(figures, indent=2))  # noqa: T201 - the measured figures


async def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
