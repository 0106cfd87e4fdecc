"""Answering the orchestrator: which Step Functions task tokens are due, and with what.

An initiator driven by Step Functions writes a task token (``TaskToken``) on a wave or
on the execution item, and waits (``.waitForTaskToken``). When that wave or the
execution reaches its final status, the daemon answers the token: ``SendTaskSuccess``
with a JSON summary, or ``SendTaskFailure`` where the holder ended FAILED, or PARTIAL
with ``TaskTokenFailOnPartial`` set (contract §5). While it runs, the token is kept
alive with ``SendTaskHeartbeat``.

Everything here is pure: it reads a deserialized item and returns what to send. The
engine sends it, and records the answer on the item (``TaskTokenAnsweredTime``,
``TaskTokenAnswer``), so that a restart does not send it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from drs_poller.core.completion import Outcome, server_outcome
from drs_poller.core.models import FINAL_STATUSES, MalformedItemError, parse_execution

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drs_poller.core.models import Execution

SCHEMA_VERSION: Final = 1

# Written by the initiator, on a wave map or on the execution item.
TOKEN: Final = "TaskToken"  # noqa: S105 - an attribute name, not a secret
FAIL_ON_PARTIAL: Final = "TaskTokenFailOnPartial"
# Written by the daemon beside the token it answered.
ANSWERED_TIME: Final = "TaskTokenAnsweredTime"
ANSWER: Final = "TaskTokenAnswer"
# Top level, written by the daemon: the holders whose token is due and not answered yet
# (an SS of holder paths, "execution" or "Waves[<i>]"). The recovery sweep finds
# finished executions through it; each recorded answer deletes its path.
PENDING: Final = "TaskTokensPending"

EXECUTION_PATH: Final = "execution"

# Step Functions limits: output and cause up to 256 KiB and 32,768 characters; error up
# to 256 characters. The budgets leave room for the request around them.
MAX_OUTPUT_BYTES: Final = 200_000
MAX_CAUSE_CHARS: Final = 32_000
MAX_TEXT_CHARS: Final = 1_000

ERROR_FAILED: Final = "DrsPoller.Failed"
ERROR_PARTIAL: Final = "DrsPoller.Partial"


class Recorded(StrEnum):
    """What ``TaskTokenAnswer`` says about a token."""

    SUCCESS = "SUCCESS"  # SendTaskSuccess was accepted
    FAILURE = "FAILURE"  # SendTaskFailure was accepted
    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - Step Functions: InvalidToken
    TASK_TIMED_OUT = "TASK_TIMED_OUT"  # Step Functions: TaskTimedOut
    TASK_DOES_NOT_EXIST = "TASK_DOES_NOT_EXIST"  # Step Functions: TaskDoesNotExist


# Step Functions' error codes for a token that can take no answer: not retried.
REJECTIONS: Final[Mapping[str, Recorded]] = {
    "InvalidToken": Recorded.INVALID_TOKEN,
    "TaskTimedOut": Recorded.TASK_TIMED_OUT,
    "TaskDoesNotExist": Recorded.TASK_DOES_NOT_EXIST,
}


@dataclass(frozen=True, slots=True)
class Holder:
    """Where a token sits: the execution item (``wave_index`` None) or one wave map."""

    wave_index: int | None = None

    @property
    def path(self) -> str:
        return EXECUTION_PATH if self.wave_index is None else f"Waves[{self.wave_index}]"

    @property
    def scope(self) -> str:
        return "EXECUTION" if self.wave_index is None else "WAVE"


@dataclass(frozen=True, slots=True)
class Answer:
    holder: Holder
    token: str
    status: str  # the holder's final status
    success: bool
    output: str  # the JSON summary (SendTaskSuccess output)
    error: str | None = None  # SendTaskFailure error and cause
    cause: str | None = None

    @property
    def recorded(self) -> Recorded:
        return Recorded.SUCCESS if self.success else Recorded.FAILURE


@dataclass(frozen=True, slots=True)
class Beat:
    """A token whose holder is still running: it is due a heartbeat."""

    holder: Holder
    token: str


def _token(data: Mapping[str, Any]) -> str | None:
    token = data.get(TOKEN)
    if not isinstance(token, str) or not token or data.get(ANSWERED_TIME) is not None:
        return None
    return token


def _holders(item: Mapping[str, Any]) -> list[tuple[Holder, Mapping[str, Any]]]:
    holders: list[tuple[Holder, Mapping[str, Any]]] = [(Holder(), item)]
    waves = item.get("Waves")
    if isinstance(waves, list):
        holders += [(Holder(i), wave) for i, wave in enumerate(waves) if isinstance(wave, dict)]
    return holders


def _is_final(holder: Holder, data: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    if item.get("Status") not in FINAL_STATUSES and (
        holder.wave_index is None or item.get("Status") != "POLLING"
    ):
        return False  # not the daemon's to answer: still with the initiator, or CANCELLED
    return data.get("Status") in FINAL_STATUSES


def tokens_due(item: Mapping[str, Any]) -> list[tuple[Holder, str]]:
    """Unanswered tokens of holders that reached their final status."""
    return [
        (holder, token)
        for holder, data in _holders(item)
        if (token := _token(data)) is not None and _is_final(holder, data, item)
    ]


def answers_due(item: Mapping[str, Any]) -> list[Answer]:
    """The answers this item is due: one per unanswered token of a finished holder."""
    return [answer_for(item, holder, token) for holder, token in tokens_due(item)]


def heartbeats_due(item: Mapping[str, Any]) -> list[Beat]:
    """Tokens of holders still running on an execution the daemon polls."""
    if item.get("Status") != "POLLING":
        return []
    return [
        Beat(holder, token)
        for holder, data in _holders(item)
        if (token := _token(data)) is not None and data.get("Status") not in FINAL_STATUSES
    ]


def pending_paths(item: Mapping[str, Any]) -> set[str]:
    return {holder.path for holder, _ in tokens_due(item)}


def with_pending(*, read: Mapping[str, Any], updates: Mapping[str, Any]) -> Mapping[str, Any]:
    """``updates``, plus ``TaskTokensPending`` where the write leaves tokens due.

    The write that makes a wave or the execution final records, in the same conditional
    write, that its token is due: if the process dies before the answer, the recovery
    sweep still finds it (a finished execution is no longer found as POLLING).
    """
    if not updates:
        return updates
    due = pending_paths({**read, **updates})
    if not due or due == read.get(PENDING):
        return updates
    return {**updates, PENDING: due}


def fails_on_partial(item: Mapping[str, Any], holder: Holder) -> bool:
    """The holder's own ``TaskTokenFailOnPartial``; a wave without one takes the execution's."""
    data = _data(item, holder)
    own = data.get(FAIL_ON_PARTIAL)
    if isinstance(own, bool):
        return own
    return item.get(FAIL_ON_PARTIAL) is True


def _data(item: Mapping[str, Any], holder: Holder) -> Mapping[str, Any]:
    if holder.wave_index is None:
        return item
    wave: Mapping[str, Any] = item["Waves"][holder.wave_index]
    return wave


def answer_for(item: Mapping[str, Any], holder: Holder, token: str) -> Answer:
    data = _data(item, holder)
    status = str(data.get("Status"))
    summary = build_summary(item, holder)
    output = bound_json(summary, limit=MAX_OUTPUT_BYTES)
    if status == "FAILED" or (status == "PARTIAL" and fails_on_partial(item, holder)):
        return Answer(
            holder=holder,
            token=token,
            status=status,
            success=False,
            output=output,
            error=ERROR_FAILED if status == "FAILED" else ERROR_PARTIAL,
            cause=bound_json(summary, limit=MAX_CAUSE_CHARS),
        )
    return Answer(holder=holder, token=token, status=status, success=True, output=output)


# --- the summary (contract §5.3) ------------------------------------------------------


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    return int(number) if number.is_integer() else number


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= MAX_TEXT_CHARS else value[: MAX_TEXT_CHARS - 1] + "…"


def _compact(mapping: dict[str, Any]) -> dict[str, Any]:
    """Only the fields that are known: absent means unknown, never null."""
    return {k: v for k, v in mapping.items() if v is not None}


def _targets(data: Mapping[str, Any], fallback: Mapping[str, Any], name: str) -> Any:
    own = _number(data.get(name))
    return own if own is not None else _number(fallback.get(name))


def _server_entry(
    raw: Mapping[str, Any], *, wave_name: str, outcome: Outcome | None
) -> dict[str, Any]:
    return _compact(
        {
            "sourceServerId": _text(raw.get("SourceServerId")),
            "waveName": wave_name,
            "outcome": None if outcome is None else outcome.value,
            "status": _text(raw.get("Status")),
            "recoveryJobId": _text(raw.get("RecoveryJobId")),
            "recoveryInstanceId": _text(raw.get("RecoveryInstanceId")),
            "instanceId": _text(raw.get("InstanceId")),
            "error": _text(raw.get("Error")),
            # Measured RTO/RPO (issue 13): present only where the item holds them.
            "recoveryTimeSeconds": _number(raw.get("RecoveryTimeSeconds")),
            "recoveryPointSeconds": _number(raw.get("RecoveryPointSeconds")),
            "recoveryPointTime": _number(raw.get("RecoveryPointTime")),
        }
    )


def _measured(servers: list[dict[str, Any]], name: str) -> int | float | None:
    """The holder's worst (largest) measured value, when every server has one."""
    values = [server.get(name) for server in servers]
    if not values or any(value is None for value in values):
        return None
    return max(values)  # type: ignore[type-var]


def build_summary(item: Mapping[str, Any], holder: Holder) -> dict[str, Any]:
    """The answer's JSON document, schema version 1 (contract §5.3), unbounded."""
    execution: Execution | None
    try:
        execution = parse_execution(item)
    except MalformedItemError:
        execution = None
    data = _data(item, holder)
    waves = list(enumerate(item.get("Waves") or []))
    if holder.wave_index is not None:
        waves = [(holder.wave_index, data)]
    servers: list[dict[str, Any]] = []
    for index, wave in waves:
        if not isinstance(wave, dict):
            continue
        name = str(wave.get("WaveName") or f"wave-{index + 1}")
        parsed = execution.waves[index] if execution is not None else None
        for position, raw in enumerate(wave.get("Servers") or []):
            if not isinstance(raw, dict):
                continue
            outcome = (
                server_outcome(parsed.servers[position], execution.mode_of(parsed))
                if execution is not None and parsed is not None
                else None
            )
            servers.append(_server_entry(raw, wave_name=name, outcome=outcome))
    failed = [s for s in servers if s.get("outcome") == "FAILED"]
    succeeded = [s for s in servers if s.get("outcome") == "SUCCEEDED"]
    others = [s for s in servers if s.get("outcome") not in ("FAILED", "SUCCEEDED")]
    rto = _compact(
        {
            "targetSeconds": _targets(data, item, "RtoTargetSeconds"),
            "measuredSeconds": _measured(servers, "recoveryTimeSeconds"),
        }
    )
    rpo = _compact(
        {
            "targetSeconds": _targets(data, item, "RpoTargetSeconds"),
            "measuredSeconds": _measured(servers, "recoveryPointSeconds"),
        }
    )
    return _compact(
        {
            "schemaVersion": SCHEMA_VERSION,
            "scope": holder.scope,
            "executionId": _text(item.get("ExecutionId")),
            "planId": _text(item.get("PlanId")),
            "executionType": _text(item.get("ExecutionType")) or "DRILL",
            "waveIndex": holder.wave_index,
            "waveName": _text(data.get("WaveName")) if holder.wave_index is not None else None,
            "status": _text(data.get("Status")),
            "startTime": _number(data.get("StartTime")),
            "endTime": _number(data.get("EndTime")),
            "error": _text(data.get("ErrorMessage") or data.get("Error")),
            "counts": {
                "servers": len(servers),
                "succeeded": len(succeeded),
                "failed": len(failed),
            },
            "rto": rto or None,
            "rpo": rpo or None,
            # Failed servers first: a bounded list keeps the ones that need attention.
            "servers": failed + others + succeeded,
        }
    )


def bound_json(summary: Mapping[str, Any], *, limit: int) -> str:
    """``summary`` as compact JSON of at most ``limit`` bytes: servers are dropped from
    the end of the list (successful ones first) and counted in ``serversOmitted``."""
    text = _dump(summary)
    if len(text.encode()) <= limit:
        return text
    servers: list[Any] = list(summary.get("servers") or [])
    low, high = 0, len(servers)  # the largest count that fits lies in [low, high)
    while low < high:
        middle = (low + high + 1) // 2
        if len(_dump(_cut(summary, servers, middle)).encode()) <= limit:
            low = middle
        else:
            high = middle - 1
    return _dump(_cut(summary, servers, low))


def _cut(summary: Mapping[str, Any], servers: list[Any], keep: int) -> dict[str, Any]:
    return {**summary, "servers": servers[:keep], "serversOmitted": len(servers) - keep}


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
