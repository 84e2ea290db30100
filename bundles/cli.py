"""``botarena bundle`` and ``botarena keys``: build, sign, verify and install bundles, and
manage the keys a site trusts. Long steps show a progress bar (rich) on the terminal;
``--json`` prints one JSON object for scripts instead. A refusal (a
:class:`~botarena.server.errors.BundleError`) exits with status 1 and says why, with its
code: on stderr through the printer every command shares
(:func:`botarena.server.cli.fail`), or in the JSON object."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from botarena.bundles.archive import BundleFile
from botarena.bundles.install import Policy, install, verify
from botarena.bundles.journal import recover
from botarena.bundles.site import Site
from botarena.bundles.trust import TrustStore
from botarena.server.cli import fail, load_settings
from botarena.server.errors import BundleError
from botarena.server.settings import BundleSettings

bundle_app = typer.Typer(no_args_is_help=True, help="Build, sign, verify and install bundles.")
keys_app = typer.Typer(no_args_is_help=True, help="The keys this site trusts for bundles.")

JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object on stdout")]


def register(root: typer.Typer) -> None:
    """Add ``botarena bundle`` and ``botarena keys`` to the root command (through the
    ``botarena.commands`` entry-point group)."""
    root.add_typer(bundle_app, name="bundle")
    root.add_typer(keys_app, name="keys")


def _settings() -> BundleSettings:
    """The settings (:func:`~botarena.server.cli.load_settings`: logs go to stderr, so
    stdout stays for results and JSON). Settings that cannot be used end the command with
    status 1, as any refusal of these commands does."""
    try:
        return load_settings(BundleSettings)
    except typer.Exit as exc:
        raise typer.Exit(1) from exc


def _trust(settings: BundleSettings) -> TrustStore:
    return TrustStore(settings.trust_directory)


def _refuse(code: str, message: str, *, as_json: bool) -> NoReturn:
    """End the command with status 1: ``{"ok": false, "code", "error"}`` on stdout for
    ``--json``, else the shared ``error: refused (code): message`` line on stderr."""
    if not as_json:
        fail(f"refused ({code}): {message}", code=1)
    print(json.dumps({"ok": False, "code": code, "error": message}))
    raise typer.Exit(1)


def _refused(exc: BundleError, *, as_json: bool) -> NoReturn:
    _refuse(exc.code, exc.message, as_json=as_json)


def _done(data: dict[str, Any], text: str, *, as_json: bool) -> None:
    print(json.dumps({"ok": True, **data}, default=str) if as_json else text)


@contextmanager
def _progress(label: str, total: int, *, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over ``total`` bytes (none for JSON output or when not a terminal)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    columns = (*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn())
    with Progress(*columns, TransferSpeedColumn(), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def _site(settings: BundleSettings, *, as_json: bool) -> Iterator[Site]:
    """The site under its lock, after an install a crash interrupted was finished or
    undone (and the history's audit records caught up); a refusal ends the command. A
    site with no bundles yet is left without even a lock file."""
    site = Site(settings.var_dir)
    try:
        with site.locked() if site.root.exists() else contextlib.nullcontext():
            if recover(site) == "forward":
                _audit(settings, site)
            yield site
    except BundleError as exc:
        _refused(exc, as_json=as_json)


@bundle_app.command("build")
def build_command(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the bundle spec")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the bundle file to write")],
    as_json: JsonOption = False,
) -> None:
    """Build a bundle (manifest with sizes and SHA-256, and payload) from a YAML spec."""
    from botarena.bundles.build import build, collect

    try:
        _, sources = collect(spec)
        total = 2 * sum(p.stat().st_size for p in sources.values())  # hashed, then written
        with _progress("building", total, quiet=as_json) as progress:
            manifest = build(spec, out, progress)
    except BundleError as exc:
        _refused(exc, as_json=as_json)
    except OSError as exc:
        _refuse("spec", str(exc), as_json=as_json)
    _done(
        {
            "bundle": str(out),
            "name": manifest.name,
            "version": manifest.version,
            "files": len(manifest.files),
            "bytes": manifest.total_size,
        },
        f"built {out}: {manifest.name} {manifest.version}, {len(manifest.files)} files, "
        f"{manifest.total_size} bytes (unsigned: botarena bundle sign)",
        as_json=as_json,
    )


@bundle_app.command("sign")
def sign_command(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    key: Annotated[str, typer.Option("--key", help="full fingerprint of the signing key")],
    gnupg_home: Annotated[
        Path | None, typer.Option(help="GnuPG home holding the secret key; default the site's")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Add a detached PGP signature over the bundle's manifest."""
    from botarena.bundles.build import sign

    home = gnupg_home or _settings().gnupg_dir
    try:
        fpr = sign(bundle, key, home)
    except BundleError as exc:
        _refused(exc, as_json=as_json)
    _done({"bundle": str(bundle), "signed_by": fpr}, f"signed {bundle} with {fpr}", as_json=as_json)


def _policy(settings: BundleSettings, allow_downgrade: bool = False) -> Policy:
    return Policy(threshold=settings.bundle_threshold, allow_downgrade=allow_downgrade)


@bundle_app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    as_json: JsonOption = False,
) -> None:
    """Check signatures, trust, expiry, version and every file, without installing."""
    settings = _settings()
    with _site(settings, as_json=as_json) as site, BundleFile(bundle) as opened:
        total = opened.contents.manifest.total_size
        with _progress("verifying", total, quiet=as_json) as progress:
            contents, checks = verify(opened, _trust(settings), _policy(settings), site, progress)
    manifest = contents.manifest
    signed = sorted(c.fingerprint for c in checks if c.counts)
    _done(
        {
            "name": manifest.name,
            "version": manifest.version,
            "signed_by": signed,
            "files": len(manifest.files),
            "bytes": manifest.total_size,
        },
        f"{manifest.name} {manifest.version}: good, signed by {', '.join(signed)}; "
        f"{len(manifest.files)} files verified",
        as_json=as_json,
    )


@bundle_app.command("install")
def install_command(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    allow_downgrade: Annotated[
        bool, typer.Option(help="install even if not newer (needs --reason; audited)")
    ] = False,
    reason: Annotated[str, typer.Option(help="why: recorded with the install")] = "",
    as_json: JsonOption = False,
) -> None:
    """Verify and install a bundle, all or nothing."""
    settings = _settings()
    if allow_downgrade and not reason.strip():
        _refuse("reason", "a deliberate downgrade needs --reason", as_json=as_json)
    with _site(settings, as_json=as_json) as site, BundleFile(bundle) as opened:
        total = opened.contents.manifest.total_size
        with _progress("installing", total, quiet=as_json) as progress:
            record = install(
                site,
                opened,
                _trust(settings),
                _policy(settings, allow_downgrade),
                progress,
                reason,
                _ollama(settings),
            )
        record["audited"] = _audit(settings, site)
    _done(
        record,
        f"installed {record['name']} {record['version']}"
        + (f" (was {record['previous']})" if record["previous"] else "")
        + ("" if record["audited"] else "; the hub's store was not reachable: not audited"),
        as_json=as_json,
    )


def _ollama(settings: BundleSettings) -> str | None:
    """Ollama's address when it is the LLM backend (``auto``: when it answers)."""
    if settings.llm_backend == "ollama":
        return settings.ollama_host
    if settings.llm_backend == "auto":
        import httpx

        try:
            httpx.get(
                f"{settings.ollama_host.rstrip('/')}/api/version", timeout=1
            ).raise_for_status()
        except httpx.HTTPError:
            return None
        return settings.ollama_host
    return None


def _audit(settings: BundleSettings, site: Site) -> bool:
    """Append every install in the site's history that the audit chain lacks (by its
    id), when the site has a hub database (its PostgreSQL, or the embedded one under
    var/) and it answers; whether the chain now holds them all."""
    import asyncio

    import asyncpg

    from botarena.server.errors import MigrationError
    from botarena.server.store import open_store

    actions = ["bundle.installed", "bundle.downgraded"]
    records = [r for r in site.records() if "id" in r]
    if not settings.database_url and not settings.pgdata.exists():
        return False

    async def append() -> None:
        async with open_store(settings) as store:
            done = await store.audit.keys(actions, "id")
            for record in records:
                if record["id"] not in done:
                    action = actions[1] if record["downgrade"] else actions[0]
                    await store.audit.append(
                        action, actor="operator", subject=record["name"], detail=record
                    )

    try:
        asyncio.run(append())
    except (OSError, asyncpg.PostgresError, MigrationError, TimeoutError, RuntimeError):
        return False
    return True


@bundle_app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """Installed bundles."""
    with _site(_settings(), as_json=as_json) as site:
        found = site.listing()
    if as_json:
        print(json.dumps({"ok": True, "bundles": found}))
        return
    for b in found:
        print(f"{b['name']:<24} {b['version']:<12} {b['files']:>6} files  expires {b['expires']}")


@keys_app.command("add")
def keys_add(
    key_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="public key")],
    fingerprint: Annotated[
        str, typer.Option("--fingerprint", help="its full fingerprint, checked on import")
    ],
) -> None:
    """Trust a bundle signing key, pinned by its full fingerprint."""
    try:
        added = _trust(_settings()).add(key_file, fingerprint)
    except BundleError as exc:
        _refused(exc, as_json=False)
    print(f"trusted {added['fingerprint']} {added['uid']}")


@keys_app.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """The trusted keys and their state (ok, expired, revoked)."""
    try:
        keys = _trust(_settings()).listing()
    except BundleError as exc:
        _refused(exc, as_json=as_json)
    if as_json:
        print(json.dumps({"ok": True, "keys": keys}))
        return
    for k in keys:
        print(f"{k['fingerprint']}  {k['state']:<8} {k['uid']}")


@keys_app.command("remove")
def keys_remove(fingerprint: Annotated[str, typer.Argument()]) -> None:
    """Stop trusting a key."""
    try:
        _trust(_settings()).remove(fingerprint)
    except BundleError as exc:
        _refused(exc, as_json=False)
    print(f"no longer trusted: {fingerprint}")
