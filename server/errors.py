"""The one shape of a refusal in BotArena: a ``code`` for programs (a protocol error
code, or a bundle's or the object store's own) and a ``message`` for people. The store,
the hub client, bundles and the object store each raise their own subclass."""

from __future__ import annotations


class CodedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
