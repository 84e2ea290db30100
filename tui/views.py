"""The console's views: each tab drawn from the :class:`ConsoleState`.

:class:`ConsoleViews` is the drawing half of the console app: the status line, the room
list and stream, and the agents, proposals, tickets and health tabs. It redraws only
what changed (the link marks what it touched; a table is refilled only when its rows
differ, keeping the cursor on its row), a few times a second, so a busy hub never
floods the terminal.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from textual.css.query import NoMatches
from textual.widgets import DataTable, Label, ListItem, ListView, RichLog, Sparkline, Static

from botarena.server.client import HubCallError

if TYPE_CHECKING:
    from textual.screen import Screen

    from botarena.tui.link import HubLink
    from botarena.tui.state import ConsoleState

COLOURS = ("cyan", "magenta", "green", "yellow", "bright_blue", "bright_red", "orange1", "orchid")
STATE_STYLE = {
    "error": "bold red",
    "muted": "yellow",
    "offline": "dim",
    "degraded": "orange1",
    "speaking": "bold green",
    "thinking": "cyan",
}


def colour(name: str) -> str:
    return COLOURS[zlib.crc32(name.encode()) % len(COLOURS)]


def styled(text: str, style: str) -> str:
    """``text`` as console markup (escaped), in ``style`` when there is one."""
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


class ConsoleViews:
    """Drawing for :class:`tui.app.ConsoleApp` (a mixin: the app holds the state)."""

    state: ConsoleState
    link: HubLink | None
    read_only: bool
    message_filter: str
    arena_filter: str | None
    status_filter: str | None
    _dirty: set[str]
    _shown: tuple[str | None, str, int]
    _room_items: dict[str, Label]
    _rows: dict[str, list[tuple[str, tuple[str, ...]]]]
    _diff_for: int | None

    if TYPE_CHECKING:

        @property
        def main(self) -> Screen: ...

        def run_worker(self, *args: Any, **kwargs: Any) -> Any: ...

        def _show_flash(self, text: str, *, error: bool = False) -> None: ...

    def _selected(self, table_id: str) -> str | None:
        table = self.main.query_one(table_id, DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def _proposal(self) -> dict | None:
        key = self._selected("#proposal-table")
        return self.state.proposals.get(int(key)) if key else None

    def _show(self, *views: str) -> None:
        """Redraw ``views`` now: the user is waiting for them."""
        self._dirty.update(views)
        self._redraw()

    def _redraw(self) -> None:
        dirty = set(self._dirty)  # the link holds this very set's add: empty it in place
        self._dirty.clear()
        try:
            self._draw(dirty)
        except NoMatches:
            pass  # closing down: the widgets are already going

    def _draw(self, dirty: set[str]) -> None:
        if "connection" in dirty:
            self._draw_status()
        if "rooms" in dirty:
            self._draw_rooms()
        if "agents" in dirty:
            self._draw_agents()
        if "proposals" in dirty:
            self._draw_proposals()
        if "tickets" in dirty or "proposals" in dirty:  # a ticket shows its answer
            self._draw_tickets()
        if "health" in dirty or "connection" in dirty:
            self._draw_health()

    def _draw_status(self) -> None:
        s = self.state
        mark = "[bold green]●[/]" if s.connected else "[bold red]○[/]"
        who = f"{escape(s.me)} ({s.role})" if s.me else ""
        mode = "  [reverse] read-only [/]" if self.read_only else ""
        self.main.query_one("#status", Static).update(
            f"{mark} {escape(s.status)}  {who}  {escape(s.url)}{mode}"
        )

    def _draw_rooms(self) -> None:
        rooms = self.main.query_one("#room-list", ListView)
        for name, view in sorted(self.state.rooms.items(), key=lambda kv: (kv[1].kind, kv[0])):
            label = self._room_items.get(name)
            if label is None:
                label = self._room_items[name] = Label()
                rooms.append(ListItem(label, name=name))
            marks = (" · paused" if view.paused else "") + (
                f" ({view.unread})" if view.unread else ""
            )
            current = "▶ " if name == self.state.current_room else "  "
            label.update(f"{current}{escape(name)}{marks}")
        self._draw_stream()

    def _draw_stream(self) -> None:
        room = self.state.current_room
        stream = self.main.query_one("#stream", RichLog)
        if room is None:
            return
        messages = self.state.room(room).messages
        shown_room, shown_filter, shown_last = self._shown
        if (shown_room, shown_filter) != (room, self.message_filter):
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
        self._shown = (room, self.message_filter, max(last, shown_last))

    def _fill(self, table_id: str, rows: list[tuple[str, tuple[str, ...]]]) -> None:
        """Show ``rows`` (key, cells) in a table, keeping the cursor on the same row; a
        table whose rows did not change is left alone (no flicker, no new highlight)."""
        if self._rows.get(table_id) == rows:
            return
        self._rows[table_id] = rows
        table = self.main.query_one(table_id, DataTable)
        selected, cursor = self._selected(table_id), table.cursor_row
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        keys = [key for key, _ in rows]
        if keys:
            table.move_cursor(
                row=keys.index(selected) if selected in keys else min(cursor, len(keys) - 1)
            )

    def _draw_agents(self) -> None:
        rows = []
        names = sorted(set(self.state.agents) | set(self.state.standings))
        for name in names:
            state = self.state.agents.get(name, {})
            standing = self.state.standings.get(name, {})
            kind = state.get("state", "unknown")
            drift = ", ".join(f"{k} {v:+.2f}" for k, v in sorted(state.get("drift", {}).items()))
            desk = (
                ("yes" if standing.get("external") else "no") if standing.get("candidate") else "-"
            )
            cells = (
                styled(name, colour(name)),
                styled(kind, STATE_STYLE.get(kind, "")),
                escape(state.get("detail", ""))[:50],
                str(standing.get("reputation", "")),
                desk,
                drift,
            )
            rows.append((name, cells))
        self._fill("#agent-table", rows)
        self._draw_agent_detail()

    def _draw_agent_detail(self) -> None:
        agent = self._selected("#agent-table")
        detail = self.main.query_one("#agent-detail", Static)
        if agent is None:
            detail.update("no agents yet")
            return
        state = self.state.agents.get(agent, {})
        standing = self.state.standings.get(agent, {})
        ratio = standing.get("approval_ratio")
        detail.update(
            f"[b]{escape(agent)}[/b]  {escape(state.get('summary', ''))}\n"
            f"reputation {standing.get('reputation', 0)}: {standing.get('approved', 0)} approved, "
            f"{standing.get('edited', 0)} edited, {standing.get('rejected', 0)} rejected, "
            f"reactions +{standing.get('reactions_up', 0)}/-{standing.get('reactions_down', 0)}"
            + (f", approval {ratio:.0%}" if ratio is not None else "")
            + f"\nlast LLM turn: {state.get('llm_seconds') or 0:.2f} s"
        )

    def _visible_proposals(self) -> list[dict]:
        return [
            p
            for p in sorted(self.state.proposals.values(), key=lambda p: -p["id"])
            if (self.arena_filter is None or p["arena"] == self.arena_filter)
            and (self.status_filter is None or p["status"] == self.status_filter)
        ]

    def _draw_proposals(self) -> None:
        self.main.query_one("#proposal-filter", Static).update(
            f"arena [b]{self.arena_filter or 'all'}[/b] (f) · state "
            f"[b]{self.status_filter or 'all'}[/b] (s)"
        )
        rows = []
        for p in self._visible_proposals():
            status = p["status"] + (" (stale)" if p.get("stale") else "")
            style = {"conflict": "bold red", "approved": "green", "rejected": "dim"}.get(
                p["status"], "yellow" if p.get("stale") else ""
            )
            cells = (
                str(p["id"]),
                styled(status, style),
                p["arena"],
                p["kind"],
                styled(p["author"], colour(p["author"])),
                escape(p["path"]),
                escape(p["title"])[:40],
            )
            rows.append((str(p["id"]), cells))
        self._fill("#proposal-table", rows)
        self._draw_proposal_detail()

    def _draw_proposal_detail(self) -> None:
        log = self.main.query_one("#proposal-detail", RichLog)
        proposal = self._proposal()
        log.clear()
        if proposal is None:
            log.write("no proposal selected")
            return
        log.write(
            f"[b]#{proposal['id']} {escape(proposal['title'])}[/b] by {escape(proposal['author'])}"
            f" in {proposal['arena']}: {proposal['kind']} on {escape(proposal['path'])}, based on "
            f"v{proposal['base_version']}"
            + (f", canon at v{proposal['canon_version']}" if "canon_version" in proposal else "")
        )
        if proposal.get("reason"):
            log.write(f"[b]{proposal['status']}[/b]: {escape(proposal['reason'])}")
        if proposal.get("attachments"):
            files = ", ".join(f"{a['name']} ({a['size']} bytes)" for a in proposal["attachments"])
            log.write(f"attachments: {escape(files)}")
        if "diff" not in proposal and self.link is None:
            log.write(escape(proposal.get("content", "")))  # no hub to diff against
            return
        if "diff" not in proposal:
            if self._diff_for != proposal["id"]:
                self._diff_for = proposal["id"]
                self.run_worker(self._load_diff(proposal["id"]), group="diff", exclusive=True)
            log.write("[dim]loading the diff…[/]")
            return
        for line in proposal["diff"].splitlines():
            style = (
                "green"
                if line.startswith("+")
                else "red"
                if line.startswith("-")
                else "cyan"
                if line.startswith("@@")
                else ""
            )
            log.write(styled(line, style))

    async def _load_diff(self, proposal_id: int) -> None:
        assert self.link is not None
        try:
            await self.link.proposal(proposal_id)
        except HubCallError as exc:
            self._show_flash(f"refused: {exc.message}", error=True)
        self._dirty.add("proposals")

    def _draw_tickets(self) -> None:
        rows = []
        answers = self._ticket_answers()
        for t in sorted(self.state.tickets.values(), key=lambda t: -t["id"]):
            answer = answers.get(f"tickets/{t['id']}")
            progress = (
                f"#{answer['id']} {answer['status']} by {answer['author']}" if answer else "waiting"
            )
            if t["status"] == "closed" and t.get("human_intervention"):
                progress += " (human)"
            cells = (
                str(t["id"]),
                styled(t["status"], "green" if t["status"] == "closed" else "yellow"),
                escape(t["title"])[:50],
                escape(t["filed_by"]),
                progress,
            )
            rows.append((str(t["id"]), cells))
        self._fill("#ticket-table", rows)
        self._draw_ticket_detail()

    def _ticket_answers(self) -> dict[str, dict]:
        """The newest answer proposed for each ticket, by the ticket's path."""
        found: dict[str, dict] = {}
        for p in sorted(self.state.proposals.values(), key=lambda p: p["id"]):
            if p["kind"] == "ticket_answer":
                found[p["path"]] = p
        return found

    def _draw_ticket_detail(self) -> None:
        answers = self._ticket_answers()
        key = self._selected("#ticket-table")
        detail = self.main.query_one("#ticket-detail", Static)
        ticket = self.state.tickets.get(int(key)) if key else None
        if ticket is None:
            detail.update("no tickets yet" + ("" if self.read_only else " (n files one)"))
            return
        answer = answers.get(f"tickets/{ticket['id']}")
        detail.update(
            f"[b]#{ticket['id']} {escape(ticket['title'])}[/b]\n{escape(ticket['body'])}\n\n"
            + (
                f"answer #{answer['id']} ({answer['status']}):\n{escape(answer['content'])}"
                if answer
                else "no answer yet"
            )
        )

    def _draw_health(self) -> None:
        s = self.state
        self.main.query_one("#health-connection", Static).update(
            f"hub {escape(s.url)}: {'connected' if s.connected else escape(s.status)}; "
            f"{len(s.rooms)} rooms, {len(s.agents)} agents, "
            f"{sum(1 for p in s.proposals.values() if p['status'] == 'pending')} pending proposals"
        )
        self.main.query_one("#rate", Sparkline).data = s.message_rate()
        self.main.query_one("#llm", Sparkline).data = list(s.llm_seconds) or [0.0]
        deps = s.health.get("dependencies", {})
        lines = [f"status: {s.health.get('status', 'unknown')}"]
        for name, dep in sorted(deps.items()):
            mark = "[green]ok[/]" if dep.get("ok") else "[bold red]down[/]"
            extra = (
                f"{dep['latency_ms']} ms"
                if "latency_ms" in dep
                else dep.get("mode", dep.get("error", ""))
            )
            lines.append(f"{name}: {mark} {escape(str(extra))}")
        self.main.query_one("#health-deps", Static).update("\n".join(lines))
