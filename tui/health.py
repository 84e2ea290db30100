"""The Health tab: the console's link to the hub (and for how long it has been so), the
hub and each of its dependencies as ``/healthz`` reports it, the LLM backend (model, slots
busy) and the memory store as the newest agent report tells them, a table of every LLM
backend of every worker's pool (up or out, slots busy, queue, speed, errors, calls
served, models; each as its worker's newest report gives it), the agents in error,
and messages per 10 seconds and LLM seconds per agent turn as sparklines, each labelled
with its span, its last value and its top. Every state says how old it is. It has no keys
of its own and is drawn again when the health, the connection or an agent changes (the
app marks the health every second, so ages and the message rate move on).
"""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline, Static

from botarena.arenas.names import ProposalStatus
from botarena.server.protocol import AgentState, AgentStateKind, BackendState
from botarena.tui.pane import ConsolePane
from botarena.tui.table import KeyedTable, Row


def backend_rows(agents: list[AgentState]) -> list[Row]:
    """One row per LLM backend of each worker, from that worker's newest report."""
    newest: dict[tuple[str, str], tuple[AgentState, BackendState]] = {}
    for agent in agents:
        for backend in agent.pool:
            key = (agent.worker, backend.name)
            if key not in newest or newest[key][0].updated_at < agent.updated_at:
                newest[key] = (agent, backend)
    rows: list[Row] = []
    for (worker, name), (_agent, b) in sorted(newest.items()):
        state = "[green]up[/]" if b.up else "[bold red]out[/]"
        cells = (
            name,
            worker or "-",
            b.kind,
            state,
            f"{b.busy}/{b.capacity}",
            str(b.queue),
            f"{b.tokens_per_second:.1f}",
            str(b.errors),
            str(b.served),
            ", ".join(b.models)[:40],
        )
        rows.append((f"{worker}/{name}", cells))
    return rows


class HealthPane(ConsolePane):
    """The hub's connection, traffic and dependencies, and the agents' LLM and memory."""

    DEFAULT_CSS = """
    HealthPane {
        #rate, #llm { height: 3; margin: 0 1 1 1; }
        #health-connection, #health-parts, #rate-label, #llm-label { padding: 0 1; }
        #health-parts { margin-bottom: 1; }
        #backends { height: auto; max-height: 10; margin: 0 1 1 1; }
    }
    """
    TAB_ID = "health"
    TAB_TITLE = "5 Health"
    DRAWS_FROM = frozenset({"health", "connection", "agents"})

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="health-connection")
            yield Static("", id="health-parts")
            yield KeyedTable(
                "backend",
                "worker",
                "kind",
                "state",
                "busy",
                "queue",
                "tok/s",
                "errors",
                "served",
                "models",
                id="backends",
            )
            yield Label("", id="rate-label")
            yield Sparkline([], id="rate")
            yield Label("", id="llm-label")
            yield Sparkline([], id="llm")

    def draw(self) -> None:
        s = self.state
        pending = sum(1 for p in s.proposals.values() if p.status == ProposalStatus.PENDING)
        link = "[green]connected[/]" if s.connected else f"[bold red]{escape(s.status)}[/]"
        self.query_one("#health-connection", Static).update(
            f"[b]console link[/b] to {escape(s.url)}: {link} for {s.age(s.link_since)}; "
            f"{len(s.rooms)} rooms, {len(s.agents)} agents, {pending} pending proposals"
        )
        self.query_one("#health-parts", Static).update("\n".join(self._parts()))
        self.query_one("#backends", KeyedTable).fill(backend_rows(list(s.agents.values())))
        rate = s.message_rate()
        self.query_one("#rate-label", Label).update(
            f"messages per 10 s, last 5 minutes: now {rate[-1]:g}, top {max(rate):g}"
        )
        self.query_one("#rate", Sparkline).data = rate
        turns = list(s.llm_seconds) or [0.0]
        self.query_one("#llm-label", Label).update(
            f"LLM seconds per agent turn, last {len(s.llm_seconds)} turns: "
            f"last {turns[-1]:.1f} s, top {max(turns):.1f} s"
        )
        self.query_one("#llm", Sparkline).data = turns

    def _parts(self) -> list[str]:
        """Each part the site runs on: its state, and how old that news is."""
        s = self.state
        status = s.health.get("status", "unknown")
        mark = "[green]ok[/]" if status == "ok" else f"[bold red]{escape(str(status))}[/]"
        lines = [f"[b]hub[/b]: {mark} (read {s.age(s.health_at)} ago)"]
        for name, dep in sorted(s.health.get("dependencies", {}).items()):
            state = "[green]ok[/]" if dep.get("ok") else "[bold red]down[/]"
            extra = f"{dep['latency_ms']} ms" if "latency_ms" in dep else dep.get("mode", "")
            lines.append(f"  {name}: {state} {escape(str(extra or dep.get('error', '')))}")
        if "error" in s.health:
            lines.append(f"  [red]{escape(str(s.health['error']))}[/]")
        for part, title in (("backend", "LLM"), ("memory", "memory")):
            report = s.newest_report(part)
            if report is None:
                lines.append(f"[b]{title}[/b]: no agent has reported it yet")
                continue
            said = escape(getattr(report, part))
            lines.append(
                f"[b]{title}[/b]: {said} ({escape(report.agent)}, {s.age(report.updated_at)} ago)"
            )
        failing = [a for a in s.agents.values() if a.state == AgentStateKind.ERROR]
        for agent in failing[:3]:
            lines.append(f"  [bold red]{escape(agent.agent)}[/]: {escape(agent.detail[:120])}")
        return lines
