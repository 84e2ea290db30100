"""JSON logs carry an exception's formatted traceback, from structlog's loggers and from
the standard library's, in a process configured as the hub configures itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

PROGRAM = textwrap.dedent(
    """
    import logging, structlog
    from botarena.server.logs import configure

    configure(fmt="json")

    def parse_frame():
        raise ValueError("the frame is broken")

    try:
        parse_frame()
    except ValueError:
        structlog.get_logger("botarena.test").exception("structlog.failed", room="compiler")
        logging.getLogger("aiohttp.server").exception("stdlib failed")
    structlog.get_logger("botarena.test").info("plain")
    """
)


def log_lines(program: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-P", "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_json_lines_of_an_exception_carry_the_traceback() -> None:
    by_event = {line["event"]: line for line in log_lines(PROGRAM)}
    for event in ("structlog.failed", "stdlib failed"):
        line = by_event[event]
        text = line.get("exception")
        assert isinstance(text, str), line
        assert text.startswith("Traceback (most recent call last):"), text
        assert "in parse_frame" in text and "ValueError: the frame is broken" in text, text
        assert "exc_info" not in line, line
    assert by_event["structlog.failed"]["room"] == "compiler"
    assert by_event["structlog.failed"]["level"] == "error"
    assert "exception" not in by_event["plain"]
