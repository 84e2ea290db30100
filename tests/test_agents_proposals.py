"""Agents propose from their turns: the real tiny model's draft goes the whole way to a
signed canon; the tiny model answers a ticket from the knowledge with its sources and
hands a ticket the knowledge cannot answer to a human; and through the Ollama stand-in a
drafting turn sends its schema as ``format`` and proposes the title and body it gets."""

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
from tests.bench.quality_bench import has_prompt_phrase
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
    agents: Persona | list[Persona],
    turns: CrewTurns,
    *,
    memory: MemoryService | None = None,
) -> tuple[AgentWorker, asyncio.Task[None]]:
    """One worker seating ``agents``, each with its own token, fast budgets in their arenas."""
    personas = agents if isinstance(agents, list) else [agents]
    tokens = {p.id: await arena.token(p.id, Role.AGENT, arenas=p.arenas) for p in personas}
    worker = AgentWorker(
        arena.url,
        personas,
        tokens,
        turns,
        quiet_seconds=600,
        arena_budgets={a: 120 for p in personas for a in p.arenas},
        turn_timeout=90,
        max_backoff=2,
        memory=memory,
    )
    task = asyncio.create_task(worker.run())
    # the worker connects once its memory has opened (and indexed a pack)
    await eventually(lambda: all(s.client.connected for s in worker.seats.values()), 120)
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
        # the tiny model's draft is refused more often than not (markup, placeholders, too
        # short): each request gets three turns, and the moderator asks again, as one would
        for _ in range(6):
            ask = await mod.send("education", "@maria please propose a short tutorial on backups.")
            turns_before = len(worker.records)
            await eventually(
                lambda before=turns_before: new or len(worker.records) >= before + 3,
                timeout=240,
                what="maria's proposal, or her three turns on the request",
            )
            if new:
                break
        assert new, [r.reason for r in worker.records]
        proposal = new[0]
        assert (proposal["author"], proposal["arena"], proposal["kind"]) == (
            "maria",
            "education",
            "tutorial",
        )
        assert proposal["status"] == "pending" and proposal["base_version"] == 0
        assert proposal["path"].startswith("tutorials/") and "-maria-" in proposal["path"]
        assert len(proposal["content"].split()) >= 6
        assert not has_prompt_phrase(f"{proposal['title']}\n{proposal['content']}")
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


async def test_a_tiny_model_answers_from_the_knowledge_and_hands_over_what_it_cannot(
    arena: Arena, llama: EmbeddedLlama, tmp_path: Path
) -> None:
    # ChromaDB embedded under the test's var/: the demo pack and nothing another test merged
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=60)
    sage = persona("sage", ["external"])
    memory = MemoryService(settings, [sage.id])  # the demo knowledge pack
    turns = CrewTurns(OpenAICompatibleBackend(llama.urls, "smollm2"), settings)
    inbox: list[Message] = []
    new: list[dict] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("proposal.new", new.append)
    await mod.join("external")
    worker, task = await start(arena, sage, turns, memory=memory)
    try:
        ticket = await mod.call(
            "ticket.file",
            {
                "title": "Which port is the hub on after a default install?",
                "body": "Our firewall team wants to open only what BotArena needs.",
            },
        )
        await eventually(lambda: new, timeout=240, what="sage's answer proposed")
        answer = new[0]
        assert (answer["author"], answer["kind"], answer["path"]) == (
            "sage",
            "ticket_answer",
            ticket["path"],
        )
        *text, sources = answer["content"].rstrip().splitlines()
        # the best passage first; the model may cite another beside it
        assert sources.startswith("Sources: ops-ports"), answer["content"]
        assert "8765" in "\n".join(text)
        assert not has_prompt_phrase(answer["content"])
        await mod.call("proposal.review", {"id": answer["id"], "decision": "approve"})
        closed = (await mod.call("tickets", {"status": "closed"}))["tickets"]
        assert [(t["id"], t["answer_proposal_id"], t["human_intervention"]) for t in closed] == [
            (ticket["id"], answer["id"], False)
        ]

        unknown = await mod.call(
            "ticket.file",
            {
                "title": "Can moderators log in to the console with our LDAP directory?",
                "body": "We would rather not hand out tokens to every moderator.",
            },
        )
        await eventually(
            lambda: any(f"ticket #{unknown['id']}" in m.text for m in inbox if m.author == "sage"),
            timeout=240,
            what="sage says it does not know",
        )
        said = [m.text for m in inbox if m.author == "sage" and f"#{unknown['id']}" in m.text]
        assert said and "do not know" in said[0]
        escalated = (await mod.call("tickets", {"status": "escalated"}))["tickets"]
        assert [(t["id"], t["human_intervention"]) for t in escalated] == [(unknown["id"], True)]
        assert len(new) == 1, "nothing was proposed for the ticket it could not answer"
    finally:
        await stop_worker(worker, task)


async def test_a_drafting_turn_sends_its_schema_and_proposes_the_title_and_body(
    arena: Arena, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    maria = persona("maria", ["education"]).model_copy(update={"model": "qwen3"})
    new: list[dict] = []
    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("proposal.new", new.append)
    await mod.join("education")
    body = "Retry a failed backup twice, a minute apart, then tell a moderator."
    draft = {"kind": "tutorial", "title": "Retrying backups", "body": body}
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.script = [{"role": "assistant", "content": json.dumps(draft)}]
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, maria, turns)
        try:
            ask = await mod.send("education", "@maria propose a tutorial on retries")
            await eventually(lambda: new, timeout=60, what="the drafted proposal")
            proposal = new[0]
            assert (proposal["kind"], proposal["title"], proposal["content"]) == (
                "tutorial",
                "Retrying backups",
                body + "\n",
            )
            assert proposal["path"].startswith("tutorials/retrying-backups-maria-")
            await eventually(
                lambda: any(
                    m.reply_to == ask.id
                    and m.text == f'I proposed the tutorial "Retrying backups" (#{proposal["id"]}).'
                    for m in inbox
                ),
                what="maria says what she proposed",
            )
            (sent,) = [b for _, path, b in ollama.requests if path == "/api/chat"]
            # the kind asked for, the only one the schema allows
            assert sent["format"]["properties"]["kind"]["const"] == "tutorial"
            assert set(sent["format"]["required"]) == {"kind", "title", "body"}
            assert sent["options"]["num_predict"] == worker.draft_tokens
            assert sent["messages"][0]["role"] == "system"
            assert maria.backstory.split(".")[0] in sent["messages"][0]["content"]
        finally:
            await stop_worker(worker, task)
