"""The moderator console, driven with Textual's Pilot against a real hub: live messages,
reviews, the reason a rejection needs, read-only mode, and a hub restart."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RichLog, Static, TextArea

from botarena.server.client import HubClient
from botarena.server.errors import HubError
from botarena.server.store import Store
from botarena.tui.app import WRITE_ACTIONS, ConsoleApp
from botarena.tui.screens import EditorScreen, FormScreen
from tests.harness import Arena

SIZE = (140, 40)


async def until(pilot: Pilot, predicate: Callable[[], object], what: str, timeout=15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def console(arena: Arena, **options: object) -> ConsoleApp:
    token = await arena.token("mod", "moderator")
    return ConsoleApp(url=arena.url, token=token, blink=False, **options)  # type: ignore[arg-type]


def text_of(app: ConsoleApp, selector: str) -> str:
    return "\n".join(line.text for line in app.query_one(selector, RichLog).lines)


def shown(app: ConsoleApp, selector: str) -> str:
    """The text of a widget, or of the static texts inside it."""
    node = app.query_one(selector)
    parts = [node, *node.query(Static)] if not isinstance(node, Static) else [node]
    return "\n".join(str(part.render()) for part in parts if isinstance(part, Static))


async def propose(agent: HubClient, path: str = "docs/retries.md") -> dict:
    return await agent.call(
        "proposal.create",
        {
            "arena": "compiler",
            "kind": "document",
            "path": path,
            "base_version": 0,
            "title": "Retries",
            "content": "Retry twice, a minute apart.\n",
        },
    )


async def proposal_on_screen(app: ConsoleApp, pilot: Pilot, agent: HubClient) -> dict:
    """Once the console is connected, ``agent`` proposes; the console shows it selected."""
    await until(pilot, lambda: app.state.loaded, "connected")
    created = await propose(agent)
    await pilot.press("3")
    await until(pilot, lambda: created["id"] in app.state.proposals, "proposal listed")
    await pilot.pause(0.3)
    return created


async def test_an_agents_message_appears_in_the_room_view(arena: Arena) -> None:
    app = await console(arena)
    ada = await arena.client("ada", arenas=["compiler", "creative"])
    await ada.join("compiler")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.loaded, "connected")
        assert app.state.current_room == "compiler"
        said = await ada.send("compiler", "the parser handles nested brackets now")
        await until(pilot, lambda: "nested brackets" in text_of(app, "#stream"), "the message")
        assert f"#{said.id} ada the parser handles nested brackets now" in text_of(app, "#stream")
        # a message in another room counts as unread there
        await ada.join("creative")
        await ada.send("creative", "a story begins")
        await until(pilot, lambda: app.state.rooms["creative"].unread == 1, "unread count")
        await pilot.pause(0.2)
        assert "creative (1)" in shown(app, "#room-list")
        # the filter keeps matching messages only
        await ada.send("compiler", "lunch is at noon")
        await until(pilot, lambda: "lunch" in text_of(app, "#stream"), "second message")
        await pilot.press("slash", *"bracket")
        await until(pilot, lambda: "lunch" not in text_of(app, "#stream"), "filtered")
        assert "nested brackets" in text_of(app, "#stream")
        # posting as the moderator
        await pilot.press("escape", "c", *"hello agents", "enter")
        await until(pilot, lambda: app.flash == "posted in compiler", "posted")
        assert app.query_one("#compose", Input).value == ""
        history, _ = await ada.history("compiler")
        assert [m.text for m in history if m.author == "mod"] == ["hello agents"]


async def test_approving_from_the_console_changes_the_canon(arena: Arena) -> None:
    app = await console(arena)
    ada = await arena.client("ada", arenas=["compiler"])
    async with app.run_test(size=SIZE) as pilot:
        created = await proposal_on_screen(app, pilot, ada)
        await until(pilot, lambda: "+Retry twice" in text_of(app, "#proposal-detail"), "diff")
        await pilot.press("a")
        await until(pilot, lambda: "reviewed" in app.flash, "approval")
        canon = await ada.call("canon.get", {"path": "docs/retries.md"})
        assert (canon["version"], canon["content"]) == (1, "Retry twice, a minute apart.\n")
        assert app.state.proposals[created["id"]].status == "approved"


async def test_rejecting_asks_for_a_reason(arena: Arena) -> None:
    app = await console(arena)
    ada = await arena.client("ada", arenas=["compiler"])
    async with app.run_test(size=SIZE) as pilot:
        created = await proposal_on_screen(app, pilot, ada)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, FormScreen), "the reason dialog")
        await pilot.press("enter")  # no reason: refused in the dialog
        await pilot.pause(0.1)
        assert isinstance(app.screen, FormScreen)
        assert "needed: reason" in str(app.screen.query_one("#form-error").render())
        await pilot.press(*"too vague", "enter")
        await until(pilot, lambda: "rejected" in app.flash, "rejection")
        got = await ada.call("proposal.get", {"id": created["id"]})
        assert (got["status"], got["reason"]) == ("rejected", "too vague")

        # a refusal from the hub is shown: reviewing it again
        await pilot.press("s")  # state filter: all
        await pilot.pause(0.3)
        await pilot.press("a")
        await until(pilot, lambda: "refused" in app.flash, "the hub's refusal")
        assert f"proposal {created['id']} is already rejected" in app.flash


async def test_read_only_mode_offers_no_action(arena: Arena) -> None:
    app = await console(arena, read_only=True)
    ada = await arena.client("ada", arenas=["compiler"])
    created = await propose(ada)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: created["id"] in app.state.proposals, "proposal listed")
        for tab in ("1", "2", "3", "4"):
            await pilot.press(tab)
            await pilot.pause(0.1)
            offered = {b.binding.action for b in app.screen.active_bindings.values()}
            assert not offered & WRITE_ACTIONS, offered
        assert not app.query_one("#compose", Input).display
        await pilot.press("3", "a", "x", "e")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, FormScreen)
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert not [c for c in commands if "Approve" in c or "Reject" in c or "File" in c]
        assert "Go to proposals" in commands
        assert "read-only" in shown(app, "#status")
    got = await ada.call("proposal.get", {"id": created["id"]})
    assert got["status"] == "pending"


async def test_a_hub_restart_shows_disconnected_then_the_missed_messages(
    hub_factory, free_port: int
) -> None:
    first = await hub_factory(port=free_port)
    app = await console(first)
    writer_token = await first.token("writer", arenas=["compiler"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.loaded, "connected, rooms joined")
        await first.stop()
        await until(pilot, lambda: "disconnected" in shown(app, "#status"), "disconnected shown")
        store = await Store.open(first.store.url)  # messages while the console is away
        writer = await store.principals.get("writer")
        assert writer is not None and writer_token
        await store.messages.post("compiler", writer, "written while you were away")
        await store.close()
        await hub_factory(port=free_port)
        await until(pilot, lambda: "● connected" in shown(app, "#status"), "reconnected", 30)
        await until(
            pilot, lambda: "while you were away" in text_of(app, "#stream"), "missed message"
        )
        lines = text_of(app, "#stream").splitlines()
        assert sum("while you were away" in line for line in lines) == 1


async def test_a_ticket_is_filed_and_followed_to_its_answer(arena: Arena) -> None:
    app = await console(arena)
    sage = await arena.client("sage", arenas=["external"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.loaded, "connected")
        await pilot.press("4", "n")
        await until(pilot, lambda: isinstance(app.screen, FormScreen), "the ticket dialog")
        await pilot.press(*"Disk", "enter", *"Is it full?", "enter")
        await until(pilot, lambda: app.state.tickets, "ticket listed")
        (ticket,) = app.state.tickets.values()
        assert (ticket.title, ticket.status) == ("Disk", "open")

        def row() -> str:
            table = app.query_one("#ticket-table", DataTable)
            return " ".join(map(str, table.get_row_at(0))) if table.row_count else ""

        await until(pilot, lambda: "waiting" in row(), "the ticket waiting for an answer")
        answer = await sage.call(
            "proposal.create",
            {
                "arena": "external",
                "kind": "ticket_answer",
                "path": f"tickets/{ticket.id}",
                "base_version": 0,
                "title": "Answer",
                "content": "No: 41% used.",
            },
        )
        await until(pilot, lambda: f"#{answer['id']} pending by sage" in row(), "answer shown")
        await pilot.press("3")
        await until(pilot, lambda: answer["id"] in app.state.proposals, "answer listed")
        await pilot.pause(0.3)
        await pilot.press("a")
        await until(pilot, lambda: app.state.tickets[ticket.id].status == "closed", "closed")
        await pilot.press("4")
        await until(pilot, lambda: "approved" in row(), "the approved answer shown")
        assert "No: 41% used." in shown(app, "#ticket-detail")


async def test_muting_an_agent_from_the_console(arena: Arena) -> None:
    app = await console(arena)
    ada = await arena.client("ada", arenas=["compiler"])
    await ada.call("agent.state", {"state": "idle", "summary": "Ada, compiler engineer"})
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "ada" in app.state.agents, "ada listed")
        await pilot.press("2")
        await until(pilot, lambda: "compiler engineer" in shown(app, "#agent-detail"), "summary")
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, FormScreen), "the mute dialog")
        await pilot.press("enter", *"off topic", "enter")  # 10 minutes, a reason
        await until(pilot, lambda: app.flash == "ada muted", "muted")
        await ada.join("compiler")
        with pytest.raises(HubError, match="muted"):
            await ada.send("compiler", "still here?")
        await pilot.press("u")
        await until(pilot, lambda: app.flash == "ada unmuted", "unmuted")
        await ada.send("compiler", "back again")


async def test_the_token_is_asked_for_and_a_bad_one_is_refused(arena: Arena) -> None:
    token = await arena.token("mod", "moderator")
    app = ConsoleApp(url=arena.url, token=None, blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FormScreen), "the token prompt")
        await pilot.press(*token, "enter")
        await until(pilot, lambda: app.state.loaded, "connected with the typed token")
        assert "mod (moderator)" in shown(app, "#status")

    refused = ConsoleApp(url=arena.url, token="bat_not-a-real-token", blink=False)
    async with refused.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "unknown token" in refused.flash, "the refusal")
        await pilot.pause(0.2)
        assert "refused: unknown token" in shown(refused, "#status")
        assert not refused.state.connected


async def test_edit_then_approve_in_the_consoles_editor(arena: Arena) -> None:
    app = await console(arena)
    ada = await arena.client("ada", arenas=["compiler"])
    async with app.run_test(size=SIZE) as pilot:
        created = await proposal_on_screen(app, pilot, ada)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EditorScreen), "the editor")
        assert app.screen.query_one(TextArea).text == "Retry twice, a minute apart.\n"
        await pilot.press("down", *"Checked by mod.", "ctrl+s")
        await until(pilot, lambda: "edited and reviewed" in app.flash, "the edited approval")
        got = await ada.call("proposal.get", {"id": created["id"]})
        assert (got["status"], got["edited"]) == ("approved", True)
        canon = await ada.call("canon.get", {"path": "docs/retries.md"})
        assert canon["content"] == "Retry twice, a minute apart.\nChecked by mod."
