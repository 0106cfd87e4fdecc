"""py-spy profiles of the processes in a benchmark run, and a summary of where time goes.

``./dev bench --profile`` runs ``py-spy record --format raw`` (collapsed stacks) on the
tracker, on moto server and on the benchmark's own process (the DRS simulator and the
DynamoDB proxy) for the measured period. py-spy comes with the ``bench`` extra, which
``./dev bench`` installs. ``python -m benchmarks.profiles FILE...`` prints the
summary of collapsed-stack files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def executable() -> str | None:
    """py-spy's path: beside this interpreter (the bench extra), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(*, pid: int, path: Path, seconds: float, rate: int = 50) -> Any:
    """Start py-spy on ``pid`` for ``seconds``; None when py-spy is not installed."""
    exe = executable()
    if exe is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(  # noqa: S603 - py-spy on our own child processes
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _where(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match.group("file")
    for marker in ("site-packages/", "python3.11/", "wt-bench/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match.group('function')} ({file})"


def summarise(path: Path, *, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares of the hottest functions, and of packages."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_where(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if "select (selectors.py)" in leaf or leaf.startswith("select ("):
            idle += count
            continue
        own[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
        package = leaf.rpartition("(")[2].split("/")[0].rstrip(")")
        packages[package] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "idle_percent": round(100 * idle / total, 1) if total else None,
        "self": share(own),
        "inclusive": share(inclusive),
        "packages": share(packages),
    }


if __name__ == "__main__":
    import json

    for name in sys.argv[1:]:
        print(name, json.dumps(summarise(Path(name)), indent=1))  # noqa: T201
