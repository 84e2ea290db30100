"""Each agent's own memories in ChromaDB, recalled the Generative Agents way.

An :class:`AgentMemory` is bound to one agent and reads and writes only that agent's
collection (``memories_<agent id>``): there is no call that reaches another agent's
memories. A memory is an observation (a message seen or said), a reflection or a
summary, with an importance from 1 to 10, a creation time and a last-access time.

Recall takes the most relevant candidates from ChromaDB, then ranks them by
``w_recency * recency + w_importance * importance + w_relevance * relevance``
(Park et al., 2023), each in [0, 1]. Recency decays exponentially with the hours since
the memory was last recalled (``memory_decay_per_hour``, 0.995 as in the paper);
importance is the 1-10 score over 10; relevance (cosine similarity) is min-max
normalised over the candidates, because the embedder's similarities bunch together.
Unlike the paper, recency and importance are not min-max normalised: over a chat of a
few minutes that would turn seconds of age into the whole scale and let the newest
small talk beat the memory that answers the question. The default weights are all 1,
the paper's choice, so no signal dominates until a site tunes them. Recalled memories
have their access time refreshed: at once for this process's own reads (recall,
:meth:`AgentMemory.recent`), and in ChromaDB by a background writer
(:class:`AccessWriter`) that batches the refreshes of every agent, so the write (about
as long as the search itself, and slowing the search right after it) is off the turn's
path. :meth:`AgentMemory.flush_access` writes them at once; the pending ones are also
written when the process exits.

Reflection: when the importance of observations since the last reflection adds up past
``memory_reflection_threshold``, the most important of them are condensed into one
reflection (by a summariser the caller gives, an LLM in the worker; otherwise an
extractive summary), stored with the highest importance among them.

Retention: past ``memory_max_per_agent`` memories, the oldest observations of low
importance (below 5) are folded into summaries of 20 and deleted, oldest first; if
that is not enough, the oldest observations whatever their importance go the same way.
Reflections and summaries are kept. So a run of weeks stays bounded.
"""

from __future__ import annotations

import atexit
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict, cast

import chromadb
import numpy as np
import structlog

from botarena.memory.embedder import ChromaEmbedding, shared_embedder

PREFIX = "memories_"
FOLD = 20  # observations per retention summary
WRITE_BACK_SECONDS = 0.5
"""How long the access writer gathers refreshes before writing them (one write per
agent per period, whatever the number of recalls)."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Memory:
    id: str
    kind: str  # observation | reflection | summary
    text: str
    importance: float
    created: float
    accessed: float
    room: str
    score: float = 0.0


class _Stored(TypedDict):
    """A memory's metadata as :meth:`AgentMemory.remember` writes it (``room`` and
    ``message`` may be missing from memories stored before they were recorded)."""

    kind: str
    importance: float
    created: float
    accessed: float
    room: NotRequired[str]
    message: NotRequired[int]  # the hub message it observes; 0 for none


@dataclass(frozen=True)
class RecallWeights:
    recency: float = 1.0
    importance: float = 1.0
    relevance: float = 1.0
    decay_per_hour: float = 0.995


def importance_of(
    text: str, *, author: str, agent: str, author_is_human: bool, mentioned: bool
) -> float:
    """A cheap importance score (1-10) for an observation, without an LLM call: being
    mentioned (as the scheduler detects it), humans' words, questions and length raise it."""
    score = 2.0
    if mentioned:
        score += 3
    if author_is_human:
        score += 2
    if author == agent:
        score += 1
    score += min(2, text.count("?"))
    score += min(1.0, len(text) / 400)
    return min(10.0, score)


def _normalise(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return np.ones_like(values) if spread < 1e-9 else (values - values.min()) / spread


class AccessWriter:
    """One daemon thread per process that writes recalled memories' access times to
    ChromaDB, gathered for :data:`WRITE_BACK_SECONDS` so that many recalls make one write
    per agent."""

    def __init__(self, delay: float = WRITE_BACK_SECONDS) -> None:
        self.delay = delay
        self._due: dict[int, AgentMemory] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-access", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def schedule(self, memory: AgentMemory) -> None:
        with self._lock:
            self._due[id(memory)] = memory
        self._wake.set()

    def flush(self) -> None:
        """Write every pending access time now."""
        with self._lock:
            due, self._due = list(self._due.values()), {}
        for memory in due:
            try:
                memory.flush_access()
            except Exception as exc:  # ChromaDB down: kept, tried again at the next recall
                log.warning("memory.access_write_failed", agent=memory.agent, error=str(exc))

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.delay)
            self._wake.clear()
            self.flush()


_writer: AccessWriter | None = None
_writer_lock = threading.Lock()


def access_writer() -> AccessWriter:
    """The process-wide access writer, started on first use."""
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = AccessWriter()
        return _writer


class AgentMemory:
    """One agent's memories."""

    def __init__(
        self,
        client: chromadb.ClientAPI,
        agent: str,
        *,
        weights: RecallWeights | None = None,
        reflection_threshold: float = 40.0,
        max_memories: int = 5000,
        summarise: Callable[[list[str]], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent = agent
        self.weights = weights or RecallWeights()
        self.reflection_threshold = reflection_threshold
        self.max_memories = max_memories
        self.summarise = summarise
        self.clock = clock
        self.embedder = shared_embedder()
        self.collection = client.get_or_create_collection(
            PREFIX + agent,
            # chromadb asks for EmbeddingFunction[Embeddable] with a contravariant parameter,
            # which no text-only function can be (chroma-core/chroma#5241)
            embedding_function=ChromaEmbedding(),  # type: ignore[arg-type]
            metadata={"hnsw:space": "cosine"},
        )
        self._pending: list[tuple[str, float]] = []  # observations since the last reflection
        self._stored = self.collection.count()  # kept here: remember() runs for every message
        # access times refreshed by recall and not yet in ChromaDB (id -> time); those
        # being written are in _writing until the write is done
        self._accessed: dict[str, float] = {}
        self._writing: dict[str, float] = {}
        self._access_lock = threading.Lock()
        self._write_lock = threading.Lock()  # a write-back never meets retention's deletes

    def count(self) -> int:
        return self.collection.count()

    def remember(
        self,
        text: str,
        *,
        importance: float,
        room: str = "",
        kind: str = "observation",
        vector: np.ndarray | None = None,
        message_id: int = 0,
    ) -> str:
        """Store a memory (``vector``: its passage embedding, when already computed;
        ``message_id``: the hub message it observes, so that it can be forgotten)."""
        now = self.clock()
        memory_id = uuid.uuid4().hex
        embedding = vector if vector is not None else self.embedder.passages([text])[0]
        self.collection.add(
            ids=[memory_id],
            embeddings=[embedding],
            documents=[text],
            metadatas=[
                {
                    "kind": kind,
                    "importance": float(importance),
                    "created": now,
                    "accessed": now,
                    "room": room,
                    "message": message_id,
                }
            ],
        )
        if kind == "observation":
            self._pending.append((text, importance))
            if sum(i for _, i in self._pending) >= self.reflection_threshold:
                self.reflect()
        self._stored += 1
        if self._stored > self.max_memories:
            self.retain()
        return memory_id

    def forget_message(self, message_id: int) -> int:
        """Forget the observations of hub message ``message_id`` (a moderator withheld
        it), before any reflection folds them; return how many were removed."""
        with self._write_lock:
            rows = self.collection.get(where={"message": message_id}, include=["documents"])
            if not rows["ids"]:
                return 0
            self.collection.delete(ids=rows["ids"])
            with self._access_lock:
                for memory_id in rows["ids"]:
                    self._accessed.pop(memory_id, None)
        texts = set(rows["documents"] or [])
        self._pending = [p for p in self._pending if p[0] not in texts]
        self._stored -= len(rows["ids"])
        return len(rows["ids"])

    def reflect(self) -> str | None:
        """Condense the observations since the last reflection into one reflection."""
        pending, self._pending = self._pending, []
        if not pending:
            return None
        best = sorted(pending, key=lambda p: p[1], reverse=True)[:8]
        texts = [t for t, _ in best]
        summary = self._summary(texts, "What stood out")
        return self.remember(summary, importance=max(i for _, i in best), kind="reflection")

    def _summary(self, texts: list[str], heading: str) -> str:
        if self.summarise is not None:
            try:
                written = self.summarise(texts).strip()
                if written:
                    return written[:1500]
            except Exception:  # an LLM failure must not lose the memory: fall back
                pass
        return f"{heading}: " + " | ".join(t[:160] for t in texts)

    def retain(self) -> int:
        """Fold old, unimportant observations into summaries until within bounds;
        return how many memories were removed."""
        removed = 0
        self._stored = self.collection.count()
        excess = self._stored - self.max_memories
        if excess <= 0:
            return 0
        rows = self.collection.get(
            where={"kind": "observation"}, include=["documents", "metadatas"]
        )
        documents, metadatas = rows["documents"], rows["metadatas"]
        assert documents is not None and metadatas is not None  # both asked for in include
        entries = sorted(
            zip(rows["ids"], documents, cast(list[_Stored], metadatas), strict=True),
            key=lambda r: r[2]["created"],
        )
        low = [e for e in entries if e[2]["importance"] < 5]
        victims = low + [e for e in entries if e[2]["importance"] >= 5]
        while excess > 0 and victims:
            batch, victims = victims[:FOLD], victims[FOLD:]
            with self._write_lock:
                self.collection.delete(ids=[e[0] for e in batch])
                with self._access_lock:
                    for e in batch:
                        self._accessed.pop(e[0], None)
            removed += len(batch)
            self.remember(
                self._summary([e[1] for e in batch], "Earlier"),
                importance=max(e[2]["importance"] for e in batch),
                kind="summary",
                room=str(batch[-1][2].get("room", "")),
            )
            excess -= len(batch) - 1
        self._stored = self.collection.count()
        return removed

    def recall(self, query: str, k: int = 5, candidates: int = 40) -> list[Memory]:
        """The ``k`` memories ranked by recency, importance and relevance to ``query``."""
        vector = self.embedder.query(query)  # kept by the embedder: once per text
        # no count() first: ChromaDB answers with what it has when asked for more
        result = self.collection.query(
            query_embeddings=[vector],
            n_results=candidates,
            include=["documents", "metadatas", "distances"],
        )
        documents, metadatas = result["documents"], result["metadatas"]
        distances = result["distances"]
        # all three asked for in include
        assert documents is not None and metadatas is not None and distances is not None
        ids = result["ids"][0]
        if not ids:
            return []
        metas = cast(list[_Stored], metadatas[0])
        accessed = self._accessed_times(ids, metas)
        now = self.clock()
        relevance = 1.0 - np.array(distances[0], dtype=float)
        importance = np.array([m["importance"] for m in metas], dtype=float) / 10.0
        hours = (now - np.array(accessed, dtype=float)) / 3600.0
        recency = np.power(self.weights.decay_per_hour, np.maximum(hours, 0.0))
        w = self.weights
        score = (
            w.recency * recency + w.importance * importance + w.relevance * _normalise(relevance)
        )
        order = np.argsort(-score)[:k]
        chosen = [
            Memory(
                ids[i],
                metas[i]["kind"],
                documents[0][i] or "",
                metas[i]["importance"],
                metas[i]["created"],
                accessed[i],
                str(metas[i].get("room", "")),
                float(score[i]),
            )
            for i in order
        ]
        if chosen:
            with self._access_lock:
                for m in chosen:
                    self._accessed[m.id] = now
            access_writer().schedule(self)
        return chosen

    def _accessed_times(self, ids: Sequence[str], metas: Sequence[_Stored]) -> list[float]:
        """Each memory's last access: a refresh not yet written wins over ChromaDB's."""
        with self._access_lock:
            if not self._accessed and not self._writing:
                return [m["accessed"] for m in metas]
            return [
                self._accessed.get(i, self._writing.get(i, m["accessed"]))
                for i, m in zip(ids, metas, strict=True)
            ]

    def flush_access(self) -> None:
        """Write the access times recalls refreshed to ChromaDB (the access writer calls
        this in the background; callers that need them stored now may too). On failure
        they stay pending, and an access refreshed since wins."""
        with self._write_lock:
            with self._access_lock:
                if not self._accessed:
                    return
                self._writing, self._accessed = self._accessed, {}
            try:
                self.collection.update(
                    ids=list(self._writing),
                    metadatas=[{"accessed": t} for t in self._writing.values()],
                )
            except Exception:
                with self._access_lock:
                    self._accessed = {**self._writing, **self._accessed}
                raise
            finally:
                with self._access_lock:
                    self._writing = {}

    def recent(self, limit: int = 20) -> list[Memory]:
        """The newest memories, for inspection (``botarena memory show``)."""
        rows = self.collection.get(include=["documents", "metadatas"])
        documents, metadatas = rows["documents"], rows["metadatas"]
        assert documents is not None and metadatas is not None  # both asked for in include
        metas = cast(list[_Stored], metadatas)
        accessed = self._accessed_times(rows["ids"], metas)
        memories = [
            Memory(
                i,
                m["kind"],
                d or "",
                m["importance"],
                m["created"],
                a,
                str(m.get("room", "")),
            )
            for i, d, m, a in zip(rows["ids"], documents, metas, accessed, strict=True)
        ]
        return sorted(memories, key=lambda m: m.created, reverse=True)[:limit]


def agents_with_memories(client: chromadb.ClientAPI) -> Sequence[str]:
    return sorted(
        c.name[len(PREFIX) :] for c in client.list_collections() if c.name.startswith(PREFIX)
    )
