"""Agent memory in ChromaDB: per-agent memories, shared knowledge collections, the offline
embedder and retrieval scoring."""
