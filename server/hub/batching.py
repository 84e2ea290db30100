"""Group commit: the sends waiting on a room are stored in one transaction.

:class:`RoomPoster` keeps, for each room, the messages waiting to be stored, and one
task that stores them. While a batch is being committed, the sends that arrive for the
room wait; once it has committed, they are stored together as the next batch
(:meth:`~botarena.server.store.messages.MessageRepository.post_batch`, at most
:data:`MAX_BATCH` at a time). Each message of a batch is then broadcast in id order,
and only after the commit, and its sender is answered with its own outcome right after
its broadcast. A room's messages are stored and broadcast by that one task at a time, so
this hub broadcasts every room in id order; a message that finds nothing else waiting
is stored alone, in a transaction of its own, without waiting for company.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from botarena.server.errors import Unavailable
from botarena.server.store import Store
from botarena.server.store.messages import Draft, Posted

MAX_BATCH = 128
"""The most messages of one room stored in one transaction."""

Announce = Callable[[str, Posted], Awaitable[None]]
"""Broadcasts a stored message to its room (the room's name, the post)."""

_Waiting = tuple[Draft, "asyncio.Future[Posted]"]


class RoomPoster:
    """Stores the messages sent to each room in batches, and broadcasts them in order."""

    def __init__(self, store: Store, announce: Announce) -> None:
        self._store = store
        self._announce = announce
        self._waiting: dict[str, deque[_Waiting]] = {}
        self._storing: dict[str, asyncio.Task[None]] = {}

    async def post(self, room: str, draft: Draft) -> Posted:
        """Store ``draft`` in ``room`` with whatever else waits there, broadcast it once
        committed, and answer its outcome (or raise its refusal)."""
        answer: asyncio.Future[Posted] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(room)
        if waiting is None:
            waiting = self._waiting[room] = deque()
        waiting.append((draft, answer))
        if room not in self._storing:
            self._storing[room] = asyncio.create_task(self._drain(room, waiting))
        return await answer

    async def _drain(self, room: str, waiting: deque[_Waiting]) -> None:
        batch: list[_Waiting] = []
        try:
            while waiting:
                batch = [waiting.popleft() for _ in range(min(len(waiting), MAX_BATCH))]
                outcomes = await self._store.messages.post_batch(room, [d for d, _ in batch])
                for (_, answer), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, Posted):
                        try:
                            await self._announce(room, outcome)
                        except Exception as exc:  # stored, not pushed: told to its sender
                            outcome = exc
                    _resolve(answer, outcome)
                batch = []
        except BaseException as exc:  # cancelled (the hub stops), or a bug: nobody hangs
            stopped = isinstance(exc, asyncio.CancelledError)
            unknown = Unavailable(
                "the hub stopped while storing the message; it may have been stored: "
                "send it again with its client_id",
                outcome="unknown",
            )
            not_stored = Unavailable(
                "the hub stopped before storing the message: send it again", outcome="not_stored"
            )
            for _, answer in batch:
                _resolve(answer, unknown if stopped else exc)
            for _, answer in waiting:
                _resolve(answer, not_stored if stopped else exc)
            waiting.clear()
            raise
        finally:
            del self._storing[room]
            if not waiting:
                del self._waiting[room]

    async def stop(self, timeout: float = 5.0) -> None:
        """Let the batches being stored finish (at most ``timeout`` seconds), then cancel
        what is left; its senders are answered ``unavailable``."""
        tasks = list(self._storing.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def _resolve(answer: asyncio.Future[Posted], outcome: Posted | BaseException) -> None:
    if answer.done():
        return
    if isinstance(outcome, BaseException):
        answer.set_exception(outcome)
    else:
        answer.set_result(outcome)
