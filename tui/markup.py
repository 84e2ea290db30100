"""Console markup shared by the panes: a stable colour per name, a style per agent state,
and :func:`styled` to put escaped text in a style. The panes draw rows and details with
these so that an author has the same colour in the stream and in every table."""

from __future__ import annotations

import zlib

from rich.markup import escape

COLOURS = ("cyan", "magenta", "green", "yellow", "bright_blue", "bright_red", "orange1", "orchid")
STATE_STYLE = {
    "error": "bold red",
    "muted": "yellow",
    "offline": "dim",
    "degraded": "orange1",
    "speaking": "bold green",
    "thinking": "cyan",
}


def colour(name: str) -> str:
    """The colour of ``name`` (an agent, a moderator), the same in every run."""
    return COLOURS[zlib.crc32(name.encode()) % len(COLOURS)]


def styled(text: str, style: str) -> str:
    """``text`` as console markup (escaped), in ``style`` when there is one."""
    return f"[{style}]{escape(text)}[/]" if style else escape(text)
