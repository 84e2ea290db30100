"""Group commit (``server/hub/batching.py``): the sends waiting on a room are stored in
one transaction and broadcast in id order after it commits; each sender is answered with
its own outcome; a batch whose write fails is refused whole, with nothing of it stored
or broadcast. Against the real hub and PostgreSQL; the batch is made for certain by
holding the write in flight (the fault pool of ``tests/harness.py``) while other sends
queue behind it."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from botarena.server.client import HubClient
from botarena.server.errors import Muted, Unavailable
from botarena.server.protocol import Message, Role
from tests.harness import Arena, Faults, eventually, fault_messages, stays

ROOM = "compiler"


async def _writers(arena: Arena, count: int) -> list[HubClient]:
    writers = [await arena.client(f"w{i}") for i in range(count)]
    for writer in writers:
        await writer.join(ROOM)
    return writers


async def _rows(arena: Arena) -> list[tuple[int, str, int]]:
    """The room's stored messages: id, text and the transaction that wrote it."""
    rows = await arena.store.pool.fetch(
        "SELECT id, text, xmin::text::bigint AS xact FROM messages WHERE room = $1 ORDER BY id",
        ROOM,
    )
    return [(r["id"], r["text"], r["xact"]) for r in rows]


async def _batch_behind_a_held_write(
    arena: Arena, faults: Faults, writers: list[HubClient], first: HubClient
) -> tuple[asyncio.Task, list[asyncio.Task]]:
    """A first send held at the database, then one send per writer queued behind it."""
    faults.hold = asyncio.Event()
    head = asyncio.create_task(first.send(ROOM, "the first, held"))
    await eventually(lambda: faults.held == 1, what="the first write in flight")
    queued = [
        asyncio.create_task(w.send(ROOM, f"queued from {i}", client_id=f"q{i}"))
        for i, w in enumerate(writers)
    ]
    await asyncio.sleep(0.3)  # every send reached the room's queue
    assert faults.held == 1, "the queued sends waited for the write in flight"
    return head, queued


async def test_concurrent_sends_share_transactions_in_id_order_and_each_sender_hears_its_own(
    arena: Arena,
) -> None:
    heard: list[Message] = []
    seen_stored: list[bool] = []
    listener = await arena.client("listener", inbox=heard)
    await listener.join(ROOM)

    async def visible(message: Message) -> None:  # a push only after its commit
        found = await arena.store.pool.fetchval("SELECT 1 FROM messages WHERE id=$1", message.id)
        seen_stored.append(found == 1)

    watcher = await arena.client("watcher")
    watcher.on_message = visible
    await watcher.join(ROOM)
    writers = await _writers(arena, 20)

    async def burst(i: int, writer: HubClient) -> list[tuple[str, int]]:
        texts = [f"writer {i} message {n}" for n in range(8)]
        sent = await asyncio.gather(*(writer.send(ROOM, t) for t in texts))
        return [(t, m.id) for t, m in zip(texts, sent, strict=True)]

    parts = await asyncio.gather(*(burst(i, w) for i, w in enumerate(writers)))
    answers = [answer for part in parts for answer in part]
    rows = await _rows(arena)
    assert len(rows) == len(answers) == 160
    by_id = {id_: text for id_, text, _ in rows}
    assert all(by_id[id_] == text for text, id_ in answers), "each sender got its own id"

    transactions: dict[int, list[int]] = defaultdict(list)
    for id_, _, xact in rows:
        transactions[xact].append(id_)
    assert len(transactions) < len(rows), "no two sends shared a transaction"
    ids = [id_ for id_, _, _ in rows]
    for batch in transactions.values():  # one transaction holds a run of the room's ids
        start = ids.index(batch[0])
        assert ids[start : start + len(batch)] == batch

    await eventually(lambda: len(heard) == 160 and len(seen_stored) == 160, what="every push")
    assert [m.id for m in heard] == ids, "broadcast once each, in id order"
    assert [m.prev_id for m in heard] == [0, *ids[:-1]]
    assert all(seen_stored), "a message was pushed before its transaction committed"


async def test_a_batch_answers_each_sender_with_its_own_outcome(arena: Arena) -> None:
    faults = fault_messages(arena)
    heard: list[Message] = []
    listener = await arena.client("listener", inbox=heard)
    await listener.join(ROOM)
    first, *writers = await _writers(arena, 5)
    moderator = await arena.client("mod", Role.MODERATOR)
    await moderator.mute("w3", 600, "quiet")

    head, queued = await _batch_behind_a_held_write(arena, faults, writers, first)
    faults.hold.set()  # type: ignore[union-attr]
    await head
    outcomes = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(outcomes[2], Muted), outcomes[2]  # w3, muted: refused alone
    stored = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [m.text for m in stored] == ["queued from 0", "queued from 1", "queued from 3"]
    rows = await _rows(arena)
    assert [text for _, text, _ in rows] == ["the first, held", *[m.text for m in stored]]
    assert len({xact for _, _, xact in rows[1:]}) == 1, "the queued sends were one transaction"
    await eventually(lambda: len(heard) == 4, what="the stored ones broadcast")
    assert [m.id for m in heard] == [id_ for id_, _, _ in rows]


@pytest.mark.parametrize("fault", ["before", "after"])
async def test_a_batch_whose_write_fails_is_stored_whole_or_not_at_all(
    arena: Arena, fault: str
) -> None:
    faults = fault_messages(arena)
    heard: list[Message] = []
    listener = await arena.client("listener", inbox=heard)
    await listener.join(ROOM)
    first, *writers = await _writers(arena, 6)

    head, queued = await _batch_behind_a_held_write(arena, faults, writers, first)
    assert await _rows(arena) == []
    faults.next_post = fault  # for the next write: the batch's (the held one took none)
    faults.hold.set()  # type: ignore[union-attr]
    first_sent = await head
    outcomes = await asyncio.gather(*queued, return_exceptions=True)
    rows = await _rows(arena)
    assert rows[0][:2] == (first_sent.id, "the first, held")
    if fault == "before":  # never sent: each sender is told it was not stored
        for i, outcome in enumerate(outcomes):
            assert isinstance(outcome, Unavailable), outcome
            assert outcome.detail == {"outcome": "not_stored", "client_id": f"q{i}"}
        assert len(rows) == 1
        assert await stays(lambda: len(heard) <= 1), "a refused message was broadcast"
    else:  # committed, the answer lost: found again, every sender acknowledged
        texts = [f"queued from {i}" for i in range(5)]
        assert [m.text for m in outcomes] == texts  # type: ignore[union-attr]
        assert [text for _, text, _ in rows[1:]] == texts
        assert len({xact for _, _, xact in rows[1:]}) == 1
        await eventually(lambda: len(heard) == 6, what="the recovered batch broadcast")
        assert await stays(lambda: len(heard) == 6), "broadcast twice"
        assert [m.id for m in heard] == [id_ for id_, _, _ in rows]
