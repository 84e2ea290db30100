"""The store's facade: the one object that owns the database, made of repositories.

:meth:`Store.open` creates the connection pool and applies the migrations. The
repositories share one :class:`~botarena.server.store.database.Database`, whose
``transaction(conn)`` starts a transaction or joins the caller's, so a step spanning
several repositories (a post and its audit entry) commits as one. Each area of the
hub's durable state is one repository, reached as an attribute: ``store.principals``,
``store.rooms``, ``store.messages``, ``store.agents``, ``store.moderation``, ``store.proposals``,
``store.canon``, ``store.tickets``, ``store.audit``, ``store.reputation``,
``store.artifacts`` and ``store.queue`` (the moderation queue).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
import structlog

from botarena.server.auth import Principal
from botarena.server.embedded_pg import database
from botarena.server.protocol import Role
from botarena.server.settings import DatabaseSettings
from botarena.server.store import schema
from botarena.server.store.agents import AgentStateRepository
from botarena.server.store.artifacts import ArtifactRepository
from botarena.server.store.audit import AuditLog
from botarena.server.store.canon import CanonRepository
from botarena.server.store.database import Database
from botarena.server.store.leases import LeaseRepository
from botarena.server.store.messages import MessageRepository
from botarena.server.store.moderation import ModerationRepository
from botarena.server.store.principals import PrincipalRepository
from botarena.server.store.proposals import ProposalRepository
from botarena.server.store.queue import ModerationQueue
from botarena.server.store.reputation import ReputationRepository
from botarena.server.store.rooms import RoomRepository
from botarena.server.store.tickets import TicketRepository

log = structlog.get_logger(__name__)

CLOSE_SECONDS = 10.0
"""How long closing the store waits for its connections to come back."""


class Store:
    """Durable state of the hub. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, pool: asyncpg.Pool, url: str, settle_seconds: float = 5.0) -> None:
        self.pool = pool
        self.url = url
        self.schema_version = 0
        self._db = db = Database(pool, url)
        self.audit = AuditLog(db)
        self.moderation = ModerationRepository(db, self.audit)
        self.principals = PrincipalRepository(db, self.audit, self.moderation)
        self.rooms = RoomRepository(db, self.audit, self.moderation)
        self.queue = ModerationQueue(db, self.audit)
        self.messages = MessageRepository(
            db, self.audit, self.moderation, self.queue, settle_seconds
        )
        self.agents = AgentStateRepository(db)
        self.leases = LeaseRepository(db, self.audit)
        self.canon = CanonRepository(db)
        self.tickets = TicketRepository(db, self.audit)
        self.proposals = ProposalRepository(db, self.audit, self.rooms, self.canon, self.tickets)
        self.reputation = ReputationRepository(db)
        self.artifacts = ArtifactRepository(db, self.audit)

    @classmethod
    async def open(cls, url: str, pool_size: int = 10, settle_seconds: float = 5.0) -> Store:
        """Connect to ``url`` and bring its schema up to date (``settle_seconds``: see
        :class:`~botarena.server.store.messages.MessageRepository`)."""
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        store = cls(pool, url, settle_seconds)
        async with pool.acquire() as conn:
            store.schema_version = await schema.migrate(conn)
        return store

    async def close(self) -> None:
        """Close the pool once its connections are back, ``CLOSE_SECONDS`` at most; then
        the ones still out (a query the database never answers) are cut."""
        try:
            await asyncio.wait_for(self.pool.close(), CLOSE_SECONDS)
        except TimeoutError:
            log.warning("store.close_forced", seconds=CLOSE_SECONDS)
            self.pool.terminate()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # The two set-up steps a site's scripts take most (the hub benchmark's launcher in
    # the harness calls them under these names): tokens for new principals, and groups.

    async def issue_token(
        self,
        name: str,
        role: Role,
        *,
        arenas: Sequence[str] = (),
        may_create_groups: bool = False,
        ai_moderator: bool = False,
    ) -> tuple[Principal, str]:
        """A new token for ``name`` (created if new); see ``principals.issue_token``."""
        return await self.principals.issue_token(
            name,
            role,
            arenas=arenas,
            may_create_groups=may_create_groups,
            ai_moderator=ai_moderator,
        )

    async def create_group(
        self, room: str, title: str | None, creator: Principal, members: Sequence[Principal]
    ) -> None:
        """A new group room; see ``rooms.create_group``."""
        await self.rooms.create_group(room, title, creator, members)


@asynccontextmanager
async def open_store(settings: DatabaseSettings) -> AsyncIterator[Store]:
    """The store on the configured database, or on the embedded one started for it."""
    async with database(settings) as url:
        store = await Store.open(
            url, pool_size=settings.db_pool_size, settle_seconds=settings.db_settle_seconds
        )
        try:
            yield store
        finally:
            await store.close()
