"""The record reputation is computed from: each agent's reviewed proposals and the
reactions other principals gave its messages, and whether it is admitted to the external
arena; the rules that turn it into standings are :mod:`botarena.server.reputation`.
The statuses and the role the record counts are the enums' values, passed as parameters."""

from __future__ import annotations

from typing import Any

from botarena.arenas.names import EXTERNAL, ProposalStatus
from botarena.server.protocol import Role
from botarena.server.reputation import Standing, rank, refusal
from botarena.server.store.database import Database

_RECORD = """
SELECT p.name AS agent,
       coalesce(pr.approved, 0) AS approved, coalesce(pr.edited, 0) AS edited,
       coalesce(pr.rejected, 0) AS rejected, coalesce(pr.conflicts, 0) AS conflicts,
       coalesce(rx.up, 0) AS reactions_up, coalesce(rx.down, 0) AS reactions_down,
       EXISTS (SELECT 1 FROM room_members rm
               WHERE rm.room = $1 AND rm.principal_id = p.id) AS candidate,
       (SELECT version FROM standings_version) AS version
FROM principals p
LEFT JOIN (SELECT author_id,
                  count(*) FILTER (WHERE status = $2 AND NOT edited) AS approved,
                  count(*) FILTER (WHERE status = $2 AND edited) AS edited,
                  count(*) FILTER (WHERE status = $3) AS rejected,
                  count(*) FILTER (WHERE status = $4) AS conflicts
           FROM proposals GROUP BY author_id) pr ON pr.author_id = p.id
LEFT JOIN (SELECT m.author_id,
                  count(*) FILTER (WHERE r.value = 1) AS up,
                  count(*) FILTER (WHERE r.value = -1) AS down
           FROM reactions r JOIN messages m ON m.id = r.message_id
           WHERE r.principal_id <> m.author_id GROUP BY m.author_id) rx
       ON rx.author_id = p.id
WHERE p.role = $5
"""


class ReputationRepository:
    """Standings computed from the record, never stored; kept in this process for as long
    as the record's version (``standings_version``, moved at the commit of every change
    to it, whoever makes it) is the one they were computed at."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._kept: dict[tuple[float, int], tuple[int, list[Standing]]] = {}

    async def standings(self, fraction: float, min_seats: int) -> list[Standing]:
        """Every agent's standing, best first (ties by name); the external arena seats the
        top ``fraction`` of its candidates, at least ``min_seats``."""
        kept = self._kept.get((fraction, min_seats))
        if kept is not None:
            version = await self.db.pool.fetchval("SELECT version FROM standings_version")
            if version == kept[0]:
                return list(kept[1])
        rows = await self.db.pool.fetch(
            _RECORD,
            EXTERNAL,
            ProposalStatus.APPROVED.value,
            ProposalStatus.REJECTED.value,
            ProposalStatus.CONFLICT.value,
            Role.AGENT.value,
        )
        records: list[dict[str, Any]] = [dict(r) for r in rows]
        versions = {r.pop("version") for r in records}
        board = rank(records, fraction, min_seats)
        if len(versions) == 1:  # the version the rows were read at (none: no agent yet)
            self._kept[fraction, min_seats] = (versions.pop(), board)
        return list(board)

    async def external_refusal(self, agent: str, fraction: float, min_seats: int) -> str | None:
        """Why ``agent`` may not enter the external arena now, or None when it may."""
        return refusal(await self.standings(fraction, min_seats), agent, fraction, min_seats)
