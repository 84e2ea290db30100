"""An install SIGKILLed at every step of its journal: the next ``bundle`` command (list,
verify or install) leaves the site in exactly the old or the new state, ``bundle list``
and the history agree, the audit chain gets each install once, and a later install works.
A site laid out the older way is moved into the new layout by the first command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from botarena.bundles.journal import STEPS
from tests.bundle_site import MODEL, Site_
from tests.test_cli import botarena

KILLER = """
import os, signal, sys
from pathlib import Path
from botarena.bundles.archive import BundleFile
from botarena.bundles.install import Policy, install
from botarena.bundles.site import Site
from botarena.bundles.trust import TrustStore

var, trust, bundle, at = sys.argv[1:]
seen = 0

def die(name):
    if name == at:
        os.kill(os.getpid(), signal.SIGKILL)

def halfway(size):
    global seen
    seen += size
    die("payload" if seen > 4096 else "")

with BundleFile(Path(bundle)) as opened:
    install(Site(Path(var)), opened, TrustStore(Path(trust)), Policy(), halfway, on_step=die)
print("not killed")
"""

# (where the kill lands, the state the next command must leave)
KILLS = [
    ("stage", "old"),  # staging folder made, nothing written
    ("payload", "old"),  # halfway through writing the payload
    ("store", "old"),  # journalled, staging not yet moved into the store
    ("link", "old"),  # in the store, the new model's link not yet made
    ("switch", "old"),  # new model linked (dangling), active/ not yet switched
    ("record", "new"),  # switched, history not yet written
    ("clean", "new"),  # recorded, old store folder and dropped model still there
]
COMMANDS = ["list", "verify", "install"]


def test_every_step_of_the_journal_has_its_kill() -> None:
    assert [k[0] for k in KILLS] == ["stage", "payload", *STEPS]


def versions(old: str, new: str) -> dict[str, dict[str, bytes]]:
    return {
        old: {"models/tiny.gguf": MODEL + b"1", "models/old.gguf": b"GGUF old"},
        new: {"models/tiny.gguf": MODEL + b"2", "models/new.gguf": b"GGUF new"},
    }


def summary(site: Site_) -> dict:
    """The site as a user sees it, and proof that nothing else is left."""
    root = site.var / "bundles"
    models = site.var / "models"
    dangling = [p.name for p in models.iterdir() if not p.exists()]
    assert not dangling, f"dangling model links: {dangling}"
    return {
        "installed": [(b["name"], b["version"]) for b in site.site.listing()],
        "history": [(r["name"], r["version"]) for r in site.site.records()],
        "models": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in models.iterdir()},
        "bookkeeping": sorted(p.name for p in root.iterdir()),
        "active": sorted(p.name for p in (root / "active").iterdir()),
        "store": len(list((root / "store").iterdir())),
    }


def kill_at(site: Site_, bundle: Path, at: str) -> None:
    killed = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            KILLER,
            str(site.var),
            str(site.trust.directory),
            str(bundle),
            at,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr


def command(site: Site_, name: str, bundle: Path, **settings: str) -> dict:
    args = {
        "list": ["bundle", "list"],
        "verify": ["bundle", "verify", str(bundle)],
        "install": ["bundle", "install", str(bundle)],
    }[name]
    done = botarena(site.var, *args, "--json", trust_dir=str(site.trust.directory), **settings)
    return json.loads(done.stdout)


@pytest.mark.parametrize(("at", "expected"), KILLS, ids=[k[0] for k in KILLS])
def test_a_kill_at_any_step_leaves_the_old_or_the_new_site(
    site: Site_, at: str, expected: str
) -> None:
    files = versions("1.0.0", "1.1.0")
    site.install(site.bundle("1.0.0", files["1.0.0"]))
    old = summary(site)
    upgrade = site.bundle("1.1.0", files["1.1.0"])
    kill_at(site, upgrade, at)

    # the next command of any kind first finishes or undoes the install
    name = COMMANDS[[k[0] for k in KILLS].index(at) % len(COMMANDS)]
    answer = command(site, name, upgrade)
    after = summary(site)
    if expected == "old" and name != "install":
        assert after == old
        assert name == "list" or (answer["ok"] and answer["version"] == "1.1.0")
    else:  # the kill's install rolled forward, or the command installed the upgrade
        assert after["installed"] == [("demo", "1.1.0")]
        assert after["history"] == [("demo", "1.0.0"), ("demo", "1.1.0")]
        assert set(after["models"]) == {"tiny.gguf", "new.gguf"}  # old.gguf went with 1.0.0
        assert after["store"] == 1
        if name != "list":
            refused = expected == "new"  # 1.1.0 is in already: not newer than itself
            assert answer["ok"] is not refused and answer.get("code") == (
                "rollback" if refused else None
            )
    assert after["bookkeeping"] == [".lock", "active", "history.jsonl", "store"]
    # bundle list and the history agree
    listed = command(site, "list", upgrade)["bundles"]
    assert [(b["name"], b["version"]) for b in listed] == [after["history"][-1]]

    later = site.install(site.bundle("1.2.0", files["1.1.0"]))
    assert later["version"] == "1.2.0"
    final = summary(site)
    assert final["installed"] == [("demo", "1.2.0")] and final["store"] == 1
    assert final["history"][-1] == ("demo", "1.2.0")


def test_an_install_killed_after_its_switch_is_recorded_and_audited_once(
    site: Site_, database_url: str
) -> None:
    files = versions("1.0.0", "1.1.0")
    site.install(site.bundle("1.0.0", files["1.0.0"]))  # by the library: not audited yet
    kill_at(site, site.bundle("1.1.0", files["1.1.0"]), "record")
    assert site.site.records()[-1]["version"] == "1.0.0"  # the kill came before the history

    assert command(site, "list", Path(), database_url=database_url)["ok"]
    assert [r["version"] for r in site.site.records()] == ["1.0.0", "1.1.0"]
    log = botarena(site.var, "audit", "log", database_url=database_url).stdout
    assert log.count("bundle.installed") == 2

    # a second command and a later install append nothing twice
    command(site, "list", Path(), database_url=database_url)
    done = command(site, "install", site.bundle("1.2.0"), database_url=database_url)
    assert done["audited"] is True
    log = botarena(site.var, "audit", "log", database_url=database_url).stdout
    assert log.count("bundle.installed") == 3
    assert len({r["id"] for r in site.site.records()}) == 3


def test_a_site_laid_out_the_older_way_is_moved_into_active(site: Site_) -> None:
    """Before ``active/``, links sat beside the store: ``var/bundles/demo`` → ``store/...``
    and ``var/models/tiny.gguf`` → ``../bundles/demo/payload/models/tiny.gguf``."""
    site.install(site.bundle("1.0.0"))
    root, models = site.var / "bundles", site.var / "models"
    target = os.readlink(root / "active" / "demo").removeprefix("../")
    (root / "active" / "demo").unlink()
    (root / "active").rmdir()
    os.symlink(target, root / "demo")
    (models / "tiny.gguf").unlink()
    os.symlink("../bundles/demo/payload/models/tiny.gguf", models / "tiny.gguf")

    listed = command(site, "list", Path())["bundles"]
    assert [(b["name"], b["version"]) for b in listed] == [("demo", "1.0.0")]
    assert not (root / "demo").exists() and (root / "active" / "demo").is_symlink()
    assert os.readlink(models / "tiny.gguf") == "../bundles/active/demo/payload/models/tiny.gguf"
    assert (models / "tiny.gguf").read_bytes() == MODEL + b"1.0.0"
    assert site.install(site.bundle("1.1.0"))["previous"] == "1.0.0"
