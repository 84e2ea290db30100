"""Assembling and running the hub: database, store, Socket.IO and HTTP in one aiohttp app.

:func:`running_hub` is an async context manager that brings everything up (the
embedded PostgreSQL when no database URL is set, migrations, the control listener,
the HTTP limits of :mod:`~botarena.server.http_guard`, the listening socket) and tears
it down in reverse; :func:`serve` runs it until SIGINT or SIGTERM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog
from aiohttp import web

from botarena.server.endpoints import routes
from botarena.server.http_guard import ENGINEIO_PATH, HttpGuard, unauthenticated_sessions
from botarena.server.hub import Hub
from botarena.server.metrics import HubMetrics
from botarena.server.settings import HubSettings
from botarena.server.signals import stop_requested
from botarena.server.store import open_store

log = structlog.get_logger(__name__)


@dataclass
class RunningHub:
    hub: Hub
    url: str


@asynccontextmanager
async def running_hub(settings: HubSettings) -> AsyncIterator[RunningHub]:
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings))
        hub = Hub(settings, store, HubMetrics())
        await hub.start()
        stack.push_async_callback(hub.stop)
        guard = HttpGuard(
            settings,
            hub.metrics,
            unauthenticated_sessions(
                hub.sio.environ,
                lambda eio_sid: hub.sio.manager.sid_from_eio_sid(eio_sid, "/"),
                hub.sessions,
            ),
        )
        app = web.Application(
            client_max_size=settings.max_payload_bytes, middlewares=[guard.middleware]
        )
        hub.sio.attach(app, socketio_path=ENGINEIO_PATH.strip("/"))
        app.add_routes(routes(hub))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5, **guard.server_options())
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        stack.push_async_callback(hub.drop_connections)  # runs before runner.cleanup
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://{settings.host}:{port}"
        log.info(
            "hub.listening",
            url=url,
            schema_version=store.schema_version,
            scale_out="redis" if settings.redis_url else "in-process",
        )
        yield RunningHub(hub, url)
        log.info("hub.stopping")


async def serve(
    settings: HubSettings, on_ready: Callable[[RunningHub], None] | None = None
) -> None:
    """Run the hub until SIGINT or SIGTERM."""
    stop = stop_requested()
    async with running_hub(settings) as running:
        if on_ready is not None:
            on_ready(running)
        await stop.wait()
