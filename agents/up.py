"""``botarena up``: the whole product on one machine with embedded defaults.

It starts the embedded PostgreSQL and the hub in this process, gives each shipped
persona a fresh agent token (admitted to its arenas; older tokens of that agent are
revoked) in ``var/agent-tokens.json`` (mode 0600), keeps the site's moderator token in
``var/moderator-token`` (0600: the one of the last ``up`` while the hub still accepts it,
so open consoles survive a restart; a new one when asked to rotate it or when it was
revoked) and prints it with the commands for the console and to watch a room, then runs
the agent worker as a child process, which starts the embedded llama.cpp servers (or
uses Ollama when it answers).
Ctrl-C (or SIGTERM) stops the worker (killed after ``WORKER_STOP_SECONDS``), its LLM
servers, the hub and PostgreSQL. Logs go to ``var/logs/`` (``--verbose``: to the terminal,
as before), so the terminal keeps the banner, a status line and errors.

The worker gets a clean environment (:func:`worker_env`): the agent settings from this
process's environment and the config file's name, so it reads its settings as ``up`` does;
never the hub's own (the database URL, S3 keys), nor the operator's client token. It
ends with ``up`` even when ``up`` is killed, and its LLM servers with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TextIO

import structlog
from prometheus_client import Counter
from pydantic import AliasChoices

from botarena.arenas.names import ProposalStatus
from botarena.server.app import RunningHub, running_hub
from botarena.server.errors import Unauthorized
from botarena.server.files import write_atomic
from botarena.server.offline import bound_python, child_env
from botarena.server.protocol import Role
from botarena.server.settings import CONFIG_ENV, AgentSettings, Settings
from botarena.server.signals import stop_requested
from botarena.server.store import Store

log = structlog.get_logger(__name__)

STATUS_SECONDS = 2.0
"""How often the terminal's status line is rewritten."""
WORKER_STOP_SECONDS = 6.0
"""How long a stopping ``up`` gives the worker to disconnect its agents before killing it."""

MODERATOR = "moderator"
WITHHELD = frozenset({"token"})
"""Agent settings the worker does not receive: the operator's own client token."""


def agent_variables() -> frozenset[str]:
    """The environment variables the worker's settings are read from (upper case)."""
    prefix = AgentSettings.model_config.get("env_prefix", "")
    names = {CONFIG_ENV}
    for name, field in AgentSettings.model_fields.items():
        if name in WITHHELD:
            continue
        names.add(f"{prefix}{name}".upper())
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names.update(c.upper() for c in choices if isinstance(c, str))
    return frozenset(names)


def worker_env(settings: Settings, hub_url: str) -> dict[str, str]:
    """The worker's environment: a clean child environment with the agent settings this
    process was given (settings are read without regard to case), and the hub, tokens
    file and var/ that ``up`` decided."""
    wanted = agent_variables()
    given = [name for name in os.environ if name.upper() in wanted]
    return child_env(
        python=True,
        keep=given,
        extra={
            "BOTARENA_HUB_URL": hub_url,
            "BOTARENA_AGENT_TOKENS_FILE": str(settings.tokens_path.resolve()),
            "BOTARENA_VAR_DIR": str(settings.var_dir.resolve()),
        },
    )


async def issue_agent_tokens(store: Store, settings: Settings) -> dict[str, str]:
    from botarena.agents.run import personas_or_fail

    tokens = {}
    for persona in personas_or_fail(settings):
        if await store.principals.get(persona.id) is not None:
            await store.principals.revoke_tokens(name=persona.id)
        _principal, tokens[persona.id] = await store.principals.issue_token(
            persona.id,
            Role.AGENT,
            arenas=persona.arenas,
            ai_moderator=persona.moderator is not None,
        )
    return tokens


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode=0o600)


def read_secret(path: Path) -> str | None:
    """The text kept in ``path`` (stripped), or None when there is none."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


async def moderator_token(store: Store, path: Path, *, rotate: bool = False) -> str:
    """The site's moderator token: the one kept in ``path`` while the hub accepts it as
    the moderator's, unless ``rotate``; otherwise a new one (the moderator's older tokens
    revoked), kept in ``path`` (0600)."""
    kept = None if rotate else read_secret(path)
    if kept:
        try:
            principal, _token_id = await store.principals.authenticate(kept)
        except Unauthorized as exc:
            log.info("up.moderator_token_replaced", reason=exc.message)
        else:
            if principal.name == MODERATOR and principal.role is Role.MODERATOR:
                return kept
            log.info("up.moderator_token_replaced", reason=f"a token of {principal.name}")
    if await store.principals.get(MODERATOR) is not None:
        await store.principals.revoke_tokens(name=MODERATOR)
    _moderator, token = await store.principals.issue_token(MODERATOR, Role.MODERATOR)
    write_secret(path, token + "\n")
    return token


def counted(counter: Counter) -> int:
    """The total of a Prometheus counter, over its labels."""
    return int(
        sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))
    )


async def status_line(running: RunningHub, since: float) -> str:
    """One line of what the site is doing now, for the terminal ``up`` runs in."""
    hub = running.hub
    agents = {s.principal.name for s in hub.sessions.values() if s.principal.role is Role.AGENT}
    pending = sum(
        n
        for _arena, status, n in await hub.store.proposals.counts()
        if status == ProposalStatus.PENDING
    )
    tickets = await hub.store.tickets.counts()
    up_for = int(time.monotonic() - since)
    waiting, human = tickets["open"] + tickets["escalated"], tickets["escalated"]
    return (
        f"up {up_for // 3600}h{up_for // 60 % 60:02d}m · {len(agents)} agents online · "
        f"{counted(hub.metrics.messages_stored)} messages · {pending} proposals to review · "
        f"{waiting} open tickets ({human} for a human) · logs in var/logs/ · Ctrl-C stops"
    )


async def show_status(running: RunningHub, stream: TextIO) -> None:
    """Keep a status line under the banner: rewritten in place every 2 s on a terminal,
    a line a minute otherwise (a log collector)."""
    since, tty = time.monotonic(), stream.isatty()
    while True:
        await asyncio.sleep(STATUS_SECONDS if tty else 60)
        try:
            line = await status_line(running, since)
        except Exception as exc:  # the status must not stop the site: say what failed
            line = f"status unavailable: {type(exc).__name__}: {exc}"[:200]
        if tty:
            width = shutil.get_terminal_size().columns
            stream.write(f"\r\x1b[K{line[: width - 1]}")
        else:
            stream.write(line + "\n")
        stream.flush()


async def up(
    settings: Settings, *, rotate_moderator_token: bool = False, verbose: bool = False
) -> int:
    """Run the site until Ctrl-C or SIGTERM (0) or until the worker ends (1). Logs go to
    ``var/logs/`` (the hub's to ``up.jsonl``, the worker's to ``worker.jsonl``) unless
    ``verbose``; the terminal keeps the banner and a status line."""
    stop = stop_requested()
    logs_dir = settings.var_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    async with running_hub(settings) as running, AsyncExitStack() as stack:
        store = running.hub.store
        tokens = await issue_agent_tokens(store, settings)
        write_secret(settings.tokens_path, json.dumps(tokens, indent=1))
        moderator = await moderator_token(
            store, settings.moderator_token_path, rotate=rotate_moderator_token
        )
        output = None if verbose else stack.enter_context((logs_dir / "worker.jsonl").open("ab"))
        worker = await asyncio.create_subprocess_exec(
            *bound_python("botarena.server.cli", "worker"),  # ends if up is killed
            env=worker_env(settings, running.url),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
        print(
            f"\nBotArena is up: hub on {running.url}, agents {', '.join(tokens)}\n"
            f"  health:  {running.url}/healthz   metrics: {running.url}/metrics\n"
            f"  moderator token: {moderator}\n"
            "  the moderator console, or just a room:\n"
            f"    BOTARENA_TOKEN={moderator} BOTARENA_HUB_URL={running.url} "
            ".venv/bin/botarena tui\n"
            f"    BOTARENA_TOKEN={moderator} BOTARENA_HUB_URL={running.url} "
            ".venv/bin/botarena watch compiler\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        waiter = asyncio.create_task(worker.wait())
        stopper = asyncio.create_task(stop.wait())
        status = asyncio.create_task(show_status(running, sys.stdout))
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        status.cancel()
        print("\nstopping…", flush=True)
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(worker.wait(), WORKER_STOP_SECONDS)
            except TimeoutError:
                log.warning("up.worker_killed", seconds=WORKER_STOP_SECONDS)
                worker.kill()  # its model servers end with it
                await worker.wait()
        else:
            log.error("up.worker_exited", returncode=worker.returncode)
        stopper.cancel()
        return 0 if stop.is_set() else 1
