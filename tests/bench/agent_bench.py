"""Benchmark of agent turns: where the time goes, and what BotArena costs the LLM.

For 1, 20 and 100 agents on one worker (spread over the five arenas, budgets opened up so
the worker is always busy) against the embedded llama.cpp servers (``--slots``
instances, each serving one request at a time), it records every turn's wall time (state
reports, CrewAI, the LLM call, posting to the hub) and the LLM's share of it, and reports
median and p95 of both and of everything else. It then compares aggregate generated
tokens per second with direct requests: the very requests the turns sent (their HTTP
bodies as sent: messages, schema, token limit, sampling; recorded) are replayed straight
to the same servers at the same concurrency
(one request per slot at a time, the most the worker runs at once). The hub and
PostgreSQL run in this process; the LLM servers are their own.

Usage: python -m tests.bench.agent_bench [--agents 1 20 100] [--slots 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import httpx

from botarena.agents.embedded_llm import EmbeddedLlama, demo_model
from botarena.agents.persona import load_personas
from botarena.agents.turn import CrewTurns
from botarena.agents.worker import AgentWorker
from botarena.arenas.names import ARENAS
from botarena.server import offline
from botarena.server.app import running_hub
from botarena.server.protocol import Role
from botarena.server.settings import Settings
from tests.bench.common import percentile, write_report
from tests.harness import llm_requests

MAX_TOKENS = 48
TURNS_PER_AGENT_COUNT = {1: 12, 5: 20, 20: 40, 100: 100}


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3) if values else float("nan"),
        "p95": round(percentile(values, 95), 3),
    }


async def turns_recorded(worker: AgentWorker, count: int, task: asyncio.Task[None]) -> None:
    """Wait until the worker has recorded ``count`` turns (or stopped, or 10 minutes)."""
    deadline = time.monotonic() + 600
    while len(worker.records) < count and not task.done() and time.monotonic() < deadline:  # noqa: ASYNC110 (polling a plain list)
        await asyncio.sleep(0.05)


async def through_botarena(settings: Settings, llama: EmbeddedLlama, agents_n: int) -> dict:
    shipped = load_personas(Path("agents/personas"))[0]
    personas = [
        shipped[i % len(shipped)].model_copy(
            update={
                "id": f"bench{i}",
                "display_name": f"Bench {i}",
                "arenas": [ARENAS[i % 5]],
                "limits": shipped[0].limits.model_copy(
                    update={"cooldown_seconds": 0, "turns_per_minute": 120}
                ),
            }
        )
        for i in range(agents_n)
    ]
    wanted = TURNS_PER_AGENT_COUNT.get(agents_n, 2 * agents_n)
    async with running_hub(settings) as running:
        store = running.hub.store
        tokens = {
            p.id: (await store.principals.issue_token(p.id, Role.AGENT, arenas=p.arenas))[1]
            for p in personas
        }
        turns = CrewTurns(llama.backend(), settings)
        worker = AgentWorker(
            running.url,
            personas,
            tokens,
            turns,
            slots=turns.slot_count,
            quiet_seconds=0.2,
            arena_budgets=dict.fromkeys(ARENAS, 600.0),
        )
        with llm_requests() as sent:
            task = asyncio.create_task(worker.run())
            await turns_recorded(worker, 1, task)  # the first turn pays CrewAI's import
            first = len(worker.records)
            first_sent = len(sent)
            started = time.perf_counter()
            await turns_recorded(worker, first + wanted, task)
            elapsed = time.perf_counter() - started
            records = worker.records[first:]
            bodies = sent[first_sent:]
        await worker.stop()
        await asyncio.gather(task, return_exceptions=True)
    llm = [r.llm_seconds for r in records]
    other = [r.turn_seconds - r.llm_seconds for r in records]
    generated = sum(r.completion_tokens for r in records)
    return {
        "agents": agents_n,
        "turns": len(records),
        "posted": sum(r.posted for r in records),
        "turn_seconds": spread([r.turn_seconds for r in records]),
        "llm_seconds": spread(llm),
        "outside_llm_seconds": spread(other),
        "outside_llm_share_median": round(
            statistics.median([o / r.turn_seconds for o, r in zip(other, records, strict=True)]), 3
        ),
        "completion_tokens": generated,
        "tokens_per_second": round(generated / elapsed, 1),
        "seconds": round(elapsed, 2),
        "concurrency": min(agents_n, llama.slots),
        "_bodies": bodies,
    }


async def direct(llama: EmbeddedLlama, concurrency: int, bodies: list[dict]) -> dict:
    """The very requests the agents' turns sent, replayed straight to the same servers
    at the same concurrency."""
    generated = 0
    latencies: list[float] = []
    queue = list(bodies)

    async def loop(index: int, http: httpx.AsyncClient) -> None:
        nonlocal generated
        url = llama.urls[index % len(llama.urls)]
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            answer = await http.post(f"{url}/chat/completions", json=body)
            answer.raise_for_status()
            generated += answer.json()["usage"]["completion_tokens"]
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(loop(i, http) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(bodies),
        "completion_tokens": generated,
        "tokens_per_second": round(generated / elapsed, 1),
        "request_seconds": spread(latencies),
        "concurrency": concurrency,
    }


async def main(agent_counts: list[int], slots: int) -> dict:
    offline.apply()
    work = Path(tempfile.mkdtemp(prefix="ba-agent-bench-"))
    settings = Settings(
        var_dir=work / "var", port=0, llm_max_tokens=MAX_TOKENS, llm_timeout=60, log_level="warning"
    )
    llama = EmbeddedLlama(demo_model(work / "models"), port=18890, slots=slots, threads=1)
    await llama.start()
    results = []
    try:
        for count in agent_counts:
            settings_n = settings.model_copy(update={"var_dir": work / f"var{count}"})
            ours = await through_botarena(settings_n, llama, count)
            bodies = ours.pop("_bodies")
            theirs = await direct(llama, ours["concurrency"], bodies)
            result = {
                **ours,
                "direct": theirs,
                "tokens_per_second_ratio": round(
                    ours["tokens_per_second"] / theirs["tokens_per_second"], 3
                ),
            }
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        await llama.stop()
    return {
        "benchmark": "agents",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "llm": {
            "model": "SmolLM2-135M-Instruct Q4_1",
            "slots": slots,
            "threads_each": 1,
            "max_tokens": MAX_TOKENS,
        },
        "results": results,
    }


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("tests/bench/results/agents.json"))
    args = parser.parse_args()
    report = asyncio.run(main(args.agents, args.slots))
    write_report(report, args.out)
