"""The embedded PostgreSQL with real hub processes on one var/: a SIGKILLed hub's server
is adopted by its successor and stopped when that one stops; hubs sharing a var/ stop it
only when the last one goes; a postmaster that dies under a hub is started again; the
server listens on its owner-only Unix socket alone, whatever the hub's environment says."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from botarena.server.embedded_pg import PORT, EmbeddedPostgres, Postmaster, read_postmaster
from tests.harness import eventually
from tests.services import HubProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def var() -> Iterator[Path]:
    """A site's var/, outside pytest's folders (pytest makes those private to root again
    whenever a session starts, which shuts PostgreSQL's own user out when the tests run as
    root); whatever PostgreSQL a failed test leaves there is killed after."""
    base = Path(tempfile.mkdtemp(prefix="ba-site-"))
    yield base / "var"
    left = read_postmaster(base / "var" / "pgdata")
    if left is not None and left.alive():
        os.kill(left.pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


def hub(var: Path, name: str) -> HubProcess:
    return HubProcess(var.parent / f"{name}.log", var_dir=str(var), log_level="info")


def running(var: Path) -> Postmaster:
    postmaster = read_postmaster(var / "pgdata")
    assert postmaster is not None and postmaster.alive(), "PostgreSQL runs"
    return postmaster


def gone(pid: int) -> bool:
    """The process has exited (an exited process its parent has not reaped is gone too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_a_successor_adopts_the_postgres_of_a_killed_hub_and_stops_it(var: Path) -> None:
    first = hub(var, "first").start()
    started = running(var)
    first.kill()
    assert running(var).pid == started.pid, "a SIGKILLed hub cannot stop its PostgreSQL"

    second = hub(var, "second").start()
    assert running(var).pid == started.pid, "the successor uses the server it found"
    assert second.stop() == 0
    assert gone(started.pid), "the successor stopped the server it adopted"
    assert read_postmaster(var / "pgdata") is None
    assert "embedded_postgres.adopted" in (var.parent / "second.log").read_text()


def test_hubs_sharing_a_var_stop_postgres_when_the_last_one_goes(var: Path) -> None:
    one, two = hub(var, "one").start(), hub(var, "two").start()
    shared = running(var)
    assert one.stop() == 0
    assert running(var).pid == shared.pid, "stopping one hub leaves the other its database"
    assert healthy(two.url)

    two.kill()  # the last user dies without stopping anything
    assert running(var).pid == shared.pid
    three = hub(var, "three").start()
    assert running(var).pid == shared.pid
    assert three.stop() == 0
    assert gone(shared.pid) and read_postmaster(var / "pgdata") is None


async def test_a_postmaster_that_dies_under_a_hub_is_started_again(var: Path) -> None:
    serving = hub(var, "serving").start()
    try:
        killed = running(var)
        os.kill(killed.pid, signal.SIGKILL)

        def replaced() -> bool:
            now = read_postmaster(var / "pgdata")
            return now is not None and now.pid != killed.pid and now.alive()

        await eventually(replaced, timeout=60, what="a new postmaster")
        await eventually(lambda: healthy(serving.url), timeout=30, what="the hub healthy again")
        restarted = running(var)
    finally:
        assert serving.stop() == 0
    assert gone(restarted.pid)


def test_postgres_listens_on_its_socket_only_whatever_the_environment_says(
    var: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPORT", "5999")  # PostgreSQL reads these when they reach it
    monkeypatch.setenv("PGDATA", str(var.parent / "elsewhere"))
    monkeypatch.setenv("SITE_SECRET", "not for PostgreSQL")
    serving = hub(var, "serving").start()
    try:
        postmaster = running(var)
        entries = Path(f"/proc/{postmaster.pid}/environ").read_bytes().split(b"\0")
        environ = dict(entry.decode().split("=", 1) for entry in entries if entry)
        assert "PGPORT" not in environ and "SITE_SECRET" not in environ, environ
        assert environ["PGDATA"] == str((var / "pgdata").resolve()), "pg_ctl's own, not ours"
        assert "PATH" in environ

        process = psutil.Process(postmaster.pid)
        assert process.net_connections(kind="inet") == [], "no TCP or UDP socket at all"
        assert postmaster.port == PORT
        sock = postmaster.socket_dir / f".s.PGSQL.{PORT}"
        mode = sock.stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o700, oct(mode)
        assert not (var.parent / "elsewhere").exists()
    finally:
        assert serving.stop() == 0


async def test_users_in_one_process_are_counted_apart(var: Path) -> None:
    first, second = EmbeddedPostgres(var / "pgdata"), EmbeddedPostgres(var / "pgdata")
    await first.start()
    await second.start()
    assert first.postmaster is not None and second.postmaster is not None
    assert first.postmaster.pid == second.postmaster.pid
    pid = first.postmaster.pid
    await first.stop()
    assert running(var).pid == pid, "the second user still holds it"
    await second.stop()
    assert gone(pid)
