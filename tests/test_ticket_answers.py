"""A ticket's answer is grounded in the knowledge: the question is read from its
announcement, weak or uncovered evidence sends it to a human, and the proposal quotes the
sentences that bear on the question and names its sources on its last line."""

from __future__ import annotations

import pytest

from botarena.agents import tickets
from botarena.agents.actions import TicketAnswer
from botarena.memory.index import Hit
from botarena.memory.knowledge import content_words, names
from botarena.memory.service import Evidence
from botarena.server.protocol import ticket_announcement

pytestmark = pytest.mark.unit

PORTS = Hit(
    "ops-ports#0",
    "ops-ports",
    "runbooks",
    "Ports",
    "Defaults",
    "BotArena keeps to loopback unless told. The hub listens on port 8765 by default. "
    "The embedded LLM answers on 8790. Nothing else is opened.",
    0.91,
    0.92,
)
RESTORE = Hit(
    "ops-restore#0",
    "ops-restore",
    "runbooks",
    "Restoring a backup",
    "Steps",
    "Stop the hub first. Run botarena restore FILE with last night's archive.",
    0.84,
    0.85,
)
ASKED = "Which port is the hub on?\nOur firewall team needs to know."


def test_the_question_is_the_announcement_without_its_bookkeeping() -> None:
    announced = ticket_announcement(7, "Which port is the hub on?", "Our firewall team asks.")
    assert tickets.question(announced) == "Which port is the hub on?\nOur firewall team asks."


def test_weak_or_uncovered_evidence_leaves_nothing_to_answer_from() -> None:
    evidence = Evidence([PORTS, RESTORE], coverage=0.8)
    assert tickets.relevant(evidence, 0.83, 0.5) == [PORTS, RESTORE]
    assert tickets.relevant(evidence, 0.9, 0.5) == [PORTS]
    assert tickets.relevant(evidence, 0.95, 0.5) == []
    assert tickets.relevant(Evidence([PORTS], coverage=0.4), 0.5, 0.5) == []
    assert tickets.relevant(Evidence(), 0.5, 0.0) == []
    named = Evidence([PORTS], coverage=0.9, unknown_names=["ldap"])
    assert tickets.relevant(named, 0.5, 0.5) == []


def test_the_words_of_a_question_meet_their_other_forms_and_names_stand_out() -> None:
    assert content_words("Requiring the muted agents' backups") == {
        "requir",
        "mut",
        "agent",
        "backup",
    }
    assert content_words("require mute agent backup") == {"requir", "mut", "agent", "backup"}
    assert content_words("air-gapped sites") == content_words("air gap site")
    title = "Can moderators log in with our LDAP directory or MinIO? Slack works."
    assert names(title) == {"ldap", "minio"}  # "Slack" opens its sentence, "Can" too
    assert names("How do I bridge the desk to Slack?") == {"slack"}
    assert names("Is the four-eyes rule in BotArena?") == {"botarena"}


def test_the_task_shows_the_question_and_each_passage_under_its_label() -> None:
    task = tickets.task(7, "ada", ASKED, [PORTS, RESTORE])
    lines = task.splitlines()
    assert lines[0] == "Ticket #7 from ada: Which port is the hub on?"
    assert lines[2] == "Passages:"
    assert lines[3].startswith("[ops-ports] BotArena keeps to loopback")
    assert lines[4].startswith("[ops-restore] Stop the hub first.")
    assert tickets.labels([PORTS, RESTORE, PORTS]) == ["ops-ports", "ops-restore"]


def test_an_answer_quotes_what_bears_on_the_question_and_names_its_sources() -> None:
    said = TicketAnswer(known=True, answer="The hub uses port 8765.", sources=["ops-ports"])
    content = tickets.compose(said, [PORTS, RESTORE], ASKED, {"sage"})
    *body, last = content.rstrip().splitlines()
    assert last == "Sources: ops-ports"
    assert body[0] == "The hub uses port 8765."
    assert 'From Ports: "The hub listens on port 8765 by default."' in body
    assert "Stop the hub first" not in content  # not cited


def test_an_ungrounded_or_echoing_answer_text_is_left_out_but_the_quotes_stay() -> None:
    for junk in ("True", "42", "The weather in Lisbon is lovely today.", "Chat so far: ada"):
        said = TicketAnswer(known=True, answer=junk, sources=[])  # nothing cited: the best
        content = tickets.compose(said, [PORTS, RESTORE], ASKED, {"sage"})
        assert junk not in content
        assert content.startswith('From Ports: "The hub listens on port 8765 by default."')
        assert content.rstrip().endswith("Sources: ops-ports")


def test_of_two_cited_passages_those_that_bear_on_the_question_are_quoted() -> None:
    said = TicketAnswer(known=True, answer="", sources=["ops-restore", "ops-ports"])
    both = "Which port is the hub on, and how do I restore last night's backup?"
    content = tickets.compose(said, [PORTS, RESTORE], both, set())
    assert content.rstrip().splitlines()[-1] == "Sources: ops-ports, ops-restore"
    assert content.index("From Ports") < content.index("From Restoring a backup")
    # "hub" alone is a weak link: the passage on ports is not quoted for a restore
    restore = "How do I restore the hub from last night's backup?"
    content = tickets.compose(said, [PORTS, RESTORE], restore, set())
    assert content.rstrip().splitlines()[-1] == "Sources: ops-restore"
    assert "8765" not in content


def test_a_models_doubt_counts_unless_the_best_passage_is_sure() -> None:
    doubt = TicketAnswer(known=False, answer="", sources=[])
    assert not tickets.answered(doubt, [RESTORE], sure_similarity=0.88)
    assert tickets.answered(doubt, [PORTS], sure_similarity=0.88)
    assert not tickets.answered(doubt, [PORTS], sure_similarity=1.0)
    assert tickets.answered(TicketAnswer(known=True, answer="", sources=[]), [RESTORE], 0.88)
    said = tickets.unknown(7, "nothing in the knowledge base answers it")
    assert said == (
        "I do not know the answer to ticket #7: nothing in the knowledge base answers it. "
        "I handed it to a moderator."
    )
