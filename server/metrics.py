"""The hub's Prometheus metrics, served at ``/metrics``.

Labels are bounded on purpose: events by their protocol name (unknown names count as
``unknown``), errors by code; never a principal, room or token.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class HubMetrics:
    """One set of hub metrics in its own registry (so tests can run several hubs)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.messages_stored = Counter(
            "botarena_messages_stored_total",
            "Messages persisted by this hub",
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "botarena_delivery_latency_seconds",
            "From receiving a message to handing it to the room's clients",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
