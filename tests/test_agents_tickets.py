"""Open tickets are queued work for the help desk, end to end with a real hub and the
Ollama stand-in as the model: a ticket buried under later messages still gets its turn,
tickets are answered in filing order and before pending small talk, a ticket filed while
no worker ran is answered once one starts, and a refused draft is tried again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from botarena.agents.llm import OllamaBackend
from botarena.agents.persona import Persona
from botarena.agents.turn import CrewTurns
from botarena.server.protocol import Message
from botarena.server.settings import Settings
from tests.harness import Arena, eventually, stays
from tests.ollama_standin import OllamaStandIn, ollama_standin
from tests.test_agents_e2e import stop_worker
from tests.test_agents_proposals import persona, start
from tests.test_agents_refusals import ECHO


def sage() -> Persona:
    return persona("sage", ["external"]).model_copy(update={"model": "qwen3"})


def prompts(ollama: OllamaStandIn) -> list[str]:
    """Each chat request's messages, joined: what the model was asked, in order."""
    return [
        "\n".join(str(m.get("content") or "") for m in body["messages"])
        for _, path, body in ollama.requests
        if path == "/v1/chat/completions"
    ]


def answers(new: list[dict]) -> list[str]:
    return [p["path"] for p in new if p["kind"] == "ticket_answer"]


async def test_tickets_under_later_messages_are_answered_in_order_before_small_talk(
    arena: Arena, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    inbox: list[Message] = []
    new: list[dict] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("proposal.new", new.append)
    await mod.join("external")
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.hold = asyncio.Event()  # sage's first turn thinks until released
        worker, task = await start(
            arena, sage(), CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        )
        try:
            await mod.send("external", "Hello desk, is anyone in today?")
            await eventually(lambda: len(prompts(ollama)) == 1, timeout=30, what="sage is busy")
            first = await mod.call("ticket.file", {"title": "Port", "body": "Which port?"})
            second = await mod.call("ticket.file", {"title": "Restore", "body": "How?"})
            mention = await mod.send("external", "@sage are you there?")
            await eventually(
                lambda: mention.id in {m.id for m in worker.scheduler.history("external")},
                timeout=30,
                what="the worker sees the tickets and the mention",
            )
            ollama.hold.set()
            await eventually(
                lambda: len(answers(new)) == 2, timeout=60, what="both tickets answered"
            )
            assert answers(new) == [first["path"], second["path"]]
            await eventually(lambda: len(prompts(ollama)) >= 4, timeout=60, what="the mention")
            asked = prompts(ollama)[1:4]
            assert f'filed a ticket: "Ticket #{first["id"]}: Port' in asked[0]
            assert f'filed a ticket: "Ticket #{second["id"]}: Restore' in asked[1]
            assert 'said to you: "@sage are you there?' in asked[2]
            assert await stays(lambda: len(answers(new)) == 2, 1.0), "each answered once"
        finally:
            await stop_worker(worker, task)


async def test_a_ticket_filed_while_no_worker_ran_is_answered_when_one_starts(
    arena: Arena, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    new: list[dict] = []
    mod = await arena.client("mod", "moderator")
    mod.sio.on("proposal.new", new.append)
    early = await mod.call("ticket.file", {"title": "Backups", "body": "How often?"})
    async with ollama_standin(["qwen3:latest"]) as ollama:
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, sage(), turns)
        try:
            await eventually(lambda: answers(new), timeout=60, what="the early ticket answered")
        finally:
            await stop_worker(worker, task)
        assert answers(new) == [early["path"]]
        later = await mod.call("ticket.file", {"title": "Port", "body": "Which port?"})
        worker, task = await start(arena, sage(), turns)  # a new worker, the same agent
        try:
            await eventually(lambda: len(answers(new)) == 2, timeout=60, what="the later one")
            assert answers(new) == [early["path"], later["path"]]
            assert await stays(lambda: len(answers(new)) == 2, 1.0), "none answered twice"
        finally:
            await stop_worker(worker, task)


async def test_a_ticket_whose_draft_is_refused_gets_another_turn(
    arena: Arena, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    new: list[dict] = []
    mod = await arena.client("mod", "moderator")
    mod.sio.on("proposal.new", new.append)
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.script = [{"role": "assistant", "content": ECHO}]  # refused: an echo
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, sage(), turns)
        try:
            ticket = await mod.call("ticket.file", {"title": "Backups", "body": "How often?"})
            await eventually(lambda: answers(new), timeout=60, what="the second turn's answer")
            assert answers(new) == [ticket["path"]]
            assert new[0]["content"].startswith("The parser drops trailing commas")
            assert len(prompts(ollama)) == 2
        finally:
            await stop_worker(worker, task)
