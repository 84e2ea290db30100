"""Benchmark of the LLM pool: how three backends of different speeds share the turns.

Three Ollama stand-ins on loopback (``tests/ollama_standin.py``; the only model
stand-in allowed) answer after a fixed think time each: a fast one with 3 slots, a
medium one with 2 and a slow one with 1. Agents in five arenas, more than the pool's
capacity, take turns back to back through the real turn path (CrewAI, the pool, HTTP)
for a fixed window, so the pool stays saturated. For each backend it reports the turns
it served and their share, against its share of the slots and its share of the pool's
throughput (slots / think time: what a router that keeps every slot busy gives), its
mean busy slots, and its turns' latency; overall, turns per second, the wait for a slot,
and turns per arena (fairness). A second run makes the medium backend fail for a while
mid-window, then recover: every turn must still be served, and the shares show it out and
back.

Usage: python -m tests.bench.pool_bench [--seconds 30] [--agents 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from botarena.agents.actions import ChatAction
from botarena.agents.llm import OllamaBackend
from botarena.agents.persona import load_personas
from botarena.agents.pool import LLMPool, Member, Slot
from botarena.agents.turn import CrewTurns
from botarena.arenas.names import ARENAS
from botarena.server import offline
from botarena.server.settings import Settings
from tests.bench.common import percentile, write_report
from tests.ollama_standin import ollama_standin

BACKENDS = (("fast", 0.2, 3), ("medium", 0.6, 2), ("slow", 1.5, 1))
"""Name, think time in seconds, slots."""
TASK = "Say in one sentence what the parser needs next."
DIED = "llama runner process has terminated: exit status 2"


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3) if values else float("nan"),
        "p95": round(percentile(values, 95), 3),
    }


async def saturate(
    urls: dict[str, str], agents: int, seconds: float, on_half: Any = None
) -> dict[str, Any]:
    """``agents`` agents taking turns back to back through a pool of ``urls`` for
    ``seconds``; ``on_half`` is awaited at half time (a fault to make)."""
    pool = LLMPool(
        [Member(name, OllamaBackend(urls[name], "smollm2"), slots) for name, _, slots in BACKENDS],
        check_seconds=2,
    )
    await pool.start()
    served: list[tuple[str, str, float]] = []  # backend, arena, seconds
    failed_calls: Counter[str] = Counter()
    waits: list[float] = []
    acquire, release = pool.acquire, pool.release
    started_at: dict[int, tuple[float, str]] = {}  # a slot's start and arena

    async def timed_acquire(model: str, arena: str, avoid: Any = ()) -> Slot:
        asked = time.perf_counter()
        slot = await acquire(model, arena, avoid)
        waits.append(time.perf_counter() - asked)
        started_at[id(slot)] = (time.perf_counter(), arena)
        return slot

    def recording(slot: Slot, error: BaseException | None = None, *args: Any) -> None:
        start, arena = started_at.pop(id(slot))
        if error is None:
            served.append((slot.member.name, arena, time.perf_counter() - start))
        else:
            failed_calls[slot.member.name] += 1
        release(slot, error, *args)

    pool.acquire = timed_acquire  # type: ignore[method-assign]
    pool.release = recording  # type: ignore[method-assign]
    settings = Settings(var_dir=Path(tempfile.mkdtemp(prefix="ba-pool-bench-")), llm_timeout=30)
    turns = CrewTurns(pool, settings)
    shipped = load_personas(Path("agents/personas"))[0]
    busy: dict[str, list[int]] = defaultdict(list)
    lost: list[str] = []
    deadline = time.perf_counter() + seconds

    async def agent(n: int) -> None:
        persona = shipped[n % len(shipped)].model_copy(
            update={"id": f"bench{n}", "arenas": [ARENAS[n % len(ARENAS)]], "model": "smollm2"}
        )
        while time.perf_counter() < deadline:
            try:
                await turns.run(persona, TASK, ChatAction, arena=persona.arenas[0])
            except Exception as exc:  # a turn the pool could not serve anywhere
                lost.append(repr(exc))

    async def sample() -> None:
        while True:
            for member in pool.members:
                busy[member.name].append(member.busy)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    began = time.perf_counter()
    tasks = [asyncio.create_task(agent(n)) for n in range(agents)]
    if on_half is not None:
        await asyncio.sleep(seconds / 2)
        await on_half()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    await pool.stop()

    total = len(served)
    slots = sum(s for _, _, s in BACKENDS)
    throughput = sum(s / d for _, d, s in BACKENDS)
    backends = {}
    for name, delay, capacity in BACKENDS:
        mine = [t for b, _, t in served if b == name]
        backends[name] = {
            "think_seconds": delay,
            "slots": capacity,
            "turns": len(mine),
            "share_of_turns": round(len(mine) / total, 3) if total else 0.0,
            "share_of_slots": round(capacity / slots, 3),
            "share_of_throughput": round(capacity / delay / throughput, 3),
            "mean_busy_slots": round(statistics.mean(busy[name]), 2) if busy[name] else 0.0,
            "failed_calls": failed_calls[name],
            "call_seconds": spread(mine),
        }
    per_arena = Counter(a for _, a, _ in served)
    return {
        "agents": agents,
        "seconds": round(elapsed, 1),
        "turns": total,
        "turns_lost": len(lost),
        "lost_reasons": sorted(set(lost))[:3],
        "turns_per_second": round(total / elapsed, 2),
        "ideal_turns_per_second": round(throughput, 2),
        "wait_for_slot_seconds": spread(waits),
        "turns_per_arena": dict(sorted(per_arena.items())),
        "arena_min_over_max": round(min(per_arena.values()) / max(per_arena.values()), 3)
        if per_arena
        else 0.0,
        "backends": backends,
    }


async def main(seconds: float, agents: int) -> dict[str, Any]:
    offline.apply()
    async with contextlib.AsyncExitStack() as stack:
        standins = {
            name: await stack.enter_async_context(
                ollama_standin(["smollm2:latest"], delay=delay, capable=True)
            )
            for name, delay, _ in BACKENDS
        }
        urls = {name: s.url for name, s in standins.items()}
        steady = await saturate(urls, agents, seconds)
        print(steady, flush=True)

        async def fail_for_a_while() -> None:
            standins["medium"].failure = DIED
            await asyncio.sleep(seconds / 4)
            standins["medium"].failure = None

        faulty = await saturate(urls, agents, seconds, on_half=fail_for_a_while)
        faulty["fault"] = f"medium fails from {seconds / 2:.0f} s for {seconds / 4:.0f} s"
        print(faulty, flush=True)
    return {
        "benchmark": "pool",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "router": "most spare slots among the members that have the model, faster on a tie",
        "steady": steady,
        "one_fails_and_recovers": faulty,
    }


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("tests/bench/results/pool.json"))
    args = parser.parse_args()
    write_report(asyncio.run(main(args.seconds, args.agents)), args.out)
