"""Echoes: a model's answer that repeats its instructions instead of answering them.

A small model often hands its prompt back: CrewAI's template ("expected criteria",
"final answer", "Current Task:") or the task BotArena wrote for the turn ("Chat so far:",
"Answer sage in one or two sentences", "Ticket #3 from ada:"). A text with one of these
phrases is an echo wherever it comes from: it is never posted, drafted, remembered, or
taken as a mention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ECHO_REASON = "the model echoed its instructions"

_PHRASES = re.compile(
    "|".join(
        [
            # CrewAI's own templates: the system message and the task around ours
            r"expected criteria",
            r"final answer",
            r"you must return",
            r"this is the expected",
            r"begin! this is very important",
            r"\bcurrent task\s*:",
            r"\bprovide your complete response\b",
            r"\byour personal goal is\b",
            r"\bthe json object of your action\b",
            # the task of a chat or drafting turn (botarena.agents.turn.build_task)
            r"\broom\s*:\s*[\w-]+\.\s*mission\s*:",
            r"\bstyle\s*:",
            r"\bnotes\s*:\s*-",
            r"\byou remember\s*:\s*-",
            r"\bchat so far\s*:",
            r"\basked you\s*:",
            r"\bin one or two sentences\b",
            r"(?:^|[.!?]\s+)one or two sentences\.",
            r"\bdraft a short [\w ]+ for the canon\b",
            r"\bgive it a title and a body\b",
            # the task of a ticket turn (botarena.agents.tickets.task)
            r"\bticket #\d+ from [\w.@-]+\s*:",
            r"\bpassages\s*:",
            r"\banswer the ticket from these passages\b",
            r"\bset known to false\b",
            r"\blist the labels you used\b",
        ]
    ),
    re.IGNORECASE,
)


_YOU_ARE = re.compile(r"\byou are @?", re.IGNORECASE)
_IN_THE = re.compile(r" in the\b", re.IGNORECASE)


def is_echo(text: str, names: Iterable[str] = ()) -> bool:
    """Whether ``text`` repeats a prompt's phrases; ``names``: the agents' names, for
    "You are <name> in the ..." without the rest of the sentence. The names are looked
    up, not searched for one by one: a worker of hundreds of agents asks this of every
    message its rooms carry."""
    if _PHRASES.search(text):
        return True
    wanted: set[str] | None = None
    for you_are in _YOU_ARE.finditer(text):
        rest = text[you_are.end() :]
        for in_the in _IN_THE.finditer(rest):
            if wanted is None:
                wanted = {n.casefold() for n in names if n}
            if rest[: in_the.start()].casefold() in wanted:
                return True
    return False
