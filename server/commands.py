"""The hub's commands: run it, tokens, the schema, backups and archives, the audit
chain, reviews and reputation without the console, and streaming a room.

They are registered on the root ``botarena`` command through the ``botarena.commands``
entry-point group (:func:`register`); each reads its settings, reaches the hub's
database or the hub itself, and reports a refusal as one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from botarena.arenas.names import ARENAS, EXTERNAL, ProposalStatus
from botarena.server.cli import fail, load_settings, run
from botarena.server.protocol import Role
from botarena.server.settings import ClientSettings, HubSettings

if TYPE_CHECKING:
    from botarena.server.auth import Principal
    from botarena.server.protocol import CanonReverted, ProposalInfo
    from botarena.server.store import Store

T = TypeVar("T")

app = typer.Typer()
token_app = typer.Typer(no_args_is_help=True, help="Issue, list and revoke access tokens.")
db_app = typer.Typer(no_args_is_help=True, help="The hub's database schema.")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")
proposals_app = typer.Typer(no_args_is_help=True, help="Review proposals without the console.")


def register(root: typer.Typer) -> None:
    """Add the hub's commands to the root command."""
    root.registered_commands.extend(app.registered_commands)
    root.add_typer(proposals_app, name="proposals")
    root.add_typer(audit_app, name="audit")
    root.add_typer(token_app, name="token")
    root.add_typer(db_app, name="db")


@app.command()
def serve() -> None:
    """Run the hub (embedded PostgreSQL unless BOTARENA_DATABASE_URL is set)."""
    from botarena.server.app import serve as serve_hub

    settings = load_settings(HubSettings, service=True)
    run(serve_hub(settings))


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="principal name (a-z, 0-9, _ . -)")],
    role: Annotated[Role, typer.Option(help="agent, moderator or admin")],
    arena: Annotated[
        list[str] | None,
        typer.Option(
            help="admit an agent to this arena (repeat); agents default to all but external"
        ),
    ] = None,
    may_create_groups: Annotated[bool, typer.Option(help="let an agent create groups")] = False,
    ai_moderator: Annotated[
        bool, typer.Option(help="make an agent an AI moderator (flag, short mutes of agents)")
    ] = False,
) -> None:
    """Issue a token for a principal (created if new). The token is shown only once."""
    import re

    from botarena.arenas.names import NAME_PATTERN
    from botarena.server.store import open_store

    if not re.fullmatch(NAME_PATTERN, name):
        fail(f"bad name {name!r}: use 1-64 of a-z 0-9 _ . - starting with a letter or digit")
    arenas = list(arena or [])
    if role is Role.AGENT and not arenas:
        arenas = [a for a in ARENAS if a != EXTERNAL]
    settings = load_settings(HubSettings)

    async def create() -> str:
        async with open_store(settings) as store:
            _principal, token = await store.principals.issue_token(
                name,
                role,
                arenas=arenas,
                may_create_groups=may_create_groups,
                ai_moderator=ai_moderator,
            )
            return token

    token = run(create())
    typer.echo(token)
    typer.secho(
        f"token for {name} ({role.value}); it is not stored and will not be shown again",
        err=True,
        fg=typer.colors.YELLOW,
    )


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    from botarena.server.store import open_store

    settings = load_settings(HubSettings)

    async def fetch() -> list[Any]:
        async with open_store(settings) as store:
            return await store.principals.tokens()

    found = run(fetch())
    typer.echo(f"{'id':>5}  {'principal':<24} {'role':<10} {'created':<16}  state")
    for info in found:
        state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "active"
        typer.echo(
            f"{info.id:>5}  {info.principal:<24} {info.role.value:<10} "
            f"{info.created_at:%Y-%m-%d %H:%M}  {state}"
        )


@token_app.command("moderator")
def token_moderator() -> None:
    """Show the site's moderator token, the one botarena up keeps in var/moderator-token
    (botarena up --rotate-moderator-token replaces it)."""
    settings = load_settings(ClientSettings)
    path = settings.moderator_token_path
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        fail(f"no moderator token in {path}: botarena up makes one")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    if not token:
        fail(f"{path} is empty: botarena up --rotate-moderator-token makes a new one")
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str | None, typer.Option(help="revoke every token of this principal")] = None,
    token_id: Annotated[int | None, typer.Option("--id", help="revoke this token")] = None,
) -> None:
    """Revoke tokens; sessions using them are disconnected at once."""
    from botarena.server.store import open_store

    if (name is None) == (token_id is None):
        fail("give exactly one of --name or --id")
    settings = load_settings(HubSettings)

    async def revoke() -> int:
        async with open_store(settings) as store:
            return await store.principals.revoke_tokens(name=name, token_id=token_id)

    count = run(revoke())
    if count == 0:
        fail("no active token matched", code=1)
    typer.echo(f"revoked {count} token(s)")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations and print the schema version."""
    from botarena.server.store import open_store

    settings = load_settings(HubSettings)

    async def migrate() -> int:
        async with open_store(settings) as store:
            return store.schema_version

    typer.echo(f"schema version {run(migrate())}")


@app.command()
def watch(
    room: Annotated[str, typer.Argument(help="room to stream, e.g. compiler")],
    history: Annotated[bool, typer.Option(help="print recent history first")] = True,
    give_up_after: Annotated[
        float, typer.Option(min=1, help="seconds without the hub before stopping")
    ] = 60,
) -> None:
    """Stream a room to the terminal (token from BOTARENA_TOKEN) until Ctrl-C, a refused
    token, or the hub gone for longer than --give-up-after."""
    import signal

    from botarena.server.client import HubClient
    from botarena.server.errors import BotArenaError, Unauthorized, Unreachable
    from botarena.server.protocol import Message

    settings = load_settings(ClientSettings)
    if not settings.token:
        fail("set BOTARENA_TOKEN to a token (botarena token create ...)")

    def show(message: Message) -> None:
        reply = f" (re #{message.reply_to})" if message.reply_to else ""
        print(
            f"{message.created_at:%H:%M:%S} #{message.id} {message.author}{reply}: {message.text}",
            flush=True,
        )

    async def stream() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        client = HubClient(settings.hub_url, settings.token or "", on_message=show)
        await client.connect()
        try:
            await client.join(room, since=None if history else 2**62)
            # Ctrl-C stops the stream here, after the handlers asyncio and python-socketio
            # install (theirs cancel the task mid-call: a traceback, not a stop)
            signal.signal(signal.SIGINT, lambda *_: loop.call_soon_threadsafe(stop.set))
            print(f"-- watching {room} on {settings.hub_url}; Ctrl-C to stop", file=sys.stderr)
            away_since: float | None = None
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                if isinstance(client.refusal, Unauthorized):
                    raise client.refusal
                if client.closed_by_hub and not client.connected:  # kicked, or revoked
                    with contextlib.suppress(Unreachable):
                        await client.connect()  # raises the refusal of a revoked token
                now = asyncio.get_running_loop().time()
                if client.connected:
                    away_since = None
                elif away_since is None:
                    away_since = now
                    print("-- the hub is away; reconnecting", file=sys.stderr)
                elif now - away_since > give_up_after:
                    raise Unreachable(
                        f"the hub at {settings.hub_url} has been unreachable for"
                        f" {give_up_after:g} s"
                    )
            print("-- stopped", file=sys.stderr)
        finally:
            await client.close()

    try:
        asyncio.run(stream())
    except BotArenaError as exc:
        fail(f"{exc.code}: {exc.message}", code=1)


def _backup_settings() -> HubSettings:
    """The hub's settings, once every backup part has read its own without a fault: a bad
    setting of any part stops a backup or restore before it starts."""
    from pydantic import ValidationError

    from botarena.server.backup import parts

    settings = load_settings(HubSettings)
    try:
        parts(settings)
    except ValidationError as exc:
        fail(f"bad settings: {exc}")
    return settings


@app.command("backup")
def backup_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="the backup archive to write")],
    to_store: Annotated[
        bool, typer.Option("--to-store", help="also keep it in the object store, as an artifact")
    ] = False,
) -> None:
    """Back up the site: the database, ChromaDB's collections and the object store."""
    from botarena.server.backup import backup
    from botarena.server.objects import open_objects
    from botarena.server.store import open_store

    settings = _backup_settings()

    async def make() -> dict:
        manifest = await backup(settings, out)
        if to_store:
            async with open_store(settings) as store:
                key = f"backups/{out.name}"
                await store.artifacts.put(open_objects(settings), "backup", key, out)
        return manifest

    manifest = run(make(), code=1)
    typer.echo(
        f"backed up to {out}: schema v{manifest['schema_version']}, "
        f"{sum(manifest.get('collections', {}).values())} memories and chunks in "
        f"{len(manifest.get('collections', {}))} collections, "
        f"{len(manifest.get('objects', []))} objects"
        + (" (and kept in the object store)" if to_store else "")
    )


@app.command("archive")
def archive_command(
    day: Annotated[
        str | None,
        typer.Option(help="YYYY-MM-DD (UTC) whose transcripts to archive; default yesterday"),
    ] = None,
    canon: Annotated[bool, typer.Option("--canon", help="also export the canon")] = False,
) -> None:
    """Archive a day's room transcripts (and the canon) to the object store."""
    from datetime import UTC, date, datetime, timedelta

    from botarena.server.archive import archive_canon, archive_day
    from botarena.server.objects import open_objects
    from botarena.server.store import open_store

    settings = load_settings(HubSettings)
    try:
        when = date.fromisoformat(day) if day else (datetime.now(UTC) - timedelta(days=1)).date()
    except ValueError:
        fail(f"not a day (YYYY-MM-DD): {day!r}")

    async def archive() -> tuple[list[str], dict | None]:
        async with open_store(settings) as store:
            objects = open_objects(settings)
            stored = await archive_day(store, objects, when)
            return stored, (await archive_canon(store, objects) if canon else None)

    stored, exported = run(archive(), code=1)
    for key in stored:
        typer.echo(f"archived {key}")
    typer.echo(f"{len(stored)} transcript(s) of {when} archived (rooms already archived are kept)")
    if exported:
        typer.echo(f"canon exported to {exported['key']} ({exported['documents']} documents)")


@app.command("restore")
def restore_command(
    archive: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
) -> None:
    """Restore a backup onto an empty site (empty database, ChromaDB and object store)."""
    from botarena.server.backup import restore

    settings = _backup_settings()
    restored = run(restore(settings, archive), code=1)
    typer.echo(
        f"restored schema v{restored['schema_version']}, "
        f"{len(restored.get('collections', {}))} collections, {restored.get('objects', 0)} objects"
    )


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the whole audit chain; name the first entry that does not hold."""
    from botarena.server import audit
    from botarena.server.store import open_store

    settings = load_settings(HubSettings)

    async def check() -> audit.Verdict:
        async with open_store(settings) as store:
            return await store.audit.verify()

    verdict = run(check())
    if not verdict.ok:
        fail(f"audit chain broken after {verdict.entries} good entries: {verdict.problem}", code=1)
    typer.echo(f"audit chain intact: {verdict.entries} entries, head {verdict.head}")


@audit_app.command("site-key")
def audit_site_key() -> None:
    """Make the site's signing key for checkpoints (once) and say how to use it."""
    from botarena.server import checkpoint
    from botarena.server.errors import BotArenaError

    settings = load_settings(HubSettings)
    signer = checkpoint.Signer(settings.gnupg_dir)
    found = signer.secret_keys()
    if found:
        fpr = settings.site_key if settings.site_key in found else found[0]
        typer.echo(f"the site key is already in {settings.gnupg_dir}: {fpr}", err=True)
    else:
        try:
            fpr = signer.create_key("botarena-site")
        except BotArenaError as exc:
            fail(exc.message, code=1)
        typer.echo(f"made the site key in {settings.gnupg_dir}: {fpr}", err=True)
    typer.echo(f"BOTARENA_SITE_KEY={fpr}")
    typer.echo("put that line in the site's environment (or botarena.toml: site_key)", err=True)


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[Path | None, typer.Option(help="folder; default var/checkpoints")] = None,
) -> None:
    """Sign the audit chain head and the canon's Merkle root with the site key."""
    from botarena.server import checkpoint
    from botarena.server.store import open_store

    settings = load_settings(HubSettings)
    if not settings.site_key:
        fail(
            "set BOTARENA_SITE_KEY to the fingerprint of the site's signing key"
            " (botarena audit site-key makes one and prints the line)"
        )
    folder = out or settings.var_dir / "checkpoints"

    async def make() -> tuple[dict[str, Any], bytes, str]:
        """Signed before it is recorded: a checkpoint that cannot be signed leaves no
        audit entry."""
        async with open_store(settings) as store:
            document = await checkpoint.create(store)
            data = checkpoint.dump(document)
            signature = await asyncio.to_thread(signer.sign, data, settings.site_key or "")
            await store.audit.append(
                "audit.checkpoint",
                actor="operator",
                subject=f"audit:{document['audit_seq']}",
                detail={"canon_root": document["canon_root"]},
            )
            return document, data, signature

    signer = checkpoint.Signer(settings.gnupg_dir)
    document, data, signature = run(make(), code=1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint-{document['audit_seq']:08d}.json"
    path.write_bytes(data)
    path.with_suffix(".json.asc").write_text(signature)
    typer.echo(
        f"checkpoint {path}: audit entry {document['audit_seq']}, canon root "
        f"{document['canon_root']}, {len(document['canon'])} document(s)"
    )


@audit_app.command("verify-checkpoint")
def audit_verify_checkpoint(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="checkpoint JSON")],
) -> None:
    """Check a checkpoint's signature, then the chain and every canon document in it."""
    import json

    from botarena.server import checkpoint
    from botarena.server.store import open_store

    settings = load_settings(HubSettings)
    if not settings.site_key:
        fail(
            "set BOTARENA_SITE_KEY to the fingerprint of the site's signing key"
            " (botarena audit site-key makes one and prints the line)"
        )
    data = path.read_bytes()
    signature_path = path.with_suffix(".json.asc")
    if not signature_path.is_file():
        fail(f"no signature next to it ({signature_path.name})", code=1)
    problem = checkpoint.Signer(settings.gnupg_dir).verify(
        data, signature_path.read_text(), settings.site_key or ""
    )
    if problem:
        fail(f"signature refused: {problem}", code=1)
    try:
        document = json.loads(data)
    except ValueError:
        fail("the checkpoint is not JSON", code=1)

    async def check() -> checkpoint.CheckpointReport:
        async with open_store(settings) as store:
            return await checkpoint.check(store, document)

    report = run(check())
    for line in report.problems + report.changed_documents:
        typer.secho(line, fg=typer.colors.RED, err=True)
    if not report.ok:
        raise typer.Exit(1)
    typer.echo(
        f"checkpoint holds: audit entry {document['audit_seq']}, "
        f"{len(document['canon'])} canon document(s) unchanged"
    )


@audit_app.command("log")
def audit_log(limit: Annotated[int, typer.Option(min=1, max=10000)] = 30) -> None:
    """Show the newest audit entries."""
    from botarena.server import audit
    from botarena.server.store import open_store

    settings = load_settings(HubSettings)

    async def fetch() -> list[audit.AuditEntry]:
        async with open_store(settings) as store:
            return await store.audit.entries(limit)

    for entry in reversed(run(fetch())):
        typer.echo(
            f"{entry.seq:>6} {entry.at:%Y-%m-%d %H:%M:%S} {entry.action:<22} "
            f"{entry.actor or '-':<14} {entry.subject or '-':<18} {entry.detail}"
        )


def _with_store(action: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    """Run ``action(store)`` against the configured database."""
    from botarena.server.store import open_store

    settings = load_settings(HubSettings)

    async def act() -> T:
        async with open_store(settings) as store:
            return await action(store)

    return run(act())


async def _reviewer(store: Store, name: str) -> Principal:
    from botarena.server.errors import Forbidden

    principal = await store.principals.get(name)
    if principal is None or not principal.supervises:
        raise Forbidden(f"{name!r} is not a moderator or admin")
    return principal


@app.command()
def sync() -> None:
    """Reset the working copy from the canon: flag pending proposals on old versions."""
    flagged = _with_store(lambda store: store.proposals.sync())
    for p in flagged:
        typer.echo(f"conflict #{p.id} {p.path}: {p.reason}")
    typer.echo(f"working copy in line with the canon; {len(flagged)} proposal(s) flagged")


@app.command()
def reputation(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Agents by reputation, and who may enter the external arena now."""
    settings = load_settings(HubSettings)
    fraction, min_seats = settings.external_top_fraction, settings.external_min_seats
    board = _with_store(lambda store: store.reputation.standings(fraction, min_seats))
    if as_json:
        typer.echo(json.dumps([s.public() for s in board], indent=1))
        return
    typer.echo(
        f"{'agent':<16}{'rep':>6}{'ok':>5}{'edit':>5}{'rej':>5}{'conf':>5}{'+/-':>9}"
        f"{'approved':>10}  external (top {fraction:.0%}, at least {min_seats})"
    )
    for s in board:
        ratio = f"{s.approval_ratio:.0%}" if s.approval_ratio is not None else "-"
        desk = ("yes" if s.external else "no") if s.candidate else "-"
        typer.echo(
            f"{s.agent:<16}{s.reputation:>6}{s.approved:>5}{s.edited:>5}{s.rejected:>5}"
            f"{s.conflicts:>5}{f'{s.reactions_up}/{s.reactions_down}':>9}{ratio:>10}  {desk}"
        )


@proposals_app.command("list")
def proposals_list(
    arena: Annotated[str | None, typer.Option(help="only this arena")] = None,
    status: Annotated[ProposalStatus | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List proposals, newest first."""
    if arena is not None and arena not in ARENAS:
        fail(f"not an arena: {arena} (one of {', '.join(ARENAS)})")
    found = _with_store(
        lambda store: store.proposals.find(
            arena=arena, status=status.value if status else None, limit=limit
        )
    )
    if not found:
        typer.echo("no proposals", err=True)
    for p in found:
        typer.echo(
            f"{p.id:>6} {p.status:<9} {p.arena:<11} {p.kind:<13} {p.author:<14} "
            f"{p.path} (base v{p.base_version}) {p.title}"
        )


@proposals_app.command("show")
def proposals_show(proposal_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Show a proposal and its diff: against the canon while it waits, or what its
    approval merged (the moderator's text, when edited)."""

    async def show(store: Store) -> tuple[ProposalInfo | None, int, str]:
        found = await store.proposals.get(proposal_id)
        if found is None:
            return None, 0, ""
        head = await store.canon.entry(found.path)
        return found, head.version if head else 0, await store.canon.review_diff(found, head)

    proposal, version, diff = _with_store(show)
    if proposal is None:
        fail(f"no proposal {proposal_id}", code=1)
    edited = f", edited by {proposal.reviewed_by}" if proposal.edited else ""
    typer.echo(
        f"#{proposal.id} {proposal.title} by {proposal.author} in {proposal.arena}: "
        f"{proposal.status}{edited} {proposal.reason}".rstrip()
    )
    merged = f", merged as v{proposal.merged_version}" if proposal.merged_version else ""
    typer.echo(
        f"{proposal.kind} {proposal.path}, based on v{proposal.base_version}{merged},"
        f" canon at v{version}"
    )
    typer.echo(diff, nl=False)


@proposals_app.command("approve")
def proposals_approve(
    proposal_id: Annotated[int, typer.Argument(min=1)],
    reviewer: Annotated[str, typer.Option("--as", help="the moderator approving")],
) -> None:
    """Approve: merge into the canon as a new version (or mark a conflict)."""

    async def approve(store: Store) -> ProposalInfo:
        return await store.proposals.approve(proposal_id, await _reviewer(store, reviewer))

    result = _with_store(approve)
    if result.status is ProposalStatus.CONFLICT:
        fail(f"conflict: {result.reason}", code=1)
    typer.echo(f"approved: {result.path} is now at version {result.merged_version}")


@proposals_app.command("reject")
def proposals_reject(
    proposal_id: Annotated[int, typer.Argument(min=1)],
    reviewer: Annotated[str, typer.Option("--as", help="the moderator rejecting")],
    reason: Annotated[str, typer.Option(help="why (required)")],
) -> None:
    """Reject with a reason."""

    async def reject(store: Store) -> ProposalInfo:
        return await store.proposals.reject(proposal_id, await _reviewer(store, reviewer), reason)

    _with_store(reject)
    typer.echo(f"rejected #{proposal_id}")


@proposals_app.command("revert")
def proposals_revert(
    proposal_id: Annotated[int, typer.Argument(min=1)],
    moderator: Annotated[str, typer.Option("--as", help="the moderator reverting")],
    reason: Annotated[str, typer.Option(help="why (required; audited)")],
) -> None:
    """Undo an approval: a new canon version with the text from before it (the canon keeps
    every version), audited. Only a document's newest version can be reverted."""

    async def revert(store: Store) -> CanonReverted:
        return await store.proposals.revert(proposal_id, await _reviewer(store, moderator), reason)

    done = _with_store(revert)
    before = f"the text of v{done.restores}" if done.restores else "no text (it was new)"
    typer.echo(f"reverted #{proposal_id}: {done.path} v{done.version} has {before}")


@proposals_app.command("edit")
def proposals_edit(
    proposal_id: Annotated[int, typer.Argument(min=1)],
    reviewer: Annotated[str, typer.Option("--as", help="the moderator editing")],
    content_file: Annotated[
        Path, typer.Option("--file", help="the edited text", exists=True, dir_okay=False)
    ],
) -> None:
    """Edit then approve: the file's text becomes the new canon version."""
    text = content_file.read_text(encoding="utf-8")

    async def edit(store: Store) -> ProposalInfo:
        return await store.proposals.approve(
            proposal_id, await _reviewer(store, reviewer), edited_content=text
        )

    result = _with_store(edit)
    if result.status is ProposalStatus.CONFLICT:
        fail(f"conflict: {result.reason}", code=1)
    typer.echo(f"edited and approved: {result.path} is now at version {result.merged_version}")
