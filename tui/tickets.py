"""The Tickets tab: the help desk's tickets, newest first, each followed to its answer
(the newest ``ticket_answer`` proposal for it: waiting, pending, approved), with the
selected ticket's question and answer (its sources apart) below; ``n`` files a ticket,
posted up as a message for the app to carry to the hub. Tickets the agents escalated to
the humans stand out, and so do open ones the hub announced overdue; the tab's label
counts both. It is drawn again when tickets or proposals change, since an answer is a
proposal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static, TabbedContent

from botarena.arenas.names import ProposalKind, TicketStatus, ticket_path
from botarena.server.protocol import ProposalInfo, TicketInfo
from botarena.tui.markup import styled
from botarena.tui.pane import ConsolePane
from botarena.tui.screens import Field, FormScreen
from botarena.tui.sources import sources_line, split_sources
from botarena.tui.state import ConsoleState
from botarena.tui.table import KeyedTable, Row

STATUS_STYLE = {
    TicketStatus.OPEN: "yellow",
    TicketStatus.ESCALATED: "bold red",
    TicketStatus.CLOSED: "green",
}
OVERDUE = "open · overdue"
OVERDUE_STYLE = "bold orange1"


class TicketsPane(ConsolePane):
    """The tickets table and the selected ticket with its answer."""

    DEFAULT_CSS = """
    TicketsPane {
        #ticket-table { height: 1fr; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("n", "new_ticket", "Ticket")]
    TAB_ID = "tickets"
    TAB_TITLE = "4 Tickets"
    DRAWS_FROM = frozenset({"tickets", "proposals"})
    WRITE_ACTIONS = frozenset({"new_ticket"})
    FOCUS = "#ticket-table"

    @dataclass
    class File(Message):
        """File a ticket on the help desk."""

        title: str
        body: str

    def __init__(self, state: ConsoleState, *, read_only: bool = False) -> None:
        super().__init__(state, read_only=read_only)
        self._label = self.TAB_TITLE

    def compose(self) -> ComposeResult:
        with Vertical():
            yield KeyedTable("#", "state", "title", "filed by", "answer", id="ticket-table")
            yield Static("", id="ticket-detail", classes="detail")

    def _answers(self) -> dict[str, ProposalInfo]:
        """The newest answer proposed for each ticket, by the ticket's path."""
        found: dict[str, ProposalInfo] = {}
        for p in sorted(self.state.proposals.values(), key=lambda p: p.id):
            if p.kind == ProposalKind.TICKET_ANSWER:
                found[p.path] = p
        return found

    def draw(self) -> None:
        rows: list[Row] = []
        answers = self._answers()
        for t in sorted(self.state.tickets.values(), key=lambda t: -t.id):
            cells = (
                str(t.id),
                self._state_cell(t),
                escape(t.title)[:50],
                escape(t.filed_by),
                escape(self._progress(t, answers.get(ticket_path(t.id)))),
            )
            rows.append((str(t.id), cells))
        self.query_one(KeyedTable).fill(rows)
        self._draw_detail()
        self._draw_label()

    def _state_cell(self, ticket: TicketInfo) -> str:
        if self.state.is_overdue(ticket):
            return styled(OVERDUE, OVERDUE_STYLE)
        return styled(str(ticket.status), STATUS_STYLE.get(ticket.status, ""))

    def _progress(self, ticket: TicketInfo, answer: ProposalInfo | None) -> str:
        """Where the ticket's answer stands (plain text)."""
        if answer is not None:
            progress = f"#{answer.id} {answer.status} by {answer.author}"
        elif ticket.status == TicketStatus.ESCALATED:
            escalation = self.state.escalations.get(ticket.id)
            progress = "for a human" + (f" (from {escalation.by})" if escalation else "")
        else:
            progress = "waiting"
        if ticket.status == TicketStatus.CLOSED and ticket.human_intervention:
            progress += " (human)"
        return progress

    def _draw_label(self) -> None:
        """The tab's label, with the count of tickets that need a human."""
        count = self.state.needing_a_human()
        label = self.TAB_TITLE + (f" [bold red]({count})[/]" if count else "")
        if label != self._label:
            self._label = label
            self.query_ancestor(TabbedContent).get_tab(self).label = label

    @on(DataTable.RowHighlighted)
    def _draw_detail(self) -> None:
        key = self.query_one(KeyedTable).selected
        detail = self.query_one("#ticket-detail", Static)
        ticket = self.state.tickets.get(int(key)) if key else None
        if ticket is None:
            detail.update("no tickets yet" + ("" if self.read_only else " (n files one)"))
            return
        lines = [f"[b]#{ticket.id} {escape(ticket.title)}[/b]", escape(ticket.body), ""]
        escalation = self.state.escalations.get(ticket.id)
        if ticket.status == TicketStatus.ESCALATED:
            lines.append(
                styled(f"escalated by {escalation.by}: {escalation.reason}", "bold red")
                if escalation
                else styled("escalated: the agents handed it to the humans", "bold red")
            )
        elif self.state.is_overdue(ticket):
            lines.append(styled("overdue: the hub told it waited too long", OVERDUE_STYLE))
        answer = self._answers().get(ticket_path(ticket.id))
        if answer is None:
            lines.append("no answer yet")
        else:
            content, sources = split_sources(answer.content)
            lines += [
                f"answer #{answer.id} ({answer.status}):",
                escape(content.rstrip()),
                sources_line(sources),
            ]
        detail.update("\n".join(lines))

    def action_new_ticket(self) -> None:
        def file(values: dict[str, str] | None) -> None:
            if values is not None:
                self.post_message(self.File(values["title"], values["body"]))

        self.app.push_screen(
            FormScreen(
                "File a ticket",
                [Field("title", "title"), Field("body", "question", multiline=True)],
            ),
            file,
        )
