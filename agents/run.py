"""Running the agent worker as a process (``botarena worker``): choose the LLM backend,
start the embedded llama.cpp servers when that is the backend, load personas and tokens,
and run the :class:`AgentWorker` until SIGINT or SIGTERM, then stop what was started."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import structlog

from botarena.agents.embedded_llm import EmbeddedLlama
from botarena.agents.llm import LLMBackend, OllamaBackend, OpenAICompatibleBackend
from botarena.agents.llm import choose_backend as choose_backend_kind
from botarena.agents.persona import Persona, load_personas
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
        # copying the 98 MB model out of its wheel the first time is blocking file I/O
        llama = await asyncio.to_thread(EmbeddedLlama.from_settings, settings)
        await llama.start()
        stack.push_async_callback(llama.stop)
        return llama.backend()
    if kind == "ollama":
        return OllamaBackend(settings.ollama_host, settings.llm_model)
    if not settings.llm_url:
        raise LLMUnavailable("BOTARENA_LLM_BACKEND=openai needs BOTARENA_LLM_URL")
    return OpenAICompatibleBackend(settings.llm_url.split(","), settings.llm_model)


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
        backend = await open_backend(settings, stack)
        for model in {p.model or backend.default_model for p in personas}:
            await backend.ensure_model(model)
        log.info("worker.backend", backend=backend.name, model=backend.default_model)
        turns = CrewTurns(backend, settings)
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
