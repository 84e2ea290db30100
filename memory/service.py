"""Memory for the agent worker: what each agent saw and said, and the shared knowledge,
behind calls that never block the event loop and never stop an agent from talking.

:class:`MemoryService` opens ChromaDB (embedded or server) lazily, indexes the site's
knowledge pack on start, stores each observed message once per agent in the room (one
embedding, shared; forgotten for all when a moderator withholds it), and builds each
turn's context: the agent's recalled memories and
the knowledge its arena weighs (the turn's query embedded once for both: the embedder
keeps it). Every ChromaDB call runs in a thread. When ChromaDB fails, the service turns
degraded (the worker reports it to the hub), answers with empty context, and tries
again after ``retry_seconds``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import chromadb
import numpy as np
import structlog
from chromadb.errors import InternalError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from botarena.memory.embedder import shared_embedder
from botarena.memory.index import Hit, KnowledgeIndex, open_chroma
from botarena.memory.knowledge import FrontMatter, chunk_document, load_pack
from botarena.memory.memories import AgentMemory, RecallWeights, importance_of
from botarena.server.protocol import Message
from botarena.server.settings import MemorySettings

log = structlog.get_logger(__name__)

_WITHHELD_KEPT = 10_000
"""Message ids withheld by moderators that an observation still on its way must not store."""

_TRANSIENT = retry(
    retry=retry_if_exception_type(InternalError),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.1, max=1.0),
    reraise=True,
)
"""ChromaDB's server answers a query on a collection whose index it has not written yet
with an ``InternalError`` ("Error creating hnsw segment reader: Nothing found on disk")
that the same query a moment later does not get: such a call is tried again, briefly,
before memory is taken for down."""


@dataclass(frozen=True)
class Evidence:
    """What the knowledge holds for a question: the best passages, the share of the
    question's words found anywhere in it (:meth:`KnowledgeIndex.coverage`), and the
    names its first line uses that the knowledge never mentions."""

    passages: list[Hit] = field(default_factory=list)
    coverage: float = 0.0
    unknown_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TurnMemory:
    """What an agent brings to a turn besides the room's recent messages."""

    memories: list[str] = field(default_factory=list)
    knowledge: list[str] = field(default_factory=list)


class MemoryService:
    def __init__(
        self,
        settings: MemorySettings,
        agents: Iterable[str],
        *,
        retry_seconds: float = 30.0,
        summarise: Callable[[list[str]], str] | None = None,
    ) -> None:
        self.settings = settings
        self.agents = list(dict.fromkeys(agents))
        self.retry_seconds = retry_seconds
        self.summarise = summarise
        self.degraded: str | None = None
        self._client: chromadb.ClientAPI | None = None
        self._index: KnowledgeIndex | None = None
        self._memories: dict[str, AgentMemory] = {}
        self._retry_at = 0.0
        self._opening = threading.Lock()
        self._withholding = threading.Lock()
        self._withheld: OrderedDict[int, None] = OrderedDict()  # message ids forgotten

    def describe(self) -> str:
        """Where the memories are and whether they answer, for the moderators."""
        where = self.settings.chroma_url or f"embedded in {self.settings.chroma_dir}"
        state = f"degraded: {self.degraded}" if self.degraded else "ok"
        return f"ChromaDB {where}: {state}"[:200]

    # opening ----------------------------------------------------------------------

    def _open(self) -> None:
        with self._opening:  # observe and recall run in threads, possibly at once
            self._open_once()

    def _open_once(self) -> None:
        if self._client is not None:
            return
        if time.monotonic() < self._retry_at:
            raise RuntimeError(self.degraded or "memory unavailable")
        client = open_chroma(self.settings)
        client.heartbeat()
        self._client = client
        self._index = KnowledgeIndex(client)
        s = self.settings
        weights = RecallWeights(
            s.memory_weight_recency,
            s.memory_weight_importance,
            s.memory_weight_relevance,
            s.memory_decay_per_hour,
        )
        self._memories = {
            pid: AgentMemory(
                client,
                pid,
                weights=weights,
                reflection_threshold=s.memory_reflection_threshold,
                max_memories=s.memory_max_per_agent,
                summarise=self.summarise,
            )
            for pid in self.agents
        }

    async def _call(self, what: str, fn: Callable[[], object]) -> object | None:
        """Run a ChromaDB operation in a thread; on failure turn degraded, return None."""

        @_TRANSIENT
        def run() -> object:
            self._open()
            return fn()

        try:
            result = await asyncio.to_thread(run)
        except Exception as exc:  # ChromaDB down or broken: talk on without memory
            reason = f"memory unavailable ({type(exc).__name__}: {str(exc)[:160]})"
            if self.degraded is None:
                log.warning("memory.degraded", during=what, reason=reason)
            self.degraded = reason
            self._client = None
            self._retry_at = time.monotonic() + self.retry_seconds
            return None
        if self.degraded is not None:
            log.info("memory.recovered")
            self.degraded = None
        return result

    async def start(self) -> None:
        """Open ChromaDB and index the configured knowledge pack (errors per file logged)."""
        pack = self.settings.knowledge_pack
        if pack is None:
            await self._call("open", lambda: None)
            return
        chunks, errors = await asyncio.to_thread(load_pack, pack)  # reads every file
        for error in errors:
            log.warning("knowledge.file_refused", file=str(error.path), reason=error.reason)

        def index() -> object:
            assert self._index is not None
            return self._index.index(chunks)

        report = await self._call("index", index)
        if report is not None:
            log.info("knowledge.indexed", pack=str(pack), report=str(report))

    # during the run -----------------------------------------------------------------

    async def observe(
        self,
        message: Message,
        agents: set[str],
        mentioned: AbstractSet[str] = frozenset(),
        *,
        released: bool = False,
    ) -> None:
        """Remember ``message`` for each of ``agents`` (those in its room); ``mentioned``:
        the agents it names, for whom it matters more. A message forgotten because a
        moderator withheld it is not stored, unless ``released`` says a moderator has
        since shown it again."""
        mine = [a for a in agents if a in self.agents]
        if not mine:
            return

        def store() -> None:
            vector = shared_embedder().passages([f"{message.author}: {message.text}"])[0]
            human = message.author_role.value != "agent"
            with self._withholding:  # never stored after a forget of it
                if released:
                    self._withheld.pop(message.id, None)
                elif message.id in self._withheld:
                    return
                remember(vector, human)

        def remember(vector: np.ndarray, human: bool) -> None:
            for agent in mine:
                importance = importance_of(
                    message.text,
                    author=message.author,
                    agent=agent,
                    author_is_human=human,
                    mentioned=agent in mentioned,
                )
                self._memories[agent].remember(
                    f"{message.author}: {message.text}",
                    importance=importance,
                    room=message.room,
                    vector=vector,
                    message_id=message.id,
                )

        await self._call("observe", store)

    async def forget(self, message_id: int) -> None:
        """Forget hub message ``message_id`` for every agent (a moderator withheld it)."""

        def forget() -> None:
            with self._withholding:
                self._withheld[message_id] = None
                while len(self._withheld) > _WITHHELD_KEPT:
                    self._withheld.popitem(last=False)
                for memory in self._memories.values():
                    memory.forget_message(message_id)

        await self._call("forget", forget)

    async def index_canon(self, path: str, version: int, content: str) -> bool:
        """Put a new canon version into the ``canon`` knowledge collection; True if done."""
        front = FrontMatter(
            collection="canon",
            title=f"{path} (canon v{version})",
            id=re.sub(r"[^A-Za-z0-9_.-]", "_", path),
        )
        chunks = chunk_document(front, content)

        def index() -> object:
            assert self._index is not None
            return self._index.replace_document(chunks)

        report = await self._call("index canon", index)
        if report is not None:
            log.info("knowledge.canon_indexed", path=path, version=version)
        return report is not None

    async def for_turn(
        self,
        agent: str,
        query: str,
        weights: dict[str, float],
        k_memories: int = 4,
        k_knowledge: int = 3,
    ) -> TurnMemory:
        """The agent's ``k_memories`` best memories for ``query`` and the ``k_knowledge``
        best knowledge chunks across the collections ``weights`` names, ranked by
        similarity plus at most 0.02 for the weight (``index.knowledge_score``)."""

        def build() -> TurnMemory:
            assert self._index is not None
            # the embedder keeps the query's vector: embedded once for memories and knowledge
            recalled = self._memories[agent].recall(query, k=k_memories)
            hits = self._index.search(query, weights, k=k_knowledge) if weights else []
            return TurnMemory(
                [m.text for m in recalled], [f"{h.title} / {h.heading}: {h.text}" for h in hits]
            )

        result = await self._call("recall", build)
        return result if isinstance(result, TurnMemory) else TurnMemory()

    async def evidence(self, question: str, weights: dict[str, float], k: int = 3) -> Evidence:
        """The ``k`` best knowledge passages for ``question`` across the collections
        ``weights`` names (the canon's merged texts included when weighed), how much of
        the question the knowledge covers, and the names of its first line (a ticket's
        title: what is asked about) that it never mentions; empty when ChromaDB is
        unavailable."""

        def find() -> Evidence:
            assert self._index is not None
            hits = self._index.search(question, weights, k=k) if weights else []
            title = question.strip().splitlines()[0] if question.strip() else ""
            return Evidence(hits, self._index.coverage(question), self._index.unknown_names(title))

        result = await self._call("evidence", find)
        return result if isinstance(result, Evidence) else Evidence()
