"""The embedded llama.cpp server (xllamacpp) with the real demo model: it listens where
BotArena says and nowhere else, whatever the environment says (none of the parent's
variables reach it); it has the parallel slots it was asked for and decodes that many
requests at once; a JSON schema in ``response_format`` constrains its reply; and it dies
with the process that started it, even one killed by SIGKILL."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import httpx
import jsonschema
import psutil
import pytest

from botarena.agents.embedded_llm import EmbeddedLlama
from tests.harness import eventually
from tests.services import free_port, free_ports

pytestmark = pytest.mark.e2e


def hostile(elsewhere: int) -> dict[str, str]:
    """Variables that would move or lock a server that read them (llama-cpp-python's
    server and llama.cpp's own command line do)."""
    return {
        "HOST": "0.0.0.0",
        "PORT": str(elsewhere),
        "CONFIG_FILE": "/nonexistent/llama.json",
        "API_KEY": "a-key-the-agents-do-not-have",
        "MODEL_ALIAS": "moved",
        "FORWARDED_ALLOW_IPS": "*",
        "LLAMA_ARG_HOST": "0.0.0.0",
        "LLAMA_ARG_PORT": str(elsewhere),
        "LLAMA_API_KEY": "a-key-the-agents-do-not-have",
        "LLAMA_ARG_N_PARALLEL": "1",
    }


def listening(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


async def test_the_server_listens_on_loopback_only_with_its_slots_whatever_the_environment(
    demo_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, elsewhere = free_ports(2)
    for name, value in hostile(elsewhere).items():
        monkeypatch.setenv(name, value)

    server = EmbeddedLlama(
        demo_gguf, port=port, slots=3, threads=1, context=512, log_dir=tmp_path / "logs"
    )
    await server.start(timeout=60)
    try:
        pid = server.processes[0].pid
        assert listening(pid) == {("127.0.0.1", port)}
        assert refused(elsewhere)

        root = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=10) as http:
            models = await http.get(f"{server.urls[0]}/models")  # no key: none reached it
            props = (await http.get(f"{root}/props")).json()
            slots = (await http.get(f"{root}/slots")).json()
        assert models.status_code == 200
        assert [m["id"] for m in models.json()["data"]] == ["smollm2"]
        assert props["total_slots"] == 3 and props["model_path"] == str(demo_gguf)
        assert [s["n_ctx"] for s in slots] == [512, 512, 512]  # the context is per slot

        environ = psutil.Process(pid).environ()
        assert not set(hostile(elsewhere)) & set(environ), environ
        assert environ["HF_HUB_OFFLINE"] == "1"
        assert server.backend().slots == 3 and server.backend().urls == server.urls
    finally:
        await server.stop()
    assert refused(port) and not server.processes
    assert (
        f"listening on http://127.0.0.1:{port}"
        in (tmp_path / "logs" / f"llama-{port}.log").read_text()
    )


async def test_a_json_schema_in_response_format_shapes_the_reply(demo_gguf: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["say", "search_memory", "propose"]},
            "text": {"type": "string", "minLength": 1, "maxLength": 100},
        },
        "required": ["action", "text"],
        "additionalProperties": False,
    }
    server = EmbeddedLlama(demo_gguf, port=free_port(), slots=1, context=512)
    await server.start(timeout=60)
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            answer = await http.post(
                f"{server.urls[0]}/chat/completions",
                json={
                    "model": "smollm2",
                    "messages": [
                        {"role": "system", "content": "You are Ada, a compiler engineer."},
                        {"role": "user", "content": "The parser crashes on empty files."},
                    ],
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "action", "schema": schema},
                    },
                    # room for the longest text the schema allows, one token a character
                    # at worst, and a fixed greedy answer: no run is cut by chance
                    "max_tokens": 256,
                    "temperature": 0,
                    "seed": 7,
                    "repeat_penalty": 1.2,
                },
            )
        assert answer.status_code == 200, answer.text
        choice = answer.json()["choices"][0]
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)
    finally:
        await server.stop()


async def test_the_slots_decode_requests_at_the_same_time(demo_gguf: Path) -> None:
    server = EmbeddedLlama(demo_gguf, port=free_port(), slots=4, threads=1, context=512)
    await server.start(timeout=60)
    busiest = 0
    try:
        root = server.urls[0].removesuffix("/v1")
        async with httpx.AsyncClient(timeout=120) as http:

            async def ask(i: int) -> int:
                answer = await http.post(
                    f"{server.urls[0]}/chat/completions",
                    json={
                        "messages": [{"role": "user", "content": f"Tell story number {i}."}],
                        "max_tokens": 200,
                        "ignore_eos": True,  # every request keeps its slot 200 tokens long
                    },
                )
                answer.raise_for_status()
                return int(answer.json()["usage"]["completion_tokens"])

            requests = asyncio.gather(*(ask(i) for i in range(4)))
            while not requests.done():
                slots = (await http.get(f"{root}/slots")).json()
                busiest = max(busiest, sum(s["is_processing"] for s in slots))
                await asyncio.sleep(0.05)
            assert await requests == [200] * 4
    finally:
        await server.stop()
    assert busiest == 4, f"at most {busiest} of 4 slots were busy at once"


async def test_a_port_already_taken_is_refused_before_any_server_starts(
    demo_gguf: Path,
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        server = EmbeddedLlama(demo_gguf, port=other.getsockname()[1])
        with pytest.raises(RuntimeError, match="in use"):
            await server.start(timeout=10)
    assert not server.processes


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
    assert refused(port)
