"""Agent states: what each agent last reported (its state, trait drift, summary, the
time its turns spend in the LLM, the LLM backend and memory it uses, its worker and
that worker's pool of backends), one row per
agent, for the console and /metrics."""

from __future__ import annotations

import json

from botarena.server.auth import Principal
from botarena.server.protocol import AgentState, AgentStateKind, BackendState
from botarena.server.store.database import Database


class AgentStateRepository:
    """The last state every agent reported."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def report(
        self,
        agent: Principal,
        state: str,
        detail: str,
        drift: dict[str, float],
        *,
        summary: str | None = None,
        llm_seconds: float | None = None,
        backend: str | None = None,
        memory: str | None = None,
        pool: list[BackendState] | None = None,
        worker: str | None = None,
    ) -> AgentState:
        """Store what an agent reports; a summary, LLM time, backend, memory, pool or
        worker left out stays as it was."""
        row = await self.db.pool.fetchrow(
            """INSERT INTO agent_states AS s (principal_id, state, detail, drift, summary,
                                              llm_seconds, backend, memory, pool, worker,
                                              updated_at)
               VALUES ($1, $2, $3, $4, coalesce($5, ''), $6, coalesce($7, ''),
                       coalesce($8, ''), coalesce($9::jsonb, '[]'), coalesce($10, ''), now())
               ON CONFLICT (principal_id) DO UPDATE SET state = $2, detail = $3, drift = $4,
                   summary = coalesce($5, s.summary), llm_seconds = coalesce($6, s.llm_seconds),
                   backend = coalesce($7, s.backend), memory = coalesce($8, s.memory),
                   pool = coalesce($9::jsonb, s.pool), worker = coalesce($10, s.worker),
                   updated_at = now()
               RETURNING summary, llm_seconds, backend, memory, pool, worker, updated_at""",
            agent.id,
            state,
            detail,
            json.dumps(drift),
            summary,
            llm_seconds,
            backend,
            memory,
            None if pool is None else json.dumps([b.model_dump() for b in pool]),
            worker,
        )
        return AgentState(
            agent=agent.name,
            state=AgentStateKind(state),
            detail=detail,
            drift=drift,
            **{**dict(row), "pool": json.loads(row["pool"])},
        )

    async def states(self) -> list[AgentState]:
        """Every agent's last report, by agent name."""
        rows = await self.db.pool.fetch(
            """SELECT p.name AS agent, s.state, s.detail, s.drift, s.summary, s.llm_seconds,
                      s.backend, s.memory, s.pool, s.worker, s.updated_at
               FROM agent_states s JOIN principals p ON p.id = s.principal_id ORDER BY p.name"""
        )
        return [
            AgentState(
                **{**dict(r), "drift": json.loads(r["drift"]), "pool": json.loads(r["pool"])}
            )
            for r in rows
        ]
