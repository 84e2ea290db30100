"""The moderator console (``botarena tui``), a Textual app over a :class:`HubLink`: six
tabs switched with 1-6, each a pane with its own keys and CSS (Rooms, Agents, Proposals,
Tickets, Health, Queue: :mod:`botarena.tui.rooms` and its siblings); the app holds the layout (a
status line, the tabs, a flash line, the footer), the global keys (the tabs, ``?`` lists
every key, ``q`` quits, Ctrl+P opens the command palette) and the link. Data goes down:
the link writes the :class:`ConsoleState` and names what it changed, and a few times a
second the app tells the panes that show those parts to draw themselves; the status line
counts the tickets that need a human, and what must be told at once (a ticket waiting
too long, or escalated by the agents) is notified. Messages come
up: a pane posts what the moderator asked for (approve, mute, post...) and the app
carries it to the hub, showing what was done or the hub's refusal on the flash line. In
read-only mode every action is gone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar

from rich.markup import escape
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static, TabbedContent

from botarena.arenas.names import ProposalStatus
from botarena.server.errors import HubError, PatchError
from botarena.server.protocol import ProposalInfo, ReviewDecision
from botarena.tui.agents import AgentsPane
from botarena.tui.health import HealthPane
from botarena.tui.link import HubLink
from botarena.tui.pane import TAB_KEYS, ConsolePane
from botarena.tui.proposals import ProposalsPane
from botarena.tui.queue import QueuePane
from botarena.tui.rooms import RoomsPane
from botarena.tui.screens import EditorScreen, Field, FormScreen, HelpScreen
from botarena.tui.state import ConsoleState
from botarena.tui.tickets import TicketsPane

PANES: tuple[type[ConsolePane], ...] = (
    RoomsPane,
    AgentsPane,
    ProposalsPane,
    TicketsPane,
    HealthPane,
    QueuePane,
)
WRITE_ACTIONS = frozenset[str]().union(*(pane.WRITE_ACTIONS for pane in PANES))
PARTS = frozenset({"connection", "alerts", *(part for pane in PANES for part in pane.DRAWS_FROM)})
ALERT_SECONDS = 20.0
"""How long a ticket's alert stays on screen (its count stays on the status line)."""
DONE = {"approve": "approved", "reject": "rejected", "edit": "edited and approved"}
P = TypeVar("P", bound=ConsolePane)

GLOBAL_KEYS: list[BindingType] = [
    Binding("escape", "leave_input", "Back", show=False),
    Binding("question_mark", "help", "Help"),
    Binding("q", "quit", "Quit"),
]


class ConsoleApp(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "BotArena console"

    BINDINGS: ClassVar[list[BindingType]] = [*TAB_KEYS, *GLOBAL_KEYS]

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
        self.flash = ""
        self._dirty: set[str] = set(PARTS)
        self._redraw_timer: Timer | None = None

    # layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        with TabbedContent(initial=PANES[0].TAB_ID, id="tabs"):
            for pane in PANES:
                yield pane(self.state, read_only=self.read_only)
        yield Static("", id="flash")
        yield Footer()

    @property
    def main(self) -> Screen:
        """The console's own screen (queries on the app would search a dialog on top)."""
        return self.screen_stack[0]

    def pane(self, kind: type[P]) -> P:
        """The console's pane of this kind."""
        return self.main.query_one(kind)

    def on_mount(self) -> None:
        if not self.blink:  # still screens for snapshots
            self.animation_level = "none"
            for field in self.main.query(Input):
                field.cursor_blink = False
        self.pane(RoomsPane).focus_default()
        self._redraw()
        self.set_interval(1.0, lambda: self._changed("health"))  # its clock and sparklines
        if self.connect_to_hub:
            if self.token:
                self._connect(self.token)
            else:
                self.push_screen(
                    FormScreen("Moderator token", [Field("token", "token", secret=True)]),
                    lambda values: self._connect(values["token"]) if values else self.exit(),
                )

    def _connect(self, token: str) -> None:
        self.link = HubLink(self.url, token, self.state, self._changed, self._token_refused)
        self.pane(ProposalsPane).hub_linked = True
        self.run_worker(self._start_link(), exclusive=True, group="link")

    def _token_refused(self, reason: str) -> None:
        """The hub refused the token (revoked, or a hub restarted with another): say so
        and ask for one; Escape keeps the console as it is, with the refusal in its status
        line."""
        self._show_flash(f"token refused: {reason}", error=True)
        self.push_screen(
            FormScreen(
                f"The hub refused the token ({reason}). A moderator token"
                " (botarena token moderator shows the site's):",
                [Field("token", "token", secret=True)],
            ),
            self._token_entered,
        )

    def _token_entered(self, values: dict[str, str] | None) -> None:
        if values:
            self.run_worker(self._relink(values["token"].strip()), group="relink")

    async def _relink(self, token: str) -> None:
        if self.link is not None:
            await self.link.stop()
        self._connect(token)

    async def _start_link(self) -> None:
        assert self.link is not None
        try:
            await self.link.start()
        except HubError as exc:
            self.state.status = f"refused: {exc.message}"
            self._changed("connection")
            self._show_flash(f"cannot connect: {exc.message}", error=True)

    async def on_unmount(self) -> None:
        if self.link is not None:
            await self.link.stop()

    # drawing -----------------------------------------------------------------------

    def _show(self, *parts: str) -> None:
        """Redraw what shows ``parts`` now: the moderator is waiting for them."""
        self._dirty.update(parts)
        self._redraw()

    def _changed(self, part: str) -> None:
        """``part`` of the state changed: drawn within 0.1 s with whatever else changes
        meanwhile (a burst of messages is one redraw), or at once for the connection (rare,
        and the first thing the moderator looks at). Nothing runs while nothing changes."""
        self._dirty.add(part)
        if part == "connection":
            self._redraw()
        elif self._redraw_timer is None:
            self._redraw_timer = self.set_timer(0.1, self._redraw)

    def _redraw(self) -> None:
        if self._redraw_timer is not None:
            self._redraw_timer.stop()
            self._redraw_timer = None
        if not self.screen_stack:  # closing down: nothing left to draw on
            return
        dirty, self._dirty = self._dirty, set()
        try:
            if "alerts" in dirty:
                self._tell_alerts()
            if dirty & {"connection", "tickets"}:
                self._draw_status()
            for pane in self.main.query(ConsolePane):
                if pane.DRAWS_FROM & dirty:
                    pane.draw()
        except NoMatches:
            pass  # closing down: the widgets are already going

    def _draw_status(self) -> None:
        s = self.state
        mark = "[bold green]●[/]" if s.connected else "[bold red]○[/]"
        who = f"{escape(s.me)} ({s.role})" if s.me else ""
        mode = "  [reverse] read-only [/]" if self.read_only else ""
        humans = s.needing_a_human()
        tickets = (
            f"  [bold red]{humans} ticket{' needs' if humans == 1 else 's need'} a human[/] (tab 4)"
            if humans
            else ""
        )
        self.main.query_one("#status", Static).update(
            f"{mark} {escape(s.status)}  {who}  {escape(s.url)}{mode}{tickets}"
        )

    def _tell_alerts(self) -> None:
        """Notify what the hub told that needs a human (a ticket waiting, escalated)."""
        while self.state.alerts:
            alert = self.state.alerts.popleft()
            self.notify(
                alert.text,
                title=alert.title,
                severity="warning",
                timeout=ALERT_SECONDS,
                markup=False,
            )

    @on(ConsolePane.Flash)
    def _flash_asked(self, message: ConsolePane.Flash) -> None:
        self._show_flash(message.text, error=message.error)

    def _show_flash(self, text: str, *, error: bool = False) -> None:
        self.flash = text
        self.main.query_one("#flash", Static).update(
            f"[bold red]{escape(text)}[/]" if error else escape(text)
        )
        self.notify(text, severity="error" if error else "information", markup=False)

    # global keys -------------------------------------------------------------------

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()
        self._show(*PARTS)

    def action_tab(self, tab: str) -> None:
        self.main.query_one("#tabs", TabbedContent).active = tab
        self.main.query_one(f"#{tab}", ConsolePane).focus_default()

    def action_leave_input(self) -> None:
        """Escape from a text box back to its pane's list."""
        if isinstance(self.focused, Input):
            try:
                self.focused.query_ancestor(ConsolePane).leave_input(self.focused)
            except NoMatches:
                pass

    def action_help(self) -> None:
        """Every key, by where it works: the tab shown first, then the keys that work
        everywhere, then each other tab's own."""
        shown = self.main.query_one("#tabs", TabbedContent).active
        panes = sorted(self.main.query(ConsolePane), key=lambda pane: pane.id != shown)
        tabs = ("1-5", ", ".join(pane.TAB_TITLE[2:] for pane in PANES))
        everywhere = [
            tabs,
            *((key_name(b.key), b.description) for b in Binding.make_bindings(GLOBAL_KEYS)),
        ]
        sections = [
            (
                f"{pane.TAB_TITLE[2:]} tab" + (" (this one)" if pane.id == shown else ""),
                [(key_name(b.key), b.description) for b in pane.offered_keys()],
            )
            for pane in panes
        ]
        sections.insert(1, ("Everywhere", everywhere))
        self.push_screen(HelpScreen(sections))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for pane in PANES:
            yield SystemCommand(
                f"Go to {pane.TAB_ID}",
                f"show the {pane.TAB_ID} tab",
                lambda t=pane.TAB_ID: self.action_tab(t),
            )
        if not self.read_only:
            tickets, proposals = self.pane(TicketsPane), self.pane(ProposalsPane)
            yield SystemCommand("File a ticket", "ask the help desk", tickets.action_new_ticket)
            yield SystemCommand(
                "Approve the selected proposal", "merge it into the canon", proposals.action_approve
            )
            yield SystemCommand(
                "Reject the selected proposal", "with a reason", proposals.action_reject
            )

    # what the panes ask for --------------------------------------------------------

    def _act(
        self, make: Callable[[HubLink], Awaitable[Any]], done: str | Callable[[Any], str]
    ) -> None:
        """Run an action on the hub; show ``done`` (or what it makes of the action's
        result) or the hub's refusal."""
        if self.read_only:
            return
        link = self.link
        if link is None:
            self._show_flash("not connected", error=True)
            return

        async def run() -> None:
            try:
                result = await make(link)
            except HubError as exc:
                self._show_flash(f"refused: {exc.message}", error=True)
                return
            self._show_flash(done if isinstance(done, str) else done(result))

        self.run_worker(run(), group="actions")

    @on(RoomsPane.Opened)
    def _room_opened(self, message: RoomsPane.Opened) -> None:
        self.state.open_room(message.room)
        self._show("rooms")

    @on(RoomsPane.Post)
    def _post(self, message: RoomsPane.Post) -> None:
        room, text = message.room, message.text
        self._act(lambda link: link.post(room, text), f"posted in {room}")

    @on(RoomsPane.Pause)
    def _pause(self, message: RoomsPane.Pause) -> None:
        room, reason = message.room, message.reason
        self._act(lambda link: link.pause(room, reason), f"{room} paused")

    @on(RoomsPane.Resume)
    def _resume(self, message: RoomsPane.Resume) -> None:
        room = message.room
        self._act(lambda link: link.resume(room), f"{room} resumed")

    @on(AgentsPane.Mute)
    def _mute(self, message: AgentsPane.Mute) -> None:
        agent, seconds, reason = message.agent, message.seconds, message.reason
        self._act(lambda link: link.mute(agent, seconds, reason), f"{agent} muted")

    @on(AgentsPane.Unmute)
    def _unmute(self, message: AgentsPane.Unmute) -> None:
        agent = message.agent
        self._act(lambda link: link.unmute(agent), f"{agent} unmuted")

    @on(QueuePane.Decide)
    def _decide(self, message: QueuePane.Decide) -> None:
        item, decision, reason = message.item, message.decision, message.reason
        done = {"release": "released", "drop": "dropped", "clear": "cleared"}[decision]
        self._act(lambda link: link.decide(item, decision, reason), f"#{item} {done}")

    @on(TicketsPane.File)
    def _file_ticket(self, message: TicketsPane.File) -> None:
        title, body = message.title, message.body
        self._act(lambda link: link.file_ticket(title, body), "ticket filed")

    @on(ProposalsPane.Review)
    def _review(self, message: ProposalsPane.Review) -> None:
        self._review_as(message.proposal_id, message.decision, reason=message.reason)

    def _review_as(
        self, pid: int, decision: ReviewDecision, *, reason: str = "", content: str | None = None
    ) -> None:
        self._act(
            lambda link: link.review(pid, decision, reason=reason, content=content),
            lambda reviewed: reviewed_text(reviewed, DONE[decision]),
        )

    @on(ProposalsPane.Revert)
    def _revert(self, message: ProposalsPane.Revert) -> None:
        pid, reason = message.proposal_id, message.reason
        self._act(
            lambda link: link.revert(pid, reason),
            lambda done: (
                f"proposal #{pid} reverted: {done.path} v{done.version} restores "
                + (f"v{done.restores}" if done.restores else "no text")
            ),
        )

    @on(ProposalsPane.Edit)
    def _edit(self, message: ProposalsPane.Edit) -> None:
        """Open the editor on the proposal's text; Ctrl+S there approves it edited."""
        link, pid = self.link, message.proposal_id
        if link is None or self.read_only:
            return

        async def open_editor() -> None:
            try:
                path, text = await link.editable(pid)
            except HubError as exc:
                self._show_flash(f"refused: {exc.message}", error=True)
                return
            except PatchError as exc:
                self._show_flash(f"cannot edit: {exc.message}", error=True)
                return

            def approve(edited: str | None) -> None:
                if edited is not None:
                    self._review_as(pid, "edit", content=edited)

            self.push_screen(EditorScreen(f"Edit #{pid} {path}", text), approve)

        self.run_worker(open_editor(), group="actions")

    @on(ProposalsPane.DiffWanted)
    def _load_diff(self, message: ProposalsPane.DiffWanted) -> None:
        link, pid = self.link, message.proposal_id
        if link is None:
            return

        async def load() -> None:
            try:
                await link.proposal(pid)
            except HubError as exc:
                self._show_flash(f"refused: {exc.message}", error=True)
            self._changed("proposals")

        self.run_worker(load(), group="diff", exclusive=True)


def reviewed_text(proposal: ProposalInfo, done: str) -> str:
    """What the flash line says of a review: what it did, and for a merge where it went
    (an approval that found the canon moved on is a conflict, not a merge)."""
    if proposal.merged_version is not None:
        return (
            f"proposal #{proposal.id} {done}: merged as {proposal.path} v{proposal.merged_version}"
        )
    if proposal.status is ProposalStatus.CONFLICT:
        return f"proposal #{proposal.id} is a conflict: {proposal.reason}"
    return f"proposal #{proposal.id} {done}"


def key_name(key: str) -> str:
    """A binding's key as the moderator types it."""
    return key.replace("question_mark", "?").replace("slash", "/").replace("escape", "Esc")
