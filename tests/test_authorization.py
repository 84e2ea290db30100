"""Every event, as every role, on every kind of room: what the rules of
:mod:`botarena.server.auth` allow succeeds, the rest is refused with its code, and no
answer or push ever carries anything of a room the caller may not read.

One hub and one world for the module. Each room kind has its own secret marker, written
into everything the room holds (messages, tickets, proposals, attachments, canon); an
answer or push to a principal that may not read a room must never contain its marker.
The table has a row for every event of :data:`REQUESTS`: a new event fails the suite
until its row says who may call it.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import socketio

from botarena.arenas.names import EXTERNAL, ticket_path
from botarena.arenas.policy import Category
from botarena.server.app import running_hub
from botarena.server.auth import Principal
from botarena.server.protocol import REQUESTS, Role, ticket_announcement
from botarena.server.store import Store
from tests.harness import create_database, eventually, make_settings

KINDS = ("arena", "external", "dm", "group")
"""The room kinds: a working arena, the external arena, a direct message, a group."""

ROOM = {"arena": "compiler", "external": EXTERNAL, "dm": "dm:ada+bob", "group": "group:crew"}

ROLES = ("admin", "moderator", "member", "outsider", "unranked")
"""Who calls: an admin, a moderator, an agent admitted to the room (ada), an agent
admitted elsewhere but not to the room (eve), and an agent admitted to external whose
reputation does not rank (sunk)."""

NAME = {
    "admin": "root",
    "moderator": "mod",
    "member": "ada",
    "outsider": "eve",
    "unranked": "sunk",
}
SUPERVISORS = ("admin", "moderator")
AGENTS = ("member", "outsider", "unranked")


def reads(role: str, kind: str) -> bool:
    """Whether ``role`` may read the room of ``kind``: the rule every reading row obeys."""
    return role in SUPERVISORS or role == "member"


def posts(role: str, kind: str) -> bool:
    return role == "member" or (role in SUPERVISORS and kind != "dm")


def listed(role: str, kind: str) -> bool:
    """Whether the room is among ``role``'s rooms (sunk is admitted to external)."""
    return reads(role, kind) or (role == "unranked" and kind == "external")


# the world ----------------------------------------------------------------------------


@dataclass
class World:
    store: Store
    url: str
    secret: dict[str, str]
    clients: dict[str, socketio.AsyncClient] = field(default_factory=dict)
    pushes: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    principals: dict[str, Principal] = field(default_factory=dict)
    message: dict[str, int] = field(default_factory=dict)  # kind -> someone else's message
    pending: dict[str, int] = field(default_factory=dict)  # kind -> ada's pending proposal
    attachment: dict[str, str] = field(default_factory=dict)  # kind -> its attachment
    canon: dict[str, str] = field(default_factory=dict)  # kind -> a canon path
    open_ticket: int = 0
    serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def call(self, role: str, event: str, payload: Any = None) -> dict[str, Any]:
        args = () if payload is None else (payload,)
        return await self.clients[role].call(event, *args, timeout=15)

    def unique(self, stem: str) -> str:
        return f"{stem}-{next(self.serial)}"

    async def proposal(self, kind: str, author: str, content: str = "x\n") -> int:
        """A new pending proposal in the arena of ``kind`` (a ticket answer in external)."""
        who = self.principals[author]
        if kind == "external":
            fields = {"kind": "ticket_answer", "path": ticket_path(self.open_ticket)}
        else:
            fields = {"kind": "document", "path": f"docs/{self.unique('p')}.md"}
        created = await self.store.proposals.create(
            who, arena=ROOM[kind], base_version=0, title="t", content=content, **fields
        )
        return created.id


async def _connect(url: str, token: str, pushes: list[tuple[str, Any]]) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)

    async def anything(event: str, data: Any = None) -> None:
        pushes.append((event, data))

    sio.on("*", anything)
    await sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    return sio


async def _build(store: Store, url: str) -> World:
    world = World(store, url, {k: f"SECRET-{k}-{secrets.token_hex(4)}" for k in KINDS})
    issue = store.principals.issue_token
    tokens: dict[str, str] = {}
    plan: list[tuple[str, Role, list[str]]] = [
        ("root", Role.ADMIN, []),
        ("mod", Role.MODERATOR, []),
        ("desk", Role.MODERATOR, []),  # writes the world; never a caller
        ("ada", Role.AGENT, ["compiler", EXTERNAL]),
        ("bob", Role.AGENT, ["compiler"]),
        ("eve", Role.AGENT, ["creative"]),
        ("sunk", Role.AGENT, [EXTERNAL]),
        ("tgt", Role.AGENT, []),  # what moderation and invitations act on
    ]
    for name, role, arenas in plan:
        principal, tokens[name] = await issue(name, role, arenas=arenas)
        world.principals[name] = principal
    p = world.principals
    mod, desk, ada, bob = p["mod"], p["desk"], p["ada"], p["bob"]
    secret = world.secret

    await store.rooms.open_dm(ada, bob, ROOM["dm"])
    await store.rooms.create_group(ROOM["group"], "Crew", desk, [ada, bob])
    for kind, author in (("arena", desk), ("dm", bob), ("group", desk)):
        posted = await store.messages.post(ROOM[kind], author, f"note {secret[kind]}")
        world.message[kind] = posted.message.id

    # external: one ticket answered (its answer is canon), one open
    answered = await store.tickets.file(desk, "Answered", f"question {secret['external']}")
    world.open_ticket = await store.tickets.file(desk, "Open", f"more {secret['external']}")
    for ticket in (answered, world.open_ticket):
        text = ticket_announcement(ticket, "Q", f"asked {secret['external']}")
        posted = await store.messages.post(EXTERNAL, desk, text)
    world.message["external"] = posted.message.id
    answer = await store.proposals.create(
        ada,
        arena=EXTERNAL,
        kind="ticket_answer",
        path=ticket_path(answered),
        base_version=0,
        title="Answer",
        content=f"the answer {secret['external']}\n",
    )
    await store.proposals.approve(answer.id, mod)
    world.canon["external"] = ticket_path(answered)

    # the working arena: one canon document, ada's (her reputation ranks her first)
    doc = await store.proposals.create(
        ada,
        arena="compiler",
        kind="document",
        path="docs/secret.md",
        base_version=0,
        title="Doc",
        content=f"the doc {secret['arena']}\n",
    )
    await store.proposals.approve(doc.id, mod)
    world.canon["arena"] = "docs/secret.md"

    # sunk: admitted to external, but two rejected answers rank it last
    for _ in range(2):
        refused = await world.proposal("external", "sunk")
        await store.proposals.reject(refused, mod, "wrong")

    for role, name in NAME.items():
        world.pushes[role] = []
        world.clients[role] = await _connect(url, tokens[name], world.pushes[role])

    # ada's pending proposals, each with an attachment named (and filled) with the secret
    for kind in ("arena", "external"):
        world.pending[kind] = await world.proposal(kind, "ada", f"draft {secret[kind]}\n")
        name = f"{secret[kind]}.txt"
        content = base64.b64encode(f"bytes {secret[kind]}".encode()).decode()
        ack = await world.call(
            "member",
            "proposal.attach",
            {"id": world.pending[kind], "name": name, "content_base64": content},
        )
        assert ack["ok"], ack
        world.attachment[kind] = name
    return world


@pytest.fixture(scope="module")
async def world(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    url = await create_database(pg_admin_url)
    tmp: Path = tmp_path_factory.mktemp("authorization")
    # one external seat of two (ada and sunk), so that sunk ranks out of it
    settings = make_settings(
        tmp, url, rate_per_second=100_000, rate_burst=100_000, external_min_seats=1
    )
    async with running_hub(settings) as running:
        built = await _build(running.hub.store, running.url)
        yield built
        for client in built.clients.values():
            await client.disconnect()


# the table ----------------------------------------------------------------------------

Payload = Callable[[World, str, str], Awaitable[Any]]
"""The payload ``role`` sends for a room of ``kind`` (after any setup it needs)."""
Expect = Callable[[str, str], str | None]
"""``ok``, the refusal's code, or None where the room kind has no such resource."""
Check = Callable[[World, str, str, dict[str, Any]], None]


def reader(role: str, kind: str) -> str:
    return "ok" if reads(role, kind) else "forbidden"


def arena_reader(role: str, kind: str) -> str | None:
    """Proposals and canon belong to arenas: direct messages and groups have none."""
    return reader(role, kind) if kind in ("arena", "external") else None


def supervisor(role: str, kind: str) -> str:
    return "ok" if role in SUPERVISORS else "forbidden"


def arena_supervisor(role: str, kind: str) -> str | None:
    return supervisor(role, kind) if kind in ("arena", "external") else None


def anyone(role: str, kind: str) -> str:
    return "ok"


def poster(role: str, kind: str) -> str:
    """After trying to join: those who could not are not in it, and readers who may not
    post (moderators in a direct message) are refused."""
    if not reads(role, kind):
        return "not_joined"
    return "ok" if posts(role, kind) else "forbidden"


def fixed(payload: Any) -> Payload:
    async def make(world: World, role: str, kind: str) -> Any:
        return payload

    return make


def in_room(build: Callable[[World, str, str], dict[str, Any]], join: bool = False) -> Payload:
    async def make(world: World, role: str, kind: str) -> Any:
        if join:
            await world.call(role, "join", {"room": ROOM[kind]})
        return build(world, role, kind)

    return make


def in_arena(build: Callable[[World, str, str], dict[str, Any]]) -> Payload:
    """For what only arenas have (proposals, canon): nothing to send elsewhere."""

    async def make(world: World, role: str, kind: str) -> Any:
        return build(world, role, kind) if kind in ("arena", "external") else None

    return make


async def _fresh_for_review(world: World, role: str, kind: str) -> Any:
    if kind not in ("arena", "external"):
        return None
    proposal = await world.proposal(kind, "desk")
    return {"id": proposal, "decision": "reject", "reason": "not now"}


async def _approved_for_revert(world: World, role: str, kind: str) -> Any:
    if kind != "arena":  # external holds ticket answers only, which are never reverted
        return None
    proposal = await world.proposal(kind, "desk")
    await world.store.proposals.approve(proposal, world.principals["desk"])
    return {"proposal": proposal, "reason": "undo it"}


def _revert_expect(role: str, kind: str) -> str | None:
    return supervisor(role, kind) if kind == "arena" else None


async def _create(world: World, role: str, kind: str) -> Any:
    base = {"arena": ROOM[kind], "base_version": 0, "title": "t", "content": "new\n"}
    if kind == "external":
        return {**base, "kind": "ticket_answer", "path": ticket_path(world.open_ticket)}
    return {**base, "kind": "document", "path": f"docs/{world.unique('c')}.md"}


async def _escalate(world: World, role: str, kind: str) -> Any:
    if kind != "external":
        return None
    ticket = await world.store.tickets.file(world.principals["desk"], "Stuck", "how?")
    return {"ticket": ticket, "reason": "nothing in the knowledge base"}


def _create_expect(role: str, kind: str) -> str:
    return reader(role, kind) if kind in ("arena", "external") else "unknown_room"


async def _attach(world: World, role: str, kind: str) -> Any:
    if kind not in world.pending:
        return None
    content = base64.b64encode(b"more").decode()
    return {"id": world.pending[kind], "name": world.unique("f"), "content_base64": content}


def _attach_expect(role: str, kind: str) -> str | None:
    if kind not in ("arena", "external"):
        return None
    return "ok" if role in (*SUPERVISORS, "member") else "forbidden"


async def _held(world: World, role: str, kind: str) -> Any:
    """A message of ada's in the room, held by the filter for a moderator."""
    item, _new = await world.store.queue.hold(
        ROOM[kind],
        world.principals["ada"],
        f"held {world.secret[kind]}",
        reply_to=None,
        client_id=world.unique("held"),
        categories=["injection"],
        rules=["instruction_injection"],
    )
    return {"id": item.id, "reason": "checked"}


async def _agent_message(world: World, role: str, kind: str) -> Any:
    """A new message of ada's (an agent) in the room, to flag."""
    posted = await world.store.messages.post(ROOM[kind], world.principals["ada"], "a line")
    return {"message_id": posted.message.id, "category": "abuse", "reason": "rude"}


async def _flagged(world: World, role: str, kind: str) -> Any:
    """A message of ada's in the room, flagged by a moderator and waiting in the queue."""
    posted = await world.store.messages.post(ROOM[kind], world.principals["ada"], "a line")
    item, _new = await world.store.queue.flag(
        posted.message, world.principals["desk"], Category.ABUSE, ""
    )
    return {"id": item.id}


async def _paused(world: World, role: str, kind: str) -> Any:
    await world.store.moderation.set_paused(ROOM[kind], True, "", world.principals["desk"])
    return {"room": ROOM[kind]}


async def _resume(world: World, role: str, kind: str) -> None:
    await world.store.moderation.set_paused(ROOM[kind], False, "", world.principals["desk"])


def _rooms_listed(names: Callable[[dict[str, Any]], list[str]]) -> Check:
    def check(world: World, role: str, kind: str, data: dict[str, Any]) -> None:
        assert (ROOM[kind] in names(data)) == listed(role, kind), names(data)

    return check


def _shows_secret(world: World, role: str, kind: str, data: dict[str, Any]) -> None:
    assert world.secret[kind] in _text(data), "a reader sees what the room holds"


def _only_this_arena(world: World, role: str, kind: str, data: dict[str, Any]) -> None:
    assert {p["arena"] for p in data["proposals"]} <= {ROOM[kind]}
    if kind in ("arena", "external"):
        _shows_secret(world, role, kind, data)


def _queue_of_room(world: World, role: str, kind: str, data: dict[str, Any]) -> None:
    assert {i["room"] for i in data["items"]} == {ROOM[kind]}, data  # the release rows'
    assert all(i["state"] == "open" for i in data["items"])


@dataclass(frozen=True)
class Row:
    payload: Payload
    expect: Expect
    check: Check | None = None  # on success
    hides_arena: bool = False  # a refusal does not say which arena the thing is in
    after: Callable[[World, str, str], Awaitable[None]] | None = None


TABLE: dict[str, Row] = {
    "whoami": Row(fixed({}), anyone, _rooms_listed(lambda d: d["rooms"])),
    "rooms": Row(fixed({}), anyone, _rooms_listed(lambda d: [r["name"] for r in d["rooms"]])),
    "join": Row(in_room(lambda w, r, k: {"room": ROOM[k]}), reader, _shows_secret),
    "leave": Row(
        in_room(lambda w, r, k: {"room": ROOM[k]}, join=True),
        lambda role, kind: "ok" if reads(role, kind) else "not_joined",
    ),
    "send": Row(in_room(lambda w, r, k: {"room": ROOM[k], "text": "hello"}, join=True), poster),
    "history": Row(in_room(lambda w, r, k: {"room": ROOM[k]}), reader, _shows_secret),
    "dm.open": Row(fixed({"principal": "bob"}), anyone),
    "group.create": Row(in_room(lambda w, r, k: {"name": w.unique("g")}), supervisor),
    "room.invite": Row(
        in_room(lambda w, r, k: {"room": ROOM[k], "principal": "tgt"}),
        lambda role, kind: "forbidden" if kind == "dm" else supervisor(role, kind),
    ),
    "agent.state": Row(
        fixed({"state": "idle"}), lambda role, kind: "ok" if role in AGENTS else "forbidden"
    ),
    "agents": Row(fixed({}), supervisor),
    # only an agent connected from a worker lists the workers (tests/test_leases.py); no
    # session here names one
    "workers": Row(fixed({}), lambda role, kind: "forbidden"),
    "message.react": Row(
        in_room(
            lambda w, r, k: {"room": ROOM[k], "message_id": w.message[k], "value": 1}, join=True
        ),
        poster,
    ),
    "reputation": Row(fixed({}), anyone),
    "proposal.create": Row(_create, _create_expect),
    "proposal.review": Row(_fresh_for_review, arena_supervisor),
    "canon.revert": Row(_approved_for_revert, _revert_expect),
    "proposals": Row(in_room(lambda w, r, k: {"arena": ROOM[k]}), reader, _only_this_arena),
    "proposal.attach": Row(_attach, _attach_expect, hides_arena=True),
    "proposal.attachment": Row(
        in_arena(lambda w, r, k: {"id": w.pending[k], "name": w.attachment[k]}),
        arena_reader,
        _shows_secret,
        hides_arena=True,
    ),
    "proposal.get": Row(
        in_arena(lambda w, r, k: {"id": w.pending[k]}), arena_reader, _shows_secret, True
    ),
    "canon.get": Row(
        in_arena(lambda w, r, k: {"path": w.canon[k], "version": 1}),
        arena_reader,
        _shows_secret,
        hides_arena=True,
    ),
    "ticket.file": Row(fixed({"title": "Help", "body": "how?"}), supervisor),
    "tickets": Row(
        fixed({}),
        lambda role, kind: reader(role, "external"),
        lambda w, r, k, data: _shows_secret(w, r, "external", data),
    ),
    "ticket.escalate": Row(
        _escalate,
        lambda role, kind: (
            ("ok" if posts(role, kind) else "forbidden") if kind == "external" else None
        ),
    ),
    "mod.mute": Row(fixed({"principal": "tgt", "seconds": 60}), supervisor),
    "mod.unmute": Row(fixed({"principal": "tgt"}), supervisor),
    "mod.kick": Row(in_room(lambda w, r, k: {"principal": "tgt", "room": ROOM[k]}), supervisor),
    "mod.pause": Row(in_room(lambda w, r, k: {"room": ROOM[k]}), supervisor, after=_resume),
    "mod.resume": Row(_paused, supervisor, after=_resume),
    "mod.queue": Row(
        in_room(lambda w, r, k: {"room": ROOM[k], "state": "open"}),
        supervisor,
        _queue_of_room,
    ),
    "mod.release": Row(_held, supervisor),
    "mod.drop": Row(_held, supervisor),
    "mod.clear": Row(_flagged, supervisor),
    # an agent that is not an AI moderator (tests/test_screening_hub.py has one)
    "mod.flag": Row(_agent_message, supervisor),
    "mod.hold": Row(_agent_message, supervisor),
}


def _text(data: Any) -> str:
    """The JSON of an answer or push, with every base64 content decoded into it."""
    decoded: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "content_base64" and isinstance(item, str):
                    decoded.append(base64.b64decode(item).decode(errors="replace"))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return json.dumps(data) + "".join(decoded)


def _leaks(world: World, role: str, data: Any) -> list[str]:
    """The room kinds ``role`` may not read whose secret ``data`` carries."""
    text = _text(data)
    return [kind for kind in KINDS if not reads(role, kind) and world.secret[kind] in text]


# the tests ----------------------------------------------------------------------------


@pytest.mark.unit
def test_the_table_has_a_row_for_every_event() -> None:
    assert sorted(TABLE) == sorted(REQUESTS), "give every event of REQUESTS its row in TABLE"


@pytest.mark.parametrize("event", sorted(REQUESTS))
async def test_every_role_on_every_room_kind(world: World, event: str) -> None:
    row = TABLE[event]
    wrong: list[str] = []
    for kind, role in itertools.product(KINDS, ROLES):
        expected = row.expect(role, kind)
        payload = await row.payload(world, role, kind)
        if expected is None:
            assert payload is None, "a cell without a resource sends nothing"
            continue
        ack = await world.call(role, event, payload)
        got = "ok" if ack["ok"] else ack["error"]["code"]
        where = f"{event} as {role} ({NAME[role]}) on {kind} ({ROOM[kind]})"
        if got != expected:
            wrong.append(f"{where}: {got} ({ack.get('error')}), expected {expected}")
        elif ack["ok"] and row.check is not None:
            try:
                row.check(world, role, kind, ack["data"])
            except AssertionError as exc:
                wrong.append(f"{where}: {exc}")
        if not ack["ok"] and row.hides_arena and got == "forbidden":
            message = ack["error"]["message"]
            if ROOM[kind] in message:
                wrong.append(f"{where}: the refusal names the arena: {message}")
        leaked = _leaks(world, role, ack)
        if leaked:
            wrong.append(f"{where}: the answer carries what {leaked} hold: {ack}")
        if row.after is not None:
            await row.after(world, role, kind)
    assert not wrong, "\n".join(wrong)


async def test_no_push_carries_what_its_receiver_may_not_read(world: World) -> None:
    """Every push of the module to every role: those of the table when it ran first, and
    those made here (every role joins what it may, the member writes everywhere)."""
    for role, kind in itertools.product(ROLES, KINDS):
        await world.call(role, "join", {"room": ROOM[kind]})
    for kind in KINDS:
        ack = await world.call("member", "send", {"room": ROOM[kind], "text": world.secret[kind]})
        assert ack["ok"], ack
    await eventually(
        lambda: all(
            any(world.secret[k] in _text(data) for _event, data in world.pushes[role])
            for role in SUPERVISORS
            for k in KINDS
        ),
        what="the messages pushed to the supervisors",
    )
    for role, pushes in world.pushes.items():
        for event, data in pushes:
            assert not _leaks(world, role, data), (role, event, data)


async def test_listing_every_arena_is_for_supervisors(world: World) -> None:
    for role in ROLES:
        ack = await world.call(role, "proposals", {})
        if role in SUPERVISORS:
            arenas = {p["arena"] for p in ack["data"]["proposals"]}
            assert {"compiler", EXTERNAL} <= arenas
        else:
            assert ack["error"]["code"] == "invalid_payload", ack
            assert not _leaks(world, role, ack)


async def test_a_canon_path_belongs_to_one_arena(world: World) -> None:
    """eve (creative) cannot propose over compiler's document, and the refusal tells her
    nothing of it: not its version, not its content, not its arena."""
    document = {"arena": "creative", "kind": "document", "path": world.canon["arena"]}
    for base_version in (0, 1, 99):
        ack = await world.call(
            "outsider",
            "proposal.create",
            {**document, "base_version": base_version, "title": "mine", "content": "x\n"},
        )
        assert ack["error"]["code"] == "forbidden", ack
        assert "compiler" not in ack["error"]["message"] and "99" not in ack["error"]["message"]
    ack = await world.call(
        "outsider",
        "proposal.create",
        {**document, "path": "tickets/99", "base_version": 0, "title": "t", "content": "x\n"},
    )
    assert ack["error"]["code"] == "invalid_payload" and "ticket answers" in ack["error"]["message"]


async def test_a_proposal_over_another_arenas_document_shows_it_to_no_outsider(
    world: World,
) -> None:
    """A proposal stored before paths belonged to one arena: its diff would show
    external's canon to a creative agent, and approving it would merge into it."""
    eve = world.principals["eve"]
    legacy = await world.store.pool.fetchval(
        """INSERT INTO proposals (arena, author_id, kind, path, base_version, title, content)
           VALUES ('creative', $1, 'document', $2, 1, 'over', 'overwritten') RETURNING id""",
        eve.id,
        world.canon["external"],
    )
    ack = await world.call("outsider", "proposal.get", {"id": legacy})
    assert ack["error"]["code"] == "forbidden" and not _leaks(world, "outsider", ack), ack
    detail = await world.call("moderator", "proposal.get", {"id": legacy})
    assert world.secret["external"] in detail["data"]["diff"]
    refused = await world.call(
        "moderator", "proposal.review", {"id": legacy, "decision": "approve"}
    )
    assert refused["error"]["code"] == "conflict", refused
    assert "reject" in refused["error"]["message"]
    canon = await world.store.canon.entry(world.canon["external"])
    assert canon is not None and canon.version == 1 and canon.arena == EXTERNAL
    rejected = await world.call(
        "moderator", "proposal.review", {"id": legacy, "decision": "reject", "reason": "no"}
    )
    assert rejected["data"]["status"] == "rejected"
