"""One agent turn through CrewAI: prompt, LLM call, and a reply fit to post.

:class:`CrewTurns` builds a CrewAI ``Agent`` from each persona once (role, goal and
backstory as written, CrewAI's memory and delegation off, one iteration: a model with
function calling gets one round of tool calls, then CrewAI asks for its answer) and runs
each turn as a one-task ``Crew`` in a thread, so the worker's event loop never blocks.
Each turn goes to whichever LLM slot (server instance) is idle. The room's recent
history, the arena's mission and the persona's voice and traits go into the task. The
answer is
cleaned (labels, quotes, echoed instructions removed, cut to the persona's limit) and
refused when nothing sensible is left. Each outcome carries the time spent in the LLM
and in total, which the benchmark reports.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from dataclasses import dataclass
from typing import Any, cast

from botarena.agents.llm import LLMBackend
from botarena.agents.persona import Persona, Traits
from botarena.agents.scheduler import Turn
from botarena.arenas.charter import ArenaCharter
from botarena.memory.service import TurnMemory
from botarena.server import offline
from botarena.server.protocol import Message
from botarena.server.settings import LLMSettings

_ECHOES = re.compile(
    r"expected criteria|final answer|your final answer|you must return|"
    r"this is the expected|begin! this is very important",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TurnOutcome:
    text: str | None  # None: nothing to post (see reason)
    reason: str
    llm_seconds: float
    total_seconds: float
    completion_tokens: int = 0
    raw: str = ""  # the model's answer before cleaning (a draft is parsed from it)


def clean_reply(raw: str, persona: Persona, history: list[Message]) -> tuple[str | None, str]:
    """The reply to post, or None and why the raw answer is not fit to post."""
    text = raw.strip()
    text = re.sub(r"^(final answer|answer|reply|response)\s*:\s*", "", text, flags=re.I)
    for name in (persona.display_name, persona.id):
        text = re.sub(rf"^\**{re.escape(name)}\**\s*:\s*", "", text, flags=re.I)
    text = text.strip().strip('"').strip()
    text = re.sub(r"\s+", " ", text)
    if not text:
        return None, "empty answer"
    if _ECHOES.search(text):
        return None, "the model echoed its instructions"
    if len(re.findall(r"[^\W\d_]{2,}", text)) < 2:
        return None, "not enough words to be a message"
    if any(text == m.text for m in history[-10:]):
        return None, "repeats a recent message"
    limit = persona.limits.max_reply_chars
    if len(text) > limit:
        cut = text[:limit]
        sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        text = cut[: sentence_end + 1] if sentence_end > limit // 3 else cut.rstrip() + "…"
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
        self.slot_count = len(getattr(backend, "urls", None) or [None])
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

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            # CrewAI may call the LLM from a thread of its own: account per agent
            if prompts is not None and args:
                prompts.append(copy.deepcopy(args[0]))  # CrewAI reuses its message list
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                seconds[agent_id] = seconds.get(agent_id, 0.0) + time.perf_counter() - started

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
    ) -> tuple[str, float, int]:
        from crewai import Crew, CrewOutput, Task

        self._llm_seconds[persona.id] = 0.0
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
        return str(output.raw or ""), self._llm_seconds[persona.id], tokens

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
        off on."""
        started = time.perf_counter()
        if self._free_slots is None:
            self._free_slots = asyncio.Queue()
            for slot in range(self.slot_count):
                self._free_slots.put_nowait(slot)
        slot = await self._free_slots.get()  # whichever LLM instance is idle
        try:
            raw, llm_seconds, tokens = await asyncio.to_thread(
                self._kickoff, persona, slot, description, tools or []
            )
        finally:
            self._free_slots.put_nowait(slot)
        text, reason = clean_reply(raw, persona, history)
        elapsed = time.perf_counter() - started
        return TurnOutcome(text, reason, llm_seconds, elapsed, tokens, raw)
