"""Which turns draft a proposal, and how a tiny model's reply becomes one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from botarena.agents import drafting
from botarena.agents.scheduler import Turn
from botarena.arenas.charter import charters
from botarena.server.protocol import Message, Role, ticket_announcement

pytestmark = pytest.mark.unit


def message(text: str, role: Role = Role.MODERATOR, room: str = "education") -> Message:
    return Message(
        id=7,
        room=room,
        author="mod" if role is not Role.AGENT else "ada",
        author_role=role,
        text=text,
        created_at=datetime.now(UTC),
    )


def test_a_request_a_ticket_or_every_nth_quiet_turn_drafts() -> None:
    education, external, compiler = (charters()[n] for n in ("education", "external", "compiler"))
    asked = Turn("maria", "education", "mention", message("@maria please propose a lesson"))
    assert drafting.plan(asked, education, 1) == drafting.DraftPlan("tutorial")
    chat = Turn("maria", "education", "mention", message("@maria how are you?"))
    assert drafting.plan(chat, education, 1) is None
    # compiler may propose patches and documents: a request gets a document
    assert drafting.plan(
        Turn("ada", "compiler", "mention", message("@ada draft the API notes", room="compiler")),
        compiler,
        1,
    ) == drafting.DraftPlan("document")

    announced = message(ticket_announcement(12, "Disk", "Is it full?"), room="external")
    ticket_turn = Turn("sage", "external", "reply", announced)
    assert drafting.plan(ticket_turn, external, 1) == drafting.DraftPlan(
        "ticket_answer", "tickets/12", 12
    )
    spoofed = message(ticket_announcement(12, "x", "y"), role=Role.AGENT, room="external")
    assert drafting.plan(Turn("sage", "external", "reply", spoofed), external, 1) is None

    every = education.draft_every
    assert every > 0
    quiet = Turn("maria", "education", "initiative", None)
    drafts = [n for n in range(1, 3 * every + 1) if drafting.plan(quiet, education, n)]
    assert drafts == [every, 2 * every, 3 * every]
    assert drafting.plan(quiet, external, every) is None  # no new texts at the help desk


def test_a_reply_becomes_a_titled_draft_at_its_own_path() -> None:
    plan = drafting.DraftPlan("tutorial")
    raw = "## Title: Retrying backups\n\nWhen a backup fails, wait a minute.\nThen try again twice."
    draft = drafting.parse(raw, plan, "maria")
    assert isinstance(draft, drafting.Draft)
    assert draft.title == "Retrying backups"
    assert draft.content == "When a backup fails, wait a minute.\nThen try again twice.\n"
    assert draft.path.startswith("tutorials/retrying-backups-maria-") and draft.path.endswith(".md")
    again = drafting.parse(raw.replace("twice", "three times"), plan, "maria")
    assert isinstance(again, drafting.Draft) and again.path != draft.path  # no accidental clash

    one_line = drafting.parse(
        "Backups fail when the disk is full, so check space first.", plan, "m"
    )
    assert isinstance(one_line, drafting.Draft) and "disk is full" in one_line.content

    script = drafting.parse(
        "Rotate logs\nfind /var/log -mtime +7 -delete # old logs",
        drafting.DraftPlan("script"),
        "grace",
    )
    assert isinstance(script, drafting.Draft) and script.path.startswith("scripts/rotate-logs-")
    assert script.path.endswith(".sh")

    ticket = drafting.parse(
        "Yes, at 91%. Delete old backups first.",
        drafting.DraftPlan("ticket_answer", "tickets/3", 3),
        "sage",
    )
    assert isinstance(ticket, drafting.Draft)
    assert (ticket.path, ticket.title) == ("tickets/3", "Answer to ticket #3")
    assert ticket.content == "Yes, at 91%. Delete old backups first.\n"

    assert drafting.parse("   ", plan, "maria") == "empty draft"
    assert drafting.parse("Title\nok then", plan, "maria") == "too short to propose"


def test_drafting_instructions_name_the_tool_only_when_there_is_one() -> None:
    plan = drafting.DraftPlan("ticket_answer", "tickets/3", 3)
    assert "propose tool" in drafting.instructions(plan, with_tool=True)
    assert "tickets/3" in drafting.instructions(plan, with_tool=True)
    assert "propose tool" not in drafting.instructions(plan, with_tool=False)
    assert "First line: its title" in drafting.instructions(
        drafting.DraftPlan("tutorial"), with_tool=False
    )


def test_a_draft_that_echoes_the_prompt_or_has_no_title_is_refused() -> None:
    plan = drafting.DraftPlan("tutorial")
    fenced = "```\nThis is one short chat message in plain text, as the task asked.\n```"
    assert drafting.parse(fenced, plan, "maria") == "the model echoed its instructions"
    backticks = "```\nBack up the data every night and keep a week of copies.\n```"
    assert drafting.parse(backticks, plan, "maria").startswith("no title")
    first_line = (
        'You are Maria in the "education" room of a team chat.\n'
        "Back up the data every night and keep a week of copies."
    )
    assert drafting.parse(first_line, plan, "maria") == "the model echoed its instructions"
    assert drafting.parse(
        "You are Maria in the classroom today.\nBack up every night, keep a week of copies.",
        plan,
        "m",
        names=["Maria"],
    ) == ("the model echoed its instructions")
    in_body = "Backups\nReply to mod's last message. Write one short chat message about it."
    assert drafting.parse(in_body, plan, "maria") == "the model echoed its instructions"
    ticket = drafting.DraftPlan("ticket_answer", "tickets/3", 3)
    answer = "Write an answer to the ticket: a few plain sentences a person can act on."
    assert drafting.parse(answer, ticket, "sage") == "the model echoed its instructions"
