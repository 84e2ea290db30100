"""One agent turn through CrewAI: prompt, LLM call, and a reply fit to post.

:class:`CrewTurns` builds a CrewAI ``Agent`` from each persona once (role, goal and
backstory as written, CrewAI's memory and delegation off, one iteration: a model with
function calling gets one round of tool calls, then CrewAI asks for its answer) and runs
each turn as a one-task ``Crew`` in a thread, so the worker's event loop never blocks.
Each turn goes to whichever LLM slot (server instance) is idle. The room's recent
history, the arena's mission and the persona's voice and traits go into the task. The
answer is cleaned (labels, quotes and the agent's greetings to itself removed; an answer
cut by the persona's limit or the token limit ends on its last whole sentence) and refused
when it echoes its instructions (:mod:`botarena.agents.echoes`) or nothing sensible is left.
Each outcome carries the time spent in the LLM and in total, which the benchmark reports.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from dataclasses import dataclass
from typing import Any, cast

from botarena.agents.echoes import ECHO_REASON, is_echo
from botarena.agents.llm import LLMBackend
from botarena.agents.persona import Persona, Traits
from botarena.agents.scheduler import Turn
from botarena.arenas.charter import ArenaCharter
from botarena.memory.service import TurnMemory
from botarena.server import offline
from botarena.server.protocol import Message
from botarena.server.settings import LLMSettings

_GREETING = r"(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening)|thanks|thank you)"
_SENTENCE_END = re.compile(r"[.!?…][\"'”\u2019)\]]*(?=\s|$)")
CUT_REASON = "cut off by the token limit before a sentence ended"


@dataclass(frozen=True)
class TurnOutcome:
    text: str | None  # None: nothing to post (see reason)
    reason: str
    llm_seconds: float
    total_seconds: float
    completion_tokens: int = 0
    raw: str = ""  # the model's answer before cleaning (a draft is parsed from it)


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
    """The task of one turn; ``draft``: what to write instead of a chat message."""
    lines = [
        f'You are {persona.display_name} in the "{turn.room}" room of a team chat.',
    ]
    if charter is not None:
        lines.append(f"The room's mission: {charter.mission}")
    if persona.voice:
        lines.append(f"Your voice: {persona.voice}.")
    if persona.traits:
        lines.append(f"Your temperament: {traits.describe()}.")
    if recalled is not None and recalled.knowledge:
        lines.append("From the knowledge base:")
        lines.extend(f"- {k[:500]}" for k in recalled.knowledge)
    if recalled is not None and recalled.memories:
        lines.append("Things you remember:")
        lines.extend(f"- {m[:300]}" for m in recalled.memories)
    if history:
        lines.append("Recent messages, oldest first:")
        lines.extend(f"{m.author}: {m.text[:400]}" for m in history[-8:])
    if turn.kind == "mention" and turn.trigger is not None:
        lines.append(
            f'{turn.trigger.author} said to you: "{turn.trigger.text[:400]}". Answer them directly.'
        )
    elif turn.kind == "ticket" and turn.trigger is not None:
        lines.append(f'{turn.trigger.author} filed a ticket: "{turn.trigger.text[:600]}".')
    elif turn.kind == "reply" and turn.trigger is not None:
        lines.append(f"Reply to {turn.trigger.author}'s last message.")
    else:
        lines.append(f"The room is quiet. {initiative}")
    lines.append(draft or "Write one short chat message (one or two sentences), without your name.")
    return "\n".join(lines)


class CrewTurns:
    """Runs agent turns through CrewAI on one LLM backend."""

    def __init__(
        self, backend: LLMBackend, settings: LLMSettings, *, keep_prompts: bool = False
    ) -> None:
        """``keep_prompts``: keep what is sent to the LLM in :attr:`prompts` (benchmarks)."""
        offline.apply()
        self.prompts: list[Any] | None = [] if keep_prompts else None
        self.backend = backend
        self.settings = settings
        self._agents: dict[tuple[str, int], Any] = {}
        self._llm_seconds: dict[str, float] = {}  # per agent: one turn at a time each
        self._last_tokens: dict[str, int] = {}  # per agent: its last LLM call's answer
        self.slot_count = getattr(backend, "slots", 1)
        self._free_slots: asyncio.Queue[int] | None = None

    def _agent(self, persona: Persona, slot: int) -> Any:
        """The CrewAI agent of ``persona`` on LLM slot ``slot`` (built once)."""
        agent = self._agents.get((persona.id, slot))
        if agent is not None:
            return agent
        from crewai import Agent

        llm = self.backend.crewai_llm(persona.model, slot, self.settings)
        call = llm.call
        seconds, agent_id, prompts = self._llm_seconds, persona.id, self.prompts
        last_tokens = self._last_tokens

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            # CrewAI may call the LLM from a thread of its own: account per agent
            if prompts is not None and args:
                prompts.append(copy.deepcopy(args[0]))  # CrewAI reuses its message list
            started = time.perf_counter()
            before = llm.get_token_usage_summary().completion_tokens
            try:
                return call(*args, **kwargs)
            finally:
                seconds[agent_id] = seconds.get(agent_id, 0.0) + time.perf_counter() - started
                last_tokens[agent_id] = llm.get_token_usage_summary().completion_tokens - before

        object.__setattr__(llm, "call", timed_call)  # measure the LLM's share of a turn
        agent = Agent(
            role=persona.role,
            goal=persona.goal,
            backstory=persona.backstory,
            llm=llm,
            memory=False,
            allow_delegation=False,
            max_iter=1,
            max_retry_limit=0,
            verbose=False,
        )
        self._agents[(persona.id, slot)] = agent
        return agent

    def _kickoff(
        self, persona: Persona, slot: int, description: str, tools: list[Any]
    ) -> tuple[str, float, int, bool]:
        """The answer, the LLM's seconds, the completion tokens, and whether the last LLM
        call was stopped by the token limit."""
        from crewai import Crew, CrewOutput, Task

        self._llm_seconds[persona.id] = 0.0
        self._last_tokens[persona.id] = 0
        agent = self._agent(persona, slot)
        tokens_before = agent.llm.get_token_usage_summary().completion_tokens
        task = Task(
            description=description,
            agent=agent,
            expected_output="One short chat message in plain text.",
            tools=tools,
        )
        crew = Crew(agents=[agent], tasks=[task], memory=False, verbose=False)
        # a crew made without stream=True returns a CrewOutput, never a CrewStreamingOutput
        output = cast(CrewOutput, crew.kickoff())
        tokens = agent.llm.get_token_usage_summary().completion_tokens - tokens_before
        cut = self._last_tokens[persona.id] >= self.settings.llm_max_tokens
        return str(output.raw or ""), self._llm_seconds[persona.id], tokens, cut

    async def run(
        self,
        persona: Persona,
        description: str,
        history: list[Message],
        tools: list[Any] | None = None,
    ) -> TurnOutcome:
        """Run one turn on the task :func:`build_task` wrote; ``history`` is what the reply
        must not repeat; ``tools`` are CrewAI tools the model may call during the turn (one
        round of calls, then its answer). LLM failures propagate for the worker to back
        off on. A turn cancelled meanwhile (a mute, a timeout) gives its LLM slot back
        only when the call in its thread has ended."""
        started = time.perf_counter()
        free = self._free_slots
        if free is None:
            free = self._free_slots = asyncio.Queue()
            for slot in range(self.slot_count):
                free.put_nowait(slot)
        slot = await free.get()  # whichever LLM instance is idle
        call = asyncio.ensure_future(
            asyncio.to_thread(self._kickoff, persona, slot, description, tools or [])
        )

        def give_back(done: asyncio.Future[tuple[str, float, int, bool]]) -> None:
            free.put_nowait(slot)
            if not done.cancelled():
                done.exception()  # retrieved: a cancelled turn's failure is nobody's

        call.add_done_callback(give_back)
        raw, llm_seconds, tokens, cut = await asyncio.shield(call)
        text, reason = clean_reply(raw, persona, history, cut=cut)
        elapsed = time.perf_counter() - started
        return TurnOutcome(text, reason, llm_seconds, elapsed, tokens, raw)
