"""The Health tab: the connection to the hub with what it holds (rooms, agents, pending
proposals), messages per 10 seconds and LLM seconds per agent turn as sparklines, and
each dependency of the hub as ``/healthz`` reports it. It has no keys of its own and is
drawn again when the health or the connection changes (the app marks the health every
second so the message rate moves on).
"""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline, Static

from botarena.arenas.names import ProposalStatus
from botarena.tui.pane import ConsolePane


class HealthPane(ConsolePane):
    """The hub's connection, traffic and dependencies."""

    DEFAULT_CSS = """
    HealthPane {
        #rate, #llm { height: 4; margin: 0 1 1 1; }
    }
    """
    TAB_ID = "health"
    TAB_TITLE = "5 Health"
    DRAWS_FROM = frozenset({"health", "connection"})

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="health-connection")
            yield Label("messages per 10 s (last 5 minutes)")
            yield Sparkline([], id="rate")
            yield Label("LLM seconds per agent turn (last 60 turns)")
            yield Sparkline([], id="llm")
            yield Static("", id="health-deps", classes="detail")

    def draw(self) -> None:
        s = self.state
        pending = sum(1 for p in s.proposals.values() if p.status == ProposalStatus.PENDING)
        self.query_one("#health-connection", Static).update(
            f"hub {escape(s.url)}: {'connected' if s.connected else escape(s.status)}; "
            f"{len(s.rooms)} rooms, {len(s.agents)} agents, {pending} pending proposals"
        )
        self.query_one("#rate", Sparkline).data = s.message_rate()
        self.query_one("#llm", Sparkline).data = list(s.llm_seconds) or [0.0]
        lines = [f"status: {s.health.get('status', 'unknown')}"]
        for name, dep in sorted(s.health.get("dependencies", {}).items()):
            mark = "[green]ok[/]" if dep.get("ok") else "[bold red]down[/]"
            extra = (
                f"{dep['latency_ms']} ms"
                if "latency_ms" in dep
                else dep.get("mode", dep.get("error", ""))
            )
            lines.append(f"{name}: {mark} {escape(str(extra))}")
        self.query_one("#health-deps", Static).update("\n".join(lines))
