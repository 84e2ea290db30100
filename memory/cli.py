"""Memory's commands (``botarena memory ...``): which agents remember, what an agent
remembers or would recall, and indexing a knowledge pack.

Registered on the root ``botarena`` command through the ``botarena.commands``
entry-point group (:func:`register`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from botarena.server.cli import fail, load_settings
from botarena.server.settings import MemorySettings

if TYPE_CHECKING:
    import chromadb

memory_app = typer.Typer(no_args_is_help=True, help="Agents' memories and shared knowledge.")


def register(root: typer.Typer) -> None:
    """Add ``botarena memory`` to the root command."""
    root.add_typer(memory_app, name="memory")


def _chroma(settings: MemorySettings) -> chromadb.ClientAPI:
    from botarena.server import offline

    offline.apply()
    from botarena.memory.index import open_chroma

    try:
        client = open_chroma(settings)
        client.heartbeat()
    except Exception as exc:  # any ChromaDB failure: say which store and why
        where = settings.chroma_url or settings.chroma_dir
        fail(f"cannot open ChromaDB at {where}: {exc}", code=1)
    return client


@memory_app.command("agents")
def memory_agents() -> None:
    """List the agents that have memories, with their counts."""
    from botarena.memory.memories import AgentMemory, agents_with_memories

    client = _chroma(load_settings(MemorySettings))
    for agent in agents_with_memories(client):
        typer.echo(f"{agent:<24} {AgentMemory(client, agent).count():>7} memories")


@memory_app.command("show")
def memory_show(
    agent: Annotated[str, typer.Argument(help="the agent's id")],
    query: Annotated[str | None, typer.Option(help="recall for this question instead")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """Show an agent's newest memories, or what it would recall for a question."""
    from botarena.memory.memories import AgentMemory, agents_with_memories

    client = _chroma(load_settings(MemorySettings))
    if agent not in agents_with_memories(client):
        fail(f"no memories for {agent!r}", code=1)
    memory = AgentMemory(client, agent)
    found = memory.recall(query, k=limit) if query else memory.recent(limit)
    for m in found:
        score = f" score {m.score:.2f}" if query else ""
        typer.echo(f"[{m.kind:<11}] importance {m.importance:4.1f}{score}  {m.room:<12} {m.text}")


@memory_app.command("load-pack")
def memory_load_pack(
    folder: Annotated[Path, typer.Argument(help="a folder of Markdown files with front matter")],
) -> None:
    """Index a knowledge pack; each refused file is named with its reason."""
    from botarena.memory.index import KnowledgeIndex
    from botarena.memory.knowledge import load_pack

    settings = load_settings(MemorySettings)
    chunks, errors = load_pack(folder)
    for error in errors:
        typer.secho(f"refused {error}", fg=typer.colors.RED, err=True)
    report = KnowledgeIndex(_chroma(settings)).index(chunks)
    typer.echo(
        f"indexed {report.added} chunk(s), {report.unchanged} unchanged, "
        f"{len(errors)} file(s) refused"
    )
    if errors:
        raise typer.Exit(1)
