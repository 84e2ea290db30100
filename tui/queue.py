"""The Queue tab: the moderation queue, messages the content filter or an AI moderator
put before the moderators. Held ones (kept out of their room) come first, then flagged
ones (posted, marked), oldest first, each with how long it has waited; the selected
item's text, what found it and who below. ``r`` releases a held message (posted with
its room's next id), ``d`` drops it (its author is told), ``c`` clears a flag (an AI
moderator's flag cleared is an overrule, audited), ``m`` mutes the author; each is
posted up as a message for the app to carry to the hub. The tab's label counts what
waits."""

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

from botarena.server.protocol import QueueItem
from botarena.tui.agents import mute_form
from botarena.tui.link import QueueDecisionKind
from botarena.tui.markup import styled
from botarena.tui.pane import ConsolePane
from botarena.tui.screens import Field, FormScreen
from botarena.tui.state import ConsoleState
from botarena.tui.table import KeyedTable, Row

KIND_STYLE = {"held": "bold red", "flagged": "yellow"}
WANTS = {"release": "held", "drop": "held", "clear": "flagged"}
"""The kind of item each decision is for."""


class QueuePane(ConsolePane):
    """The queue's table and the selected item."""

    DEFAULT_CSS = """
    QueuePane {
        #queue-table { height: 1fr; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "decide('release')", "Release"),
        Binding("d", "decide('drop')", "Drop"),
        Binding("c", "decide('clear')", "Clear"),
        Binding("m", "mute", "Mute author"),
    ]
    TAB_ID = "queue"
    TAB_TITLE = "6 Queue"
    DRAWS_FROM = frozenset({"queue"})
    WRITE_ACTIONS = frozenset({"decide", "mute"})
    FOCUS = "#queue-table"

    @dataclass
    class Decide(Message):
        """Release, drop or clear a queue item."""

        item: int
        decision: QueueDecisionKind
        reason: str

    def __init__(self, state: ConsoleState, *, read_only: bool = False) -> None:
        super().__init__(state, read_only=read_only)
        self._label = self.TAB_TITLE

    def compose(self) -> ComposeResult:
        with Vertical():
            yield KeyedTable(
                "#", "kind", "room", "author", "for", "by", "waits", "text", id="queue-table"
            )
            yield Static("", id="queue-detail", classes="detail")

    @property
    def selected(self) -> QueueItem | None:
        key = self.query_one(KeyedTable).selected
        return self.state.queue.get(int(key)) if key else None

    def draw(self) -> None:
        rows: list[Row] = []
        for item in self.state.waiting():
            cells = (
                str(item.id),
                styled(item.kind, KIND_STYLE[item.kind]),
                escape(item.room),
                escape(item.author),
                ", ".join(item.categories),
                escape(item.source),
                self.state.age(item.created_at),
                escape(" ".join(item.text.split()))[:60],
            )
            rows.append((str(item.id), cells))
        self.query_one(KeyedTable).fill(rows)
        self._draw_detail()
        held = sum(1 for i in self.state.queue.values() if i.kind == "held")
        count = len(self.state.queue)
        label = self.TAB_TITLE + (
            f" [bold red]({held}/{count})[/]" if held else f" ({count})" if count else ""
        )
        if label != self._label:
            self._label = label
            self.query_ancestor(TabbedContent).get_tab(self).label = label

    @on(DataTable.RowHighlighted)
    def _draw_detail(self) -> None:
        item = self.selected
        detail = self.query_one("#queue-detail", Static)
        if item is None:
            detail.update("nothing waits for a moderator")
            return
        where = (
            "kept out of the room until released or dropped"
            if item.kind == "held"
            else f"posted as message {item.message_id}, marked"
        )
        found = ", ".join(item.rules) or "—"
        by = "the content filter" if item.source == "filter" else f"AI moderator {item.source}"
        detail.update(
            f"[b]#{item.id} {escape(item.author)} in {escape(item.room)}[/b]: {where}\n"
            f"{escape(item.text)}\n"
            f"{', '.join(item.categories)} by {escape(by)} ({escape(found)})"
            + (f": {escape(item.reason)}" if item.reason else "")
        )

    def action_decide(self, decision: QueueDecisionKind) -> None:
        item = self.selected
        if item is None:
            return
        if item.kind != WANTS[decision]:
            self.flash(f"{decision} is for a {WANTS[decision]} message", error=True)
            return

        def decide(values: dict[str, str] | None) -> None:
            if values is not None:
                self.post_message(self.Decide(item.id, decision, values["reason"]))

        self.app.push_screen(
            FormScreen(
                f"{decision.capitalize()} #{item.id}", [Field("reason", "reason", required=False)]
            ),
            decide,
        )

    def action_mute(self) -> None:
        item = self.selected
        if item is not None:
            mute_form(self, item.author)
