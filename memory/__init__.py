"""Agent memory in ChromaDB: the offline embedder, knowledge packs and their index,
per-agent memories with blended recall, reflections and retention, and the worker's
memory service."""
