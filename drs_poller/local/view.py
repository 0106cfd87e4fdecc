"""The demo's live view: one row per execution (phase, servers launched, elapsed, status).

On a terminal the rows are redrawn in place with ANSI escapes; elsewhere (a pipe, a
CI log) a plain progress line is printed every few seconds and when something
finishes, so a log stays readable. Rows are built by pure functions from the plan
and the table items, so tests check them without a terminal.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from drs_poller.core.models import FINAL_STATUSES

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from drs_poller.local.scenarios import ExecutionPlan

# In plain mode, a progress line at least this often (seconds), and whenever the
# number of finished executions changes.
PLAIN_EVERY = 5.0
RECENT_EVENTS = 4
_CLEAR_LINE = "\x1b[2K"


def _cursor_up(lines: int) -> str:
    return f"\x1b[{lines}F" if lines else ""


@dataclass(frozen=True)
class Row:
    execution_id: str
    kind: str
    phase: str
    launched: int
    servers: int
    elapsed: float | None
    status: str  # the final status, or "" while it runs
    expected: str

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


def launched_servers(item: Mapping[str, Any]) -> int:
    """Servers that have launched (the daemon writes LaunchedTime when DRS says LAUNCHED)."""
    return sum(
        1
        for wave in item.get("Waves") or []
        for server in wave.get("Servers") or []
        if server.get("LaunchedTime") is not None
    )


def build_rows(
    plans: Sequence[ExecutionPlan], items: Mapping[str, Mapping[str, Any]], *, now: float
) -> list[Row]:
    rows = []
    for plan in plans:
        item = items.get(plan.execution_id)
        if item is None:
            rows.append(
                Row(plan.execution_id, plan.kind.value, "not started", 0, plan.server_count,
                    None, "", plan.expected_status)
            )  # fmt: skip
            continue
        status = str(item.get("Status") or "")
        finished = status in FINAL_STATUSES
        start = float(item["StartTime"])
        end = float(item["EndTime"]) if finished and "EndTime" in item else now
        phase = "done" if finished else str(item.get("Phase") or "awaiting first poll")
        rows.append(
            Row(
                execution_id=plan.execution_id,
                kind=plan.kind.value,
                phase=phase,
                launched=launched_servers(item),
                servers=plan.server_count,
                elapsed=max(0.0, end - start),
                status=status if finished else "",
                expected=plan.expected_status,
            )
        )
    return rows


def render_rows(rows: Sequence[Row], *, speed: float) -> list[str]:
    header = ("execution", "phase", "launched", "elapsed", "status", "scenario")
    table = [header]
    for row in rows:
        elapsed = (
            ""
            if row.elapsed is None
            else f"{row.elapsed:5.1f} s ≈ {row.elapsed * speed / 60:4.1f} min"
        )
        table.append(
            (
                row.execution_id,
                row.phase,
                f"{row.launched}/{row.servers}",
                elapsed,
                row.status or "…",
                row.kind,
            )
        )
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


def progress_line(rows: Sequence[Row]) -> str:
    finished = sum(1 for row in rows if row.finished)
    launched = sum(row.launched for row in rows)
    servers = sum(row.servers for row in rows)
    phases: dict[str, int] = {}
    for row in rows:
        if not row.finished:
            phases[row.phase] = phases.get(row.phase, 0) + 1
    shown = ", ".join(f"{phase} {count}" for phase, count in sorted(phases.items()))
    return f"{finished}/{len(rows)} finished, {launched}/{servers} servers launched" + (
        f" · running: {shown}" if shown else ""
    )


class LiveView:
    """Draws the rows; ``tty=None`` asks the stream whether it is a terminal."""

    def __init__(
        self, *, speed: float, started: float, stream: TextIO | None = None, tty: bool | None = None
    ) -> None:
        self.speed = speed
        self.started = started
        self._stream = stream
        self.tty = self.stream.isatty() if tty is None else tty
        self._drawn = 0
        self._events: list[str] = []
        self._last_plain = float("-inf")
        self._last_finished = -1
        self._reported: set[str] = set()
        self.note = ""  # a line under the progress line (the DRS events the daemon received)

    @property
    def stream(self) -> TextIO:
        # Resolved per write, so a capturing test (or a redirected stdout) sees everything.
        return self._stream or sys.stdout

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str = "") -> None:
        """A line outside the live area (headers, the summary)."""
        self.stream.write(text + "\n")
        self.stream.flush()

    def event(self, text: str) -> None:
        stamped = f"[{self.elapsed():5.1f} s] {text}"
        if self.tty:
            self._events = [*self._events, stamped][-RECENT_EVENTS:]
        else:
            self.line(stamped)

    def update(self, rows: Sequence[Row], *, force: bool = False) -> None:
        for row in rows:
            if row.finished and row.execution_id not in self._reported:
                self._reported.add(row.execution_id)
                verdict = (
                    "as expected" if row.status == row.expected else "EXPECTED " + row.expected
                )
                self.event(
                    f"{row.execution_id} {row.status} ({verdict}) after {row.elapsed or 0:.1f} s, "
                    f"{row.launched}/{row.servers} launched"
                )
        if self.tty:
            self._redraw(rows)
            return
        finished = sum(1 for row in rows if row.finished)
        now = self.elapsed()
        if force or finished != self._last_finished or now - self._last_plain >= PLAIN_EVERY:
            note = f" · {self.note}" if self.note else ""
            self.line(f"[{now:5.1f} s] {progress_line(rows)}{note}")
            self._last_plain = now
            self._last_finished = finished

    def _redraw(self, rows: Sequence[Row]) -> None:
        lines = [
            f"[{self.elapsed():5.1f} s] {progress_line(rows)}",
            *([self.note] if self.note else []),
            *render_rows(rows, speed=self.speed),
            *self._events,
        ]
        out = [_cursor_up(self._drawn)]
        out.extend(f"{_CLEAR_LINE}{line}\n" for line in lines)
        # Lines left over from a taller previous frame are cleared, not left behind.
        out.extend(f"{_CLEAR_LINE}\n" for _ in range(self._drawn - len(lines)))
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = max(len(lines), self._drawn)

    def finish(self) -> None:
        """Stop redrawing: later output goes below the last frame."""
        self._drawn = 0


__all__ = ["LiveView", "Row", "build_rows", "launched_servers", "progress_line", "render_rows"]
