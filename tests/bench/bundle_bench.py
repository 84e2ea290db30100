"""Bundle speed: building, verifying (signature, trust and every byte) and installing the
demo bundle (personas, the demo knowledge pack and the 98 MB demo model), in MB/s."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from botarena.bundles.archive import BundleFile
from botarena.bundles.demo import make
from botarena.bundles.install import Policy, install, verify
from botarena.bundles.site import Site
from botarena.bundles.trust import TrustStore
from tests.bench.common import write_report


def main(rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bab-", dir="/tmp"))  # short: gpg-agent's socket
    try:
        builds, verifies, installs = [], [], []
        for n in range(rounds):
            var = work / f"var{n}"
            bundle, fpr, timing = make(work / f"out{n}", var)
            mb = timing["bytes"] / 1e6
            builds.append(mb / timing["build_seconds"])
            trust = TrustStore(work / f"trust{n}")
            trust.add(work / f"out{n}" / "demo-signer.asc", fpr)
            started = time.perf_counter()
            with BundleFile(bundle) as opened:
                verify(opened, trust, Policy())
            verifies.append(mb / (time.perf_counter() - started))
            started = time.perf_counter()
            with BundleFile(bundle) as opened:
                install(Site(var), opened, trust, Policy())
            installs.append(mb / (time.perf_counter() - started))
            subprocess.run(["gpgconf", "--homedir", str(trust.home), "--kill", "gpg-agent"])
        return {
            "benchmark": "bundles",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bundle_mb": round(mb, 1),
            "rounds": rounds,
            "build_mb_per_s": round(sorted(builds)[len(builds) // 2], 1),
            "verify_mb_per_s": round(sorted(verifies)[len(verifies) // 2], 1),
            "install_mb_per_s": round(sorted(installs)[len(installs) // 2], 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("tests/bench/results/bundles.json"))
    args = parser.parse_args()
    report = main(args.rounds)
    print(report)
    write_report(report, args.out)
