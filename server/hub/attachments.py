"""Proposal attachments: files kept with a proposal, in the object store.

The author (while it may read the proposal's arena) or a moderator attaches a file
(base64 in the payload, size-limited); anyone who may read the proposal's arena fetches
it (:mod:`botarena.server.auth`). An attachment is stored once under
``attachments/<proposal>/<name>`` and never replaced (the store refuses it again with
``conflict``). The object store failing is ``unavailable``, and fetching an
attachment it does not have ``not_found``.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path

from botarena.server import auth
from botarena.server.errors import (
    Forbidden,
    InvalidPayload,
    NotFound,
    ObjectNotFound,
    ObjectStoreError,
    TooLarge,
    Unavailable,
)
from botarena.server.hub.context import HubContext
from botarena.server.hub.gate import EventTable
from botarena.server.hub.sessions import Session
from botarena.server.protocol import (
    AttachmentContent,
    AttachmentInfo,
    AttachmentPut,
    AttachmentRef,
    AttachmentStored,
)


def _key(proposal_id: int, name: str = "") -> str:
    return f"attachments/{proposal_id}/{name}"


async def attachments_of(hub: HubContext, proposal_id: int) -> list[AttachmentInfo]:
    """The files attached to a proposal."""
    prefix = _key(proposal_id)
    found = await hub.store.artifacts.find("attachment", prefix)
    return [
        AttachmentInfo(name=a["key"][len(prefix) :], size=a["size"], sha256=a["sha256"])
        for a in found
    ]


async def attach(hub: HubContext, session: Session, req: AttachmentPut) -> AttachmentStored:
    """Keep a file with a proposal, in the object store."""
    proposal = await hub.readable_proposal(session, req.id)
    who = session.principal
    if not auth.may_attach(who, proposal.author == who.name, arena_readable=True):
        raise Forbidden(f"only {proposal.author} or a moderator may attach")
    try:
        data = base64.b64decode(req.content_base64, validate=True)
    except ValueError:
        raise InvalidPayload("content_base64 is not base64") from None
    limit = hub.settings.max_attachment_bytes
    if len(data) > limit:
        raise TooLarge(f"the file is {len(data)} bytes; the limit is {limit}")
    key = _key(req.id, req.name)
    try:
        with tempfile.TemporaryDirectory(prefix="botarena-attach-") as work:
            path = Path(work) / "file"
            await asyncio.to_thread(path.write_bytes, data)
            objects = await hub.objects()
            stored = await hub.store.artifacts.put(objects, "attachment", key, path, who.name)
    except ObjectStoreError as exc:
        raise Unavailable(exc.message) from None
    return AttachmentStored(id=req.id, name=req.name, size=stored["size"], sha256=stored["sha256"])


async def attachment(hub: HubContext, session: Session, req: AttachmentRef) -> AttachmentContent:
    """A proposal's attachment, for those who may read the proposal."""
    await hub.readable_proposal(session, req.id)
    with tempfile.TemporaryDirectory(prefix="botarena-attach-") as work:
        path = Path(work) / "file"
        try:
            found = await hub.store.artifacts.get(await hub.objects(), _key(req.id, req.name), path)
        except ObjectNotFound as exc:
            raise NotFound(exc.message) from None
        except ObjectStoreError as exc:
            raise Unavailable(exc.message) from None
        data = await asyncio.to_thread(path.read_bytes)
    return AttachmentContent(
        id=req.id,
        name=req.name,
        size=found["size"],
        sha256=found["sha256"],
        content_base64=base64.b64encode(data).decode(),
    )


EVENTS: EventTable = {
    "proposal.attach": attach,
    "proposal.attachment": attachment,
}
