"""Arena charters: each arena's mission, turn budget and initiative prompts, as YAML data.

The agent worker reads them to decide how often an arena's agents may speak (turns per
minute for the whole arena, so that the LLM is never flooded) and what to talk about
when a room is quiet (an initiative prompt drawn in turn, every ``draft_every``-th of
them a draft proposal of a kind the arena may make); memory reads how much each
knowledge collection counts when the arena's agents recall (compiler mostly code and
rules, creative mostly narrative); the hub reads what its content filter does with a
message of each category (:mod:`botarena.arenas.policy`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field

from botarena.arenas.names import ARENAS, ProposalKind
from botarena.arenas.policy import DEFAULT_POLICY, Policy


class ArenaCharter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    mission: str = Field(min_length=1)
    turns_per_minute: float = Field(6.0, gt=0, le=600)
    initiative: list[str] = Field(min_length=1, description="prompts for quiet rooms")
    proposals: list[ProposalKind] = Field(
        default_factory=list, description="the kinds of proposal the arena may make"
    )
    draft_every: int = Field(
        0, ge=0, le=1000, description="every Nth quiet-room turn drafts a proposal; 0: never"
    )
    knowledge: dict[str, float] = Field(
        default_factory=dict, description="weight of each knowledge collection in recall"
    )
    screening: Policy = Field(
        DEFAULT_POLICY,
        description="what the content filter does with a message of each category: "
        "allow, flag, hold or block",
    )


@cache
def charters() -> dict[str, ArenaCharter]:
    """The five charters shipped with BotArena, by arena name."""
    found = {}
    for name in ARENAS:
        text = resources.files("botarena.arenas").joinpath("charters", f"{name}.yaml").read_text()
        found[name] = ArenaCharter.model_validate({"name": name, **yaml.safe_load(text)})
    return found
