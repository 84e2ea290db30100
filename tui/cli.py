"""The console's command, ``botarena tui``, registered on the root ``botarena`` command
through the ``botarena.commands`` entry-point group (:func:`register`)."""

from __future__ import annotations

from typing import Annotated

import typer

from botarena.server.cli import load_settings
from botarena.server.settings import ClientSettings

app = typer.Typer()


def register(root: typer.Typer) -> None:
    """Add ``botarena tui`` to the root command."""
    root.registered_commands.extend(app.registered_commands)


@app.command("tui")
def tui(
    read_only: Annotated[
        bool, typer.Option("--read-only", help="observe only: every action is hidden")
    ] = False,
) -> None:
    """The moderator console (hub from BOTARENA_HUB_URL; token from BOTARENA_TOKEN, or
    asked for)."""
    from botarena.tui.app import ConsoleApp

    settings = load_settings(ClientSettings)
    ConsoleApp(url=settings.hub_url, token=settings.token, read_only=read_only).run()
