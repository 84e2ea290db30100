"""One agent turn through CrewAI: its task, the LLM call held to a schema, its text.

:class:`CrewTurns` builds a CrewAI ``Agent`` from each persona once (role, goal and
backstory as written: CrewAI puts them in the system message; its memory, delegation
and tools off) and runs each turn as a one-task ``Crew`` whose ``response_model`` is
the turn's action (:mod:`botarena.agents.actions`), in a thread so the worker's event
loop never blocks, on the slot the LLM pool gives it (:mod:`botarena.agents.pool`: the
next backend when one fails). :func:`build_task` writes a short
task fit for a small model: the room and its mission, a few notes recalled, the last
messages, and one thing to do. :func:`clean_reply` makes the text of a chat action fit
to post: labels and quotes and the agent's greetings to itself removed, an answer cut
by the persona's limit ended on its last whole sentence, and refused when it echoes its
instructions (:mod:`botarena.agents.echoes`), is not plain prose (markup, links,
template placeholders: what a small model copies from its training data) or nothing
sensible is left. Each outcome
carries the time spent in the LLM and in total, which the benchmark reports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import time
from dataclasses import dataclass
from typing import Any

import structlog

from botarena.agents import crew
from botarena.agents.actions import Action
from botarena.agents.echoes import ECHO_REASON, is_echo
from botarena.agents.llm import LLMBackend
from botarena.agents.persona import Persona, Traits
from botarena.agents.pool import LLMPool, Slot
from botarena.agents.scheduler import Turn
from botarena.arenas.charter import ArenaCharter
from botarena.memory.service import TurnMemory
from botarena.server import offline
from botarena.server.errors import LLMUnavailable
from botarena.server.protocol import Message
from botarena.server.settings import LLMSettings

log = structlog.get_logger(__name__)


_GREETING = r"(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening)|thanks|thank you)"
_SENTENCE_END = re.compile(r"[.!?…][\"'”\u2019)\]]*(?=\s|$)")
CUT_REASON = "cut off by the token limit before a sentence ended"
_NOT_PROSE = re.compile(
    r"<[a-z/!][^>]*>?|\{[%{]|https?://|www\.|\[(?:your|insert|name|link)\b[^\]]*\]|```",
    re.IGNORECASE,
)
_NOISE = re.compile(r"[^\W_]{31,}")
"""A run of 31 or more letters and digits: no word of the languages the agents speak is
that long; the tiny model's noise ("123dNTA0TZ4LFzBJ...") is (a path or an identifier
breaks at its separators)."""
NOT_PROSE_REASON = "not plain prose (markup, a link, a placeholder or noise)"


def not_prose(text: str) -> bool:
    """Whether ``text`` holds markup, a link, a template placeholder ("[Your Name]") or
    noise (a run of letters and digits far longer than any word)."""
    return _NOT_PROSE.search(text) is not None or _NOISE.search(text) is not None


@dataclass(frozen=True)
class TurnOutcome:
    raw: str  # the model's answer: the action's JSON
    llm_seconds: float
    total_seconds: float
    completion_tokens: int = 0
    cut: bool = False  # stopped by the token limit


def _without_self_address(text: str, persona: Persona) -> str:
    """``text`` without the agent greeting or addressing itself ("Hi Grace" from Grace)."""
    names = "|".join(re.escape(n) for n in {persona.display_name, persona.id} if n)
    before = text
    text = re.sub(
        rf"\b{_GREETING}[,\s]+@?(?:{names})\b[\s,!.:;\u2014\u2013-]*", "", text, flags=re.IGNORECASE
    )
    text = re.sub(rf"^@?(?:{names})\b\s*[,!:;\u2014\u2013-]+\s*", "", text, flags=re.IGNORECASE)
    text = re.sub(rf"(?<![\w@])@(?:{names})\b[,:]?\s*", "", text, flags=re.IGNORECASE)
    text = text.strip()
    return text if text == before else text[:1].upper() + text[1:]


def _whole_sentences(text: str, limit: int) -> str:
    """``text`` up to its last sentence end within ``limit`` characters; empty when no
    sentence ends there."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text[: limit + 1]) if m.end() <= limit]
    return text[: ends[-1]].strip() if ends else ""


def clean_reply(
    raw: str, persona: Persona, history: list[Message], *, cut: bool = False
) -> tuple[str | None, str]:
    """The reply to post, or None and why the raw answer is not fit to post; ``cut``: the
    answer was stopped by the token limit (it is kept up to its last whole sentence)."""
    text = raw.strip()
    text = re.sub(r"^(final answer|answer|reply|response)\s*:\s*", "", text, flags=re.I)
    for name in (persona.display_name, persona.id):
        text = re.sub(rf"^\**{re.escape(name)}\**\s*:\s*", "", text, flags=re.I)
    text = text.strip().strip('"').strip()
    text = re.sub(r"\s+", " ", text)
    if not text:
        return None, "empty answer"
    names = {persona.display_name, persona.id} | {m.author for m in history}
    if is_echo(text, names):
        return None, ECHO_REASON
    if not_prose(text):
        return None, NOT_PROSE_REASON
    text = _without_self_address(text, persona)
    limit = persona.limits.max_reply_chars
    if cut or len(text) > limit:
        text = _whole_sentences(text, limit)
        if not text:
            return None, CUT_REASON
    if len(re.findall(r"[^\W\d_]{2,}", text)) < 2:
        return None, "not enough words to be a message"
    if any(text == m.text for m in history[-10:]):
        return None, "repeats a recent message"
    return text, "ok"


def build_task(
    persona: Persona,
    traits: Traits,
    turn: Turn,
    history: list[Message],
    charter: ArenaCharter | None,
    initiative: str,
    recalled: TurnMemory | None = None,
    draft: str | None = None,
) -> str:
    """The task of one chat or drafting turn; ``draft``: what to write instead of a
    chat message (:func:`botarena.agents.drafting.ask`)."""
    lines = [f"Room: {turn.room}." + (f" Mission: {charter.mission}" if charter else "")]
    style = [s for s in (persona.voice, traits.describe() if persona.traits else "") if s]
    if style:
        lines.append(f"Style: {'; '.join(style)}.")
    if recalled is not None and recalled.knowledge:
        lines.append("Notes:")
        lines.extend(f"- {' '.join(k.split())[:300]}" for k in recalled.knowledge)
    if recalled is not None and recalled.memories:
        lines.append("You remember:")
        lines.extend(f"- {' '.join(m.split())[:200]}" for m in recalled.memories)
    if history:
        lines.append("Chat so far:")
        lines.extend(f"{m.author}: {' '.join(m.text.split())[:300]}" for m in history[-6:])
    trigger = turn.trigger
    if draft is not None:
        lines.append(draft)
    elif turn.kind == "mention" and trigger is not None:
        lines.append(f"{trigger.author} asked you: {' '.join(trigger.text.split())[:300]}")
        lines.append(f"Answer {trigger.author} in one or two sentences.")
    elif turn.kind == "reply" and trigger is not None:
        lines.append(f"Answer {trigger.author} in one or two sentences, or pass.")
    else:
        lines.append(f"{initiative} One or two sentences.")
    return "\n".join(lines)


class CrewTurns:
    """Runs agent turns through CrewAI on an LLM pool (or one backend, a pool of one)."""

    def __init__(self, llm: LLMPool | LLMBackend, settings: LLMSettings) -> None:
        offline.apply()
        self.pool = llm if isinstance(llm, LLMPool) else LLMPool.of(llm)
        self.settings = settings
        self._agents: dict[str, Any] = {}

    @property
    def slot_count(self) -> int:
        return self.pool.capacity

    def _agent(self, persona: Persona) -> Any:
        """The CrewAI agent of ``persona`` (built once; each call sets its LLM)."""
        agent = self._agents.get(persona.id)
        if agent is not None:
            return agent
        agent = crew.crewai().Agent(
            role=persona.role,
            goal=persona.goal,
            backstory=persona.backstory,
            llm=self.pool.members[0].llm(0, self.settings),
            memory=False,
            allow_delegation=False,
            max_iter=1,
            max_retry_limit=0,
            verbose=False,
        )
        self._agents[persona.id] = agent
        return agent

    def _kickoff(
        self, persona: Persona, slot: Slot, description: str, action: type[Action], max_tokens: int
    ) -> TurnOutcome:
        crewai = crew.crewai()
        agent = self._agent(persona)  # an agent has one turn at a time: its LLM is this slot's
        llm = agent.llm = slot.llm(self.settings)
        llm.max_tokens = max_tokens
        call = llm.call
        seconds = 0.0

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            nonlocal seconds
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                seconds += time.perf_counter() - started

        object.__setattr__(llm, "call", timed_call)  # measure the LLM's share of a turn
        tokens_before = llm.get_token_usage_summary().completion_tokens
        task = crewai.Task(
            description=description,
            agent=agent,
            expected_output="The JSON object of your action.",
            response_model=action,
        )
        one = crewai.Crew(agents=[agent], tasks=[task], memory=False, verbose=False)
        try:
            output = one.kickoff()  # made without stream=True: a CrewOutput
        finally:
            object.__delattr__(llm, "call")
        tokens = llm.get_token_usage_summary().completion_tokens - tokens_before
        return TurnOutcome(str(output.raw or ""), seconds, 0.0, tokens, bool(llm.last_cut))

    async def run(
        self,
        persona: Persona,
        description: str,
        action: type[Action],
        max_tokens: int | None = None,
        arena: str = "",
    ) -> TurnOutcome:
        """Run one turn of ``arena`` on ``description`` (:func:`build_task`, or a
        ticket's task), its answer held to ``action``'s schema and ``max_tokens``
        (default: the settings'). A backend that fails or lacks the model hands the turn
        to the next one the pool offers; when none is left the failure propagates for
        the worker to back off on. A turn cancelled meanwhile (a mute, a timeout) gives
        its slot back only when the call in its thread has ended."""
        started = time.perf_counter()
        model = persona.model or self.pool.default_model
        limit = max_tokens or self.settings.llm_max_tokens
        failed: list[str] = []
        last: Exception | None = None
        while True:
            try:
                slot = await self.pool.acquire(model, arena, avoid=failed)
            except LLMUnavailable as exc:
                if last is None:
                    raise
                raise last from exc  # what the last backend said, when every one failed
            call = asyncio.ensure_future(
                asyncio.to_thread(self._kickoff, persona, slot, description, action, limit)
            )
            call.add_done_callback(functools.partial(self._release, slot))
            try:
                outcome = await asyncio.shield(call)
            except (LLMUnavailable, TimeoutError) as exc:
                log.info("turn.backend_failed", backend=slot.member.name, error=str(exc)[:200])
                failed.append(slot.member.name)
                last = exc
                continue
            return dataclasses.replace(outcome, total_seconds=time.perf_counter() - started)

    def _release(self, slot: Slot, done: asyncio.Future[TurnOutcome]) -> None:
        if done.cancelled():
            self.pool.release(slot)
        elif (error := done.exception()) is not None:  # retrieved: a cancelled turn's too
            self.pool.release(slot, error)
        else:
            outcome = done.result()
            self.pool.release(slot, None, outcome.completion_tokens, outcome.llm_seconds)
