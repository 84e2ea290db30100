"""Structured logs via structlog: JSON lines (or readable lines for a terminal).

Services (the hub) log to stdout, where a container runtime collects them; one-shot
commands log to stderr so that what they print on stdout (a token) stays clean. In JSON,
an exception's formatted traceback is the line's ``exception`` text (structlog's
``format_exc_info``), from structlog's loggers and the standard library's alike; the
console renderer prints it in its own readable form, without the frames' local
variables (they may hold tokens).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging to ``stream`` in one format."""
    stream = stream or sys.stdout
    colors = stream.isatty()
    rendering: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if fmt == "json"
        else [
            structlog.dev.ConsoleRenderer(
                colors=colors,
                exception_formatter=structlog.dev.RichTracebackFormatter(
                    color_system="truecolor" if colors else None,
                    show_locals=False,  # a frame's local variables may hold tokens
                ),
            )
        ]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("engineio", "socketio", "aiohttp.access", "httpx", "openai", "LiteLLM"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
