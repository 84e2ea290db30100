"""The Agents tab: each agent's state, what it is doing, its reputation, whether it may
answer on the external help desk and its trait drift, with the selected agent's summary,
review record and last LLM turn below; ``m`` mutes the selected agent (asking for how
long and why) and ``u`` unmutes it, both posted up as messages for the app to carry to
the hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from botarena.server.protocol import AgentStanding
from botarena.tui.markup import STATE_STYLE, colour, styled
from botarena.tui.pane import ConsolePane
from botarena.tui.screens import Field, FormScreen
from botarena.tui.table import KeyedTable, Row


class AgentsPane(ConsolePane):
    """The agents table and the selected agent's detail."""

    DEFAULT_CSS = """
    AgentsPane {
        #agent-table { height: 1fr; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "mute", "Mute"),
        Binding("u", "unmute", "Unmute"),
    ]
    TAB_ID = "agents"
    TAB_TITLE = "2 Agents"
    DRAWS_FROM = frozenset({"agents"})
    WRITE_ACTIONS = frozenset({"mute", "unmute"})
    FOCUS = "#agent-table"

    @dataclass
    class Mute(Message):
        """Mute ``agent`` for ``seconds``."""

        agent: str
        seconds: int
        reason: str

    @dataclass
    class Unmute(Message):
        """Let ``agent`` speak again."""

        agent: str

    def compose(self) -> ComposeResult:
        with Vertical():
            yield KeyedTable(
                "agent", "state", "detail", "reputation", "external", "drift", id="agent-table"
            )
            yield Static("", id="agent-detail", classes="detail")

    @property
    def selected(self) -> str | None:
        return self.query_one(KeyedTable).selected

    # drawing -----------------------------------------------------------------------

    def draw(self) -> None:
        rows: list[Row] = []
        for name in sorted(set(self.state.agents) | set(self.state.standings)):
            state = self.state.agents.get(name)
            standing = self.state.standings.get(name)
            kind = str(state.state) if state else "unknown"
            drift = (
                ", ".join(f"{k} {v:+.2f}" for k, v in sorted(state.drift.items())) if state else ""
            )
            desk = (
                ("yes" if standing.external else "no") if standing and standing.candidate else "-"
            )
            cells = (
                styled(name, colour(name)),
                styled(kind, STATE_STYLE.get(kind, "")),
                escape(clipped(state.detail if state else "", 50)),
                str(standing.reputation) if standing else "",
                desk,
                drift,
            )
            rows.append((name, cells))
        self.query_one(KeyedTable).fill(rows)
        self._draw_detail()

    @on(DataTable.RowHighlighted)
    def _draw_detail(self) -> None:
        agent = self.selected
        detail = self.query_one("#agent-detail", Static)
        if agent is None:
            detail.update("no agents yet")
            return
        state = self.state.agents.get(agent)
        standing = self.state.standings.get(agent) or no_record(agent)
        ratio = standing.approval_ratio
        said = f"{state.state}: {state.detail}" if state and state.detail else ""
        detail.update(
            f"[b]{escape(agent)}[/b]  {escape(state.summary if state else '')}\n"
            + (f"{escape(said)}\n" if said else "")
            + f"reputation {standing.reputation}: {standing.approved} approved, "
            f"{standing.edited} edited, {standing.rejected} rejected, "
            f"reactions +{standing.reactions_up}/-{standing.reactions_down}"
            + (f", approval {ratio:.0%}" if ratio is not None else "")
            + f"\nlast LLM turn: {(state.llm_seconds if state else None) or 0:.2f} s"
        )

    # keys --------------------------------------------------------------------------

    def action_mute(self) -> None:
        agent = self.selected
        if agent:
            mute_form(self, agent)

    def action_unmute(self) -> None:
        agent = self.selected
        if agent:
            self.post_message(self.Unmute(agent))


def mute_form(pane: ConsolePane, agent: str) -> None:
    """Ask the moderator for how long and why to mute ``agent``, then post
    :class:`AgentsPane.Mute` up from ``pane`` (the Agents and Queue tabs)."""

    def mute(values: dict[str, str] | None) -> None:
        if values is None:
            return
        try:
            seconds = int(float(values["minutes"]) * 60)
        except ValueError:
            pane.flash(f"not a number of minutes: {values['minutes']!r}", error=True)
            return
        pane.post_message(AgentsPane.Mute(agent, seconds, values["reason"]))

    pane.app.push_screen(
        FormScreen(
            f"Mute {agent}",
            [Field("minutes", "minutes", "10"), Field("reason", "reason", required=False)],
        ),
        mute,
    )


def clipped(text: str, width: int) -> str:
    """``text`` on one line of at most ``width`` characters, … marking a cut."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def no_record(agent: str) -> AgentStanding:
    """The standing of an agent the reputation does not list yet: nothing earned."""
    return AgentStanding(
        agent=agent,
        reputation=0,
        approved=0,
        edited=0,
        rejected=0,
        conflicts=0,
        reactions_up=0,
        reactions_down=0,
        candidate=False,
        external=False,
        approval_ratio=None,
    )
