"""docker-compose.yml's project services, run as compose would start them, on loopback.

The compose file's bridge network cannot run on this engine (no bridge, no iptables), and
DynamoDB Local's image cannot be pulled. So each service of this project's images
(``ec2``, ``drs-sim``, ``init``, ``poller``) runs here with its own image target,
entrypoint, command and environment from the file, on the host network, with only the
addresses translated (:func:`loopback`): service host names to 127.0.0.1 and free ports,
``0.0.0.0`` to 127.0.0.1, and DynamoDB to the ``ec2`` service's moto server. They start
in the file's ``depends_on`` order, each once the compose healthcheck of what it depends on
passes (run with ``docker exec``), and the executions ``init`` starts must end as the
workload planned them.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

import aioboto3
from engine import (
    LOOPBACK,
    Container,
    adocker,
    compose,
    compose_environment,
    env_options,
    free_port,
)

from drs_poller.clients.dynamodb import to_python
from drs_poller.local.scenarios import plan_workload

PROJECT_SERVICES = ("ec2", "drs-sim", "init", "poller")


class Loopback:
    """Compose's addresses → this host's loopback, one free port per listening service."""

    def __init__(self) -> None:
        self.ports = {"ec2": free_port(), "drs-sim": free_port()}
        moto = f"http://{LOOPBACK}:{self.ports['ec2']}"
        self.urls = {
            "http://ec2:5000": moto,
            "http://dynamodb:8000": moto,  # DynamoDB Local cannot be pulled: moto serves it
            "http://drs-sim:8081": f"http://{LOOPBACK}:{self.ports['drs-sim']}",
        }
        self.metrics_port = free_port()
        self.words = {
            "5000": str(self.ports["ec2"]),
            "8081": str(self.ports["drs-sim"]),
            "9100": str(self.metrics_port),
        }

    def text(self, value: str) -> str:
        for compose_url, url in self.urls.items():
            value = value.replace(compose_url, url)
        value = value.replace("0.0.0.0", LOOPBACK)  # noqa: S104 - what is being replaced
        for port in self.words:  # in the healthchecks' python one-liners
            value = value.replace(f", {port})", f", {self.words[port]})")
            value = value.replace(f":{port}/", f":{self.words[port]}/")
        return value

    def argv(self, words: list[str]) -> list[str]:
        return [self.words.get(word, self.text(word)) for word in words]

    def env(self, service: dict[str, Any]) -> dict[str, str]:
        env = {key: self.text(value) for key, value in compose_environment(service).items()}
        if "DRS_POLLER_METRICS_PORT" in env:
            env["DRS_POLLER_METRICS_PORT"] = str(self.metrics_port)
            # The image listens on 0.0.0.0 (DRS_POLLER_METRICS_HOST), for compose's network.
            env["DRS_POLLER_METRICS_HOST"] = LOOPBACK
        return env


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


async def _start(start_container, images, service: dict[str, Any], loop: Loopback) -> Container:
    image = images.local if service["build"]["target"] == "local" else images.production
    # The compose healthcheck replaces the image's (which asks the poller's /healthz);
    # _healthy runs it.
    options = ["--no-healthcheck", *env_options(loop.env(service))]
    entrypoint = _as_list(service.get("entrypoint"))
    args = loop.argv(_as_list(service.get("command")))
    if entrypoint:
        options += ["--entrypoint", entrypoint[0]]
        args = [*loop.argv(entrypoint[1:]), *args]
    return await start_container(image, *options, args=tuple(args))


async def _healthy(container: Container, service: dict[str, Any], loop: Loopback) -> None:
    """The service's compose healthcheck, run in its container until it passes."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", test
    argv = loop.argv(test[1:])
    deadline = time.monotonic() + 120
    while True:
        code, _, _ = await adocker(container.docker, "exec", container.name, *argv)
        if code == 0:
            return
        state = (await container.inspect())["State"]
        if not state["Running"]:  # a one-shot service (init) may be done already
            assert state["ExitCode"] == 0, await container.logs()
            return
        assert time.monotonic() < deadline, f"not healthy: {argv}\n{await container.logs()}"
        await asyncio.sleep(0.5)


def test_the_project_services_reach_only_each_other_by_the_translated_addresses():
    services = compose()["services"]
    loop = Loopback()
    for name in PROJECT_SERVICES:
        service = services[name]
        words = [
            *loop.argv(_as_list(service.get("entrypoint"))),
            *loop.argv(_as_list(service.get("command"))),
            *loop.argv(service["healthcheck"]["test"]),
            *loop.env(service).values(),
        ]
        for word in words:
            assert "0.0.0.0" not in word, (name, word)  # noqa: S104
            assert not re.search(r"(ec2|dynamodb|drs-sim):|:(5000|8000|8081|9100)(?!\d)", word), (
                name,
                word,
            )
            assert word not in {"5000", "8081", "9100"}, (name, word)


async def test_the_compose_project_services_run_the_demo_workload_to_its_planned_end(
    images, start_container, docker
):
    services = compose()["services"]
    loop = Loopback()
    started: dict[str, Container] = {}
    # depends_on order: ec2; drs-sim after ec2; init after drs-sim (and dynamodb: ec2 here);
    # the poller once init has made the table.
    for name in PROJECT_SERVICES:
        for dependency, condition in services[name].get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy"
            assert dependency in started or dependency == "dynamodb", (name, dependency)
        started[name] = await _start(start_container, images, services[name], loop)
        await _healthy(started[name], services[name], loop)

    # init: the table, then `initiate` starts every wave and exits 0.
    code, out, err = await adocker(docker, "wait", started["init"].name, within=600)
    assert code == 0, err
    assert out.strip() == "0", await started["init"].logs()

    env = loop.env(services["poller"])
    # What init started: `initiate --executions 8 --speed 60` with the default seed (7).
    init_command = " ".join(_as_list(services["init"]["command"]))
    assert "initiate --executions 8 --speed 60" in init_command
    assert "--seed" not in init_command
    plans = plan_workload(executions=8, rng=random.Random(7))
    expected = {plan.execution_id: plan.expected_status for plan in plans}
    session = aioboto3.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
    )
    deadline = time.monotonic() + 600
    async with session.client(
        "dynamodb", endpoint_url=env["DRS_POLLER_DYNAMODB_ENDPOINT_URL"]
    ) as ddb:
        while True:
            scanned = await ddb.scan(TableName=env["DRS_POLLER_TABLE_NAME"], ConsistentRead=True)
            items = [to_python(item) for item in scanned["Items"]]
            statuses = {item["ExecutionId"]: item["Status"] for item in items}
            if set(statuses) == set(expected) and "POLLING" not in statuses.values():
                break
            state = (await started["poller"].inspect())["State"]
            assert state["Running"], await started["poller"].logs()
            assert time.monotonic() < deadline, statuses
            await asyncio.sleep(1.0)
    assert statuses == expected
