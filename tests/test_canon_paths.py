"""Canon paths are safe names: an unsafe one is refused when proposed or asked for, and
a stored proposal with one (from before paths were checked) is refused on approval with
a clear code, never ``internal``, and can still be rejected."""

from __future__ import annotations

import re

import pytest

from botarena.server.errors import HubError
from botarena.server.protocol import CANON_PATH_PATTERN
from tests.harness import Arena

UNSAFE = [
    "../etc/passwd",
    "docs/../../etc/passwd",
    "docs/..",
    "docs/./a.md",
    "/etc/passwd",
    "docs//a.md",
    "docs/",
    "docs/.hidden",
    "notes..md",  # the canon's table refuses any ".."
    "docs/a.md.",
    "Docs/A.md",
    "docs\\a.md",
    "docs/a b.md",
    "a" * 201,
]
SAFE = ["docs/a.md", "src/__init__.py", "tickets/12", "ops/run-it_now.v2.sh", "a" * 200]


@pytest.mark.unit
@pytest.mark.parametrize("path", SAFE)
def test_safe_paths_match(path: str) -> None:
    assert re.fullmatch(CANON_PATH_PATTERN, path)


@pytest.mark.unit
@pytest.mark.parametrize("path", [p for p in UNSAFE if len(p) <= 200])
def test_unsafe_paths_do_not_match(path: str) -> None:
    assert not re.fullmatch(CANON_PATH_PATTERN, path)


async def test_unsafe_paths_are_refused_when_proposed_or_read(arena: Arena) -> None:
    ada = await arena.client("ada", arenas=["compiler"])
    before = await arena.fingerprint()
    for path in UNSAFE:
        for event, payload in (
            (
                "proposal.create",
                {
                    "arena": "compiler",
                    "kind": "document",
                    "path": path,
                    "base_version": 0,
                    "title": "t",
                    "content": "x\n",
                },
            ),
            ("canon.get", {"path": path}),
        ):
            with pytest.raises(HubError) as err:
                await ada.call(event, payload)
            assert err.value.code == "invalid_payload", (event, path, err.value)
            assert err.value.detail["problems"][0]["field"] == "path"
    assert await arena.fingerprint() == before


@pytest.mark.parametrize("path", ["docs/../../etc/passwd", "notes..md", "/abs.md"])
async def test_a_stored_unsafe_proposal_is_refused_on_approval_not_internal(
    arena: Arena, path: str
) -> None:
    mod = await arena.client("mod", "moderator")
    author = await arena.store.principals.get("mod")
    assert author is not None
    legacy = await arena.store.pool.fetchval(
        """INSERT INTO proposals (arena, author_id, kind, path, base_version, title, content)
           VALUES ('compiler', $1, 'document', $2, 0, 'old', 'x') RETURNING id""",
        author.id,
        path,
    )
    before = await arena.fingerprint()
    for review in ({"decision": "approve"}, {"decision": "edit", "content": "y"}):
        with pytest.raises(HubError) as err:
            await mod.call("proposal.review", {"id": legacy, **review})
        assert err.value.code == "invalid_payload", err.value
        assert "not a safe canon path" in err.value.message and "reject" in err.value.message
    assert await arena.fingerprint() == before
    detail = await mod.call("proposal.get", {"id": legacy})
    assert detail["status"] == "pending"
    rejected = await mod.call(
        "proposal.review", {"id": legacy, "decision": "reject", "reason": "unsafe path"}
    )
    assert rejected["status"] == "rejected"
