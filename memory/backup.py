"""Memory's part of a site backup (``botarena backup``): every ChromaDB collection (each
agent's memories and the knowledge index) with its ids, documents, metadata and
embeddings, one JSON line per batch in ``chroma.jsonl``. Restoring recreates the
collections with their embeddings, so nothing is re-embedded. Registered in the
``botarena.backup`` entry-point group as :data:`COLLECTIONS`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from botarena.memory.embedder import ChromaEmbedding
from botarena.memory.index import open_chroma
from botarena.server.settings import MemorySettings

BATCH = 500
FILE = "chroma.jsonl"


def _export_chroma(settings: MemorySettings, out: Path) -> dict[str, int]:
    client = open_chroma(settings)
    counts = {}
    with open(out, "w") as lines:
        for collection in client.list_collections():
            found = collection.get(include=["documents", "metadatas", "embeddings"])
            counts[collection.name] = len(found["ids"])
            for start in range(0, max(len(found["ids"]), 1), BATCH):
                end = start + BATCH
                embeddings = found["embeddings"]
                lines.write(
                    json.dumps(
                        {
                            "collection": collection.name,
                            "metadata": collection.metadata,
                            "ids": found["ids"][start:end],
                            "documents": (found["documents"] or [])[start:end],
                            "metadatas": (found["metadatas"] or [])[start:end],
                            "embeddings": [list(map(float, e)) for e in embeddings[start:end]]
                            if embeddings is not None
                            else [],
                        }
                    )
                    + "\n"
                )
    return counts


def _import_chroma(settings: MemorySettings, source: Path) -> dict[str, int]:
    client = open_chroma(settings)
    counts: dict[str, int] = {}
    with open(source) as lines:
        for line in lines:
            batch = json.loads(line)
            collection = client.get_or_create_collection(
                batch["collection"],
                # chromadb asks for EmbeddingFunction[Embeddable] with a contravariant
                # parameter, which no text-only function can be (chroma-core/chroma#5241)
                embedding_function=ChromaEmbedding(),  # type: ignore[arg-type]
                metadata=batch["metadata"],
            )
            if batch["ids"]:
                collection.add(
                    ids=batch["ids"],
                    documents=batch["documents"] or None,
                    metadatas=batch["metadatas"] or None,
                    embeddings=batch["embeddings"],
                )
            counts[batch["collection"]] = counts.get(batch["collection"], 0) + len(batch["ids"])
    return counts


class CollectionsPart:
    """ChromaDB's collections, between the database (first) and the object store."""

    order = 10
    settings = MemorySettings

    async def export(self, settings: MemorySettings, work: Path) -> dict[str, Any]:
        return {"collections": await asyncio.to_thread(_export_chroma, settings, work / FILE)}

    async def not_empty(self, settings: MemorySettings) -> str | None:
        if await asyncio.to_thread(lambda: open_chroma(settings).list_collections()):
            return "ChromaDB is not empty"
        return None

    async def restore(
        self, settings: MemorySettings, work: Path, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        return {"collections": await asyncio.to_thread(_import_chroma, settings, work / FILE)}


COLLECTIONS = CollectionsPart()
