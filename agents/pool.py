"""The LLM pool: every turn's call routed over several backends, fairly across arenas.

A worker's backends (Ollama nodes, OpenAI-compatible servers, the embedded llama.cpp)
are the :class:`Member` s of one :class:`LLMPool`, each with its capacity (requests it
answers at once) and its models. :meth:`LLMPool.acquire` gives a turn a :class:`Slot` on
the member that has the turn's model, is up, and has the most spare capacity (the faster
one on a tie); when every such member is busy the turn waits in its arena's line, and
freed slots go to the arenas in turn, so no arena's turns starve while another floods
the pool. :meth:`LLMPool.release` learns from the call: a member that failed or timed
out is taken out for a back-off (5 s, doubling to 60 s; used before that only when no
other member can take the call) and the caller tries the next member
(:meth:`botarena.agents.turn.CrewTurns.run`); a member that answered that it
lacks the model is never sent that model again until its model list changes. A
periodic :meth:`LLMPool.check` reads each member's health and model list and measures
its speed (tokens per second of the turns it served, or of a short probe when it served
none). :meth:`LLMPool.states` is what the worker reports and the hub shows on
``/metrics`` and in the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import structlog

from botarena.agents.llm import LLMBackend, ModelMissing, model_names
from botarena.server.errors import LLMUnavailable
from botarena.server.protocol import BackendState
from botarena.server.settings import LLMSettings

log = structlog.get_logger(__name__)

FIRST_BACKOFF = 5.0
MAX_BACKOFF = 60.0
SPEED_WEIGHT = 0.3
"""Weight of the newest measure in a member's tokens per second (a moving average)."""


@dataclass
class Member:
    """One backend of the pool and what the pool knows of it."""

    name: str
    backend: LLMBackend
    capacity: int
    declared: frozenset[str] | None = None  # the models the settings list, else as listed
    models: frozenset[str] = frozenset()  # as the backend last listed them
    up: bool = True
    excluded_until: float = 0.0
    failures: int = 0  # in a row
    errors: int = 0  # in all
    served: int = 0
    busy: int = 0
    tokens_per_second: float = 0.0
    served_since_check: int = 0
    missing: dict[str, frozenset[str]] = field(default_factory=dict)  # model: list then
    _free: list[int] = field(default_factory=list)
    _llms: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._free = list(range(self.capacity))

    @classmethod
    def of(cls, backend: LLMBackend) -> Member:
        """A backend as a member under its own name, with the slots it declares (else
        one) and the models it lists."""
        return cls(backend.name, backend, getattr(backend, "slots", 1))

    def has(self, model: str) -> bool:
        """Whether this member may be sent ``model``."""
        names = model_names(model)
        if model in self.missing and self.missing[model] == self.models:
            return False
        if self.declared is not None and not names & self.declared:
            return False
        return not self.models or bool(names & self.models)

    def usable(self, now: float) -> bool:
        return self.up and now >= self.excluded_until

    @property
    def spare(self) -> int:
        return self.capacity - self.busy

    def llm(self, index: int, settings: LLMSettings) -> Any:
        """The CrewAI LLM of slot ``index`` (one per slot: it keeps its last call's state)."""
        llm = self._llms.get(index)
        if llm is None:
            llm = self._llms[index] = self.backend.crewai_llm(None, index, settings)
        return llm


@dataclass(frozen=True)
class Slot:
    """One request's place on one member."""

    member: Member
    index: int
    model: str

    def llm(self, settings: LLMSettings) -> Any:
        llm = self.member.llm(self.index, settings)
        llm.model = self.model
        return llm


@dataclass
class _Waiter:
    model: str
    avoid: Collection[str]
    future: asyncio.Future[Slot]


class LLMPool:
    """Backends shared by every agent of a worker; see the module's docstring."""

    def __init__(
        self,
        members: list[Member],
        *,
        check_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not members:
            raise ValueError("an LLM pool needs at least one backend")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must differ: {', '.join(names)}")
        self.members = members
        self.check_seconds = check_seconds
        self.clock = clock
        self._lines: dict[str, deque[_Waiter]] = {}  # per arena, oldest first
        self._last_served: list[str] = []  # arenas, least recently served first
        self._checker: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, backend: LLMBackend) -> LLMPool:
        """A pool of one backend, with its own capacity and the models it lists."""
        return cls([Member.of(backend)])

    @property
    def capacity(self) -> int:
        return sum(m.capacity for m in self.members)

    @property
    def default_model(self) -> str:
        return self.members[0].backend.default_model

    def waiting(self) -> int:
        return sum(len(line) for line in self._lines.values())

    async def ensure_model(self, model: str) -> None:
        """Raise :class:`LLMUnavailable` unless some member serves ``model`` (the first
        member's own error says how to bring it in)."""
        errors: list[LLMUnavailable] = []
        for member in self.members:
            try:
                await member.backend.ensure_model(model)
            except LLMUnavailable as exc:
                errors.append(exc)
            else:
                return
        raise errors[0]

    # routing ------------------------------------------------------------------------

    def _candidates(self, model: str, avoid: Collection[str]) -> list[Member]:
        """The members a call of ``model`` may go to: those up and not backing off, or,
        when there is none, the others that have the model (a last resort, so that a
        pool whose every backend is out still tries one rather than answer nothing)."""
        having = [m for m in self.members if m.name not in avoid and m.has(model)]
        now = self.clock()
        usable = [m for m in having if m.usable(now)]
        return usable or sorted(having, key=lambda m: (m.up is False, m.excluded_until))

    def _best(self, model: str, avoid: Collection[str]) -> Member | None:
        free = [m for m in self._candidates(model, avoid) if m.spare > 0]
        if not free:
            return None
        return max(free, key=lambda m: (m.spare / m.capacity, m.spare, m.tokens_per_second))

    def _unservable(self, model: str, avoid: Collection[str]) -> LLMUnavailable | None:
        """Why no member can take ``model``, or None when one can."""
        if self._candidates(model, avoid):
            return None
        if not any(m.has(model) for m in self.members):
            return LLMUnavailable(f"no LLM backend has the model {model!r}")
        return LLMUnavailable(
            f"every LLM backend with {model!r} failed this call: {', '.join(sorted(avoid))}"
        )

    def _take(self, member: Member, model: str, arena: str) -> Slot:
        member.busy += 1
        index = member._free.pop(0)
        if arena in self._last_served:
            self._last_served.remove(arena)
        self._last_served.append(arena)
        return Slot(member, index, model)

    async def acquire(self, model: str, arena: str, avoid: Collection[str] = ()) -> Slot:
        """A slot for one call of ``model`` from ``arena``, on a member not in ``avoid``
        (those that failed this turn already); raises :class:`LLMUnavailable` when no
        member can answer it."""
        error = self._unservable(model, avoid)
        if error is not None:
            raise error
        if not self.waiting():
            member = self._best(model, avoid)
            if member is not None:
                return self._take(member, model, arena)
        waiter = _Waiter(model, avoid, asyncio.get_running_loop().create_future())
        self._lines.setdefault(arena, deque()).append(waiter)
        self._dispatch()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result())  # given just as it was cancelled
            raise
        finally:
            line = self._lines.get(arena)
            if line is not None and waiter in line:
                line.remove(waiter)

    def _arenas_in_turn(self) -> list[str]:
        """Arenas with waiters, the least recently served first."""
        waiting = [a for a, line in self._lines.items() if line]
        order = {a: i for i, a in enumerate(self._last_served)}
        return sorted(waiting, key=lambda a: order.get(a, -1))

    def _dispatch(self) -> None:
        """Give free slots to waiting turns, one arena after another."""
        while self._place_one():
            pass

    def _place_one(self) -> bool:
        """Give a slot to the first waiting turn that can have one, looking at the least
        recently served arena first (turns whose model no member can take any more are
        answered with why); False when no waiting turn can be placed now."""
        for arena in self._arenas_in_turn():
            line = self._lines[arena]
            for waiter in list(line):
                if waiter.future.done():
                    line.remove(waiter)
                    continue
                if (error := self._unservable(waiter.model, waiter.avoid)) is not None:
                    line.remove(waiter)
                    waiter.future.set_exception(error)
                    continue
                if (member := self._best(waiter.model, waiter.avoid)) is not None:
                    line.remove(waiter)
                    waiter.future.set_result(self._take(member, waiter.model, arena))
                    return True
        return False

    def release(
        self, slot: Slot, error: BaseException | None = None, tokens: int = 0, seconds: float = 0
    ) -> None:
        """Give ``slot`` back, learning from how its call ended (``error``: what it
        raised; ``tokens`` generated in ``seconds`` when it answered)."""
        member = slot.member
        member.busy -= 1
        member._free.append(slot.index)
        if isinstance(error, ModelMissing):
            member.missing[slot.model] = member.models
            log.warning("pool.model_missing", backend=member.name, model=slot.model)
        elif isinstance(error, (LLMUnavailable, TimeoutError)):
            member.errors += 1
            if self.clock() < member.excluded_until:
                # out already: the other calls it had in flight when it failed end the same
                # way, and are one failure, not one more each (which doubled the back-off)
                log.info("pool.backend_failed_while_out", backend=member.name)
            else:
                member.failures += 1
                backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (member.failures - 1))
                member.excluded_until = self.clock() + backoff
                log.warning(
                    "pool.backend_out",
                    backend=member.name,
                    seconds=backoff,
                    error=str(error)[:200],
                )
        elif error is None:
            member.failures = 0
            member.served += 1
            member.served_since_check += 1
            if tokens and seconds > 0:
                self._measured(member, tokens / seconds)
        self._dispatch()

    @staticmethod
    def _measured(member: Member, tokens_per_second: float) -> None:
        old = member.tokens_per_second
        member.tokens_per_second = (
            tokens_per_second if not old else old + SPEED_WEIGHT * (tokens_per_second - old)
        )

    # the periodic check ---------------------------------------------------------

    async def check(self) -> None:
        """Read every member's health and models, and probe the speed of those that
        served nothing since the last check (and have a free slot for it)."""
        await asyncio.gather(*(self._check(m) for m in self.members))
        self._dispatch()

    async def _check(self, member: Member) -> None:
        health = await member.backend.health()
        listed = frozenset(health.models)
        if listed != member.models:
            member.missing.clear()  # its model list changed: try again what it lacked
            member.models = listed
        if health.ok != member.up:
            log.info("pool.backend_health", backend=member.name, up=health.ok, detail=health.detail)
        member.up = health.ok
        if health.ok and member.failures and self.clock() >= member.excluded_until:
            member.failures = 0  # recovered: the next failure backs off from the start
        if health.ok and not member.served_since_check and member.spare > 0:
            model = next(
                (m for m in (member.backend.default_model, *sorted(listed)) if member.has(m)),
                None,
            )
            if model is not None:
                member.busy += 1  # the probe holds a slot: a turn never goes beyond capacity
                try:
                    self._measured(member, await member.backend.speed(model))
                except (LLMUnavailable, TimeoutError):
                    pass
                finally:
                    member.busy -= 1
        member.served_since_check = 0

    async def start(self) -> None:
        """Check every member now, then every ``check_seconds``."""
        await self.check()
        self._checker = asyncio.create_task(self._check_every())

    async def _check_every(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                await self.check()
            except Exception:  # a check must never end the checking
                log.exception("pool.check_failed")

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker

    def states(self) -> list[BackendState]:
        """Each member as the worker reports it."""
        now = self.clock()
        waiting = self.waiting()
        return [
            BackendState(
                name=m.name,
                kind=m.backend.name,
                up=m.usable(now),
                busy=m.busy,
                capacity=m.capacity,
                queue=waiting,
                tokens_per_second=round(m.tokens_per_second, 2),
                errors=m.errors,
                served=m.served,
                models=sorted(m.declared if m.declared is not None else m.models)[:20],
            )
            for m in self.members
        ]
