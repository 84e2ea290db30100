"""Agents with memory on the real tiny model: what an agent saw earlier is in the context
of a later turn, and without ChromaDB it keeps talking and reports ``degraded``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.agents.llm import OpenAICompatibleBackend
from botarena.agents.turn import CrewTurns
from botarena.agents.worker import AgentWorker
from botarena.memory.service import MemoryService
from botarena.server.protocol import Message, Role
from botarena.server.settings import Settings
from tests.harness import Arena, eventually, llm_requests
from tests.services import free_port
from tests.test_agents_e2e import compiler_pair, stop_worker


async def start(arena: Arena, llama: EmbeddedLlama, settings: Settings, quiet: float):
    persona = compiler_pair()[0]
    token = await arena.token(persona.id, Role.AGENT, arenas=persona.arenas)
    turns = CrewTurns(OpenAICompatibleBackend(llama.urls, "smollm2"), settings)
    memory = MemoryService(settings, [persona.id], retry_seconds=1.0)
    worker = AgentWorker(
        arena.url,
        [persona],
        {persona.id: token},
        turns,
        quiet_seconds=quiet,
        arena_budgets={"compiler": 120},
        turn_timeout=60,
        max_backoff=2,
        memory=memory,
    )
    return worker, turns, memory, asyncio.create_task(worker.run())


@pytest.fixture
def sent() -> Iterator[list[dict]]:
    """The chat requests the test's LLM calls send."""
    with llm_requests() as bodies:
        yield bodies


async def test_what_an_agent_saw_earlier_is_in_a_later_turns_context(
    arena: Arena, llama: EmbeddedLlama, tmp_path: Path, sent: list[dict]
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_max_tokens=96, llm_timeout=30)
    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    await mod.join("compiler")
    worker, _turns, memory, task = await start(arena, llama, settings, quiet=600)
    try:
        await eventually(
            lambda: "ada" in [s.persona.id for s in worker.seats.values() if s.client.connected],
            what="ada connected",
        )
        await mod.send("compiler", "Note for later: the release code word is bluebird.")
        for n in range(12):  # push the note out of the recent-history window
            await mod.send("compiler", f"Unrelated remark number {n} about lunch plans.")
        await eventually(
            lambda: memory._memories and memory._memories["ada"].count() >= 13,
            timeout=60,
            what="ada remembered what it saw",
        )
        question = await mod.send("compiler", "@ada what code word did I tell you earlier?")

        def mention_prompts() -> list[str]:
            """Prompts of the turn answering the question (not replies that merely saw it)."""
            texts = [json.dumps(body["messages"]) for body in sent]
            return [t for t in texts if "mod asked you: @ada what code word" in t]

        await eventually(lambda: mention_prompts(), timeout=120, what="ada's mention turn")
        prompt = mention_prompts()[0]
        remembered = prompt.split("You remember:", 1)
        assert len(remembered) == 2, "the turn carried recalled memories"
        memories_part = remembered[1].split("Chat so far:", 1)[0]
        assert "bluebird" in memories_part
        recent_part = remembered[1].split("Chat so far:", 1)[1]
        assert "bluebird" not in recent_part, "it came from memory, not the recent window"
        assert "Notes:" in prompt.split("You remember:", 1)[0]
        assert question.id > 0
    finally:
        await stop_worker(worker, task)


async def test_without_chromadb_the_agent_talks_on_and_reports_degraded(
    arena: Arena, llama: EmbeddedLlama, tmp_path: Path
) -> None:
    settings = Settings(
        var_dir=tmp_path / "var",
        llm_max_tokens=96,
        llm_timeout=30,
        chroma_url=f"http://127.0.0.1:{free_port()}",
    )
    inbox: list[Message] = []
    states: list[dict] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("agent.state", states.append)
    await mod.join("compiler")
    worker, _turns, memory, task = await start(arena, llama, settings, quiet=0.5)
    try:
        await eventually(
            lambda: sum(m.author == "ada" for m in inbox) >= 2,
            timeout=180,
            what="ada talks without memory",
        )
        await eventually(
            lambda: any(s["state"] == "degraded" for s in states),
            timeout=30,
            what="degraded reported",
        )
        degraded = next(s for s in states if s["state"] == "degraded")
        assert "memory unavailable" in degraded["detail"]
        assert memory.degraded
    finally:
        await stop_worker(worker, task)
