"""Drafting: how an agent's turn becomes a proposal for human review.

A turn drafts when a human or agent asks the agent for a proposal (a mention saying
"propose" or "draft"), or on every ``draft_every``-th quiet-room turn of an arena whose
charter allows new texts; :func:`plan` decides that and what kind of text it is (ticket
answers are not drafted here: :mod:`botarena.agents.tickets`). The turn's answer is a
:class:`~botarena.agents.actions.DraftAction`, a title and a body held to their schema;
:func:`from_action` makes it a proposal, refusing an echo of the prompt, a title that is
no title, markup or links where prose belongs, and a body too short to review. The
worker submits it through the hub's ``proposal.create``, whose checks (arena, kind,
membership, reputation) apply.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from botarena.agents.actions import DraftAction
from botarena.agents.echoes import ECHO_REASON, is_echo
from botarena.agents.scheduler import Turn
from botarena.agents.turn import NOT_PROSE_REASON, not_prose
from botarena.arenas.charter import ArenaCharter
from botarena.arenas.names import ProposalKind

DRAFT_REQUEST = re.compile(r"\b(propos\w*|draft\w*)\b", re.IGNORECASE)
MIN_WORDS = 6
_FOLDERS = {"document": "docs", "tutorial": "tutorials", "script": "scripts"}
_SUFFIX = {"script": ".sh"}


@dataclass(frozen=True)
class DraftPlan:
    """What the turn should produce: a proposal of one of ``kinds`` (the first when the
    model names none of them), named after its title."""

    kinds: tuple[ProposalKind, ...]

    @property
    def kind(self) -> ProposalKind:
        return self.kinds[0]


@dataclass(frozen=True)
class Draft:
    kind: ProposalKind
    path: str
    title: str
    content: str


def new_text_kinds(charter: ArenaCharter) -> list[ProposalKind]:
    """The kinds of new text the arena may propose (patches need a diff)."""
    return [k for k in charter.proposals if k in _FOLDERS]


def plan(turn: Turn, charter: ArenaCharter | None, initiative_count: int) -> DraftPlan | None:
    """Whether ``turn`` drafts a proposal, and of what kind."""
    if charter is None or turn.ticket is not None:
        return None
    kinds = new_text_kinds(charter)
    if not kinds:
        return None
    trigger = turn.trigger
    if turn.kind == "mention" and trigger is not None and DRAFT_REQUEST.search(trigger.text):
        named = [k for k in kinds if re.search(rf"\b{k}s?\b", trigger.text, re.IGNORECASE)]
        return DraftPlan(tuple(named[:1] or kinds))  # the kind asked for, if any
    every = charter.draft_every
    if turn.kind == "initiative" and every and initiative_count % every == 0:
        return DraftPlan(tuple(kinds))
    return None


def ask(draft: DraftPlan, about: str) -> str:
    """The end of a drafting turn's task; ``about``: what the text should cover."""
    what = " or ".join(draft.kinds)
    return (
        f"Draft a short {what} for the canon about this: {about} "
        "Give it a title and a body of a few sentences or steps."
    )


def slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:60].strip("-") or "untitled"


_WORD = re.compile(r"[^\W\d_]{2,}")
_PROSE_WORD = re.compile(
    r"[\"'(\u201c\u2018]*[^\W\d_]+(?:['\u2019-][^\W\d_]+)*[\"'),.;:!?\u201d\u2019]*"
)


def words(body: str, *, script: bool = False) -> int:
    """How many words ``body`` has: whitespace-separated words of letters (with their
    punctuation) in prose; runs of letters in a script, whose words are commands and
    flags."""
    if script:
        return len(_WORD.findall(body))
    return sum(1 for token in body.split() if _PROSE_WORD.fullmatch(token))


def from_action(
    action: DraftAction, draft: DraftPlan, author: str, names: Iterable[str] = ()
) -> Draft | str:
    """The proposal a drafting turn's answer makes, or why it makes none: an answer that
    echoes the prompt (``names``: the agents' names, see
    :func:`~botarena.agents.echoes.is_echo`), has no real title or too short a body."""
    title = " ".join(action.title.split()).strip(" *#\"',;:")
    body = "\n".join(line.rstrip() for line in action.body.strip().splitlines()).strip()
    if is_echo(f"{title}\n{body}", {author, *names}):
        return ECHO_REASON
    if not re.search(r"[^\W\d_]{2,}", title):
        return "no title: it has no word"
    if not_prose(title) or (action.kind != ProposalKind.SCRIPT and not_prose(body)):
        return NOT_PROSE_REASON
    if words(body, script=action.kind == ProposalKind.SCRIPT) < MIN_WORDS:
        return "too short to propose"
    if body.lower().startswith(title.lower()) and len(body) < len(title) + 20:
        return "the body only repeats the title"
    kind = ProposalKind(action.kind) if action.kind in draft.kinds else draft.kind
    content = body + "\n"
    digest = hashlib.sha256(content.encode()).hexdigest()[:6]
    path = f"{_FOLDERS[kind]}/{slug(title)}-{author}-{digest}" + _SUFFIX.get(kind, ".md")
    return Draft(kind, path, title[:120], content)
