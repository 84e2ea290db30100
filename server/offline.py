"""Keeping every dependency offline: the environment that turns telemetry and hub
downloads off, applied to this process before CrewAI (or anything it imports) loads,
and given to every child process BotArena starts."""

from __future__ import annotations

import os

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


def apply() -> None:
    """Switch telemetry and downloads off in this process (explicit settings win)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def child_env() -> dict[str, str]:
    """This process's environment with everything offline, for a child process."""
    return {**os.environ, **OFFLINE_ENV}
