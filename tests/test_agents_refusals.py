"""What an agent's turn refuses, end to end with the Ollama stand-in scripting the model's
JSON actions: an echo of the prompt is neither posted, drafted nor remembered, a mute
cancels the turn in flight, an agent does not greet itself, a reply cut by the token
limit ends on a sentence, and markup, links and placeholders are not prose."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from botarena.agents.llm import OllamaBackend
from botarena.agents.persona import Persona
from botarena.agents.turn import CrewTurns, clean_reply
from botarena.memory.service import MemoryService
from botarena.server.protocol import Message
from botarena.server.settings import Settings
from tests.harness import Arena, eventually, stays
from tests.ollama_standin import OllamaStandIn, ollama_standin
from tests.test_agents_e2e import compiler_pair, stop_worker
from tests.test_agents_proposals import start

ECHO = "Chat so far:\nmod: @ada which test is missing?\nAnswer mod in one or two sentences."


def answer(**action: str) -> dict:
    """A scripted model answer: the action's JSON, as a model held to its schema writes it."""
    return {"role": "assistant", "content": json.dumps(action)}


def ada() -> Persona:
    return compiler_pair()[0].model_copy(update={"model": "qwen3"})


def chats(ollama: OllamaStandIn) -> list[dict]:
    return [b for _, path, b in ollama.requests if path == "/api/chat"]


def said(inbox: list[Message], author: str = "ada") -> list[str]:
    return [m.text for m in inbox if m.author == author]


async def test_an_echo_is_never_posted_nor_remembered(arena: Arena, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", knowledge_pack=None, llm_timeout=30)
    memory = MemoryService(settings, ["ada"])
    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    await mod.join("compiler")
    async with ollama_standin(["qwen3:latest"]) as ollama:
        good = "The parser needs a test for trailing commas."
        ollama.script = [answer(action="say", text=c) for c in (ECHO, good)]
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, ada(), turns, memory=memory)
        try:
            await mod.send("compiler", "@ada which test is missing in the parser?")
            await eventually(lambda: good in said(inbox), timeout=60, what="the second answer")
            assert said(inbox) == [good], "the echo was not posted"
            # a human pasting a prompt is not remembered either
            await mod.send("compiler", f"Look what I got: {ECHO}")
            await mod.send("compiler", "Noted: the release is on Friday.")

            def documents() -> list[str]:
                return memory._memories["ada"].collection.get()["documents"] or []

            await eventually(
                lambda: any("release is on Friday" in d for d in documents()),
                timeout=60,
                what="later messages remembered",
            )
            assert any(good in d for d in documents())
            recalled = await memory.for_turn("ada", ECHO, {}, k_memories=20)
            assert recalled.memories and not [m for m in recalled.memories if "so far" in m]
            assert not [d for d in documents() if "so far" in d or "two sentences" in d]
        finally:
            await stop_worker(worker, task)


async def test_an_echoing_draft_is_never_proposed(arena: Arena, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    inbox: list[Message] = []
    new: list[dict] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("proposal.new", new.append)
    await mod.join("compiler")
    drafts = [
        answer(kind="document", title="```", body="The notes on the parser and its API here."),
        answer(kind="document", title="API notes", body=f"{ECHO} The parser and its API."),
        answer(
            kind="document",
            title="Draft a short document for the canon about this",
            body="Give it a title and a body of a few sentences or steps.",
        ),
        answer(kind="document", title="API notes", body="See https://example.org/api for all."),
    ]
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.script = list(drafts)
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, ada(), turns)
        try:
            await mod.send("compiler", "@ada draft the API notes")
            await eventually(
                lambda: len(worker.records) == 3, timeout=60, what="the mention's three attempts"
            )
            await mod.send("compiler", "@ada please draft them again")
            await eventually(
                lambda: len(worker.records) == len(drafts), timeout=60, what="the fourth draft"
            )
            assert len(chats(ollama)) == len(drafts)
            assert all(not r.posted for r in worker.records), worker.records
            reasons = [r.reason for r in worker.records]
            assert reasons == [
                "no title: it has no word",
                "the model echoed its instructions",
                "the model echoed its instructions",
                "not plain prose (markup, a link, a placeholder or noise)",
            ]
            assert await stays(lambda: not new and not said(inbox), 0.5), (new, said(inbox))
        finally:
            await stop_worker(worker, task)


async def test_a_mute_during_a_turn_stops_its_post_and_draft(arena: Arena, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    inbox: list[Message] = []
    new: list[dict] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    mod.sio.on("proposal.new", new.append)
    await mod.join("compiler")
    draft = answer(
        kind="document",
        title="API notes",
        body="The parse call takes a path and returns the tree with every error listed.",
    )
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.hold = asyncio.Event()  # the model is slow: it answers once released
        ollama.script = [draft]
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, ada(), turns)
        try:
            await mod.send("compiler", "@ada draft the API notes")
            await eventually(lambda: chats(ollama), timeout=30, what="ada's turn asks the model")
            await mod.call("mod.mute", {"principal": "ada", "seconds": 600})
            await eventually(
                lambda: worker.scheduler.is_muted("ada") and "ada" not in worker.scheduler.busy,
                timeout=30,
                what="the turn cancelled by the mute",
            )
            ollama.hold.set()
            await eventually(lambda: not ollama.script, timeout=30, what="the model answers")
            assert await stays(lambda: not new and not said(inbox), 1.0), (new, said(inbox))
            assert not worker.records, "the cancelled turn went no further"
        finally:
            ollama.hold.set()
            await stop_worker(worker, task)


async def test_a_reply_cut_by_the_token_limit_ends_on_a_sentence(
    arena: Arena, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30, llm_max_tokens=12)
    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator", inbox=inbox)
    await mod.join("compiler")
    long = (
        "Hi Ada, the parser drops trailing commas. A test for that case would catch it "
        "before the release goes out on Friday."
    )
    async with ollama_standin(["qwen3:latest"], reply=long) as ollama:  # cut at 12 words
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, ada(), turns)
        try:
            await mod.send("compiler", "@ada what about the parser?")
            await eventually(lambda: said(inbox), timeout=60, what="ada's answer")
            assert chats(ollama)[0]["options"]["num_predict"] == 12
            assert said(inbox) == ["The parser drops trailing commas."]
        finally:
            await stop_worker(worker, task)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("raw", "posted"),
    [
        ("Hi Ada, the lexer needs a test.", "The lexer needs a test."),
        ("Hello @ada! How is the lexer going?", "How is the lexer going?"),
        ("Ada, could you look at the lexer?", "Could you look at the lexer?"),
        ("I agree with Linus. Thanks Ada!", "I agree with Linus."),
        ("Hi Linus, the lexer needs a test.", "Hi Linus, the lexer needs a test."),
        ("Hi Ada!", None),
    ],
)
def test_an_agent_never_greets_itself(raw: str, posted: str | None) -> None:
    assert clean_reply(raw, compiler_pair()[0], [])[0] == posted


@pytest.mark.unit
def test_a_cut_reply_keeps_whole_sentences_or_nothing() -> None:
    persona = compiler_pair()[0]  # at most 300 characters
    assert clean_reply("Version 2.5 is out. Upgrade the pars", persona, [], cut=True) == (
        "Version 2.5 is out.",
        "ok",
    )
    text, reason = clean_reply("The parser drops trailing comm", persona, [], cut=True)
    assert text is None and "token limit" in reason
    assert clean_reply("Sounds good to me", persona, [])[0] == "Sounds good to me"  # whole
    long = "The parser is fine. " + "and then the lexer " * 30
    assert clean_reply(long, persona, [])[0] == "The parser is fine."
    assert clean_reply("word " * 100, persona, [])[0] is None


@pytest.mark.unit
@pytest.mark.parametrize(
    "raw",
    [
        ECHO,
        "Room: compiler. Mission: Improve the code in the canon.",
        "Answer linus in one or two sentences, or pass.",
        "Sure. Notes: - the parser drops commas",
        "Ticket #3 from ada: which port is the hub on?",
        "Answer the ticket from these passages only and list the labels you used.",
        "Current Task: the parser",
        "This is the expected criteria for your final answer: JSON",
    ],
)
def test_the_prompts_own_phrases_are_refused_as_echoes(raw: str) -> None:
    assert clean_reply(raw, compiler_pair()[0], []) == (None, "the model echoed its instructions")


@pytest.mark.unit
@pytest.mark.parametrize(
    "raw",
    [
        "<p><img src=",
        "{% embed media %} is the way",
        "See https://example.org for the parser.",
        "[Your Name] is sending the runbooks tomorrow.",
        "```python print(1)``` is the fix.",
    ],
)
def test_markup_links_and_placeholders_are_not_posted(raw: str) -> None:
    assert clean_reply(raw, compiler_pair()[0], []) == (
        None,
        "not plain prose (markup, a link, a placeholder or noise)",
    )
