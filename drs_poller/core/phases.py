"""Which phase an execution is in, and how soon it should be polled again.

DRS has no IN_PROGRESS job status: the phase is read from the job status, the
server launch statuses and the post-launch action runs together.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from drs_poller.core.models import ExecutionType, JobStatus, JobView, LaunchStatus, Unknown

if TYPE_CHECKING:
    from collections.abc import Iterable


class Phase(StrEnum):
    PENDING = "PENDING"  # snapshot and conversion; also "waiting for the next wave"
    STARTED = "STARTED"  # the short hand-over before servers launch
    IN_PROGRESS = "IN_PROGRESS"  # servers launching
    POST_LAUNCH = "POST_LAUNCH"  # RECOVERY: launched, post-launch actions running


# Ties between equal intervals break toward the phase that changes soonest.
_URGENCY = (Phase.STARTED, Phase.IN_PROGRESS, Phase.POST_LAUNCH, Phase.PENDING)


@dataclass(frozen=True, slots=True)
class Intervals:
    """Seconds between polls, by phase (the values come from the settings)."""

    pending: float
    started: float
    in_progress: float
    post_launch: float

    def of(self, phase: Phase) -> float:
        return {
            Phase.PENDING: self.pending,
            Phase.STARTED: self.started,
            Phase.IN_PROGRESS: self.in_progress,
            Phase.POST_LAUNCH: self.post_launch,
        }[phase]


def server_phase(job: JobView, source_server_id: str, *, mode: ExecutionType) -> Phase:
    """The phase of one still-active server, from what DRS reports for its job."""
    if job.status is JobStatus.PENDING:
        return Phase.PENDING
    participant = job.servers.get(source_server_id)
    launch_status = participant.launch_status if participant else None
    if isinstance(launch_status, Unknown):
        return Phase.IN_PROGRESS  # a value outside the model: not terminal (contract §2)
    if launch_status is LaunchStatus.LAUNCHED or job.status is JobStatus.COMPLETED:
        # Still active although launched (or its job is over): only a RECOVERY server
        # waiting for its post-launch actions is in that state.
        return Phase.POST_LAUNCH if mode is ExecutionType.RECOVERY else Phase.IN_PROGRESS
    if launch_status in (None, LaunchStatus.PENDING):
        return Phase.STARTED
    return Phase.IN_PROGRESS


def most_urgent(phases: Iterable[Phase], intervals: Intervals) -> Phase | None:
    """The phase with the shortest interval; None when there is no active phase."""
    candidates = set(phases)
    if not candidates:
        return None
    return min(candidates, key=lambda phase: (intervals.of(phase), _URGENCY.index(phase)))


def parse_phase(value: str | None) -> Phase | None:
    try:
        return Phase(value) if value is not None else None
    except ValueError:
        return None
