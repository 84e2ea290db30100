"""The base of the console's six tab panes, and the keys that switch between them: a
:class:`ConsolePane` is one tab, given the :class:`ConsoleState` and whether the console
is read-only (data down); it draws itself from that state when the app tells it that a
part it shows (:attr:`ConsolePane.DRAWS_FROM`) changed, declares its own keys and CSS,
and posts messages for what the moderator asks (messages up). It never writes the state
and never talks to the hub; in read-only mode its :attr:`ConsolePane.WRITE_ACTIONS` are
disabled, so neither the footer nor the help offer them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input, TabPane

from botarena.tui.state import ConsoleState

# Every pane lists the tab keys before its own (the app has them too, for when no pane
# has the focus), so the footer reads: the tabs, this tab's keys, then help and quit.
TAB_KEYS: list[BindingType] = [
    Binding("1", "app.tab('rooms')", "Rooms"),
    Binding("2", "app.tab('agents')", "Agents"),
    Binding("3", "app.tab('proposals')", "Proposals"),
    Binding("4", "app.tab('tickets')", "Tickets"),
    Binding("5", "app.tab('health')", "Health"),
    Binding("6", "app.tab('queue')", "Queue"),
]


class ConsolePane(TabPane):
    """One tab of the console."""

    DEFAULT_CSS = """
    ConsolePane .detail {
        height: auto;
        max-height: 12;
        padding: 0 1;
        border-top: solid $primary-background;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = TAB_KEYS

    TAB_ID: ClassVar[str]
    """The pane's id, as the tab keys name it."""
    TAB_TITLE: ClassVar[str]
    """The label of its tab."""
    DRAWS_FROM: ClassVar[frozenset[str]]
    """The parts of the state it shows, as the hub link names what it changed."""
    WRITE_ACTIONS: ClassVar[frozenset[str]] = frozenset()
    """Its actions that change something on the hub (gone in read-only mode)."""
    FOCUS: ClassVar[str] = ""
    """The widget its keys start from when its tab is chosen (a selector), if any."""

    @dataclass
    class Flash(Message):
        """Something to tell the moderator on the flash line."""

        text: str
        error: bool = False

    def __init__(self, state: ConsoleState, *, read_only: bool = False) -> None:
        super().__init__(self.TAB_TITLE, id=self.TAB_ID)
        self.state = state
        self.read_only = read_only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action in self.WRITE_ACTIONS)

    def offered_keys(self) -> list[Binding]:
        """This pane's own keys (not the tab keys) that apply, as the help lists them."""
        return [
            b
            for b in Binding.make_bindings(self.BINDINGS)
            if b not in TAB_KEYS and self.check_action(b.action, ()) is not False
        ]

    def draw(self) -> None:
        """Show the state as it is now."""

    def focus_default(self) -> None:
        """Focus the widget this pane's keys start from (:attr:`FOCUS`); a pane without
        one takes the focus from the pane left (a widget focused on a hidden tab would
        bring its tab back)."""
        if self.FOCUS:
            self.focus_now(self.FOCUS)
        else:
            self.screen.set_focus(None)

    def leave_input(self, box: Input) -> None:
        """Escape from a text box of this pane: back to the widget its keys start from."""
        self.focus_default()

    def focus_now(self, selector: str) -> None:
        """Focus a widget of this pane at once (``focus()`` waits for the next message),
        so that a key typed right after the one that moved here already reaches it."""
        self.screen.set_focus(self.query_one(selector))

    def flash(self, text: str, *, error: bool = False) -> None:
        self.post_message(self.Flash(text, error))
