"""The Docker engine, the local Python base and the project's images, for tests/container.

No container registry is reachable from the machines the suite runs on, so the official
``python:3.11-slim-trixie`` cannot be pulled. The tests build a stand-in from Debian's own
packages instead: ``debootstrap`` a minimal Debian with python3 and pip, ``docker import``
it, and hand it to the Dockerfile as ``PYTHON_IMAGE``. It is cached in the engine's image
store under a tag derived from its recipe, so only the first run pays for debootstrap.

pip inside ``docker build`` must reach the package index the way pip on this machine
does: with the CA bundle pip here uses (and the index URL, when one is configured). Those
go into a second, build-only base (``BUILD_PYTHON_IMAGE``), which only the Dockerfile's
build stages use; the runtime stages, and so the production image, never hold them.

Everything here drives the ``docker`` CLI with argument lists (never a shell) and only
ever with ``--network host`` and 127.0.0.1 addresses: the engine runs with no bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
DOCKERFILE = REPO / "Dockerfile"

# The local base: Debian's python3 (3.11 in bookworm, the project's minimum) and pip, which
# the Dockerfile's build stages use (`pip --python`, `pip wheel`) and its runtime stage
# uninstalls. pip is installed from Debian's pip wheel (python3-pip-whl) into /usr/local,
# where the official image has it: Debian's own python3-pip lives in /usr/lib/python3 and
# its pip refuses to uninstall itself from there. python-is-python3: the Dockerfile says
# `python`, as the official image has it.
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-pip-whl", "python-is-python3", "ca-certificates")
# Bump when the way the base is made changes, so cached bases are not reused.
BASE_RECIPE_VERSION = "2"
BASE_REPOSITORY = "drs-poller-test/python-base"
BUILD_BASE_REPOSITORY = "drs-poller-test/python-build-base"
IMAGE_REPOSITORY = "drs-poller-test/drs-poller"
# Every image and container the tests make carries this label.
LABEL = "drs-poller-test"
# The Debian image's environment, as the official image sets it.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where the build-only base keeps pip's CA bundle.
BUILD_CA_PATH = "/etc/drs-poller-build/pip-ca.pem"

# Seconds and sizes a session measured, for its terminal summary (docs/operations.md
# quotes them).
MEASURED: dict[str, str] = {}

BUILD_TIMEOUT = 1800.0  # a cold build downloads the locked wheels from the index


class EngineUnavailableError(Exception):
    """No Docker engine answers, or the base cannot be built here: skip, or fail in CI."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> None:
    """The rule tests/deploy has for its tools: skip with the reason on a developer
    machine, fail under CI=true, so CI can never go green without the engine."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def run(
    argv: list[str], *, timeout: float = 120.0, check: bool = True, **options: object
) -> subprocess.CompletedProcess[str]:
    """A tool of the suite's choosing (docker, debootstrap, tar), never shell input."""
    result = subprocess.run(  # noqa: S603
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        **options,  # type: ignore[call-overload]
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


# --- the engine ------------------------------------------------------------------------


def docker_environment() -> dict[str, str]:
    # The classic builder: Debian's engine (20.10) has no buildx plugin for a newer CLI,
    # and the Dockerfile needs nothing BuildKit adds.
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def find_docker() -> str:
    """The docker CLI, once the engine answers it."""
    docker = shutil.which("docker")
    if docker is None:
        raise EngineUnavailableError("no docker CLI (apt-get install docker.io; ./dev test does)")
    result = run([docker, "info", "--format", "{{json .ServerVersion}}"], check=False)
    if result.returncode != 0:
        raise EngineUnavailableError(
            "no Docker engine answers (./dev test starts dockerd as root): "
            + (result.stderr.strip().splitlines() or ["?"])[-1]
        )
    return docker


# --- what pip on this machine uses -----------------------------------------------------


def _pip_config() -> dict[str, str]:
    """``pip config list`` of this Python's pip: ``global.cert`` → value, env included."""
    result = run(
        [os.environ.get("PYTHON", "python3"), "-m", "pip", "config", "list"],
        check=False,
    )
    values: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def pip_ca_bundle() -> Path | None:
    """The CA bundle pip here verifies the index with, if it is told one."""
    config = _pip_config()
    for candidate in (
        os.environ.get("PIP_CERT"),
        config.get(":env:.cert"),
        config.get("global.cert"),
        config.get("install.cert"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        os.environ.get("SSL_CERT_FILE"),
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def pip_index_url() -> str | None:
    """The index pip here uses, when it is not the default (only http(s): a file:// index
    on this machine's disk means nothing inside a build)."""
    config = _pip_config()
    for candidate in (
        os.environ.get("PIP_INDEX_URL"),
        config.get(":env:.index-url"),
        config.get("global.index-url"),
        config.get("install.index-url"),
    ):
        if candidate and candidate.startswith(("http://", "https://")):
            return candidate
    return None


# --- the Debian mirror apt uses --------------------------------------------------------


def _apt_sources() -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of every ``deb`` source apt is configured with."""
    root = Path("/etc/apt")
    lists = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for raw in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", " ", raw.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]]
    for path in sorted((root / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split()


def debian_mirror() -> str:
    """The Debian archive apt on this machine installs from (not the security archive):
    debootstrap fetches the base from the same place."""
    release = Path("/etc/os-release")
    fields = (
        dict(line.split("=", 1) for line in release.read_text().splitlines() if "=" in line)
        if release.is_file()
        else {}
    )
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if fields.get("ID", "").strip('"') != "debian" or not codename:
        raise EngineUnavailableError("the local Python base is built with Debian's apt sources")
    for uri, suites in _apt_sources():
        if "security" in uri or not uri.startswith(("http://", "https://")):
            continue
        # The source of this machine's own release is Debian's main archive, which has
        # every release (other sources list suites of their own: "nodistro", "cloud-sdk-*").
        if codename in suites:
            return uri
    raise EngineUnavailableError("no Debian archive among apt's sources for debootstrap")


# --- the local base --------------------------------------------------------------------


def _image_exists(docker: str, tag: str) -> bool:
    return run([docker, "image", "inspect", tag], check=False).returncode == 0


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """One builder at a time for a shared image (two suites may start together)."""
    path = Path(tempfile.gettempdir()) / f"{name}.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")), reverse=True)


def _debootstrap(rootfs: Path) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise EngineUnavailableError("no debootstrap (apt-get install debootstrap; ./dev does)")
    if os.geteuid() != 0:
        raise EngineUnavailableError("debootstrap needs root to build the local Python base")
    argv = [
        debootstrap,
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        SUITE,
        str(rootfs),
        debian_mirror(),
    ]
    result = run(argv, check=False, timeout=1800)
    if result.returncode != 0:
        log = rootfs / "debootstrap" / "debootstrap.log"
        detail = log.read_text()[-3000:] if log.is_file() else result.stderr[-3000:]
        raise AssertionError(f"debootstrap failed ({result.returncode}):\n{detail}")


def _install_pip(rootfs: Path) -> None:
    """pip into /usr/local, as the official image has it. Debian marks its Python
    externally managed (PEP 668), which the official image does not: the marker goes,
    then pip installs itself from its own wheel, offline."""
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    wheels = sorted((rootfs / "usr/share/python-wheels").glob("pip-*.whl"))
    assert wheels, "python3-pip-whl installed no pip wheel"
    wheel = "/" + str(wheels[-1].relative_to(rootfs))
    run(
        [
            "chroot",
            str(rootfs),
            "python3",
            f"{wheel}/pip",
            "install",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            wheel,
        ],
        timeout=300,
        env={"PATH": BASE_PATH, "PIP_ROOT_USER_ACTION": "ignore", "LANG": "C.UTF-8"},
    )


def _trim(rootfs: Path) -> None:
    """What an image needs no copy of."""
    for directory in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "tmp"):
        target = rootfs / directory
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()


def base_tag() -> str:
    recipe = json.dumps([SUITE, BASE_PACKAGES, BASE_RECIPE_VERSION])
    return f"{BASE_REPOSITORY}:{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class BaseImages:
    runtime: str  # PYTHON_IMAGE: Debian's python3 and pip, nothing of this machine's
    build: str  # BUILD_PYTHON_IMAGE: the same plus pip's CA bundle (and index) from here
    built_seconds: float  # 0 when both came from the engine's cache


def ensure_base(docker: str) -> str:
    """The local Python base, built with debootstrap unless the engine already has it."""
    tag = base_tag()
    if _image_exists(docker, tag):
        return tag
    with _lock("drs-poller-test-base"):
        if _image_exists(docker, tag):
            return tag
        work = Path(tempfile.mkdtemp(prefix="drs-poller-base-", dir="/var/tmp"))
        rootfs = work / "rootfs"
        try:
            _debootstrap(rootfs)
            _install_pip(rootfs)
            _trim(rootfs)
            tarball = work / "rootfs.tar"
            run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], timeout=600)
            run(
                [
                    docker,
                    "import",
                    "--change",
                    f"ENV PATH={BASE_PATH}",
                    "--change",
                    "ENV LANG=C.UTF-8",
                    "--change",
                    f"LABEL {LABEL}=base",
                    "--change",
                    'CMD ["python3"]',
                    str(tarball),
                    tag,
                ],
                timeout=600,
            )
        finally:
            leftover = _mounts_under(rootfs) if rootfs.exists() else []
            for mount in leftover:
                run(["umount", "--lazy", mount], check=False)
            if not (rootfs.exists() and _mounts_under(rootfs)):
                shutil.rmtree(work, ignore_errors=True)
    return tag


def ensure_build_base(docker: str, base: str) -> str:
    """``base`` plus pip's CA bundle and index from this machine, for the build stages."""
    ca = pip_ca_bundle()
    index = pip_index_url()
    digest = hashlib.sha256()
    digest.update(base.encode())
    digest.update(ca.read_bytes() if ca else b"")
    digest.update((index or "").encode())
    tag = f"{BUILD_BASE_REPOSITORY}:{digest.hexdigest()[:12]}"
    if _image_exists(docker, tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="drs-poller-build-base-") as context:
        lines = [f"FROM {base}", f"LABEL {LABEL}=build-base"]
        if ca is not None:
            shutil.copyfile(ca, Path(context) / "pip-ca.pem")
            lines += [f"COPY pip-ca.pem {BUILD_CA_PATH}", f"ENV PIP_CERT={BUILD_CA_PATH}"]
        if index is not None:
            lines.append(f"ENV PIP_INDEX_URL={index}")
        (Path(context) / "Dockerfile").write_text("\n".join(lines) + "\n")
        run(
            [docker, "build", "--network", "host", "-t", tag, context],
            timeout=600,
            env=docker_environment(),
        )
    return tag


def _drop_other_tags(docker: str, repository: str, keep: str) -> None:
    """Bases of an earlier recipe or CA bundle: nothing builds on them any more."""
    listed = run([docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository])
    stale = [tag for tag in listed.stdout.split() if tag != keep]
    if stale:
        run([docker, "rmi", *stale], check=False)


def ensure_bases(docker: str) -> BaseImages:
    started = time.monotonic()
    cached = _image_exists(docker, base_tag())
    base = ensure_base(docker)
    build = ensure_build_base(docker, base)
    _drop_other_tags(docker, BUILD_BASE_REPOSITORY, build)
    _drop_other_tags(docker, BASE_REPOSITORY, base)
    return BaseImages(
        runtime=base, build=build, built_seconds=0.0 if cached else time.monotonic() - started
    )


# --- the project's images --------------------------------------------------------------


def image_tag(target: str) -> str:
    # One tag per checkout, so two worktrees on one engine do not overwrite each other.
    checkout = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
    return f"{IMAGE_REPOSITORY}:{target}-{checkout}"


def build_target(docker: str, bases: BaseImages, target: str) -> str:
    """``docker build --target target`` of this repository's Dockerfile on the local bases."""
    tag = image_tag(target)
    run(
        [
            docker,
            "build",
            "--network",
            "host",
            "--build-arg",
            f"PYTHON_IMAGE={bases.runtime}",
            "--build-arg",
            f"BUILD_PYTHON_IMAGE={bases.build}",
            "--target",
            target,
            "--label",
            f"{LABEL}=image",
            "-t",
            tag,
            str(REPO),
        ],
        timeout=BUILD_TIMEOUT,
        env=docker_environment(),
    )
    return tag


def image_size(docker: str, tag: str) -> int:
    return int(run([docker, "image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip())


# --- containers (async: the DRS simulator serves on the tests' event loop) ---------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


async def adocker(docker: str, *args: str, within: float = 120.0) -> tuple[int, str, str]:
    """The docker CLI without blocking the event loop (the DRS simulator serves on it)."""
    proc = await asyncio.create_subprocess_exec(
        docker,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Container:
    docker: str
    name: str

    async def inspect(self) -> dict[str, Any]:
        code, out, err = await adocker(self.docker, "inspect", self.name)
        assert code == 0, err
        return json.loads(out)[0]

    async def logs(self) -> str:
        _, out, err = await adocker(self.docker, "logs", self.name)
        return out + err

    async def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for text in (await self.logs()).splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("event") == name:
                found.append(line)
        return found

    async def wait_for_event(self, name: str, *, within: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = await self.events(name)
            if found:
                return found[0]
            state = (await self.inspect())["State"]
            if not state["Running"]:
                raise AssertionError(f"container exited before {name!r}:\n{await self.logs()}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"no {name!r} within {within} s:\n{await self.logs()}")


# --- docker-compose.yml ----------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def env_options(env: dict[str, str]) -> list[str]:
    options = []
    for key, value in env.items():
        options += ["--env", f"{key}={value}"]
    return options


def stop_timeout_of_the_template() -> int:
    """The ECS task's ``StopTimeout`` in deploy/cloudformation/drs-poller.yaml."""
    text = (REPO / "deploy" / "cloudformation" / "drs-poller.yaml").read_text()
    found = [int(n) for n in re.findall(r"^\s*StopTimeout:\s*(\d+)", text, re.MULTILINE)]
    assert len(found) == 1, found
    return found[0]
