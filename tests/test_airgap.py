"""The product runs with no network but loopback, and never tries to leave it.

The hub (with its embedded PostgreSQL), the embedded llama.cpp server and two CrewAI
agents with memory (embedded ChromaDB, the offline embedder) run inside a fresh
network namespace (``unshare -n``, as root) whose only interface is loopback. Every
Python process of the run records each connection, send and name lookup it attempts
(an audit hook loaded through ``sitecustomize``); the test requires that the agents
talked and that no attempt named anything but loopback or a Unix socket.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import ROOT

pytestmark = pytest.mark.e2e

AUDIT_DIR = Path(__file__).resolve().parent / "airgap"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "ip6-localhost", "", None}


def is_loopback(target: object) -> bool:
    if isinstance(target, list) and target:
        host = str(target[0])
    elif isinstance(target, str):
        if target.startswith("/") or target.startswith("\0"):
            return True  # a Unix socket
        host = target
    else:
        return target in LOOPBACK_NAMES
    return host in LOOPBACK_NAMES or host.startswith("127.") or host == "::ffff:127.0.0.1"


def test_the_product_runs_air_gapped_and_reaches_nothing_outside(
    tmp_path: Path, demo_gguf: Path
) -> None:
    assert os.geteuid() == 0, "unshare -n needs root (CI and these machines run as root)"
    assert shutil.which("unshare"), "unshare (util-linux) is needed for the air-gap test"
    audit = tmp_path / "net-audit.jsonl"
    hook = tmp_path / "hook"  # the audit, with the file it writes named beside it
    hook.mkdir()
    shutil.copy(AUDIT_DIR / "sitecustomize.py", hook)
    (hook / "net-audit.path").write_text(str(audit))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTARENA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(hook), str(ROOT)])
    run = subprocess.run(
        ["unshare", "-n", "--", sys.executable, str(AUDIT_DIR / "run_product.py"), str(demo_gguf)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["agent_messages"] >= 2 and {"ada", "linus"} <= set(summary["authors"])
    assert summary["memory_degraded"] is None, "memory worked offline"

    events = [json.loads(line) for line in audit.read_text().splitlines()]
    started = [e for e in events if e["event"] == "audit.start"]
    assert any("botarena.agents.llama_server" in e["argv"] for e in started), started  # model
    assert any(e["event"] == "socket.connect" for e in events), "the audit saw connections"
    outside = [e for e in events if e["event"] != "audit.start" and not is_loopback(e["target"])]
    assert outside == [], outside[:20]


def test_the_audit_would_catch_an_escape(tmp_path: Path) -> None:
    """The same audit, on a process that tries to reach a public address."""
    audit = tmp_path / "net-audit.jsonl"
    env = {**os.environ, "PYTHONPATH": str(AUDIT_DIR), "BOTARENA_NET_AUDIT": str(audit)}
    code = (
        "import socket; s = socket.socket(); s.settimeout(0.2)\n"
        "try: s.connect(('192.0.2.1', 443))\nexcept OSError: pass"
    )
    subprocess.run(
        ["unshare", "-n", "--", sys.executable, "-c", code], env=env, timeout=60, check=True
    )
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    escapes = [
        e["target"] for e in events if e["event"] != "audit.start" and not is_loopback(e["target"])
    ]
    assert escapes == [["192.0.2.1", 443]]
