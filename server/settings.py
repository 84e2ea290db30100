"""BotArena's settings, one class per component on one base, so that each part receives
only what it uses: the hub (:class:`HubSettings`), the agents (:class:`AgentSettings`),
memory (:class:`MemorySettings`), bundles (:class:`BundleSettings`), the object store
(:class:`ObjectStoreSettings`), clients (:class:`ClientSettings`) and the database
(:class:`DatabaseSettings`). :class:`Settings` is all of them, for ``botarena up``, which
runs the hub and the worker together.

Values come, highest priority first, from environment variables prefixed ``BOTARENA_``
(for example ``BOTARENA_DATABASE_URL``; every component spells a setting the same way),
then from an optional TOML file named by ``BOTARENA_CONFIG`` (default ``botarena.toml``
in the working directory when it exists; flat keys, each component reading its own and
a key no component knows refused), then from the defaults below, which are the embedded
single-machine defaults that ``make up`` runs on. Validation is pydantic-settings': a
bad value stops start-up with the variable's name and the reason.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from botarena.server.protocol import WORKER_PATTERN

CONFIG_ENV = "BOTARENA_CONFIG"
"""The variable naming the optional TOML settings file."""


def shipped(package: str, *parts: str) -> Path:
    """A folder of package data installed with BotArena (personas, packs...), found
    through the installed package, never relative to the working directory."""
    return Path(str(resources.files(package).joinpath(*parts)))


def _blank_is_unset(value: object) -> object:
    return value or None


OptionalText = Annotated[str | None, BeforeValidator(_blank_is_unset)]
"""A text setting where an empty value (``BOTARENA_X=``) means unset."""

OptionalPath = Annotated[Path | None, BeforeValidator(_blank_is_unset)]
"""A path setting where an empty value means none (not ``.``, the current folder)."""


def _config_file() -> Path | None:
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV} names {path}, which is not a file")
        return path
    default = Path("botarena.toml")
    return default if default.is_file() else None


def _keys(cls: type[BaseSettings]) -> set[str]:
    """The keys a settings class takes: its fields' names and their aliases (such as
    ``OLLAMA_HOST``)."""
    keys = set(cls.model_fields)
    for field in cls.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            keys.update(a for a in alias.choices if isinstance(a, str))
        elif isinstance(alias, str):
            keys.add(alias)
    return keys


class _OwnKeys(TomlConfigSettingsSource):
    """The config file as one component reads it: its own keys; a key that no component
    knows is refused, so a typo does not pass unseen."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path) -> None:
        self._own = _keys(settings_cls)
        super().__init__(settings_cls, toml_file=toml_file)

    def _read_files(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._read_files(*args, **kwargs)
        unknown = set(data) - _keys(Settings)
        if unknown:
            raise ValueError(f"unknown settings in the config file: {', '.join(sorted(unknown))}")
        return {key: value for key, value in data.items() if key in self._own}


class CommonSettings(BaseSettings):
    """What every component reads: where embedded data lives and how it logs."""

    model_config = SettingsConfigDict(env_prefix="BOTARENA_", extra="forbid", populate_by_name=True)

    var_dir: Path = Field(Path("var"), description="where embedded data lives")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    @property
    def moderator_token_path(self) -> Path:
        """Where ``botarena up`` keeps the site's moderator token (mode 0600)."""
        return self.var_dir / "moderator-token"

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
            sources.append(_OwnKeys(settings_cls, path))
        return tuple(sources)

    def view(self, cls: type[S]) -> S:
        """These settings as component ``cls`` reads them: the values both know, taken
        from here; what only ``cls`` knows, from the environment, file and defaults."""
        if isinstance(self, cls):
            return self
        mine = type(self).model_fields
        return cls(**{name: getattr(self, name) for name in cls.model_fields if name in mine})


S = TypeVar("S", bound=CommonSettings)


class DatabaseSettings(CommonSettings):
    """The hub's PostgreSQL (the hub, its commands, backups, bundles' audit records)."""

    database_url: OptionalText = Field(
        None, description="PostgreSQL URL; unset: an embedded PostgreSQL under var/"
    )
    db_pool_size: int = Field(10, ge=1, le=200)
    db_settle_seconds: float = Field(
        5.0, gt=0, le=60, description="how long a failed write waits to learn if it was stored"
    )

    @property
    def pgdata(self) -> Path:
        return self.var_dir / "pgdata"


class ClientSettings(CommonSettings):
    """How a client (the console, ``watch``, the worker) reaches the hub."""

    hub_url: str = Field("http://127.0.0.1:8765", description="where clients find the hub")
    token: OptionalText = Field(None, description="the token clients (console, watch) use")


class ObjectStoreSettings(CommonSettings):
    """Where artifacts live: a folder under var/, or an S3 server."""

    s3_url: OptionalText = Field(
        None, description="S3 server for artifacts (MinIO, ...); unset: a folder under var/"
    )
    s3_access_key: str = Field("", description="S3 access key")
    s3_secret_key: str = Field("", description="S3 secret key")
    s3_bucket: str = Field("botarena", min_length=3, max_length=63, description="S3 bucket")


class SigningSettings(CommonSettings):
    """The site's own GnuPG key, which signs audit checkpoints."""

    gnupg_home: Path | None = Field(None, description="the site's GnuPG home; default var/gnupg")
    site_key: OptionalText = Field(None, description="fingerprint of the site's signing key")

    @property
    def gnupg_dir(self) -> Path:
        return self.gnupg_home or self.var_dir / "gnupg"


class HubSettings(DatabaseSettings, ObjectStoreSettings, SigningSettings):
    """The hub: where it listens, its limits, its background jobs."""

    host: str = Field("127.0.0.1", description="address the hub listens on")
    port: int = Field(8765, ge=0, le=65535, description="port the hub listens on (0: any)")
    redis_url: OptionalText = Field(
        None, description="Redis URL; set: hub processes share rooms through Redis"
    )
    max_message_chars: int = Field(4000, ge=1, le=1_000_000)
    max_payload_bytes: int = Field(64 * 1024, ge=1024, description="largest Socket.IO frame")
    history_on_join: int = Field(50, ge=0, le=1000, description="messages sent on join")
    history_page: int = Field(500, ge=1, le=5000, description="most messages per reply")
    rate_per_second: float = Field(10.0, gt=0, description="events a principal may send /s")
    rate_burst: int = Field(40, ge=1, description="events a principal may send at once")
    refused_connects_per_second: float = Field(
        1.0, gt=0, description="refused connects an address may make /s"
    )
    refused_connects_burst: int = Field(
        20, ge=1, description="refused connects an address may make at once"
    )
    max_mute_seconds: int = Field(30 * 24 * 3600, ge=1)
    ai_moderator_max_mute_seconds: int = Field(
        600, ge=1, description="the longest mute an AI moderator may give an agent"
    )
    screening: bool = Field(
        True, description="run the content filter on messages, proposals and ticket answers"
    )
    screening_dir: Path | None = Field(
        None, description="where the filter's compiled model is kept; default var/screening"
    )
    archive_every_seconds: float = Field(
        3600.0, ge=0, description="how often the hub archives yesterday's transcripts; 0: never"
    )
    audit_check_seconds: float = Field(
        300.0, gt=0, description="how often the hub verifies the audit chain (for /metrics)"
    )
    external_top_fraction: float = Field(
        0.10, gt=0, le=1, description="share of help-desk agents, by reputation, in external"
    )
    external_min_seats: int = Field(
        3, ge=1, description="fewest help-desk agents external seats (all, when fewer)"
    )
    ticket_alert_seconds: float = Field(
        600.0,
        ge=0,
        description="a ticket unanswered this long is announced to moderators; 0: never",
    )
    external_check_seconds: float = Field(
        10.0, gt=0, description="how often agents that lost their seat leave external"
    )
    lease_seconds: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="an agent's lease to its worker lasts this long unrenewed (the hub renews it)",
    )
    lease_waiting_seconds: float = Field(
        10.0, gt=0, description="a worker refused an agent counts as live this long"
    )
    max_attachment_bytes: int = Field(
        32 * 1024, ge=1, le=16 * 1024 * 1024, description="largest proposal attachment"
    )
    http_header_timeout: float = Field(
        15.0, gt=0, description="seconds to send a request's headers (from connect or last answer)"
    )
    http_body_timeout: float = Field(30.0, gt=0, description="seconds to send a request's body")
    handshakes_per_second: float = Field(
        50.0, gt=0, description="new Engine.IO connections an address may open /s"
    )
    handshakes_burst: int = Field(
        1000, ge=1, description="new Engine.IO connections an address may open at once"
    )
    max_unauthenticated_connections: int = Field(
        1024, ge=1, description="an address's connections that have not authenticated yet"
    )

    @property
    def screening_cache(self) -> Path:
        return self.screening_dir or self.var_dir / "screening"


class MemorySettings(CommonSettings):
    """ChromaDB, the knowledge pack and the recall recipe."""

    chroma_url: OptionalText = Field(
        None, description="ChromaDB server; unset: embedded var/chroma"
    )
    knowledge_pack: OptionalPath = Field(
        default_factory=lambda: shipped("botarena.memory", "packs", "demo"),
        description="pack indexed when the worker starts (empty: none); default: the demo pack",
    )
    memory_weight_recency: float = Field(1.0, ge=0, description="recall: weight of recency")
    memory_weight_importance: float = Field(1.0, ge=0, description="recall: of importance")
    memory_weight_relevance: float = Field(1.0, ge=0, description="recall: of relevance")
    memory_decay_per_hour: float = Field(0.995, gt=0, le=1, description="recency decay")
    memory_reflection_threshold: float = Field(
        40.0, gt=0, description="importance that adds up to a reflection"
    )
    memory_max_per_agent: int = Field(5000, ge=50, description="memories kept per agent")

    @property
    def chroma_dir(self) -> Path:
        return self.var_dir / "chroma"


class PoolBackend(BaseModel):
    """One backend of the LLM pool (``llm_pool``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="how it is shown")
    kind: Literal["ollama", "openai", "embedded"]
    url: OptionalText = Field(
        None, description="Ollama's address or an OpenAI-compatible /v1 URL (not embedded)"
    )
    capacity: int | None = Field(
        None,
        ge=1,
        le=256,
        description="requests it answers at once; default 1 (embedded: llm_slots)",
    )
    models: list[str] | None = Field(None, description="models to send it; default: those it lists")

    @model_validator(mode="after")
    def _url_when_remote(self) -> PoolBackend:
        if self.kind != "embedded" and not self.url:
            raise ValueError(f"the {self.kind} backend {self.name!r} needs a url")
        if self.kind == "embedded" and self.url:
            raise ValueError("an embedded backend is started by the worker: it takes no url")
        return self


class LLMSettings(CommonSettings):
    """Which LLM backend answers, and the embedded llama.cpp's shape."""

    llm_backend: Literal["auto", "ollama", "embedded", "openai"] = Field(
        "auto", description="auto: Ollama when it answers, else the embedded llama.cpp"
    )
    ollama_host: str = Field(
        "http://127.0.0.1:11434",
        validation_alias=AliasChoices("BOTARENA_OLLAMA_HOST", "OLLAMA_HOST"),
        description="Ollama's address (OLLAMA_HOST is read too)",
    )
    llm_url: OptionalText = Field(None, description="an OpenAI-compatible /v1 URL (openai)")
    llm_model: str = Field("smollm2", description="model used when a persona names none")
    llm_slots: int = Field(
        4, ge=1, le=16, description="requests the embedded llama.cpp server decodes at once"
    )
    # One thread: on a loaded machine (hub, worker, embedder beside it) a 2-thread
    # llama.cpp waits on its descheduled thread and collapses (FINDINGS.md); two are
    # faster only when nothing else runs.
    llm_threads: int = Field(1, ge=1, le=64, description="CPU threads of the embedded server")
    llm_context: int = Field(
        2048, ge=256, le=131072, description="tokens each embedded slot holds (prompt + reply)"
    )
    llm_cache_ram_mib: int = Field(
        64, ge=0, le=65536, description="the embedded server's prompt cache in RAM (0: none)"
    )
    llm_timeout: float = Field(60.0, gt=0, description="seconds an LLM call may take")
    llm_max_tokens: int = Field(
        200, ge=8, le=8192, description="longest answer of a chat or ticket turn in tokens"
    )
    llm_max_draft_tokens: int = Field(
        500, ge=8, le=8192, description="longest answer of a drafting turn in tokens"
    )
    llm_port: int = Field(8790, ge=0, le=65535, description="the embedded server's port")
    llm_pool: list[PoolBackend] | None = Field(
        None,
        description="the LLM backends turns are shared over (JSON list; "
        "default: the one llm_backend chooses)",
    )
    llm_check_seconds: float = Field(
        30.0, gt=0, description="how often the pool checks each backend's health, models, speed"
    )

    @field_validator("llm_pool", mode="before")
    @classmethod
    def _json_list(cls, value: object) -> object:
        """A value that is still text was not JSON (the environment's is decoded first)."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not a JSON list of backends: {exc}") from None
        return value

    @field_validator("llm_pool")
    @classmethod
    def _one_embedded(cls, pool: list[PoolBackend] | None) -> list[PoolBackend] | None:
        if pool is not None:
            if not pool:
                raise ValueError("the LLM pool needs at least one backend")
            names = [b.name for b in pool]
            if len(set(names)) != len(names):
                raise ValueError("the backends of the LLM pool need different names")
            if sum(b.kind == "embedded" for b in pool) > 1:
                raise ValueError("the LLM pool can start one embedded backend")
        return pool

    @property
    def models_dir(self) -> Path:
        return self.var_dir / "models"


class AgentSettings(ClientSettings, LLMSettings, MemorySettings):
    """The agent worker: its personas and tokens, its LLM and memory, its pace."""

    personas_dir: Path = Field(
        default_factory=lambda: shipped("botarena.agents", "personas"),
        description="persona YAML files; default: the personas shipped with BotArena",
    )
    agent_tokens_file: Path | None = Field(
        None, description="JSON {persona id: token} for the worker; default var/agent-tokens.json"
    )
    quiet_seconds: float = Field(20.0, gt=0, description="silence before agents take initiative")
    ticket_refresh_seconds: float = Field(
        30.0, gt=0, description="how often the worker asks the hub for open tickets"
    )
    worker_id: OptionalText = Field(
        None,
        pattern=WORKER_PATTERN,
        description="this worker's id among those sharing the agents; default: host-pid-random",
    )
    worker_share_seconds: float = Field(
        3.0, gt=0, description="how often the worker reads the live workers and takes its share"
    )
    knowledge_min_similarity: float = Field(
        0.83, ge=0, le=1, description="least similarity of a passage a ticket is answered from"
    )
    knowledge_sure_similarity: float = Field(
        0.88, ge=0, le=1, description="similarity from which a ticket is answered, doubt or not"
    )
    knowledge_min_coverage: float = Field(
        0.5,
        ge=0,
        le=1,
        description="least share of a ticket's words found in the knowledge to answer it",
    )

    @property
    def tokens_path(self) -> Path:
        return self.agent_tokens_file or self.var_dir / "agent-tokens.json"


class BundleSettings(DatabaseSettings, LLMSettings, SigningSettings):
    """Bundles: the keys a site trusts, the site's own key (the default signer), and
    where their models go (Ollama or var/)."""

    trust_dir: Path | None = Field(
        None, description="the keys trusted for bundles; default var/trust"
    )
    bundle_threshold: int = Field(
        1, ge=1, le=16, description="good signatures by distinct trusted keys a bundle needs"
    )

    @property
    def trust_directory(self) -> Path:
        return self.trust_dir or self.var_dir / "trust"


class Settings(HubSettings, AgentSettings, BundleSettings):
    """Every component's settings at once, for ``botarena up`` (hub and worker in one
    command) and for knowing every setting there is; components take their own class."""


@cache
def _read(cls: type[CommonSettings]) -> CommonSettings:
    return cls()


def get_settings(cls: type[S]) -> S:
    """The process's settings of component ``cls``, read once."""
    return cast(S, _read(cls))
