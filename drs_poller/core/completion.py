"""The completion rules of contract §2: when a server, a wave and an execution are done.

Outcomes are derived from the attributes the contract names, so the decision
can be re-made from the item alone by any replica after any restart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from drs_poller.clock import epoch
from drs_poller.core.models import (
    ExecutionType,
    FinalStatus,
    LaunchStatus,
    PostLaunchStatus,
    Server,
    peek_start_time,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


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


def final_status(
    outcomes: Sequence[Outcome], *, has_empty_wave: bool = False
) -> FinalStatus | None:
    """COMPLETED / PARTIAL / FAILED once every outcome is terminal, else None.

    A wave with no servers recovered nothing: it counts as one failed unit, so an
    execution that contains one can never be COMPLETED.
    """
    if any(not outcome.terminal for outcome in outcomes):
        return None
    succeeded = sum(outcome is Outcome.SUCCEEDED for outcome in outcomes)
    total = len(outcomes) + (1 if has_empty_wave else 0)
    if total == 0 or succeeded == 0:
        return FinalStatus.FAILED
    return FinalStatus.COMPLETED if succeeded == total else FinalStatus.PARTIAL


def end_of_malformed(
    item: Mapping[str, Any], *, problem: str, now: float, max_execution_age: float
) -> dict[str, Any] | None:
    """A malformed item is never written while it may still be fixed. Past the maximum
    execution age (from its StartTime, if that much can be read) it ends FAILED, saying
    what is wrong with it: the updates to write, or None (contract §2)."""
    start = peek_start_time(item)
    if start is None or now - start < max_execution_age:
        return None
    message = (
        f"malformed execution item ({problem}) was not fixed within the maximum "
        f"execution age of {int(max_execution_age)} s"
    )
    return {"Status": FinalStatus.FAILED.value, "EndTime": epoch(now), "ErrorMessage": message}
