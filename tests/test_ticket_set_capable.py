"""The help desk's plumbing answers the whole ticket set when the model is capable: with
the Ollama stand-in in its capable mode (a model that answers a ticket turn from the
passages it is given) behind the real hub, a real ChromaDB holding the demo knowledge
pack and the agent worker running the shipped help-desk personas, every ticket of
``tests/bench/tickets.json`` filed by a moderator ends as it should. Each answerable one
gets a ``ticket_answer`` proposal holding all its facts (matched as the quality
benchmark matches them) whose ``Sources:`` line names its source document, and none is
escalated; each unanswerable one is escalated to a human or answered with a "do not
know". Whatever the tiny model gets wrong, then, is the model's, not the retrieval's,
the prompt's or the composing of the answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botarena.agents.llm import OllamaBackend
from botarena.agents.turn import CrewTurns
from botarena.arenas.charter import charters
from botarena.memory.service import MemoryService
from botarena.server.settings import Settings
from tests.bench.quality_bench import (
    DECLINE,
    DEMO_PACK,
    contains,
    document_names,
    load_tickets,
    normalise,
    split_sources,
)
from tests.harness import Arena
from tests.ollama_standin import ollama_standin, parse_ticket
from tests.test_agents_e2e import stop_worker
from tests.test_agents_proposals import persona, start

HELP_DESK = ("sage", "grace")
SET_MINUTES = 3.0
"""How long the whole set may take, from the first ticket filed to the last resolved."""
FILING_SECONDS = 0.15
"""Between two tickets filed: the hub lets a principal send 10 events a second."""


@dataclass
class Outcome:
    """A ticket of the set as filed, and what became of it."""

    ticket: dict[str, Any]
    hub_id: int
    path: str
    escalated: bool = False
    answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def resolved(self) -> bool:
        return self.escalated or bool(self.answers)

    def problem(self, names: dict[str, set[str]]) -> str | None:
        """Why this ticket did not end as it should, or None."""
        if not self.resolved:
            return "neither answered nor escalated"
        answer = min(self.answers, key=lambda p: p["id"])["content"] if self.answers else ""
        text, sources = split_sources(answer)
        declined = self.escalated or bool(DECLINE.search(text))
        if not self.ticket["answerable"]:
            return None if declined else f"answered although unanswerable: {answer!r}"
        if self.escalated:
            return "escalated although answerable"
        if declined:
            return f"answered with a decline: {answer!r}"
        wrong = []
        missing = [f for f in self.ticket["facts"] if not contains(text, f)]
        if missing:
            wrong.append(f"facts missing {missing}")
        source = self.ticket["source"]
        if not any(normalise(s) in names[source] for s in sources):
            wrong.append(f"sources {sources} do not name {source}")
        return f"{'; '.join(wrong)}: {answer!r}" if wrong else None


def passages_shown(requests: list[tuple[str, str, dict]], hub_id: int) -> list[str]:
    """The passage labels the model was shown for ticket ``hub_id``, per ticket turn."""
    shown = []
    for _method, path, body in requests:
        if path != "/api/chat" or not body.get("messages"):
            continue
        users = [m for m in body["messages"] if m.get("role") == "user"]
        parsed = parse_ticket(str(users[-1].get("content", ""))) if users else None
        if parsed is not None and parsed.number == hub_id:
            shown.append(", ".join(source for source, _ in parsed.passages) or "none")
    return shown


async def diagnosis(memory: MemoryService, outcome: Outcome) -> str:
    """What the knowledge held for a failed ticket: its coverage and best passages."""
    asked = f"{outcome.ticket['title']}\n{outcome.ticket['body']}"
    evidence = await memory.evidence(asked, charters()["external"].knowledge)
    best = ", ".join(f"{h.document} {h.similarity:.3f}" for h in evidence.passages)
    return f"coverage {evidence.coverage:.2f}, passages [{best}]"


async def test_the_capable_model_answers_the_whole_ticket_set(arena: Arena, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", llm_timeout=30)
    help_desk = [
        persona(pid, ["external"]).model_copy(update={"model": "qwen3"}) for pid in HELP_DESK
    ]
    memory = MemoryService(settings, list(HELP_DESK))  # the demo knowledge pack
    names = document_names(DEMO_PACK)
    the_set = load_tickets()
    assert len(the_set) == 44 and all(t.get("source") in names for t in the_set if t["answerable"])
    new: list[dict[str, Any]] = []
    mod = await arena.client("mod", "moderator")
    mod.sio.on("proposal.new", new.append)
    async with ollama_standin(["qwen3:latest"], capable=True) as ollama:
        turns = CrewTurns(OllamaBackend(ollama.url, "qwen3"), settings)
        worker, task = await start(arena, help_desk, turns, memory=memory)
        try:
            started = time.monotonic()
            outcomes: list[Outcome] = []
            for ticket in the_set:
                filed = await mod.call(
                    "ticket.file", {"title": ticket["title"], "body": ticket["body"]}
                )
                outcomes.append(Outcome(ticket, filed["id"], filed["path"]))
                await asyncio.sleep(FILING_SECONDS)
            by_path = {o.path: o for o in outcomes}
            deadline = started + SET_MINUTES * 60
            while time.monotonic() < deadline:
                listed = (await mod.call("tickets", {"status": "escalated"}))["tickets"]
                escalated = {t["id"] for t in listed}
                for outcome in outcomes:
                    outcome.escalated = outcome.hub_id in escalated
                    outcome.answers = [
                        p
                        for p in new
                        if p["kind"] == "ticket_answer" and by_path.get(p["path"]) is outcome
                    ]
                if all(o.resolved for o in outcomes):
                    break
                await asyncio.sleep(0.5)
            seconds = time.monotonic() - started
            failures = []
            for outcome in outcomes:
                problem = outcome.problem(names)
                if problem is not None:
                    shown = passages_shown(ollama.requests, outcome.hub_id)
                    failures.append(
                        f"{outcome.ticket['id']} (#{outcome.hub_id}): {problem}\n"
                        f"    shown: {shown or 'no ticket turn reached the model'}; "
                        f"{await diagnosis(memory, outcome)}"
                    )
        finally:
            await stop_worker(worker, task)
    assert not failures, (
        f"{len(failures)} of {len(outcomes)} tickets failed ({seconds:.0f} s):\n"
        + "\n".join(failures)
    )
    repeated = [o.ticket["id"] for o in outcomes if len(o.answers) > 1]
    assert not repeated, f"tickets answered more than once: {repeated}"
