"""What tests share besides fixtures: waiting for asynchronous delivery, signing keys,
a fresh database on the session's PostgreSQL, test settings, :class:`Arena`, a
running hub with helpers to make principals and connected clients, and
:class:`Faults`, database faults injected under its messages. Tests import it;
``conftest.py`` holds only fixtures."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
from asyncpg import exceptions as pg

from botarena.agents import llm as llm_calls
from botarena.server.app import RunningHub
from botarena.server.client import HubClient
from botarena.server.protocol import Message, Role
from botarena.server.settings import Settings
from botarena.server.store import Store
from botarena.server.store.database import Database


@contextmanager
def llm_requests() -> Iterator[list[dict]]:
    """The bodies of the chat requests this process's LLM calls send while inside, as
    sent (messages, schema, token limit, sampling), oldest first."""
    sent: list[dict] = []

    def record(request: httpx.Request) -> None:
        if request.url.path.endswith(("/chat/completions", "/api/chat")):
            sent.append(json.loads(request.content))

    client = llm_calls._http()  # the one client of every LLM call of the process
    before = client.event_hooks
    client.event_hooks = {**before, "request": [*before["request"], record]}
    try:
        yield sent
    finally:
        client.event_hooks = before


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``predicate()`` holds; fail the test with ``what`` when it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def stays(predicate: Callable[[], bool], duration: float = 0.5) -> bool:
    """True when ``predicate()`` holds throughout ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        await asyncio.sleep(0.02)
    return predicate()


async def answer_ticket(
    client: HubClient, path: str, content: str, title: str = "Answer"
) -> dict[str, Any]:
    """Propose ``content`` as the answer on a ticket's canon ``path`` (``tickets/<id>``),
    through the raw ``proposal.create``: its acknowledgement's data."""
    return await client.call(
        "proposal.create",
        {
            "arena": "external",
            "kind": "ticket_answer",
            "path": path,
            "base_version": 0,
            "title": title,
            "content": content,
        },
    )


def make_key(home: Path, name: str) -> str:
    """A new ed25519 signing key in GnuPG home ``home``; its fingerprint."""
    subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            f"{name} <{name}@site.local>",
            "ed25519",
            "sign",
            "1y",
        ],
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--with-colons",
            "--list-secret-keys",
            f"{name}@site.local",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))


_db_numbers = itertools.count(1)


async def create_database(pg_admin_url: str) -> str:
    """A new, empty database on the session's server; its URL."""
    name = f"t{os.getpid()}_{next(_db_numbers)}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, query = pg_admin_url.split("?", 1)
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"


SCREENING_DIR = Path(tempfile.gettempdir()) / "botarena-tests-screening"
"""The content filter's compiled model, shared by the suite's hubs (made once per wheel)."""


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": tmp_path / "var",
        "screening_dir": SCREENING_DIR,
        "database_url": database_url,
        "port": 0,
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Arena:
    """A running hub plus helpers to make principals and connected clients."""

    running: RunningHub
    context: AbstractAsyncContextManager[RunningHub]
    clients: list[HubClient] = field(default_factory=list)
    stopped: bool = False

    async def stop(self) -> None:
        """Stop the hub (clients stay, and try to reconnect)."""
        if not self.stopped:
            self.stopped = True
            await self.context.__aexit__(None, None, None)

    @property
    def store(self) -> Store:
        return self.running.hub.store

    @property
    def url(self) -> str:
        return self.running.url

    async def fingerprint(self, *, ignore: tuple[str, ...] = ()) -> dict[str, str]:
        """A digest of every row of every table (but ``ignore``): equal digests mean an
        unchanged store."""
        async with self.store.pool.acquire() as conn:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
            digest = {}
            for row in tables:
                name = row["tablename"]
                if name in ignore:
                    continue
                digest[name] = await conn.fetchval(
                    f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                    f'FROM "{name}" t'
                )
            return digest

    async def token(self, name: str, role: Role | str = Role.AGENT, **kwargs: object) -> str:
        if "arenas" not in kwargs and Role(role) is Role.AGENT:
            kwargs["arenas"] = ["compiler", "creative", "education", "operations"]
        _principal, token = await self.store.principals.issue_token(name, Role(role), **kwargs)  # type: ignore[arg-type]
        return token

    async def client(
        self,
        name: str,
        role: Role | str = Role.AGENT,
        *,
        inbox: list[Message] | None = None,
        **kwargs: object,
    ) -> HubClient:
        token = await self.token(name, role, **kwargs)
        return await self.connect(token, inbox=inbox)

    async def connect(self, token: str, *, inbox: list[Message] | None = None) -> HubClient:
        client = HubClient(self.url, token, on_message=inbox.append if inbox is not None else None)
        await client.connect()
        self.clients.append(client)
        return client


ArenaFactory = Callable[..., Awaitable[Arena]]


class Faults:
    """What the next ``post_message`` does wrong (one message's or a batch's), and
    whether the database is away."""

    def __init__(self) -> None:
        self.next_post: str | None = None  # "before": fails unsent; "after": commits, answer lost
        self.away_after = False  # the database goes away with the lost answer
        self.away = False
        self.hold: asyncio.Event | None = None  # writes wait for it (after taking their fault)
        self.held = 0  # writes waiting for ``hold``


class _Connection:
    def __init__(self, conn: Any, faults: Faults) -> None:
        self.conn = conn
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._post(query, self.conn.fetchrow(query, *args))

    async def fetch(self, query: str, *args: Any) -> Any:
        return await self._post(query, self.conn.fetch(query, *args))

    async def _post(self, query: str, call: Coroutine[Any, Any, Any]) -> Any:
        fault = self.faults.next_post if "post_message" in query else None
        self.faults.next_post = None if fault else self.faults.next_post
        if self.faults.hold is not None and "post_message" in query:
            self.faults.held += 1
            await self.faults.hold.wait()
            self.faults.held -= 1
        if fault is None:
            return await call
        if fault == "before":
            call.close()  # never sent
            raise pg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        await call  # committed: only the answer is lost
        self.faults.away = self.faults.away_after
        raise pg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        )


class _Acquire:
    def __init__(self, pool: FaultyPool) -> None:
        self.pool = pool
        self.real: Any = None

    def __await__(self) -> Any:
        return self._connection().__await__()

    async def _connection(self) -> _Connection:
        self.pool.check()
        return _Connection(await self.pool.pool.acquire(), self.pool.faults)

    async def __aenter__(self) -> Any:
        self.pool.check()
        self.real = self.pool.pool.acquire()
        return await self.real.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self.real.__aexit__(*exc)


class FaultyPool:
    """The store's pool, failing as :class:`Faults` says."""

    def __init__(self, pool: asyncpg.Pool, faults: Faults) -> None:
        self.pool = pool
        self.faults = faults

    def check(self) -> None:
        if self.faults.away:
            raise ConnectionRefusedError(111, "Connection refused")

    def __getattr__(self, name: str) -> Any:
        self.check()
        return getattr(self.pool, name)

    def acquire(self) -> _Acquire:
        return _Acquire(self)

    async def release(self, conn: Any) -> None:
        await self.pool.release(conn.conn if isinstance(conn, _Connection) else conn)


def fault_messages(arena: Arena) -> Faults:
    """Faults for the messages of ``arena``'s store (the rest of the store is sound); a
    message's write (``fetchrow``) and a batch's (``fetch``) alike."""
    faults = Faults()
    arena.store.messages.db = Database(FaultyPool(arena.store.pool, faults))  # type: ignore[arg-type]
    return faults


class RawSocket:
    """A websocket writing Engine.IO/Socket.IO frames by hand, as a hostile client would:
    ``connect`` sends a CONNECT with any auth, ``call`` any event frame, ``frame`` any text."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        self._acks = itertools.count(1)
        self.pushes: list[tuple[str, object]] = []

    async def __aenter__(self) -> RawSocket:
        self._http = aiohttp.ClientSession()
        self.ws = await self._http.ws_connect(self.url)
        opened = await self.ws.receive_str(timeout=5)
        assert opened.startswith("0"), opened
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.ws.close()
        await self._http.close()

    async def frame(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive(self, prefix: str, timeout: float = 5) -> str:
        """The next frame that starts with ``prefix``, answering pings and keeping pushes."""
        while True:
            text = await self.ws.receive_str(timeout=timeout)
            if text == "2":
                await self.ws.send_str("3")
            elif text.startswith("42") and prefix != "42":
                name, *args = json.loads(text[2:])
                self.pushes.append((name, args[0] if args else None))
            elif text.startswith(prefix):
                return text[len(prefix) :]

    async def connect(self, auth: object | str) -> tuple[bool, dict]:
        """Send a CONNECT (``auth`` as JSON, or a raw string); (accepted, its body)."""
        await self.frame("40" + (auth if isinstance(auth, str) else json.dumps(auth)))
        while True:
            text = await self.receive("4")
            if text[:1] in "04":
                return text[0] == "0", json.loads(text[1:])

    async def call(self, payload: str) -> dict:
        """Send ``42<id><payload>`` (``payload``: the raw JSON array) and return its ack."""
        ack_id = next(self._acks)
        await self.frame(f"42{ack_id}{payload}")
        while True:
            text = await self.receive("43")
            if text.startswith(str(ack_id)) and text[len(str(ack_id))] == "[":
                return json.loads(text[len(str(ack_id)) :])[0]
