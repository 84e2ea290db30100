"""Settings: every one is documented, and the shipped data is found from any folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from botarena.server.settings import CONFIG_ENV, Settings
from tests.services import ROOT

pytestmark = pytest.mark.unit


def documented() -> set[str]:
    """The variables named in the README's settings table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("### Settings", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"`(BOTARENA_[A-Z0-9_]+)`", table))


def test_every_setting_is_in_the_readme() -> None:
    names = {f"BOTARENA_{field.upper()}" for field in Settings.model_fields} | {CONFIG_ENV}
    assert names - documented() == set(), "add these to the README's settings table"
    assert documented() - names == set(), "the README names settings that do not exist"


def test_shipped_personas_and_pack_do_not_depend_on_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.personas_dir.is_absolute() and any(settings.personas_dir.glob("*.yaml"))
    assert settings.knowledge_pack is not None and any(settings.knowledge_pack.glob("*.md"))
