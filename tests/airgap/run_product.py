"""The air-gapped run: PostgreSQL, the hub, the embedded llama.cpp server and two agents
with memory (embedded ChromaDB, the offline embedder, the demo knowledge pack), started
inside a network namespace that has only loopback. Prints a JSON summary and
exits 0 when the agents talked."""

from __future__ import annotations

import asyncio
import fcntl
import json
import socket
import struct
import sys
import tempfile
import warnings
from pathlib import Path


def loopback_up() -> None:
    """Bring ``lo`` up in this fresh namespace (SIOCSIFFLAGS: UP | LOOPBACK | RUNNING)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14s", b"lo", 0x1 | 0x8 | 0x40, b"\0" * 14))


async def main(model: Path) -> dict:
    from botarena.server import offline

    offline.apply()
    from botarena.agents.embedded_llm import EmbeddedLlama
    from botarena.agents.llm import OpenAICompatibleBackend
    from botarena.agents.persona import load_personas
    from botarena.agents.turn import CrewTurns
    from botarena.agents.worker import AgentWorker
    from botarena.memory.service import MemoryService
    from botarena.server.app import running_hub
    from botarena.server.client import HubClient
    from botarena.server.protocol import Role
    from botarena.server.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="ba-air-"))
    settings = Settings(
        var_dir=work / "var", port=0, llm_max_tokens=40, llm_timeout=30, log_level="warning"
    )
    personas = {p.id: p for p in load_personas(Path("agents/personas"))[0]}
    pair = [
        personas[p].model_copy(
            update={
                "arenas": ["compiler"],
                "limits": personas[p].limits.model_copy(
                    update={"cooldown_seconds": 1, "turns_per_minute": 60}
                ),
            }
        )
        for p in ("ada", "linus")
    ]
    memory = MemoryService(settings, [p.id for p in pair])  # ChromaDB and the embedder, offline too
    llama = EmbeddedLlama(model, port=18790, slots=1, threads=2)
    await llama.start()
    try:
        async with running_hub(settings) as running:
            store = running.hub.store
            tokens = {
                p.id: (await store.principals.issue_token(p.id, Role.AGENT, arenas=["compiler"]))[1]
                for p in pair
            }
            watcher_token = (await store.principals.issue_token("watcher", Role.MODERATOR))[1]
            seen: list[str] = []
            watcher = HubClient(
                running.url, watcher_token, on_message=lambda m: seen.append(m.author)
            )
            await watcher.connect()
            await watcher.join("compiler")
            turns = CrewTurns(OpenAICompatibleBackend(llama.urls, "smollm2"), settings)
            worker = AgentWorker(
                running.url, pair, tokens, turns, quiet_seconds=1, arena_budgets={"compiler": 120}
            )
            task = asyncio.create_task(worker.run())
            deadline = asyncio.get_running_loop().time() + 240
            while len([a for a in seen if a in tokens]) < 2:
                if asyncio.get_running_loop().time() > deadline or task.done():
                    break
                await asyncio.sleep(0.2)
            await worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await watcher.close()
    finally:
        await llama.stop()
    return {
        "agent_messages": len([a for a in seen if a in tokens]),
        "authors": sorted(set(seen)),
        "memory_degraded": memory.degraded,
    }


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    loopback_up()
    summary = asyncio.run(main(Path(sys.argv[1])))
    print(json.dumps(summary))
    sys.exit(0 if summary["agent_messages"] >= 2 else 1)
