"""Actions: what an agent may do in a turn, as the JSON schema its LLM must answer in.

Every turn's output is constrained to one of three small pydantic models, built for
that turn so the schema lists only what is allowed there: a chat turn (:func:`chat`)
says something or passes, and may agree or disagree when it answers someone (a
reaction on that message); a drafting turn (:func:`draft`) writes a title and a body
of one of the kinds the arena may propose; a ticket turn (:func:`ticket`) says whether
the passages it was shown answer the question, the answer, and which of those passages
it used (an enum of their labels, so it cannot cite anything else). The worker hands
the model to the LLM (llama.cpp's ``response_format``, Ollama's ``format``), and
:func:`parse` reads the answer back, or says why it does not fit. Field order matters
to a small model: the decision comes first, then the text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

TITLE_CHARS = 80
TEXT_CHARS = 400
BODY_CHARS = 1500


class Act(StrEnum):
    """What a chat turn does."""

    SAY = "say"
    AGREE = "agree"  # a +1 reaction on the message answered, and the text
    DISAGREE = "disagree"  # a -1 reaction on the message answered, and the text
    PASS = "pass"  # nothing: the agent has nothing to add


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatAction(Action):
    """A chat turn's answer."""

    action: Act
    text: str = Field(max_length=TEXT_CHARS, description="the chat message, in plain words")


class DraftAction(Action):
    """A drafting turn's answer: a new text for the canon."""

    kind: str
    title: str = Field(max_length=TITLE_CHARS, description="a short title for the reviewers")
    body: str = Field(max_length=BODY_CHARS, description="the text itself")


class TicketAnswer(Action):
    """A ticket turn's answer, from the passages the turn was shown."""

    known: bool = Field(description="whether the passages answer the question")
    answer: str = Field(max_length=TEXT_CHARS, description="the answer, in one or two sentences")
    sources: list[str] = Field(description="the labels of the passages the answer uses")


A = TypeVar("A", bound=Action)


@functools.cache
def chat(*, replying: bool) -> type[ChatAction]:
    """The chat turn's model: agree, disagree or pass only when answering a message (a
    turn taken because the room is quiet is there to say something). The turn models
    are made once for each shape (a model is a class: 0.6 ms to make)."""
    acts = tuple(a.value for a in Act) if replying else (Act.SAY.value,)
    return create_model(
        "ChatTurn",
        __base__=ChatAction,
        action=(Literal[acts], ...),
    )


def draft(kinds: Sequence[str]) -> type[DraftAction]:
    """The drafting turn's model: ``kinds`` are those the arena may propose."""
    return _draft(tuple(kinds))


@functools.lru_cache(maxsize=64)
def _draft(kinds: tuple[str, ...]) -> type[DraftAction]:
    return create_model(
        "DraftTurn",
        __base__=DraftAction,
        kind=(Literal[tuple(kinds)], ...),
    )


def ticket(labels: list[str]) -> type[TicketAnswer]:
    """The ticket turn's model: ``sources`` may name only the passages in ``labels``."""
    return _ticket(tuple(labels))


@functools.lru_cache(maxsize=256)
def _ticket(labels: tuple[str, ...]) -> type[TicketAnswer]:
    item: Any = Literal[tuple(labels)] if labels else Literal["none"]
    return create_model(
        "TicketTurn",
        __base__=TicketAnswer,
        sources=(list[item], Field(max_length=max(1, len(labels)))),
    )


def schema(model: type[Action]) -> dict[str, Any]:
    """The JSON schema an LLM is held to for ``model``."""
    return model.model_json_schema()


def parse(model: type[A], raw: str) -> A | str:
    """``raw`` (the model's JSON) as ``model``, or why it does not fit."""
    try:
        data = json.loads(raw)
    except ValueError:
        return "the answer is not JSON"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the answer"
        return f"the answer does not fit its schema ({where}: {first['msg']})"
