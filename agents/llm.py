"""LLM backends behind one small interface, all local.

Every backend speaks the OpenAI-compatible chat API that CrewAI 1.x uses, so a turn
does not care which one answers:

* :class:`OllamaBackend`: Ollama at ``OLLAMA_HOST``, through CrewAI's ``ollama/``
  provider on Ollama's ``/v1`` endpoint, plus Ollama's own API for its version (health)
  and installed models. A missing model is an error that says how to bring it in
  offline (a signed bundle), never a pull from the Internet.
* :class:`OpenAICompatibleBackend`: any OpenAI-compatible local server (vLLM,
  llama.cpp's own server, or the embedded llama.cpp instances) by URL; several URLs
  are several slots, and each agent is pinned to one of them.

:func:`choose_backend` applies the setting: ``auto`` takes Ollama when it answers and
otherwise the embedded llama.cpp server (:mod:`botarena.agents.embedded_llm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from botarena.server.errors import LLMUnavailable
from botarena.server.settings import LLMSettings


@dataclass(frozen=True)
class BackendHealth:
    ok: bool
    detail: str
    models: tuple[str, ...] = ()


class LLMBackend(Protocol):
    name: str
    default_model: str

    async def health(self) -> BackendHealth: ...

    async def ensure_model(self, model: str) -> None: ...

    def crewai_llm(self, model: str | None, slot: int, settings: LLMSettings) -> Any: ...


def _crewai_llm(model: str, base_url: str, settings: LLMSettings, api_key: str) -> Any:
    from crewai import LLM

    return LLM(
        model=model,
        base_url=base_url,
        api_key=api_key,
        temperature=0.8,
        max_tokens=settings.llm_max_tokens,
        timeout=settings.llm_timeout,
        max_retries=0,  # the worker decides about retries, with backoff
    )


class OllamaBackend:
    """Ollama's native API for health and models, its /v1 API for chat."""

    name = "ollama"

    def __init__(self, host: str, default_model: str) -> None:
        self.host = host.rstrip("/")
        self.default_model = default_model

    async def _get(self, path: str) -> Any:
        async with httpx.AsyncClient(timeout=3.0) as http:
            answer = await http.get(f"{self.host}{path}")
            answer.raise_for_status()
            return answer.json()

    async def version(self) -> str:
        return (await self._get("/api/version"))["version"]

    async def models(self) -> list[str]:
        return [m["name"] for m in (await self._get("/api/tags")).get("models", [])]

    async def health(self) -> BackendHealth:
        try:
            version = await self.version()
            models = await self.models()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return BackendHealth(False, f"Ollama at {self.host} does not answer: {exc}")
        return BackendHealth(True, f"Ollama {version} at {self.host}", tuple(models))

    async def ensure_model(self, model: str) -> None:
        try:
            installed = await self.models()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise LLMUnavailable(f"Ollama at {self.host} does not answer: {exc}") from None
        wanted = {model, f"{model}:latest"} if ":" not in model else {model}
        if not wanted & set(installed):
            raise LLMUnavailable(
                f"model {model!r} is not installed in Ollama at {self.host} (it has: "
                f"{', '.join(installed) or 'none'}). BotArena never pulls models from the "
                "Internet: bring it in with a signed bundle carrying its GGUF and Modelfile "
                "(botarena bundle install FILE), or choose an installed model."
            )

    def crewai_llm(self, model: str | None, slot: int, settings: LLMSettings) -> Any:
        return _crewai_llm(
            f"ollama/{model or self.default_model}", f"{self.host}/v1", settings, api_key="ollama"
        )


class OpenAICompatibleBackend:
    """One or more OpenAI-compatible servers (``.../v1`` URLs) serving the same model,
    each answering ``parallel`` requests at once (its slots)."""

    def __init__(
        self, urls: list[str], default_model: str, name: str = "openai", parallel: int = 1
    ) -> None:
        if not urls:
            raise ValueError("an OpenAI-compatible backend needs at least one URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.default_model = default_model
        self.name = name
        self.slots = len(self.urls) * max(1, parallel)

    async def health(self) -> BackendHealth:
        models: list[str] = []
        async with httpx.AsyncClient(timeout=3.0) as http:
            for url in self.urls:
                try:
                    answer = await http.get(f"{url}/models")
                    answer.raise_for_status()
                    models.extend(m["id"] for m in answer.json().get("data", []))
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    return BackendHealth(False, f"{url} does not answer: {exc}")
        return BackendHealth(
            True, f"{len(self.urls)} OpenAI-compatible server(s)", tuple(dict.fromkeys(models))
        )

    async def ensure_model(self, model: str) -> None:
        health = await self.health()
        if not health.ok:
            raise LLMUnavailable(health.detail)
        if health.models and model not in health.models:
            raise LLMUnavailable(
                f"model {model!r} is not served at {self.urls[0]} (it serves: "
                f"{', '.join(health.models)})"
            )

    def crewai_llm(self, model: str | None, slot: int, settings: LLMSettings) -> Any:
        url = self.urls[slot % len(self.urls)]
        return _crewai_llm(
            f"openai/{model or self.default_model}", url, settings, api_key="not-needed"
        )


async def ollama_answers(host: str) -> bool:
    try:
        await OllamaBackend(host, "").version()
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return True


async def choose_backend(settings: LLMSettings) -> str:
    """Which backend the settings ask for: ``ollama``, ``embedded`` or ``openai``."""
    if settings.llm_backend != "auto":
        return settings.llm_backend
    if settings.llm_url:
        return "openai"
    return "ollama" if await ollama_answers(settings.ollama_host) else "embedded"
