"""Reputation: what an agent's work has earned, and who may enter the external arena.

Reputation is computed from the record, never stored, so it cannot drift from what
happened: each approved proposal counts +10 (+5 when a human had to edit it first), each
rejection -5, and each reaction another principal gave one of the agent's messages +1
or -1 (a little, next to a review). Conflicts count nothing: the canon moved on, nobody
judged the work. The external arena is the help desk humans rely on, so an agent
admitted there may only enter while it ranks among the top ``fraction`` of the agents
admitted there: at least one seat, and agents tied with the last seat share it (on a
fresh site, where nobody has earned anything yet, all of them enter).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

EXTERNAL = "external"
APPROVED, EDITED, REJECTED, REACTION = 10, 5, -5, 1


@dataclass(frozen=True)
class Standing:
    agent: str
    reputation: int
    approved: int  # approved as proposed
    edited: int  # approved after a human edit
    rejected: int
    conflicts: int
    reactions_up: int
    reactions_down: int
    candidate: bool  # admitted to the external arena by the operator
    external: bool = False  # may enter it now

    @property
    def approval_ratio(self) -> float | None:
        """Approved (edited or not) among reviewed proposals; None before any review."""
        reviewed = self.approved + self.edited + self.rejected + self.conflicts
        return (self.approved + self.edited) / reviewed if reviewed else None

    def public(self) -> dict[str, Any]:
        return {**asdict(self), "approval_ratio": self.approval_ratio}


_STANDINGS = """
SELECT p.name AS agent,
       coalesce(pr.approved, 0) AS approved, coalesce(pr.edited, 0) AS edited,
       coalesce(pr.rejected, 0) AS rejected, coalesce(pr.conflicts, 0) AS conflicts,
       coalesce(rx.up, 0) AS reactions_up, coalesce(rx.down, 0) AS reactions_down,
       EXISTS (SELECT 1 FROM room_members rm
               WHERE rm.room = $1 AND rm.principal_id = p.id) AS candidate
FROM principals p
LEFT JOIN (SELECT author_id,
                  count(*) FILTER (WHERE status = 'approved' AND NOT edited) AS approved,
                  count(*) FILTER (WHERE status = 'approved' AND edited) AS edited,
                  count(*) FILTER (WHERE status = 'rejected') AS rejected,
                  count(*) FILTER (WHERE status = 'conflict') AS conflicts
           FROM proposals GROUP BY author_id) pr ON pr.author_id = p.id
LEFT JOIN (SELECT m.author_id,
                  count(*) FILTER (WHERE r.value = 1) AS up,
                  count(*) FILTER (WHERE r.value = -1) AS down
           FROM reactions r JOIN messages m ON m.id = r.message_id
           WHERE r.principal_id <> m.author_id GROUP BY m.author_id) rx
       ON rx.author_id = p.id
WHERE p.role = 'agent'
"""


def _score(row: asyncpg.Record) -> int:
    return (
        APPROVED * row["approved"]
        + EDITED * row["edited"]
        + REJECTED * row["rejected"]
        + REACTION * (row["reactions_up"] - row["reactions_down"])
    )


def external_cutoff(scores: list[int], fraction: float) -> int | None:
    """The reputation an external candidate needs, given every candidate's score."""
    if not scores:
        return None
    seats = max(1, math.ceil(fraction * len(scores)))
    return sorted(scores, reverse=True)[seats - 1]


async def standings(pool: asyncpg.Pool, fraction: float) -> list[Standing]:
    """Every agent's standing, best first (ties by name)."""
    rows = await pool.fetch(_STANDINGS, EXTERNAL)
    scores = {r["agent"]: _score(r) for r in rows}
    cutoff = external_cutoff([scores[r["agent"]] for r in rows if r["candidate"]], fraction)
    found = [
        Standing(
            **dict(r),
            reputation=scores[r["agent"]],
            external=r["candidate"] and cutoff is not None and scores[r["agent"]] >= cutoff,
        )
        for r in rows
    ]
    return sorted(found, key=lambda s: (-s.reputation, s.agent))


async def external_refusal(pool: asyncpg.Pool, agent: str, fraction: float) -> str | None:
    """Why ``agent`` may not enter the external arena now, or None when it may."""
    board = await standings(pool, fraction)
    candidates = [s for s in board if s.candidate]
    mine = next((s for s in candidates if s.agent == agent), None)
    if mine is None or mine.external:
        return None  # not a candidate: room membership decides, as for any room
    seats = max(1, math.ceil(fraction * len(candidates)))
    needed = min(s.reputation for s in candidates if s.external)
    rank = 1 + sum(s.reputation > mine.reputation for s in candidates)
    return (
        f"{agent} ranks {rank} of {len(candidates)} help-desk agents with reputation "
        f"{mine.reputation}; {EXTERNAL} admits the top {fraction:.0%} ({seats} seat"
        f"{'s' if seats != 1 else ''}, reputation {needed} or more)"
    )
