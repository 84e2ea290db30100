"""LLM backends behind one small interface, all local, and the CrewAI LLM they hand out.

Every turn's answer is held to a JSON schema (:mod:`botarena.agents.actions`), which
CrewAI's own ``LLM`` class cannot send to these servers; :func:`structured_llm` is a
CrewAI ``BaseLLM`` that does, so a turn does not care which backend answers:

* :class:`OllamaBackend`: Ollama at ``OLLAMA_HOST``, its native ``/api/chat`` with the
  schema as ``format``, plus its API for its version (health) and installed models. A
  missing model is an error that says how to bring it in offline (a signed bundle),
  never a pull from the Internet.
* :class:`OpenAICompatibleBackend`: any OpenAI-compatible local server (vLLM, llama.cpp's
  own server, the embedded one) by URL, the schema as ``response_format``; each server
  answers ``parallel`` requests at once, and the worker uses all of their slots.

:func:`choose_backend` applies the setting: ``auto`` takes Ollama when it answers and
otherwise the embedded llama.cpp server (:mod:`botarena.agents.embedded_llm`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from botarena.server.errors import LLMUnavailable
from botarena.server.settings import LLMSettings


class ModelMissing(LLMUnavailable):
    """The backend answered that it does not have the model asked for."""


def model_names(model: str) -> frozenset[str]:
    """The names a backend may list ``model`` under (Ollama adds ``:latest``)."""
    return frozenset({model, f"{model}:latest"} if ":" not in model else {model})


def _refusal(base_url: str, answer: httpx.Response) -> LLMUnavailable:
    """The error of a chat answered with a status other than 200: a 404 naming a model
    "not found" (Ollama's and OpenAI's shape) is :class:`ModelMissing`."""
    text = answer.text[:200]
    if answer.status_code == 404 and "not found" in text:
        return ModelMissing(f"the LLM at {base_url} lacks the model: {text}")
    return LLMUnavailable(f"the LLM at {base_url} answered {answer.status_code}: {text}")


PROBE = [{"role": "user", "content": "Count from one to ten."}]
PROBE_TOKENS = 16


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

    async def speed(self, model: str) -> float: ...

    def crewai_llm(self, model: str | None, slot: int, settings: LLMSettings) -> Any: ...


REPEAT_PENALTY = 1.2
"""Penalises tokens the answer already used: a small model loops without it."""


def structured_llm(
    api: Literal["ollama", "openai"], model: str, base_url: str, settings: LLMSettings
) -> Any:
    """A CrewAI LLM that holds every answer to the task's JSON schema.

    CrewAI hands the task's ``response_model`` to ``call()``; its own ``LLM`` class drops
    it for these providers, so this one sends it itself: as ``format`` on Ollama's
    native ``/api/chat``, or as ``response_format: json_schema`` on an OpenAI-compatible
    server (llama.cpp compiles it into a grammar). The reply is the JSON text; how many
    tokens it took and whether the token limit cut it are kept on the instance.
    """
    return _structured_class()(
        model=model,
        api=api,
        base_url=base_url.rstrip("/"),
        temperature=0.8,
        max_tokens=settings.llm_max_tokens,
        request_timeout=settings.llm_timeout,
    )


@functools.cache
def _http() -> httpx.Client:
    """The one HTTP client of every LLM call in this process (they run in threads; an
    ``httpx.Client`` is safe to share): connections to a backend are kept open between
    turns, and no call builds its own client, whose TLS context alone costs more CPU than
    the rest of a turn outside the model. Proxies from the environment are ignored: a
    backend is reached at the address it is configured with."""
    return httpx.Client(
        trust_env=False, limits=httpx.Limits(max_connections=None, max_keepalive_connections=64)
    )


@functools.cache
def _structured_class() -> type:
    """The class behind :func:`structured_llm` (CrewAI is imported only when needed)."""
    from crewai.llms.base_llm import BaseLLM
    from pydantic import BaseModel, PrivateAttr

    class StructuredLLM(BaseLLM):
        llm_type: str = "botarena"
        api: str = "openai"
        request_timeout: float = 60.0
        _cut: bool = PrivateAttr(default=False)

        @property
        def last_cut(self) -> bool:
            """Whether the last answer was stopped by the token limit."""
            return self._cut

        def supports_function_calling(self) -> bool:
            return False  # actions are fields of the schema, not tool calls

        def supports_stop_words(self) -> bool:
            return False

        def get_input_tokens_count(
            self, messages: Any, tools: Any = None, response_model: Any = None
        ) -> int:
            """One token per four characters, as CrewAI's fallback estimates, without
            its warning on every call (these servers have no count endpoint)."""
            if isinstance(messages, str):
                return (len(messages) + 3) // 4
            return (sum(len(str(m.get("content") or "")) for m in messages) + 3) // 4

        def call(
            self,
            messages: Any,
            tools: Any = None,
            callbacks: Any = None,
            available_functions: Any = None,
            from_task: Any = None,
            from_agent: Any = None,
            response_model: type[BaseModel] | None = None,
        ) -> str:
            if isinstance(messages, str):
                messages = [{"role": "user", "content": messages}]
            chat = [{"role": m["role"], "content": m["content"]} for m in messages]
            schema = response_model.model_json_schema() if response_model else None
            if self.api == "ollama":
                url, body = self._ollama(chat, schema)
            else:
                url, body = self._openai(chat, schema)
            try:
                answer = _http().post(url, json=body, timeout=self.request_timeout)
            except httpx.TimeoutException:
                raise TimeoutError(
                    f"the LLM at {self.base_url} did not answer in {self.request_timeout:g}s"
                ) from None
            except httpx.HTTPError as exc:
                raise LLMUnavailable(f"the LLM at {self.base_url} is unreachable: {exc}") from None
            if answer.status_code != 200:
                raise _refusal(str(self.base_url), answer)
            data = answer.json()
            if self.api == "ollama":
                content = data.get("message", {}).get("content", "")
                self._cut = data.get("done_reason") == "length"
                usage = {
                    "prompt_tokens": data.get("prompt_eval_count", 0),
                    "completion_tokens": data.get("eval_count", 0),
                }
            else:
                choice = data["choices"][0]
                content = choice["message"].get("content") or ""
                self._cut = choice.get("finish_reason") == "length"
                usage = dict(data.get("usage") or {})
            usage["total_tokens"] = usage.get("prompt_tokens", 0) + usage.get(
                "completion_tokens", 0
            )
            usage["successful_requests"] = 1
            self._track_token_usage_internal(usage)
            return str(content)

        def _ollama(self, chat: list[dict[str, Any]], schema: Any) -> tuple[str, dict[str, Any]]:
            body: dict[str, Any] = {
                "model": self.model,
                "messages": chat,
                "stream": False,
                "options": {
                    "temperature": self.temperature,
                    "num_predict": self.max_tokens,
                    "repeat_penalty": REPEAT_PENALTY,
                },
            }
            if schema is not None:
                body["format"] = schema
            return f"{self.base_url}/api/chat", body

        def _openai(self, chat: list[dict[str, Any]], schema: Any) -> tuple[str, dict[str, Any]]:
            body: dict[str, Any] = {
                "model": self.model,
                "messages": chat,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "repeat_penalty": REPEAT_PENALTY,  # llama.cpp's; other servers ignore it
            }
            if schema is not None:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "action", "schema": schema, "strict": True},
                }
            return f"{self.base_url}/chat/completions", body

    return StructuredLLM


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
        if not model_names(model) & set(installed):
            raise LLMUnavailable(
                f"model {model!r} is not installed in Ollama at {self.host} (it has: "
                f"{', '.join(installed) or 'none'}). BotArena never pulls models from the "
                "Internet: bring it in with a signed bundle carrying its GGUF and Modelfile "
                "(botarena bundle install FILE), or choose an installed model."
            )

    async def speed(self, model: str) -> float:
        """Tokens per second of a short generation, as Ollama times it."""
        body = {
            "model": model,
            "messages": PROBE,
            "stream": False,
            "options": {"num_predict": PROBE_TOKENS},
        }
        data = await _probe(f"{self.host}/api/chat", body)
        seconds = data.get("eval_duration", 0) / 1e9
        return data.get("eval_count", 0) / seconds if seconds > 0 else 0.0

    def crewai_llm(self, model: str | None, slot: int, settings: LLMSettings) -> Any:
        return structured_llm("ollama", model or self.default_model, self.host, settings)


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

    async def speed(self, model: str) -> float:
        """Tokens per second of a short generation, timed here."""
        body = {"model": model, "messages": PROBE, "max_tokens": PROBE_TOKENS}
        started = time.perf_counter()
        data = await _probe(f"{self.urls[0]}/chat/completions", body)
        tokens = (data.get("usage") or {}).get("completion_tokens", 0)
        return tokens / (time.perf_counter() - started)

    def crewai_llm(self, model: str | None, slot: int, settings: LLMSettings) -> Any:
        url = self.urls[slot % len(self.urls)]
        return structured_llm("openai", model or self.default_model, url, settings)


async def _probe(url: str, body: dict[str, Any]) -> Any:
    """The JSON answer to a probe generation; failures are :class:`LLMUnavailable`."""
    try:
        async with httpx.AsyncClient(timeout=30.0) as http:
            answer = await http.post(url, json=body)
    except httpx.HTTPError as exc:
        raise LLMUnavailable(f"the LLM at {url} is unreachable: {exc}") from None
    if answer.status_code != 200:
        raise _refusal(url, answer)
    try:
        return answer.json()
    except ValueError:
        raise LLMUnavailable(f"the LLM at {url} answered something that is not JSON") from None


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
