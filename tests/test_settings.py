"""Settings: every one is documented, and the shipped data is found from any folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from botarena.server.settings import (
    CONFIG_ENV,
    AgentSettings,
    ClientSettings,
    HubSettings,
    MemorySettings,
    Settings,
)
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


def test_an_empty_knowledge_pack_means_none_not_the_working_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTARENA_KNOWLEDGE_PACK", "")
    assert AgentSettings().knowledge_pack is None


def test_a_worker_id_outside_the_protocols_pattern_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTARENA_WORKER_ID", "has space")
    with pytest.raises(ValidationError, match="worker_id"):
        AgentSettings()


def test_each_component_reads_its_own_keys_of_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "site.toml"
    config.write_text('port = 9100\nllm_model = "llama3"\nhub_url = "http://hub:9100"\n')
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("BOTARENA_LLM_MODEL", "codellama")  # the environment wins
    assert HubSettings().port == 9100
    assert AgentSettings().llm_model == "codellama"
    assert ClientSettings().hub_url == "http://hub:9100"
    assert not hasattr(ClientSettings(), "port")  # a client never sees the hub's settings


def test_a_config_key_no_component_knows_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "site.toml"
    config.write_text("prot = 9100\n")  # a typo of port
    monkeypatch.setenv(CONFIG_ENV, str(config))
    with pytest.raises(ValueError, match="unknown settings in the config file: prot"):
        ClientSettings()


def test_a_component_sees_the_settings_it_shares_with_another() -> None:
    hub = HubSettings(var_dir=Path("/srv/site"), port=9200)
    memory = hub.view(MemorySettings)
    assert isinstance(memory, MemorySettings) and memory.var_dir == Path("/srv/site")
    assert memory.chroma_dir == Path("/srv/site/chroma")
    whole = Settings(port=9300)
    assert whole.view(HubSettings) is whole  # already one


def test_a_config_file_may_name_a_setting_by_its_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "site.toml"
    config.write_text('OLLAMA_HOST = "http://gpu-node:11434"\n')
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert AgentSettings().ollama_host == "http://gpu-node:11434"


def test_a_bad_setting_of_any_backup_part_stops_the_backup_before_it_starts(
    tmp_path: Path,
) -> None:
    """The hub's command reads memory's settings too, before any store is touched."""
    out = tmp_path / "site.backup.tar"
    done = subprocess.run(
        [sys.executable, "-P", "-m", "botarena.server.cli", "backup", "--out", str(out)],
        cwd=tmp_path,
        env={
            "PATH": os.environ["PATH"],
            "BOTARENA_VAR_DIR": str(tmp_path / "var"),
            "BOTARENA_MEMORY_MAX_PER_AGENT": "1",
        },
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert "bad settings" in done.stderr and "memory_max_per_agent" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and not (tmp_path / "var" / "pgdata").exists()


@pytest.mark.parametrize(
    ("pool", "why"),
    [
        ('[{"name": "gpu1", "kind": "ollama"', "not a JSON list of backends"),
        ('[{"name": "gpu1", "kind": "ollama"}]', "the ollama backend 'gpu1' needs a url"),
        ('[{"name": "e", "kind": "embedded", "url": "http://x"}]', "it takes no url"),
        ('[{"name": "a", "kind": "embedded"}, {"name": "b", "kind": "embedded"}]', "one embedded"),
        (
            '[{"name": "a", "kind": "openai", "url": "http://x/v1"}, '
            '{"name": "a", "kind": "ollama", "url": "http://y"}]',
            "need different names",
        ),
        ('[{"name": "A B", "kind": "openai", "url": "http://x/v1"}]', "should match pattern"),
        ('[{"name": "a", "kind": "vllm", "url": "http://x/v1"}]', "'ollama', 'openai' or"),
        ('[{"name": "a", "kind": "ollama", "url": "http://y", "gpu": 1}]', "Extra inputs"),
        ("[]", "at least one backend"),
    ],
)
def test_a_bad_llm_pool_stops_start_up_with_the_variable_and_the_reason(
    monkeypatch: pytest.MonkeyPatch, pool: str, why: str
) -> None:
    monkeypatch.setenv("BOTARENA_LLM_POOL", pool)
    with pytest.raises(ValueError, match="llm_pool") as refused:
        AgentSettings()
    assert why in str(refused.value)


def test_an_llm_pool_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "BOTARENA_LLM_POOL",
        '[{"name": "gpu1", "kind": "ollama", "url": "http://10.0.0.5:11434", "capacity": 4,'
        ' "models": ["qwen3"]}, {"name": "local", "kind": "embedded"}]',
    )
    pool = AgentSettings().llm_pool
    assert pool is not None
    assert [(b.name, b.kind, b.capacity, b.models) for b in pool] == [
        ("gpu1", "ollama", 4, ["qwen3"]),
        ("local", "embedded", None, None),
    ]
