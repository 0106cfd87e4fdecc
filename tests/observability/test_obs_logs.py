from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from structlog.testing import capture_logs

from drs_poller.observability.logs import bind_execution, configure_logging

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def buf() -> io.StringIO:
    return io.StringIO()


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_have_event_level_timestamp(buf: io.StringIO) -> None:
    configure_logging(fmt="json", stream=buf)
    structlog.get_logger().info("poll.done", outcome="updated")
    [line] = _lines(buf)
    assert line["event"] == "poll.done"
    assert line["level"] == "info"
    assert line["outcome"] == "updated"
    # ISO 8601 in UTC.
    assert line["timestamp"].endswith("Z")
    assert "T" in line["timestamp"]
    assert "execution_id" not in line


def test_bind_execution_adds_and_removes_execution_id(buf: io.StringIO) -> None:
    configure_logging(fmt="json", stream=buf)
    log = structlog.get_logger()
    with bind_execution("drsjob-123"):
        log.info("inside")
    log.info("outside")
    inside, outside = _lines(buf)
    assert inside["execution_id"] == "drsjob-123"
    assert "execution_id" not in outside


def test_level_filters(buf: io.StringIO) -> None:
    configure_logging(fmt="json", level="warning", stream=buf)
    log = structlog.get_logger()
    log.info("dropped")
    log.warning("kept")
    assert [line["event"] for line in _lines(buf)] == ["kept"]


def test_unknown_level_is_rejected(buf: io.StringIO) -> None:
    with pytest.raises(ValueError, match="level"):
        configure_logging(fmt="json", level="LOUD", stream=buf)


def test_exceptions_are_rendered_into_json(buf: io.StringIO) -> None:
    configure_logging(fmt="json", stream=buf)
    try:
        raise RuntimeError("boom")  # noqa: TRY301  # a real traceback to render
    except RuntimeError:
        structlog.get_logger().exception("failed")
    [line] = _lines(buf)
    assert "RuntimeError: boom" in line["exception"]


def test_stdlib_warnings_are_json(buf: io.StringIO) -> None:
    configure_logging(fmt="json", stream=buf)
    with bind_execution("drsjob-9"):
        logging.getLogger("botocore").warning("retrying %s", "DescribeJobs")
    [line] = _lines(buf)
    assert line["event"] == "retrying DescribeJobs"
    assert line["level"] == "warning"
    assert line["logger"] == "botocore"
    assert line["execution_id"] == "drsjob-9"
    assert "timestamp" in line


def test_stdlib_below_warning_is_dropped(buf: io.StringIO) -> None:
    configure_logging(fmt="json", level="DEBUG", stream=buf)
    logging.getLogger("botocore").info("chatty")
    logging.getLogger("aiohttp.server").debug("chattier")
    assert buf.getvalue() == ""


def test_stdlib_exception_is_json(buf: io.StringIO) -> None:
    configure_logging(fmt="json", stream=buf)
    try:
        raise ValueError("bad")  # noqa: TRY301  # a real traceback to render
    except ValueError:
        logging.getLogger("aiohttp.server").exception("handler failed")
    [line] = _lines(buf)
    assert line["event"] == "handler failed"
    assert "ValueError: bad" in line["exception"]


def test_reconfigure_does_not_stack_handlers(buf: io.StringIO) -> None:
    configure_logging(fmt="json", stream=io.StringIO())
    configure_logging(fmt="json", stream=buf)
    logging.getLogger("botocore").error("once")
    assert len(_lines(buf)) == 1


def test_console_format(buf: io.StringIO) -> None:
    configure_logging(fmt="console", stream=buf)
    structlog.get_logger().info("hello", answer=42)
    logging.getLogger("botocore").warning("from stdlib")
    out = buf.getvalue()
    assert "hello" in out
    assert "answer" in out
    assert "from stdlib" in out


def test_capture_logs_works_with_this_config(buf: io.StringIO) -> None:
    configure_logging(fmt="json", stream=buf)
    with capture_logs() as captured:
        structlog.get_logger().info("captured", n=1)
    assert captured == [{"event": "captured", "n": 1, "log_level": "info"}]
    assert buf.getvalue() == ""
