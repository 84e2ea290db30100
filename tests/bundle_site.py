"""A site to install bundles on, with real gpg keys: the ``site`` fixture (three release
keys, all trusted), bundles built and signed from given files, a rewrite of a bundle's
members, and the site's whole state under ``var/`` to compare before and after."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from botarena.bundles.archive import BundleFile
from botarena.bundles.build import build, sign
from botarena.bundles.install import Policy, install, verify
from botarena.bundles.site import Site
from botarena.bundles.trust import TrustStore
from tests.harness import make_key

MODEL = b"GGUF" + bytes(range(256)) * 64


def gpg(home: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", *args],
        check=True,
        capture_output=True,
        **kwargs,  # type: ignore[arg-type]
    )


def export(home: Path, fpr: str, out: Path) -> Path:
    out.write_bytes(gpg(home, "--armor", "--export", fpr).stdout)
    return out


def short_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # gpg-agent's socket path
    path.chmod(0o700)
    return path


@dataclass
class Site_:
    root: Path
    var: Path
    signers: Path  # GnuPG home with the secret keys
    trust: TrustStore
    site: Site
    keys: list[str]

    def bundle(
        self,
        version: str = "1.0.0",
        files: dict[str, bytes] | None = None,
        *,
        sign_with: list[str] | None = None,
        expires_days: int = 30,
        min_botarena: str = "0.1.0",
        name: str = "demo",
    ) -> Path:
        source = self.root / f"src-{version}-{len(os.listdir(self.root))}"
        source.mkdir()
        files = files or {
            "personas/ada.yaml": b"id: ada\n",
            "knowledge/demo/rules.md": f"rules of v{version}\n".encode(),
            "models/tiny.gguf": MODEL + version.encode(),
        }
        for rel, data in files.items():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_bytes(data)
        spec = source / "spec.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "name": name,
                    "version": version,
                    "expires_days": expires_days,
                    "min_botarena": min_botarena,
                    "include": [
                        {"from": d, "to": d} for d in sorted({p.split("/")[0] for p in files})
                    ],
                }
            )
        )
        out = self.root / f"{name}-{version}-{len(os.listdir(self.root))}.tar"
        build(spec, out)
        for key in sign_with if sign_with is not None else self.keys[:1]:
            sign(out, key, self.signers)
        return out

    def install(self, bundle: Path, *args: object, **policy: object) -> dict:
        """Install ``bundle`` (``args``: install's progress, reason, ollama, on_step)."""
        with BundleFile(bundle) as opened:
            return install(self.site, opened, self.trust, Policy(**policy), *args)  # type: ignore[arg-type]

    def verify(self, bundle: Path, **policy: object) -> list:
        with BundleFile(bundle) as opened:
            return verify(opened, self.trust, Policy(**policy), self.site)[1]  # type: ignore[arg-type]

    def state(self) -> dict[str, str]:
        """Every file, folder and link under var/, by content: equal means unchanged."""
        found = {}
        for path in sorted(self.var.rglob("*")):
            rel = str(path.relative_to(self.var))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = "dir"
        return found


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site_]:
    signers, trust_dir = short_dir("bas-"), short_dir("bat-")
    keys = [make_key(signers, f"release{n}") for n in range(3)]
    trust = TrustStore(trust_dir)
    for n, key in enumerate(keys):
        trust.add(export(signers, key, tmp_path / f"key{n}.asc"), key)
    var = tmp_path / "var"
    var.mkdir()
    yield Site_(tmp_path, var, signers, trust, Site(var), keys)
    for home in (signers, trust.home):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    shutil.rmtree(signers, ignore_errors=True)
    shutil.rmtree(trust_dir, ignore_errors=True)


def rewrite(bundle: Path, out: Path, change: Callable[[tarfile.TarInfo, bytes], list]) -> Path:
    """A copy of ``bundle`` with each member passed through ``change`` (which returns the
    (TarInfo, bytes) pairs to write instead)."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dest:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isreg() else b""  # type: ignore[union-attr]
            for info, payload in change(member, data):
                dest.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return out
