"""The agents' commands: run the worker, run the whole product on one machine (``up``),
check persona files, and show which LLM backend answers.

Registered on the root ``botarena`` command through the ``botarena.commands``
entry-point group (:func:`register`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from botarena.server.cli import load_settings, run
from botarena.server.settings import AgentSettings, LLMSettings, Settings

app = typer.Typer()


def register(root: typer.Typer) -> None:
    """Add the agents' commands to the root command."""
    root.registered_commands.extend(app.registered_commands)


@app.command()
def up(
    rotate_moderator_token: Annotated[
        bool,
        typer.Option(help="revoke the site's moderator token and make a new one"),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="log to the terminal, not to var/logs/")
    ] = False,
) -> None:
    """Run the whole product on embedded defaults: hub, LLM, one agent per arena. The
    moderator token is kept across restarts (botarena token moderator shows it); logs go
    to var/logs/ and the terminal shows a status line."""
    from botarena.agents.up import up as run_up
    from botarena.server import logs

    settings = load_settings(Settings, service=True)
    if not verbose:
        logs.configure(
            settings.log_level,
            "console",
            sys.stderr,
            file=settings.var_dir / "logs" / "up.jsonl",
            stream_level="error",
        )
    code = run(run_up(settings, rotate_moderator_token=rotate_moderator_token, verbose=verbose), 1)
    raise typer.Exit(code)


@app.command()
def worker() -> None:
    """Run the agent worker: the personas in BOTARENA_PERSONAS_DIR, with the tokens in
    BOTARENA_AGENT_TOKENS_FILE, on the configured LLM backend."""
    from botarena.agents.run import run_worker

    settings = load_settings(AgentSettings, service=True)
    run(run_worker(settings), code=1)  # no LLM, no usable persona, no tokens: status 1


@app.command()
def personas(
    directory: Annotated[Path | None, typer.Argument(help="default: BOTARENA_PERSONAS_DIR")] = None,
) -> None:
    """Check persona files: list the good ones, explain the bad ones."""
    from botarena.agents.persona import load_personas

    settings = load_settings(AgentSettings)
    found, errors = load_personas(directory or settings.personas_dir)
    for persona in found:
        typer.echo(f"ok    {persona.id:<16} {persona.display_name:<16} {', '.join(persona.arenas)}")
    for error in errors:
        typer.secho(
            f"error {error.path}: {error.field}: {error.reason}", fg=typer.colors.RED, err=True
        )
    if errors or not found:
        raise typer.Exit(1)


@app.command()
def llm() -> None:
    """Show which LLM backend would be used and whether it answers."""
    from botarena.agents.llm import (
        BackendHealth,
        OllamaBackend,
        OpenAICompatibleBackend,
        choose_backend,
    )

    settings = load_settings(LLMSettings)

    async def status() -> tuple[str, BackendHealth | None]:
        kind = await choose_backend(settings)
        if kind == "ollama":
            return kind, await OllamaBackend(settings.ollama_host, settings.llm_model).health()
        if kind == "openai" and settings.llm_url:
            backend = OpenAICompatibleBackend(settings.llm_url.split(","), settings.llm_model)
            return kind, await backend.health()
        return kind, None

    kind, health = run(status())
    if health is None:
        typer.echo(f"backend: {kind} (llama.cpp with {settings.llm_model}, started by the worker)")
        return
    typer.echo(f"backend: {kind}: {health.detail}")
    if health.models:
        typer.echo("models: " + ", ".join(health.models))
    if not health.ok:
        raise typer.Exit(1)
