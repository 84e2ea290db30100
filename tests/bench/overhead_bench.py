"""Benchmark of what BotArena itself costs per agent, with a model that answers at once.

A worker process of its own runs 1, 20, 100 and 500 agents (spread over the five
arenas, budgets opened up) against the hub and PostgreSQL of this process; the model is
the Ollama stand-in (``tests/ollama_standin.py``, the only model stand-in allowed),
answering without delay from a third process, so that nothing but BotArena limits the
turns and the worker's CPU is its own. For each count the worker first sits idle for a
while (every agent connected, no room quiet long enough for a turn): CPU per idle agent
and resident memory. Then its rooms are opened to turns: completed turns per second and
per core of the worker (turns / worker CPU seconds), turn latency, and resident memory
per agent (the growth over one agent). Every turn goes through the worker's whole path
(scheduler, state reports, CrewAI, the LLM call over HTTP, checks, posting to the hub);
memory recall is off (``memory_bench`` measures it). AgentScope reports about 100 agent
steps per second per core with a dummy model, the figure to beat. Last, the part of a
turn that is CrewAI's alone: the same ``CrewTurns`` kickoff on a model answering inside
the process (no HTTP, no hub), its CPU per turn and the turns per core it would allow if
the rest of BotArena cost nothing.

Usage: python -m tests.bench.overhead_bench [--agents 1 20 100 500] [--seconds 20]
[--idle-seconds 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psutil

from botarena.agents import actions
from botarena.agents.llm import OllamaBackend, _structured_class
from botarena.agents.persona import Persona, load_personas
from botarena.agents.pool import Slot
from botarena.agents.turn import CrewTurns
from botarena.agents.worker import AgentWorker
from botarena.arenas.names import ARENAS
from botarena.server import offline
from botarena.server.app import running_hub
from botarena.server.protocol import Role
from botarena.server.settings import Settings
from tests.bench.common import percentile, write_report

SLOTS = 8
"""Turns in flight in the worker (the model never makes them wait)."""
WORDS = [f"{a}{b}{c}wort" for a in "bdfgklmnprst" for b in "aeiou" for c in "bdgklmnprst"]


def personas(count: int) -> list[Persona]:
    """``count`` agents over the arenas, each with a word of its own in its voice: the
    stand-in's answers are about it, and the worker refuses a repeated answer."""
    shipped = load_personas(Path("agents/personas"))[0]
    return [
        shipped[i % len(shipped)].model_copy(
            update={
                "id": f"bench{i}",
                "display_name": f"Bench {i}",
                "arenas": [ARENAS[i % len(ARENAS)]],
                "voice": " ".join([WORDS[i]] * 8),
                "model": "smollm2",
                "limits": shipped[0].limits.model_copy(
                    update={"cooldown_seconds": 0, "turns_per_minute": 600}
                ),
            }
        )
        for i in range(count)
    ]


def _serve_model(urls: Any, stop: Any) -> None:
    """The stand-in, in a process of its own, until ``stop`` is set."""
    from tests.ollama_standin import ollama_standin

    async def serve() -> None:
        async with ollama_standin(["smollm2:latest"], capable=True) as standin:
            urls.put(standin.url)
            while not stop.is_set():  # noqa: ASYNC110 (a process event, not an asyncio one)
                await asyncio.sleep(0.2)

    asyncio.run(serve())


def _run_worker(
    hub_url: str, model_url: str, count: int, tokens: dict[str, str], plan: dict, out: Any
) -> None:
    """The worker, in a process of its own: idle, then busy; it measures itself."""
    warnings.simplefilter("ignore")
    offline.apply()

    def sample() -> tuple[float, float, int]:
        return time.perf_counter(), time.process_time(), psutil.Process().memory_info().rss

    async def run() -> dict:
        settings = Settings(var_dir=Path(plan["var"]), llm_timeout=30, log_level="warning")
        turns = CrewTurns(OllamaBackend(model_url, "smollm2"), settings)
        worker = AgentWorker(
            hub_url,
            personas(count),
            tokens,
            turns,
            slots=SLOTS,
            quiet_seconds=1e9,  # idle first: no room is quiet long enough
            arena_budgets=dict.fromkeys(ARENAS, 6000.0),
        )
        task = asyncio.create_task(worker.run())
        while sum(s.held for s in worker.seats.values()) < count and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # joins and first state reports
        idle_start = sample()
        await asyncio.sleep(plan["idle_seconds"])
        idle_end = sample()

        worker.scheduler.quiet_seconds = 0.2  # every room takes turns from now on
        warm = time.perf_counter() + plan["warm_seconds"]
        while time.perf_counter() < warm or len(worker.records) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        first = len(worker.records)
        busy_start = sample()
        await asyncio.sleep(plan["seconds"])
        busy_end = sample()
        records = worker.records[first : first + 10_000]
        last = len(worker.records)
        await worker.stop()
        await asyncio.gather(task, return_exceptions=True)
        return {
            "idle": [idle_start, idle_end],
            "busy": [busy_start, busy_end],
            "turns": last - first,
            "posted": sum(r.posted for r in records),
            "turn_seconds": [r.turn_seconds for r in records],
            "llm_seconds": [r.llm_seconds for r in records],
        }

    out.put(asyncio.run(run()))


def crewai_alone(turns: int = 300) -> dict[str, Any]:
    """CPU per turn of :meth:`CrewTurns._kickoff` alone (the task, the crew, CrewAI's
    executor and the schema check) on an LLM that answers inside the process."""

    class Instant(_structured_class()):  # type: ignore[misc]
        def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
            usage = {"prompt_tokens": 90, "completion_tokens": 12, "total_tokens": 102}
            self._track_token_usage_internal({**usage, "successful_requests": 1})
            return '{"act": "say", "text": "The parser keeps the plan in one place."}'

    llm = Instant(model="smollm2", base_url="http://127.0.0.1:9", api="ollama")
    member = type("InProcess", (), {"llm": lambda self, index, settings: llm})()
    slot = Slot(member, 0, "smollm2")  # type: ignore[arg-type]
    settings = Settings(var_dir=Path(tempfile.mkdtemp(prefix="ba-floor-")), log_level="warning")
    runner = CrewTurns(OllamaBackend("http://127.0.0.1:9", "smollm2"), settings)
    persona = personas(1)[0]
    task = "Room: compiler. Mission: one parser.\nChat so far:\nada: what next?\nSay one thing."
    action = actions.chat(replying=False)
    runner._kickoff(persona, slot, task, action, 48)  # CrewAI's imports and first build
    started = time.process_time()
    for _ in range(turns):
        outcome = runner._kickoff(persona, slot, task, action, 48)
    ms = (time.process_time() - started) / turns * 1000
    assert "parser" in outcome.raw, outcome
    return {
        "turns": turns,
        "cpu_ms_per_turn": round(ms, 2),
        "turns_per_second_per_core_ceiling": round(1000 / ms, 1),
    }


def summary(count: int, got: dict, baseline_rss: int | None) -> dict[str, Any]:
    (iw0, ic0, _), (iw1, ic1, idle_rss) = got["idle"]
    (bw0, bc0, _), (bw1, bc1, busy_rss) = got["busy"]
    wall, cpu = bw1 - bw0, bc1 - bc0
    turns = got["turns"]
    turn_seconds, llm = got["turn_seconds"], got["llm_seconds"]
    per_agent = (
        round((busy_rss - baseline_rss) / (count - 1) / 1024, 1)
        if baseline_rss is not None and count > 1
        else None
    )
    return {
        "agents": count,
        "idle": {
            "seconds": round(iw1 - iw0, 1),
            "worker_cores": round((ic1 - ic0) / (iw1 - iw0), 4),
            "cpu_ms_per_agent_per_second": round((ic1 - ic0) / (iw1 - iw0) / count * 1000, 3),
            "rss_mb": round(idle_rss / 2**20, 1),
            "sockets": count,
        },
        "busy": {
            "seconds": round(wall, 1),
            "turns": turns,
            "posted": got["posted"],
            "turns_per_second": round(turns / wall, 1),
            "worker_cores": round(cpu / wall, 3),
            "turns_per_second_per_core": round(turns / cpu, 1) if cpu else None,
            "cpu_ms_per_turn": round(cpu / turns * 1000, 2) if turns else None,
            "turn_seconds": {
                "p50": round(statistics.median(turn_seconds), 3) if turn_seconds else None,
                "p95": round(percentile(turn_seconds, 95), 3),
            },
            "llm_share_of_turn_median": round(
                statistics.median([m / t for m, t in zip(llm, turn_seconds, strict=True) if t]),
                3,
            )
            if turn_seconds
            else None,
            "rss_mb": round(busy_rss / 2**20, 1),
            "rss_kib_per_agent_over_one": per_agent,
        },
    }


async def main(counts: list[int], seconds: float, idle_seconds: float) -> dict[str, Any]:
    offline.apply()
    work = Path(tempfile.mkdtemp(prefix="ba-overhead-bench-"))
    spawn = multiprocessing.get_context("spawn")
    urls, stop = spawn.Queue(), spawn.Event()
    model = spawn.Process(target=_serve_model, args=(urls, stop), daemon=True)
    model.start()
    model_url = await asyncio.to_thread(urls.get, True, 60)
    results = []
    baseline: int | None = None
    try:
        for count in sorted(set(counts)):
            settings = Settings(
                var_dir=work / f"hub{count}",
                port=0,
                log_level="warning",
                rate_per_second=1000.0,
                rate_burst=1000,
            )
            async with running_hub(settings) as running:
                store = running.hub.store
                tokens = {
                    p.id: (await store.principals.issue_token(p.id, Role.AGENT, arenas=p.arenas))[1]
                    for p in personas(count)
                }
                out = spawn.Queue()
                plan = {
                    "var": str(work / f"worker{count}"),
                    "idle_seconds": idle_seconds,
                    "warm_seconds": 5.0,
                    "seconds": seconds,
                }
                worker = spawn.Process(
                    target=_run_worker, args=(running.url, model_url, count, tokens, plan, out)
                )
                worker.start()
                got = await asyncio.to_thread(out.get, True, 600)
                await asyncio.to_thread(worker.join, 60)
            result = summary(count, got, baseline)
            if count == 1:
                baseline = got["busy"][1][2]
            print(result, flush=True)
            results.append(result)
    finally:
        stop.set()
        model.join(10)
        with contextlib.suppress(Exception):
            model.kill()
    return {
        "benchmark": "overhead",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "model": "Ollama stand-in answering at once, in a process of its own",
        "slots": SLOTS,
        "reference": "AgentScope: about 100 agent steps per second per core with a dummy model",
        "results": results,
        "crewai_alone": await asyncio.to_thread(crewai_alone),  # as turns run: in a thread
    }


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 20, 100, 500])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("tests/bench/results/overhead.json"))
    args = parser.parse_args()
    write_report(asyncio.run(main(args.agents, args.seconds, args.idle_seconds)), args.out)
