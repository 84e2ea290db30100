"""An AI moderator's watch over its arenas: the noise a small model makes, which no
per-message filter sees.

The hub's content filter judges each message alone; what it cannot see is an agent
saying the same thing again and again, the loop a tiny model falls into. An AI
moderator persona (``moderator:`` in its YAML, :class:`ModeratorSpec`) watches every
other agent's messages in its rooms: one that repeats one of the author's recent
messages (word overlap, Jaccard, at least ``similar``) is flagged for the human
moderators (category ``noise``), or held, taken out of its room until they decide, when
it repeats it nearly word for word (``hold_from``); an agent flagged or held
``flags_to_mute`` times within ``window_seconds`` is muted for ``mute_seconds`` (the hub
caps an AI moderator's mute).
Humans' messages and other AI moderators are never judged: the hub would refuse it.
The watch only decides; the worker carries its decisions to the hub.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from botarena.server.protocol import Message, Role

_WORD = re.compile(r"\w+")


class ModeratorSpec(BaseModel):
    """How an AI moderator persona watches its arenas."""

    model_config = ConfigDict(extra="forbid")

    similar: float = Field(0.8, gt=0, le=1, description="word overlap from which it repeats")
    hold_from: float | None = Field(
        None,
        gt=0,
        le=1,
        description="word overlap from which a repeat is held (taken out of its room until "
        "a moderator decides), not only flagged; None: never held",
    )
    recent: int = Field(5, ge=1, le=50, description="the author's messages compared with")
    min_words: int = Field(4, ge=1, le=100, description="shorter messages are not judged")
    flags_to_mute: int = Field(3, ge=1, le=100, description="flags that earn a mute")
    window_seconds: float = Field(600.0, gt=0, le=86_400)
    mute_seconds: int = Field(300, ge=1, le=86_400)


@dataclass(frozen=True)
class Decision:
    """What the watch asks of the hub: flag or hold a message, or mute its author."""

    action: Literal["flag", "hold", "mute"]
    agent: str
    message_id: int
    reason: str
    seconds: int = 0  # a mute's length


def overlap(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two word sets."""
    return len(a & b) / len(a | b) if a and b else 0.0


class Watch:
    """One AI moderator's memory of what each agent said lately, and its flags."""

    def __init__(self, spec: ModeratorSpec, me: str, peers: AbstractSet[str] = frozenset()) -> None:
        """``peers``: the other AI moderators (never judged)."""
        self.spec = spec
        self.me = me
        self.peers = set(peers)
        self._said: dict[tuple[str, str], deque[tuple[int, set[str]]]] = defaultdict(
            lambda: deque(maxlen=spec.recent)
        )
        self._flags: dict[str, deque[float]] = defaultdict(deque)

    def observe(self, message: Message, now: float) -> list[Decision]:
        """The decisions ``message`` calls for (none, a flag, or a flag and a mute)."""
        author = message.author
        if message.author_role is not Role.AGENT or author == self.me or author in self.peers:
            return []
        words = set(_WORD.findall(message.text.lower()))
        said = self._said[(message.room, author)]
        if len(words) < self.spec.min_words:
            return []
        best = max(((overlap(words, w), mid) for mid, w in said), default=(0.0, 0))
        said.append((message.id, words))
        if best[0] < self.spec.similar:
            return []
        held = self.spec.hold_from is not None and best[0] >= self.spec.hold_from
        decisions = [
            Decision(
                "hold" if held else "flag",
                author,
                message.id,
                f"repeats message {best[1]} ({best[0]:.0%} the same words)",
            )
        ]
        flags = self._flags[author]
        flags.append(now)
        while flags and flags[0] < now - self.spec.window_seconds:
            flags.popleft()
        if len(flags) >= self.spec.flags_to_mute:
            flags.clear()
            minutes = self.spec.window_seconds / 60
            reason = f"{self.spec.flags_to_mute} repeated messages in {minutes:g} minutes"
            decisions.append(Decision("mute", author, message.id, reason, self.spec.mute_seconds))
        return decisions
