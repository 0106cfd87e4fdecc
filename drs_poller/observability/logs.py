"""Structured logging: one JSON object per line on stdout, from structlog and stdlib alike."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, TextIO

import structlog

if TYPE_CHECKING:
    from collections.abc import Iterator

    from structlog.typing import Processor

# Libraries we do not control (botocore, aiohttp) log through stdlib logging; below
# WARNING they are chatty enough to drown the poller's own lines.
_STDLIB_MIN_LEVEL = logging.WARNING


class _StructlogHandler(logging.StreamHandler[TextIO]):
    """Marks the root handler we install, so reconfiguring replaces it, not stacks it."""


def configure_logging(
    *,
    fmt: Literal["json", "console"],
    level: str = "INFO",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and route stdlib logging at WARNING and above through it."""
    out = stream or sys.stdout
    level_no = logging.getLevelNamesMapping().get(level.upper())
    if level_no is None:
        raise ValueError(f"unknown log level {level!r}")

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if fmt == "json":
        # ConsoleRenderer prints exceptions itself (prettily); JSON needs them as a string.
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        # Colour only for a terminal: escape codes in a log file or a pipe are noise.
        isatty = getattr(out, "isatty", None)
        renderer = structlog.dev.ConsoleRenderer(colors=bool(isatty and isatty()))

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.PrintLoggerFactory(out),
        # Tests reconfigure (and capture_logs patches processors); cached loggers would
        # keep the configuration they were first used with.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        # add_logger_name first: for stdlib records "logger" (botocore, aiohttp.server)
        # is the most useful field there is.
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _StructlogHandler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    # Only our own previous handler is removed: others (pytest's caplog, for one) belong
    # to whoever installed them.
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(_STDLIB_MIN_LEVEL, level_no))


@contextmanager
def bind_execution(execution_id: str) -> Iterator[None]:
    """Tag every log line inside the block (in this task/context) with ``execution_id``."""
    with structlog.contextvars.bound_contextvars(execution_id=execution_id):
        yield
