"""Agent leases: which worker process runs each agent, so that no agent speaks from two.

A lease is one row per agent: the worker holding it, the hub session it holds it
through, and when it expires. :meth:`LeaseRepository.take` gives it to a worker when no
other worker holds it unexpired (a worker taking its own agent back, say after a hub
restart, takes it at once); the hub renews the leases of its live sessions
(:meth:`LeaseRepository.renew`) and releases a session's lease when it closes. A worker
refused an agent is remembered as waiting (:meth:`LeaseRepository.waiting`), so that the
workers holding agents count it among the live ones (:meth:`LeaseRepository.workers`)
and make room for it. Expiry uses the database's clock, the one clock every hub shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from botarena.server.auth import Principal
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import Database

_WAITING = """INSERT INTO lease_waiters (worker, seen_at) VALUES ($1, now())
              ON CONFLICT (worker) DO UPDATE SET seen_at = now()"""


@dataclass(frozen=True)
class Taken:
    """What :meth:`LeaseRepository.take` found: whether the lease is the worker's now,
    and who held it before (or holds it still, when refused) and until when."""

    held: bool
    holder: str | None
    expires_at: datetime | None


class LeaseRepository:
    """The agents' leases and the workers waiting for one."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def take(self, agent: Principal, worker: str, session: str, seconds: float) -> Taken:
        """Give ``agent``'s lease to ``worker`` through ``session`` for ``seconds``, unless
        another worker holds it unexpired; a lease changing worker is audited."""
        async with self.db.transaction() as conn:
            before = await conn.fetchrow(
                "SELECT worker, expires_at FROM agent_leases WHERE agent = $1 FOR UPDATE",
                agent.id,
            )
            row = await conn.fetchrow(
                """INSERT INTO agent_leases AS l (agent, worker, session, expires_at)
                   VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                   ON CONFLICT (agent) DO UPDATE
                       SET worker = excluded.worker, session = excluded.session,
                           expires_at = excluded.expires_at,
                           taken_at = CASE WHEN l.worker = excluded.worker
                                           THEN l.taken_at ELSE now() END
                       WHERE l.worker = excluded.worker OR l.expires_at <= now()
                   RETURNING expires_at""",
                agent.id,
                worker,
                session,
                seconds,
            )
            if row is None:  # held by another worker, unexpired (or inserted just now)
                holder = before or await conn.fetchrow(
                    "SELECT worker, expires_at FROM agent_leases WHERE agent = $1", agent.id
                )
                await conn.execute(_WAITING, worker)
                return Taken(False, holder["worker"], holder["expires_at"])
            previous = before["worker"] if before else None
            if previous != worker:
                detail = {"worker": worker, "from": previous}
                await self.audit.append(
                    "lease.taken", actor=agent.name, subject=agent.name, detail=detail, conn=conn
                )
            await conn.execute("DELETE FROM lease_waiters WHERE worker = $1", worker)
        return Taken(True, previous, row["expires_at"])

    async def renew(self, sessions: list[str], seconds: float) -> set[str]:
        """Extend the leases held through ``sessions`` by ``seconds``: the sessions whose
        lease was renewed (one missing lost it: it expired and another worker took it)."""
        if not sessions:
            return set()
        rows = await self.db.pool.fetch(
            """UPDATE agent_leases SET expires_at = now() + make_interval(secs => $2)
               WHERE session = ANY($1::text[]) RETURNING session""",
            sessions,
            seconds,
        )
        return {r["session"] for r in rows}

    async def release(self, agent: Principal, session: str) -> bool:
        """Give up the lease held through ``session`` (audited); False when it holds none."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "DELETE FROM agent_leases WHERE agent = $1 AND session = $2 RETURNING worker",
                agent.id,
                session,
            )
            if row is None:
                return False
            await self.audit.append(
                "lease.released",
                actor=agent.name,
                subject=agent.name,
                detail={"worker": row["worker"]},
                conn=conn,
            )
        return True

    async def waiting(self, worker: str) -> None:
        """Remember that ``worker`` waits for agents (it is live, though it holds none)."""
        await self.db.pool.execute(_WAITING, worker)

    async def workers(self, waiting_seconds: float) -> list[str]:
        """The live workers: those holding an unexpired lease, and those that waited for
        one in the last ``waiting_seconds``; the older waiters are forgotten."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM lease_waiters WHERE seen_at < now() - make_interval(secs => $1)",
                waiting_seconds,
            )
            rows = await conn.fetch(
                """SELECT worker FROM agent_leases WHERE expires_at > now()
                   UNION SELECT worker FROM lease_waiters ORDER BY worker"""
            )
        return [r["worker"] for r in rows]

    async def held(self) -> dict[str, str]:
        """Every unexpired lease: agent name -> worker."""
        rows = await self.db.pool.fetch(
            """SELECT p.name, l.worker FROM agent_leases l JOIN principals p ON p.id = l.agent
               WHERE l.expires_at > now() ORDER BY p.name"""
        )
        return {r["name"]: r["worker"] for r in rows}
