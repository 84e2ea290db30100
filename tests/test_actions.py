"""The schema of each turn allows only what the turn may do, and an answer that does not
fit it is refused with the reason."""

from __future__ import annotations

import json

import pytest

from botarena.agents import actions

pytestmark = pytest.mark.unit


def test_a_chat_turn_reacts_or_passes_only_when_it_answers_someone() -> None:
    quiet = actions.schema(actions.chat(replying=False))
    assert quiet["properties"]["action"]["const"] == "say"
    replying = actions.schema(actions.chat(replying=True))
    assert replying["properties"]["action"]["enum"] == ["say", "agree", "disagree", "pass"]
    assert list(replying["properties"]) == ["action", "text"]  # the decision first
    assert replying["additionalProperties"] is False
    assert replying["properties"]["text"]["maxLength"] == actions.TEXT_CHARS
    parsed = actions.parse(actions.chat(replying=True), '{"action": "agree", "text": "Yes."}')
    assert isinstance(parsed, actions.ChatAction) and parsed.action == actions.Act.AGREE
    refused = actions.parse(actions.chat(replying=False), '{"action": "pass", "text": ""}')
    assert refused == "the answer does not fit its schema (action: Input should be 'say')"


def test_a_drafting_turn_names_only_the_arenas_kinds() -> None:
    model = actions.draft(["tutorial", "document"])
    schema = actions.schema(model)
    assert schema["properties"]["kind"]["enum"] == ["tutorial", "document"]
    assert schema["required"] == ["kind", "title", "body"]
    good = {"kind": "document", "title": "Backups", "body": "Keep a week of copies."}
    assert isinstance(actions.parse(model, json.dumps(good)), actions.DraftAction)
    patch = actions.parse(model, json.dumps(good | {"kind": "patch"}))
    assert isinstance(patch, str) and patch.startswith("the answer does not fit its schema (kind:")
    long = actions.parse(model, json.dumps(good | {"title": "t" * 81}))
    assert isinstance(long, str) and "(title: String should have at most 80" in long


def test_a_ticket_turn_may_cite_only_the_passages_it_was_shown() -> None:
    model = actions.ticket(["ops-ports", "ops-restore"])
    sources = actions.schema(model)["properties"]["sources"]
    assert sources["items"]["enum"] == ["ops-ports", "ops-restore"] and sources["maxItems"] == 2
    answer = {"known": True, "answer": "Port 8765.", "sources": ["ops-ports"]}
    parsed = actions.parse(model, json.dumps(answer))
    assert isinstance(parsed, actions.TicketAnswer) and parsed.sources == ["ops-ports"]
    invented = actions.parse(model, json.dumps(answer | {"sources": ["ops-ldap"]}))
    assert isinstance(invented, str) and invented.startswith(
        "the answer does not fit its schema (sources.0:"
    )
    extra = actions.parse(model, json.dumps(answer | {"ticket": 31}))
    assert isinstance(extra, str) and "(ticket: Extra inputs are not permitted)" in extra


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("Sure! Here is my answer.", "the answer is not JSON"),
        ('{"action": "say", "text": "cut', "the answer is not JSON"),
        ("[]", "the answer does not fit its schema (the answer: Input should be"),
        ('{"text": "hi"}', "the answer does not fit its schema (action: Field required)"),
    ],
)
def test_an_answer_that_is_not_its_schemas_json_is_refused_with_the_reason(
    raw: str, reason: str
) -> None:
    parsed = actions.parse(actions.chat(replying=True), raw)
    assert isinstance(parsed, str) and parsed.startswith(reason)
