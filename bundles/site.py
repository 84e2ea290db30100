"""Where bundles live on a site, and the bookkeeping no bundle's name can reach.

``var/bundles/`` holds the site's own files: ``.lock`` (one bundle command at a time),
``journal.json`` (an install under way, see :mod:`botarena.bundles.journal`),
``history.jsonl`` (one line per install, with its id) and the store,
``store/<name>-<version>-<id>/``. The installed bundles are the symbolic links
``active/<name>`` into the store: a bundle's name only ever names an entry of
``active/``. Models are linked as ``var/models/<file>`` →
``../bundles/active/<name>/payload/models/<file>``, so they follow their bundle's switch
and the link itself says which bundle owns it. :meth:`Site.sweep` removes what no
installed bundle uses (staging folders, temporary links, store folders no link points
at, model links of a bundle that no longer ships them); a site laid out the older way
(links beside the store) is moved to ``active/`` first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from packaging.version import Version

from botarena.bundles.archive import MANIFEST, PAYLOAD
from botarena.bundles.manifest import BUNDLE_NAME

MODELS = "models/"
ACTIVE = "active"
STORE = "store"
_OWNER = re.compile(rf"^\.\./bundles/{ACTIVE}/([^/]+)/{PAYLOAD}{MODELS}[^/]+$")


class Site:
    """A site's ``var/bundles`` and ``var/models``."""

    def __init__(self, var_dir: Path) -> None:
        self.root = var_dir / "bundles"
        self.active = self.root / ACTIVE
        self.store = self.root / STORE
        self.models = var_dir / "models"
        self.history = self.root / "history.jsonl"
        self.journal = self.root / "journal.json"
        self._held = False

    def installed(self, name: str) -> Version | None:
        manifest = self.active / name / MANIFEST
        if not manifest.exists():
            return None
        return Version(json.loads(manifest.read_text())["version"])

    def names(self) -> list[str]:
        """The installed bundles' names."""
        if not self.active.is_dir():
            return []
        return sorted(
            link.name
            for link in self.active.iterdir()
            if re.match(BUNDLE_NAME, link.name) and link.is_symlink() and link.exists()
        )

    def listing(self) -> list[dict[str, Any]]:
        found = []
        for name in self.names():
            manifest = json.loads((self.active / name / MANIFEST).read_text())
            found.append(
                {
                    "name": manifest["name"],
                    "version": str(Version(manifest["version"])),
                    "expires": manifest["expires"],
                    "files": len(manifest["files"]),
                    "path": str((self.active / name).resolve()),
                }
            )
        return found

    def records(self) -> list[dict[str, Any]]:
        """The history, oldest first (a line cut short by a crash is skipped)."""
        if not self.history.exists():
            return []
        found = []
        for line in self.history.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def record(self, entry: dict[str, Any]) -> None:
        """Append a history line unless one with the same id is there already."""
        if any(r.get("id") == entry["id"] for r in self.records()):
            return
        tail = b""
        if self.history.exists() and self.history.stat().st_size:
            with open(self.history, "rb") as old:
                old.seek(-1, os.SEEK_END)
                tail = b"" if old.read(1) == b"\n" else b"\n"  # after a line cut short
        with open(self.history, "ab") as history:
            history.write(tail + json.dumps(entry).encode() + b"\n")

    def model_link(self, name: str, file: str) -> str:
        """The text of the link ``var/models/<file>`` of bundle ``name``."""
        return f"../bundles/{ACTIVE}/{name}/{PAYLOAD}{MODELS}{file}"

    def model_owner(self, path: Path) -> str | None:
        """The bundle a ``var/models`` entry belongs to (None: not a bundle's link)."""
        if not path.is_symlink():
            return None
        match = _OWNER.match(os.readlink(path))
        return match[1] if match else None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One bundle command at a time (re-entered freely by the one holding it)."""
        if self._held:
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._held = True
            try:
                yield
            finally:
                self._held = False

    def sweep(self) -> None:
        """Remove everything no installed bundle uses (with no install under way)."""
        self._upgrade_layout()
        for stale in self.root.glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for folder in (self.active, self.models):
            for temporary in folder.glob(".*.link") if folder.is_dir() else []:
                temporary.unlink(missing_ok=True)
        used = {os.path.basename(os.readlink(self.active / n)) for n in self.names()}
        for folder in self.store.iterdir() if self.store.is_dir() else []:
            if folder.name not in used:
                shutil.rmtree(folder, ignore_errors=True)
        for entry in self.models.iterdir() if self.models.is_dir() else []:
            if self.model_owner(entry) is not None and not entry.exists():
                entry.unlink()  # a model its bundle no longer ships

    def _upgrade_layout(self) -> None:
        """Links of the older layout (``var/bundles/<name>`` → ``store/...``) into
        ``active/``, and their models' links with them."""
        if not self.root.is_dir():
            return
        for link in self.root.iterdir():
            target = os.readlink(link) if link.is_symlink() else ""
            if not target.startswith(f"{STORE}/"):
                continue
            self.active.mkdir(exist_ok=True)
            replace_link(f"../{target}", self.active / link.name)
            for entry in self.models.iterdir() if self.models.is_dir() else []:
                old = f"../bundles/{link.name}/{PAYLOAD}{MODELS}{entry.name}"
                if entry.is_symlink() and os.readlink(entry) == old:
                    replace_link(self.model_link(link.name, entry.name), entry)
            link.unlink()


def replace_link(text: str, path: Path) -> None:
    """Point ``path`` at ``text`` in one atomic rename (through a ``.<name>.link``)."""
    temporary = path.with_name(f".{path.name}.link")
    temporary.unlink(missing_ok=True)
    os.symlink(text, temporary)
    os.replace(temporary, path)
