"""The Rooms tab: every readable room with its unread count and whether it is paused,
and the stream of the open room, each author in their colour and replies marked; ``/``
filters the stream, ``c`` posts as the moderator, ``p`` and ``r`` pause (with a reason)
and resume the open room. Choosing a room, posting, pausing and resuming are posted up as
messages: the app opens the room in the state or asks the hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.markup import escape
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, ListItem, ListView, RichLog

from botarena.tui.markup import colour, styled
from botarena.tui.pane import ConsolePane
from botarena.tui.screens import Field, FormScreen
from botarena.tui.state import ConsoleState


class RoomsPane(ConsolePane):
    """The rooms and the open room's stream."""

    DEFAULT_CSS = """
    RoomsPane {
        #room-list { width: 30; border-right: solid $primary-background; }
        #room-main { width: 1fr; }
        #stream { height: 1fr; }
        #filter, #compose { height: 3; }
        .hidden { display: none; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("c", "compose", "Post"),
        Binding("p", "pause_room", "Pause"),
        Binding("r", "resume_room", "Resume"),
    ]
    TAB_ID = "rooms"
    TAB_TITLE = "1 Rooms"
    DRAWS_FROM = frozenset({"rooms"})
    WRITE_ACTIONS = frozenset({"compose", "pause_room", "resume_room"})
    FOCUS = "#room-list"

    @dataclass
    class Opened(Message):
        """The moderator chose a room to read."""

        room: str

    @dataclass
    class Post(Message):
        """Post ``text`` in ``room`` as the moderator."""

        room: str
        text: str

    @dataclass
    class Pause(Message):
        """Pause ``room``: agents stop speaking there."""

        room: str
        reason: str

    @dataclass
    class Resume(Message):
        """Let ``room`` speak again."""

        room: str

    def __init__(self, state: ConsoleState, *, read_only: bool = False) -> None:
        super().__init__(state, read_only=read_only)
        self.message_filter = ""
        self._items: dict[str, Label] = {}
        # room, filter, its rewrites, the last id written
        self._shown: tuple[str | None, str, int, int] = (None, "", 0, 0)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ListView(id="room-list")
            with Vertical(id="room-main"):
                yield Input(placeholder="filter messages", id="filter", classes="hidden")
                yield RichLog(id="stream", wrap=True, markup=True, min_width=20)
                yield Input(placeholder="post as moderator (c)", id="compose")

    def on_mount(self) -> None:
        if self.read_only:
            self.query_one("#compose", Input).display = False

    # drawing -----------------------------------------------------------------------

    def draw(self) -> None:
        rooms = self.query_one("#room-list", ListView)
        for name, view in sorted(self.state.rooms.items(), key=lambda kv: (kv[1].kind, kv[0])):
            label = self._items.get(name)
            if label is None:
                label = self._items[name] = Label()
                rooms.append(ListItem(label, name=name))
            marks = (" · paused" if view.paused else "") + (
                f" ({view.unread})" if view.unread else ""
            )
            current = "▶ " if name == self.state.current_room else "  "
            label.update(f"{current}{escape(name)}{marks}")
        self._draw_stream()

    def _draw_stream(self) -> None:
        """Write the open room's new messages (all of them again when the room, the
        filter or a message before the last, held or released by a moderator, changed)."""
        room = self.state.current_room
        stream = self.query_one("#stream", RichLog)
        if room is None or stream.scrollable_content_region.width < stream.min_width:
            return  # not laid out (a hidden tab, a dialog over it): drawn on its resize
        view = self.state.room(room)
        messages = view.messages
        *shown, shown_last = self._shown
        if shown != [room, self.message_filter, view.rewrites]:
            stream.clear()
            shown_last = 0
        needle = self.message_filter.lower()
        for message in messages:
            if message.id <= shown_last:
                continue
            if needle and needle not in message.text.lower() and needle not in message.author:
                continue
            reply = f"[dim]↪ #{message.reply_to}[/] " if message.reply_to else ""
            stream.write(
                f"[dim]{message.created_at:%H:%M:%S} #{message.id}[/] "
                f"{styled(message.author, 'bold ' + colour(message.author))} "
                f"{reply}{escape(message.text)}"
            )
        last = messages[-1].id if messages else 0
        self._shown = (room, self.message_filter, view.rewrites, max(last, shown_last))

    # keys and events ---------------------------------------------------------------

    @on(events.Resize)
    def _rewrap(self) -> None:
        """The stream was wrapped at its old width: write it again at the new one."""
        self._shown = (None, "", 0, 0)
        self._draw_stream()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        self.focus_now("#filter")

    def action_compose(self) -> None:
        self.focus_now("#compose")

    def action_pause_room(self) -> None:
        room = self.state.current_room
        if not room:
            return

        def pause(values: dict[str, str] | None) -> None:
            if values is not None:
                self.post_message(self.Pause(room, values["reason"]))

        self.app.push_screen(
            FormScreen(f"Pause {room}", [Field("reason", "reason", required=False)]), pause
        )

    def action_resume_room(self) -> None:
        room = self.state.current_room
        if room:
            self.post_message(self.Resume(room))

    @on(ListView.Selected, "#room-list")
    def _room_chosen(self, event: ListView.Selected) -> None:
        if event.item.name:
            self.post_message(self.Opened(event.item.name))

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.message_filter = event.value
        self.draw()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.focus_now("#stream")

    def leave_input(self, box: Input) -> None:
        """Escape from the filter drops the filter and hides its box."""
        if box.id == "filter":
            box.value = ""
            self.message_filter = ""
            box.add_class("hidden")
            self.draw()
        super().leave_input(box)

    @on(Input.Submitted, "#compose")
    def _post(self, event: Input.Submitted) -> None:
        room, text = self.state.current_room, event.value.strip()
        if not room or not text:
            return
        event.input.value = ""
        self.post_message(self.Post(room, text))
