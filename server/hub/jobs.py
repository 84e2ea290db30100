"""The hub's background jobs, every one a task of one :class:`asyncio.TaskGroup`.

* the control listener keeps a connection LISTENing on the store's control channel and
  applies each action (a kick, a revoked token) to this process's sessions; after a
  reconnect it replays what was logged while it was away, so no action is missed;
* the audit watch verifies the audit chain now and every ``audit_check_seconds``, for
  ``/metrics`` (and the alert on a broken chain);
* the archiver stores yesterday's room transcripts in the object store every
  ``archive_every_seconds`` (a day stored once; with several hubs, one stores it);
* the ticket watch tells moderators (``ticket.waiting``) of each ticket still without an
  answer ``ticket_alert_seconds`` after it was filed, once per ticket across hubs;
* the lease renewal renews the leases of this hub's agent sessions every third of
  ``lease_seconds`` and closes the sessions that lost theirs (:mod:`.leases`);
* the seat watch takes this hub's agent sessions that lost their external seat (others'
  approvals and reactions move the ranking) out of that room every
  ``external_check_seconds``, so a quiet agent stops hearing the help desk too.

:meth:`Jobs.stop` cancels the group, which cancels and awaits every task. A failing
round of a periodic job is logged and the job goes on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog

from botarena.server.archive import archive_day
from botarena.server.errors import ObjectStoreError
from botarena.server.hub.context import UNAVAILABLE, HubContext
from botarena.server.hub.leases import Leases
from botarena.server.hub.sessions import Sessions
from botarena.server.protocol import SUPERVISORS_ROOM, TicketWaiting
from botarena.server.store import ControlAction
from botarena.server.store.database import LISTEN_FAILED

log = structlog.get_logger(__name__)

APPLIED_KEPT = 10_000
"""How many applied control actions' ids are remembered, so none is applied twice."""
STOP_SECONDS = 10.0
"""How long the hub's stop waits for its jobs to end."""


def _end_if_cancelled() -> None:
    """Raise the cancellation a step swallowed: python-socketio's event dispatch (a
    disconnect's handler, run by ``sio.disconnect``) catches ``CancelledError``, and a job
    that went on would never end."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _report_end(group: asyncio.Task[None]) -> None:
    """Log the jobs' end when it is not the hub stopping them (a job that escaped)."""
    if not group.cancelled() and group.exception() is not None:
        log.error("hub.jobs_ended", error=repr(group.exception()))


class Jobs:
    """The background work of one hub process."""

    def __init__(self, hub: HubContext, sessions: Sessions, leases: Leases) -> None:
        self.hub = hub
        self.sessions = sessions
        self.leases = leases
        self.control_ready = asyncio.Event()
        self._control_seen: int | None = None  # the newest control action applied
        self._applied: deque[int] = deque(maxlen=APPLIED_KEPT)  # ids applied, newest last
        self._queue: asyncio.Queue[ControlAction] = asyncio.Queue()
        self._group: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every job; return once the control listener listens."""
        self._group = asyncio.create_task(self._run(), name="hub.jobs")
        self._group.add_done_callback(_report_end)
        await asyncio.wait_for(self.control_ready.wait(), timeout=30)

    async def stop(self) -> None:
        """Cancel every job and wait for them, ``STOP_SECONDS`` at most (then the stuck
        ones are logged and left: the hub's stop goes on)."""
        if self._group is None:
            return
        self._group.cancel()
        done, _ = await asyncio.wait({self._group}, timeout=STOP_SECONDS)
        if not done:
            stuck = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("hub.")]
            log.error("hub.jobs_not_stopped", seconds=STOP_SECONDS, tasks=stuck)
        self._group = None

    async def _run(self) -> None:
        settings = self.hub.settings
        async with asyncio.TaskGroup() as jobs:
            jobs.create_task(self._listen_control(), name="hub.control.listen")
            jobs.create_task(self._apply_queued(), name="hub.control.apply")
            jobs.create_task(
                self._every(settings.audit_check_seconds, self._check_audit), name="hub.audit"
            )
            jobs.create_task(
                self._every(settings.external_check_seconds, self._unseat), name="hub.seats"
            )
            jobs.create_task(
                self._every(self.leases.renew_every, self.leases.renew), name="hub.leases"
            )
            if settings.ticket_alert_seconds:
                every = min(60.0, max(0.1, settings.ticket_alert_seconds / 4))
                jobs.create_task(self._every(every, self._alert_overdue), name="hub.tickets")
            if settings.archive_every_seconds:
                jobs.create_task(
                    self._every(settings.archive_every_seconds, self._archive_yesterday),
                    name="hub.archive",
                )

    @staticmethod
    async def _every(seconds: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await step()
            except Exception:  # one failed round must not end the job (or the others)
                log.exception("hub.job_failed", job=step.__name__)
            _end_if_cancelled()
            await asyncio.sleep(seconds)

    # periodic jobs --------------------------------------------------------------------

    async def _archive_yesterday(self) -> None:
        yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
        try:
            stored = await archive_day(self.hub.store, await self.hub.objects(), yesterday)
        except ObjectStoreError as exc:
            log.warning("archive.not_stored", error=exc.message)
            return
        except UNAVAILABLE as exc:
            log.warning("archive.not_stored", error=str(exc))
            return
        if stored:
            log.info("archive.transcripts", day=str(yesterday), artifacts=stored)

    async def _alert_overdue(self) -> None:
        try:
            overdue = await self.hub.store.tickets.overdue(self.hub.settings.ticket_alert_seconds)
        except UNAVAILABLE as exc:
            log.warning("tickets.not_checked", error=str(exc))
            return
        for ticket in overdue:
            self.hub.metrics.tickets_overdue.inc()
            log.info("tickets.overdue", ticket=ticket["id"])
            waiting = TicketWaiting(
                id=ticket["id"], title=ticket["title"], filed_at=ticket["created_at"]
            )
            await self.hub.push(waiting, SUPERVISORS_ROOM)

    async def _unseat(self) -> None:
        try:
            unseated = await self.hub.unseat(list(self.sessions.values()))
        except UNAVAILABLE as exc:
            log.warning("seats.not_checked", error=str(exc))
            return
        if unseated:
            log.info("seats.unseated", sessions=unseated)

    async def _check_audit(self) -> None:
        metrics = self.hub.metrics
        try:
            verdict = await self.hub.store.audit.verify()
        except UNAVAILABLE as exc:
            log.warning("audit.not_checked", error=str(exc))
            return
        metrics.audit_chain_ok.set(1 if verdict.ok else 0)
        metrics.audit_entries.set(verdict.entries)
        if not verdict.ok:
            log.error("audit.chain_broken", problem=verdict.problem)

    # control actions ------------------------------------------------------------------

    async def _listen_control(self) -> None:
        """Keep one connection LISTENing for control actions; reconnect when it drops."""
        delay = 0.2
        while True:
            resume_from = self._control_seen  # what was applied before this connection
            try:
                async with self.hub.store.moderation.listen_control(self._queue.put_nowait) as lost:
                    await self._catch_up(resume_from)
                    self.control_ready.set()
                    log.info("control.listening")
                    delay = 0.2
                    await lost
                    log.warning("control.connection_lost")
            except LISTEN_FAILED as exc:
                log.warning("control.connect_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _apply_queued(self) -> None:
        """Apply control actions one at a time, whether notified or caught up."""
        while True:
            action = await self._queue.get()
            try:
                await self._apply(action)
            except Exception:  # one action that fails must not stop the next ones
                log.exception("control.not_applied", action=action.id)
            _end_if_cancelled()

    async def _catch_up(self, since: int | None) -> None:
        """After (re)connecting the listener, queue what was logged after ``since`` (the
        newest action applied before the connection dropped); at the first start, only
        note where the log stands."""
        if since is None:
            newest = await self.hub.store.moderation.last_action_id()
            self._control_seen = max(self._control_seen or 0, newest)
            self._applied.append(newest)
            return
        for action in await self.hub.store.moderation.control_actions_since(since):
            self._queue.put_nowait(action)

    async def _apply(self, action: ControlAction) -> None:
        if action.id in self._applied or (
            self._applied and action.id <= self._applied[0]  # older than any still kept
        ):
            return
        self._applied.append(action.id)
        self._control_seen = max(self._control_seen or 0, action.id)
        for session in self.sessions.of_principal(action.principal_id):
            if session.sid not in self.sessions:
                continue  # closed meanwhile
            if action.action == "revoke":
                if session.token_id == action.detail.get("token_id"):
                    await self.hub.sio.disconnect(session.sid)
            elif action.room is not None:
                await self.hub.leave(session, action.room)
            else:
                await self.hub.sio.disconnect(session.sid)
