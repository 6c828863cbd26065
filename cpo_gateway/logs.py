"""structlog setup: JSON lines off a terminal (journald), a console renderer on one.

Under journald (stdout is the stream named by $JOURNAL_STREAM) each line starts with its
syslog priority, `<3>` for an error to `<7>` for debug, which journald takes off and keeps
(SyslogLevelPrefix=, on by default): `journalctl -p warning` then shows warnings and worse.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, TextIO

import structlog

# syslog(3) priorities of structlog's and logging's level names.
PRIORITY = {
    "critical": 2,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "info": 6,
    "debug": 7,
}
# Libraries that log every frame (idTags included) at INFO.
_CHATTY = ("ocpp", "websockets", "aiohttp.access", "apscheduler", "aiosqlite")


def set_level(level: str) -> None:
    """Change the level of what is logged, keeping the format and the stream (a reload)."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(numeric))
    _set_library_levels(numeric)


def _set_library_levels(numeric: int) -> None:
    """The root level, and the chatty libraries (frames, idTags) quiet unless debugging."""
    logging.getLogger().setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(
            logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
        )


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    numeric = logging.getLevelNamesMapping()[level.upper()]
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: structlog.typing.Processor = (
        # Colours only for a terminal: piped to a file or a pager they are noise.
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    if _is_journal(stream):
        renderer = _with_priority(renderer)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Standard-library loggers (libraries) go through the same renderer.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processor=renderer)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _set_library_levels(numeric)


def _is_journal(stream: TextIO) -> bool:
    """Whether `stream` is the journal stream systemd connected (JOURNAL_STREAM=dev:inode)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind it (a StringIO)
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def _with_priority(renderer: Any) -> structlog.typing.Processor:
    def render(logger: Any, method: str, event: Any) -> Any:
        level = str(event.get("level", method)).lower() if isinstance(event, dict) else method
        return f"<{PRIORITY.get(level, 6)}>{renderer(logger, method, event)}"

    return render


def bound(**values: object) -> contextlib.AbstractContextManager[object]:
    """Add `values` to every log line emitted in this context (tasks started from it too)."""
    return structlog.contextvars.bound_contextvars(**values)


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
