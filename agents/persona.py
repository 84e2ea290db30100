"""Personas: who an agent is, read from a YAML file in the shape CrewAI users write.

A persona has CrewAI's ``role``, ``goal`` and ``backstory`` plus BotArena's own fields:
``id`` (its principal name in the hub), ``display_name``, ``arenas``, ``traits`` (each
with an ``anchor`` in [0, 1] and an ``elasticity``, how fast it returns to the anchor),
``model`` (None: the backend's default), turn ``limits`` and, for an AI moderator,
``moderator`` (:mod:`botarena.agents.moderator`). A malformed file is refused
with a :class:`PersonaError` naming the file, the field and the reason.

Traits drift with experience and are pulled back toward their anchors: :class:`Traits`
holds the current values, :meth:`Traits.nudge` moves one, :meth:`Traits.relax` pulls all
back, and :meth:`Traits.drift` measures the distance from the anchors; past its persona's
``drift_watch`` threshold the worker tells the moderators and pulls the agent back to its
anchors (:meth:`Traits.reanchor`) or pauses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from botarena.agents.moderator import ModeratorSpec
from botarena.arenas.names import ARENAS, NAME_PATTERN
from botarena.server.errors import ConfigError

TraitName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")]
MAX_PERSONA_BYTES = 64 * 1024


class PersonaError(ConfigError):
    """A persona file that cannot be used: which file, which field, and why."""

    def __init__(self, path: Path, field: str, reason: str) -> None:
        super().__init__(f"{path}: {field}: {reason}")
        self.path = path
        self.field = field
        self.reason = reason


class Trait(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anchor: float = Field(ge=0.0, le=1.0, description="the value the trait returns to")
    elasticity: float = Field(0.1, gt=0.0, le=1.0, description="share of drift undone a turn")


class DriftWatch(BaseModel):
    """What happens when a trait drifts too far from its anchor: the moderators are told
    (the agent reports ``drifted``), and the agent is pulled back to its anchors or
    paused."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.3, gt=0, le=1, description="distance of a trait from its anchor")
    on_drift: Literal["reanchor", "pause"] = "reanchor"
    pause_seconds: float = Field(600.0, gt=0, le=86_400, description="how long a pause lasts")


class TurnLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turns_per_minute: float = Field(2.0, gt=0, le=120, description="this agent's own budget")
    cooldown_seconds: float = Field(5.0, ge=0, le=3600, description="least time between turns")
    max_reply_chars: int = Field(600, ge=20, le=4000)


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    display_name: str = Field(min_length=1, max_length=80)
    role: str = Field(min_length=1, max_length=200)
    goal: str = Field(min_length=1, max_length=2000)
    backstory: str = Field(min_length=1, max_length=4000)
    voice: str = Field("", max_length=500, description="how the agent sounds")
    arenas: list[str] = Field(min_length=1)
    traits: dict[TraitName, Trait] = Field(default_factory=dict)
    model: str | None = None
    limits: TurnLimits = Field(default_factory=TurnLimits)
    drift_watch: DriftWatch = Field(default_factory=DriftWatch)
    moderator: ModeratorSpec | None = Field(
        None, description="an AI moderator: how it watches its arenas (its token says so too)"
    )

    def model_post_init(self, _context: object) -> None:
        unknown = [a for a in self.arenas if a not in ARENAS]
        if unknown:
            raise ValueError(f"arenas: not an arena: {', '.join(unknown)}")

    def summary(self) -> str:
        """One line for moderators: name, role, and the traits' anchors."""
        anchors = ", ".join(f"{name} {t.anchor:.2f}" for name, t in self.traits.items())
        return f"{self.display_name}, {self.role}" + (f" (anchors: {anchors})" if anchors else "")


def load_persona(path: Path) -> Persona:
    """Read and validate one persona file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PersonaError(path, "(file)", f"cannot read: {exc.strerror}") from None
    if size > MAX_PERSONA_BYTES:
        raise PersonaError(path, "(file)", f"{size} bytes; a persona is at most 64 KiB")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PersonaError(path, "(file)", "not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise PersonaError(path, where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise PersonaError(path, "(file)", "must be a mapping of fields")
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in error["loc"]) or "(persona)"
        message = error["msg"].removeprefix("Value error, ")
        if ": " in message and field == "(persona)":
            field, message = message.split(": ", 1)
        raise PersonaError(path, field, message) from None


def load_personas(directory: Path) -> tuple[list[Persona], list[PersonaError]]:
    """Every persona in ``directory`` (``*.yaml``), and the errors of those refused.

    Two files with the same id are an error for the second one.
    """
    personas: list[Persona] = []
    errors: list[PersonaError] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.y*ml")):
        try:
            persona = load_persona(path)
        except PersonaError as exc:
            errors.append(exc)
            continue
        if persona.id in seen:
            errors.append(PersonaError(path, "id", f"{persona.id} is also in {seen[persona.id]}"))
            continue
        seen[persona.id] = path
        personas.append(persona)
    return personas, errors


class Traits:
    """The current values of a persona's traits, drifting and relaxing."""

    def __init__(self, traits: dict[str, Trait]) -> None:
        self.spec = traits
        self.values = {name: trait.anchor for name, trait in traits.items()}

    def nudge(self, name: str, delta: float) -> None:
        """Experience moves a trait (unknown traits are ignored), within [0, 1]."""
        if name in self.values:
            self.values[name] = min(1.0, max(0.0, self.values[name] + delta))

    def relax(self) -> None:
        """Pull every trait back toward its anchor by its elasticity."""
        for name, trait in self.spec.items():
            self.values[name] += (trait.anchor - self.values[name]) * trait.elasticity

    def drift(self) -> dict[str, float]:
        """Each trait's signed distance from its anchor."""
        return {n: round(self.values[n] - t.anchor, 4) for n, t in self.spec.items()}

    def farthest(self) -> tuple[str, float] | None:
        """The trait farthest from its anchor and its signed distance (None: no traits)."""
        drift = self.drift()
        return max(drift.items(), key=lambda kv: abs(kv[1])) if drift else None

    def reanchor(self) -> None:
        """Every trait back at its anchor."""
        self.values = {name: trait.anchor for name, trait in self.spec.items()}

    def describe(self) -> str:
        """The traits as words a prompt can use."""

        def level(value: float) -> str:
            return (
                "very low"
                if value < 0.2
                else "low"
                if value < 0.4
                else ("moderate" if value < 0.6 else "high" if value < 0.8 else "very high")
            )

        return ", ".join(f"{name.replace('_', ' ')} {level(v)}" for name, v in self.values.items())
