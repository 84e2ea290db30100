"""The ``botarena`` command as an operator uses it, on the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from botarena.server.client import HubClient
from botarena.server.errors import HubError
from tests.services import ROOT, HubProcess, hub_env

pytestmark = pytest.mark.e2e


def botarena(var: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "botarena.server.cli", *args],
        cwd=ROOT,
        env=hub_env(var_dir=str(var), **settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_ok(var: Path, *args: str, **settings: str) -> str:
    """The output of a command a test needs to succeed (its error shown when it fails)."""
    result = botarena(var, *args, **settings)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site's var/ folder, whose embedded PostgreSQL the commands start on their own."""
    return tmp_path_factory.mktemp("site") / "var"


def test_token_create_prints_only_the_token_and_stops_its_database(site: Path) -> None:
    made = botarena(site, "token", "create", "--name", "alice", "--role", "moderator")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("bat_") and "\n" not in token
    assert "not be shown again" in made.stderr
    assert not (site / "pgdata" / "postmaster.pid").exists(), "the command stops what it started"

    listed = botarena(site, "token", "list")
    assert listed.returncode == 0 and "alice" in listed.stdout and token not in listed.stdout
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["id", "principal", "role", "created", "state"]
    assert [row.split()[1:3] for row in rows] == [["alice", "moderator"]]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("token", "create", "--name", "bob", "--role", "god"), 2, "god"),
        (("token", "create", "--name", "Bad Name!", "--role", "agent"), 2, "bad name"),
        (
            ("token", "create", "--name", "bob", "--role", "agent", "--arena", "moon"),
            2,
            "not an arena",
        ),
        (("token", "revoke", "--name", "nobody"), 1, "no active token"),
        (
            ("token", "create", "--name", "boss", "--role", "moderator", "--ai-moderator"),
            2,
            "only an agent is made an AI moderator",
        ),
        (
            (
                "token",
                "revoke",
            ),
            2,
            "exactly one",
        ),
        (("watch", "compiler"), 2, "BOTARENA_TOKEN"),
        (("proposals", "list", "--status", "bogus"), 2, "'bogus' is not one of"),
        (("proposals", "list", "--arena", "moon"), 2, "not an arena: moon"),
    ],
)
def test_bad_commands_say_what_is_wrong(site: Path, args, code, message) -> None:
    result = botarena(site, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_principal_cannot_change_role_by_asking(site: Path) -> None:
    run_ok(site, "token", "create", "--name", "carol", "--role", "agent")
    result = botarena(site, "token", "create", "--name", "carol", "--role", "admin")
    assert result.returncode == 2 and "exists with role agent" in result.stderr


def test_bad_settings_stop_the_command_with_the_variable_named(site: Path) -> None:
    result = botarena(site, "db", "migrate", port="not-a-port")
    assert result.returncode == 2
    assert "port" in result.stderr and "Traceback" not in result.stderr


async def watcher(site: Path, url: str, token: str, *args: str) -> asyncio.subprocess.Process:
    """``botarena watch compiler`` running with ``token``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-m",
        "botarena.server.cli",
        "watch",
        "compiler",
        *args,
        cwd=ROOT,
        env=hub_env(var_dir=str(site), hub_url=url, token=token),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_serve_runs_on_the_embedded_database_and_stops_it(site: Path) -> None:
    token = run_ok(site, "token", "create", "--name", "dave", "--role", "agent").strip()
    hub = HubProcess(site.parent / "hub.log", var_dir=str(site)).start()
    assert (site / "pgdata" / "postmaster.pid").exists()
    client = HubClient(hub.url, token)
    await client.connect()
    await client.join("compiler")
    await client.send("compiler", "said before watching")

    erin = botarena(site, "token", "create", "--name", "erin", "--role", "moderator")
    watch = await watcher(site, hub.url, erin.stdout.strip())
    try:
        first = await asyncio.wait_for(watch.stdout.readline(), 30)  # type: ignore[union-attr]
        assert b"dave: said before watching" in first  # recent history first
        await asyncio.wait_for(watch.stderr.readline(), 30)  # type: ignore[union-attr]
        sent = await client.send("compiler", "hello from the embedded site")
        live = await asyncio.wait_for(watch.stdout.readline(), 30)  # type: ignore[union-attr]
        assert f"#{sent.id} dave: hello from the embedded site".encode() in live
    finally:
        watch.send_signal(signal.SIGINT)  # Ctrl-C
        _, said = await asyncio.wait_for(watch.communicate(), 10)
    assert watch.returncode == 0 and said.decode().strip().endswith("-- stopped"), said
    assert b"Traceback" not in said

    # a watcher whose token is revoked stops with the reason, as does one left without a hub
    revoked = await watcher(site, hub.url, erin.stdout.strip())
    await asyncio.wait_for(revoked.stderr.readline(), 30)  # type: ignore[union-attr]
    assert botarena(site, "token", "revoke", "--name", "erin").returncode == 0
    _, said = await asyncio.wait_for(revoked.communicate(), 20)
    assert revoked.returncode == 1 and b"error: unauthorized" in said, said
    frank = botarena(site, "token", "create", "--name", "frank", "--role", "moderator")
    orphan = await watcher(site, hub.url, frank.stdout.strip(), "--give-up-after", "2")
    await asyncio.wait_for(orphan.stderr.readline(), 30)  # type: ignore[union-attr]

    revoke = botarena(site, "token", "revoke", "--name", "dave")  # while the hub runs
    assert revoke.returncode == 0 and "revoked 1" in revoke.stdout
    again = HubClient(hub.url, token, reconnection=False)
    with pytest.raises(HubError) as err:
        await again.connect()
    assert err.value.code == "unauthorized"
    await client.close()

    assert hub.stop() == 0
    assert not (site / "pgdata" / "postmaster.pid").exists(), "SIGTERM stops PostgreSQL too"
    _, said = await asyncio.wait_for(orphan.communicate(), 30)
    assert orphan.returncode == 1 and b"unreachable for 2 s" in said, said
    assert b"Traceback" not in said
    log = (site.parent / "hub.log").read_text()
    assert sent.id > 0 and "Traceback" not in log


def test_memory_commands_load_a_pack_and_show_an_agents_memories(tmp_path: Path) -> None:
    from botarena.server import offline

    offline.apply()
    from botarena.memory.index import open_chroma
    from botarena.memory.memories import AgentMemory
    from botarena.server.settings import Settings

    var = tmp_path / "var"
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "ok.md").write_text("---\ncollection: rules\ntitle: T\nid: ok\n---\nBe brief.\n")
    (pack / "bad.md").write_text("no front matter here\n")
    loaded = botarena(var, "memory", "load-pack", str(pack))
    assert loaded.returncode == 1  # a refused file makes it fail, the rest still loads
    assert "indexed 1 chunk(s)" in loaded.stdout and "bad.md" in loaded.stderr

    memory = AgentMemory(open_chroma(Settings(var_dir=var)), "ada")
    memory.remember("mod: the release code word is bluebird", importance=7, room="compiler")
    memory.remember("linus: lunch is at noon", importance=2, room="compiler")
    del memory  # the embedded store has one owner at a time

    listed = botarena(var, "memory", "agents")
    assert "ada" in listed.stdout and "2 memories" in listed.stdout
    shown = botarena(
        var, "memory", "show", "ada", "--query", "what is the code word?", "--limit", "1"
    )
    assert shown.returncode == 0 and "bluebird" in shown.stdout and "lunch" not in shown.stdout
    missing = botarena(var, "memory", "show", "nobody")
    assert missing.returncode == 1 and "no memories" in missing.stderr


def test_a_worker_without_agent_tokens_says_how_to_make_them(tmp_path: Path) -> None:
    done = botarena(tmp_path / "var", "worker")
    assert done.returncode == 1, done.stderr
    assert "no agent tokens at" in done.stderr and "botarena token create" in done.stderr
    assert "Traceback" not in done.stderr and "database" not in done.stderr


@pytest.mark.parametrize("group", [[], ["bundle"], ["token"], ["proposals"], ["bundle", "install"]])
def test_help_is_plain_text_a_terminal_shows_whole(site: Path, group: list[str]) -> None:
    shown = botarena(site, *group, "--help")
    assert shown.returncode == 0 and shown.stdout.startswith("Usage: botarena")
    for leftover in ("<bool>", "``", "╭"):  # a metavar for flags, reST, rich's boxes
        assert leftover not in shown.stdout
