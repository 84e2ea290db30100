"""The Ollama stand-in's own behaviour: Ollama's chat API (streamed and not, its errors),
structured outputs on both chat APIs as Ollama documents them, the token limit on JSON
output, and the capable model answering a ticket from its passages."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import httpx
import jsonschema
from pydantic import BaseModel, Field

from botarena.agents.echoes import is_echo
from tests.ollama_standin import DONT_KNOW, OllamaStandIn, ollama_standin

CANADA = {  # the schema of Ollama's own structured-outputs example
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "capital": {"type": "string"},
        "languages": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "capital", "languages"],
}
DONE_FIELDS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}
SOURCES = ["house-rules.md", "canon:docs/backups.md", "canon:docs/ports.md"]
TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "known": {"type": "boolean"},
        "answer": {"type": "string", "maxLength": 400},
        "sources": {"type": "array", "items": {"type": "string", "enum": SOURCES}},
        "tone": {"type": "string", "enum": ["plain", "warm"]},
    },
    "required": ["known", "answer", "sources"],
}
PASSAGES = """Passages:
[house-rules.md] Be kind in every room. Lunch is at noon on weekdays.
[canon:docs/backups.md] Backups run nightly at 02:00. To restore a backup, run botarena \
restore with the archive file. The hub stops while it restores. Coffee is free.
[canon:docs/ports.md] The hub listens on port 8080. Metrics are served on the same port."""


def user(content: str) -> list[dict]:
    return [
        {"role": "system", "content": "You are a helpful desk."},
        {"role": "user", "content": content},
    ]


def ticket(title: str, body: str = "", passages: str = PASSAGES) -> str:
    lines = ["You are Sage at the help desk.", f"Ticket #12 from grace: {title}"]
    return "\n".join([*lines, *([body] if body else []), passages, "Answer from the passages."])


async def native(standin: OllamaStandIn, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=standin.url, timeout=10) as client:
        return await client.post("/api/chat", json={"model": "qwen3", **body})


async def openai(standin: OllamaStandIn, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=standin.url, timeout=10) as client:
        return await client.post("/v1/chat/completions", json={"model": "qwen3", **body})


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines()]


async def test_a_schema_format_gets_content_valid_against_it_in_one_object() -> None:
    async with ollama_standin(["qwen3:latest"]) as ollama:
        response = await native(
            ollama,
            messages=user("Tell me about Canada."),
            format=CANADA,
            stream=False,
            options={"temperature": 0, "repeat_penalty": 1.1, "num_ctx": 4096},
            keep_alive="5m",
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["model"] == "qwen3" and body["done"] is True and body["done_reason"] == "stop"
    assert body["message"]["role"] == "assistant"
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    assert DONE_FIELDS <= set(body) and all(isinstance(body[f], int) for f in DONE_FIELDS)
    assert body["prompt_eval_count"] == len("You are a helpful desk. Tell me about Canada.".split())
    assert body["total_duration"] >= body["load_duration"] + body["eval_duration"]
    content = json.loads(body["message"]["content"])
    jsonschema.validate(content, CANADA)
    assert content["name"] == ollama.reply and content["languages"] == []
    assert ollama.requests[-1][1] == "/api/chat" and ollama.requests[-1][2]["format"] == CANADA


async def test_ollama_streams_by_default_one_piece_a_line_then_the_counts() -> None:
    async with ollama_standin(["qwen3:latest"]) as ollama:
        response = await native(ollama, messages=user("why is the sky blue?"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    *pieces, last = ndjson(response)
    assert len(pieces) == len(ollama.reply.split()) > 1
    assert all(p["done"] is False and p["model"] == "qwen3" for p in pieces)
    assert all(p["message"]["role"] == "assistant" and "created_at" in p for p in pieces)
    assert not DONE_FIELDS & set(pieces[0]), "the counts come with the last object only"
    assert "".join(p["message"]["content"] for p in pieces) == ollama.reply
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["message"] == {"role": "assistant", "content": ""}
    assert DONE_FIELDS <= set(last) and last["eval_count"] == len(pieces)


async def test_a_streamed_schema_answer_joins_into_valid_json() -> None:
    async with ollama_standin(["qwen3:latest"]) as ollama:
        response = await native(ollama, messages=user("Canada?"), format=CANADA, stream=True)
    *pieces, last = ndjson(response)
    assert len(pieces) > 1 and last["done"] is True
    jsonschema.validate(json.loads("".join(p["message"]["content"] for p in pieces)), CANADA)


async def test_the_json_format_gets_a_json_object() -> None:
    async with ollama_standin(["qwen3:latest"]) as ollama:
        response = await native(
            ollama, messages=user("Reply in JSON."), format="json", stream=False
        )
    content = json.loads(response.json()["message"]["content"])
    assert isinstance(content, dict) and content == {"text": ollama.reply}


async def test_ollamas_errors_for_a_missing_model_a_bad_body_and_a_bad_format() -> None:
    async with ollama_standin(["qwen3:latest"]) as ollama:
        async with httpx.AsyncClient(base_url=ollama.url, timeout=10) as client:
            missing = await client.post(
                "/api/chat", json={"model": "mistral", "messages": user("hi"), "stream": False}
            )
            malformed = await client.post("/api/chat", content=b'{"model": "qwen3", "messages": [')
            garbage = await client.post("/api/chat", content=b"model=qwen3")
            empty = await client.post("/api/chat", content=b"")
            no_model = await client.post("/api/chat", json={"messages": user("hi")})
            wrong_type = await client.post("/api/chat", json={"model": "qwen3", "messages": "hi"})
        bad_format = await native(ollama, messages=user("hi"), format="xml", stream=False)
        loaded = await native(ollama, messages=[], stream=False)
        unloaded = await native(ollama, messages=[], keep_alive=0, stream=False)
    assert missing.status_code == 404 and missing.json() == {"error": "model 'mistral' not found"}
    assert malformed.status_code == 400 and malformed.json() == {"error": "unexpected EOF"}
    assert garbage.status_code == 400
    assert garbage.json() == {"error": "invalid character 'm' looking for beginning of value"}
    assert empty.status_code == 400 and empty.json() == {"error": "missing request body"}
    assert no_model.status_code == 400 and no_model.json() == {"error": "model is required"}
    assert wrong_type.status_code == 400 and "cannot unmarshal string" in wrong_type.json()["error"]
    assert bad_format.status_code == 500
    assert bad_format.json()["error"].startswith('invalid format: "\\"xml\\""; expected "json"')
    assert loaded.status_code == 200 and loaded.json()["done_reason"] == "load"
    assert unloaded.json()["done_reason"] == "unload"


async def test_the_openai_endpoint_takes_response_format_as_ollama_maps_it() -> None:
    async with ollama_standin(["qwen3:latest"]) as ollama:
        schema = await openai(
            ollama,
            messages=user("Canada?"),
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": CANADA}},
        )
        obj = await openai(
            ollama, messages=user("JSON please"), response_format={"type": "json_object"}
        )
        plain = await openai(ollama, messages=user("hi"))
        missing = await openai(ollama, model="mistral", messages=user("hi"))
    choice = schema.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    jsonschema.validate(json.loads(choice["message"]["content"]), CANADA)
    assert isinstance(json.loads(obj.json()["choices"][0]["message"]["content"]), dict)
    assert plain.json()["choices"][0]["message"]["content"] == ollama.reply
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "model 'mistral' not found"
    assert missing.json()["error"]["type"] == "not_found_error"


async def test_a_token_limit_cuts_the_strings_and_leaves_valid_json() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
        "required": ["title", "body"],
    }
    async with ollama_standin(["qwen3:latest"]) as ollama:
        cut = await native(
            ollama, messages=user("x"), format=schema, options={"num_predict": 4}, stream=False
        )
        roomy = await native(
            ollama, messages=user("x"), format=schema, options={"num_predict": 400}, stream=False
        )
        v1 = await openai(
            ollama,
            messages=user("x"),
            max_tokens=3,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        )
    assert cut.json()["done_reason"] == "length"
    content = json.loads(cut.json()["message"]["content"])
    jsonschema.validate(content, schema)
    assert content == {"title": " ".join(ollama.reply.split()[:4]), "body": ""}
    assert roomy.json()["done_reason"] == "stop"
    assert json.loads(roomy.json()["message"]["content"])["body"] == ollama.reply
    choice = v1.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    jsonschema.validate(json.loads(choice["message"]["content"]), schema)


async def test_a_scripted_answer_is_sent_as_it_is_even_against_the_schema() -> None:
    async with ollama_standin(["qwen3:latest"]) as ollama:
        ollama.script = [
            {"role": "assistant", "content": "not json at all"},
            {"role": "assistant", "content": {"name": "Canada"}},
        ]
        bad = await native(ollama, messages=user("Canada?"), format=CANADA, stream=False)
        partial = await openai(
            ollama,
            messages=user("Canada?"),
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": CANADA}},
        )
        after = await native(ollama, messages=user("Canada?"), format=CANADA, stream=False)
    assert bad.json()["message"]["content"] == "not json at all"
    assert json.loads(partial.json()["choices"][0]["message"]["content"]) == {"name": "Canada"}
    jsonschema.validate(json.loads(after.json()["message"]["content"]), CANADA)


class Step(BaseModel):
    tool: Literal["grep", "pytest"]
    args: list[str] = Field(min_length=2, max_length=3)


class Plan(BaseModel):
    summary: str = Field(max_length=20)
    steps: list[Step] = Field(min_length=1)
    note: str | None
    priority: int = Field(ge=3, le=5)
    ratio: float = Field(gt=0)
    urgent: bool
    labels: list[Literal["bug", "docs"]] = Field(min_length=2)


async def test_a_pydantic_schema_with_refs_unions_and_bounds_is_filled_validly() -> None:
    schema = Plan.model_json_schema()
    async with ollama_standin(["qwen3:latest"]) as ollama:
        response = await native(ollama, messages=user("plan"), format=schema, stream=False)
    content = json.loads(response.json()["message"]["content"])
    jsonschema.validate(content, schema)
    plan = Plan.model_validate(content)
    assert len(plan.summary) <= 20 and plan.priority == 3 and plan.labels == ["bug", "docs"]
    assert plan.steps[0].tool == "grep" and len(plan.steps[0].args) == 2


async def test_the_capable_model_answers_a_ticket_from_the_passage_that_matches() -> None:
    prompt = ticket("How do I restore a backup?", "The restore of last night's archive failed.")
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        response = await native(ollama, messages=user(prompt), format=TICKET_SCHEMA, stream=False)
        v1 = await openai(
            ollama,
            messages=user(ticket("Which port does the hub listen on?")),
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "ticket", "schema": TICKET_SCHEMA},
            },
        )
        plain = await native(ollama, messages=user(prompt), stream=False)
    content = json.loads(response.json()["message"]["content"])
    jsonschema.validate(content, TICKET_SCHEMA)
    assert content["known"] is True and content["sources"] == ["canon:docs/backups.md"]
    assert content["answer"] == (
        "Backups run nightly at 02:00. To restore a backup, run botarena restore with the "
        "archive file. The hub stops while it restores."
    ), "the three sentences that share words with the question, in their order"
    ports = json.loads(v1.json()["choices"][0]["message"]["content"])
    assert ports["known"] is True and ports["sources"] == ["canon:docs/ports.md"]
    assert "8080" in ports["answer"] and "Coffee" not in ports["answer"]
    assert plain.json()["message"]["content"] == content["answer"]


async def test_the_capable_model_says_it_does_not_know_when_no_passage_matches() -> None:
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        unknown = await native(
            ollama,
            messages=user(ticket("What is the wifi password for guests?")),
            format=TICKET_SCHEMA,
            stream=False,
        )
        no_passages = await native(
            ollama,
            messages=user(ticket("How do I restore a backup?", passages="Passages:")),
            format=TICKET_SCHEMA,
            stream=False,
        )
        one_word = await native(  # "restore" alone is not enough to answer from
            ollama,
            messages=user(ticket("Restore my mood please")),
            format=TICKET_SCHEMA,
            stream=False,
        )
    for response in (unknown, no_passages, one_word):
        content = json.loads(response.json()["message"]["content"])
        jsonschema.validate(content, TICKET_SCHEMA)
        assert content == {"known": False, "answer": DONT_KNOW, "sources": [], "tone": "plain"}


async def test_the_capable_model_only_cites_a_source_the_schema_allows() -> None:
    schema = {
        **TICKET_SCHEMA,
        "properties": {
            **TICKET_SCHEMA["properties"],
            "sources": {"type": "array", "items": {"type": "string", "enum": ["house-rules.md"]}},
        },
    }
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        response = await native(
            ollama, messages=user(ticket("How do I restore a backup?")), format=schema, stream=False
        )
    content = json.loads(response.json()["message"]["content"])
    jsonschema.validate(content, schema)
    assert content["known"] is False and content["sources"] == []


class OneSourceAnswer(BaseModel):
    known: bool
    answer: str = Field(min_length=1, max_length=600)
    sources: list[Literal["canon:docs/backups.md"]] = Field(max_length=1)


async def test_a_single_allowed_source_given_as_pydantics_const_is_cited() -> None:
    schema = OneSourceAnswer.model_json_schema()
    assert schema["properties"]["sources"]["items"] == {
        "const": "canon:docs/backups.md",
        "type": "string",
    }, "pydantic writes a one-value Literal as const, not enum"
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        response = await native(
            ollama, messages=user(ticket("How do I restore a backup?")), format=schema, stream=False
        )
    answer = OneSourceAnswer.model_validate_json(response.json()["message"]["content"])
    assert answer.known and answer.sources == ["canon:docs/backups.md"]
    assert answer.answer.startswith("Backups run nightly")


async def test_the_capable_model_writes_about_the_topic_without_echoing_instructions() -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 40},
            "body": {"type": "string"},
            "kind": {"type": "string", "enum": ["doc", "patch"]},
        },
        "required": ["title", "body", "kind"],
    }
    prompt = "\n".join(
        [
            'You are Ada in the "compiler" room of a team chat.',
            "Recent messages, oldest first:",
            "grace: the lexer drops unicode tokens",
            'grace said to you: "@ada why does the lexer drop unicode tokens?". Answer them '
            "directly.",
            "Write one short chat message (one or two sentences), without your name.",
        ]
    )
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        response = await native(ollama, messages=user(prompt), format=schema, stream=False)
        text = await native(ollama, messages=user(prompt), format="json", stream=False)
    content = json.loads(response.json()["message"]["content"])
    jsonschema.validate(content, schema)
    assert content["body"].startswith("About lexer:") and "unicode" in content["body"]
    assert not is_echo(content["body"], ["ada"]) and "You are" not in content["body"]
    assert content["title"] == "Lexer drop unicode" and content["kind"] == "doc"
    assert json.loads(text.json()["message"]["content"]) == {"text": content["body"]}


async def test_the_capable_model_leaves_the_turns_own_words_out_of_its_topic() -> None:
    schema = {
        "type": "object",
        "properties": {"action": {"enum": ["say", "pass"]}, "text": {"type": "string"}},
        "required": ["action", "text"],
    }
    prompt = "\n".join(
        [
            "Room: compiler. Its mission: Keep the compiler correct.",
            "Your mood: calm, curious.",
            "Notes:",
            "- The linker caches objects between builds.",
            "Chat:",
            "grace: the linker cache went stale after the last builds",
            "Start a topic: Say what could break.",
            'Set "action" to "say" and put your message in "text": one or two sentences.',
        ]
    )
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        response = await native(ollama, messages=user(prompt), format=schema, stream=False)
    content = json.loads(response.json()["message"]["content"])
    assert content["action"] == "say"
    assert content["text"] == "About linker: I would look at caches and builds next."
    assert not {"action", "compiler", "mission", "mood", "grace"} & set(content["text"].split())


async def test_a_question_about_tickets_matches_the_passage_about_tickets() -> None:
    passages = "\n".join(
        [
            "Passages:",
            "[house-rules.md] Be kind in every room.",
            "[canon:docs/tickets.md] A ticket filed at night waits for the morning desk. "
            "Escalated tickets go to a human moderator.",
        ]
    )
    schema = {**TICKET_SCHEMA, "properties": {**TICKET_SCHEMA["properties"]}}
    schema["properties"]["sources"] = {
        "type": "array",
        "items": {"enum": ["house-rules.md", "canon:docs/tickets.md"]},
    }
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        response = await native(
            ollama,
            messages=user(ticket("Who takes a ticket filed at night?", passages=passages)),
            format=schema,
            stream=False,
        )
    content = json.loads(response.json()["message"]["content"])
    assert content["known"] is True and content["sources"] == ["canon:docs/tickets.md"]
    assert content["answer"] == (
        "A ticket filed at night waits for the morning desk. "
        "Escalated tickets go to a human moderator."
    ), "both sentences share words with the question (tickets counts as ticket)"


async def ticket_answer(ollama: OllamaStandIn, prompt: str, passages: str = PASSAGES) -> dict:
    sources = [line.split("]")[0][1:] for line in passages.splitlines()[1:]]
    schema = {**TICKET_SCHEMA, "properties": {**TICKET_SCHEMA["properties"]}}
    schema["properties"]["sources"] = {"type": "array", "items": {"enum": sources}}
    response = await native(ollama, messages=user(prompt), format=schema, stream=False)
    content = json.loads(response.json()["message"]["content"])
    jsonschema.validate(content, schema)
    return content


async def test_the_capable_model_does_not_know_a_name_that_no_passage_names() -> None:
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        dropbox = await ticket_answer(
            ollama, ticket("Can I restore a backup archive from Dropbox?")
        )
        mail = await ticket_answer(ollama, ticket("Can the hub e-mail me when it restores?"))
        acronym = await ticket_answer(ollama, ticket("Does the hub restore a backup over SFTP?"))
        url = await ticket_answer(ollama, ticket("What URL does the hub serve its metrics on?"))
        named = await ticket_answer(ollama, ticket("Which port does Botarena's hub listen on?"))
    for unknown in (dropbox, mail, acronym):  # each shares 2+ words with one sentence
        assert unknown == {"known": False, "answer": DONT_KNOW, "sources": [], "tone": "plain"}
    assert url["known"] is True and url["sources"] == ["canon:docs/ports.md"], (
        "the head of a wh-phrase says what the answer is: no passage needs to name it"
    )
    assert url["answer"] == "The hub listens on port 8080. Metrics are served on the same port."
    assert named["known"] is True and named["sources"] == ["canon:docs/ports.md"], (
        "a name counts as named whatever its case and possessive (botarena restore ...)"
    )


async def test_the_capable_model_matches_word_forms_within_one_sentence() -> None:
    rooms = "Passages:\n[canon:docs/rooms.md] A pause lasts as long as the moderator wants. " + (
        "Paused rooms get no turns. Lunch is at noon."
    )
    scattered = "Passages:\n[runbook.md] Stop the hub first. Then check whether the schema changed."
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        paused = await ticket_answer(
            ollama, ticket("What is the longest a room can be paused?", passages=rooms), rooms
        )
        zone = await ticket_answer(
            ollama, ticket("How do I change the hub's time zone?", passages=scattered), scattered
        )
    assert paused == {
        "known": True,
        "answer": "A pause lasts as long as the moderator wants. Paused rooms get no turns.",
        "sources": ["canon:docs/rooms.md"],
        "tone": "plain",
    }, "paused is pause, longest is long, rooms is room"
    assert zone["known"] is False, "hub and changed share a passage but no sentence"
