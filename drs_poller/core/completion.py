"""The completion rules of contract §2: when a server, a wave and an execution are done.

Outcomes are derived from the attributes the contract names, so the decision
can be re-made from the item alone by any replica after any restart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from drs_poller.core.models import ExecutionType, LaunchStatus, PostLaunchStatus, Server

if TYPE_CHECKING:
    from collections.abc import Sequence


class Outcome(StrEnum):
    NOT_STARTED = "NOT_STARTED"  # no job yet (a later wave): blocks finalization
    ACTIVE = "ACTIVE"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (Outcome.SUCCEEDED, Outcome.FAILED)


_RECOVERY_DONE = frozenset({PostLaunchStatus.COMPLETED, PostLaunchStatus.NOT_CONFIGURED})


def server_outcome(server: Server, mode: ExecutionType) -> Outcome:
    failed = (
        server.error is not None
        or server.status == LaunchStatus.FAILED
        or server.post_launch_status == PostLaunchStatus.FAILED
    )
    if server.job_id is None:
        # FAILED without a job: the initiator could not start it. Terminal and failed.
        return Outcome.FAILED if failed else Outcome.NOT_STARTED
    if failed:
        return Outcome.FAILED
    if server.launched_time is None:
        return Outcome.ACTIVE
    if mode is ExecutionType.DRILL or server.post_launch_status in _RECOVERY_DONE:
        return Outcome.SUCCEEDED
    return Outcome.ACTIVE


def final_status(outcomes: Sequence[Outcome], *, has_empty_wave: bool = False) -> str | None:
    """COMPLETED / PARTIAL / FAILED once every outcome is terminal, else None.

    A wave with no servers recovered nothing: it counts as one failed unit, so an
    execution that contains one can never be COMPLETED.
    """
    if any(not outcome.terminal for outcome in outcomes):
        return None
    succeeded = sum(outcome is Outcome.SUCCEEDED for outcome in outcomes)
    total = len(outcomes) + (1 if has_empty_wave else 0)
    if total == 0 or succeeded == 0:
        return "FAILED"
    return "COMPLETED" if succeeded == total else "PARTIAL"
