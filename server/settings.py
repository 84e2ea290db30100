"""BotArena's settings: the one place every part reads its configuration from.

Values come, highest priority first, from environment variables prefixed ``BOTARENA_``
(for example ``BOTARENA_DATABASE_URL``), then from an optional TOML file named by
``BOTARENA_CONFIG`` (default ``botarena.toml`` in the working directory when it exists),
then from the defaults below, which are the embedded single-machine defaults that
``make up`` runs on. Validation is pydantic-settings': a bad value stops start-up with
the variable's name and the reason.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def shipped(package: str, *parts: str) -> Path:
    """A folder of package data installed with BotArena (personas, packs...), found
    through the installed package, never relative to the working directory."""
    return Path(str(resources.files(package).joinpath(*parts)))


CONFIG_ENV = "BOTARENA_CONFIG"
"""The variable naming the optional TOML settings file."""


def _config_file() -> Path | None:
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"BOTARENA_CONFIG names {path}, which is not a file")
        return path
    default = Path("botarena.toml")
    return default if default.is_file() else None


class Settings(BaseSettings):
    """Every tunable of BotArena; see the README's settings table for what each means."""

    model_config = SettingsConfigDict(env_prefix="BOTARENA_", extra="forbid", populate_by_name=True)

    var_dir: Path = Field(Path("var"), description="where embedded data lives")
    host: str = Field("127.0.0.1", description="address the hub listens on")
    port: int = Field(8765, ge=0, le=65535, description="port the hub listens on (0: any)")
    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset: an embedded PostgreSQL under var/"
    )
    redis_url: str | None = Field(
        None, description="Redis URL; set: hub processes share rooms through Redis"
    )
    hub_url: str = Field("http://127.0.0.1:8765", description="where clients find the hub")
    token: str | None = Field(None, description="the token clients (console, watch) use")

    max_message_chars: int = Field(4000, ge=1, le=1_000_000)
    max_payload_bytes: int = Field(64 * 1024, ge=1024, description="largest Socket.IO frame")
    history_on_join: int = Field(50, ge=0, le=1000, description="messages sent on join")
    history_page: int = Field(500, ge=1, le=5000, description="most messages per reply")
    rate_per_second: float = Field(10.0, gt=0, description="events a principal may send /s")
    rate_burst: int = Field(40, ge=1, description="events a principal may send at once")
    max_mute_seconds: int = Field(30 * 24 * 3600, ge=1)
    db_pool_size: int = Field(10, ge=1, le=200)
    archive_every_seconds: float = Field(
        3600.0, ge=0, description="how often the hub archives yesterday's transcripts; 0: never"
    )
    audit_check_seconds: float = Field(
        300.0, gt=0, description="how often the hub verifies the audit chain (for /metrics)"
    )

    llm_backend: Literal["auto", "ollama", "embedded", "openai"] = Field(
        "auto", description="auto: Ollama when it answers, else the embedded llama.cpp"
    )
    ollama_host: str = Field(
        "http://127.0.0.1:11434",
        validation_alias=AliasChoices("BOTARENA_OLLAMA_HOST", "OLLAMA_HOST"),
        description="Ollama's address (OLLAMA_HOST is read too)",
    )
    llm_url: str | None = Field(None, description="an OpenAI-compatible /v1 URL (openai)")
    llm_model: str = Field("smollm2", description="model used when a persona names none")
    llm_slots: int = Field(2, ge=1, le=16, description="embedded llama.cpp instances")
    llm_threads: int = Field(1, ge=1, le=64, description="threads per embedded instance")
    llm_context: int = Field(2048, ge=256, le=131072, description="embedded context size")
    llm_timeout: float = Field(60.0, gt=0, description="seconds an LLM call may take")
    llm_max_tokens: int = Field(120, ge=8, le=8192, description="longest reply in tokens")
    llm_tools: bool = Field(
        False, description="agents get the propose tool (models with function calling)"
    )
    llm_port: int = Field(8790, ge=0, le=65535, description="first embedded instance's port")
    personas_dir: Path = Field(
        default_factory=lambda: shipped("botarena.agents", "personas"),
        description="persona YAML files; default: the personas shipped with BotArena",
    )
    agent_tokens_file: Path | None = Field(
        None, description="JSON {persona id: token} for the worker; default var/agent-tokens.json"
    )
    quiet_seconds: float = Field(20.0, gt=0, description="silence before agents take initiative")
    chroma_url: str | None = Field(None, description="ChromaDB server; unset: embedded var/chroma")
    knowledge_pack: Path | None = Field(
        default_factory=lambda: shipped("botarena.memory", "packs", "demo"),
        description="pack indexed when the worker starts; default: the demo pack shipped",
    )
    memory_weight_recency: float = Field(1.0, ge=0, description="recall: weight of recency")
    memory_weight_importance: float = Field(1.0, ge=0, description="recall: of importance")
    memory_weight_relevance: float = Field(1.0, ge=0, description="recall: of relevance")
    memory_decay_per_hour: float = Field(0.995, gt=0, le=1, description="recency decay")
    memory_reflection_threshold: float = Field(
        40.0, gt=0, description="importance that adds up to a reflection"
    )
    memory_max_per_agent: int = Field(5000, ge=50, description="memories kept per agent")

    external_top_fraction: float = Field(
        0.10, gt=0, le=1, description="share of help-desk agents, by reputation, in external"
    )

    max_attachment_bytes: int = Field(
        32 * 1024, ge=1, le=16 * 1024 * 1024, description="largest proposal attachment"
    )
    s3_url: str | None = Field(
        None, description="S3 server for artifacts (MinIO, ...); unset: a folder under var/"
    )
    s3_access_key: str = Field("", description="S3 access key")
    s3_secret_key: str = Field("", description="S3 secret key")
    s3_bucket: str = Field("botarena", min_length=3, max_length=63, description="S3 bucket")

    gnupg_home: Path | None = Field(None, description="the site's GnuPG home; default var/gnupg")
    site_key: str | None = Field(None, description="fingerprint of the site's signing key")
    trust_dir: Path | None = Field(
        None, description="the keys trusted for bundles; default var/trust"
    )
    bundle_threshold: int = Field(
        1, ge=1, le=16, description="good signatures by distinct trusted keys a bundle needs"
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    @field_validator(
        "database_url", "redis_url", "token", "llm_url", "chroma_url", "site_key", "s3_url"
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def pgdata(self) -> Path:
        return self.var_dir / "pgdata"

    @property
    def gnupg_dir(self) -> Path:
        return self.gnupg_home or self.var_dir / "gnupg"

    @property
    def trust_directory(self) -> Path:
        return self.trust_dir or self.var_dir / "trust"

    @property
    def chroma_dir(self) -> Path:
        return self.var_dir / "chroma"

    @property
    def models_dir(self) -> Path:
        return self.var_dir / "models"

    @property
    def tokens_path(self) -> Path:
        return self.agent_tokens_file or self.var_dir / "agent-tokens.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
