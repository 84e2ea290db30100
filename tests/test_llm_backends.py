"""LLM backends: Ollama's API (against a stand-in that answers as Ollama does), the
choice between Ollama and the embedded llama.cpp, the embedded server's backend (one URL,
its slots), and a CrewAI turn held to its action's schema, through Ollama's native API
and on the real tiny model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic._internal._model_construction import ModelMetaclass

from botarena.agents import actions
from botarena.agents.embedded_llm import DEMO_MODEL_FILE, EmbeddedLlama
from botarena.agents.llm import REPEAT_PENALTY, OllamaBackend, choose_backend
from botarena.agents.persona import Persona, Traits
from botarena.agents.scheduler import Turn
from botarena.agents.turn import CrewTurns, build_task
from botarena.server.errors import LLMUnavailable
from botarena.server.settings import Settings
from tests.ollama_standin import VERSION, ollama_standin
from tests.services import free_port


def settings(**values: object) -> Settings:
    return Settings(**{"llm_max_tokens": 60, "llm_timeout": 20, **values})


async def test_ollama_health_lists_installed_models() -> None:
    async with ollama_standin(["llama3:latest", "codellama:7b"]) as ollama:
        health = await OllamaBackend(ollama.url, "llama3").health()
    assert health.ok and VERSION in health.detail
    assert health.models == ("llama3:latest", "codellama:7b")


async def test_a_missing_model_says_how_to_bring_it_in_offline() -> None:
    async with ollama_standin(["llama3:latest"]) as ollama:
        backend = OllamaBackend(ollama.url, "llama3")
        await backend.ensure_model("llama3")  # :latest is implied, as in Ollama
        with pytest.raises(LLMUnavailable) as err:
            await backend.ensure_model("mistral")
        assert not any(path == "/api/pull" for _, path, _ in ollama.requests)
    assert "bundle" in str(err.value) and "never pulls" in str(err.value)
    assert "llama3:latest" in str(err.value)


async def test_an_unreachable_ollama_is_reported_not_raised() -> None:
    health = await OllamaBackend(f"http://127.0.0.1:{free_port()}", "llama3").health()
    assert not health.ok and "does not answer" in health.detail


async def test_auto_takes_ollama_when_it_answers_else_the_embedded_server() -> None:
    async with ollama_standin(["llama3:latest"]) as ollama:
        assert await choose_backend(settings(ollama_host=ollama.url)) == "ollama"
        explicit = settings(ollama_host=ollama.url, llm_backend="embedded")
        assert await choose_backend(explicit) == "embedded"
    closed = settings(ollama_host=f"http://127.0.0.1:{free_port()}")
    assert await choose_backend(closed) == "embedded"
    assert await choose_backend(settings(llm_url="http://127.0.0.1:9/v1")) == "openai"


def test_the_embedded_backend_is_one_server_answering_as_many_requests_as_it_has_slots(
    tmp_path: Path,
) -> None:
    llama = EmbeddedLlama.from_settings(
        settings(var_dir=tmp_path, llm_slots=3, llm_port=9123, llm_cache_ram_mib=32)
    )
    backend = llama.backend()
    assert backend.name == "embedded" and backend.default_model == "smollm2"
    assert backend.urls == ["http://127.0.0.1:9123/v1"] and backend.slots == 3
    assert llama.cache_ram_mib == 32 and llama.threads == 1
    assert llama.model_path == tmp_path / "models" / DEMO_MODEL_FILE  # copied from its wheel
    assert llama.model_path.stat().st_size > 90_000_000


def quiet_room_task(persona: Persona, initiative: str) -> str:
    turn = Turn(persona.id, "compiler", "initiative", None)
    return build_task(persona, Traits({}), turn, [], None, initiative)


def _persona(model: str | None) -> Persona:
    return Persona(
        id="ada",
        display_name="Ada",
        role="Compiler engineer",
        goal="Keep the parser correct.",
        backstory="Reads code first.",
        arenas=["compiler"],
        model=model,
    )


async def test_a_structured_turn_through_ollamas_native_api() -> None:
    chat = actions.chat(replying=False)
    async with ollama_standin(["llama3:latest"]) as ollama:
        turns = CrewTurns(OllamaBackend(ollama.url, "llama3"), settings())
        persona = _persona("llama3")
        outcome = await turns.run(persona, quiet_room_task(persona, "Say what could break."), chat)
        chats = [body for method, path, body in ollama.requests if path == "/api/chat"]
    said = actions.parse(chat, outcome.raw)
    assert isinstance(said, actions.ChatAction) and said.text == ollama.reply
    (sent,) = chats
    assert sent["model"] == "llama3" and sent["stream"] is False and "tools" not in sent
    assert sent["format"] == actions.schema(chat)
    assert sent["options"]["num_predict"] == 60
    assert sent["options"]["repeat_penalty"] == REPEAT_PENALTY
    system, user = sent["messages"]
    assert system["role"] == "system" and "Compiler engineer" in system["content"]
    assert "Say what could break." in user["content"]
    assert 0 < outcome.llm_seconds <= outcome.total_seconds
    assert outcome.completion_tokens == len(outcome.raw.split())  # eval_count: its words
    assert not outcome.cut


async def test_turns_write_nothing_outside_the_var_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CrewAI would keep every task's output (the agent's messages) in a SQLite file
    under the user's data folder, written three times a turn."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    async with ollama_standin(["llama3:latest"], capable=True) as ollama:
        turns = CrewTurns(OllamaBackend(ollama.url, "llama3"), settings(var_dir=tmp_path / "var"))
        persona = _persona("llama3")
        for topic in ("the parser", "the lexer", "the tests"):
            task = quiet_room_task(persona, f"Say what could break in {topic}.")
            outcome = await turns.run(persona, task, actions.chat(replying=False))
            assert actions.parse(actions.chat(replying=False), outcome.raw).text
    written = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    # CrewAI's login-key file (``credentials/secret.key``, made once per process when
    # it looks for a login) holds nothing of an agent's
    kept = [p for p in written if p.name != "secret.key"]
    assert kept == [], f"a turn wrote outside the var folder: {kept}"


async def test_turns_make_no_class_and_no_event_loop_beyond_crewais_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a turn costs beyond CrewAI's flow. Making a pydantic class takes about a
    millisecond (CrewAI made one for the state of every agent's executor, the worker one
    for every turn's action), and CrewAI ran every file-store lookup (four a turn) on an
    event loop of its own, whose closing walks every task of the process."""
    loops: list[asyncio.AbstractEventLoop] = []
    classes: list[str] = []
    new_event_loop, new_model = asyncio.events.new_event_loop, ModelMetaclass.__new__

    def loop_counted() -> asyncio.AbstractEventLoop:
        loops.append(new_event_loop())
        return loops[-1]

    def model_counted(mcs: type, name: str, *args: Any, **kwargs: Any) -> type:
        classes.append(name)
        return new_model(mcs, name, *args, **kwargs)

    async with ollama_standin(["llama3:latest"]) as ollama:
        turns = CrewTurns(OllamaBackend(ollama.url, "llama3"), settings())
        ada, grace, linus = (
            _persona("llama3").model_copy(update={"id": n}) for n in ("ada", "grace", "linus")
        )
        for n, persona in enumerate((ada, grace, linus, ada)):
            if n == 1:  # after the first turn: CrewAI's imports and first build
                monkeypatch.setattr(asyncio.events, "new_event_loop", loop_counted)
                monkeypatch.setattr(ModelMetaclass, "__new__", model_counted)
            task = quiet_room_task(persona, "Say what could break.")
            outcome = await turns.run(persona, task, actions.chat(replying=False))
            assert actions.parse(actions.chat(replying=False), outcome.raw).text == ollama.reply
    assert classes == []
    assert len(loops) == 3  # each kickoff's flow, and nothing else


async def test_a_turn_on_a_model_ollama_lacks_fails_for_the_worker_to_handle() -> None:
    async with ollama_standin(["llama3:latest"]) as ollama:
        turns = CrewTurns(OllamaBackend(ollama.url, "llama3"), settings())
        with pytest.raises(Exception, match="not found"):
            persona = _persona("mistral")
            await turns.run(
                persona, quiet_room_task(persona, "Speak."), actions.chat(replying=False)
            )


async def test_every_turns_answer_on_the_tiny_model_fits_its_schema(llama: EmbeddedLlama) -> None:
    turns = CrewTurns(llama.backend(), settings(llm_max_tokens=160, llm_timeout=60))
    persona = _persona("smollm2")
    task = quiet_room_task(persona, "Say what could break in the parser.")
    models = [
        actions.chat(replying=True),
        actions.draft(["document", "tutorial"]),
        actions.ticket(["ops-ports", "ops-restore"]),
    ]
    for model in models:
        for _ in range(3):
            outcome = await turns.run(persona, task, model, 400)
            parsed = actions.parse(model, outcome.raw)
            assert isinstance(parsed, model), (model.__name__, outcome.raw)
