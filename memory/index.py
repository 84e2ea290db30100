"""The shared knowledge index: knowledge packs in ChromaDB, searched with arena weights.

ChromaDB runs embedded (a ``PersistentClient`` under ``var/chroma``, owned by one
process) unless ``BOTARENA_CHROMA_URL`` names a ChromaDB server; telemetry is off either
way. Each pack collection (``code``, ``rules``...) is the Chroma collection
``knowledge_<name>`` with cosine distance; vectors come from the offline embedder, never
from ChromaDB's default (downloading) one. Indexing upserts by chunk id and skips chunks
whose text is unchanged, so re-indexing after canon changes is cheap. A search asks
every collection the arena weighs and ranks the hits by :func:`knowledge_score`:
relevance first, the arena's weight only to break near-ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings as ChromaSettings

from botarena.memory.embedder import ChromaEmbedding, shared_embedder
from botarena.memory.knowledge import Chunk, content_words, names
from botarena.server.settings import MemorySettings

PREFIX = "knowledge_"

WEIGHT_BONUS = 0.02
"""The most an arena's weight adds to a hit's cosine similarity (at weight 1 or more)."""


def knowledge_score(similarity: float, weight: float) -> float:
    """A knowledge hit's rank: ``similarity + WEIGHT_BONUS * min(weight, 1)``.

    Relevance decides; the arena's weight of the hit's collection (clamped to 0..1) adds
    a bonus of at most ``WEIGHT_BONUS`` (0.02): a hit outranks a more similar one only
    when their similarities differ by less than 0.02 x the difference of their weights.
    A weak match from a favoured collection never beats a match more than 0.02 stronger
    from any other; between equally relevant hits the higher weight comes first. (Multiplying
    similarity by weight did the opposite: the embedder's similarities all lie between
    about 0.73 and 0.95, so the weight decided every time.) Collections weighted 0 or
    less are not searched at all.
    """
    return similarity + WEIGHT_BONUS * min(max(weight, 0.0), 1.0)


def open_chroma(settings: MemorySettings) -> chromadb.ClientAPI:
    """The ChromaDB client the settings ask for, with telemetry off."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or 8000,
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document: str  # the document's id (its front matter's, or a canon path)
    collection: str
    title: str
    heading: str
    text: str
    similarity: float
    score: float


@dataclass(frozen=True)
class IndexReport:
    added: int
    unchanged: int


class KnowledgeIndex:
    """Knowledge collections in one ChromaDB."""

    def __init__(self, client: chromadb.ClientAPI) -> None:
        self.client = client
        self.embedder = shared_embedder()
        self._vocabulary: set[str] | None = None

    def vocabulary(self) -> set[str]:
        """Every content word (:func:`content_words`) of every indexed chunk, read once
        from ChromaDB and kept up to date by :meth:`index`."""
        if self._vocabulary is None:
            words: set[str] = set()
            for name in self.collections():
                stored = self._collection(name).get(include=["documents", "metadatas"])
                for text, meta in zip(
                    stored["documents"] or [], stored["metadatas"] or [], strict=False
                ):
                    heading = f"{(meta or {}).get('title', '')} {(meta or {}).get('heading', '')}"
                    words |= content_words(f"{heading} {text}")
            self._vocabulary = words
        return self._vocabulary

    def coverage(self, text: str) -> float:
        """The share of ``text``'s content words found anywhere in the knowledge (1.0
        for a text without any): a question about what the site never wrote down
        scores low however close its nearest passage is."""
        wanted = content_words(text)
        if not wanted:
            return 1.0
        return len(wanted & self.vocabulary()) / len(wanted)

    def unknown_names(self, text: str) -> list[str]:
        """The names ``text`` uses (:func:`names`: LDAP, Slack) that the knowledge never
        mentions: a question about them is not one it can answer."""
        return sorted(names(text) - self.vocabulary())

    def _collection(self, name: str) -> chromadb.Collection:
        return self.client.get_or_create_collection(
            PREFIX + name,
            # chromadb asks for EmbeddingFunction[Embeddable] with a contravariant parameter,
            # which no text-only function can be (chroma-core/chroma#5241)
            embedding_function=ChromaEmbedding(),  # type: ignore[arg-type]
            metadata={"hnsw:space": "cosine"},
        )

    def collections(self) -> dict[str, int]:
        """Each knowledge collection and its chunk count."""
        found = {}
        for collection in self.client.list_collections():
            if collection.name.startswith(PREFIX):
                found[collection.name[len(PREFIX) :]] = collection.count()
        return found

    def index(self, chunks: list[Chunk]) -> IndexReport:
        """Upsert chunks; those whose text did not change are left alone."""
        added = unchanged = 0
        by_collection: dict[str, list[Chunk]] = {}
        for chunk in chunks:
            by_collection.setdefault(chunk.collection, []).append(chunk)
        for name, group in by_collection.items():
            collection = self._collection(name)
            existing = collection.get(ids=[c.id for c in group], include=["metadatas"])
            digests = {
                i: (m or {}).get("digest")
                for i, m in zip(existing["ids"], existing["metadatas"] or [], strict=False)
            }
            fresh = [c for c in group if digests.get(c.id) != c.digest]
            unchanged += len(group) - len(fresh)
            if not fresh:
                continue
            vectors = self.embedder.passages([f"{c.title}. {c.heading}. {c.text}" for c in fresh])
            collection.upsert(
                ids=[c.id for c in fresh],
                embeddings=[v for v in vectors],
                documents=[c.text for c in fresh],
                metadatas=[
                    {
                        "document": c.document,
                        "title": c.title,
                        "heading": c.heading,
                        "digest": c.digest,
                    }
                    for c in fresh
                ],
            )
            added += len(fresh)
            if self._vocabulary is not None:
                for c in fresh:
                    self._vocabulary |= content_words(f"{c.title} {c.heading} {c.text}")
        return IndexReport(added, unchanged)

    def replace_document(self, chunks: list[Chunk]) -> IndexReport:
        """Index a document's chunks after removing every chunk it had before (a new
        version may have fewer chunks than the last)."""
        for document, collection in {(c.document, c.collection) for c in chunks}:
            self._collection(collection).delete(where={"document": document})
        return self.index(chunks)

    def search(self, query: str, weights: dict[str, float], k: int = 4) -> list[Hit]:
        """The ``k`` best chunks for ``query`` across the weighted collections, best first
        by :func:`knowledge_score` (similarity, plus at most 0.02 for the weight)."""
        vector = self.embedder.query(query)
        present = self.collections()
        hits: list[Hit] = []
        for name, weight in weights.items():
            if weight <= 0 or not present.get(name):
                continue
            result = self._collection(name).query(
                query_embeddings=[vector],
                n_results=min(k, present[name]),
                include=["documents", "metadatas", "distances"],
            )
            documents, metadatas = result["documents"], result["metadatas"]
            distances = result["distances"]
            # all three asked for in include
            assert documents is not None and metadatas is not None and distances is not None
            for chunk_id, text, meta, distance in zip(
                result["ids"][0],
                documents[0],
                metadatas[0],
                distances[0],
                strict=True,
            ):
                similarity = 1.0 - float(distance)
                hits.append(
                    Hit(
                        chunk_id,
                        str(meta.get("document", chunk_id)),
                        name,
                        str(meta.get("title", "")),
                        str(meta.get("heading", "")),
                        text or "",
                        similarity,
                        knowledge_score(similarity, weight),
                    )
                )
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]
