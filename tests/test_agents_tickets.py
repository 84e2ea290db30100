"""Open tickets are queued work for the help desk, end to end with a real hub, the demo
knowledge in a real ChromaDB (embedded under each test's var/, so that no other test's
canon is in it) and the Ollama stand-in as the model: a ticket buried under
later messages still gets its turn, tickets are answered in filing order and before
pending small talk, a ticket filed while no worker ran is answered once one starts, and
an answer that does not fit its schema is tried again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from botarena.agents.llm import OllamaBackend
from botarena.agents.persona import Persona
from botarena.agents.turn import CrewTurns
from botarena.memory.service import MemoryService
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
        if path == "/api/chat"
    ]


PORT = {"title": "Which port is the hub on?", "body": "Our firewall team needs to know."}
RESTORE = {"title": "How do I restore last night's backup?", "body": "The disk died."}
BACKUPS = {"title": "How often are backups taken?", "body": "We need it for the audit."}


def desk(settings: Settings) -> MemoryService:
    """Sage's memory with the demo knowledge pack: what tickets are answered from."""
    return MemoryService(settings, ["sage"])


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
            arena,
            sage(),
            CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings),
            memory=desk(settings),
        )
        try:
            await mod.send("external", "Hello desk, is anyone in today?")
            await eventually(lambda: len(prompts(ollama)) == 1, timeout=30, what="sage is busy")
            first = await mod.call("ticket.file", PORT)
            second = await mod.call("ticket.file", RESTORE)
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
            assert f"Ticket #{first['id']} from mod: Which port is the hub on?" in asked[0]
            assert "[ops-ports] " in asked[0]
            assert f"Ticket #{second['id']} from mod: How do I restore" in asked[1]
            assert "mod asked you: @sage are you there?" in asked[2]
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
    early = await mod.call("ticket.file", BACKUPS)
    async with ollama_standin(["qwen3:latest"]) as ollama:
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, sage(), turns, memory=desk(settings))
        try:
            await eventually(lambda: answers(new), timeout=60, what="the early ticket answered")
        finally:
            await stop_worker(worker, task)
        assert answers(new) == [early["path"]]
        later = await mod.call("ticket.file", PORT)
        # a new worker, the same agent
        worker, task = await start(arena, sage(), turns, memory=desk(settings))
        try:
            await eventually(lambda: len(answers(new)) == 2, timeout=60, what="the later one")
            assert answers(new) == [early["path"], later["path"]]
            assert await stays(lambda: len(answers(new)) == 2, 1.0), "none answered twice"
        finally:
            await stop_worker(worker, task)


async def test_a_ticket_whose_answer_does_not_fit_gets_another_turn(
    arena: Arena, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    new: list[dict] = []
    mod = await arena.client("mod", "moderator")
    mod.sio.on("proposal.new", new.append)
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.script = [{"role": "assistant", "content": ECHO}]  # not the JSON asked for
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, sage(), turns, memory=desk(settings))
        try:
            ticket = await mod.call("ticket.file", PORT)
            await eventually(lambda: answers(new), timeout=60, what="the second turn's answer")
            assert answers(new) == [ticket["path"]]
            assert "8765" in new[0]["content"]
            assert new[0]["content"].rstrip().endswith("Sources: ops-ports")
            assert ECHO not in new[0]["content"]
            assert len(prompts(ollama)) == 2
            assert worker.records[0].reason == "the answer is not JSON"
        finally:
            await stop_worker(worker, task)


async def test_a_ticket_without_a_usable_answer_in_three_turns_goes_to_a_human(
    arena: Arena, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    new: list[dict] = []
    escalated: list[dict] = []
    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("proposal.new", new.append)
    mod.sio.on("ticket.escalated", escalated.append)
    await mod.join("external")
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.script = [{"role": "assistant", "content": ECHO}] * 3  # never the JSON asked
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, sage(), turns, memory=desk(settings))
        try:
            ticket = await mod.call("ticket.file", PORT)
            await eventually(lambda: escalated, timeout=60, what="the ticket handed over")
            assert (escalated[0]["id"], escalated[0]["by"]) == (ticket["id"], "sage")
            assert escalated[0]["reason"].startswith("no usable answer in 3 turns")
            assert len(prompts(ollama)) == 3 and not new
            await eventually(
                lambda: any("do not know" in m.text for m in inbox if m.author == "sage"),
                what="sage says so in the room",
            )
            assert await stays(lambda: len(prompts(ollama)) == 3, 1.0), "no fourth turn"
        finally:
            await stop_worker(worker, task)
