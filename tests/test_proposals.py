"""Proposals over Socket.IO: agents propose, humans review, approved work becomes a new
canon version; conflicts, edits, rejections, authorization and immutability."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from botarena.server.client import HubClient
from botarena.server.errors import HubError
from botarena.server.patching import unified_diff
from tests.harness import Arena, answer_ticket, eventually, stays

V1 = "def add(a, b):\n    return a + b\n"


async def setup(arena: Arena) -> tuple[HubClient, HubClient, list, list, list]:
    new: list[dict] = []
    reviewed: list[dict] = []
    merged: list[dict] = []
    mod = await arena.client("mod", "moderator")
    mod.sio.on("proposal.new", new.append)
    agent = await arena.client("ada", arenas=["compiler"])
    agent.sio.on("proposal.reviewed", reviewed.append)
    agent.sio.on("canon.merged", merged.append)
    await agent.join("compiler")
    return mod, agent, new, reviewed, merged


def fields(**overrides: object) -> dict:
    """A proposal.create payload: a new document in compiler, but ``overrides``."""
    return {
        "arena": "compiler",
        "kind": "document",
        "path": "src/calc.py",
        "base_version": 0,
        "title": "calc",
        "content": V1,
        **overrides,
    }


async def propose(client: HubClient, **overrides: object) -> dict:
    return await client.call("proposal.create", fields(**overrides))


async def test_an_approved_proposal_becomes_a_canon_version(arena: Arena) -> None:
    mod, agent, new, reviewed, merged = await setup(arena)
    proposal = await propose(agent)
    assert proposal["status"] == "pending" and proposal["author"] == "ada"
    await eventually(lambda: new, what="moderators told of the proposal")
    detail = await mod.call("proposal.get", {"id": proposal["id"]})
    assert "+def add(a, b):" in detail["diff"] and detail["canon_version"] == 0

    approved = await mod.call("proposal.review", {"id": proposal["id"], "decision": "approve"})
    assert approved["status"] == "approved" and approved["merged_version"] == 1
    canon = await agent.call("canon.get", {"path": "src/calc.py"})
    assert canon == {"path": "src/calc.py", "version": 1, "content": V1}
    await eventually(lambda: reviewed and merged, what="author and arena told")
    assert merged[0] == {
        "path": "src/calc.py",
        "version": 1,
        "arena": "compiler",
        "proposal": proposal["id"],
    }

    v2 = V1 + "\n\ndef sub(a, b):\n    return a - b\n"
    patch = await propose(
        agent, kind="patch", base_version=1, content=unified_diff(V1, v2, "src/calc.py")
    )
    await mod.call("proposal.review", {"id": patch["id"], "decision": "approve"})
    assert (await agent.call("canon.get", {"path": "src/calc.py"}))["content"] == v2
    old = await agent.call("canon.get", {"path": "src/calc.py", "version": 1})
    assert old["content"] == V1, "earlier versions stay"

    verdict = await arena.store.audit.verify()
    actions = [e.action for e in await arena.store.audit.entries(20)]
    assert verdict.ok
    assert actions.count("proposal.approved") == 2 and actions.count("proposal.created") == 2


async def test_an_approval_is_undone_by_a_reverting_version_audited(arena: Arena) -> None:
    mod, agent, _new, _reviewed, merged = await setup(arena)
    first = await propose(agent)
    await mod.review(first["id"], "approve")
    v2 = V1 + "\ndef sub(a, b):\n    return a - b\n"
    second = await propose(agent, base_version=1, content=v2, title="sub")
    await mod.review(second["id"], "approve")
    await eventually(lambda: len(merged) == 2, what="two merges told")
    before = await arena.fingerprint()

    refusals = [
        (agent, {"proposal": second["id"], "reason": "mine"}, "forbidden"),
        (mod, {"proposal": second["id"], "reason": ""}, "invalid_payload"),
        (mod, {"proposal": first["id"], "reason": "older"}, "conflict"),  # v2 came after
        (mod, {"proposal": 10**9, "reason": "none"}, "not_found"),
    ]
    for who, payload, code in refusals:
        with pytest.raises(HubError) as refused:
            await who.call("canon.revert", payload)
        assert refused.value.code == code, (payload, refused.value)
    assert await arena.fingerprint() == before, "a refused revert changes nothing"

    undone = await mod.revert(second["id"], "sub is not wanted")
    assert (undone.path, undone.version, undone.reverts, undone.restores) == (
        "src/calc.py",
        3,
        2,
        1,
    )
    canon = await agent.canon("src/calc.py")
    assert (canon.version, canon.content) == (3, V1), "the text from before the merge"
    assert (await agent.canon("src/calc.py", 2)).content == v2, "every version is kept"
    await eventually(lambda: len(merged) == 3, what="the revert told to the arena")
    assert merged[2]["version"] == 3
    detail = await mod.proposal(second["id"])
    assert detail.reverted_in == 3 and detail.status == "approved"
    with pytest.raises(HubError) as again:
        await mod.revert(second["id"], "twice")
    assert again.value.code == "conflict" and "reverted already" in again.value.message
    (entry,) = [e for e in await arena.store.audit.entries(50) if e.action == "canon.reverted"]
    said = json.loads(entry.detail)
    assert entry.actor == "mod" and said["reason"] == "sub is not wanted"
    assert (said["version"], said["reverts"], said["restores"]) == (3, 2, 1)


async def test_a_proposal_on_an_older_version_is_a_conflict(arena: Arena) -> None:
    mod, agent, *_ = await setup(arena)
    first = await propose(agent)
    await mod.call("proposal.review", {"id": first["id"], "decision": "approve"})
    a = await propose(agent, base_version=1, content=V1 + "# a\n")
    b = await propose(agent, base_version=1, content=V1 + "# b\n")
    await mod.call("proposal.review", {"id": a["id"], "decision": "approve"})
    stale = await mod.call("proposal.get", {"id": b["id"]})
    assert stale["stale"] is True
    result = await mod.call("proposal.review", {"id": b["id"], "decision": "approve"})
    assert result["status"] == "conflict" and "version 2" in result["reason"]
    canon = await agent.call("canon.get", {"path": "src/calc.py"})
    assert canon["version"] == 2 and canon["content"].endswith("# a\n")


async def test_edit_then_approve_and_reject_with_a_reason(arena: Arena) -> None:
    mod, agent, *_ = await setup(arena)
    proposal = await propose(agent)
    edited = await mod.call(
        "proposal.review",
        {"id": proposal["id"], "decision": "edit", "content": V1 + "# reviewed\n"},
    )
    assert edited["edited"] is True and edited["status"] == "approved"
    assert (await agent.call("canon.get", {"path": "src/calc.py"}))["content"].endswith(
        "# reviewed\n"
    )

    second = await propose(agent, base_version=1, content="x = 1\n")
    with pytest.raises(HubError) as err:
        await mod.call("proposal.review", {"id": second["id"], "decision": "reject"})
    assert err.value.code == "invalid_payload" and "reason" in err.value.message
    rejected = await mod.call(
        "proposal.review",
        {"id": second["id"], "decision": "reject", "reason": "drops the function"},
    )
    assert rejected["status"] == "rejected" and rejected["reason"] == "drops the function"
    with pytest.raises(HubError) as err:
        await mod.call("proposal.review", {"id": second["id"], "decision": "approve"})
    assert err.value.code == "conflict"


async def test_who_may_propose_and_review(arena: Arena) -> None:
    mod, agent, *_ = await setup(arena)
    proposal = await propose(agent)
    before = await arena.fingerprint()
    cases = [
        ("proposal.review", {"id": proposal["id"], "decision": "approve"}, "forbidden"),
        (
            "proposal.create",
            fields(arena="external", kind="ticket_answer", path="t/1"),
            "forbidden",
        ),
        ("proposal.create", fields(kind="ticket_answer", path="t/1"), "forbidden"),
        ("proposal.create", fields(path="a.md", author="linus"), "invalid_payload"),
        ("proposal.create", fields(path="../etc/passwd"), "invalid_payload"),
        ("proposal.create", fields(kind="patch", content="@@ nonsense"), "invalid_payload"),
        ("proposal.create", fields(path="a.md", base_version=7), "invalid_payload"),
        ("proposal.get", {"id": 10**9}, "not_found"),
        ("proposals", {}, "invalid_payload"),
        ("proposals", {"arena": "external"}, "forbidden"),
    ]
    for event, payload, code in cases:
        with pytest.raises(HubError) as err:
            await agent.call(event, payload)
        assert err.value.code == code, (event, payload, err.value)
    assert await arena.fingerprint() == before
    own = await propose(mod, path="notes.md", content="hello")
    assert own["author"] == "mod", "a proposal's author is always whoever sent it"
    listed = await agent.call("proposals", {"arena": "compiler", "status": "pending"})
    assert {p["author"] for p in listed["proposals"]} == {"ada", "mod"}


async def test_the_canon_cannot_be_rewritten_in_the_database(arena: Arena) -> None:
    mod, agent, *_ = await setup(arena)
    proposal = await propose(agent)
    await mod.call("proposal.review", {"id": proposal["id"], "decision": "approve"})
    for sql in ("UPDATE canon_versions SET content = 'evil'", "DELETE FROM canon_versions"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await arena.store.pool.execute(sql)
    assert (await agent.call("canon.get", {"path": "src/calc.py"}))["content"] == V1


def test_moderators_review_from_the_command_line(tmp_path) -> None:
    import asyncio

    from botarena.server.protocol import Role
    from botarena.server.settings import Settings
    from botarena.server.store import open_store
    from tests.test_cli import botarena, run_ok

    var = tmp_path / "var"
    run_ok(var, "token", "create", "--name", "mod", "--role", "moderator")
    run_ok(var, "token", "create", "--name", "ada", "--role", "agent", "--arena", "compiler")

    async def make() -> list[int]:
        async with open_store(Settings(var_dir=var)) as store:
            ada = await store.principals.get("ada")
            assert ada is not None and ada.role is Role.AGENT
            proposals = store.proposals
            made = []
            for content in (V1, "x = 1\n", "y = 2\n"):
                p = await proposals.create(
                    ada,
                    arena="compiler",
                    kind="document",
                    path=f"doc{len(made)}.py",
                    base_version=0,
                    title=f"t{len(made)}",
                    content=content,
                )
                made.append(p.id)
            return made

    first, second, third = asyncio.run(make())
    listed = botarena(var, "proposals", "list", "--status", "pending")
    assert listed.returncode == 0 and listed.stdout.count("pending") == 3
    shown = botarena(var, "proposals", "show", str(first))
    assert "+def add(a, b):" in shown.stdout
    refused = botarena(var, "proposals", "approve", str(first), "--as", "ada")
    assert refused.returncode == 2 and "not a moderator" in refused.stderr
    approved = botarena(var, "proposals", "approve", str(first), "--as", "mod")
    assert approved.returncode == 0 and "version 1" in approved.stdout
    no_reason = botarena(var, "proposals", "reject", str(second), "--as", "mod")
    assert no_reason.returncode == 2  # --reason is required
    rejected = botarena(
        var, "proposals", "reject", str(second), "--as", "mod", "--reason", "not needed"
    )
    assert rejected.returncode == 0
    edited_file = tmp_path / "edited.py"
    edited_file.write_text("y = 3\nz = 4")  # no newline at its end
    edited = botarena(
        var, "proposals", "edit", str(third), "--as", "mod", "--file", str(edited_file)
    )
    assert edited.returncode == 0 and "version 1" in edited.stdout
    merged = botarena(var, "proposals", "show", str(third)).stdout
    assert "approved, edited by mod" in merged and "merged as v1" in merged
    changed = [
        line for line in merged.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"
    ]
    assert changed == ["+y = 3", "+z = 4"], merged  # what was merged, not the agent's text
    reverted = botarena(var, "proposals", "revert", str(first), "--as", "mod", "--reason", "no")
    assert reverted.returncode == 0, reverted.stderr
    assert reverted.stdout.strip() == f"reverted #{first}: doc0.py v2 has no text (it was new)"
    refused = botarena(var, "proposals", "revert", str(second), "--as", "mod", "--reason", "x")
    assert refused.returncode == 2 and "nothing was merged" in refused.stderr
    assert "intact" in botarena(var, "audit", "verify").stdout


async def test_agents_see_the_new_canon_in_their_knowledge(arena: Arena, tmp_path) -> None:
    import asyncio

    from botarena.agents.worker import AgentWorker
    from botarena.arenas.charter import charters
    from botarena.memory.service import MemoryService
    from botarena.server.protocol import Role
    from botarena.server.settings import Settings
    from tests.test_agents_e2e import compiler_pair, stop_worker

    persona = compiler_pair()[0]
    token = await arena.token(persona.id, Role.AGENT, arenas=["compiler"])
    memory = MemoryService(Settings(var_dir=tmp_path / "var", knowledge_pack=None), [persona.id])
    worker = AgentWorker(
        arena.url, [persona], {persona.id: token}, turns=None, quiet_seconds=3600, memory=memory
    )
    task = asyncio.create_task(worker.run())
    mod = await arena.client("mod", "moderator")
    try:
        await eventually(lambda: all(s.client.connected for s in worker.seats.values()))
        proposal = await mod.call(
            "proposal.create",
            {
                "arena": "compiler",
                "kind": "document",
                "path": "src/tally.py",
                "base_version": 0,
                "title": "tally",
                "content": "def tally(votes):\n    return sum(votes)  # counts the ballots\n",
            },
        )
        await mod.call("proposal.review", {"id": proposal["id"], "decision": "approve"})

        async def found() -> list:
            return await memory.for_turn(
                persona.id, "which function counts the ballots?", charters()["compiler"].knowledge
            )

        hits: list[str] = []
        for _ in range(100):
            hits = (await found()).knowledge
            if any("tally" in h for h in hits):
                break
            await asyncio.sleep(0.1)
        assert any("src/tally.py (canon v1)" in h and "sum(votes)" in h for h in hits), hits
    finally:
        await stop_worker(worker, task)


async def test_a_ticket_is_filed_answered_and_closed(arena: Arena) -> None:
    import aiohttp

    from botarena.server.protocol import Message

    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator")
    helper = await arena.client("sage", arenas=["external"], inbox=inbox)
    await helper.join("external")
    with pytest.raises(HubError) as err:
        await helper.call("ticket.file", {"title": "t", "body": "b"})
    assert err.value.code == "forbidden"
    ticket = await mod.call("ticket.file", {"title": "Backups", "body": "How old may they be?"})
    await eventually(
        lambda: any(f"Ticket #{ticket['id']}" in m.text for m in inbox),
        what="the ticket announced in external",
    )
    with pytest.raises(HubError) as err:
        await answer_ticket(helper, "tickets/999", "x", title="a")
    assert err.value.code == "not_found"
    answer = await answer_ticket(helper, ticket["path"], "Fourteen days, then deleted.")
    await mod.call("proposal.review", {"id": answer["id"], "decision": "approve"})
    closed = (await mod.call("tickets", {"status": "closed"}))["tickets"]
    assert [(t["id"], t["human_intervention"]) for t in closed] == [(ticket["id"], False)]

    second = await mod.call("ticket.file", {"title": "Disk", "body": "Is it full?"})
    draft = await answer_ticket(helper, second["path"], "Maybe.")
    await mod.call(
        "proposal.review", {"id": draft["id"], "decision": "edit", "content": "No: 41% used."}
    )
    async with aiohttp.ClientSession() as http, http.get(arena.url + "/metrics") as answer:
        text = await answer.text()
    assert 'botarena_tickets{status="closed"} 2.0' in text
    assert "botarena_ticket_human_intervention_ratio 0.5" in text
    assert 'botarena_proposal_approval_ratio{arena="external"} 1.0' in text


async def test_sync_flags_pending_proposals_on_old_versions(arena: Arena) -> None:
    mod, agent, *_ = await setup(arena)
    first = await propose(agent)
    await mod.call("proposal.review", {"id": first["id"], "decision": "approve"})
    on_v1 = await propose(agent, base_version=1, content=V1 + "# one\n")
    fresh = await propose(agent, path="docs/new.md", content="new\n")
    again = await propose(agent, base_version=1, content=V1 + "# two\n")
    await mod.call("proposal.review", {"id": again["id"], "decision": "approve"})  # canon v2
    flagged = await arena.store.proposals.sync()
    assert [p.id for p in flagged] == [on_v1["id"]]
    assert "canon is at version 2" in flagged[0].reason
    assert (await mod.call("proposal.get", {"id": fresh["id"]}))["status"] == "pending"


async def test_attachments_are_kept_with_a_proposal(arena: Arena) -> None:
    import base64

    mod, agent, *_ = await setup(arena)
    created = await propose(agent)
    diagram = bytes(range(256)) * 40
    encoded = base64.b64encode(diagram).decode()
    attached = await agent.call(
        "proposal.attach", {"id": created["id"], "name": "diagram.png", "content_base64": encoded}
    )
    assert attached["size"] == len(diagram)
    detail = await mod.call("proposal.get", {"id": created["id"]})
    assert [a["name"] for a in detail["attachments"]] == ["diagram.png"]
    got = await mod.call("proposal.attachment", {"id": created["id"], "name": "diagram.png"})
    assert base64.b64decode(got["content_base64"]) == diagram

    other = await arena.client("linus", arenas=["compiler"])
    refusals = [
        (other, {"name": "x.txt", "content_base64": "aGk="}, "forbidden"),  # not the author
        (agent, {"name": "diagram.png", "content_base64": encoded}, "conflict"),  # kept once
        (agent, {"name": "../etc.txt", "content_base64": "aGk="}, "invalid_payload"),
        (agent, {"name": "x.txt", "content_base64": "not base64!"}, "invalid_payload"),
        (
            agent,
            {"name": "big.bin", "content_base64": base64.b64encode(bytes(40_000)).decode()},
            "too_large",
        ),
        (agent, {"id": 999, "name": "x.txt", "content_base64": "aGk="}, "not_found"),
    ]
    for client, payload, code in refusals:
        with pytest.raises(HubError) as err:
            await client.call("proposal.attach", {"id": created["id"], **payload})
        assert err.value.code == code, payload
    with pytest.raises(HubError) as err:
        await mod.call("proposal.attachment", {"id": created["id"], "name": "none.txt"})
    assert err.value.code == "not_found"
    outsider = await arena.client("maria", arenas=["education"])
    with pytest.raises(HubError) as err:
        await outsider.call("proposal.attachment", {"id": created["id"], "name": "diagram.png"})
    assert err.value.code == "forbidden"


async def test_a_ticket_announcement_is_broadcast_once_in_the_rooms_order(arena: Arena) -> None:
    """The announcement goes through the same store-and-broadcast as a send: under the
    room's lock (in id order with concurrent sends), pushed once, counted as stored."""
    from botarena.server.protocol import Message

    inbox: list[Message] = []
    mod = await arena.client("mod", "moderator")
    desk = await arena.client("sage", arenas=["external"], inbox=inbox)
    await desk.join("external")
    await mod.join("external")
    stored = arena.running.hub.metrics.messages_stored
    before = stored._value.get()
    await asyncio.gather(
        mod.call("ticket.file", {"title": "Disk", "body": "Is it full?"}),
        *(mod.send("external", f"note {i}") for i in range(5)),
    )
    await eventually(lambda: len(inbox) == 6, what="six messages heard")
    assert await stays(lambda: len(inbox) == 6, 0.3)
    assert [m.id for m in inbox] == sorted(m.id for m in inbox)
    assert sum(m.text.startswith("Ticket #") for m in inbox) == 1
    assert stored._value.get() == before + 6


async def test_a_ticket_left_unanswered_is_told_to_moderators_once(
    hub_factory, redis_url: str
) -> None:
    """Two hubs sharing a database and Redis: the ticket that waits too long is told to
    every moderator once, the one answered in time never."""
    from botarena.server.protocol import TicketWaiting

    one = await hub_factory(ticket_alert_seconds=2.0, redis_url=redis_url)
    two = await hub_factory(ticket_alert_seconds=2.0, redis_url=redis_url)
    told: list[TicketWaiting] = []
    for arena in (one, two):
        watcher = await arena.client(f"mod-{arena.url[-5:]}", "moderator")
        watcher.on(TicketWaiting, told.append)
    mod = await one.client("mod", "moderator")
    sage = await one.client("sage", arenas=["external"])
    waiting = await mod.call("ticket.file", {"title": "Disk", "body": "Is it full?"})
    answered = await mod.call("ticket.file", {"title": "Port", "body": "Which port?"})
    proposal = await answer_ticket(sage, answered["path"], "8765.")
    await mod.call("proposal.review", {"id": proposal["id"], "decision": "approve"})
    await eventually(lambda: len(told) >= 2, what="both moderators told")
    assert await stays(lambda: len(told) == 2, 1.0)
    assert {(t.id, t.title) for t in told} == {(waiting["id"], "Disk")}
    total = sum(a.running.hub.metrics.tickets_overdue._value.get() for a in (one, two))
    assert total == 1  # one hub told, through the supervisors' room of both


async def test_an_escalated_ticket_goes_to_the_humans_and_counts_as_their_intervention(
    arena: Arena,
) -> None:
    """An agent of external hands a ticket it cannot answer to the humans: moderators are
    told once, the ticket leaves the open list, a human's answer closes it, and it counts
    as an intervention; a closed ticket cannot be escalated."""
    from botarena.server.protocol import TicketEscalation

    told: list[TicketEscalation] = []
    mod = await arena.client("mod", "moderator")
    mod.on(TicketEscalation, told.append)
    sage = await arena.client("sage", arenas=["external"])
    ticket = await mod.call("ticket.file", {"title": "Pager", "body": "Who is on call?"})
    reason = "nothing in the knowledge base answers it"
    first = await sage.call("ticket.escalate", {"ticket": ticket["id"], "reason": reason})
    again = await sage.call("ticket.escalate", {"ticket": ticket["id"], "reason": reason})
    assert (first["status"], first["changed"], again["changed"]) == ("escalated", True, False)
    await eventually(lambda: len(told) == 1, what="the moderator told")
    assert await stays(lambda: len(told) == 1, 0.3)
    assert (told[0].id, told[0].title, told[0].by, told[0].reason) == (
        ticket["id"],
        "Pager",
        "sage",
        reason,
    )
    assert (await mod.call("tickets", {"status": "open"}))["tickets"] == []
    answer = await answer_ticket(mod, ticket["path"], "Whoever the rota names; ask the desk.")
    await mod.call("proposal.review", {"id": answer["id"], "decision": "approve"})
    closed = (await mod.call("tickets", {"status": "closed"}))["tickets"]
    assert [(t["id"], t["human_intervention"]) for t in closed] == [(ticket["id"], True)]
    with pytest.raises(HubError) as err:
        await sage.call("ticket.escalate", {"ticket": ticket["id"], "reason": reason})
    assert err.value.code == "conflict"
    with pytest.raises(HubError) as err:
        await sage.call("ticket.escalate", {"ticket": 10**6, "reason": reason})
    assert err.value.code == "not_found"
    with pytest.raises(HubError) as err:
        await sage.call("ticket.escalate", {"ticket": ticket["id"], "reason": ""})
    assert err.value.code == "invalid_payload"
    assert arena.running.hub.metrics.tickets_escalated._value.get() == 1
    entries = await arena.running.hub.store.audit.entries(limit=500)
    escalations = [(e.actor, e.subject) for e in entries if e.action == "ticket.escalated"]
    assert escalations == [("sage", f"ticket:{ticket['id']}")]
