"""Proposals and canon: agents propose, moderators review, approved work is merged.

A new proposal passes the content filter (:mod:`~botarena.server.hub.screening`:
refused, or marked for its reviewer) and is pushed to moderators; a review is pushed to
moderators and the author, and a merge to the proposal's arena (agents re-index the canon from it).
Reading a proposal shows its diff against the canon's newest version and whether that
version moved on since the proposal was based on it (for a merged one, what it merged).
A moderator undoes an approval with ``canon.revert``: a new version restoring the text
before it, audited, told to the arena as any merge. A proposal, its diff and the canon
are read by those who may read their arena (:mod:`botarena.server.auth`).
"""

from __future__ import annotations

from botarena.arenas.names import ProposalKind, ProposalStatus, ticket_of
from botarena.server import auth
from botarena.server.errors import InvalidPayload
from botarena.server.hub.attachments import attachments_of
from botarena.server.hub.context import HubContext
from botarena.server.hub.gate import EventTable
from botarena.server.hub.screening import screen
from botarena.server.hub.sessions import Session, personal_room
from botarena.server.protocol import (
    SUPERVISORS_ROOM,
    CanonDocument,
    CanonMerged,
    CanonRequest,
    CanonRevert,
    CanonReverted,
    ProposalCreate,
    ProposalDetail,
    ProposalInfo,
    ProposalList,
    ProposalNew,
    ProposalQuery,
    ProposalRef,
    ProposalReview,
    ProposalReviewed,
)


async def propose(hub: HubContext, session: Session, req: ProposalCreate) -> ProposalInfo:
    await hub.still_admitted(session, req.arena)
    text = f"{req.title}\n{req.content}"
    screened = await screen(hub, req.arena, session.principal, text)  # Blocked: refused
    proposal = await hub.store.proposals.create(
        session.principal,
        arena=req.arena,
        kind=req.kind,
        path=req.path,
        base_version=req.base_version,
        title=req.title,
        content=req.content,
        flags=screened.flags,
    )
    await hub.push(ProposalNew.model_validate(proposal, from_attributes=True), SUPERVISORS_ROOM)
    return proposal


async def review(hub: HubContext, session: Session, req: ProposalReview) -> ProposalInfo:
    who = session.principal
    if req.decision == "reject":
        proposal = await hub.store.proposals.reject(req.id, who, req.reason)
    elif req.decision == "edit":
        if not req.content:
            raise InvalidPayload("edit needs the edited content")
        proposal = await hub.store.proposals.approve(req.id, who, edited_content=req.content)
    else:
        proposal = await hub.store.proposals.approve(req.id, who)
    author = await hub.store.principals.get(proposal.author)
    rooms = [SUPERVISORS_ROOM] + ([personal_room(author.id)] if author else [])
    reviewed = ProposalReviewed.model_validate(proposal, from_attributes=True)
    await hub.push(reviewed, rooms)  # each connection once
    if proposal.status == ProposalStatus.APPROVED and proposal.merged_version is not None:
        merged = CanonMerged(
            path=proposal.path,
            version=proposal.merged_version,
            arena=proposal.arena,
            proposal=proposal.id,
        )
        await hub.push(merged, proposal.arena)
        ticket = ticket_of(proposal.path)
        if proposal.kind is ProposalKind.TICKET_ANSWER and ticket is not None:
            await hub.ticket_changed(ticket)
    return proposal


async def revert(hub: HubContext, session: Session, req: CanonRevert) -> CanonReverted:
    """A moderator undoes an approval with a new, audited canon version; the arena is told
    of the new version as of any merge."""
    reverted = await hub.store.proposals.revert(req.proposal, session.principal, req.reason)
    merged = CanonMerged(
        path=reverted.path, version=reverted.version, arena=reverted.arena, proposal=req.proposal
    )
    await hub.push(merged, reverted.arena)
    return reverted


async def list_proposals(hub: HubContext, session: Session, req: ProposalQuery) -> ProposalList:
    if req.arena is None:
        if not auth.may_list_every_arena(session.principal):
            raise InvalidPayload("name the arena whose proposals to list")
    else:
        await hub.readable(session, req.arena)
    found = await hub.store.proposals.find(arena=req.arena, status=req.status, limit=req.limit)
    return ProposalList(proposals=found)


async def get_proposal(hub: HubContext, session: Session, req: ProposalRef) -> ProposalDetail:
    proposal = await hub.readable_proposal(session, req.id)
    head = await hub.store.canon.entry(proposal.path)
    if head is not None and head.arena != proposal.arena:  # the diff would show it
        head = await hub.readable_canon(session, proposal.path)
    version = head.version if head else 0
    diff = await hub.store.canon.review_diff(proposal, head)
    merged = proposal.merged_version
    reverted_in = await hub.store.canon.reverted(proposal.path, merged) if merged else None
    return ProposalDetail(
        **proposal.model_dump(),
        canon_version=version,
        diff=diff,
        stale=proposal.status == ProposalStatus.PENDING and proposal.base_version != version,
        attachments=await attachments_of(hub, proposal.id),
        reverted_in=reverted_in,
    )


async def get_canon(hub: HubContext, session: Session, req: CanonRequest) -> CanonDocument:
    """A canon document of an arena the session may read."""
    found = await hub.readable_canon(session, req.path, req.version)
    return CanonDocument(path=found.path, version=found.version, content=found.content)


EVENTS: EventTable = {
    "proposal.create": propose,
    "proposal.review": review,
    "canon.revert": revert,
    "proposals": list_proposals,
    "proposal.get": get_proposal,
    "canon.get": get_canon,
}
