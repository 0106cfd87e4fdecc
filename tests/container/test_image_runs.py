"""The images running: ``drs-poller run`` in the production image against moto server and
the DRS simulator in this test process (all on 127.0.0.1, the container on the host
network), and ``drs-poller demo`` in the local image.

The daemon's environment is the compose ``poller`` service's, with only what running on
loopback must change (:data:`LOOPBACK_OVERRIDES`), so these runs are the ones
docker-compose.yml would start; :func:`test_compose_starts_the_poller_these_tests_ran`
checks that from the container's own configuration.
"""

from __future__ import annotations

import time
from typing import Any

from engine import (
    LOOPBACK,
    MEASURED,
    Container,
    adocker,
    compose,
    compose_environment,
    env_options,
    free_port,
    stop_timeout_of_the_template,
)
from harness import REGION, ServerSnapshot, launched, server_id

from drs_poller.local.items import ServerSpec

# The hardening an orchestrator may apply; the daemon must not need more.
HARDENED = (
    "--read-only",
    "--tmpfs",
    "/tmp",  # noqa: S108 - a tmpfs inside the container
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
)
# What running on loopback changes in the compose poller's environment: compose names its
# services by host name and the table once; here they are this process's servers, a fresh
# table per test, and /metrics on a free loopback port (the host network is shared).
LOOPBACK_OVERRIDES = frozenset(
    {
        "DRS_POLLER_TABLE_NAME",
        "DRS_POLLER_DYNAMODB_ENDPOINT_URL",
        "DRS_POLLER_DRS_ENDPOINT_URL",
        "DRS_POLLER_EC2_ENDPOINT_URL",
        "DRS_POLLER_METRICS_PORT",
        "DRS_POLLER_METRICS_HOST",
    }
)


def poller_service() -> dict[str, Any]:
    return compose()["services"]["poller"]


def poller_env(world: Any, **changes: str) -> dict[str, str]:
    """The compose poller's environment, pointed at ``world``'s servers on loopback."""
    env = compose_environment(poller_service())
    env.update(
        {
            "DRS_POLLER_TABLE_NAME": world.table,
            "DRS_POLLER_DYNAMODB_ENDPOINT_URL": world.stack.moto_url,
            "DRS_POLLER_EC2_ENDPOINT_URL": world.stack.moto_url,
            "DRS_POLLER_DRS_ENDPOINT_URL": world.stack.drs_url,
            "DRS_POLLER_METRICS_HOST": LOOPBACK,
            "DRS_POLLER_METRICS_PORT": str(free_port()),
            **changes,
        }
    )
    return env


async def _until_final(world: Any, container: Container, ids: list[str], *, within: float):
    deadline = time.monotonic() + within
    while True:
        items = {execution: await world.get(execution) for execution in ids}
        if all(item["Status"] != "POLLING" for item in items.values()):
            return items
        state = (await container.inspect())["State"]
        assert state["Running"], f"the daemon exited:\n{await container.logs()}"
        if time.monotonic() > deadline:
            statuses = {k: v["Status"] for k, v in items.items()}
            raise AssertionError(
                f"not final within {within} s: {statuses}\n{await container.logs()}"
            )
        await world.sleep(0.25)


async def test_run_against_moto_turns_healthy_through_the_image_healthcheck(
    live_world, images, start_container
):
    container = await start_container(
        images.production,
        *env_options(poller_env(live_world)),
        args=tuple(poller_service()["command"]),
    )
    # The image's own HEALTHCHECK (interval 15 s): the first check comes 15 s after start.
    deadline = time.monotonic() + 90
    while True:
        state = (await container.inspect())["State"]
        assert state["Running"], await container.logs()
        health = state["Health"]
        if health["Status"] == "healthy":
            break
        assert health["Status"] == "starting", health
        assert time.monotonic() < deadline, f"{health}\n{await container.logs()}"
        await live_world.sleep(0.5)
    assert health["Log"][-1]["ExitCode"] == 0


async def test_read_only_without_capabilities_it_tracks_executions_to_final_status(
    live_world, images, start_container
):
    world = live_world
    instances = await world.ec2_instances(3)
    s = [server_id(n) for n in range(1, 5)]
    ec2 = {s[n]: instances[n]["InstanceId"] for n in range(3)}
    in_progress = ServerSnapshot("IN_PROGRESS")
    complete = world.job(
        s[:2],
        [
            (0, "STARTED", {}),
            (1, "STARTED", {s[0]: in_progress, s[1]: in_progress}),
            (3, "COMPLETED", {s[0]: launched(), s[1]: launched()}),
        ],
        ec2_ids={s[0]: ec2[s[0]], s[1]: ec2[s[1]]},
    )
    partial = world.job(
        s[2:],
        [(0, "STARTED", {}), (2, "COMPLETED", {s[2]: launched(), s[3]: ServerSnapshot("PENDING")})],
        ec2_ids={s[2]: ec2[s[2]]},
    )
    await world.put_spec(
        world.spec(
            "ex-complete", [(REGION, [ServerSpec(s[0], complete), ServerSpec(s[1], complete)])]
        )
    )
    await world.put_spec(
        world.spec("ex-partial", [(REGION, [ServerSpec(s[2], partial), ServerSpec(s[3], partial)])])
    )
    container = await start_container(
        images.production,
        *HARDENED,
        *env_options(poller_env(world)),
        args=tuple(poller_service()["command"]),
    )
    items = await _until_final(world, container, ["ex-complete", "ex-partial"], within=180)
    assert items["ex-complete"]["Status"] == "COMPLETED"
    assert {srv["InstanceId"] for srv in items["ex-complete"]["Waves"][0]["Servers"]} == {
        ec2[s[0]],
        ec2[s[1]],
    }
    assert items["ex-partial"]["Status"] == "PARTIAL"
    config = (await container.inspect())["HostConfig"]
    assert config["ReadonlyRootfs"] is True
    assert config["CapDrop"] == ["ALL"]
    assert config["SecurityOpt"] == ["no-new-privileges"]


async def test_compose_starts_the_poller_these_tests_ran(live_world, images, start_container):
    """The compose poller service's image target, command and environment are what the
    container here runs, the loopback changes aside (the compose file's bridge network
    cannot run on this engine)."""
    service = poller_service()
    assert service["build"]["target"] == "production"
    expected = poller_env(live_world)
    container = await start_container(
        images.production, *env_options(expected), args=tuple(service["command"])
    )
    config = (await container.inspect())["Config"]
    assert config["Cmd"] == service["command"]
    assert config["Entrypoint"] == ["drs-poller"]
    ran = dict(item.split("=", 1) for item in config["Env"])
    compose_env = compose_environment(service)
    for key, value in compose_env.items():
        if key not in LOOPBACK_OVERRIDES:
            assert ran[key] == value, key
    assert set(expected) - set(compose_env) <= LOOPBACK_OVERRIDES


async def test_docker_stop_with_polls_in_flight_exits_0_within_the_ecs_stop_timeout(
    live_world, images, start_container, docker
):
    world = live_world
    for n in range(3):
        sid = server_id(10 + n)
        job = world.job([sid], [(0, "STARTED", {sid: ServerSnapshot("IN_PROGRESS")})])
        await world.put_spec(world.spec(f"ex-{n}", [(REGION, [ServerSpec(sid, job)])]))
    world.drs.faults.latency = 1.5  # every DRS answer takes 1.5 s: polls are in flight
    env = poller_env(world, DRS_POLLER_LOG_FORMAT="json")
    container = await start_container(
        images.production, *HARDENED, *env_options(env), args=tuple(poller_service()["command"])
    )
    await container.wait_for_event("discovered executions")
    deadline = time.monotonic() + 60
    while not any(c.operation == "DescribeJobs" for c in world.drs.calls):
        assert time.monotonic() < deadline, await container.logs()
        await world.sleep(0.02)
    stop_timeout = stop_timeout_of_the_template()
    started = time.monotonic()
    code, _, err = await adocker(
        docker, "stop", "--time", str(stop_timeout), container.name, within=stop_timeout + 30
    )
    elapsed = time.monotonic() - started
    assert code == 0, err
    state = (await container.inspect())["State"]
    assert state["ExitCode"] == 0, await container.logs()
    assert not state["OOMKilled"]
    assert elapsed < stop_timeout
    MEASURED["docker stop with polls in flight"] = f"{elapsed:.1f} s"
    assert await container.events("waiting for polls in flight")
    assert not await container.events("cancelled polls still in flight after the grace period")
    assert (await container.events("drs-poller stopped"))[0]["exit_code"] == 0


async def test_the_local_target_runs_the_demo_to_exit_0(images, start_container, docker):
    container = await start_container(images.local, *HARDENED, args=("demo",))
    code, out, err = await adocker(docker, "wait", container.name, within=600)
    assert code == 0, err
    logs = await container.logs()
    assert out.strip() == "0", logs
    assert "all 8 executions ended as expected" in logs
