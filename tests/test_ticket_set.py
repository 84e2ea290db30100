"""The answer-quality benchmark's question set (``tests/bench/tickets.json``), checked
against the demo knowledge pack it is written for, so the two cannot drift apart: every
fact an answerable ticket expects is in the pack document named as its source, the key
terms of an unanswerable ticket's answer are in no document of the pack, and the set has
the size and shape ``tests/bench/quality_bench.py`` relies on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from botarena.memory.knowledge import load_pack, read_document
from tests.bench.quality_bench import DEMO_PACK, TICKETS_FILE, contains, load_tickets

pytestmark = pytest.mark.unit

TICKETS = load_tickets(TICKETS_FILE)
ANSWERABLE = [t for t in TICKETS if t["answerable"]]
UNANSWERABLE = [t for t in TICKETS if not t["answerable"]]


def pack_texts() -> dict[str, str]:
    """Each document of the demo pack by file name: its title and body."""
    texts = {}
    for path in sorted(DEMO_PACK.glob("*.md")):
        front, body = read_document(path)
        texts[path.name] = f"{front.title}\n{body}"
    return texts


PACK = pack_texts()


def test_the_set_has_enough_tickets_of_each_kind() -> None:
    assert len(TICKETS) >= 30
    assert len(ANSWERABLE) >= 22
    assert len(UNANSWERABLE) >= 8


def test_ids_and_titles_are_unique_and_titles_short() -> None:
    ids = [t["id"] for t in TICKETS]
    titles = [t["title"].strip().lower() for t in TICKETS]
    assert len(set(ids)) == len(ids)
    assert len(set(titles)) == len(titles)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", i) for i in ids)
    assert all(0 < len(t["title"]) <= 120 for t in TICKETS)


def test_every_ticket_is_well_formed() -> None:
    for ticket in TICKETS:
        assert isinstance(ticket["title"], str) and ticket["title"].strip(), ticket["id"]
        assert isinstance(ticket.get("body", ""), str), ticket["id"]
        assert isinstance(ticket["answerable"], bool), ticket["id"]
        facts = ticket["facts"]
        assert isinstance(facts, list), ticket["id"]
        for fact in facts:
            assert isinstance(fact, list) and fact, ticket["id"]
            assert all(isinstance(a, str) and a.strip() for a in fact), ticket["id"]
        if ticket["answerable"]:
            assert facts, f"{ticket['id']}: an answerable ticket names the facts to check"
            assert isinstance(ticket["source"], str), ticket["id"]
        else:
            assert ticket["absent"], f"{ticket['id']}: the key terms its answer would need"


def test_the_demo_pack_loads_without_errors() -> None:
    chunks, errors = load_pack(DEMO_PACK)
    assert errors == [] and chunks


@pytest.mark.parametrize("ticket", ANSWERABLE, ids=lambda t: t["id"])
def test_an_answerable_tickets_facts_are_all_in_its_source(ticket: dict) -> None:
    assert ticket["source"] in PACK, f"{ticket['source']} is not a document of the demo pack"
    text = PACK[ticket["source"]]
    missing = [fact for fact in ticket["facts"] if not contains(text, fact)]
    assert not missing, f"not in {ticket['source']}: {missing}"


@pytest.mark.parametrize("ticket", ANSWERABLE, ids=lambda t: t["id"])
def test_the_question_does_not_give_its_answer_away(ticket: dict) -> None:
    asked = f"{ticket['title']}\n{ticket.get('body', '')}"
    given = [fact for fact in ticket["facts"] if contains(asked, fact)]
    assert not given, f"the question itself holds {given}: an echo would pass"


@pytest.mark.parametrize("ticket", UNANSWERABLE, ids=lambda t: t["id"])
def test_no_pack_document_holds_an_unanswerable_tickets_answer(ticket: dict) -> None:
    for name, text in PACK.items():
        found = [term for term in ticket["absent"] if contains(text, [term])]
        assert not found, f"{name} mentions {found}: the ticket may be answerable"


def test_sources_are_pack_files_and_the_set_is_where_the_bench_reads_it() -> None:
    assert Path(TICKETS_FILE).is_file()
    assert {t["source"] for t in ANSWERABLE} <= set(PACK)
