"""Echoes: a model's answer that repeats its instructions instead of answering them.

A small model often hands its prompt back: CrewAI's template ("expected criteria",
"final answer") or the task BotArena wrote for the turn ("You are Grace in the
"operations" room of a team chat", "Write one short chat message", "Reply to sage's last
message"). A text with one of these phrases is an echo wherever it comes from: it is
never posted, drafted, remembered, or taken as a mention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ECHO_REASON = "the model echoed its instructions"

_PHRASES = re.compile(
    "|".join(
        [
            # CrewAI's own task template
            r"expected criteria",
            r"final answer",
            r"you must return",
            r"this is the expected",
            r"begin! this is very important",
            r"one short chat message in plain text",
            # the task of a turn (botarena.agents.turn.build_task)
            r"\byou are [^.!?\n]{1,40}? in the [\"'“”]?[\w-]+[\"'“”]? room\b",
            r"\broom of a team chat\b",
            r"\bthe room's mission\s*:",
            r"\byour (?:voice|temperament)\s*:",
            r"\bfrom the knowledge base\s*:",
            r"\bthings you remember\s*:",
            r"\brecent messages, oldest first\b",
            r"\bsaid to you\s*:",
            r"\banswer them directly\b",
            r"\breply to @?[\w.-]+'s last message\b",
            r"\bwrite one short chat message\b",
            r"\bone or two sentences\), without your name\b",
            # the end of a drafting turn's task (botarena.agents.drafting.instructions)
            r"\bfirst line\s*:\s*its title\b",
            r"\ba few plain sentences a person can act on\b",
            r"\bsubmit it with the propose tool\b",
            r"\bwrite an answer to the ticket\b",
            r"\bfor the canon\. first line\b",
        ]
    ),
    re.IGNORECASE,
)


def is_echo(text: str, names: Iterable[str] = ()) -> bool:
    """Whether ``text`` repeats a prompt's phrases; ``names``: the agents' names, for
    "You are <name> in the ..." without the rest of the sentence."""
    if _PHRASES.search(text):
        return True
    return any(
        re.search(rf"\byou are @?{re.escape(name)} in the\b", text, re.IGNORECASE)
        for name in names
        if name
    )
