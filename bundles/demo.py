"""The demo bundle (``make bundle``): the shipped personas, the demo knowledge pack and
the demo model, signed with a key made for the purpose.

The signing key lives in its own GnuPG home (``var/demo-signer``, made on first use);
its public key is exported beside the bundle so a site can trust it with ``botarena keys
add``. The version is BotArena's own with the build time appended, so each demo bundle
is newer than the last (no rollback needed to try them).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from botarena.agents.embedded_llm import DEMO_MODEL_FILE, demo_model
from botarena.bundles.build import build, sign
from botarena.bundles.install import botarena_version
from botarena.server.settings import shipped

SIGNER = "BotArena demo signer <demo-signer@botarena.local>"


def signer_key(home: Path) -> str:
    """The demo signer's fingerprint, making the key on first use."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]

    def listed() -> list[str]:
        out = subprocess.run(
            [*gpg, "--with-colons", "--list-secret-keys", "demo-signer@botarena.local"],
            capture_output=True,
            text=True,
        ).stdout
        return [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr")]

    if not listed():
        subprocess.run(
            [
                *gpg,
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
                "--quick-gen-key",
                SIGNER,
                "ed25519",
                "sign",
                "2y",
            ],
            check=True,
            capture_output=True,
        )
    return listed()[0]


NAME = "botarena-demo"


def write_spec(folder: Path, model: Path) -> tuple[Path, str]:
    """The demo spec in ``folder``, and the version it gives the bundle."""
    version = f"{botarena_version()}.{datetime.now(UTC):%Y%m%d%H%M%S}"
    spec = folder / "demo-spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": NAME,
                "version": version,
                "min_botarena": botarena_version(),
                "expires_days": 90,
                "include": [
                    {"from": str(shipped("botarena.agents", "personas")), "to": "personas"},
                    {
                        "from": str(shipped("botarena.memory", "packs", "demo")),
                        "to": "knowledge/demo",
                    },
                    {"from": str(model), "to": "models/smollm2-demo.gguf"},
                ],
            },
            sort_keys=False,
        )
    )
    return spec, version


def make(out_dir: Path, var_dir: Path) -> tuple[Path, str, dict[str, float]]:
    """Build and sign the demo bundle; its path, the signer and the timings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fpr = signer_key(var_dir / "demo-signer")
    model = demo_model(var_dir / "models")
    assert model.name == DEMO_MODEL_FILE
    spec, version = write_spec(out_dir, model)
    bundle = out_dir / f"{NAME}-{version}.tar"
    started = time.perf_counter()
    manifest = build(spec, bundle)
    built = time.perf_counter() - started
    sign(bundle, fpr, var_dir / "demo-signer")
    public = subprocess.run(
        ["gpg", "--homedir", str(var_dir / "demo-signer"), "--armor", "--export", fpr],
        check=True,
        capture_output=True,
    ).stdout
    (out_dir / "demo-signer.asc").write_bytes(public)
    home = var_dir / "demo-signer"
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    return bundle, fpr, {"bytes": manifest.total_size, "build_seconds": built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/bundles-out"))
    parser.add_argument("--var", type=Path, default=Path("var"))
    args = parser.parse_args()
    bundle, fpr, timing = make(args.out, args.var)
    mb = timing["bytes"] / 1e6
    print(f"built and signed {bundle} ({mb:.1f} MB, {mb / timing['build_seconds']:.0f} MB/s)")
    print(f"signer {fpr}; to trust it and install the bundle:")
    print(f"  botarena keys add {args.out / 'demo-signer.asc'} --fingerprint {fpr}")
    print(f"  botarena bundle install {bundle}")


if __name__ == "__main__":
    main()
