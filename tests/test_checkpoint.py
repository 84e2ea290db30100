"""Signed audit checkpoints: the chain head and the canon's Merkle root, signed with the
site's PGP key; a changed canon document is named, a forged or foreign signature refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

from botarena.server.checkpoint import leaf, merkle_root
from tests.harness import make_key
from tests.test_cli import botarena, run_ok


def test_merkle_root_changes_with_any_leaf() -> None:
    leaves = [leaf(f"doc{i}", 1, f"{i:064x}") for i in range(5)]
    root = merkle_root(leaves)
    assert root != merkle_root([*leaves[:2], leaf("doc2", 2, f"{2:064x}"), *leaves[3:]])
    assert merkle_root(leaves) == root and len(root) == 64


def test_a_checkpoint_is_signed_verified_and_names_a_changed_document(
    tmp_path: Path, gnupg_home: Path
) -> None:
    site = make_key(gnupg_home, "site")
    other = make_key(gnupg_home, "intruder")
    var = tmp_path / "var"
    env = {"gnupg_home": str(gnupg_home), "site_key": site}
    run_ok(var, "token", "create", "--name", "mod", "--role", "moderator")

    async def canon() -> None:
        from botarena.server.settings import Settings
        from botarena.server.store import open_store

        async with open_store(Settings(var_dir=var)) as store:
            mod = await store.principals.get("mod")
            proposals = store.proposals
            for path in ("src/a.py", "src/b.py", "docs/c.md"):
                p = await proposals.create(
                    mod,
                    arena="compiler",
                    kind="document",
                    path=path,
                    base_version=0,
                    title=path,
                    content=f"# {path}\n",
                )
                await proposals.approve(p.id, mod)

    asyncio.run(canon())
    made = botarena(var, "audit", "checkpoint", **env)
    assert made.returncode == 0, made.stderr
    checkpoint = next((var / "checkpoints").glob("checkpoint-*.json"))
    document = json.loads(checkpoint.read_text())
    assert set(document["canon"]) == {"src/a.py", "src/b.py", "docs/c.md"}
    good = botarena(var, "audit", "verify-checkpoint", str(checkpoint), **env)
    assert good.returncode == 0 and "holds" in good.stdout

    foreign = botarena(
        var,
        "audit",
        "verify-checkpoint",
        str(checkpoint),
        gnupg_home=str(gnupg_home),
        site_key=other,
    )
    assert foreign.returncode == 1 and "not the site key" in foreign.stderr

    forged = tmp_path / "forged.json"
    forged.write_text(checkpoint.read_text().replace(document["canon_root"], "0" * 64))
    shutil.copy(checkpoint.with_suffix(".json.asc"), forged.with_suffix(".json.asc"))
    refused = botarena(var, "audit", "verify-checkpoint", str(forged), **env)
    assert refused.returncode == 1 and "signature refused" in refused.stderr

    async def tamper() -> None:
        from botarena.server.settings import Settings
        from botarena.server.store import open_store

        async with open_store(Settings(var_dir=var)) as store:
            async with store.pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(
                    "UPDATE canon_versions SET content = 'evil' WHERE path = 'src/b.py'"
                )

    asyncio.run(tamper())
    changed = botarena(var, "audit", "verify-checkpoint", str(checkpoint), **env)
    assert changed.returncode == 1
    assert "src/b.py v1 changed" in changed.stderr and "src/a.py" not in changed.stderr


def agents_of(home: Path) -> list[str]:
    """The gpg-agent processes running on GnuPG home ``home``."""
    found = subprocess.run(["pgrep", "-af", "gpg-agent"], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if f"--homedir {home}" in line]


def test_a_checkpoint_that_cannot_be_signed_records_nothing_and_no_agent_stays(
    tmp_path: Path, gnupg_home: Path
) -> None:
    site = make_key(gnupg_home, "site")
    subprocess.run(["gpgconf", "--homedir", str(gnupg_home), "--kill", "gpg-agent"], check=True)
    var = tmp_path / "var"
    run_ok(var, "token", "create", "--name", "mod", "--role", "moderator")

    wrong = botarena(var, "audit", "checkpoint", gnupg_home=str(gnupg_home), site_key="F" * 40)
    assert wrong.returncode == 1 and "cannot sign with" in wrong.stderr
    assert "audit.checkpoint" not in botarena(var, "audit", "log").stdout
    assert not (var / "checkpoints").exists()

    made = botarena(var, "audit", "checkpoint", gnupg_home=str(gnupg_home), site_key=site)
    assert made.returncode == 0, made.stderr
    assert botarena(var, "audit", "log").stdout.count("audit.checkpoint") == 1
    assert agents_of(gnupg_home) == []  # signing started one; the command stopped it


def test_the_site_key_is_made_once_and_checkpoints_sign_with_it(tmp_path: Path) -> None:
    var = tmp_path / "var"
    run_ok(var, "token", "create", "--name", "mod", "--role", "moderator")
    unset = botarena(var, "audit", "checkpoint")
    assert unset.returncode == 2 and "botarena audit site-key" in unset.stderr

    made = botarena(var, "audit", "site-key")
    assert made.returncode == 0, made.stderr
    line = made.stdout.strip()
    assert line.startswith("BOTARENA_SITE_KEY=") and len(line.split("=")[1]) == 40
    assert "made the site key" in made.stderr
    again = botarena(var, "audit", "site-key")
    assert again.stdout.strip() == line and "already" in again.stderr  # one key, not two

    key = line.split("=")[1]
    signed = botarena(var, "audit", "checkpoint", site_key=key)
    assert signed.returncode == 0, signed.stderr
    checkpoint = next((var / "checkpoints").glob("checkpoint-*.json"))
    held = botarena(var, "audit", "verify-checkpoint", str(checkpoint), site_key=key)
    assert held.returncode == 0 and "holds" in held.stdout
    assert agents_of(var / "gnupg") == []
