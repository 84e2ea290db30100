"""The embedded llama.cpp server listens where BotArena says, whatever the environment
says: llama-cpp-python's server prefers ``HOST``, ``PORT`` and ``CONFIG_FILE`` to its
arguments and reads its other settings (``API_KEY``, ``MODEL_ALIAS``...) from variables
too, so none of the parent's may reach it. And a server dies with the process that
started it, even one killed by SIGKILL."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from botarena.agents.embedded_llm import EmbeddedLlama
from tests.harness import eventually
from tests.services import free_port, free_ports

pytestmark = pytest.mark.e2e

HOSTILE = ("HOST", "PORT", "CONFIG_FILE", "API_KEY", "MODEL_ALIAS", "FORWARDED_ALLOW_IPS")


async def test_the_environment_does_not_move_the_model_server(
    demo_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, elsewhere = free_ports(2)
    config = tmp_path / "llama.json"  # what CONFIG_FILE would serve instead of our arguments
    config.write_text(
        json.dumps({"host": "0.0.0.0", "port": elsewhere, "models": [{"model": str(demo_gguf)}]})
    )
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", str(elsewhere))
    monkeypatch.setenv("CONFIG_FILE", str(config))
    monkeypatch.setenv("API_KEY", "a-key-the-agents-do-not-have")
    monkeypatch.setenv("MODEL_ALIAS", "moved")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")

    server = EmbeddedLlama(demo_gguf, port=port, slots=1, threads=1, context=512)
    await server.start(timeout=60)
    try:
        process = psutil.Process(server.processes[0].pid)
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in process.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {("127.0.0.1", port)}
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", elsewhere), timeout=1).close()

        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{server.urls[0]}/models")  # no key: API_KEY stayed out
        assert answer.status_code == 200
        assert [m["id"] for m in answer.json()["data"]] == ["smollm2"]

        environ = process.environ()
        assert not set(HOSTILE) & set(environ), environ
        assert environ["HF_HUB_OFFLINE"] == "1"
    finally:
        await server.stop()


PARENT = """
import asyncio, sys
from pathlib import Path
from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.server.logs import configure

async def main():
    configure(level="warning", stream=sys.stderr)
    server = EmbeddedLlama(Path(sys.argv[1]), port=int(sys.argv[2]), context=512)
    await server.start(timeout=60)
    print(server.processes[0].pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def gone(pid: int) -> bool:
    """The process has exited (an exited process nobody reaped yet is gone too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_model_server_dies_with_the_process_that_started_it(demo_gguf: Path) -> None:
    port = free_port()
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-c",
        PARENT,
        str(demo_gguf),
        str(port),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        pid = int(await asyncio.wait_for(parent.stdout.readline(), 90))
        assert not gone(pid)
    finally:
        parent.kill()
        await parent.wait()
    await eventually(lambda: gone(pid), timeout=30, what="the orphaned model server to exit")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
