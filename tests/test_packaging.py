"""BotArena installs as one import package, ``botarena``, whose commands and backup parts
come through entry points: what the wheel holds, that no generic top-level name is
claimed, and that a site's own package can add a command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.services import ROOT

FOLDERS = ("arenas", "server", "agents", "memory", "bundles", "tui")


def declared() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.unit
def test_every_package_folder_is_installed_under_botarena() -> None:
    """A folder with an ``__init__.py`` left out of pyproject's list would be missing from
    the wheel while the editable install still finds it."""
    listed = set(declared()["tool"]["setuptools"]["packages"])
    found = {
        "botarena." + ".".join(init.parent.relative_to(ROOT).parts)
        for folder in FOLDERS
        for init in (ROOT / folder).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found == listed


@pytest.mark.unit
def test_no_generic_top_level_name_is_importable_outside_the_repository(tmp_path: Path) -> None:
    for name in FOLDERS:
        done = subprocess.run(
            [sys.executable, "-P", "-c", f"import {name}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, name
    shipped = subprocess.run(
        [sys.executable, "-P", "-c", "import botarena.server.protocol, botarena.tui.app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert shipped.returncode == 0, shipped.stderr


@pytest.mark.e2e
def test_the_wheel_has_one_top_level_name_and_its_package_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("botarena-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["botarena"]
        points = archive.read(top_level.replace("top_level.txt", "entry_points.txt")).decode()
    assert all(n.startswith(("botarena/", "botarena-")) for n in names)
    for data in (
        "botarena/agents/personas/ada-compiler.yaml",
        "botarena/arenas/charters/external.yaml",
        "botarena/memory/packs/demo/house-rules.md",
        "botarena/tui/console.tcss",
    ):
        assert data in names, data
    assert any(n.endswith("migrations/0001_hub.sql") for n in names)
    assert "[botarena.commands]" in points and "[botarena.backup]" in points


PLUGIN = '''
import typer

app = typer.Typer()


@app.command()
def greet(name: str) -> None:
    """Greet from a site's own package."""
    typer.echo(f"hello {name} from the site's plugin")


def register(root: typer.Typer) -> None:
    root.registered_commands.extend(app.registered_commands)
'''


@pytest.mark.unit
def test_a_package_of_the_site_adds_a_command_through_the_entry_point_group(
    tmp_path: Path,
) -> None:
    """What pip leaves on the path for a package declaring
    ``[project.entry-points."botarena.commands"] greet = "site_greet:register"``."""
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "site_greet.py").write_text(PLUGIN)
    info = site / "site_greet-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: site-greet\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[botarena.commands]\ngreet = site_greet:register\n")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-P", "-m", "botarena.server.cli"]

    listed = subprocess.run([*command, "--help"], cwd=tmp_path, env=env, capture_output=True)
    assert listed.returncode == 0 and b"greet" in listed.stdout
    assert b"serve" in listed.stdout and b"bundle" in listed.stdout  # BotArena's own still there
    greeted = subprocess.run(
        [*command, "greet", "moderators"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert greeted.returncode == 0, greeted.stderr
    assert greeted.stdout.strip() == "hello moderators from the site's plugin"

    without = subprocess.run([*command, "greet", "x"], cwd=tmp_path, capture_output=True)
    assert without.returncode != 0  # the command comes only from the plugin


@pytest.mark.unit
def test_a_broken_plugin_is_named_and_every_other_command_still_works(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "site_broken.py").write_text("raise ImportError('needs a library this site lacks')\n")
    info = site / "site_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: site-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[botarena.commands]\nbroken = site_broken:register\n")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run(
        [sys.executable, "-P", "-m", "botarena.server.cli", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and "serve" in listed.stdout and "bundle" in listed.stdout
    assert "commands of broken (site_broken:register) not loaded" in listed.stderr
    assert "needs a library this site lacks" in listed.stderr
