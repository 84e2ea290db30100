"""The Tickets tab: the help desk's tickets, newest first, each followed to its answer
(the newest ``ticket_answer`` proposal for it: waiting, pending, approved), with the
selected ticket's question and answer below; ``n`` files a ticket, posted up as a message
for the app to carry to the hub. It is drawn again when tickets or proposals change,
since an answer is a proposal."""

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

from botarena.arenas.names import ProposalKind, TicketStatus
from botarena.server.protocol import ProposalInfo
from botarena.tui.markup import styled
from botarena.tui.pane import ConsolePane
from botarena.tui.screens import Field, FormScreen
from botarena.tui.table import KeyedTable, Row


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
            answer = answers.get(f"tickets/{t.id}")
            progress = f"#{answer.id} {answer.status} by {answer.author}" if answer else "waiting"
            if t.status == TicketStatus.CLOSED and t.human_intervention:
                progress += " (human)"
            cells = (
                str(t.id),
                styled(str(t.status), "green" if t.status == TicketStatus.CLOSED else "yellow"),
                escape(t.title)[:50],
                escape(t.filed_by),
                progress,
            )
            rows.append((str(t.id), cells))
        self.query_one(KeyedTable).fill(rows)
        self._draw_detail()

    @on(DataTable.RowHighlighted)
    def _draw_detail(self) -> None:
        key = self.query_one(KeyedTable).selected
        detail = self.query_one("#ticket-detail", Static)
        ticket = self.state.tickets.get(int(key)) if key else None
        if ticket is None:
            detail.update("no tickets yet" + ("" if self.read_only else " (n files one)"))
            return
        answer = self._answers().get(f"tickets/{ticket.id}")
        detail.update(
            f"[b]#{ticket.id} {escape(ticket.title)}[/b]\n{escape(ticket.body)}\n\n"
            + (
                f"answer #{answer.id} ({answer.status}):\n{escape(answer.content)}"
                if answer
                else "no answer yet"
            )
        )

    def action_new_ticket(self) -> None:
        def file(values: dict[str, str] | None) -> None:
            if values is not None:
                self.post_message(self.File(values["title"], values["body"]))

        self.app.push_screen(
            FormScreen("File a ticket", [Field("title", "title"), Field("body", "question")]),
            file,
        )
