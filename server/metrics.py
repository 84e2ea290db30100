"""The hub's Prometheus metrics, served at ``/metrics``.

Labels are bounded on purpose: events by their protocol name (unknown names count as
``unknown``), errors by code, proposals by arena and status, agents by name (the site's
personas, a handful), LLM backends by their configured name; never a human principal or
a token; content filter verdicts by category, arena and action. The proposal, ticket,
agent, backend and moderation queue gauges are read from the database when ``/metrics``
is scraped.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from botarena.arenas.names import ProposalStatus
from botarena.server.protocol import AgentState, BackendState
from botarena.server.reputation import Standing

BACKEND_FIELDS = {
    "up": "1 when it is up and not backing off",
    "busy": "requests it is answering",
    "capacity": "requests it answers at once",
    "queue": "turns waiting for a slot of the pool",
    "tokens_per_second": "tokens it generates per second",
    "errors": "calls that failed or timed out",
    "served": "calls it answered",
}
"""The per-backend gauges, labelled by the backend's configured name and the worker that
reports it (each worker has its own view of a shared backend: sum them by backend)."""


class HubMetrics:
    """One set of hub metrics in its own registry (so tests can run several hubs)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_start_time_seconds: uptime
        self.connections = Gauge(
            "botarena_connections",
            "Socket.IO clients connected to this hub",
            registry=self.registry,
        )
        self.connects_refused = Counter(
            "botarena_connects_refused_total",
            "Connections refused, by reason code",
            ["code"],
            registry=self.registry,
        )
        self.http_refused = Counter(
            "botarena_http_refused_total",
            "HTTP requests refused before the hub read them, by reason (handshake_rate,"
            " unauthenticated, too_large, length_required, body_timeout)",
            ["reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "botarena_events_total",
            "Client events received, by event",
            ["event"],
            registry=self.registry,
        )
        self.errors = Counter(
            "botarena_event_errors_total",
            "Client events answered with an error",
            ["event", "code"],
            registry=self.registry,
        )
        self.tickets_overdue = Counter(
            "botarena_tickets_overdue_total",
            "Tickets announced to moderators for waiting too long without an answer",
            registry=self.registry,
        )
        self.tickets_escalated = Counter(
            "botarena_tickets_escalated_total",
            "Tickets the agents handed to the humans because they could not answer them",
            registry=self.registry,
        )
        self.messages_stored = Counter(
            "botarena_messages_stored_total",
            "Messages persisted by this hub",
            registry=self.registry,
        )
        self.verdicts = Counter(
            "botarena_screening_verdicts_total",
            "Content filter verdicts, by category, room (an arena, or dm / group) and action",
            ["category", "room", "action"],
            registry=self.registry,
        )
        self.queue_items = Gauge(
            "botarena_moderation_queue_items",
            "Open moderation queue items, by room and kind (flagged, held)",
            ["room", "kind"],
            registry=self.registry,
        )
        self.queue_age = Gauge(
            "botarena_moderation_queue_oldest_seconds",
            "How long the oldest open queue item has waited, by room and kind",
            ["room", "kind"],
            registry=self.registry,
        )
        self.ai_moderator_actions = Counter(
            "botarena_ai_moderator_actions_total",
            "Actions AI moderators took (flag, hold, mute) and were refused (refused)",
            ["action"],
            registry=self.registry,
        )
        self.drifts = Counter(
            "botarena_agent_drifts_total",
            "Agents' reports that a trait passed its persona's drift threshold",
            ["agent"],
            registry=self.registry,
        )
        self.overrules = Counter(
            "botarena_moderation_overrules_total",
            "AI moderators' flags cleared, holds released and mutes lifted by a human moderator",
            registry=self.registry,
        )
        self.proposals = Gauge(
            "botarena_proposals",
            "Proposals by arena and status",
            ["arena", "status"],
            registry=self.registry,
        )
        self.approval_ratio = Gauge(
            "botarena_proposal_approval_ratio",
            "Approved among reviewed proposals (approved, rejected, conflict), by arena",
            ["arena"],
            registry=self.registry,
        )
        self.tickets = Gauge(
            "botarena_tickets",
            "Tickets by status",
            ["status"],
            registry=self.registry,
        )
        self.human_intervention = Gauge(
            "botarena_ticket_human_intervention_ratio",
            "Closed tickets a human had to step in for (an answer a human wrote or edited, or a "
            "ticket the agents escalated), among closed tickets",
            registry=self.registry,
        )
        self.agent_reputation = Gauge(
            "botarena_agent_reputation",
            "An agent's reputation (reviews of its proposals, reactions to its messages)",
            ["agent"],
            registry=self.registry,
        )
        self.agent_approval_ratio = Gauge(
            "botarena_agent_approval_ratio",
            "Approved among an agent's reviewed proposals (agents with a review)",
            ["agent"],
            registry=self.registry,
        )
        self.agents = Gauge(
            "botarena_agents",
            "Agents by their last reported state (offline, idle, thinking, error...)",
            ["state"],
            registry=self.registry,
        )
        self.agent_llm_seconds = Gauge(
            "botarena_agent_llm_seconds",
            "Seconds an agent's last turn spent in the LLM",
            ["agent"],
            registry=self.registry,
        )
        self.backend_gauges = {
            field: Gauge(
                f"botarena_llm_backend_{field}",
                f"An LLM backend of a worker's pool: {text} (as last reported)",
                ["backend", "worker"],
                registry=self.registry,
            )
            for field, text in BACKEND_FIELDS.items()
        }
        self.worker_agents = Gauge(
            "botarena_worker_agents",
            "Agents a worker process holds the lease of",
            ["worker"],
            registry=self.registry,
        )
        self.audit_chain_ok = Gauge(
            "botarena_audit_chain_ok",
            "1 when the audit chain verified at the last check, 0 when it did not",
            registry=self.registry,
        )
        self.audit_entries = Gauge(
            "botarena_audit_entries",
            "Entries in the audit chain at the last check",
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "botarena_delivery_latency_seconds",
            "From receiving a message to handing it to the room's clients",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )

    def set_work(self, proposals: list[tuple[str, str, int]], tickets: dict[str, int]) -> None:
        """Refresh the proposal and ticket gauges from the store's counts: (arena,
        status, proposals) and the open, closed and human-closed tickets."""
        reviewed: dict[str, int] = {}
        approved: dict[str, int] = {}
        self.proposals.clear()
        for arena, status, count in proposals:
            self.proposals.labels(arena, status).set(count)
            if status != ProposalStatus.PENDING:
                reviewed[arena] = reviewed.get(arena, 0) + count
            if status == ProposalStatus.APPROVED:
                approved[arena] = count
        for arena, count in reviewed.items():
            self.approval_ratio.labels(arena).set(approved.get(arena, 0) / count)
        self.tickets.labels("open").set(tickets["open"])
        self.tickets.labels("escalated").set(tickets["escalated"])
        self.tickets.labels("closed").set(tickets["closed"])
        self.human_intervention.set(
            tickets["human"] / tickets["closed"] if tickets["closed"] else 0.0
        )

    def set_queue(self, waiting: list[tuple[str, str, int, datetime | None]]) -> None:
        """Refresh the moderation queue gauges: (room, kind, open items, oldest's time)."""
        self.queue_items.clear()
        self.queue_age.clear()
        now = datetime.now(UTC)
        for room, kind, count, oldest in waiting:
            self.queue_items.labels(room, kind).set(count)
            self.queue_age.labels(room, kind).set((now - oldest).total_seconds() if oldest else 0)

    def set_standings(self, board: list[Standing]) -> None:
        """Refresh the per-agent gauges from the store's reputation standings."""
        self.agent_reputation.clear()
        self.agent_approval_ratio.clear()
        for standing in board:
            self.agent_reputation.labels(standing.agent).set(standing.reputation)
            if standing.approval_ratio is not None:
                self.agent_approval_ratio.labels(standing.agent).set(standing.approval_ratio)

    def set_agent_states(self, states: list[AgentState]) -> None:
        """Refresh the agent state counts, LLM times and LLM backends from the agents'
        last reports (each backend of each worker as the newest report gives it)."""
        self.agents.clear()
        self.agent_llm_seconds.clear()
        counts: dict[str, int] = {}
        for state in states:
            counts[state.state.value] = counts.get(state.state.value, 0) + 1
            if state.llm_seconds is not None:
                self.agent_llm_seconds.labels(state.agent).set(state.llm_seconds)
        for kind, count in counts.items():
            self.agents.labels(kind).set(count)
        for gauge in self.backend_gauges.values():
            gauge.clear()
        newest: dict[tuple[str, str], tuple[float, BackendState]] = {}
        for state in states:
            for backend in state.pool:
                key = (backend.name, state.worker)
                seen = newest.get(key)
                if seen is None or seen[0] < state.updated_at.timestamp():
                    newest[key] = (state.updated_at.timestamp(), backend)
        for (name, worker), (_, backend) in newest.items():
            for field, gauge in self.backend_gauges.items():
                gauge.labels(name, worker).set(float(getattr(backend, field)))

    def set_leases(self, held: dict[str, str]) -> None:
        """Refresh the agents each worker holds from the leases (agent -> worker)."""
        self.worker_agents.clear()
        counts: dict[str, int] = {}
        for worker in held.values():
            counts[worker] = counts.get(worker, 0) + 1
        for worker, count in counts.items():
            self.worker_agents.labels(worker).set(count)
