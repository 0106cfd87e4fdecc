"""check_response_body decodes with orjson, falls back to the standard library for
what only it reads, and calls a body neither reads damaged."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest

from drs_poller.clients.aws import DamagedResponseError, check_response_body

DRS = botocore.session.get_session().get_service_model("drs")


def _check(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    response: dict[str, Any] = {"status_code": 200, "headers": {}, "body": body}
    customized: dict[str, Any] = {}
    check_response_body(
        operation_model=DRS.operation_model("DescribeJobs"),
        response_dict=response,
        customized_response_dict=customized,
    )
    return response, customized


def test_the_items_are_handed_over_as_decoded() -> None:
    response, customized = _check(
        b'{"items": [{"jobID": "drsjob-1", "status": "\\u00e9"}], "x": 1}'
    )
    assert customized == {"items": [{"jobID": "drsjob-1", "status": "é"}]}
    assert response["body"] == b'{"x": 1}'


def test_an_integer_past_64_bits_is_read_by_the_standard_library() -> None:
    big = 2**70
    _, customized = _check(b'{"items": [{"n": %d}]}' % big)
    assert customized["items"][0]["n"] == big


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b'{"items": [', "body is not JSON"), (b"[1, 2]", "body is not a JSON object")],
)
def test_a_body_neither_reads_is_damaged(body: bytes, problem: str) -> None:
    with pytest.raises(DamagedResponseError, match=problem):
        _check(body)
