"""The Proposals tab: the agents' proposals, newest first, filtered by arena (``f``) and
state (``s``: pending, all, approved, rejected, conflict), conflicts and stale proposals
marked, the selected one's diff against the canon below (for a ticket answer, the
sources it names on its last ``Sources:`` line too, apart and highlighted); ``a``
approves (after a confirmation), ``x`` rejects with a reason, ``e`` edits then approves,
``v`` reverts an approved one (a new canon version with the text from before it).
Reviews, edits, reverts and the diffs it lacks are posted up as messages: the app asks
the hub and the proposal comes back through the state. Without a hub
(:attr:`ProposalsPane.hub_linked` false) the content shows instead of a diff."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, RichLog, Static

from botarena.arenas.names import ARENAS, ProposalKind, ProposalStatus
from botarena.server.protocol import ProposalDetail, ProposalInfo, ReviewDecision
from botarena.tui.markup import colour, styled
from botarena.tui.pane import ConsolePane
from botarena.tui.screens import ConfirmScreen, Field, FormScreen
from botarena.tui.sources import sources_line, split_sources
from botarena.tui.state import ConsoleState
from botarena.tui.table import KeyedTable, Row

STATUS_FILTERS = (
    ProposalStatus.PENDING,
    None,
    ProposalStatus.APPROVED,
    ProposalStatus.REJECTED,
    ProposalStatus.CONFLICT,
)
STATUS_STYLE = {
    ProposalStatus.CONFLICT: "bold red",
    ProposalStatus.APPROVED: "green",
    ProposalStatus.REJECTED: "dim",
}


class ProposalsPane(ConsolePane):
    """The filter line, the proposals table and the selected proposal's diff."""

    DEFAULT_CSS = """
    ProposalsPane {
        #proposal-filter { height: 1; padding: 0 1; }
        #proposal-table { height: 1fr; }
        #proposal-detail { height: 1fr; border-top: solid $primary-background; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
        Binding("e", "edit", "Edit"),
        Binding("v", "revert", "Revert"),
        Binding("f", "arena_filter", "Arena"),
        Binding("s", "status_filter", "State"),
    ]
    TAB_ID = "proposals"
    TAB_TITLE = "3 Proposals"
    DRAWS_FROM = frozenset({"proposals"})
    WRITE_ACTIONS = frozenset({"approve", "reject", "edit", "revert"})
    FOCUS = "#proposal-table"

    arena_filter: reactive[str | None] = reactive(None, init=False)
    """The arena shown, or every arena."""
    status_filter: reactive[str | None] = reactive(ProposalStatus.PENDING, init=False)
    """The state shown, or every state."""

    @dataclass
    class Review(Message):
        """Review a proposal: ``approve``, or ``reject`` with a reason."""

        proposal_id: int
        decision: ReviewDecision
        reason: str = ""

    @dataclass
    class Edit(Message):
        """Open the editor on a proposal, to approve it edited."""

        proposal_id: int

    @dataclass
    class Revert(Message):
        """Undo an approved proposal with a new canon version, for ``reason``."""

        proposal_id: int
        reason: str

    @dataclass
    class DiffWanted(Message):
        """Read a proposal again with its diff against the canon."""

        proposal_id: int

    def __init__(self, state: ConsoleState, *, read_only: bool = False) -> None:
        super().__init__(state, read_only=read_only)
        self.hub_linked = False  # a hub to read diffs from
        self._diff_for: tuple[int, str] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="proposal-filter")
            yield KeyedTable(
                "#", "state", "arena", "kind", "author", "path", "title", id="proposal-table"
            )
            yield RichLog(id="proposal-detail", wrap=False, markup=True, min_width=20)

    @property
    def selected(self) -> ProposalInfo | None:
        key = self.query_one(KeyedTable).selected
        return self.state.proposals.get(int(key)) if key else None

    # drawing -----------------------------------------------------------------------

    def watch_arena_filter(self) -> None:
        self.draw()

    def watch_status_filter(self) -> None:
        self.draw()

    def draw(self) -> None:
        self.query_one("#proposal-filter", Static).update(
            f"arena [b]{self.arena_filter or 'all'}[/b] (f) · "
            f"state [b]{self.status_filter or 'all'}[/b] (s)"
        )
        rows: list[Row] = []
        for p in sorted(self.state.proposals.values(), key=lambda p: -p.id):
            if (self.arena_filter is not None and p.arena != self.arena_filter) or (
                self.status_filter is not None and p.status != self.status_filter
            ):
                continue
            stale = isinstance(p, ProposalDetail) and p.stale
            status = (
                str(p.status) + (" (stale)" if stale else "") + (" (edited)" if p.edited else "")
            )
            style = STATUS_STYLE.get(p.status, "yellow" if stale else "")
            cells = (
                str(p.id),
                styled(status, style),
                p.arena,
                str(p.kind),
                styled(p.author, colour(p.author)),
                escape(p.path),
                escape(p.title)[:40],
            )
            rows.append((str(p.id), cells))
        self.query_one(KeyedTable).fill(rows)
        self._draw_detail()

    @on(DataTable.RowHighlighted)
    def _draw_detail(self) -> None:
        log = self.query_one("#proposal-detail", RichLog)
        proposal = self.selected
        log.clear()
        if proposal is None:
            log.write("no proposal selected")
            return
        detail = proposal if isinstance(proposal, ProposalDetail) else None
        log.write(
            f"[b]#{proposal.id} {escape(proposal.title)}[/b] by {escape(proposal.author)}"
            f" in {proposal.arena}: {proposal.kind} on {escape(proposal.path)}, based on "
            f"v{proposal.base_version}" + (f", canon at v{detail.canon_version}" if detail else "")
        )
        if proposal.reason:
            log.write(f"[b]{proposal.status}[/b]: {escape(proposal.reason)}")
        if proposal.merged_version is not None:
            edited = f", edited by {escape(proposal.reviewed_by or '?')}" if proposal.edited else ""
            log.write(
                f"[b]merged as v{proposal.merged_version}{edited}[/b]: the diff shows what the"
                " canon took"
            )
        if detail and detail.reverted_in:
            log.write(f"[bold yellow]reverted in v{detail.reverted_in}[/]")
        if detail and detail.attachments:
            files = ", ".join(f"{a.name} ({a.size} bytes)" for a in detail.attachments)
            log.write(f"attachments: {escape(files)}")
        content = proposal.content
        if proposal.kind == ProposalKind.TICKET_ANSWER:
            content, sources = split_sources(content)
            log.write(sources_line(sources))
        if detail is None and not self.hub_linked:
            log.write(escape(content))  # no hub to diff against
            return
        if detail is None:
            wanted = (proposal.id, proposal.status)
            if self._diff_for != wanted:  # asked once per proposal and state
                self._diff_for = wanted
                self.post_message(self.DiffWanted(proposal.id))
            log.write("[dim]loading the diff…[/]")
            return
        for line in detail.diff.splitlines():
            log.write(styled(line, diff_style(line)))

    # keys --------------------------------------------------------------------------

    def action_approve(self) -> None:
        """Ask first: an approval merges into the append-only canon for good."""
        proposal = self.selected
        if not proposal:
            return
        pid = proposal.id

        def approve(sure: bool | None) -> None:
            if sure:
                self.post_message(self.Review(pid, "approve"))

        self.app.push_screen(
            ConfirmScreen(f"Approve proposal #{pid}?", approval(proposal)), approve
        )

    def action_reject(self) -> None:
        proposal = self.selected
        if not proposal:
            return
        pid = proposal.id

        def reject(values: dict[str, str] | None) -> None:
            if values is not None:
                self.post_message(self.Review(pid, "reject", values["reason"]))

        self.app.push_screen(
            FormScreen(f"Reject proposal #{pid}", [Field("reason", "reason")]), reject
        )

    def action_revert(self) -> None:
        """Undo an approval the canon's way: a new version with the text from before it."""
        proposal = self.selected
        if not proposal:
            return
        merged = proposal.merged_version
        if proposal.status != ProposalStatus.APPROVED or merged is None:
            self.flash(
                f"proposal #{proposal.id} is {proposal.status}: nothing to revert", error=True
            )
            return
        pid = proposal.id

        def revert(values: dict[str, str] | None) -> None:
            if values is not None:
                self.post_message(self.Revert(pid, values["reason"]))

        before = f"the text of v{merged - 1}" if merged > 1 else "no text (the merge made it)"
        self.app.push_screen(
            FormScreen(
                f"Revert proposal #{pid}: v{merged + 1} of {proposal.path} gets {before}",
                [Field("reason", "reason (audited)")],
            ),
            revert,
        )

    def action_edit(self) -> None:
        proposal = self.selected
        if proposal:
            self.post_message(self.Edit(proposal.id))

    def action_arena_filter(self) -> None:
        order = [None, *ARENAS]
        self.arena_filter = order[(order.index(self.arena_filter) + 1) % len(order)]

    def action_status_filter(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]


def approval(proposal: ProposalInfo) -> list[str]:
    """What a moderator confirms an approval on: the title, where it goes, how big it is."""
    if isinstance(proposal, ProposalDetail):
        changed = [line[:1] for line in proposal.diff.splitlines()[2:] if line[:1] in "+-"]
        size = (
            f"+{changed.count('+')} -{changed.count('-')} lines against v{proposal.canon_version}"
        )
    else:
        size = f"{len(proposal.content.splitlines())} lines (the diff is not loaded yet)"
    return [
        escape(proposal.title),
        f"by {escape(proposal.author)} in {proposal.arena}: {proposal.kind} on"
        f" [b]{escape(proposal.path)}[/b]",
        size,
        "It becomes a new canon version for good: the canon is append-only, so it can only be"
        " undone by another version.",
    ]


def diff_style(line: str) -> str:
    """The colour of a unified diff's line: added, removed, a hunk header, or none."""
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    return "cyan" if line.startswith("@@") else ""
