"""The root of the botarena command, and what every package's commands share.

The root knows no command of its own: each package registers its commands through the
``botarena.commands`` entry-point group (the hub's in :mod:`botarena.server.commands`,
the agents', memory's, bundles' and the console's in their own ``cli`` module), and a
site's own package can add commands the same way. An entry point names a function that
takes the root :class:`typer.Typer` and adds its commands to it. Commands read their
settings through :func:`load_settings`, run coroutines through :func:`run` (on uvloop's
event loop, as the hub benchmark's fastest Python reference does), and report a refusal as
one line through :func:`fail`: nothing half-done, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from importlib.metadata import entry_points
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import uvloop
from pydantic import ValidationError

from botarena.server import logs
from botarena.server.errors import BotArenaError
from botarena.server.settings import S, get_settings

T = TypeVar("T")

COMMANDS_GROUP = "botarena.commands"
"""The entry-point group whose functions add commands to the root command."""


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        typer.echo(f"botarena {version('botarena')}")
        raise typer.Exit()


def _main(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """BotArena: agents in arena rooms, supervised by humans, offline."""


def build_app() -> typer.Typer:
    """The root command with every installed package's commands."""
    root = typer.Typer(
        no_args_is_help=True, add_completion=False, help=_main.__doc__, rich_markup_mode=None
    )
    root.callback()(_main)
    # the hub's commands first (as --help always listed them), then each package's
    for entry in sorted(
        entry_points(group=COMMANDS_GROUP), key=lambda e: (e.name != "hub", e.name)
    ):
        try:
            entry.load()(root)
        except Exception as exc:  # a broken plugin must not take every command down
            typer.secho(
                f"warning: commands of {entry.name} ({entry.value}) not loaded: {exc}",
                fg=typer.colors.YELLOW,
                err=True,
            )
    return root


def main() -> None:
    """The ``botarena`` console script (named so in help, however it was started)."""
    build_app()(prog_name="botarena")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load_settings(component: type[S], service: bool = False) -> S:
    """The settings of ``component`` (e.g. :class:`~botarena.server.settings.HubSettings`),
    with logs on stdout for a service and on stderr for a command."""
    try:
        settings = get_settings(component)
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        fail(f"bad settings: {exc}")
    if service:
        logs.configure(settings.log_level, settings.log_format)
    else:
        logs.configure("warning", settings.log_format, stream=sys.stderr)
    return settings


def run(coro: Coroutine[Any, Any, T], code: int = 2) -> T:
    """Run ``coro`` on uvloop's event loop; a refusal ends the command with its reason and
    exit status ``code``, an unreachable database with status 1."""
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except BotArenaError as exc:
        fail(exc.message, code=code)
    except OSError as exc:
        fail(f"cannot reach the database: {exc}", code=1)


if __name__ == "__main__":
    main()
