"""Which turns draft a proposal, and how a drafting turn's title and body become one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from botarena.agents import drafting
from botarena.agents.actions import DraftAction
from botarena.agents.scheduler import Turn
from botarena.agents.turn import not_prose
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


def written(title: str, body: str, kind: str = "tutorial") -> DraftAction:
    return DraftAction(kind=kind, title=title, body=body)


def test_a_request_or_every_nth_quiet_turn_drafts_but_never_a_ticket() -> None:
    education, external, compiler = (charters()[n] for n in ("education", "external", "compiler"))
    asked = Turn("maria", "education", "mention", message("@maria please propose a lesson"))
    assert drafting.plan(asked, education, 1) == drafting.DraftPlan(("tutorial", "document"))
    named = Turn("maria", "education", "mention", message("@maria draft a document on it"))
    assert drafting.plan(named, education, 1) == drafting.DraftPlan(("document",))
    chat = Turn("maria", "education", "mention", message("@maria how are you?"))
    assert drafting.plan(chat, education, 1) is None
    # compiler may propose patches and documents: a request gets a document
    assert drafting.plan(
        Turn("ada", "compiler", "mention", message("@ada draft the API notes", room="compiler")),
        compiler,
        1,
    ) == drafting.DraftPlan(("document",))

    announced = message(ticket_announcement(12, "Disk", "Is it full?"), room="external")
    ticket_turn = Turn("sage", "external", "ticket", announced, ticket=12)
    assert drafting.plan(ticket_turn, external, 1) is None  # answered from the knowledge
    asked_there = Turn("sage", "external", "mention", message("@sage propose a fix"))
    assert drafting.plan(asked_there, external, 1) is None  # no new texts at the help desk

    every = education.draft_every
    assert every > 0
    quiet = Turn("maria", "education", "initiative", None)
    drafts = [n for n in range(1, 3 * every + 1) if drafting.plan(quiet, education, n)]
    assert drafts == [every, 2 * every, 3 * every]
    assert drafting.plan(quiet, external, every) is None  # no new texts at the help desk


def test_a_title_and_body_become_a_draft_at_its_own_path() -> None:
    plan = drafting.DraftPlan(("tutorial",))
    body = "When a backup fails, wait a minute.\nThen try again twice."
    draft = drafting.from_action(written("## Retrying backups", body), plan, "maria")
    assert isinstance(draft, drafting.Draft)
    assert (draft.kind, draft.title) == ("tutorial", "Retrying backups")
    assert draft.content == body + "\n"
    assert draft.path.startswith("tutorials/retrying-backups-maria-") and draft.path.endswith(".md")
    again = drafting.from_action(
        written("Retrying backups", body.replace("twice", "three times")), plan, "maria"
    )
    assert isinstance(again, drafting.Draft) and again.path != draft.path  # no accidental clash

    document = drafting.from_action(
        written("Disk space", "Check the free space before the nightly backup runs.", "document"),
        drafting.DraftPlan(("tutorial", "document")),
        "maria",
    )
    assert isinstance(document, drafting.Draft) and document.path.startswith("docs/disk-space-")
    unasked = drafting.from_action(
        written("Disk space", "Check the free space before every backup.", "document"), plan, "m"
    )
    assert isinstance(unasked, drafting.Draft) and unasked.kind == "tutorial"

    script = drafting.from_action(
        written("Rotate logs", "find /var/log -mtime +7 -delete < /dev/null # old logs", "script"),
        drafting.DraftPlan(("script",)),
        "grace",
    )
    assert isinstance(script, drafting.Draft) and script.path.startswith("scripts/rotate-logs-")
    assert script.path.endswith(".sh")

    assert drafting.from_action(written("Title", "ok then"), plan, "maria") == (
        "too short to propose"
    )
    assert drafting.from_action(written("Backups", "Backups"), plan, "m") == "too short to propose"


def test_a_draft_that_echoes_the_prompt_has_no_title_or_is_not_prose_is_refused() -> None:
    plan = drafting.DraftPlan(("tutorial",))
    week = "Back up the data every night and keep a week of copies."
    assert drafting.from_action(written("```", week), plan, "maria").startswith("no title")
    assert drafting.from_action(written("12 - 3", week), plan, "maria").startswith("no title")
    echo = "Chat so far:\nmod: back up?\nAnswer mod in one or two sentences."
    assert drafting.from_action(written("Backups", echo), plan, "maria") == (
        "the model echoed its instructions"
    )
    asked = "Draft a short tutorial for the canon about this: backups"
    assert drafting.from_action(written(asked, week), plan, "maria") == (
        "the model echoed its instructions"
    )
    assert drafting.from_action(
        written("Backups", "You are Maria in the classroom today. " + week), plan, "m", ["Maria"]
    ) == ("the model echoed its instructions")
    for junk in ("<pre><code>Back up the data</code></pre> every night", week + " https://x.io"):
        assert drafting.from_action(written("Backups", junk), plan, "maria") == (
            "not plain prose (markup, a link, a placeholder or noise)"
        )
    assert drafting.from_action(written("[Your Name] on backups", week), plan, "maria") == (
        "not plain prose (markup, a link, a placeholder or noise)"
    )


def test_noise_is_no_draft_and_words_are_counted_as_words() -> None:
    """The tiny model once wrote a tutorial whose body was one 61-character token; letter
    runs inside it counted as six words."""
    plan = drafting.DraftPlan(("tutorial", "script"))
    noise = "123dNTA0TZ4LFzBJXH5GVbKYWNAk78m6Sxo9uR.vDgPnCpMjwQEUeAMaAtlA,"
    assert drafting.from_action(written("Backups", noise), plan, "maria") == (
        "not plain prose (markup, a link, a placeholder or noise)"
    )
    ids = "ab12 cd34 ef56 gh78 ij90 kl12 mn34"  # seven tokens, none a word
    assert drafting.from_action(written("Backups", ids), plan, "maria") == "too short to propose"
    french = "L'élève sauvegarde la base chaque nuit, puis vérifie la copie."
    assert isinstance(
        drafting.from_action(written("Sauvegardes", french), plan, "m"), drafting.Draft
    )
    script = "pg_dump -Fc botarena > /var/backups/db.dump && gzip -9 db.dump"
    assert isinstance(
        drafting.from_action(written("Nightly dump", script, "script"), plan, "m"), drafting.Draft
    )
    assert drafting.words("It\u2019s \u201cdone\u201d now, isn\u2019t it?") == 5
    path = "I proposed tutorials/toilette-themed-tutorial-on-backups-maria-b7ff8a.md today."
    assert not not_prose(path), "a long path is no noise"
