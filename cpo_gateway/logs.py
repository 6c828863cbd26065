"""structlog setup: JSON lines off a terminal (journald), a console renderer on one."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

# Libraries that log every frame (idTags included) at INFO.
_CHATTY = ("ocpp", "websockets", "aiohttp.access", "apscheduler", "aiosqlite")


def set_level(level: str) -> None:
    """Change the level of what is logged, keeping the format and the stream (a reload)."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(numeric))
    logging.getLogger().setLevel(numeric)


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
    root.setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(
            logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
        )


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
