"""The hub's contract without a server: the event tables against the protocol, the
error tree through an acknowledgement and back, and the push and response models."""

from __future__ import annotations

import asyncio
import inspect
import re
import types
import typing
from datetime import UTC, datetime
from typing import Any

import pytest
import socketio

from botarena.arenas.names import ProposalKind, ProposalStatus
from botarena.server import errors, protocol
from botarena.server.client import HubClient
from botarena.server.errors import (
    HUB_ERRORS,
    BadAnswer,
    ConnectRefused,
    HubError,
    Muted,
    NotConnected,
    RateLimited,
    TimedOut,
    Unauthorized,
    Unreachable,
    hub_error,
)
from botarena.server.hub import events
from botarena.server.hub.events import GROUPS, EventTableError, event_table
from botarena.server.hub.gate import error_ack, ok_ack
from botarena.server.protocol import (
    MODERATOR_EVENTS,
    PUSHES,
    REQUESTS,
    RESPONSES,
    Ack,
    AgentStanding,
    ErrorCode,
    Message,
    ModerationNotice,
    MuteResult,
    ProposalInfo,
    ProposalNew,
    Push,
    RoomState,
    TicketInfo,
)
from botarena.server.reputation import Standing

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 21, 58, 22, 123456, tzinfo=UTC)


# the event tables ---------------------------------------------------------------------


def test_the_handler_groups_answer_every_protocol_event_once() -> None:
    table = event_table()
    assert table.keys() == REQUESTS.keys() == RESPONSES.keys()
    claimed = [name for group in GROUPS.values() for name in group]
    assert len(claimed) == len(set(claimed)), "no event is in two groups"
    assert MODERATOR_EVENTS <= table.keys()


def _unoptional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) and type(None) in hint.__args__:
        (rest,) = (a for a in hint.__args__ if a is not type(None))
        return rest
    return hint


@pytest.mark.parametrize("event", sorted(REQUESTS))
def test_each_handler_takes_its_request_model_and_returns_its_response(event: str) -> None:
    handler = event_table()[event]
    hints = typing.get_type_hints(handler)
    request = list(inspect.signature(handler).parameters)[2]
    assert hints[request] is REQUESTS[event]
    assert _unoptional(hints["return"]) is RESPONSES[event]


def test_a_hub_refuses_tables_that_do_not_match_the_protocol() -> None:
    with pytest.raises(EventTableError, match="twice"):
        event_table({**GROUPS, "again": {"whoami": events.rooms.whoami}})
    without_send = {**GROUPS, "rooms": {k: v for k, v in GROUPS["rooms"].items() if k != "send"}}
    with pytest.raises(EventTableError, match="'send'"):
        event_table(without_send)
    with pytest.raises(EventTableError, match="'nope'"):
        event_table({**GROUPS, "extra": {"nope": events.rooms.whoami}})


# the error tree -----------------------------------------------------------------------


def test_every_protocol_error_code_has_its_class() -> None:
    assert set(HUB_ERRORS) == set(ErrorCode)
    for code, cls in HUB_ERRORS.items():
        assert cls.default_code == code and issubclass(cls, HubError)
        assert cls("x").code == code


def _drawn_parents(doc: str) -> dict[str, str]:
    """Each class the docstring's tree draws, and the class it is drawn under."""
    parents: dict[str, str] = {}
    path: list[str] = []
    for line in doc.splitlines():
        if re.fullmatch(r" {4}BotArenaError\b.*", line):
            path = ["BotArenaError"]
        elif found := re.match(r" {4}((?:[│ ] {3})*)[├└]── (\w+)", line):
            depth = len(found[1]) // 4 + 1
            path = [*path[:depth], found[2]]
            parents[found[2]] = path[-2]
    return parents


def test_the_docstring_draws_every_class_of_the_tree_under_its_parent() -> None:
    classes = {
        name: value.__mro__[1].__name__
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, Exception)
        and value.__module__ == errors.__name__
        and name != "BotArenaError"
    }
    assert _drawn_parents(errors.__doc__ or "") == classes


@pytest.mark.parametrize("code", list(ErrorCode))
def test_a_refusal_comes_back_as_its_class_through_an_ack(code: ErrorCode) -> None:
    detail = {"until": NOW.isoformat()} if code is ErrorCode.MUTED else {"n": 1}
    raised = HUB_ERRORS[code](f"refused with {code}", **detail)
    ack = error_ack(raised)
    assert ack == {
        "ok": False,
        "data": None,
        "error": {"code": code.value, "message": f"refused with {code}", "detail": detail},
    }
    error = Ack.model_validate(ack).error
    assert error is not None
    again = hub_error(error)
    assert type(again) is type(raised)
    assert (again.code, again.message, again.detail) == (code, raised.message, detail)
    assert str(again) == f"{code.value}: refused with {code}"


def test_muted_and_rate_limited_carry_when_to_try_again() -> None:
    assert Muted("quiet", until=NOW.isoformat()).until == NOW
    assert Muted("quiet", until=None).until is None
    assert RateLimited("slow", retry_after=0.25).retry_after == 0.25


def test_a_result_ack_carries_the_response_models_json() -> None:
    state = RoomState(room="compiler", paused=True, by="ada")
    assert ok_ack(state) == {
        "ok": True,
        "data": {"room": "compiler", "paused": True, "by": "ada", "reason": ""},
        "error": None,
    }
    assert ok_ack(None) == {"ok": True, "data": None, "error": None}


class _Answers:
    """Stands in for the Socket.IO client: answers every call with ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def call(self, *_args: Any, **_kwargs: Any) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _client_answered(answer: Any) -> HubClient:
    client = HubClient("http://127.0.0.1:9", "bat_x", reconnection=False)
    client.sio = _Answers(answer)  # type: ignore[assignment]
    return client


async def test_the_client_raises_the_class_an_ack_names() -> None:
    client = _client_answered(error_ack(Muted("bob is muted", until=NOW.isoformat())))
    with pytest.raises(Muted) as muted:
        await client.call("send", {"room": "compiler", "text": "hi"})
    assert muted.value.until == NOW and muted.value.code == "muted"
    with pytest.raises(HubError):
        await client.send("compiler", "hi")


@pytest.mark.parametrize(
    ("answer", "raised", "code"),
    [
        (socketio.exceptions.TimeoutError(), TimedOut, "timeout"),
        (socketio.exceptions.BadNamespaceError(), NotConnected, "disconnected"),
        ({"not": "an ack"}, BadAnswer, "protocol"),
        ({"ok": True, "data": {"rooms": 5}, "error": None}, BadAnswer, "protocol"),
    ],
)
async def test_the_client_names_what_kept_it_from_an_answer(
    answer: Any, raised: type[HubError], code: str
) -> None:
    client = _client_answered(answer)
    with pytest.raises(raised) as failed:
        await client.rooms()
    assert failed.value.code == code and isinstance(failed.value, HubError)


async def test_a_refused_connection_is_its_class() -> None:
    client = HubClient("http://127.0.0.1:9", "bat_x", reconnection=False)
    await client._on_connect_error({"message": "unknown token", "data": {"code": "unauthorized"}})
    assert isinstance(client.refusal, Unauthorized)
    assert client.refusal.message == "unknown token"
    await client._on_connect_error({"message": "go away"})
    assert isinstance(client.refusal, ConnectRefused) and client.refusal.code == "refused"
    await client._on_connect_error("not even a dict")
    assert isinstance(client.refusal, ConnectRefused)


async def test_connect_with_backoff_retries_until_connected_and_never_a_bad_token() -> None:
    client = HubClient("http://127.0.0.1:9", "bat_x", reconnection=False)
    outcomes: list[Exception | None] = [Unreachable("away"), Unreachable("away"), None]

    async def connect(timeout: float = 10.0) -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    client.connect = connect  # type: ignore[method-assign]
    told: list[tuple[str, float | None]] = []
    connected = await client.connect_with_backoff(
        first_delay=0.01, on_failure=lambda exc, wait: told.append((exc.code, wait))
    )
    assert connected and told == [("unreachable", 0.01), ("unreachable", 0.02)]

    outcomes[:] = [Unauthorized("token revoked")]
    told.clear()
    with pytest.raises(Unauthorized):
        await client.connect_with_backoff(
            on_failure=lambda exc, wait: told.append((exc.code, wait))
        )
    assert told == [("unauthorized", None)]

    stop = asyncio.Event()
    outcomes[:] = [Unreachable("away")] * 100

    def give_up(_exc: HubError, _wait: float | None) -> None:
        stop.set()

    assert not await client.connect_with_backoff(stop=stop, on_failure=give_up)


# the push and response models ---------------------------------------------------------


def test_every_push_model_names_its_own_event() -> None:
    pushes = [
        v
        for v in vars(protocol).values()
        if isinstance(v, type) and issubclass(v, Push) and v is not Push
    ]
    assert sorted(PUSHES) == sorted(p.event for p in pushes)
    assert all(PUSHES[p.event] is p for p in pushes)


async def test_on_hands_each_push_to_its_subscribers_parsed() -> None:
    client = HubClient("http://127.0.0.1:9", "bat_x", reconnection=False)
    states: list[RoomState] = []
    notices: list[ModerationNotice] = []
    messages: list[Message] = []

    async def on_notice(notice: ModerationNotice) -> None:
        notices.append(notice)

    client.on(RoomState, states.append)
    client.on(ModerationNotice, on_notice)
    client.on(Message, messages.append)
    handlers = client.sio.handlers["/"]
    await handlers["room.state"]({"room": "compiler", "paused": True, "by": "ada"})
    await handlers["room.state"]({"room": 5})  # not a room state: dropped, logged
    await handlers["moderation"]({"action": "mute", "by": "ada", "until": NOW.isoformat()})
    message = {
        "id": 7,
        "room": "compiler",
        "author": "bob",
        "author_role": "agent",
        "text": "hi",
        "created_at": NOW.isoformat(),
    }
    await handlers["message"](message)
    await handlers["message"](message)  # the same message again: delivered once
    assert states == [RoomState(room="compiler", paused=True, by="ada")]
    assert notices[0].until == NOW
    assert [m.id for m in messages] == [7]


def _proposal() -> ProposalInfo:
    return ProposalInfo(
        id=3,
        arena="compiler",
        author="bob",
        kind=ProposalKind.DOCUMENT,
        path="docs/a.md",
        base_version=0,
        title="A",
        content="text\n",
        status=ProposalStatus.PENDING,
        reason="",
        edited=False,
        reviewed_by=None,
        merged_version=None,
        created_at=NOW,
    )


def test_models_made_from_the_store_keep_the_json_it_had() -> None:
    proposal = _proposal()
    stored = proposal.model_dump(mode="json")
    assert stored["created_at"] == NOW.isoformat()  # "+00:00", as the wire always had it
    assert stored["kind"] == "document" and stored["status"] == "pending"
    pushed = ProposalNew.model_validate(proposal, from_attributes=True).model_dump(mode="json")
    assert list(pushed.items()) == list(stored.items())
    standing = Standing("bob", 15, 1, 1, 0, 0, 0, 0, True, True)
    dumped = AgentStanding.model_validate(standing, from_attributes=True).model_dump(mode="json")
    assert dumped == standing.public()
    ticket = {
        "id": 1,
        "title": "Help",
        "body": "How?",
        "filed_by": "ada",
        "status": "open",
        "answer_proposal_id": None,
        "human_intervention": False,
        "created_at": NOW.isoformat(),
        "closed_at": None,
    }
    assert TicketInfo.model_validate(ticket).model_dump(mode="json") == ticket
    mute = MuteResult(principal="bob", until=NOW).model_dump(mode="json")
    assert mute == {"principal": "bob", "until": NOW.isoformat()}
