"""Step Functions adapter: answers and heartbeats for task tokens, through the Caller.

Throttling and 5xx are retried by the Caller with the usual backoff. Step Functions'
answer that a token can take no answer (``InvalidToken``, ``TaskTimedOut``,
``TaskDoesNotExist``) is not a failure of the call: it comes back as
:class:`TokenRejectedError`, and is never retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from drs_poller.core.answering import REJECTIONS, Recorded

if TYPE_CHECKING:
    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller

_REJECTION_CODES = frozenset(REJECTIONS)


class TokenRejectedError(Exception):
    """Step Functions will take no answer for this token (invalid, timed out, closed)."""

    def __init__(self, *, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.recorded: Recorded = REJECTIONS[code]


class StepFunctionsAdapter:
    def __init__(self, *, clients: ClientPool, caller: Caller, region: str) -> None:
        self._clients = clients
        self._caller = caller
        self._region = region

    async def _send(self, operation: str, method: str, **params: Any) -> None:
        client = await self._clients.get("stepfunctions", self._region)
        try:
            await self._caller.call(
                service="stepfunctions",
                operation=operation,
                region=self._region,
                send=lambda: getattr(client, method)(**params),
                expected_errors=_REJECTION_CODES,
            )
        except ClientError as error:
            details = error.response.get("Error", {})
            raise TokenRejectedError(
                code=str(details.get("Code")), message=str(details.get("Message", ""))
            ) from None

    async def send_success(self, token: str, output: str) -> None:
        await self._send("SendTaskSuccess", "send_task_success", taskToken=token, output=output)

    async def send_failure(self, token: str, *, error: str, cause: str) -> None:
        await self._send(
            "SendTaskFailure", "send_task_failure", taskToken=token, error=error, cause=cause
        )

    async def send_heartbeat(self, token: str) -> None:
        await self._send("SendTaskHeartbeat", "send_task_heartbeat", taskToken=token)
