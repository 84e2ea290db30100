"""A stand-in for Ollama's HTTP API, for tests only (Ollama cannot be installed here).

It answers as Ollama's documented API does for the endpoints BotArena uses:
``GET /api/version``, ``GET /api/tags`` (installed models with name, model, size,
digest and details), ``GET /v1/models`` and ``POST /v1/chat/completions`` (the
OpenAI-compatible chat API, including Ollama's 404 ``model "x" not found, try pulling it
first`` for a model that is not installed, and tool calls as Ollama returns them:
``tool_calls`` with the arguments as a JSON string and ``finish_reason`` ``tool_calls``).
For models brought in by bundles it takes blobs (``HEAD``/``POST /api/blobs/sha256:<d>``,
refusing a body whose digest differs) and ``POST /api/create`` from uploaded files.
Every request is recorded for assertions; ``script`` queues the assistant messages the
next chats answer with (then ``reply`` again). A chat's answer stops at its ``max_tokens``
(here: words) with ``finish_reason`` ``length``, as Ollama's does; while ``hold`` is set
and not yet released, chats wait for it (a slow model).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

VERSION = "0.12.6"


@dataclass
class OllamaStandIn:
    models: list[str]
    reply: str = "The parser drops trailing commas; a test for that case would catch it."
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    script: list[dict] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    created: dict[str, dict] = field(default_factory=dict)
    url: str = ""
    hold: asyncio.Event | None = None

    def _installed(self, name: str) -> bool:
        return name in self.models or f"{name}:latest" in self.models

    def app(self) -> web.Application:
        async def version(request: web.Request) -> web.Response:
            self.requests.append(("GET", request.path, {}))
            return web.json_response({"version": VERSION})

        async def tags(request: web.Request) -> web.Response:
            self.requests.append(("GET", request.path, {}))
            return web.json_response(
                {
                    "models": [
                        {
                            "name": name,
                            "model": name,
                            "modified_at": "2026-11-01T10:00:00.000000000Z",
                            "size": 4_661_224_676,
                            "digest": f"{abs(hash(name)):064x}"[:64],
                            "details": {
                                "parent_model": "",
                                "format": "gguf",
                                "family": "llama",
                                "families": ["llama"],
                                "parameter_size": "8.0B",
                                "quantization_level": "Q4_0",
                            },
                        }
                        for name in self.models
                    ]
                }
            )

        async def openai_models(request: web.Request) -> web.Response:
            self.requests.append(("GET", request.path, {}))
            return web.json_response(
                {
                    "object": "list",
                    "data": [
                        {
                            "id": name,
                            "object": "model",
                            "created": 1_760_000_000,
                            "owned_by": "library",
                        }
                        for name in self.models
                    ],
                }
            )

        async def chat(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response(
                    {
                        "error": {
                            "message": "invalid JSON",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": None,
                        }
                    },
                    status=400,
                )
            self.requests.append(("POST", request.path, body))
            model = body.get("model", "")
            if not self._installed(model):
                return web.json_response(
                    {
                        "error": {
                            "message": f'model "{model}" not found, try pulling it first',
                            "type": "api_error",
                            "param": None,
                            "code": None,
                        }
                    },
                    status=404,
                )
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
            if self.hold is not None:
                await self.hold.wait()
            message = (
                self.script.pop(0) if self.script else {"role": "assistant", "content": self.reply}
            )
            finish = "tool_calls" if message.get("tool_calls") else "stop"
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            words = str(message.get("content") or "").split(" ")
            if limit and not message.get("tool_calls") and len(words) > limit:
                message = {**message, "content": " ".join(words[:limit])}
                finish = "length"
            completion_tokens = len(str(message.get("content") or message).split())
            return web.json_response(
                {
                    "id": f"chatcmpl-{len(self.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": "fp_ollama",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
            )

        async def blob(request: web.Request) -> web.Response:
            digest = request.match_info["digest"]
            self.requests.append((request.method, request.path, {}))
            if request.method == "HEAD":
                return web.Response(status=200 if digest in self.blobs else 404)
            body = await request.read()
            actual = "sha256:" + hashlib.sha256(body).hexdigest()
            if actual != digest:
                return web.json_response(
                    {"error": f'digest mismatch, expected "{digest}", got "{actual}"'}, status=400
                )
            self.blobs[digest] = body
            return web.Response(status=201)

        async def create(request: web.Request) -> web.Response:
            body = await request.json()
            self.requests.append(("POST", request.path, body))
            missing = [d for d in body.get("files", {}).values() if d not in self.blobs]
            if not body.get("model") or missing:
                return web.json_response({"error": f"missing blobs: {missing}"}, status=400)
            name = body["model"] if ":" in body["model"] else f"{body['model']}:latest"
            self.created[name] = body
            self.models.append(name)
            return web.json_response({"status": "success"})

        app = web.Application(client_max_size=1024**3)
        app.add_routes(
            [
                web.get("/api/version", version),
                web.get("/api/tags", tags),
                web.get("/v1/models", openai_models),
                web.post("/v1/chat/completions", chat),
                web.route("HEAD", "/api/blobs/{digest}", blob),
                web.post("/api/blobs/{digest}", blob),
                web.post("/api/create", create),
            ]
        )
        return app


@asynccontextmanager
async def ollama_standin(models: list[str]) -> AsyncIterator[OllamaStandIn]:
    standin = OllamaStandIn(models)
    runner = web.AppRunner(standin.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    standin.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield standin
    finally:
        await runner.cleanup()
