"""``botarena up`` (what ``make up`` runs), as an operator sees it: the whole product
starts on embedded defaults, prints a moderator token that works, agents talk, and
Ctrl-C stops every process it started."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from botarena.agents.up import moderator_token, status_line, worker_env
from botarena.arenas.names import ARENAS, ProposalKind
from botarena.server.client import HubClient
from botarena.server.embedded_pg import read_postmaster
from botarena.server.errors import Unauthorized
from botarena.server.protocol import Message, Role
from botarena.server.settings import Settings
from botarena.tui.app import ConsoleApp
from botarena.tui.screens import FormScreen
from tests.harness import Arena, eventually
from tests.services import HubProcess, free_port, hub_env
from tests.test_tui import until

pytestmark = pytest.mark.e2e


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Up:
    process: asyncio.subprocess.Process
    output: list[str]
    hub_url: str
    llm_port: int
    token: str


@asynccontextmanager
async def botarena_up(var: Path, *args: str, **settings: str) -> AsyncIterator[Up]:
    """``botarena up`` on ``var`` with free ports, once its banner gave the token; stopped
    with Ctrl-C (killed if it will not stop) when done. It runs from an empty folder, as
    an operator's shell may be anywhere: personas, charters, the demo pack and the
    migrations must come from the installed package."""
    hub_port, llm_port = int(settings.pop("port", free_port())), free_port()
    elsewhere = var.parent / "elsewhere"
    elsewhere.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-m",
        "botarena.server.cli",
        "up",
        *args,
        cwd=elsewhere,
        env=hub_env(
            var_dir=str(var),
            port=str(hub_port),
            llm_port=str(llm_port),
            llm_slots="1",
            llm_threads="2",
            llm_backend="embedded",
            llm_max_tokens="40",
            **{"quiet_seconds": "2", **settings},
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            output.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read())
    try:
        await eventually(
            lambda: any("moderator token:" in line for line in output),
            timeout=120,
            what="the banner",
        )
        token = re.search(r"moderator token: (\S+)", "".join(output))[1]  # type: ignore[index]
        yield Up(process, output, f"http://127.0.0.1:{hub_port}", llm_port, token)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 90)
            except TimeoutError:
                process.kill()
                await process.wait()
        await reader


def listening_addresses(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


async def test_up_runs_everything_and_ctrl_c_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = free_port()
    monkeypatch.setenv("HOST", "0.0.0.0")  # servers that read these would prefer them
    monkeypatch.setenv("PORT", str(elsewhere))
    var = tmp_path / "var"
    async with botarena_up(var, log_level="info") as up:
        output = up.output
        assert up.hub_url in "".join(output)
        assert "botarena watch compiler" in "".join(output)
        inbox: list[Message] = []
        moderator = HubClient(up.hub_url, up.token, on_message=inbox.append)
        await moderator.connect()
        for arena in ARENAS:
            await moderator.join(arena)
        await eventually(
            lambda: any(m.author_role == "agent" for m in inbox),
            timeout=180,
            what="an agent speaks",
        )
        states = (await moderator.call("agents"))["agents"]
        assert {s["agent"] for s in states} >= {"ada", "grace", "maria", "sage", "scheherazade"}
        assert port_open(up.llm_port)
        assert listening_addresses(up.llm_port) == {"127.0.0.1"}, "the model on loopback only"
        assert not listening_addresses(elsewhere)
        await moderator.close()

        up.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(up.process.wait(), 90) == 0
    hub_port = int(up.hub_url.rsplit(":", 1)[1])
    assert not port_open(hub_port) and not port_open(up.llm_port), "every server stopped"
    assert not (var / "pgdata" / "postmaster.pid").exists(), "PostgreSQL stopped"
    assert (var / "agent-tokens.json").stat().st_mode & 0o777 == 0o600
    assert "Traceback" not in "".join(output), "".join(output)[-3000:]
    assert not [line for line in output if line.lstrip().startswith("{")], "no log lines"
    assert "stopping…" in "".join(output)
    hub_log = [json.loads(line) for line in (var / "logs" / "up.jsonl").read_text().splitlines()]
    assert {"hub.listening", "hub.stopping"} <= {entry["event"] for entry in hub_log}
    worker_log = (var / "logs" / "worker.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("event") == "worker.running" for line in worker_log)
    assert not any((var.parent / "elsewhere").iterdir()), "nothing written to the working folder"


async def test_a_console_survives_two_restarts_and_asks_for_the_rotated_token(
    tmp_path: Path,
) -> None:
    """The moderator's console stays open while ``up`` is restarted twice: it reconnects
    with the site's kept token, and after a restart that rotates it, says the token was
    refused and asks for the new one (which ``botarena token moderator`` shows)."""
    var, port = tmp_path / "var", str(free_port())
    async with botarena_up(var, port=port) as first:
        app = ConsoleApp(url=first.hub_url, token=first.token, blink=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.state.loaded, "the console connected")
            await ctrl_c(first)
            for _restart in range(2):
                await until(pilot, lambda: not app.state.connected, "the hub gone")
                async with botarena_up(var, port=port) as again:
                    assert again.token == first.token, "the site's token is kept"
                    await until(pilot, lambda: app.state.connected, "back", timeout=60)
                    assert "● connected" in str(app.main.query_one("#status").render())
                    assert await moderator_token_shown(var) == first.token
                    await ctrl_c(again)
            assert (var / "moderator-token").stat().st_mode & 0o777 == 0o600
            await until(pilot, lambda: not app.state.connected, "the hub gone")
            async with botarena_up(var, "--rotate-moderator-token", port=port) as third:
                assert third.token != first.token
                await until(pilot, lambda: isinstance(app.screen, FormScreen), "asked", 60)
                assert "token refused" in str(app.main.query_one("#status").render())
                await pilot.press(*await moderator_token_shown(var), "enter")
                await until(pilot, lambda: app.state.connected, "connected with the new one", 30)
                with pytest.raises(Unauthorized):
                    await HubClient(third.hub_url, first.token).connect()


async def ctrl_c(up: Up) -> None:
    up.process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(up.process.wait(), 90) == 0


async def moderator_token_shown(var: Path) -> str:
    """What ``botarena token moderator`` prints for the site at ``var``."""
    shown = await asyncio.create_subprocess_exec(
        *(sys.executable, "-P", "-m", "botarena.server.cli", "token", "moderator"),
        env=hub_env(var_dir=str(var)),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await shown.communicate()
    assert shown.returncode == 0
    return out.decode().strip()


async def test_sigterm_leaves_no_process_of_ups_tree_after_10_seconds(tmp_path: Path) -> None:
    var = tmp_path / "var"
    async with botarena_up(var) as up:
        await eventually(lambda: port_open(up.llm_port), timeout=120, what="the model server")
        await asyncio.sleep(3)  # the agents are taking turns
        tree = [up.process.pid, *(c.pid for c in psutil.Process(up.process.pid).children(True))]
        assert len(tree) >= 3, "up, the worker and its model server"
        up.process.send_signal(signal.SIGTERM)
        await eventually(lambda: all(map(gone, tree)), timeout=10, what="every process ended")
        assert await up.process.wait() == 0
    assert not port_open(up.llm_port)


async def test_the_status_line_says_what_the_site_is_doing(arena: Arena) -> None:
    ada = await arena.client("ada", arenas=["compiler"])
    await arena.client("mod", Role.MODERATOR)
    await ada.propose("compiler", ProposalKind.DOCUMENT, "docs/a.md", "A", "Some text.\n")
    await ada.join("compiler")
    await ada.send("compiler", "hello")
    line = await status_line(arena.running, time.monotonic() - 3725)
    assert line.startswith("up 1h02m · 1 agents online · 1 messages · 1 proposals to review")
    assert "0 open tickets (0 for a human)" in line


async def test_a_revoked_or_foreign_moderator_token_on_file_is_replaced(arena: Arena) -> None:
    store, path = arena.store, arena.running.hub.settings.moderator_token_path
    made = await moderator_token(store, path)
    assert await moderator_token(store, path) == made
    await store.principals.revoke_tokens(name="moderator")
    replaced = await moderator_token(store, path)
    assert replaced != made and path.read_text().strip() == replaced
    _agent, foreign = await store.principals.issue_token("ada", Role.AGENT, arenas=["compiler"])
    path.write_text(foreign)
    own = await moderator_token(store, path)
    assert own != foreign
    principal, _ = await store.principals.authenticate(own)
    assert (principal.name, principal.role) == ("moderator", Role.MODERATOR)
    with pytest.raises(Unauthorized, match="revoked"):
        await store.principals.authenticate(replaced)  # the older ones are revoked


def gone(pid: int) -> bool:
    """The process has exited (an exited process nobody reaped yet is gone too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_killed_up_leaves_no_worker_or_model_server_and_its_database_is_adopted(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    async with botarena_up(var) as up:
        await eventually(lambda: port_open(up.llm_port), timeout=120, what="the model server")
        children = [c.pid for c in psutil.Process(up.process.pid).children(recursive=True)]
        assert len(children) >= 2, "the worker and its model server"
        up.process.kill()
        await up.process.wait()
        await eventually(lambda: all(map(gone, children)), timeout=60, what="orphans to end")
        assert not port_open(up.llm_port)
        postmaster = read_postmaster(var / "pgdata")
        assert postmaster is not None and postmaster.alive(), "not up's child: it stays"

    successor = HubProcess(tmp_path / "hub.log", var_dir=str(var)).start()
    assert successor.stop() == 0
    assert gone(postmaster.pid), "the next hub adopted the database and stopped it"


def test_the_worker_gets_its_own_settings_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "site.toml"
    config.write_text("")
    given = {
        "BOTARENA_CONFIG": str(config),
        "BOTARENA_LLM_PORT": "9100",
        "botarena_llm_slots": "3",  # settings are read without regard to case
        "OLLAMA_HOST": "http://10.0.0.5:11434",
        "BOTARENA_DATABASE_URL": "postgresql://hub:secret@db/botarena",
        "BOTARENA_S3_SECRET_KEY": "s3-secret",
        "BOTARENA_TOKEN": "bat_the_operators_own",
        "HOST": "0.0.0.0",
        "PORT": "1",
        "PGPASSWORD": "secret",
    }
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    settings = Settings(var_dir=tmp_path / "var")

    env = worker_env(settings, "http://127.0.0.1:8765")

    for kept in ("BOTARENA_CONFIG", "BOTARENA_LLM_PORT", "botarena_llm_slots", "OLLAMA_HOST"):
        assert env[kept] == given[kept]
    for withheld in ("BOTARENA_DATABASE_URL", "BOTARENA_S3_SECRET_KEY", "BOTARENA_TOKEN"):
        assert withheld not in env
    assert not {"HOST", "PORT", "PGPASSWORD"} & set(env)
    assert env["BOTARENA_HUB_URL"] == "http://127.0.0.1:8765"
    assert env["BOTARENA_VAR_DIR"] == str((tmp_path / "var").resolve())
    assert env["BOTARENA_AGENT_TOKENS_FILE"] == str(settings.tokens_path.resolve())
    assert env["CREWAI_DISABLE_TELEMETRY"] == "true" and "PATH" in env
