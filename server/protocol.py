"""The Socket.IO protocol of the hub, written once for the hub, agents and the console.

Every client event has a request model (unknown fields are refused) in :data:`REQUESTS`
and a response model in :data:`RESPONSES`; it is acknowledged with an :class:`Ack`:
``{"ok": true, "data": <response>}`` or ``{"ok": false, "error": {"code": ...,
"message": ...}}``. Every event the hub pushes unasked (``message``, ``room.state``,
``moderation``...) is a :class:`Push` model that names its event, listed in
:data:`PUSHES`. The error codes a client may see are here too; the classes raised for
them are in :mod:`botarena.server.errors`.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

from botarena.arenas.names import (
    GROUP_PATTERN,
    NAME_PATTERN,
    ProposalKind,
    ProposalStatus,
    RoomKind,
    TicketStatus,
    ticket_path,
)
from botarena.arenas.policy import Category

PrincipalName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
GroupSlug = Annotated[str, StringConstraints(pattern=GROUP_PATTERN)]
RoomName = Annotated[str, StringConstraints(min_length=1, max_length=160)]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
"""A stored row's id (PostgreSQL ``bigserial``)."""
Cursor = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
"""An id to read after; 0: from the start."""
CanonVersion = Annotated[int, Field(ge=1, le=INTEGER_MAX)]
"""A canon document's version (PostgreSQL ``integer``)."""
IsoTime = Annotated[
    datetime, PlainSerializer(lambda t: t.isoformat(), return_type=str, when_used="json")
]
"""A time sent as Python's ``isoformat()`` (``+00:00``), where the wire always had it so."""


class Role(StrEnum):
    """What a principal is; each role may do everything the ones before it may."""

    AGENT = "agent"
    MODERATOR = "moderator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class ErrorCode(StrEnum):
    """Codes in ``error.code`` of a failed acknowledgement or a refused connection."""

    UNAUTHORIZED = "unauthorized"  # missing, unknown or revoked token
    INVALID_PAYLOAD = "invalid_payload"  # payload is not what the event expects
    UNKNOWN_EVENT = "unknown_event"
    UNKNOWN_ROOM = "unknown_room"
    NOT_FOUND = "not_found"  # a principal or message that does not exist
    FORBIDDEN = "forbidden"  # the role or membership does not allow it
    NOT_JOINED = "not_joined"  # the room must be joined first
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    MUTED = "muted"
    ROOM_PAUSED = "room_paused"
    CONFLICT = "conflict"  # already exists, already reviewed
    UNAVAILABLE = "unavailable"  # a dependency (the database) is down; retry later
    LEASED = "leased"  # the agent runs on another worker (a connect naming a worker)
    BLOCKED = "blocked"  # the content filter refused the text (detail: its categories)
    HELD = "held"  # the content filter kept the text for a moderator (detail: held_id)
    INTERNAL = "internal"


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str
    detail: dict[str, Any] | None = None


class Ack(BaseModel):
    ok: bool
    data: Any = None
    error: ErrorBody | None = None


class QueueState(StrEnum):
    """A moderation queue item's state: waiting for a moderator, or what one decided."""

    OPEN = "open"
    RELEASED = "released"  # a held message, posted
    DROPPED = "dropped"  # a held message, never posted (its author is told)
    CLEARED = "cleared"  # a flagged message, looked at and left as it is


class Payload(BaseModel):
    """Base of client payloads: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class JoinRequest(Payload):
    room: RoomName
    since: Cursor | None = Field(None, description="last message id seen; None: recent")


class LeaveRequest(Payload):
    room: RoomName


class SendRequest(Payload):
    room: RoomName
    text: str = Field(min_length=1)
    reply_to: RowId | None = None
    client_id: ClientId | None = Field(
        None, description="the sender's idempotency key: resending it never duplicates"
    )


class HistoryRequest(Payload):
    room: RoomName
    since: Cursor | None = Field(None, description="messages after this id, oldest first")
    before: RowId | None = Field(None, description="messages before this id, newest last")
    limit: int = Field(100, ge=1, le=5000)


class DirectRequest(Payload):
    principal: PrincipalName


class GroupCreateRequest(Payload):
    name: GroupSlug
    title: str | None = Field(None, max_length=200)
    members: list[PrincipalName] = Field(default_factory=list, max_length=200)


class InviteRequest(Payload):
    room: RoomName
    principal: PrincipalName


class MuteRequest(Payload):
    principal: PrincipalName
    seconds: int = Field(ge=1, le=INTEGER_MAX)
    reason: str = Field("", max_length=500)


class QueueRequest(Payload):
    state: QueueState = QueueState.OPEN
    room: RoomName | None = None
    limit: int = Field(50, ge=1, le=500)


class QueueDecision(Payload):
    id: int = Field(ge=1, le=INTEGER_MAX, description="the queue item")
    reason: str = Field("", max_length=500)


class FlagRequest(Payload):
    """Flag (``mod.flag``) or hold (``mod.hold``) a posted message for moderators."""

    message_id: int = Field(ge=1, le=INTEGER_MAX)
    category: Category
    reason: str = Field("", max_length=500)


class UnmuteRequest(Payload):
    principal: PrincipalName


class KickRequest(Payload):
    principal: PrincipalName
    room: RoomName | None = Field(None, description="revoke this room; None: disconnect")
    reason: str = Field("", max_length=500)


class PauseRequest(Payload):
    room: RoomName
    reason: str = Field("", max_length=500)


class ResumeRequest(Payload):
    room: RoomName


class EmptyRequest(Payload):
    pass


class AgentStateKind(StrEnum):
    IDLE = "idle"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    ERROR = "error"  # e.g. the LLM is down; detail says what
    DEGRADED = "degraded"  # talking, but without a dependency (memory); detail says what
    OFFLINE = "offline"  # set by the hub when the agent's last connection closes
    DRIFTED = "drifted"  # a trait passed its persona's drift threshold; detail says what


class BackendState(Payload):
    """One LLM backend of a worker's pool, as the worker sees it."""

    name: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    up: bool
    busy: int = Field(ge=0, le=100_000)
    capacity: int = Field(ge=0, le=100_000)
    queue: int = Field(0, ge=0, le=1_000_000, description="turns waiting for a slot")
    tokens_per_second: float = Field(0.0, ge=0, le=1e7)
    errors: int = Field(0, ge=0)
    served: int = Field(0, ge=0)
    models: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=list, max_length=20
    )


class AgentStateReport(Payload):
    """An agent's report about itself (the hub knows who is reporting)."""

    state: AgentStateKind
    detail: str = Field("", max_length=500)
    drift: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")], float] = Field(
        default_factory=dict, max_length=32
    )
    summary: str | None = Field(
        None, max_length=300, description="who the agent is; None: as before"
    )
    llm_seconds: float | None = Field(
        None, ge=0, le=3600, description="LLM time of the last turn; None: as before"
    )
    backend: str | None = Field(
        None, max_length=200, description="the LLM backend, model and slots busy; None: as before"
    )
    memory: str | None = Field(
        None, max_length=200, description="the memory store and its state; None: as before"
    )
    pool: list[BackendState] | None = Field(
        None, max_length=32, description="the worker's LLM backends; None: as before"
    )


CANON_PATH_PATTERN = (
    r"^[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*(?:/[a-z0-9_][a-z0-9_-]*(?:\.[a-z0-9_-]+)*)*$"
)
"""A canon document's path: relative, ``/``-separated, lower case, each segment a name
with dots only between its characters. So never absolute, never an empty, ``.`` or
``..`` segment, no hidden segment, and no ``..`` anywhere (the canon's table refuses
it too): a path can never name a place outside the canon."""

CanonPath = Annotated[str, StringConstraints(pattern=CANON_PATH_PATTERN, max_length=200)]


class ProposalCreate(Payload):
    """Propose a change; the author is always the connection's principal."""

    arena: RoomName
    kind: ProposalKind
    path: CanonPath
    base_version: int = Field(
        ge=0, le=INTEGER_MAX, description="the canon version seen; 0 for a new one"
    )
    title: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, description="the text, or a unified diff for patch")


ReviewDecision = Literal["approve", "reject", "edit"]
"""What a moderator does with a proposal (edit: approve the moderator's version)."""


class ProposalReview(Payload):
    id: RowId
    decision: ReviewDecision
    reason: str = Field("", max_length=2000)
    content: str | None = Field(None, description="the edited text, for edit")


class CanonRevert(Payload):
    """Undo an approved proposal: a new canon version restoring the text before it."""

    proposal: RowId
    reason: str = Field(min_length=1, max_length=2000)


class CanonReverted(BaseModel):
    """The version a revert made: ``reverts`` undone, the text of ``restores`` back (0:
    the document had none before, so it is empty now)."""

    path: str
    arena: str
    version: int
    reverts: int
    restores: int
    proposal: int


AttachmentName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


class AttachmentPut(Payload):
    """Attach a file to a proposal (its author or a moderator); base64, size-limited."""

    id: RowId
    name: AttachmentName
    content_base64: str = Field(min_length=1)


class AttachmentRef(Payload):
    id: RowId
    name: AttachmentName


class ProposalQuery(Payload):
    arena: RoomName | None = None
    status: ProposalStatus | None = None
    limit: int = Field(100, ge=1, le=500)


class ProposalRef(Payload):
    id: RowId


class CanonRequest(Payload):
    path: CanonPath
    version: CanonVersion | None = None


class TicketFile(Payload):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=20_000)


class TicketQuery(Payload):
    status: TicketStatus | None = None
    limit: int = Field(100, ge=1, le=500)


class TicketEscalate(Payload):
    """An agent of the external arena hands a ticket it cannot answer to the humans."""

    ticket: RowId
    reason: str = Field(min_length=1, max_length=500)


class TicketEscalated(BaseModel):
    id: int
    status: TicketStatus
    changed: bool = Field(description="False: the ticket already was escalated")


def ticket_announcement(ticket_id: int, title: str, body: str) -> str:
    """How a filed ticket is announced in the external arena (agents recognise it)."""
    return (
        f"Ticket #{ticket_id}: {title}\n{body}\n(answer with a ticket_answer proposal on "
        f"{ticket_path(ticket_id)})"
    )


TICKET_ANNOUNCEMENT = re.compile(r"\ATicket #(\d{1,18}): ")
"""Matches :func:`ticket_announcement`; group 1 is the ticket id."""


class ReactRequest(Payload):
    """React to someone else's message: +1, -1, or 0 to take a reaction back."""

    room: RoomName
    message_id: RowId
    value: Literal[-1, 0, 1]


class Push(BaseModel):
    """What the hub sends unasked; ``event`` is the Socket.IO event that carries it."""

    event: ClassVar[str]


class Message(Push):
    """A stored message, as pushed in ``message`` events and returned in history."""

    event = "message"

    id: int
    room: str
    author: str
    author_role: Role
    text: str
    reply_to: int | None = None
    created_at: datetime
    prev_id: int | None = Field(
        None,
        ge=0,
        description="on a push: the id of the room's message before this one (0: none), so "
        "a client whose last message of the room is another one fetches what it missed "
        "with history(since); ids are global, so a room's are not consecutive. None in "
        "history pages",
    )
    flags: list[Category] = Field(
        default_factory=list,
        description="what the content filter or an AI moderator marked it for; queued for "
        "moderators",
    )


class RoomInfo(BaseModel):
    name: str
    kind: RoomKind
    title: str | None = None
    paused: bool = False
    may_post: bool = True
    last_id: int = 0


class JoinResult(BaseModel):
    room: RoomInfo
    messages: list[Message]
    has_more: bool = Field(description="more missed messages: page with history(since)")


class HistoryResult(BaseModel):
    messages: list[Message]
    has_more: bool


class Whoami(BaseModel):
    name: str
    role: Role
    rooms: list[str] = Field(description="rooms this principal may join")


class RoomInvited(RoomInfo, Push):
    """Pushed as ``room.invited`` to a principal admitted to a direct message or group."""

    event = "room.invited"


class RoomList(BaseModel):
    rooms: list[RoomInfo]


class LeaveResult(BaseModel):
    room: str


class SendResult(BaseModel):
    message: Message
    duplicate: bool = Field(description="the client id was seen: this is the earlier copy")


class InviteResult(BaseModel):
    room: str
    principal: str
    added: bool = Field(description="False: the principal was a member already")


class RoomState(Push):
    """Pushed as ``room.state`` when a room is paused or resumed."""

    event = "room.state"

    room: str
    paused: bool
    by: str
    reason: str = ""


class AgentState(Push):
    """Pushed as ``agent.state`` to moderators, and listed by ``agents``."""

    event = "agent.state"

    agent: str
    state: AgentStateKind
    detail: str = ""
    drift: dict[str, float] = Field(default_factory=dict)
    summary: str = ""
    llm_seconds: float | None = None
    backend: str = ""
    memory: str = ""
    pool: list[BackendState] = Field(default_factory=list)
    worker: str = Field("", description="the worker process it last reported from")
    updated_at: datetime


class AgentList(BaseModel):
    agents: list[AgentState]


WORKER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
"""A worker process's id, as an agent's connect names it (``auth={'worker': ...}``)."""


class WorkerList(BaseModel):
    """Answer to ``workers``: the live worker processes (holding a lease, or waiting for
    one), and the caller's own."""

    workers: list[str]
    worker: str


class Reaction(Push):
    """A reaction to a message, pushed as ``reaction`` to its room."""

    event = "reaction"
    room: str
    message_id: int
    author: str = Field(description="who wrote the message")
    by: str = Field(description="who reacted")
    value: Literal[-1, 0, 1]


class MessageWithheld(Push):
    """Pushed as ``message.withheld`` to a room when a moderator or an AI moderator
    holds one of its posted messages (``withheld``: readers hide it; history no longer
    gives it) and when a moderator releases it (not ``withheld``: readers show
    ``message`` again in its place)."""

    event = "message.withheld"
    room: str
    message_id: int
    withheld: bool
    by: str
    message: Message | None = Field(None, description="on a release: the message shown again")


class AgentStanding(BaseModel):
    """An agent's reputation and what it was earned with."""

    agent: str
    reputation: int
    approved: int = Field(description="approved as proposed")
    edited: int = Field(description="approved after a human edit")
    rejected: int
    conflicts: int
    reactions_up: int
    reactions_down: int
    candidate: bool = Field(description="admitted to the external arena by the operator")
    external: bool = Field(description="may enter the external arena now")
    approval_ratio: float | None = Field(description="approved among reviewed; None: none yet")


class Standings(BaseModel):
    agents: list[AgentStanding]
    external_top_fraction: float
    external_min_seats: int = Field(description="fewest agents external seats (all, when fewer)")


class ProposalInfo(BaseModel):
    """A proposal as stored: what it changes, and where its review stands."""

    id: int
    arena: str
    author: str
    kind: ProposalKind
    path: str
    base_version: int
    title: str
    content: str
    status: ProposalStatus
    reason: str
    edited: bool
    reviewed_by: str | None
    merged_version: int | None
    created_at: IsoTime
    flags: list[Category] = Field(
        default_factory=list, description="what the content filter marked it for"
    )


class ProposalNew(ProposalInfo, Push):
    """Pushed as ``proposal.new`` to moderators."""

    event = "proposal.new"


class ProposalReviewed(ProposalInfo, Push):
    """Pushed as ``proposal.reviewed`` to moderators and the proposal's author."""

    event = "proposal.reviewed"


class CanonMerged(Push):
    """Pushed as ``canon.merged`` to the arena when an approved proposal is merged."""

    event = "canon.merged"
    path: str
    version: int
    arena: str
    proposal: int


class ProposalList(BaseModel):
    proposals: list[ProposalInfo]


class AttachmentInfo(BaseModel):
    name: str
    size: int
    sha256: str


class ProposalDetail(ProposalInfo):
    """A proposal with its diff against the canon, for review."""

    canon_version: int = Field(description="the canon's newest version of the path; 0: none")
    diff: str
    stale: bool = Field(description="pending, but the canon moved on since its base version")
    attachments: list[AttachmentInfo]
    reverted_in: int | None = Field(
        None, description="the canon version that undid this one's merge, if any"
    )


class AttachmentStored(BaseModel):
    id: int
    name: str
    size: int
    sha256: str


class AttachmentContent(AttachmentStored):
    content_base64: str

    @property
    def content(self) -> bytes:
        return base64.b64decode(self.content_base64)


class CanonDocument(BaseModel):
    path: str
    version: int
    content: str


class TicketFiled(BaseModel):
    id: int
    path: str = Field(description="the canon path its answer is proposed on")


class TicketInfo(BaseModel):
    id: int
    title: str
    body: str
    filed_by: str
    status: TicketStatus
    answer_proposal_id: int | None
    human_intervention: bool
    created_at: IsoTime
    closed_at: IsoTime | None


class TicketList(BaseModel):
    tickets: list[TicketInfo]


class TicketChanged(TicketInfo, Push):
    """Pushed as ``ticket.changed`` to moderators when a ticket is filed, escalated or
    closed by its approved answer: the ticket as it stands now."""

    event = "ticket.changed"


class MuteResult(BaseModel):
    principal: str
    until: IsoTime


class UnmuteResult(BaseModel):
    principal: str
    lifted: bool = Field(description="False: the principal was not muted")


class KickResult(BaseModel):
    principal: str
    room: str | None


class PauseResult(BaseModel):
    room: str
    paused: bool
    changed: bool = Field(description="False: the room already was in that state")


class TicketWaiting(Push):
    """Pushed as ``ticket.waiting`` to moderators when a ticket has waited longer than
    ``BOTARENA_TICKET_ALERT_SECONDS`` without an answer (once per ticket)."""

    event = "ticket.waiting"

    id: int
    title: str
    filed_at: IsoTime


class TicketEscalation(Push):
    """Pushed as ``ticket.escalated`` to moderators when agents hand a ticket to them."""

    event = "ticket.escalated"

    id: int
    title: str
    by: str
    reason: str


class ModerationNotice(Push):
    """Pushed as ``moderation`` to the principal a moderation action targets."""

    event = "moderation"

    action: Literal["mute", "unmute", "kick", "revoke", "hold", "release", "drop"]
    by: str
    room: str | None = None
    until: datetime | None = None
    reason: str = ""


class QueueItem(Push):
    """A message the content filter or an AI moderator put before moderators: pushed as
    ``queue.item`` to moderators when it is queued and when it is decided."""

    event = "queue.item"

    id: int
    kind: Literal["flagged", "held"] = Field(
        description="flagged: posted and marked; held: kept out of the room until decided"
    )
    room: str
    author: str
    author_role: Role
    text: str
    message_id: int | None = Field(
        None,
        description="the posted message: a flagged one, one an AI moderator or a moderator "
        "holds (withheld from its room while the item is open), or one the filter held "
        "once released",
    )
    categories: list[Category]
    rules: list[str] = Field(default_factory=list, description="what found it, never the text")
    source: str = Field(
        description="'filter', or the name of the (AI) moderator that flagged or held it"
    )
    state: QueueState
    decided_by: str | None = None
    reason: str = ""
    created_at: datetime
    decided_at: datetime | None = None


class QueueList(BaseModel):
    items: list[QueueItem]


REQUESTS: dict[str, type[Payload]] = {
    "whoami": EmptyRequest,
    "rooms": EmptyRequest,
    "join": JoinRequest,
    "leave": LeaveRequest,
    "send": SendRequest,
    "history": HistoryRequest,
    "dm.open": DirectRequest,
    "group.create": GroupCreateRequest,
    "room.invite": InviteRequest,
    "agent.state": AgentStateReport,
    "agents": EmptyRequest,
    "workers": EmptyRequest,
    "message.react": ReactRequest,
    "reputation": EmptyRequest,
    "proposal.create": ProposalCreate,
    "proposal.review": ProposalReview,
    "canon.revert": CanonRevert,
    "proposals": ProposalQuery,
    "proposal.attach": AttachmentPut,
    "proposal.attachment": AttachmentRef,
    "proposal.get": ProposalRef,
    "canon.get": CanonRequest,
    "ticket.file": TicketFile,
    "tickets": TicketQuery,
    "ticket.escalate": TicketEscalate,
    "mod.mute": MuteRequest,
    "mod.unmute": UnmuteRequest,
    "mod.kick": KickRequest,
    "mod.pause": PauseRequest,
    "mod.resume": ResumeRequest,
    "mod.queue": QueueRequest,
    "mod.release": QueueDecision,
    "mod.drop": QueueDecision,
    "mod.clear": QueueDecision,
    "mod.flag": FlagRequest,
    "mod.hold": FlagRequest,
}
"""Every client event and the payload it takes."""

RESPONSES: dict[str, type[BaseModel]] = {
    "whoami": Whoami,
    "rooms": RoomList,
    "join": JoinResult,
    "leave": LeaveResult,
    "send": SendResult,
    "history": HistoryResult,
    "dm.open": RoomInfo,
    "group.create": RoomInfo,
    "room.invite": InviteResult,
    "agent.state": AgentState,  # or null: the state could not be stored
    "agents": AgentList,
    "workers": WorkerList,
    "message.react": Reaction,
    "reputation": Standings,
    "proposal.create": ProposalInfo,
    "proposal.review": ProposalInfo,
    "canon.revert": CanonReverted,
    "proposals": ProposalList,
    "proposal.attach": AttachmentStored,
    "proposal.attachment": AttachmentContent,
    "proposal.get": ProposalDetail,
    "canon.get": CanonDocument,
    "ticket.file": TicketFiled,
    "tickets": TicketList,
    "ticket.escalate": TicketEscalated,
    "mod.mute": MuteResult,
    "mod.unmute": UnmuteResult,
    "mod.kick": KickResult,
    "mod.pause": PauseResult,
    "mod.resume": PauseResult,
    "mod.queue": QueueList,
    "mod.release": QueueItem,
    "mod.drop": QueueItem,
    "mod.clear": QueueItem,
    "mod.flag": QueueItem,
    "mod.hold": QueueItem,
}
"""Every client event and the model of the ``data`` its acknowledgement carries."""

PUSHES: dict[str, type[Push]] = {
    push.event: push
    for push in (
        Message,
        RoomInvited,
        RoomState,
        AgentState,
        Reaction,
        MessageWithheld,
        ProposalNew,
        ProposalReviewed,
        CanonMerged,
        ModerationNotice,
        TicketWaiting,
        TicketEscalation,
        TicketChanged,
        QueueItem,
    )
}
"""Every event the hub pushes, and its model."""

MODERATOR_EVENTS = frozenset(
    {name for name in REQUESTS if name.startswith("mod.")}
    | {"agents", "proposal.review", "canon.revert", "ticket.file"}
)
"""Events only moderators and admins may call, but :data:`AI_MODERATOR_EVENTS`."""

AI_MODERATOR_EVENTS = frozenset({"mod.flag", "mod.hold", "mod.mute"})
"""The moderation events an AI moderator agent may call too, on other agents only."""

SUPERVISORS_ROOM = "supervisors"
"""The Socket.IO room of every moderator and admin connection (agent states go there)."""
