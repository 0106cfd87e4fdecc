"""The benchmark's local DynamoDB behind the recording proxy: moto server (the default) or
dynalite (``--dynamodb dynalite``).

Under W10k, moto server answers the daemon's writes in up to seconds and uses as much CPU
as the daemon (FINDINGS.md, issue 20). dynalite, a DynamoDB emulator on Node.js from
the npm registry, answers the same requests several times faster for a fraction of the
CPU, once three faults of version 4.0.0 are patched (``dynalite/dynalite-4.0.0.patch``):

- an ``=``, ``<>`` or ``IN`` condition compared lists and maps by object identity, so
  the daemon's fenced write (``#waves = :read_waves``) never held;
- ``ReturnValuesOnConditionCheckFailure`` was refused as an unknown parameter by
  UpdateItem, PutItem and DeleteItem, and a failed condition returned no item;
- Node's 5 s keep-alive timeout closed connections the proxy still reused
  (``dynalite/serve.js`` keeps them 65 s).

dynalite serves DynamoDB only: STS, SQS and EC2 stay on moto server. It is installed on
first use into ``benchmarks/dynalite/node_modules`` (``npm ci`` from the committed
``package-lock.json``, then the patch), and needs Node.js 20 or newer and npm.
``tests/benchmarks/test_bench_dynalite.py`` checks the patched behaviour through the
real aiobotocore client.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

HERE = Path(__file__).resolve().parent / "dynalite"
PATCH = HERE / "dynalite-4.0.0.patch"
LOCK = HERE / "package-lock.json"
STAMP = HERE / "node_modules" / ".patched"  # written once npm ci and the patch succeeded
LOOPBACK = "127.0.0.1"
BACKENDS = ("moto", "dynalite")
NODE_MAJOR = 20  # dynalite 4 needs Node.js 20 or newer
DESCRIPTIONS = {"moto": "moto server 5.1.22", "dynalite": "dynalite 4.0.0, patched"}


class LocalDynamoDBError(RuntimeError):
    """The local DynamoDB asked for cannot be installed or started here."""


def _installed() -> bool:
    return STAMP.exists() and all(
        STAMP.stat().st_mtime >= path.stat().st_mtime for path in (LOCK, PATCH)
    )


def _node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    missing = [name for name, path in (("node", node), ("npm", npm)) if path is None]
    if missing or node is None:
        raise LocalDynamoDBError(
            f"--dynamodb dynalite needs Node.js {NODE_MAJOR}+ and npm on PATH; not found: "
            f"{', '.join(missing)}. Use --dynamodb moto, or install Node.js."
        )
    version = subprocess.run(  # noqa: S603 - node found on PATH, asked its version
        [node, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < NODE_MAJOR:
        raise LocalDynamoDBError(
            f"--dynamodb dynalite needs Node.js {NODE_MAJOR} or newer; {node} is {version!r}"
        )
    return node


def ensure_dynalite(log: Callable[[str], None]) -> str:
    """Install the patched dynalite once (``npm ci`` from the lock, then the patch), and
    return the node executable to run it with."""
    node = _node()
    if _installed():
        return node
    log("installing dynalite 4.0.0 for the benchmark (npm ci, then its patch; once) ...")
    steps = [
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        ["patch", "-p1", "--forward", "--quiet", "-d", "node_modules/dynalite", "-i", str(PATCH)],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=HERE, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise LocalDynamoDBError(
                f"installing dynalite failed at `{' '.join(step)}` (in {HERE}):\n"
                f"{done.stdout}{done.stderr}".rstrip()
            )
    STAMP.touch()
    return node


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def dynalite_process(log: Callable[[str], None] = print) -> AsyncIterator[tuple[str, Any]]:
    """The patched dynalite on a free loopback port: yields its URL and process."""
    node = ensure_dynalite(log)
    port = free_port()
    # A file, not a pipe: a pipe nobody reads would stop Node once full.
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(  # noqa: ASYNC220, S603 - our own launcher, started before measuring
        [node, str(HERE / "serve.js"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
                break
            if proc.poll() is not None:
                errors.seek(0)
                error = errors.read().decode(errors="replace")
                raise LocalDynamoDBError(f"dynalite exited at start: {error.strip()}")
            await asyncio.sleep(0.05)
        else:
            raise LocalDynamoDBError(f"dynalite did not listen on {LOOPBACK}:{port} within 10 s")
        yield f"http://{LOOPBACK}:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        errors.close()
