"""A stand-in for Ollama's HTTP API, for tests only (Ollama cannot be installed here).

It answers as Ollama's documented API does (the shapes and messages of Ollama 0.12.6,
read from its ``docs/api.md`` and ``server/routes.go``) for the endpoints BotArena uses:

- ``GET /api/version``, ``GET /api/tags`` (installed models with name, model, size, digest
  and details) and ``GET /v1/models``;
- ``POST /api/chat``, Ollama's own chat API. It streams by default, as Ollama does: NDJSON
  (``application/x-ndjson``), one object per line with a piece of ``message.content`` and
  ``"done": false``, then a last object with an empty content, ``"done": true``,
  ``done_reason`` and the counts (``total_duration``, ``load_duration``,
  ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``, ``eval_duration``;
  durations in nanoseconds). With ``"stream": false`` it answers one object with the whole
  content, ``done_reason`` and the counts. Errors are ``{"error": "..."}`` as Ollama's:
  400 ``missing request body``, a malformed body, ``model is required``; 404 ``model 'x'
  not found`` for a model that is not installed; 500 ``invalid format: ...`` for a
  ``format`` that is neither ``"json"`` nor a schema object. An empty ``messages`` loads the
  model (``done_reason`` ``load``; ``unload`` with ``keep_alive`` 0). ``options`` are taken
  (``num_predict`` is honoured; ``temperature``, ``repeat_penalty``, ``num_ctx`` ... are
  accepted and change nothing), as is ``keep_alive``;
- ``POST /v1/chat/completions`` (the OpenAI-compatible chat API, including Ollama's 404
  ``model 'x' not found`` of type ``not_found_error``, and tool calls as Ollama returns
  them: ``tool_calls`` with the arguments as a JSON string and ``finish_reason``
  ``tool_calls``). ``response_format`` is honoured as Ollama maps it onto ``format``:
  ``{"type": "json_schema", "json_schema": {"name": ..., "schema": S}}`` is the schema S,
  ``{"type": "json_object"}`` is ``"json"``;
- for models brought in by bundles, blobs (``HEAD``/``POST /api/blobs/sha256:<d>``,
  refusing a body whose digest differs) and ``POST /api/create`` from uploaded files.

What the model says. Every request is recorded (``requests``) for assertions. ``script``
queues the assistant messages the next chats answer with, on either chat API, returned as
they are: a scripted content is never checked against the requested format, so a test can
script bad output and watch BotArena refuse it (a dict or list content is sent as its JSON
text). Without a script the answer is ``reply``; when a format is requested it is shaped as
Ollama's constrained decoding would shape it, by a generic schema filler:

- an object gets every property of its ``properties`` and every ``required`` one;
- a string is the ``reply`` text (cut to ``maxLength`` on a word boundary, padded to
  ``minLength``); an ``enum`` takes its first value, a ``const`` its value;
- a boolean is true; an integer or number its ``minimum`` (or just above an exclusive
  one), else 0;
- an array has ``minItems`` items (distinct ``enum`` values when there are enough);
- ``$ref`` into ``$defs``/``definitions``, ``anyOf``/``oneOf`` (the first branch that is
  not null) and ``allOf`` (merged) are followed;
- ``"json"`` without a schema gives ``{"text": <reply>}``.

The filled instance is checked with ``jsonschema`` before it is sent; a schema the filler
cannot satisfy (a ``pattern``, say) is answered 500 ``stand-in cannot fill the schema``, so
a test never mistakes the stand-in's limit for BotArena's. A chat's answer stops at
``num_predict`` (``options``, on ``/api/chat``) or ``max_tokens`` (``/v1``), counted here in
words, with ``done_reason``/``finish_reason`` ``length``, as Ollama's does; a JSON answer is
cut inside its string fields so that it stays valid JSON against the schema (a real model
cut mid-answer would leave the JSON unfinished: script that if it matters). Each chat takes
``delay`` seconds (a slow model; ``busy`` and ``most_busy`` count the chats under way), and
while ``failure`` is set every request is answered 500 with it as the error, as Ollama
answers once its runner has died (``llama runner process has terminated``). While ``hold``
is set and not yet released, chats wait for it (a slow model).

The capable model (``OllamaStandIn(..., capable=True)``) plays a model that answers from
the passages it is given, for BotArena's ticket turns. The contract it reads, in the LAST
``user`` message::

    Ticket #<n> from <author>: <question title>
    <optional body lines>
    Passages:
    [<source>] <passage text, on one line>
    [<source>] ...

and the schema of a ticket turn: an object whose ``properties`` have ``known`` (boolean),
``answer`` (string) and ``sources`` (array of strings whose ``items.enum`` lists the
sources it may cite, or ``items.const`` for one, as pydantic writes a one-value
``Literal``), possibly more. It reads only the passages whose source may be cited, and answers
``{"known": false, "answer": "I do not know; this needs a human.", "sources": []}``
unless both of these hold:

- every term the title names is named by some passage (:func:`named_terms`): a
  hyphenated word ("e-mail"), or a word of two letters or more written with a capital
  that does not open its sentence or with a capital after its first letter (a name or an
  acronym: "Slack", "LDAP", "MinIO"), leaving out the head of a wh-phrase, the last word
  between a sentence's first "what", "which" or "whose" and the next auxiliary verb ("URL"
  in "What URL should ..."), which says what the answer is, not what it is about. A passage names a
  term when it holds the term's stem, or for a hyphenated term the stem of its last part
  or of its parts run together ("email"), or the term itself as a word, case ignored;
- a passage has a sentence sharing at least two content words with the question (title
  and body). Content words are words of at least three letters or digits, stopwords left
  out, compared by their stem (:func:`stem`: lowercased, a possessive ``'s`` dropped, a
  plural ``s`` or ``es``, then one of the endings ``ing est ed er ly``, then a final ``e``,
  each only when three letters are left, so that "muted" is "mute" and "longest" is
  "long"). Sentences end at ``.``, ``!`` or ``?`` before a space.

Then the best passage is the one whose closest sentence shares most words, then the one
sharing most words in all, the first among equals, and the answer is ``{"known": true,
"answer": <the 1-3 sentences of that passage sharing most words with the question, in their
order>, "sources": [<its source>]}``; other properties are filled generically.

For any other schema, a string property named ``text`` or ``body`` gets a sentence about
the last user message's main content words (``About <topic>: ...``, never its instruction
phrases such as "You are" or "Write") and ``title`` a short title made of them; the rest
is filled generically. Without a format the capable model answers in plain
text: the ticket answer (or its "I do not know") for a ticket, else that sentence; with
``"json"`` it answers the ticket object for a ticket, else ``{"text": <sentence>}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonschema
from aiohttp import web

VERSION = "0.12.6"
DONT_KNOW = "I do not know; this needs a human."
# what a capable model answers to "json" without a schema: a ticket's object, else a text
TICKET_OBJECT = {
    "type": "object",
    "properties": {
        "known": {"type": "boolean"},
        "answer": {"type": "string"},
        "sources": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["known", "answer", "sources"],
}
TEXT_OBJECT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

STOPWORDS = frozenset(
    """
    the and for are but not you your yours with this that these those from have has had
    was were will would can could should shall may might must into onto over under about
    what which who whom whose when where why how all any each every some such than then
    there their them they its it's our ours out off too very just also only own same
    other more most much many few does did doing done been being here his her hers him
    she who's i'm i've we're isn't aren't don't doesn't didn't won't can't cannot via
    per use used using get got say says said tell told ask asked please thanks thank
    one two yes let lets like want need needs make made know well now again still
    """.split()
)
# the words of BotArena's turn prompts themselves, never a topic (but a question about
# tickets or rooms still matches passages about them: these do not count as stopwords)
PROMPT_WORDS = frozenset(
    """
    write reply answer respond return short chat message messages sentence sentences
    room team name mission voice temperament recent oldest first line filed ticket
    knowledge base things remember directly plain text without json object
    start topic action pass notes mood set put
    """.split()
)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TICKET = re.compile(r"Ticket #(\d+) from ([^:\n]+):[ \t]*(.*)")
_PASSAGE = re.compile(r"\s*\[([^\]\n]+)\]\s*(.+)")
_INSTRUCTION = re.compile(
    r"(you are|you're|write|reply|answer|respond|return|use |keep|do not|don't|your |"
    r"the room|room:|its mission|set |put |recent messages|from the knowledge|"
    r"things you remember|first line|submit)",
    re.IGNORECASE,
)
_SPEAKER = re.compile(r"^[\w.@-]{1,40}:\s+")
_APOSTROPHES = "'\u2019"
_POSSESSIVE = re.compile(rf"[{_APOSTROPHES}]s?$")
_PLURALS = ("es", "s")
_ENDINGS = ("ing", "est", "ed", "er", "ly")
_TERM = re.compile(rf"[^\W_]+(?:[-{_APOSTROPHES}][^\W_]+)*")
_WH = frozenset({"what", "which", "whose"})
_AUXILIARIES = frozenset(
    """is are was were be do does did can could should would will shall may might must
    has have""".split()
)


class CannotFill(Exception):
    """The generic filler cannot build an instance of this schema."""


def _norm(word: str) -> str:
    word = word.lower()
    if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def stem(word: str) -> str:
    """A word as the capable model matches it, whatever its form: lowercased, a
    possessive ``'s`` dropped, a plural ``s`` or ``es`` dropped (not from a word ending
    in ``ss``), then one of the endings ``ing est ed er ly``, then a final ``e`` of a
    stem longer than three letters; an ending goes only when at least three letters are
    left. So "muted", "mute" and "muting" are one word, as are "longest" and "long",
    "pauses" and "paused", "errors" and "error"."""
    word = _POSSESSIVE.sub("", word.lower())
    for endings in (_PLURALS, _ENDINGS):
        if word.endswith("ss"):
            break
        ending = next((e for e in endings if word.endswith(e) and len(word) - len(e) >= 3), "")
        word = word[: len(word) - len(ending)]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """The distinct content words of ``text``, stemmed (:func:`stem`), in order of
    first use: words of at least three letters or digits, stopwords left out."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text):
        word = _POSSESSIVE.sub("", match.group(0))
        if len(word) >= 3 and word.lower() not in STOPWORDS:
            seen.setdefault(stem(word), None)
    return list(seen)


def named_terms(title: str) -> list[str]:
    """The terms a question's title names (what it is about, which passages that never
    name them cannot answer): a hyphenated word ("e-mail"), and a word written with a
    capital that does not open its sentence, or with a capital after its first letter
    (a name or an acronym: "Slack", "LDAP", "MinIO"); words of two letters or more.
    Left out: the head of a wh-phrase, the last word between "what", "which" or "whose"
    and the verb after them ("What URL should ..."), which names what the answer is,
    not what it is about."""
    terms: list[str] = []
    for sentence in _SENTENCE_END.split(title):
        tokens = [_POSSESSIVE.sub("", m.group(0)) for m in _TERM.finditer(sentence)]
        answer_type: int | None = None
        for i, token in enumerate(tokens):
            if token.lower() in _WH:
                verb = next(
                    (j for j in range(i + 1, len(tokens)) if tokens[j].lower() in _AUXILIARIES),
                    None,
                )
                if verb is not None and verb > i + 1:
                    answer_type = verb - 1
                break
        for i, token in enumerate(tokens):
            if i == answer_type or len(token) < 2:
                continue
            capital = any(c.isupper() for c in token[1:]) or (i > 0 and token[0].isupper())
            if "-" in token or capital:
                terms.append(token)
    return list(dict.fromkeys(terms))


def _names(term: str, text: str, stems: set[str]) -> bool:
    """Whether ``text`` (whose word stems are ``stems``) names ``term``: its stem, or
    for a hyphenated term its last part's or its parts run together ("email")."""
    parts = [p for p in term.split("-") if p]
    joined = "".join(parts)
    return (
        stem(term) in stems
        or stem(joined) in stems
        or (len(parts) > 1 and len(parts[-1]) >= 3 and stem(parts[-1]) in stems)
        or bool(re.search(rf"(?<![^\W_]){re.escape(term)}(?![^\W_])", text, re.IGNORECASE))
    )


def _shared(text: str, question: set[str]) -> int:
    return len(set(content_words(text)) & question)


def _text_of(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI-style content parts
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def last_user_text(messages: list[dict]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return _text_of(users[-1]) if users else ""


@dataclass
class Ticket:
    number: int
    author: str
    title: str
    body: str
    passages: list[tuple[str, str]]

    @property
    def question(self) -> set[str]:
        return set(content_words(f"{self.title}\n{self.body}"))


def parse_ticket(prompt: str) -> Ticket | None:
    """The ticket turn's contract (see the module docstring), or None."""
    lines = prompt.splitlines()
    hits = [(i, m) for i, line in enumerate(lines) if (m := _TICKET.search(line))]
    if not hits:
        return None
    start, found = hits[0]
    body: list[str] = []
    passages: list[tuple[str, str]] = []
    in_passages = False
    for line in lines[start + 1 :]:
        if not in_passages and line.strip() == "Passages:":
            in_passages = True
        elif in_passages:
            passage = _PASSAGE.fullmatch(line)
            if passage:
                passages.append((passage.group(1).strip(), passage.group(2).strip()))
        else:
            body.append(line)
    return Ticket(
        int(found.group(1)),
        found.group(2).strip(),
        found.group(3).strip(),
        "\n".join(body).strip(),
        passages,
    )


def answer_ticket(ticket: Ticket, allowed: list[str] | None) -> tuple[bool, str, list[str]]:
    """What the capable model answers: (known, answer, sources)."""
    question = ticket.question
    shown = [(s, t) for s, t in ticket.passages if allowed is None or s in allowed]
    everything = " ".join(text for _, text in shown)
    stems = {stem(word) for word in _WORD.findall(everything)}
    if any(not _names(term, everything, stems) for term in named_terms(ticket.title)):
        return False, DONT_KNOW, []  # it asks about something no passage names
    best: tuple[tuple[int, int], str, str] | None = None
    for source, text in shown:
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        closest = max((_shared(s, question) for s in sentences), default=0)
        score = (closest, _shared(text, question))
        if best is None or score > best[0]:
            best = (score, source, text)
    if best is None or best[0][0] < 2:
        return False, DONT_KNOW, []
    _, source, text = best
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    ranked = sorted(range(len(sentences)), key=lambda i: (-_shared(sentences[i], question), i))
    chosen = sorted(i for i in ranked[:3] if _shared(sentences[i], question) > 0)
    return True, " ".join(sentences[i].strip() for i in chosen), [source]


def topic_words(prompt: str, count: int = 3) -> list[str]:
    """The main content words of a prompt, leaving its instructions out: of its lines that
    are not instructions, what was quoted to the model if anything, else all of them."""
    kept = [
        _SPEAKER.sub("", _TICKET.sub(r"\3", line.strip()))
        for line in prompt.splitlines()
        if line.strip() and not _INSTRUCTION.match(line.strip())
    ]
    quoted = [q for line in kept for q in re.findall(r"[\"“]([^\"“”]+ [^\"“”]+)[\"”]", line)]
    source = re.sub(r"@[\w.-]+", " ", "\n".join(quoted or kept))
    words = [
        w.lower()
        for w in _WORD.findall(source)
        if len(w) >= 3 and w.lower() not in STOPWORDS | PROMPT_WORDS and not w.isdigit()
    ]
    ranked = Counter(_norm(w) for w in words)  # "cache" and "caches" count as one
    shown: dict[str, str] = {}  # each word as it was first written
    for w in words:
        shown.setdefault(_norm(w), w)
    order = list(shown)
    best = sorted(order, key=lambda n: (-ranked[n], order.index(n)))[:count]
    return [shown[n] for n in best]


def topic_sentence(prompt: str) -> str:
    words = topic_words(prompt)
    if not words:
        return "About this: I would need a few more details to help."
    if len(words) == 1:
        return f"About {words[0]}: that is what I would look at next."
    rest = " and ".join(words[1:])
    return f"About {words[0]}: I would look at {rest} next."


def topic_title(prompt: str) -> str:
    words = topic_words(prompt)
    return " ".join(words).capitalize() if words else "A note"


class Budget:
    """The words a chat may still produce (``num_predict``/``max_tokens``)."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit if limit is not None and limit > 0 else None
        self.cut = False

    def take(self, text: str) -> str:
        if self.left is None or not text:
            return text
        words = text.split(" ")
        if len(words) > self.left:
            self.cut = True
            words = words[: self.left]
        self.left -= len(words)
        return " ".join(words)


def _fit(text: str, schema: dict, budget: Budget) -> str:
    text = budget.take(text)
    most = schema.get("maxLength")
    if isinstance(most, int) and len(text) > most:
        cut = text[: most + 1].rsplit(" ", 1)[0] if " " in text[: most + 1] else ""
        text = (cut if cut and len(cut) <= most else text[:most]).rstrip()
    least = schema.get("minLength")
    if isinstance(least, int) and len(text) < least:
        text = text + "." * (least - len(text))
    return text


class Filler:
    """Builds an instance of a JSON schema, as constrained decoding would."""

    def __init__(self, root: dict, text: str, budget: Budget, named: dict[str, str]) -> None:
        self.root = root
        self.text = text
        self.budget = budget
        self.named = named  # string properties with a value of their own (capable mode)

    def resolve(self, schema: Any, depth: int = 0) -> dict:
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if depth > 32 or not ref.startswith("#"):
                raise CannotFill(f"cannot follow $ref {ref!r}")
            target: Any = self.root
            for part in ref.lstrip("#").strip("/").split("/"):
                if part:
                    target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return {**self.resolve(target, depth + 1), **rest}
        if "allOf" in schema:
            merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part, depth + 1)
                merged["properties"] = {
                    **merged.get("properties", {}),
                    **part.get("properties", {}),
                }
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update(
                    {k: v for k, v in part.items() if k not in ("properties", "required")}
                )
            return merged
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = [self.resolve(b, depth + 1) for b in schema[key]]
                chosen = next((b for b in branches if b.get("type") != "null"), branches[0])
                rest = {k: v for k, v in schema.items() if k != key}
                return {**rest, **chosen}
        return schema

    def fill(self, schema: Any, name: str | None = None, depth: int = 0) -> Any:
        if depth > 32:
            raise CannotFill("the schema nests too deep")
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            if "properties" in schema or "required" in schema:
                kind = "object"
            elif "items" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            props = schema.get("properties") or {}
            names = [*props, *(r for r in schema.get("required", []) if r not in props)]
            return {p: self.fill(props.get(p, {}), p, depth + 1) for p in names}
        if kind == "array":
            return self.array(schema, depth)
        if kind == "string":
            if name is not None and name in self.named:
                return _fit(self.named[name], schema, self.budget)
            return self.string(schema)
        if kind == "boolean":
            return True
        if kind in ("integer", "number"):
            return self.number(schema, kind)
        if kind == "null":
            return None
        raise CannotFill(f"unknown type {kind!r}")

    def string(self, schema: dict) -> str:
        fmt = schema.get("format")
        now = datetime.now(UTC)
        if fmt == "date-time":
            return now.isoformat(timespec="seconds").replace("+00:00", "Z")
        if fmt == "date":
            return now.date().isoformat()
        if fmt == "email":
            return "someone@example.org"
        if fmt in ("uri", "url"):
            return "http://127.0.0.1/"
        return _fit(self.text, schema, self.budget)

    def number(self, schema: dict, kind: str) -> int | float:
        step = 1 if kind == "integer" else 0.5
        bounds = {
            key: value
            for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
            if isinstance(value := schema.get(key), int | float) and not isinstance(value, bool)
        }
        strict = schema.get("exclusiveMinimum") is True  # draft 4: a flag on minimum
        if "minimum" in bounds:
            value = bounds["minimum"] + (step if strict else 0)
        elif "exclusiveMinimum" in bounds:
            value = bounds["exclusiveMinimum"] + step
        elif bounds.get("maximum", 0) < 0:
            value = bounds["maximum"] - (step if schema.get("exclusiveMaximum") is True else 0)
        elif bounds.get("exclusiveMaximum", 1) <= 0:
            value = bounds["exclusiveMaximum"] - step
        else:
            value = 0
        return math.ceil(value) if kind == "integer" else value

    def array(self, schema: dict, depth: int) -> list:
        count = schema.get("minItems") or 0
        items = self.resolve(schema.get("items", {}))
        enum = items.get("enum")
        if isinstance(enum, list) and len(enum) >= count:
            return list(enum[:count])
        values = [self.fill(items, None, depth + 1) for _ in range(count)]
        if schema.get("uniqueItems"):
            values = [
                f"{v} ({i + 1})" if isinstance(v, str) else v + i if isinstance(v, int) else v
                for i, v in enumerate(values)
            ]
        return values


def _sources_enum(schema: dict, filler: Filler) -> list[str] | None:
    sources = filler.resolve((schema.get("properties") or {}).get("sources", {}))
    items = filler.resolve(sources.get("items", {}))
    if "const" in items:  # pydantic's Literal of one source
        return [items["const"]]
    return list(items["enum"]) if isinstance(items.get("enum"), list) else None


def _is_ticket_schema(schema: dict, filler: Filler) -> bool:
    props = schema.get("properties") or {}
    if not isinstance(props, dict):
        return False
    kinds = {p: filler.resolve(props.get(p)).get("type") for p in ("known", "answer", "sources")}
    return kinds == {"known": "boolean", "answer": "string", "sources": "array"}


@dataclass
class Answer:
    content: str
    cut: bool


@dataclass
class OllamaStandIn:
    models: list[str]
    reply: str = "The parser drops trailing commas; a test for that case would catch it."
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    script: list[dict] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    created: dict[str, dict] = field(default_factory=dict)
    url: str = ""
    hold: asyncio.Event | None = None
    capable: bool = False
    delay: float = 0.0
    failure: str | None = None
    busy: int = 0
    most_busy: int = 0

    def _installed(self, name: str) -> bool:
        return name in self.models or f"{name}:latest" in self.models

    def compose(self, messages: list[dict], fmt: Any, limit: int | None) -> Answer:
        """The unscripted answer to a chat: ``fmt`` is None, ``"json"`` or a schema
        (:func:`format_error` has let it through); ``limit``: the words it may use."""
        budget = Budget(limit)
        prompt = last_user_text(messages)
        ticket = parse_ticket(prompt) if self.capable else None
        if fmt is None:
            if not self.capable:
                text = self.reply
            elif ticket is not None:
                text = answer_ticket(ticket, None)[1]
            else:
                text = topic_sentence(prompt)
            return Answer(budget.take(text), budget.cut)
        if fmt == "json":
            fmt = TICKET_OBJECT if ticket is not None else TEXT_OBJECT
        try:
            jsonschema.validators.validator_for(fmt).check_schema(fmt)
        except jsonschema.SchemaError as exc:
            raise CannotFill("invalid JSON schema in format") from exc
        named: dict[str, str] = {}
        if self.capable:
            sentence = topic_sentence(prompt)
            named = {"text": sentence, "body": sentence, "title": topic_title(prompt)}
        filler = Filler(fmt, self.reply, budget, named)
        try:
            root = filler.resolve(fmt)
            if self.capable and _is_ticket_schema(root, filler):
                instance = self._ticket_instance(root, filler, ticket)
            else:
                instance = filler.fill(fmt)
        except (AttributeError, TypeError, KeyError) as exc:
            raise CannotFill(f"stand-in cannot fill the schema: {exc!r}") from exc
        try:
            jsonschema.validate(instance, fmt)
        except jsonschema.ValidationError as exc:
            raise CannotFill(f"stand-in cannot fill the schema: {exc.message}") from exc
        return Answer(json.dumps(instance, ensure_ascii=False), budget.cut)

    def _ticket_instance(self, root: dict, filler: Filler, ticket: Ticket | None) -> dict:
        """A ticket turn's object: known, answer and sources from the passages (the
        capable model), the schema's other properties filled generically."""
        known, answer, sources = (
            answer_ticket(ticket, _sources_enum(root, filler))
            if ticket is not None
            else (False, DONT_KNOW, [])
        )
        props = root.get("properties") or {}
        instance: dict[str, Any] = {}
        for prop in [*props, *(r for r in root.get("required", []) if r not in props)]:
            schema = filler.resolve(props.get(prop, {}))
            if prop == "known":
                instance[prop] = known
            elif prop == "answer":
                instance[prop] = _fit(answer, schema, filler.budget)
            elif prop == "sources" and len(sources) >= (schema.get("minItems") or 0):
                instance[prop] = sources
            else:
                instance[prop] = filler.fill(schema, prop)
        return instance

    async def _think(self) -> None:
        """Take ``delay`` seconds over a chat, counting the chats under way."""
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.busy -= 1

    def app(self) -> web.Application:
        @web.middleware
        async def failing(request: web.Request, handler: Any) -> web.StreamResponse:
            if self.failure is not None:  # as Ollama answers once its runner has died
                self.requests.append((request.method, request.path, {"failed": True}))
                return web.json_response({"error": self.failure}, status=500)
            return await handler(request)

        async def version(request: web.Request) -> web.Response:
            self.requests.append(("GET", request.path, {}))
            return web.json_response({"version": VERSION})

        async def tags(request: web.Request) -> web.Response:
            self.requests.append(("GET", request.path, {}))
            return web.json_response(
                {
                    "models": [
                        {
                            "name": name,
                            "model": name,
                            "modified_at": "2026-11-01T10:00:00.000000000Z",
                            "size": 4_661_224_676,
                            "digest": f"{abs(hash(name)):064x}"[:64],
                            "details": {
                                "parent_model": "",
                                "format": "gguf",
                                "family": "llama",
                                "families": ["llama"],
                                "parameter_size": "8.0B",
                                "quantization_level": "Q4_0",
                            },
                        }
                        for name in self.models
                    ]
                }
            )

        async def openai_models(request: web.Request) -> web.Response:
            self.requests.append(("GET", request.path, {}))
            return web.json_response(
                {
                    "object": "list",
                    "data": [
                        {
                            "id": name,
                            "object": "model",
                            "created": 1_760_000_000,
                            "owned_by": "library",
                        }
                        for name in self.models
                    ],
                }
            )

        def openai_error(status: int, message: str) -> web.Response:
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
            return web.json_response(
                {"error": {"message": message, "type": kind, "param": None, "code": None}},
                status=status,
            )

        async def chat(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return openai_error(400, "invalid JSON")
            self.requests.append(("POST", request.path, body))
            model = body.get("model", "")
            if not self._installed(model):
                return openai_error(404, f"model '{model}' not found")
            prompt_tokens = sum(len(_text_of(m).split()) for m in body["messages"])
            if self.hold is not None:
                await self.hold.wait()
            await self._think()
            fmt = None
            response_format = body.get("response_format")
            if isinstance(response_format, dict):
                kind = str(response_format.get("type", "")).strip().lower()
                if kind == "json_object":
                    fmt = "json"
                elif kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
                    fmt = response_format["json_schema"].get("schema")
            if error := format_error(fmt):
                return openai_error(500, error)
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            finish = "stop"
            if self.script:
                message = self.script.pop(0)
                if isinstance(message.get("content"), dict | list):
                    message = {**message, "content": json.dumps(message["content"])}
                words = str(message.get("content") or "").split(" ")
                if message.get("tool_calls"):
                    finish = "tool_calls"
                elif limit and len(words) > limit:
                    message = {**message, "content": " ".join(words[:limit])}
                    finish = "length"
            else:
                try:
                    answer = self.compose(body["messages"], fmt, limit)
                except CannotFill as exc:
                    return openai_error(500, str(exc))
                message = {"role": "assistant", "content": answer.content}
                finish = "length" if answer.cut else "stop"
            completion_tokens = len(str(message.get("content") or message).split())
            return web.json_response(
                {
                    "id": f"chatcmpl-{len(self.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": "fp_ollama",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
            )

        async def native_chat(request: web.Request) -> web.StreamResponse:
            started = time.monotonic_ns()
            raw = await request.text()
            if not raw.strip():
                return web.json_response({"error": "missing request body"}, status=400)
            try:  # Go's json.Decoder, as Ollama's: the first value, the rest left unread
                body, _ = json.JSONDecoder().raw_decode(raw, len(raw) - len(raw.lstrip()))
            except json.JSONDecodeError as exc:
                return web.json_response({"error": _go_json_error(raw, exc)}, status=400)
            body = {} if body is None else body
            if not isinstance(body, dict):
                return web.json_response(
                    {
                        "error": f"json: cannot unmarshal {_go_kind(body)} into Go value of type "
                        "api.ChatRequest"
                    },
                    status=400,
                )
            self.requests.append(("POST", request.path, body))
            messages = body.get("messages") or []
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                wrong = messages if not isinstance(messages, list) else messages[0]
                return web.json_response(
                    {
                        "error": f"json: cannot unmarshal {_go_kind(wrong)} into Go struct field "
                        "ChatRequest.messages of type "
                        + ("[]api.Message" if wrong is messages else "api.Message")
                    },
                    status=400,
                )
            model = body.get("model")
            if not isinstance(model, str) or not model:
                return web.json_response({"error": "model is required"}, status=400)
            if not self._installed(model):
                return web.json_response({"error": f"model '{model}' not found"}, status=404)
            if not messages:
                unload = body.get("keep_alive") in (0, "0", "0s", "0m")
                return web.json_response(
                    {
                        "model": model,
                        "created_at": _now(),
                        "message": {"role": "assistant", "content": ""},
                        "done_reason": "unload" if unload else "load",
                        "done": True,
                    }
                )
            fmt = None if body.get("format") in ("", None) else body["format"]
            if error := format_error(fmt):
                return web.json_response({"error": error}, status=500)
            options = body.get("options") or {}
            limit = options.get("num_predict") if isinstance(options, dict) else None
            limit = limit if isinstance(limit, int) and limit > 0 else None
            prompt_tokens = sum(len(_text_of(m).split()) for m in messages)
            loaded = time.monotonic_ns()
            if self.hold is not None:
                await self.hold.wait()
            await self._think()
            tool_calls = None
            if self.script:
                scripted = self.script.pop(0)
                content = scripted.get("content")
                if isinstance(content, dict | list):
                    content = json.dumps(content)
                content = str(content or "")
                tool_calls = scripted.get("tool_calls") or None
                words = content.split(" ")
                cut = bool(limit and not tool_calls and len(words) > limit)
                if cut:
                    content = " ".join(words[:limit])
            else:
                try:
                    answer = self.compose(messages, fmt, limit)
                except CannotFill as exc:
                    return web.json_response({"error": str(exc)}, status=500)
                content, cut = answer.content, answer.cut
            pieces = _pieces(content)
            eval_count = max(len(pieces), 1)
            prompt_eval_duration = prompt_tokens * 1_000_000
            eval_duration = eval_count * 20_000_000
            elapsed = time.monotonic_ns() - started
            done = {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done_reason": "length" if cut else "stop",
                "done": True,
                "total_duration": elapsed + prompt_eval_duration + eval_duration,
                "load_duration": loaded - started,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": prompt_eval_duration,
                "eval_count": eval_count,
                "eval_duration": eval_duration,
            }
            native_calls = _native_tool_calls(tool_calls) if tool_calls else None
            if body.get("stream") is False:
                message: dict = {"role": "assistant", "content": content}
                if native_calls:
                    message["tool_calls"] = native_calls
                return web.json_response({**done, "message": message})
            stream = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await stream.prepare(request)
            chunks: list[dict] = [{"role": "assistant", "content": p} for p in pieces]
            if native_calls:
                chunks.append({"role": "assistant", "content": "", "tool_calls": native_calls})
            for chunk in chunks:
                line = {"model": model, "created_at": _now(), "message": chunk, "done": False}
                await stream.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            await stream.write(json.dumps(done).encode() + b"\n")
            await stream.write_eof()
            return stream

        async def blob(request: web.Request) -> web.Response:
            digest = request.match_info["digest"]
            self.requests.append((request.method, request.path, {}))
            if request.method == "HEAD":
                return web.Response(status=200 if digest in self.blobs else 404)
            body = await request.read()
            actual = "sha256:" + hashlib.sha256(body).hexdigest()
            if actual != digest:
                return web.json_response(
                    {"error": f'digest mismatch, expected "{digest}", got "{actual}"'}, status=400
                )
            self.blobs[digest] = body
            return web.Response(status=201)

        async def create(request: web.Request) -> web.Response:
            body = await request.json()
            self.requests.append(("POST", request.path, body))
            missing = [d for d in body.get("files", {}).values() if d not in self.blobs]
            if not body.get("model") or missing:
                return web.json_response({"error": f"missing blobs: {missing}"}, status=400)
            name = body["model"] if ":" in body["model"] else f"{body['model']}:latest"
            self.created[name] = body
            self.models.append(name)
            return web.json_response({"status": "success"})

        app = web.Application(client_max_size=1024**3, middlewares=[failing])
        app.add_routes(
            [
                web.get("/api/version", version),
                web.get("/api/tags", tags),
                web.post("/api/chat", native_chat),
                web.get("/v1/models", openai_models),
                web.post("/v1/chat/completions", chat),
                web.route("HEAD", "/api/blobs/{digest}", blob),
                web.post("/api/blobs/{digest}", blob),
                web.post("/api/create", create),
            ]
        )
        return app


def format_error(fmt: Any) -> str | None:
    """Ollama's error for a ``format`` that is neither "json" nor a schema object."""
    if fmt is None or fmt == "json" or isinstance(fmt, dict):
        return None
    shown = json.dumps(json.dumps(fmt))  # Go's %q of the raw JSON
    return f'invalid format: {shown}; expected "json" or a valid JSON Schema object'


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _pieces(content: str) -> list[str]:
    """The streamed pieces of a content, word by word (what a token stream looks like);
    joined, they are the content."""
    pieces = re.findall(r"\s*\S+", content)
    rest = content[len("".join(pieces)) :]
    if rest:
        pieces.append(rest)
    return pieces


def _native_tool_calls(calls: list[dict]) -> list[dict]:
    """OpenAI-shaped scripted tool calls as Ollama's own API returns them: arguments as an
    object, an index, no id."""
    native = []
    for index, call in enumerate(calls):
        function = dict(call.get("function", {}))
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            arguments = json.loads(arguments or "{}")
        native.append(
            {"function": {"index": index, "name": function.get("name"), "arguments": arguments}}
        )
    return native


def _go_kind(value: Any) -> str:
    """A JSON value's kind as Go's encoding/json names it in its errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _go_json_error(raw: str, exc: json.JSONDecodeError) -> str:
    """A malformed body's error as Go's encoding/json words it (what Ollama answers)."""
    if exc.pos >= len(raw.rstrip()):
        return "unexpected EOF"
    char = raw[exc.pos]
    if exc.pos == len(raw) - len(raw.lstrip()):
        return f"invalid character {char!r} looking for beginning of value"
    return f"invalid character {char!r} in JSON input"


@asynccontextmanager
async def ollama_standin(models: list[str], **fields: Any) -> AsyncIterator[OllamaStandIn]:
    """An Ollama stand-in on a free loopback port; ``fields``: ``OllamaStandIn``'s own
    (``capable=True``, ``reply=...``)."""
    standin = OllamaStandIn(models, **fields)
    runner = web.AppRunner(standin.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    standin.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield standin
    finally:
        await runner.cleanup()
