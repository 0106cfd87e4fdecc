"""tests/container: the image built from this repository's Dockerfile and run in a real
Docker engine, its promises checked from outside the container.

The images are built once per session (session fixtures), on a local Python base made
from Debian's packages (``engine.py`` says why and how). Every container runs with
``--network host`` and talks only to 127.0.0.1: the engine has no bridge network.
Containers carry a per-session label and are removed after each test and, whatever is
left, at the end of the session.

No engine (or no root to build the base): the tests skip on a developer machine and
fail under ``CI=true``, as tests/deploy does for its tools.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass

import pytest
from engine import (
    LABEL,
    MEASURED,
    BaseImages,
    Container,
    EngineUnavailableError,
    adocker,
    build_target,
    ensure_bases,
    find_docker,
    image_size,
    run,
    unavailable,
)

SESSION = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def docker() -> str:
    try:
        return find_docker()
    except EngineUnavailableError as error:
        unavailable(str(error))
        raise  # pragma: no cover - _unavailable raises


@pytest.fixture(scope="session")
def bases(docker) -> BaseImages:
    try:
        built = ensure_bases(docker)
    except EngineUnavailableError as error:
        unavailable(str(error))
        raise  # pragma: no cover - _unavailable raises
    MEASURED["local base"] = (
        f"built in {built.built_seconds:.0f} s (cold)" if built.built_seconds else "cached"
    )
    MEASURED["local base size"] = f"{image_size(docker, built.runtime) / 1e6:.0f} MB"
    return built


@dataclass(frozen=True)
class Images:
    production: str
    local: str
    base: str


@pytest.fixture(scope="session")
def images(docker, bases) -> Images:
    tags = {}
    # build-local first, tagged: the classic builder keeps a stage's result only as an
    # untagged image, which would stay behind on every source change; under a tag, the
    # previous one turns dangling and is pruned below with the others.
    for target in ("build-local", "production", "local"):
        started = time.monotonic()
        tags[target] = build_target(docker, bases, target)
        MEASURED[f"build {target}"] = f"{time.monotonic() - started:.0f} s"
    for target in ("production", "local"):
        MEASURED[f"{target} image size"] = f"{image_size(docker, tags[target]) / 1e6:.0f} MB"
    # Earlier builds' images under the same tags are now dangling: drop them.
    run([docker, "image", "prune", "--force", "--filter", f"label={LABEL}=image"], check=False)
    return Images(production=tags["production"], local=tags["local"], base=bases.runtime)


@pytest.fixture(scope="session", autouse=True)
def _remove_the_session_containers():
    yield
    docker = shutil.which("docker")
    if docker is None:
        return
    listed = run(
        [docker, "ps", "--all", "--quiet", "--filter", f"label={LABEL}.session={SESSION}"],
        check=False,
    )
    ids = listed.stdout.split()
    if listed.returncode == 0 and ids:
        run([docker, "rm", "--force", *ids], check=False)


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASURED:
        terminalreporter.section("tests/container: measured")
        for what, value in MEASURED.items():
            terminalreporter.write_line(f"{what}: {value}")


@pytest.fixture
async def start_container(docker):
    """``start_container(image, *docker_run_options, args=[...])``: a detached container on
    the host network, labelled for this session, removed after the test."""
    started: list[str] = []

    async def start(image: str, *options: str, args: tuple[str, ...] = ()) -> Container:
        name = f"drs-poller-test-{SESSION}-{len(started)}-{uuid.uuid4().hex[:6]}"
        code, _, err = await adocker(
            docker,
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            "--label",
            f"{LABEL}.session={SESSION}",
            *options,
            image,
            *args,
        )
        assert code == 0, err
        started.append(name)
        return Container(docker=docker, name=name)

    yield start
    for name in started:
        await adocker(docker, "rm", "--force", name)
