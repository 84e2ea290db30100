"""Agents propose from their turns: the real tiny model's draft goes the whole way to a
signed canon, a ticket gets its answer, and a model with function calling proposes
through the CrewAI tool (Ollama stand-in answering with tool calls)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.agents.llm import OllamaBackend, OpenAICompatibleBackend
from botarena.agents.persona import Persona, load_personas
from botarena.agents.turn import CrewTurns
from botarena.agents.worker import AgentWorker
from botarena.arenas.charter import charters
from botarena.memory.service import MemoryService
from botarena.server import checkpoint
from botarena.server.protocol import Message, Role
from botarena.server.settings import Settings
from tests.harness import Arena, eventually, make_key
from tests.ollama_standin import ollama_standin
from tests.test_agents_e2e import FAST, stop_worker
from tests.test_personas import SHIPPED


def persona(pid: str, arenas: list[str]) -> Persona:
    shipped = {p.id: p for p in load_personas(SHIPPED)[0]}[pid]
    return shipped.model_copy(
        update={"arenas": arenas, "limits": shipped.limits.model_copy(update=FAST)}
    )


async def start(
    arena: Arena,
    agent: Persona,
    turns: CrewTurns,
    *,
    memory: MemoryService | None = None,
    tools: bool = False,
) -> tuple[AgentWorker, asyncio.Task[None]]:
    token = await arena.token(agent.id, Role.AGENT, arenas=agent.arenas)
    worker = AgentWorker(
        arena.url,
        [agent],
        {agent.id: token},
        turns,
        quiet_seconds=600,
        arena_budgets={a: 120 for a in agent.arenas},
        turn_timeout=90,
        max_backoff=2,
        memory=memory,
        tools=tools,
    )
    task = asyncio.create_task(worker.run())
    await eventually(lambda: all(s.client.connected for s in worker.seats.values()), 20)
    return worker, task


async def test_a_tiny_models_draft_becomes_signed_canon(
    arena: Arena, llama: EmbeddedLlama, chroma_url: str, gnupg_home: Path, tmp_path: Path
) -> None:
    settings = Settings(
        var_dir=tmp_path / "var",
        chroma_url=chroma_url,
        knowledge_pack=None,
        llm_max_tokens=96,
        llm_timeout=60,
    )
    maria = persona("maria", ["education"])
    memory = MemoryService(settings, [maria.id])
    turns = CrewTurns(OpenAICompatibleBackend(llama.urls, "smollm2"), settings)
    inbox: list[Message] = []
    new: list[dict] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("proposal.new", new.append)
    await mod.join("education")
    worker, task = await start(arena, maria, turns, memory=memory)
    try:
        ask = await mod.send("education", "@maria please propose a short tutorial on backups.")
        await eventually(lambda: new, timeout=240, what="maria's proposal reaches moderators")
        proposal = new[0]
        assert (proposal["author"], proposal["arena"], proposal["kind"]) == (
            "maria",
            "education",
            "tutorial",
        )
        assert proposal["status"] == "pending" and proposal["base_version"] == 0
        assert proposal["path"].startswith("tutorials/") and "-maria-" in proposal["path"]
        assert len(proposal["content"].split()) >= 6
        await eventually(
            lambda: any(
                m.author == "maria" and m.reply_to == ask.id and f"#{proposal['id']}" in m.text
                for m in inbox
            ),
            timeout=30,
            what="maria tells the room what she proposed",
        )

        reviewed = await mod.call("proposal.review", {"id": proposal["id"], "decision": "approve"})
        assert reviewed["status"] == "approved" and reviewed["merged_version"] == 1
        canon = await mod.call("canon.get", {"path": proposal["path"]})
        assert (canon["version"], canon["content"]) == (1, proposal["content"])

        marker = f"{proposal['path']} (canon v1)"
        hits: list[str] = []
        for _ in range(200):
            hits = (
                await memory.for_turn(
                    maria.id, proposal["content"], charters()["education"].knowledge
                )
            ).knowledge
            if any(marker in h for h in hits):
                break
            await asyncio.sleep(0.1)
        assert any(marker in h for h in hits), hits

        verdict = await arena.store.audit.verify()
        assert verdict.ok, verdict.problem
        actions = [e.action for e in await arena.store.audit.entries(limit=50)]
        assert {"proposal.created", "proposal.approved"} <= set(actions)
        document = await checkpoint.create(arena.store)
        assert proposal["path"] in document["canon"]
        site = make_key(gnupg_home, "site")
        signer = checkpoint.Signer(gnupg_home)
        signature = signer.sign(checkpoint.dump(document), site)
        assert signer.verify(checkpoint.dump(document), signature, site) is None
        assert (await checkpoint.check(arena.store, document)).ok
    finally:
        await stop_worker(worker, task)


async def test_a_tiny_model_answers_a_ticket_and_the_approval_closes_it(
    arena: Arena, llama: EmbeddedLlama, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_max_tokens=64, llm_timeout=60)
    sage = persona("sage", ["external"])
    turns = CrewTurns(OpenAICompatibleBackend(llama.urls, "smollm2"), settings)
    new: list[dict] = []
    mod = await arena.client("mod", "moderator")
    mod.sio.on("proposal.new", new.append)
    worker, task = await start(arena, sage, turns)
    try:
        ticket = await mod.call(
            "ticket.file", {"title": "Backups", "body": "How often should we back up the data?"}
        )
        await eventually(lambda: new, timeout=240, what="sage's answer proposed")
        answer = new[0]
        assert (answer["author"], answer["kind"], answer["path"]) == (
            "sage",
            "ticket_answer",
            ticket["path"],
        )
        await mod.call("proposal.review", {"id": answer["id"], "decision": "approve"})
        closed = (await mod.call("tickets", {"status": "closed"}))["tickets"]
        assert [(t["id"], t["answer_proposal_id"], t["human_intervention"]) for t in closed] == [
            (ticket["id"], answer["id"], False)
        ]
    finally:
        await stop_worker(worker, task)


def tool_call(call_id: str, **arguments: str) -> dict:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": call_id,
                "index": 0,
                "type": "function",
                "function": {"name": "propose", "arguments": json.dumps(arguments)},
            }
        ],
    }


async def test_a_capable_model_proposes_with_the_tool(arena: Arena, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    maria = persona("maria", ["education"]).model_copy(update={"model": "qwen3"})
    new: list[dict] = []
    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("proposal.new", new.append)
    await mod.join("education")
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.script = [
            tool_call(
                "call_1",
                kind="tutorial",
                path="tutorials/retries.md",
                title="Retries",
                content="Retry a failed backup twice, a minute apart.\n",
            ),
            {"role": "assistant", "content": "I proposed a tutorial on retries."},
            tool_call(
                "call_2",
                kind="ticket_answer",
                path="tickets/1",
                title="Hijack",
                content="Not my arena.",
            ),
            {"role": "assistant", "content": "That was refused."},
        ]
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, maria, turns, tools=True)
        try:
            await mod.send("education", "@maria propose a tutorial on retries")
            await eventually(lambda: new, timeout=60, what="the tool's proposal")
            assert {k: new[0][k] for k in ("author", "arena", "kind", "path", "base_version")} == {
                "author": "maria",
                "arena": "education",
                "kind": "tutorial",
                "path": "tutorials/retries.md",
                "base_version": 0,
            }
            await eventually(
                lambda: any(m.text == "I proposed a tutorial on retries." for m in inbox),
                what="the model's own answer posted",
            )
            chats = [b for _, path, b in ollama.requests if path == "/v1/chat/completions"]
            assert [t["function"]["name"] for t in chats[0]["tools"]] == ["propose"]
            told = [m for m in chats[1]["messages"] if m["role"] == "tool"]
            assert told[0]["content"] == f"Proposal #{new[0]['id']} is waiting for human review."

            # a tool call the hub refuses: nothing lands, the model hears why
            await mod.send("education", "@maria propose another one")
            await eventually(lambda: len(ollama.script) == 0, timeout=60, what="second turn")
            await eventually(
                lambda: any(m.text == "That was refused." for m in inbox), what="its answer"
            )
            chats = [b for _, path, b in ollama.requests if path == "/v1/chat/completions"]
            told = [m for m in chats[3]["messages"] if m["role"] == "tool"]
            assert "refused" in told[0]["content"]
            assert "not ticket_answer" in told[0]["content"]
            assert len(new) == 1
        finally:
            await stop_worker(worker, task)
