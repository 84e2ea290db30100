"""The moderator console: a Textual app over a :class:`HubLink` (``botarena tui``).

Five tabs, switched with 1-5: Rooms (every readable room with unread counts; the
stream of the open one with each author in their colour and replies marked; ``/``
filters it, ``c`` posts as the moderator, ``p``/``r`` pause and resume the room),
Agents (state, persona, trait drift, reputation; ``m``/``u`` mute and unmute), Proposals
(filtered by arena ``f`` and state ``s``; the diff against the canon; ``a`` approve, ``x``
reject with a reason, ``e`` edit then approve; conflicts and stale proposals marked),
Tickets (``n`` files one; each shows its answer as it progresses) and Health
(connection, message rate and LLM seconds per turn as sparklines, dependencies). The
footer shows the keys that apply, ``?`` lists them all and Ctrl+P opens the command
palette. In read-only mode every action is gone, and a refused action shows the hub's
message. This module holds the layout, keys and actions; drawing is in
:mod:`tui.views`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

from rich.markup import escape
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Input,
    Label,
    ListView,
    RichLog,
    Sparkline,
    Static,
    TabbedContent,
    TabPane,
)

from botarena.arenas.names import ARENAS
from botarena.server.client import HubCallError
from botarena.tui.link import HubLink
from botarena.tui.screens import EditorScreen, Field, FormScreen, HelpScreen
from botarena.tui.state import ConsoleState
from botarena.tui.views import ConsoleViews

STATUS_FILTERS = ("pending", None, "approved", "rejected", "conflict")
WRITE_ACTIONS = frozenset(
    {
        "approve",
        "reject",
        "edit",
        "mute",
        "unmute",
        "pause_room",
        "resume_room",
        "new_ticket",
        "compose",
    }
)
TAB_ACTIONS = {
    "rooms": {"pause_room", "resume_room", "filter", "compose"},
    "agents": {"mute", "unmute"},
    "proposals": {"approve", "reject", "edit", "arena_filter", "status_filter"},
    "tickets": {"new_ticket"},
}
TAB_ONLY = frozenset().union(*TAB_ACTIONS.values())


class ConsoleApp(ConsoleViews, App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "BotArena console"

    BINDINGS: ClassVar = [
        Binding("1", "tab('rooms')", "Rooms"),
        Binding("2", "tab('agents')", "Agents"),
        Binding("3", "tab('proposals')", "Proposals"),
        Binding("4", "tab('tickets')", "Tickets"),
        Binding("5", "tab('health')", "Health"),
        Binding("slash", "filter", "Filter"),
        Binding("c", "compose", "Post"),
        Binding("p", "pause_room", "Pause"),
        Binding("r", "resume_room", "Resume"),
        Binding("m", "mute", "Mute"),
        Binding("u", "unmute", "Unmute"),
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
        Binding("e", "edit", "Edit"),
        Binding("f", "arena_filter", "Arena"),
        Binding("s", "status_filter", "State"),
        Binding("n", "new_ticket", "Ticket"),
        Binding("escape", "leave_input", "Back", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        *,
        url: str = "",
        token: str | None = None,
        read_only: bool = False,
        state: ConsoleState | None = None,
        connect: bool = True,
        blink: bool = True,
    ) -> None:
        """``connect=False`` shows ``state`` as given (no hub); ``blink=False`` keeps
        cursors still (snapshots)."""
        super().__init__()
        self.url = url
        self.token = token
        self.read_only = read_only
        self.state = state or ConsoleState(url=url)
        self.connect_to_hub = connect
        self.blink = blink
        self.link: HubLink | None = None
        self.arena_filter: str | None = None
        self.status_filter: str | None = "pending"
        self.message_filter = ""
        self.flash = ""
        self._dirty: set[str] = {"connection", "rooms", "agents", "proposals", "tickets", "health"}
        self._shown: tuple[str | None, str, int] = (None, "", 0)  # room, filter, last id
        self._room_items: dict[str, Label] = {}
        self._rows: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        self._diff_for: int | None = None

    # layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        with TabbedContent(initial="rooms", id="tabs"):
            with TabPane("1 Rooms", id="rooms"), Horizontal():
                yield ListView(id="room-list")
                with Vertical(id="room-main"):
                    yield Input(placeholder="filter messages", id="filter", classes="hidden")
                    yield RichLog(id="stream", wrap=True, markup=True, min_width=20)
                    yield Input(placeholder="post as moderator (c)", id="compose")
            with TabPane("2 Agents", id="agents"), Vertical():
                yield DataTable(id="agent-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="agent-detail", classes="detail")
            with TabPane("3 Proposals", id="proposals"), Vertical():
                yield Static("", id="proposal-filter")
                yield DataTable(id="proposal-table", cursor_type="row", zebra_stripes=True)
                yield RichLog(id="proposal-detail", wrap=False, markup=True, min_width=20)
            with TabPane("4 Tickets", id="tickets"), Vertical():
                yield DataTable(id="ticket-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="ticket-detail", classes="detail")
            with TabPane("5 Health", id="health"), Vertical():
                yield Static("", id="health-connection")
                yield Label("messages per 10 s (last 5 minutes)")
                yield Sparkline([], id="rate")
                yield Label("LLM seconds per agent turn (last 60 turns)")
                yield Sparkline([], id="llm")
                yield Static("", id="health-deps", classes="detail")
        yield Static("", id="flash")
        yield Footer()

    @property
    def main(self) -> Screen:
        """The console's own screen (queries on the app would search a dialog on top)."""
        return self.screen_stack[0]

    def on_mount(self) -> None:
        self.main.query_one("#agent-table", DataTable).add_columns(
            "agent", "state", "detail", "reputation", "external", "drift"
        )
        self.main.query_one("#proposal-table", DataTable).add_columns(
            "#", "state", "arena", "kind", "author", "path", "title"
        )
        self.main.query_one("#ticket-table", DataTable).add_columns(
            "#", "state", "title", "filed by", "answer"
        )
        if self.read_only:
            self.main.query_one("#compose", Input).display = False
        if not self.blink:  # still screens for snapshots
            self.animation_level = "none"
            for field in self.main.query(Input):
                field.cursor_blink = False
        self.main.query_one("#room-list", ListView).focus()
        self._redraw()
        self.set_interval(0.1, self._redraw)
        self.set_interval(1.0, lambda: self._dirty.add("health"))
        if self.connect_to_hub:
            if self.token:
                self._connect(self.token)
            else:
                self.push_screen(
                    FormScreen("Moderator token", [Field("token", "token", secret=True)]),
                    lambda values: self._connect(values["token"]) if values else self.exit(),
                )

    def _connect(self, token: str) -> None:
        self.link = HubLink(self.url, token, self.state, self._dirty.add)
        self.run_worker(self._start_link(), exclusive=True, group="link")

    async def _start_link(self) -> None:
        assert self.link is not None
        try:
            await self.link.start()
        except HubCallError as exc:
            self.state.status = f"refused: {exc.message}"
            self._dirty.add("connection")
            self._show_flash(f"cannot connect: {exc.message}", error=True)

    async def on_unmount(self) -> None:
        if self.link is not None:
            await self.link.stop()

    # keys --------------------------------------------------------------------------

    @property
    def tab(self) -> str:
        return self.main.query_one("#tabs", TabbedContent).active

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in WRITE_ACTIONS:
            return False
        if action in TAB_ONLY:
            try:
                return action in TAB_ACTIONS.get(self.tab, set())
            except Exception:  # before the tabs exist
                return False
        return True

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()
        self._show("rooms", "agents", "proposals", "tickets", "health")

    def action_tab(self, tab: str) -> None:
        self.main.query_one("#tabs", TabbedContent).active = tab
        focus = {
            "rooms": "#room-list",
            "agents": "#agent-table",
            "proposals": "#proposal-table",
            "tickets": "#ticket-table",
        }.get(tab)
        if focus:
            self.main.query_one(focus).focus()

    def action_help(self) -> None:
        keys = [
            (b.key.replace("question_mark", "?").replace("slash", "/"), b.description)
            for b in self.BINDINGS
            if not (self.read_only and b.action in WRITE_ACTIONS)
        ]
        self.push_screen(HelpScreen(keys))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab in ("rooms", "agents", "proposals", "tickets", "health"):
            yield SystemCommand(
                f"Go to {tab}", f"show the {tab} tab", lambda t=tab: self.action_tab(t)
            )
        if not self.read_only:
            yield SystemCommand("File a ticket", "ask the help desk", self.action_new_ticket)
            yield SystemCommand(
                "Approve the selected proposal", "merge it into the canon", self.action_approve
            )
            yield SystemCommand("Reject the selected proposal", "with a reason", self.action_reject)

    # actions -----------------------------------------------------------------------

    def _act(self, make: Callable[[HubLink], Awaitable[Any]], done: str) -> None:
        """Run an action on the hub; show ``done`` or the hub's refusal."""
        if self.read_only:
            return
        link = self.link
        if link is None:
            self._show_flash("not connected", error=True)
            return

        async def run() -> None:
            try:
                await make(link)
            except HubCallError as exc:
                self._show_flash(f"refused: {exc.message}", error=True)
                return
            self._show_flash(done)

        self.run_worker(run(), group="actions")

    def _show_flash(self, text: str, *, error: bool = False) -> None:
        self.flash = text
        self.main.query_one("#flash", Static).update(
            f"[bold red]{escape(text)}[/]" if error else escape(text)
        )
        self.notify(text, severity="error" if error else "information")

    def action_filter(self) -> None:
        box = self.main.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    def action_leave_input(self) -> None:
        """Escape from the filter or the post box back to the rooms."""
        if isinstance(self.focused, Input):
            self.main.query_one("#room-list").focus()

    def action_compose(self) -> None:
        self.main.query_one("#compose", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.message_filter = event.value
        self._show("rooms")

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.main.query_one("#stream").focus()

    @on(Input.Submitted, "#compose")
    def _post(self, event: Input.Submitted) -> None:
        room, text = self.state.current_room, event.value.strip()
        if not room or not text:
            return
        event.input.value = ""
        self._act(lambda link: link.post(room, text), f"posted in {room}")

    def action_pause_room(self) -> None:
        room = self.state.current_room
        if room:
            self.push_screen(
                FormScreen(f"Pause {room}", [Field("reason", "reason", required=False)]),
                lambda v: (
                    v is not None
                    and self._act(lambda link: link.pause(room, v["reason"]), f"{room} paused")
                ),
            )

    def action_resume_room(self) -> None:
        room = self.state.current_room
        if room:
            self._act(lambda link: link.resume(room), f"{room} resumed")

    def action_mute(self) -> None:
        agent = self._selected("#agent-table")
        if agent:
            self.push_screen(
                FormScreen(
                    f"Mute {agent}",
                    [Field("minutes", "minutes", "10"), Field("reason", "reason", required=False)],
                ),
                lambda v: v is not None and self._mute(agent, v),
            )

    def _mute(self, agent: str, values: dict[str, str]) -> None:
        try:
            seconds = int(float(values["minutes"]) * 60)
        except ValueError:
            self._show_flash(f"not a number of minutes: {values['minutes']!r}", error=True)
            return
        self._act(lambda link: link.mute(agent, seconds, values["reason"]), f"{agent} muted")

    def action_unmute(self) -> None:
        agent = self._selected("#agent-table")
        if agent:
            self._act(lambda link: link.unmute(agent), f"{agent} unmuted")

    def action_approve(self) -> None:
        proposal = self._proposal()
        if proposal:
            pid = proposal["id"]
            self._act(lambda link: link.review(pid, "approve"), f"proposal #{pid} reviewed")

    def action_reject(self) -> None:
        proposal = self._proposal()
        if proposal:
            pid = proposal["id"]
            self.push_screen(
                FormScreen(f"Reject proposal #{pid}", [Field("reason", "reason")]),
                lambda v: (
                    v is not None
                    and self._act(
                        lambda link: link.review(pid, "reject", reason=v["reason"]),
                        f"proposal #{pid} rejected",
                    )
                ),
            )

    def action_edit(self) -> None:
        proposal = self._proposal()
        if not proposal:
            return
        pid = proposal["id"]

        async def open_editor() -> None:
            assert self.link is not None
            try:
                detail = await self.link.proposal(pid)
                text = detail["content"]
                if detail["kind"] == "patch":  # edit the result, not the diff
                    from botarena.server.patching import apply_unified_diff

                    base = await self.link.client.call("canon.get", {"path": detail["path"]})
                    text = apply_unified_diff(base["content"], detail["content"])
            except HubCallError as exc:
                self._show_flash(f"refused: {exc.message}", error=True)
                return
            except ValueError as exc:
                self._show_flash(f"cannot edit: {exc}", error=True)
                return
            self.push_screen(
                EditorScreen(f"Edit #{pid} {detail['path']}", text),
                lambda edited: (
                    edited is not None
                    and self._act(
                        lambda link: link.review(pid, "edit", content=edited),
                        f"proposal #{pid} edited and reviewed",
                    )
                ),
            )

        if self.link is not None and not self.read_only:
            self.run_worker(open_editor(), group="actions")

    def action_arena_filter(self) -> None:
        order = [None, *ARENAS]
        self.arena_filter = order[(order.index(self.arena_filter) + 1) % len(order)]
        self._show("proposals")

    def action_status_filter(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self._show("proposals")

    def action_new_ticket(self) -> None:
        self.push_screen(
            FormScreen("File a ticket", [Field("title", "title"), Field("body", "question")]),
            lambda v: (
                v is not None
                and self._act(lambda link: link.file_ticket(v["title"], v["body"]), "ticket filed")
            ),
        )

    @on(ListView.Selected, "#room-list")
    def _room_chosen(self, event: ListView.Selected) -> None:
        name = event.item.name
        if name:
            self.state.open_room(name)
            self._show("rooms")

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        detail = {
            "agent-table": self._draw_agent_detail,
            "proposal-table": self._draw_proposal_detail,
            "ticket-table": self._draw_ticket_detail,
        }.get(event.data_table.id or "")
        if detail is not None:
            detail()
