"""The embedded llama.cpp server listens where BotArena says, whatever the environment
says: llama-cpp-python's server prefers ``HOST``, ``PORT`` and ``CONFIG_FILE`` to its
arguments and reads its other settings (``API_KEY``, ``MODEL_ALIAS``...) from variables
too, so none of the parent's may reach it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import psutil
import pytest

from botarena.agents.embedded_llm import EmbeddedLlama
from tests.services import free_ports

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
