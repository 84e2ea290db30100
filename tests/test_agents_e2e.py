"""Agents on the real tiny model (llama.cpp) through CrewAI, in a real hub: they talk,
answer mentions, respect mutes, and survive the LLM dying and coming back."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest

from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.agents.persona import Persona, load_personas
from botarena.agents.turn import CrewTurns
from botarena.agents.worker import AgentWorker
from botarena.server.protocol import Message, Role
from botarena.server.settings import Settings
from tests.bench.quality_bench import has_prompt_phrase
from tests.harness import Arena, eventually
from tests.services import free_port
from tests.test_personas import SHIPPED

FAST = {"turns_per_minute": 60, "cooldown_seconds": 1.0, "max_reply_chars": 300}


def compiler_pair() -> list[Persona]:
    personas = {p.id: p for p in load_personas(SHIPPED)[0]}
    return [
        personas[pid].model_copy(
            update={
                "arenas": ["compiler"],
                "limits": personas[pid].limits.model_copy(update=FAST),
            }
        )
        for pid in ("ada", "linus")
    ]


async def start_worker(
    arena: Arena, backend_urls: list[str], personas: list[Persona], quiet: float = 1.0
) -> tuple[AgentWorker, asyncio.Task[None]]:
    from botarena.agents.llm import OpenAICompatibleBackend

    tokens = {p.id: await arena.token(p.id, Role.AGENT, arenas=p.arenas) for p in personas}
    settings = Settings(llm_max_tokens=48, llm_timeout=30)
    turns = CrewTurns(OpenAICompatibleBackend(backend_urls, "smollm2"), settings)
    worker = AgentWorker(
        arena.url,
        personas,
        tokens,
        turns,
        slots=1,
        quiet_seconds=quiet,
        arena_budgets={"compiler": 120},
        turn_timeout=60,
        max_backoff=2,
    )
    return worker, asyncio.create_task(worker.run())


async def stop_worker(worker: AgentWorker, task: asyncio.Task[None]) -> None:
    await worker.stop()
    await asyncio.wait_for(task, 60)


async def test_two_agents_talk_and_answer_a_mention(arena: Arena, llama: EmbeddedLlama) -> None:
    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    await mod.join("compiler")
    worker, task = await start_worker(arena, llama.urls, compiler_pair())
    try:

        def agent_messages() -> list[Message]:
            return [m for m in inbox if m.author in ("ada", "linus")]

        await eventually(
            lambda: (
                len(agent_messages()) >= 3
                and {m.author for m in agent_messages()} == {"ada", "linus"}
            ),
            timeout=180,
            what="both agents speak, three messages at least",
        )
        authors = [m.author for m in agent_messages()]
        assert all(a != b for a, b in pairwise(authors)), authors
        echoed = [m.text for m in agent_messages() if has_prompt_phrase(m.text)]
        assert not echoed, "a posted message holds a phrase of its prompt"

        # a mention gets three turns; the tiny model's answer to all three may be refused
        # (markup, a repeat): the moderator asks again, as one would
        asked: list[int] = []
        for _ in range(4):
            question = await mod.send("compiler", "@linus which test is missing in the parser?")
            asked.append(question.id)
            turns_before = len(worker.records)
            await eventually(
                lambda before=turns_before: (
                    any(m.author == "linus" and m.reply_to in asked for m in inbox)
                    or sum(r.agent == "linus" for r in worker.records[before:]) >= 3
                ),
                timeout=120,
                what="linus answers, or takes his three turns on it",
            )
            if any(m.author == "linus" and m.reply_to in asked for m in inbox):
                break
        assert any(m.author == "linus" and m.reply_to in asked for m in inbox), [
            (r.agent, r.reason) for r in worker.records
        ]
        states = {s["agent"]: s for s in (await mod.call("agents"))["agents"]}
        assert states["linus"]["state"] in ("idle", "thinking", "speaking")
        assert set(states["ada"]["drift"]) == {"rigor", "sociability", "assertiveness"}
        assert (
            states["ada"]["summary"].startswith("Ada, ") and "rigor 0." in states["ada"]["summary"]
        )
        assert states["linus"]["llm_seconds"] > 0  # what its last turn spent in the LLM
    finally:
        await stop_worker(worker, task)
    assert not task.exception()


async def test_a_muted_agent_stays_silent(arena: Arena, llama: EmbeddedLlama) -> None:
    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    await mod.join("compiler")
    await arena.token("linus", Role.AGENT, arenas=["compiler"])
    await mod.call("mod.mute", {"principal": "linus", "seconds": 600})
    worker, task = await start_worker(arena, llama.urls, compiler_pair())
    try:
        muted_from = len(inbox)
        await mod.send("compiler", "@linus are you there? @ada too?")
        await eventually(
            lambda: sum(m.author == "ada" for m in inbox[muted_from:]) >= 2,
            timeout=180,
            what="ada keeps talking",
        )
        assert not [m for m in inbox if m.author == "linus"]
        states = {s["agent"]: s["state"] for s in (await mod.call("agents"))["agents"]}
        assert states["linus"] == "muted"
    finally:
        await stop_worker(worker, task)


async def test_the_worker_survives_the_llm_dying_and_resumes(arena: Arena, demo_gguf) -> None:
    own = EmbeddedLlama(demo_gguf, port=free_port(), slots=1, threads=2)
    await own.start()
    inbox: list[Message] = []
    states: list[dict] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("agent.state", states.append)
    await mod.join("compiler")
    worker, task = await start_worker(arena, own.urls, compiler_pair()[:1], quiet=0.5)
    try:
        await eventually(
            lambda: any(m.author == "ada" for m in inbox),
            timeout=120,
            what="ada speaks while the LLM is up",
        )
        for process in own.processes:
            process.kill()
        await own.stop()
        await eventually(
            lambda: any(s["agent"] == "ada" and s["state"] == "error" for s in states),
            timeout=60,
            what="error reported",
        )
        error = next(s for s in states if s["state"] == "error")
        assert "LLM failed" in error["detail"]
        assert not task.done(), "the worker is still running"
        spoken_before = sum(m.author == "ada" for m in inbox)

        await own.start()  # the same port again
        await eventually(
            lambda: sum(m.author == "ada" for m in inbox) > spoken_before,
            timeout=120,
            what="ada speaks again once the LLM is back",
        )
    finally:
        await stop_worker(worker, task)
        await own.stop()


async def test_the_worker_survives_a_hub_restart(
    hub_factory, llama: EmbeddedLlama, free_port: int
) -> None:
    first = await hub_factory(port=free_port)
    inbox: list[Message] = []
    mod_token = await first.token("mod", "moderator")
    mod = await first.connect(mod_token, inbox=inbox)
    await mod.join("compiler")
    worker, task = await start_worker(first, llama.urls, compiler_pair()[:1], quiet=0.5)
    try:
        await eventually(
            lambda: any(m.author == "ada" for m in inbox),
            timeout=120,
            what="ada speaks before the restart",
        )
        await first.stop()
        await asyncio.sleep(1.0)
        assert not task.done(), "the worker outlives the hub"
        second = await hub_factory(port=free_port)
        assert second.url == first.url
        spoken = sum(m.author == "ada" for m in inbox)
        await eventually(
            lambda: mod.connected and sum(m.author == "ada" for m in inbox) > spoken,
            timeout=120,
            what="ada speaks again after the hub restarts",
        )
    finally:
        await stop_worker(worker, task)


@pytest.mark.parametrize("bad_reply", ["", "   ", "Final Answer: This is the expected criteria"])
def test_unusable_answers_are_not_posted(bad_reply: str) -> None:
    from botarena.agents.turn import clean_reply

    persona = compiler_pair()[0]
    text, reason = clean_reply(bad_reply, persona, [])
    assert text is None and reason
