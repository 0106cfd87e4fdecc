"""The Dockerfile and .dockerignore: linted by hadolint, and the properties the image must
have checked one by one (no Docker engine runs here, so the image itself is never built
in the suite; docs/reference.md "Container image and docker compose" says how to build it)."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def text(self) -> str:
        return "\n".join(f"{i.keyword} {i.arguments}" for i in self.instructions)


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions grouped by stage: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
            continue
        assert stages, f"{keyword} before the first FROM"
        stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def stage_named(stages: list[Stage], name: str) -> Stage:
    return next(s for s in stages if s.name == name)


def lineage(stages: list[Stage], stage: Stage) -> list[Stage]:
    """The stage, the stages it is built FROM, and those it copies files from."""
    by_name = {s.name: s for s in stages}
    seen: list[Stage] = []
    todo = [stage]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        if current.base in by_name:
            todo.append(by_name[current.base])
        for copy in current.all("COPY"):
            source = re.search(r"--from=(\S+)", copy.arguments)
            if source and source.group(1) in by_name:
                todo.append(by_name[source.group(1)])
    return seen


def run(argv: list[str], **options) -> subprocess.CompletedProcess[str]:
    """A tool of the test's choosing (hadolint, this Python), never shell input."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, **options)  # noqa: S603


def bases(stages: list[Stage], stage: Stage) -> list[Stage]:
    """The stage and the stages it is built FROM (not those it copies from)."""
    by_name = {s.name: s for s in stages}
    chain = [stage]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return chain


# --- hadolint --------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile(hadolint):
    result = run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(hadolint, tmp_path):
    # The same call on a Dockerfile with an unpinned base and a shell-form ENTRYPOINT fails,
    # so the test above cannot pass just because hadolint ran.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install moto\nENTRYPOINT drs-poller run\n")
    result = run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(bad)],
    )
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3025"):  # latest tag, unpinned pip, shell-form
        assert rule in result.stdout


# --- the properties that matter, one by one -------------------------------------------


def test_multi_stage_with_production_last_and_a_local_target(stages):
    names = [s.name for s in stages]
    assert len(stages) >= 3, names
    assert names[-1] == "production", "a plain `docker build .` must give the production image"
    assert "local" in names
    assert len(set(names)) == len(names)


def test_every_base_is_a_pinned_slim_official_python(stages):
    names = {s.name for s in stages}
    external = [s.base for s in stages if s.base not in names]  # not built on a stage here
    assert external
    for base in external:
        match = re.fullmatch(
            r"python:(\d+)\.(\d+)(?:\.\d+)?-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?", base
        )
        assert match, f"{base}: not a pinned slim official Python image"
        assert (int(match.group(1)), int(match.group(2))) >= (3, 11)
    assert len(set(external)) == 1, "build and runtime stages share one base"


@pytest.mark.parametrize("target", ["production", "local"])
def test_runtime_user_is_not_root(stages, target):
    chain = bases(stages, stage_named(stages, target))
    users = [i.arguments for s in chain for i in s.all("USER")]
    assert users, f"{target}: no USER"
    # The last USER wins; bases() lists the stage itself first, then what it is built on.
    user = users[0].split(":")[0]
    assert user not in {"root", "0"}
    assert re.fullmatch(r"\d+", user), "a numeric uid lets orchestrators verify runAsNonRoot"


def _json_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.arguments)
    assert isinstance(value, list), instruction
    return value


def _final(stages: list[Stage], target: str, keyword: str) -> Instruction:
    found = [i for s in bases(stages, stage_named(stages, target)) for i in s.all(keyword)]
    assert found, f"{target}: no {keyword}"
    return found[0]


@pytest.mark.parametrize("target", ["production", "local"])
def test_entrypoint_is_exec_form_drs_poller_run(stages, target):
    # Exec form: drs-poller is PID 1 and gets SIGTERM itself (no shell in between).
    assert _json_form(_final(stages, target, "ENTRYPOINT")) == ["drs-poller"]
    assert _json_form(_final(stages, target, "CMD")) == ["run"]
    assert _final(stages, target, "STOPSIGNAL").arguments == "SIGTERM"
    env = " ".join(
        i.arguments for s in bases(stages, stage_named(stages, target)) for i in s.all("ENV")
    )
    assert "PYTHONUNBUFFERED=1" in env


def test_healthcheck_asks_healthz_with_python_in_exec_form(stages):
    check = _final(stages, "production", "HEALTHCHECK").arguments
    options, _, command = check.partition("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]
    assert "urllib" in argv[2]
    for option in ("--interval=", "--timeout=", "--start-period="):
        assert option in options


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_command_passes_on_200_and_fails_on_503(stages, status, healthy):
    """The HEALTHCHECK's own python code, run against a /healthz that answers ``status``."""
    code = json.loads(_final(stages, "production", "HEALTHCHECK").arguments.partition("CMD ")[2])
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run(
            [sys.executable, *code[1:]],
            env={**os.environ, "DRS_POLLER_METRICS_PORT": str(server.server_port)},
            timeout=30,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr


def _install_commands(chain: list[Stage]) -> list[str]:
    return [
        part
        for stage in chain
        for run in stage.all("RUN")
        for part in run.arguments.split("&&")
        if " install " in part
    ]


def test_no_moto_in_the_production_image(stages):
    # Everything the production image holds comes from its stages and the stages it copies
    # from: none of them installs moto or the [local] extra.
    installs = _install_commands(lineage(stages, stage_named(stages, "production")))
    assert installs
    for command in installs:
        assert "moto" not in command
        assert "requirements-local" not in command
        assert "[local]" not in command
    # ...while the local image does install the [local] extra.
    local = _install_commands(lineage(stages, stage_named(stages, "local")))
    assert any("requirements-local" in command for command in local)
    # The requirement list handed to the production install really has no moto.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any("moto" in r for r in project["dependencies"])
    assert any("moto" in r for r in project["optional-dependencies"]["local"])


def test_installs_only_wheels_pinned_by_the_lock(stages):
    installs = [
        i.arguments
        for s in stages
        for i in s.all("RUN")
        for part in i.arguments.split("&&")
        if "install" in part and "-r " in part
    ]
    assert installs
    for run in installs:
        for part in run.split("&&"):
            if " install " in part and "-r " in part:
                assert "--only-binary=:all:" in part, part
                assert "-c requirements/lock.txt" in part, part


def test_runtime_stages_carry_no_build_tools_or_caches(stages):
    for target in ("production", "local"):
        chain = bases(stages, stage_named(stages, target))
        runtime_text = "\n".join(s.text() for s in chain)
        assert "apt-get install" not in runtime_text
        assert "gcc" not in runtime_text
        copies = [i.arguments for s in chain for i in s.all("COPY")]
        # The runtime stages take one virtualenv from a build stage, nothing else.
        assert all("--from=build" in c and "/opt/drs-poller" in c for c in copies), copies


def test_the_dockerfile_reads_the_dependencies_from_pyproject(tmp_path):
    """The RUN step's own python one-liners, run on the real pyproject.toml."""
    text = DOCKERFILE.read_text()
    snippets = re.findall(r'python -c "(import tomllib;[^"]+)" > (/tmp/[\w.-]+)', text)
    assert len(snippets) == 2
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = {
        "/tmp/requirements.txt": project["dependencies"],  # noqa: S108 - a path in the image
        "/tmp/requirements-local.txt": project["optional-dependencies"]["local"],  # noqa: S108
    }
    for code, target in snippets:
        result = run(
            [sys.executable, "-c", code],
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == expected[target]
    assert not any("moto" in r for r in project["dependencies"])


# --- .dockerignore ---------------------------------------------------------------------


def _copied_sources(stages: list[Stage]) -> list[str]:
    sources = []
    for stage in stages:
        for copy in stage.all("COPY"):
            if "--from=" in copy.arguments:
                continue
            words = [w for w in shlex.split(copy.arguments) if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


def test_dockerignore_is_an_allowlist_of_what_the_dockerfile_copies(stages):
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "exclude everything, then allow what the build copies"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = _copied_sources(stages)
    assert sources
    for source in sources:
        assert source.rstrip("/") in allowed, f"COPY {source} but .dockerignore excludes it"
        assert (REPO / source).exists(), source
    for never in (".venv", ".git", "tests", "deploy"):
        assert never not in allowed
    assert "**/__pycache__" in lines


def test_every_locked_name_covers_the_image_dependencies():
    lock = {
        re.split(r"[=<>\[]", line)[0].lower().replace("_", "-")
        for line in (REPO / "requirements/lock.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["local"]]:
        name = re.split(r"[=<>\[ ;]", requirement)[0].lower().replace("_", "-")
        assert name in lock, f"{name} is not pinned in requirements/lock.txt"
