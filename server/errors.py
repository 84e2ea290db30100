"""Every refusal BotArena raises, as one tree, so callers catch by class, never by text.

::

    BotArenaError                  .code (a string for programs), .message (for people)
    ├── HubError                   the hub refused an event or a connection, or was not reached
    │   ├── Unauthorized           missing, unknown or revoked token
    │   ├── InvalidPayload         the payload is not what the event expects
    │   ├── UnknownEvent
    │   ├── UnknownRoom
    │   ├── NotFound               a principal, message, proposal... that does not exist
    │   ├── Forbidden              the role or membership does not allow it
    │   ├── NotJoined              the room must be joined first
    │   ├── TooLarge
    │   ├── RateLimited            .retry_after: seconds until the next event may pass
    │   ├── Muted                  .until: when the mute ends
    │   ├── RoomPaused
    │   ├── Conflict               already exists, already reviewed, stale base version
    │   ├── Unavailable            a dependency (the database) is down; retry later
    │   ├── Leased                 the agent runs on another worker (a worker's connect)
    │   ├── Blocked                the content filter refused the text (.categories)
    │   ├── Held                   the content filter kept it for a moderator (.held_id)
    │   ├── Internal
    │   ├── ConnectRefused         a connection refused without a protocol code ("refused")
    │   └── NotAnswered            raised by the client alone: the hub gave no answer
    │       ├── Unreachable        no hub answers at the URL ("unreachable")
    │       ├── NotConnected       not connected, so the event was not sent ("disconnected")
    │       │   └── ConnectionLost     the connection dropped before the answer: it may
    │       │                          have been done ("disconnected")
    │       ├── TimedOut           no acknowledgement in time ("timeout")
    │       └── BadAnswer          an answer that is not an acknowledgement ("protocol")
    ├── ObjectStoreError           the artifact store refused or failed
    │   ├── ObjectNotFound
    │   ├── ObjectRefused          a bad key or URL, a refusal, bytes not as stored
    │   └── ObjectUnavailable      the store did not answer
    ├── BundleError                a bundle, spec or key refused by the bundle commands
    │                              (.code: the check that failed: spec, key, sign, malformed...)
    ├── PatchError                 a diff that is malformed or does not fit the document
    ├── CheckpointError            a checkpoint that cannot be made or signed
    ├── BackupError                a backup or restore that cannot go on
    ├── MigrationError             the database schema cannot be brought up to date
    ├── ConfigError                settings, personas or files that cannot be used
    └── LLMUnavailable             no LLM backend answers

The hub raises :class:`HubError` subclasses anywhere below its gate, which turns them
into error acknowledgements; :class:`~botarena.server.client.HubClient` raises the same
class again from an error ack (:func:`hub_error`), so an agent writes ``except Muted:``.
Each class from ``Unauthorized`` to ``Internal`` is one protocol :class:`ErrorCode`
(:data:`HUB_ERRORS`); the ones after it carry the client's own codes and never travel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from botarena.server.protocol import ErrorBody, ErrorCode


class BotArenaError(Exception):
    """The base of every refusal: a ``code`` for programs and a ``message`` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class HubError(BotArenaError):
    """An event or connection refused by the hub (``code``: the protocol's error code),
    or a hub the client could not ask (``code``: the client's own)."""

    default_code: ClassVar[str] = ErrorCode.INTERNAL

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(self.default_code, message)
        self.detail: dict[str, Any] = detail

    def body(self) -> ErrorBody:
        """The ``error`` of the acknowledgement that carries this refusal."""
        return ErrorBody(
            code=ErrorCode(self.code), message=self.message, detail=self.detail or None
        )


class Unauthorized(HubError):
    default_code = ErrorCode.UNAUTHORIZED


class InvalidPayload(HubError):
    default_code = ErrorCode.INVALID_PAYLOAD


class UnknownEvent(HubError):
    default_code = ErrorCode.UNKNOWN_EVENT


class UnknownRoom(HubError):
    default_code = ErrorCode.UNKNOWN_ROOM


class NotFound(HubError):
    default_code = ErrorCode.NOT_FOUND


class Forbidden(HubError):
    default_code = ErrorCode.FORBIDDEN


class NotJoined(HubError):
    default_code = ErrorCode.NOT_JOINED


class TooLarge(HubError):
    default_code = ErrorCode.TOO_LARGE


class RateLimited(HubError):
    default_code = ErrorCode.RATE_LIMITED

    @property
    def retry_after(self) -> float | None:
        value = self.detail.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class Muted(HubError):
    default_code = ErrorCode.MUTED

    @property
    def until(self) -> datetime | None:
        value = self.detail.get("until")
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None


class RoomPaused(HubError):
    default_code = ErrorCode.ROOM_PAUSED


class Conflict(HubError):
    default_code = ErrorCode.CONFLICT


class Unavailable(HubError):
    default_code = ErrorCode.UNAVAILABLE


class Leased(HubError):
    default_code = ErrorCode.LEASED


class Blocked(HubError):
    default_code = ErrorCode.BLOCKED

    @property
    def categories(self) -> list[str]:
        return list(self.detail.get("categories") or [])


class Held(HubError):
    """Not a failure to retry: the message is stored, and posted if a moderator
    releases it (its author is told if one drops it)."""

    default_code = ErrorCode.HELD

    @property
    def held_id(self) -> int | None:
        value = self.detail.get("held_id")
        return value if isinstance(value, int) else None


class Internal(HubError):
    default_code = ErrorCode.INTERNAL


class ConnectRefused(HubError):
    default_code = "refused"


class NotAnswered(HubError):
    """The client got no answer from the hub; the hub never sends these."""


class Unreachable(NotAnswered):
    default_code = "unreachable"


class NotConnected(NotAnswered):
    default_code = "disconnected"


class ConnectionLost(NotConnected):
    """The connection dropped while the event waited for its answer: the hub may have
    done it (resend a message with the same client id)."""


class TimedOut(NotAnswered):
    default_code = "timeout"


class BadAnswer(NotAnswered):
    default_code = "protocol"


HUB_ERRORS: dict[ErrorCode, type[HubError]] = {
    ErrorCode(cls.default_code): cls
    for cls in (
        Unauthorized,
        InvalidPayload,
        UnknownEvent,
        UnknownRoom,
        NotFound,
        Forbidden,
        NotJoined,
        TooLarge,
        RateLimited,
        Muted,
        RoomPaused,
        Conflict,
        Unavailable,
        Leased,
        Blocked,
        Held,
        Internal,
    )
}
"""The class raised for each protocol error code."""


def hub_error(body: ErrorBody) -> HubError:
    """The refusal an error acknowledgement carries, as its own class."""
    return HUB_ERRORS[body.code](body.message, **(body.detail or {}))


class ObjectStoreError(BotArenaError):
    """The object store refused or failed; each kind is its own class below."""

    default_code: ClassVar[str] = "object_store"

    def __init__(self, message: str) -> None:
        super().__init__(self.default_code, message)


class ObjectNotFound(ObjectStoreError):
    default_code = "not_found"


class ObjectRefused(ObjectStoreError):
    """A bad key or URL, a server's refusal, bytes that are not what was stored."""

    default_code = "refused"


class ObjectUnavailable(ObjectStoreError):
    """The store did not answer, or lost bytes on the way."""

    default_code = "unavailable"


class BundleError(BotArenaError):
    """A bundle refused by build, sign, verify or install, or a key by the trust store;
    ``code`` names the check that failed (``spec``, ``key``, ``sign``, ``malformed``...)."""


class PatchError(BotArenaError):
    """A unified diff that is malformed or does not fit the document it is applied to
    (:func:`~botarena.server.patching.apply_unified_diff`). Its text is the message alone,
    as the hub quotes it inside the refusal it answers (``invalid_payload``)."""

    def __init__(self, message: str) -> None:
        super().__init__("patch", message)

    def __str__(self) -> str:
        return self.message


class CheckpointError(BotArenaError):
    """An audit checkpoint that cannot be made (a broken chain) or signed (the site key)."""

    def __init__(self, message: str) -> None:
        super().__init__("checkpoint", message)


class BackupError(BotArenaError):
    def __init__(self, message: str) -> None:
        super().__init__("backup", message)


class MigrationError(BotArenaError):
    def __init__(self, message: str) -> None:
        super().__init__("migration", message)


class ConfigError(BotArenaError):
    """Settings, personas or files that BotArena cannot use, with what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__("config", message)


class LLMUnavailable(BotArenaError):
    """No LLM backend answers (or none has the model)."""

    def __init__(self, message: str) -> None:
        super().__init__("llm_unavailable", message)
