"""Models from a bundle into Ollama, through its API (when Ollama is the LLM backend).

A model travels as ``models/<name>.gguf`` with ``models/<name>.Modelfile`` beside it.
Each GGUF is uploaded as a blob (``POST /api/blobs/sha256:<digest>``, skipped when
``HEAD`` says Ollama has it; Ollama checks the digest) and the model is created with
``POST /api/create`` from the blob and what the Modelfile says (``TEMPLATE``,
``SYSTEM``, ``PARAMETER``, ``LICENSE``). Nothing is pulled from anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from botarena.bundles.manifest import FileEntry
from botarena.server.errors import BundleError

_DIRECTIVE = re.compile(r"^(FROM|TEMPLATE|SYSTEM|PARAMETER|LICENSE)\s+(.*)$", re.S)


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(directive, value) pairs of a Modelfile; a value in triple quotes may span lines."""
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DIRECTIVE.match(line)
        if match is None:
            raise BundleError("ollama", f"not a Modelfile instruction: {line[:80]!r}")
        name, value = match[1], match[2].strip()
        if value.startswith('"""'):
            value = value[3:]
            while not value.endswith('"""'):
                value += "\n" + next(lines, '"""')
            value = value[:-3]
        elif len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        yield name, value


def create_request(name: str, gguf: str, digest: str, modelfile: str) -> dict[str, Any]:
    """The ``/api/create`` body for a model from an uploaded GGUF and its Modelfile."""
    body: dict[str, Any] = {"model": name, "files": {gguf: f"sha256:{digest}"}, "stream": False}
    parameters: dict[str, Any] = {}
    for directive, value in _instructions(modelfile):
        if directive == "PARAMETER":
            key, _, raw = value.partition(" ")
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.strip('"')
            parameters.setdefault(key, []).append(parsed)
        elif directive != "FROM":  # the weights are the bundle's GGUF, nothing else
            body[directive.lower()] = value
    if parameters:
        body["parameters"] = {
            k: v[0] if len(v) == 1 and k != "stop" else v for k, v in parameters.items()
        }
    return body


def install_models(host: str, payload: Path, files: list[FileEntry]) -> list[str]:
    """Upload each GGUF that has a Modelfile and create its model; the models made."""
    by_path = {f.path: f for f in files}
    made = []
    with httpx.Client(base_url=host.rstrip("/"), timeout=600) as ollama:
        for entry in files:
            if not (entry.path.startswith("models/") and entry.path.endswith(".gguf")):
                continue
            modelfile = entry.path.removesuffix(".gguf") + ".Modelfile"
            if modelfile not in by_path:
                continue
            name = Path(entry.path).stem
            blob = f"/api/blobs/sha256:{entry.sha256}"
            try:  # the Modelfile first: one that is wrong is refused before any upload
                text = (payload / modelfile).read_text()
                body = create_request(name, Path(entry.path).name, entry.sha256, text)
            except UnicodeDecodeError as exc:
                raise BundleError("ollama", f"{modelfile}: {exc}") from None
            except BundleError as exc:
                raise BundleError(exc.code, f"{modelfile}: {exc.message}") from None
            try:
                if ollama.head(blob).status_code != 200:
                    with open(payload / entry.path, "rb") as weights:
                        answer = ollama.post(blob, content=weights)
                    if answer.status_code not in (200, 201):
                        raise BundleError("ollama", f"blob of {name} refused: {answer.text[:200]}")
                answer = ollama.post("/api/create", json=body)
                if answer.status_code != 200:
                    raise BundleError("ollama", f"model {name} not created: {answer.text[:200]}")
            except httpx.HTTPError as exc:
                raise BundleError("ollama", f"Ollama at {host} did not answer: {exc}") from None
            made.append(name)
    return made
