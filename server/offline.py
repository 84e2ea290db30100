"""Keeping every dependency offline and every child process clean: the environment that
turns telemetry and hub downloads off, applied to this process before CrewAI (or anything
it imports) loads, and the environment every child process BotArena starts receives.

A child never inherits this process's environment whole: servers read settings from
variables (PostgreSQL reads ``PGPORT`` and ``PGDATA``, uvicorn reads
``FORWARDED_ALLOW_IPS``, many servers ``HOST`` and ``PORT``), so a stray variable in an
operator's shell could move a server onto another address. A child
gets an allow-list (the system's basics and locale, see :data:`BASE_ENV`), the offline
variables, and what its caller names explicitly. A Python child can also be bound to its
parent's life (:func:`bound_python`): it ends when the process that started it dies, even
by SIGKILL, instead of living on as an orphan.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

OFFLINE_ENV: dict[str, str] = {
    "CREWAI_DISABLE_TELEMETRY": "true",  # CrewAI's OTLP telemetry to its cloud
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",  # CrewAI's trace upload
    "OTEL_SDK_DISABLED": "true",  # any OpenTelemetry exporter
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime's event host
    "ANONYMIZED_TELEMETRY": "False",  # ChromaDB's posthog
    "HF_HUB_OFFLINE": "1",  # no Hugging Face downloads
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}

BASE_ENV: frozenset[str] = frozenset(
    {
        "PATH",  # finding programs
        "LD_LIBRARY_PATH",  # a Python or library installed outside the system's paths
        "HOME",  # where libraries keep per-user files
        "USER",
        "LOGNAME",
        "TMPDIR",
        "TZ",
        "LANG",
        "LANGUAGE",
    }
)
"""What every child receives from this process's environment, besides ``LC_*``."""

PYTHON_ENV: frozenset[str] = frozenset(
    {
        "PYTHONPATH",  # a Python child imports what this process imports
        "XDG_CACHE_HOME",  # where Python libraries keep their files
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
    }
)
"""What a Python child (the worker, the embedded llama.cpp server) receives besides."""


def apply() -> None:
    """Switch telemetry and downloads off in this process (explicit settings win)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def _allowed(name: str, allowed: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    return name in allowed or name.startswith(("LC_", *prefixes))


def child_env(
    *,
    python: bool = False,
    keep: Iterable[str] = (),
    keep_prefixes: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a child process: from this process's environment only the
    allow-list (:data:`BASE_ENV`, ``LC_*``; :data:`PYTHON_ENV` too when ``python``; the
    names in ``keep`` and those starting with one of ``keep_prefixes``), then the offline
    variables, then ``extra``."""
    allowed = BASE_ENV | (PYTHON_ENV if python else frozenset()) | frozenset(keep)
    prefixes = tuple(keep_prefixes)
    env = {k: v for k, v in os.environ.items() if _allowed(k, allowed, prefixes)}
    env.update(OFFLINE_ENV)
    env.update(extra or {})
    return env


_BOUND = """\
import ctypes, os, runpy, signal, sys
prctl = getattr(ctypes.CDLL(None), "prctl", None)
if prctl is not None:
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
if os.getppid() != int(sys.argv[1]):
    sys.exit("the process that started this one is gone")
module = sys.argv[2]
del sys.argv[1:3]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def bound_python(module: str, *args: str) -> list[str]:
    """The command line running ``python -m module args...`` in this interpreter, ended
    with SIGTERM when this process dies (Linux's parent-death signal; elsewhere unbound).
    Start it from the thread that lives as long as the process (the event loop's)."""
    return [sys.executable, "-P", "-c", _BOUND, str(os.getpid()), module, *args]
