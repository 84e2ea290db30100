"""Grounded ticket answers: a ticket is answered from the knowledge, or handed to a human.

A ticket turn starts from what the knowledge holds for the question (the announcement
without its bookkeeping line, :func:`question`): the best passages of the collections
the external arena weighs, the canon's merged answers among them, and how much of the
question the knowledge covers at all. :func:`relevant` keeps the passages close enough
to count; when none is, most of the question's words are found nowhere in the knowledge,
or its title names something the knowledge never mentions, there is nothing to answer
from and the ticket goes to a human without an LLM call. Otherwise the model sees the
question and those passages (:func:`task`), labelled by document, and answers a
:class:`~botarena.agents.actions.TicketAnswer`: whether they answer it, the answer, and
the labels it used. :func:`compose` writes the proposal a moderator reviews: the model's
answer (left out when it echoes its prompt, shares no word with the passages it cites
or only repeats a quoted sentence), the sentences of the best passage and of those it
cites that bear most on the question, quoted, and a last line ``Sources: <documents>``. A model
that says the passages do not answer the question hands the ticket to a human too,
unless the best passage is so close to the question (:func:`answered`) that a small
model's doubt does not count.
"""

from __future__ import annotations

import re

from botarena.agents.actions import TicketAnswer
from botarena.agents.echoes import is_echo
from botarena.memory.index import Hit
from botarena.memory.knowledge import content_words
from botarena.memory.service import Evidence
from botarena.server.protocol import TICKET_ANNOUNCEMENT

QUOTED_SENTENCES = 3
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
_BOOKKEEPING = re.compile(r"\n\(answer with a ticket_answer proposal on [^)]*\)\s*\Z")


def question(announcement: str) -> str:
    """The ticket's title and body, from its announcement in the room."""
    text = TICKET_ANNOUNCEMENT.sub("", announcement, count=1)
    return _BOOKKEEPING.sub("", text).strip()


def relevant(evidence: Evidence, min_similarity: float, min_coverage: float) -> list[Hit]:
    """The passages worth answering from: none when the knowledge covers less than
    ``min_coverage`` of the question's words or never mentions a name its title uses
    (LDAP, Slack), else those at least ``min_similarity`` close to it, best first."""
    if evidence.coverage < min_coverage or evidence.unknown_names:
        return []
    return [hit for hit in evidence.passages if hit.similarity >= min_similarity]


def labels(passages: list[Hit]) -> list[str]:
    """The documents of ``passages``, each once, in order: what a source may name."""
    return list(dict.fromkeys(hit.document for hit in passages))


def task(ticket: int, author: str, asked: str, passages: list[Hit]) -> str:
    """A ticket turn's task: the question, then each passage on one line under its label."""
    lines = [f"Ticket #{ticket} from {author}: {asked}", "Passages:"]
    for hit in passages:
        text = " ".join(hit.text.split())[:700]
        lines.append(f"[{hit.document}] {text}")
    lines.append(
        "Answer the ticket from these passages only and list the labels you used. "
        "If they do not answer it, set known to false."
    )
    return "\n".join(lines)


def _supporting(passage: Hit, wanted: set[str]) -> list[tuple[int, int, str]]:
    """The sentences of ``passage`` sharing words with the question: (shared, order, text)."""
    sentences = _SENTENCE.split(" ".join(passage.text.split()))
    scored = [(len(content_words(s) & wanted), i, s) for i, s in enumerate(sentences)]
    return [entry for entry in scored if entry[0] > 0]


def answered(answer: TicketAnswer, passages: list[Hit], sure_similarity: float) -> bool:
    """Whether the ticket is answered from ``passages``: as the model says, unless the
    best passage is at least ``sure_similarity`` close to the question (then it is,
    whatever a small model's guess)."""
    return answer.known or (bool(passages) and passages[0].similarity >= sure_similarity)


def _grounded(said: str, cited: list[Hit], names: set[str]) -> bool:
    """Whether the model's own answer is worth showing: a few words that are not an echo
    of the prompt and share at least two words with the passages it cites."""
    if len(re.findall(r"[^\W\d_]{2,}", said)) < 3 or is_echo(said, names):
        return False
    shared = content_words(said) & set().union(*(content_words(h.text) for h in cited))
    return len(shared) >= 2


def compose(answer: TicketAnswer, passages: list[Hit], asked: str, names: set[str]) -> str:
    """The ticket answer to propose from ``passages`` (best first); ``names``: the agents'
    names, for the echo check."""
    # the best passage always, and those the model cites (a small model cites at random)
    cited = [h for i, h in enumerate(passages) if i == 0 or h.document in answer.sources]
    wanted = content_words(asked)
    found = [
        (shared, rank, order, sentence)
        for rank, hit in enumerate(cited)
        for shared, order, sentence in _supporting(hit, wanted)
    ]
    least = max((f[0] for f in found), default=0) / 2  # the sentences that bear on it most
    best = sorted((f for f in found if f[0] >= least), key=lambda f: (-f[0], f[1], f[2]))
    quoted: dict[int, list[str]] = {}
    for _, rank, _, sentence in sorted(best[:QUOTED_SENTENCES], key=lambda f: (f[1], f[2])):
        quoted.setdefault(rank, []).append(sentence)
    if not quoted:  # nothing shares a word with the question: the best passage's opening
        quoted[0] = _SENTENCE.split(" ".join(cited[0].text.split()))[:2]
    parts = []
    said = " ".join(answer.answer.split())
    repeats = any(said in sentence for group in quoted.values() for sentence in group)
    if _grounded(said, cited, names) and not repeats:
        parts.append(said)
    for rank, sentences in quoted.items():
        parts.append(f'From {cited[rank].title or cited[rank].document}: "{" ".join(sentences)}"')
    used = ", ".join(dict.fromkeys(cited[rank].document for rank in quoted))
    return "\n\n".join(parts) + f"\n\nSources: {used}\n"


def unknown(ticket: int, reason: str) -> str:
    """What the agent says in the room when it hands a ticket to a human, and why."""
    return f"I do not know the answer to ticket #{ticket}: {reason}. I handed it to a moderator."
