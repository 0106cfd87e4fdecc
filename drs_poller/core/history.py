"""Transition history: one entry per observed change, bounded in length.

An execution of 100 servers (DRS's per-job maximum) must stay far below
DynamoDB's 400 KB item limit however long it runs, so each server keeps only
its newest ``limit`` transitions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drs_poller.clock import epoch

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def append_transition(
    history: Sequence[Mapping[str, Any]] | None, *, status: str, at: float, limit: int
) -> list[dict[str, Any]]:
    entries = [dict(entry) for entry in history or () if isinstance(entry, dict)]
    if entries and entries[-1].get("status") == status:
        return entries
    entries.append({"status": status, "timestamp": epoch(at)})
    return entries[-limit:]
