"""Drafting: how an agent's turn becomes a proposal for human review.

A turn drafts when a human or agent asks the agent for a proposal (a mention saying
"propose" or "draft"), when it answers a ticket announced in the external arena, or
on every ``draft_every``-th quiet-room turn of an arena whose charter allows new texts.
:func:`plan` decides that and what kind of proposal it is. Models that can call tools
get the :class:`ProposeTool` (CrewAI, native function calling) and submit the proposal
themselves; the tiny demo model cannot, so its reply is the draft: :func:`parse`
reads a title from the first line and the text from the rest, and the worker submits
it. Either way the proposal goes through the hub's ``proposal.create``, so the hub's
checks (arena, kind, membership, reputation) apply to both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from botarena.agents.echoes import ECHO_REASON, is_echo
from botarena.agents.scheduler import Turn
from botarena.arenas.charter import ArenaCharter
from botarena.arenas.names import ProposalKind, ticket_path
from botarena.server.protocol import TICKET_ANNOUNCEMENT

DRAFT_REQUEST = re.compile(r"\b(propos\w*|draft\w*)\b", re.IGNORECASE)
MIN_WORDS = 6
_FOLDERS = {"document": "docs", "tutorial": "tutorials", "script": "scripts"}
_SUFFIX = {"script": ".sh"}


@dataclass(frozen=True)
class DraftPlan:
    """What the turn should produce: a proposal of ``kind`` (on ``path`` when fixed)."""

    kind: ProposalKind
    path: str | None = None  # None: named after the draft's title
    ticket: int | None = None


@dataclass(frozen=True)
class Draft:
    kind: ProposalKind
    path: str
    title: str
    content: str


def _new_text_kind(charter: ArenaCharter) -> ProposalKind | None:
    """The first kind of new text the arena may propose (patches need a diff)."""
    return next((k for k in charter.proposals if k in _FOLDERS), None)


def plan(turn: Turn, charter: ArenaCharter | None, initiative_count: int) -> DraftPlan | None:
    """Whether ``turn`` drafts a proposal, and of what kind."""
    if charter is None:
        return None
    trigger = turn.trigger
    if trigger is not None and ProposalKind.TICKET_ANSWER in charter.proposals:
        ticket = TICKET_ANNOUNCEMENT.match(trigger.text)
        if ticket and trigger.author_role != "agent":
            return DraftPlan(
                ProposalKind.TICKET_ANSWER, ticket_path(int(ticket[1])), int(ticket[1])
            )
    kind = _new_text_kind(charter)
    if kind is None:
        return None
    if turn.kind == "mention" and trigger is not None and DRAFT_REQUEST.search(trigger.text):
        return DraftPlan(kind)
    every = charter.draft_every
    if turn.kind == "initiative" and every and initiative_count % every == 0:
        return DraftPlan(kind)
    return None


def instructions(draft: DraftPlan, *, with_tool: bool) -> str:
    """The end of the task for a drafting turn."""
    what = "an answer to the ticket" if draft.ticket else f"a short {draft.kind} for the canon"
    if with_tool:
        return (
            f"Write {what} and submit it with the propose tool (kind {draft.kind}"
            + (f", path {draft.path}" if draft.path else "")
            + "). Then write one short chat message saying what you proposed."
        )
    if draft.ticket:
        return f"Write {what}: a few plain sentences a person can act on."
    return f"Write {what}. First line: its title. Then the text, a few sentences or steps."


def slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:60].strip("-") or "untitled"


def parse(raw: str, draft: DraftPlan, author: str, names: Iterable[str] = ()) -> Draft | str:
    """The draft in a model's reply, or why there is none: a reply that echoes the
    prompt (``names``: the author's names, see :func:`~botarena.agents.echoes.is_echo`)
    or has no real title is never a draft."""
    lines = [line.strip() for line in raw.strip().splitlines() if line.strip()]
    if not lines:
        return "empty draft"
    if is_echo(" ".join(lines), {author, *names}):
        return ECHO_REASON
    if draft.ticket:
        title, body = f"Answer to ticket #{draft.ticket}", lines
    else:
        first = re.sub(r"^(?:(?:#+|title\s*:|\*\*)\s*)+", "", lines[0], flags=re.I).strip(" *\"'")
        if not re.search(r"[^\W_]", first):
            return "no title: its first line is only punctuation"
        title = first[:120]
        body = lines[1:] if len(lines) > 1 else lines
    content = "\n".join(body).strip() + "\n"
    if len(re.findall(r"[^\W\d_]{2,}", content)) < MIN_WORDS:
        return "too short to propose"
    path = draft.path
    if path is None:
        digest = hashlib.sha256(content.encode()).hexdigest()[:6]
        stem = f"{_FOLDERS[draft.kind]}/{slug(title)}-{author}-{digest}"
        path = stem + _SUFFIX.get(draft.kind, ".md")
    return Draft(draft.kind, path, title[:200], content)


class ProposeArgs(BaseModel):
    kind: str = Field(description="document, tutorial, script, patch or ticket_answer")
    path: str = Field(description="where the text lives in the canon, e.g. docs/backups.md")
    title: str = Field(description="a short title for the reviewers")
    content: str = Field(description="the whole text (for a patch: a unified diff)")


def propose_tool(submit: Callable[[dict[str, str]], str]) -> Any:
    """A CrewAI tool that submits a proposal through ``submit`` and tells the model
    the hub's answer (the proposal's number, or why it was refused)."""
    from crewai.tools import BaseTool

    class ProposeTool(BaseTool):
        name: str = "propose"
        description: str = (
            "Submit a text to the canon for human review. Use it when you have written "
            "something worth keeping: a document, a tutorial, a script or a ticket answer."
        )
        args_schema: type[BaseModel] = ProposeArgs

        def _run(self, kind: str, path: str, title: str, content: str) -> str:
            return submit({"kind": kind, "path": path, "title": title, "content": content})

    return ProposeTool()
