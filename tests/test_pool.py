"""The LLM pool: turns routed over three backends (the embedded engine and two Ollama
stand-ins, one slow, one that fails mid-run and loses a model), every turn served, none
sent to a backend without its model, a failing backend out and back, arenas served in
turn when the pool is saturated, and each backend's state on the hub's /metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from botarena.agents.actions import ChatAction
from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.agents.llm import OllamaBackend
from botarena.agents.persona import Persona
from botarena.agents.pool import FIRST_BACKOFF, LLMPool, Member, Slot
from botarena.agents.turn import CrewTurns
from botarena.server.client import HubClient
from botarena.server.errors import LLMUnavailable
from botarena.server.protocol import AgentStateKind
from botarena.server.settings import Settings
from tests.harness import Arena
from tests.ollama_standin import OllamaStandIn, ollama_standin
from tests.test_agents_e2e import compiler_pair

TASK = "Room: compiler. Say in one sentence what the parser needs."
DIED = "llama runner process has terminated: exit status 2"


class Clock:
    """The pool's clock, moved on by the test (back-offs pass without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def routed(pool: LLMPool) -> list[tuple[str, str, str]]:
    """Record (backend, model, outcome) of every call the pool hands out."""
    calls: list[tuple[str, str, str]] = []
    release = pool.release

    def recording(slot: Slot, error: BaseException | None = None, *args: Any) -> None:
        calls.append((slot.member.name, slot.model, type(error).__name__ if error else "ok"))
        release(slot, error, *args)

    pool.release = recording  # type: ignore[method-assign]
    return calls


def persona(model: str, n: int = 0) -> Persona:
    """An agent on ``model``; ``n`` tells agents apart (each has one turn at a time)."""
    return compiler_pair()[0].model_copy(update={"model": model, "id": f"ada{n}"})


def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", llm_max_tokens=24, llm_timeout=30)


def chats(standin: OllamaStandIn, model: str | None = None) -> list[dict]:
    return [
        b
        for _, path, b in standin.requests
        if path == "/api/chat" and not b.get("failed") and model in (None, b.get("model"))
    ]


async def test_three_backends_serve_every_turn_and_a_failing_one_goes_out_and_back(
    llama: EmbeddedLlama, tmp_path: Path
) -> None:
    clock = Clock()
    async with (
        ollama_standin(["smollm2:latest", "qwen3:latest"], delay=0.4) as slow,
        ollama_standin(["smollm2:latest", "qwen3:latest"]) as flaky,
    ):
        pool = LLMPool(
            [
                Member("embedded", llama.backend(), llama.slots),
                Member("slow", OllamaBackend(slow.url, "smollm2"), 2),
                Member("flaky", OllamaBackend(flaky.url, "smollm2"), 2),
            ],
            check_seconds=3600,
            clock=clock,
        )
        await pool.start()
        calls = routed(pool)
        turns = CrewTurns(pool, settings(tmp_path))
        assert [m.models for m in pool.members][1:] == [
            frozenset({"smollm2:latest", "qwen3:latest"})
        ] * 2

        async def burst(count: int) -> list[Any]:
            return await asyncio.gather(
                *(
                    turns.run(persona("qwen3" if i % 3 == 0 else "smollm2", i), TASK, ChatAction)
                    for i in range(count)
                ),
                return_exceptions=True,
            )

        # qwen3 is deleted from the flaky node after the pool listed it: one call learns it
        flaky.models = ["smollm2:latest"]
        served = await burst(12)
        assert [o for o in served if isinstance(o, BaseException)] == []
        assert all(o.raw.strip() for o in served), "each turn has its backend's answer"
        assert not any(b == "embedded" and m == "qwen3" for b, m, _ in calls), "embedded lacks it"
        flaky_qwen = [c for c in calls if c[:2] == ("flaky", "qwen3")]
        assert [c[2] for c in flaky_qwen] == ["ModelMissing"], "asked once, then never again"
        assert {b for b, _, r in calls if r == "ok"} == {"embedded", "slow", "flaky"}

        # the flaky node dies mid-run: its calls fail, it is taken out, the turns go on
        flaky.failure = DIED
        before = len(calls)
        served = await burst(12)
        assert [o for o in served if isinstance(o, BaseException)] == []
        failed = [c for c in calls[before:] if c[0] == "flaky"]
        assert failed and {r for _, _, r in failed} == {"LLMUnavailable"}
        assert len(failed) <= 2, "no call after it was out (2: its slots in flight then)"
        out = len(flaky.requests)
        served = await burst(6)
        assert len(flaky.requests) == out, "nothing sent while it backs off"

        # it recovers: once its back-off is over and the check sees it, it serves again
        flaky.failure = None
        await pool.check()
        assert len(chats(flaky)) == len([c for c in calls if c[:2] == ("flaky", "smollm2")])
        clock.offset += FIRST_BACKOFF * 2
        await pool.check()
        before = len(calls)
        served = await burst(9)
        assert [o for o in served if isinstance(o, BaseException)] == []
        assert any(c[0] == "flaky" and c[2] == "ok" for c in calls[before:]), "it came back"
        assert len(chats(flaky, "qwen3")) == 1, "still never sent the model it lost"

        states = {s.name: s for s in pool.states()}
        assert states["flaky"].errors == len(failed) and states["flaky"].up
        assert states["slow"].tokens_per_second > 0 and states["embedded"].served > 0
        assert slow.most_busy <= 2, "a backend never gets more than its capacity"
        await pool.stop()


async def test_calls_in_flight_when_a_backend_fails_back_it_off_once() -> None:
    clock = Clock()
    member = Member("node", OllamaBackend("http://127.0.0.1:9", "smollm2"), 3)
    pool = LLMPool([member], check_seconds=3600, clock=clock)
    slots = [await pool.acquire("smollm2", "compiler") for _ in range(3)]
    for slot in slots:  # it dies with three calls in flight: each of them fails
        pool.release(slot, LLMUnavailable(DIED))
    assert member.errors == 3 and member.failures == 1
    assert member.excluded_until - clock() == pytest.approx(FIRST_BACKOFF, abs=0.1)

    clock.offset += FIRST_BACKOFF  # out of its back-off, it fails again: twice as long
    pool.release(await pool.acquire("smollm2", "compiler"), LLMUnavailable(DIED))
    assert member.failures == 2
    assert member.excluded_until - clock() == pytest.approx(2 * FIRST_BACKOFF, abs=0.1)


async def test_when_the_pool_is_saturated_every_arena_is_served_in_turn(tmp_path: Path) -> None:
    async with ollama_standin(["smollm2:latest"], delay=0.1) as one:
        pool = LLMPool([Member("one", OllamaBackend(one.url, "smollm2"), 2)], check_seconds=3600)
        await pool.start()
        turns = CrewTurns(pool, settings(tmp_path))
        finished: list[str] = []

        async def turn(arena: str, n: int) -> None:
            await turns.run(persona("smollm2", n), TASK, ChatAction, arena=arena)
            finished.append(arena)

        flood = [asyncio.create_task(turn("compiler", n)) for n in range(24)]
        await asyncio.sleep(0.05)  # the flood holds both slots and has 22 waiting
        others = [
            asyncio.create_task(turn(a, 100 + n)) for n, a in enumerate(["city", "school"] * 4)
        ]
        await asyncio.gather(*flood, *others)
        assert one.most_busy == 2
        # FIFO would serve the 22 waiting compiler turns first: the others would end last
        last_other = max(i for i, a in enumerate(finished) if a != "compiler")
        assert last_other < 2 + 3 * 4 + 2, f"the other arenas waited: {finished}"
        assert finished.count("compiler") == 24
        await pool.stop()


async def test_a_model_no_backend_has_and_a_pool_that_all_failed_say_why(tmp_path: Path) -> None:
    async with (
        ollama_standin(["smollm2:latest"]) as a,
        ollama_standin(["smollm2:latest"]) as b,
    ):
        pool = LLMPool(
            [
                Member("a", OllamaBackend(a.url, "smollm2"), 1),
                Member("b", OllamaBackend(b.url, "smollm2"), 1),
            ]
        )
        await pool.start()
        turns = CrewTurns(pool, settings(tmp_path))
        with pytest.raises(LLMUnavailable, match="no LLM backend has the model 'mistral'"):
            await turns.run(persona("mistral"), TASK, ChatAction)
        with pytest.raises(LLMUnavailable, match="model 'mistral'"):
            await pool.ensure_model("mistral")
        a.failure = b.failure = DIED
        with pytest.raises(LLMUnavailable, match="runner process has terminated"):
            await turns.run(persona("smollm2"), TASK, ChatAction)
        assert len([r for r in a.requests + b.requests if r[2].get("failed")]) == 2, (
            "each backend tried once, then the turn gave up"
        )
        # every backend out: the next turn still tries one rather than answer nothing
        a.failure = None
        outcome = await turns.run(persona("smollm2"), TASK, ChatAction)
        assert ChatAction.model_validate_json(outcome.raw).text
        await pool.stop()


async def test_each_backends_state_reaches_metrics_without_naming_anyone(arena: Arena) -> None:
    async with ollama_standin(["smollm2:latest"], delay=0.05) as one:
        pool = LLMPool([Member("gpu-node-1", OllamaBackend(one.url, "smollm2"), 3)])
        await pool.start()
        slot = await pool.acquire("smollm2", "compiler")
        ada = HubClient(arena.url, await arena.token("ada"), worker="w1")
        arena.clients.append(ada)
        await ada.connect()
        reported = await ada.report_state(AgentStateKind.IDLE, "connected", pool=pool.states())
        assert reported is not None and reported.pool[0].busy == 1
        pool.release(slot)
        async with aiohttp.ClientSession() as http, http.get(arena.url + "/metrics") as answer:
            text = await answer.text()
        lines = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line.startswith("botarena_llm_backend_")
        }
        assert lines['botarena_llm_backend_capacity{backend="gpu-node-1",worker="w1"}'] == 3
        assert lines['botarena_llm_backend_busy{backend="gpu-node-1",worker="w1"}'] == 1
        assert lines['botarena_llm_backend_up{backend="gpu-node-1",worker="w1"}'] == 1
        assert all("ada" not in name for name in lines), "labelled by backend and worker only"
        assert 'botarena_worker_agents{worker="w1"} 1.0' in text.splitlines()
        mod = await arena.client("mod", "moderator")
        listed = await mod.agent_states()
        assert [b.name for b in listed.agents[0].pool] == ["gpu-node-1"]
        await pool.stop()
