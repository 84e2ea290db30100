"""Unified diffs: applying one to a canon document, strictly, and making one to show.

A patch proposal carries a unified diff against the canon version it was based on.
:func:`apply_unified_diff` applies it only if every context and removed line matches
the document exactly where the hunk says; anything else is a
:class:`~botarena.server.errors.PatchError` (of the error tree, code ``patch``), never a
fuzzy guess, so a stale or forged diff cannot silently damage the canon.
"""

from __future__ import annotations

import difflib
import re

from botarena.server.errors import PatchError

__all__ = ["PatchError", "apply_unified_diff", "unified_diff"]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


NO_NEWLINE = "\\ No newline at end of file"


def apply_unified_diff(original: str, diff: str) -> str:
    source = original.splitlines(keepends=True)
    result: list[str] = []
    position = 0  # index into source of the next line not yet copied
    lines = diff.splitlines(keepends=True)
    index = 0
    hunks = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(("---", "+++")) and hunks == 0:
            index += 1
            continue
        match = _HUNK.match(line)
        if match is None:
            raise PatchError(f"line {index + 1} of the diff is not a hunk header: {line[:60]!r}")
        hunks += 1
        start = int(match[1]) - 1 if int(match[2] or 1) > 0 else int(match[1])
        if start < position or start > len(source):
            raise PatchError(f"hunk {hunks} starts at line {start + 1}, outside the document")
        result.extend(source[position:start])
        position = start
        index += 1
        while index < len(lines) and not lines[index].startswith("@@"):
            body = lines[index]
            tag, text = body[:1], body[1:]
            if body.startswith("\\"):  # "\ No newline at end of file", of the line before
                if lines[index - 1][:1] in (" ", "+") and result and result[-1].endswith("\n"):
                    result[-1] = result[-1][:-1]
            elif tag in (" ", "-"):
                if position >= len(source) or source[position].rstrip("\n") != text.rstrip("\n"):
                    raise PatchError(
                        f"hunk {hunks} does not match the document at line {position + 1}"
                    )
                if tag == " ":
                    result.append(source[position])
                position += 1
            elif tag == "+":
                result.append(text if text.endswith("\n") else text + "\n")
            else:
                raise PatchError(f"line {index + 1} of the diff has no +, - or space prefix")
            index += 1
    if hunks == 0:
        raise PatchError("the diff has no hunk")
    result.extend(source[position:])
    return "".join(result)


def unified_diff(before: str, after: str, path: str) -> str:
    """The unified diff that turns ``before`` into ``after``, to show: one line per line,
    each ending with a newline; a last line that has none is followed by the marker
    diff and patch write (:data:`NO_NEWLINE`)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(line if line.endswith("\n") else f"{line}\n{NO_NEWLINE}\n" for line in lines)
