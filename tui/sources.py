"""A ticket answer's sources: agents end the content of a ``ticket_answer`` proposal with
a ``Sources: a.md, b.md`` line naming the documents the answer was drawn from.
:func:`split_sources` takes that line off, so that the Proposals and Tickets tabs show
the answer and, apart and highlighted, where it comes from (:func:`sources_line`)."""

from __future__ import annotations

import re

from rich.markup import escape

SOURCES = re.compile(r"\A\s*sources\s*:(.*)\Z", re.IGNORECASE)


def split_sources(content: str) -> tuple[str, list[str] | None]:
    """The answer without its last ``Sources:`` line, and the documents that line names
    (None when the content has no such line; its last non-blank line is the one read)."""
    lines = content.rstrip().splitlines()
    found = SOURCES.match(lines[-1]) if lines else None
    if found is None:
        return content, None
    names = [name.strip() for name in found.group(1).split(",")]
    answer = "\n".join(lines[:-1]).rstrip()
    return (answer + "\n" if answer else ""), [name for name in names if name]


def sources_line(sources: list[str] | None) -> str:
    """The sources as console markup: named and highlighted, or a dim "no sources"."""
    if not sources:
        return "[dim]no sources[/]"
    return "[b]Sources:[/b] [bold cyan]" + escape(", ".join(sources)) + "[/]"
