"""The local content filter: a message's verdicts, each with a category and a score.

:class:`Screen` judges a text offline, in well under a millisecond: the English abuse
classifier of the ``alt-profanity-check`` wheel (:mod:`.compiled`, its linear model run
from plain weights), and the rules of :mod:`.rules` for what that model does not know:
secrets, personal data, instruction injection, and abuse in French or disguised by
symbols. A text gets at most one verdict per category, the surest one; what an arena does
with each is its charter's policy (:mod:`botarena.arenas.policy`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from botarena.arenas.policy import Category
from botarena.server.screening.compiled import AbuseModel, compiled_path
from botarena.server.screening.rules import RULES, Rule, fold, lower, unmask

ABUSE_THRESHOLD = 0.8
"""The English model's score from which a text is abusive (0.39 for "kill the process
42", 0.95 for "I will kill you")."""


@dataclass(frozen=True)
class Verdict:
    category: Category
    score: float  # 0 to 1: how sure the filter is
    rule: str  # what found it: a rule's name, or "abuse_model"


@cache
def screen(cache_dir: Path) -> Screen:
    """The process's :class:`Screen` over the compiled model kept in ``cache_dir`` (made
    there first if missing): its weights are read once per process."""
    return Screen(cache_dir)


JUDGED: tuple[Category, ...] = (
    Category.ABUSE,
    Category.SECRET,
    Category.PERSONAL_DATA,
    Category.INJECTION,
)
"""The categories the filter gives verdicts of (noise is judged by AI moderators)."""


class Screen:
    """Judges texts (the model's weights are read when it is built: see :func:`screen`)."""

    def __init__(self, cache_dir: Path) -> None:
        self.model = AbuseModel(compiled_path(cache_dir))

    def judge(self, text: str) -> list[Verdict]:
        """The verdicts on ``text``: one per category found, the surest, surest first."""
        folded = fold(text)
        found = {v.category: v for v in reversed(by_rules(folded))}  # the surest kept
        score = self.model.score(folded)
        if score >= ABUSE_THRESHOLD and score > getattr(found.get(Category.ABUSE), "score", 0):
            found[Category.ABUSE] = Verdict(Category.ABUSE, round(score, 3), "abuse_model")
        return sorted(found.values(), key=lambda v: -v.score)


def by_rules(folded: str) -> list[Verdict]:
    """The verdicts of the rules on a folded text (:func:`fold`), surest first."""
    unmasked = unmask(folded)
    views: dict[tuple[bool, bool], tuple[str, ...]] = {(False, False): (folded,)}
    views[True, False] = (folded,) if unmasked == folded else (folded, unmasked)
    views[False, True] = (lower(folded),)
    views[True, True] = tuple(dict.fromkeys(lower(v) for v in views[True, False]))
    needed: dict[tuple[re.Pattern[str], bool], bool] = {}  # several rules share a look
    found = []
    for rule in RULES:
        if rule.needs is not None:
            key = (rule.needs, rule.unmasked)
            if key not in needed:
                needed[key] = any(rule.needs.search(v) for v in views[rule.unmasked, True])
            if not needed[key]:
                continue
        if any(_matches(rule, view) for view in views[rule.unmasked, rule.lowered]):
            found.append(Verdict(rule.category, rule.score, rule.name))
    return sorted(found, key=lambda v: -v.score)


def _matches(rule: Rule, text: str) -> bool:
    return any(rule.check is None or rule.check(m) for m in rule.pattern.finditer(text))
