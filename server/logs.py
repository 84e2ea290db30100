"""Structured logs via structlog: JSON lines (or readable lines for a terminal).

Services (the hub) log to stdout, where a container runtime collects them; one-shot
commands log to stderr so that what they print on stdout (a token) stays clean; ``botarena
up`` logs to a file under ``var/logs/`` and keeps the terminal for its banner, its status
line and errors. In JSON,
an exception's formatted traceback is the line's ``exception`` text (structlog's
``format_exc_info``), from structlog's loggers and the standard library's alike; the
console renderer prints it in its own readable form, without the frames' local
variables (they may hold tokens).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

import structlog


def configure(
    level: str = "info",
    fmt: str = "json",
    stream: TextIO | None = None,
    *,
    file: Path | None = None,
    stream_level: str | None = None,
) -> None:
    """Route structlog and the standard library's logging to ``stream`` in one format;
    with ``file``, every line goes there as JSON and ``stream`` gets only the lines of
    ``stream_level`` and above (a terminal kept for what needs a human)."""
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

    def formatter(rendered: list[structlog.types.Processor]) -> logging.Formatter:
        return structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendered],
            foreign_pre_chain=shared,
        )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(rendering))
    handlers: list[logging.Handler] = [handler]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(
            formatter([structlog.processors.format_exc_info, structlog.processors.JSONRenderer()])
        )
        handlers.append(to_file)
        handler.setLevel((stream_level or level).upper())
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
    for noisy in ("engineio", "socketio", "aiohttp.access", "httpx", "openai", "LiteLLM"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
