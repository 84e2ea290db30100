"""What an arena does with a message the content filter judges: categories, actions, policy.

The filter (``botarena.server.screening``) gives each message its verdicts, a category
and a score each. An arena's charter says, per category, what happens to a message with
a verdict of that category: ``allow`` it, ``flag`` it (posted, marked for moderators),
``hold`` it (kept out of the room until a moderator releases or drops it) or ``block``
it (refused, with a code its sender hears). A message with several verdicts gets the
strictest of their actions. Rooms that are not arenas (direct messages, groups) follow
:data:`DEFAULT_POLICY`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import RootModel


class Category(StrEnum):
    ABUSE = "abuse"  # profanity, insults, threats
    SECRET = "secret"  # a credential written out: a token, a key, a password
    PERSONAL_DATA = "personal_data"  # e-mail addresses, phone numbers, IBANs, cards...
    INJECTION = "injection"  # instructions aimed at other agents ("ignore your rules")
    NOISE = "noise"  # an agent repeating itself: flagged by AI moderators, not the filter


class Action(StrEnum):
    """In order of strictness."""

    ALLOW = "allow"
    FLAG = "flag"
    HOLD = "hold"
    BLOCK = "block"

    @property
    def strictness(self) -> int:
        return list(Action).index(self)


class Policy(RootModel[dict[Category, Action]]):
    """Category -> action; a category it does not name is flagged."""

    def action(self, categories: Iterable[Category]) -> Action:
        """The strictest action for a message with verdicts of ``categories``."""
        return max(
            (self.root.get(c, Action.FLAG) for c in categories),
            key=lambda a: a.strictness,
            default=Action.ALLOW,
        )


DEFAULT_POLICY = Policy(
    {
        Category.ABUSE: Action.FLAG,
        Category.SECRET: Action.BLOCK,
        Category.PERSONAL_DATA: Action.HOLD,
        Category.INJECTION: Action.HOLD,
    }
)
