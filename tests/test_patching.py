"""Patch proposals: a unified diff applies to the canon only where it fits exactly."""

from __future__ import annotations

import pytest

from botarena.server.patching import PatchError, apply_unified_diff, unified_diff

pytestmark = pytest.mark.unit

DOC = "".join(f"line {n}\n" for n in range(1, 41))


@pytest.mark.parametrize(
    "after",
    [
        DOC.replace("line 3\n", "line three\n"),  # one change
        DOC.replace("line 2\n", "").replace("line 39\n", "line 39\nadded\n"),  # two hunks
        "first\n" + DOC,  # at the start
        DOC + "last\n",  # at the end
        "",  # everything removed
    ],
)
def test_the_diff_it_shows_applies_back_to_the_same_text(after: str) -> None:
    diff = unified_diff(DOC, after, "docs/a.md")
    assert diff.startswith("--- a/docs/a.md\n+++ b/docs/a.md\n")
    assert apply_unified_diff(DOC, diff) == after


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("Retry twice.\nA minute apart.", "Retry twice.\nA minute apart.\nChecked by mod."),
        ("one\ntwo", "one\nthree\n"),
        ("one\ntwo\n", "one\nthree"),
    ],
)
def test_a_last_line_without_newline_is_marked_not_glued(before: str, after: str) -> None:
    diff = unified_diff(before, after, "docs/a.md")
    assert all(line[:1] in "-+ @\\" for line in diff.splitlines())
    removed = [line[1:] for line in diff.splitlines()[2:] if line.startswith("-")]
    added = [line[1:] for line in diff.splitlines()[2:] if line.startswith("+")]
    assert set(removed) <= set(before.splitlines()) and set(added) <= set(after.splitlines())
    assert apply_unified_diff(before, diff) == after


def test_a_diff_made_against_another_version_is_refused_not_guessed() -> None:
    diff = unified_diff(DOC, DOC.replace("line 20\n", "line twenty\n"), "a.md")
    moved_on = DOC.replace("line 19\n", "line nineteen\n")
    with pytest.raises(PatchError, match="does not match the document at line"):
        apply_unified_diff(moved_on, diff)


@pytest.mark.parametrize(
    ("diff", "words"),
    [
        ("", "no hunk"),
        ("--- a/x\n+++ b/x\n", "no hunk"),
        ("this is not a diff\n", "not a hunk header"),
        ("@@ -1,1 +1,1 @@\n*line 1\n", r"line 2 of the diff has no \+, - or space prefix"),
        ("@@ -90,1 +90,1 @@\n-line 90\n+ninety\n", "outside the document"),
    ],
)
def test_a_malformed_diff_says_what_is_wrong(diff: str, words: str) -> None:
    with pytest.raises(PatchError, match=words):
        apply_unified_diff(DOC, diff)


def test_a_refused_diff_is_a_refusal_of_the_error_tree_not_a_value_error() -> None:
    from botarena.server.errors import BotArenaError

    with pytest.raises(PatchError) as refused:
        apply_unified_diff(DOC, "")
    assert isinstance(refused.value, BotArenaError) and not isinstance(refused.value, ValueError)
    assert (refused.value.code, refused.value.message) == ("patch", "the diff has no hunk")
    assert str(refused.value) == "the diff has no hunk"  # as the hub quotes it in its refusal
