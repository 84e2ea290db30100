"""A smoke test of the console in a real terminal: ``botarena tui`` runs in tmux against
what ``make up`` starts (embedded PostgreSQL, the hub, llama.cpp, the agents); keys go in
with send-keys and the screen is read back with capture-pane: the rooms, the agents, a
post, and a review approved after its confirmation."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from botarena.arenas.names import ProposalKind
from botarena.server.client import HubClient
from botarena.server.protocol import Message
from tests.harness import eventually
from tests.services import ROOT
from tests.test_up import botarena_up

pytestmark = pytest.mark.e2e


def _shown(screen: str) -> int | None:
    """The proposal the Proposals tab's detail shows."""
    found = re.search(r"^#(\d+) ", screen, re.MULTILINE)
    return int(found[1]) if found else None


def _listed(screen: str) -> list[int]:
    """The proposals the Proposals tab lists, in its order."""
    return [int(n) for n in re.findall(r"^ ?(\d+) +pending ", screen, re.MULTILINE)]


class Tmux:
    """One tmux server of its own (``-L``), so nothing else on the machine is touched."""

    def __init__(self, name: str) -> None:
        self.socket = name

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20
        )

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console").stdout

    async def eventually(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """:func:`tests.harness.eventually`; a timeout tells what the console showed."""
        try:
            await eventually(predicate, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the console showed:\n{self.screen()}") from None

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "console", *keys)

    def alive(self) -> bool:
        return self.run("has-session", "-t", "console").returncode == 0


async def test_the_console_in_tmux_against_make_up(tmp_path: Path) -> None:
    tmux = Tmux(f"botarena-test-{os.getpid()}")
    async with botarena_up(tmp_path / "var", quiet_seconds="3") as up:
        env = {"BOTARENA_HUB_URL": up.hub_url, "BOTARENA_TOKEN": up.token, "TERM": "xterm-256color"}
        command = " ".join(
            [
                *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
                sys.executable,
                "-P",
                "-m",
                "botarena.server.cli",
                "tui",
            ]
        )
        started = tmux.run(
            "new-session", "-d", "-s", "console", "-x", "150", "-y", "40", "-c", str(ROOT), command
        )
        assert started.returncode == 0, started.stderr
        tmux.run("resize-window", "-t", "console", "-x", "150", "-y", "40")
        try:
            await tmux.eventually(
                lambda: "● connected" in tmux.screen(), 60, "the console connects"
            )
            await tmux.eventually(
                lambda: "moderator (moderator)" in tmux.screen(), 30, "who we are"
            )
            await tmux.eventually(
                lambda: all(a in tmux.screen() for a in ("compiler", "education", "external")),
                30,
                "the arenas listed",
            )
            await tmux.eventually(
                lambda: any(f" {a} " in tmux.screen() for a in ("ada", "linus")),
                180,
                "an agent's message in the compiler room",
            )

            tmux.keys("2")
            await tmux.eventually(lambda: "reputation" in tmux.screen(), 10, "the agents tab")
            await tmux.eventually(
                lambda: all(a in tmux.screen() for a in ("ada", "grace", "maria", "sage")),
                30,
                "every agent listed",
            )

            inbox: list[Message] = []
            watcher = HubClient(up.hub_url, up.token, on_message=inbox.append)
            await watcher.connect()
            await watcher.join("compiler")
            tmux.keys("1")
            tmux.keys("c")
            await asyncio.sleep(0.3)
            tmux.keys("-l", "hello from the console")
            tmux.keys("Enter")
            await eventually(
                lambda: any(m.text == "hello from the console" for m in inbox),
                15,
                "the moderator's post reaches the room",
            )
            assert [m.author for m in inbox if m.text == "hello from the console"] == ["moderator"]
            await tmux.eventually(
                lambda: "posted in compiler" in tmux.screen(), 10, "the flash line"
            )

            # a review: an agent proposes, the moderator approves after confirming
            tokens = json.loads((tmp_path / "var" / "agent-tokens.json").read_text())
            ada = HubClient(up.hub_url, tokens["ada"])
            await ada.connect()
            proposal = await ada.propose(
                "compiler", ProposalKind.DOCUMENT, "docs/tmux.md", "Tmux notes", "Split panes.\n"
            )
            await ada.close()
            tmux.keys("Escape")
            await asyncio.sleep(0.5)
            tmux.keys("3")
            await tmux.eventually(
                lambda: "docs/tmux.md" in tmux.screen(), 20, "the proposal listed"
            )
            # the newest first, and the agents propose too: from the top, down to ada's
            tmux.keys("Home")
            await tmux.eventually(
                lambda: _shown(tmux.screen()) == next(iter(_listed(tmux.screen())), 0),
                10,
                "the top shown",
            )
            while (shown := _shown(tmux.screen())) != proposal.id:
                assert shown is not None and shown > proposal.id, shown
                tmux.keys("Down")
                await tmux.eventually(
                    lambda s=shown: (_shown(tmux.screen()) or s) < s, 10, "the next one shown"
                )
            assert "Tmux notes" in tmux.screen()
            tmux.keys("a")
            await tmux.eventually(
                lambda: f"Approve proposal #{proposal.id}?" in tmux.screen(), 10, "asked first"
            )
            assert "docs/tmux.md" in tmux.screen()
            tmux.keys("y")
            await tmux.eventually(
                lambda: "merged as docs/tmux.md v1" in tmux.screen(), 15, "the approval told"
            )
            canon = await watcher.canon("docs/tmux.md")
            assert (canon.version, canon.content) == (1, "Split panes.\n")
            await watcher.close()

            tmux.keys("Escape")
            await asyncio.sleep(0.5)  # or the terminal reads Escape then q as Alt+q
            tmux.keys("q")
            await eventually(lambda: not tmux.alive(), 15, "q quits the console")
        finally:
            tmux.run("kill-server")
