"""The persisting floor for ``../shared/hub-bench``: the least a hub can do that stores
every message before it broadcasts it, speaking the harness's ``botarena`` profile.

Stock python-socketio ``AsyncServer`` on aiohttp and uvloop (as ``py_hub.py --uvloop``),
with BotArena's delivery guarantees and nothing else:

- connect with ``auth {token}`` (a dict lookup: no hashing, no database);
- ``join {room}`` acknowledged ``{ok: true}``;
- ``send {room, text, client_id}``: the sends waiting on a room are stored by one task per
  room in one transaction, as one multi-row ``INSERT ... SELECT FROM unnest(...)
  RETURNING id`` (group commit); after the commit each message is broadcast in id order
  as ``message {id, room, author, author_role, text, reply_to, created_at}`` and its
  sender is acknowledged ``{ok: true, id}``.

No validation beyond what the profile sends, no rate limit, no membership, mute or
duplicate check, no audit: it is the floor under any hub that persists before it
broadcasts, to put BotArena's hub beside. It runs on BotArena's embedded PostgreSQL
and declares the postmaster under ``extra_pids``, so that the harness counts
PostgreSQL's CPU as it does BotArena's; a reaper in a session of its own stops that
PostgreSQL and removes its folder when this process ends, however it ends. From the
harness's folder::

    ./run.sh --server "$BA/.venv/bin/python $BA/tests/bench/hub_floor.py --port {port}" \\
        --name py-uvloop-pg --server-protocol botarena ...    # BA: a BotArena checkout
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    room text NOT NULL,
    author text NOT NULL,
    text text NOT NULL,
    client_id text,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT = """
INSERT INTO messages (room, author, text, client_id)
SELECT $1, a, t, c FROM unnest($2::text[], $3::text[], $4::text[]) AS u(a, t, c)
RETURNING id, created_at
"""


def start_reaper(tmp: Path) -> None:
    """A grandchild in its own session that waits until this process is gone (the write
    end of a pipe only this process holds is closed), then stops the PostgreSQL of
    ``tmp`` (SIGQUIT: its data is thrown away) and removes ``tmp``."""
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.close(w)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            while os.read(r, 4096):
                pass
            pidfile = tmp / "pgdata" / "postmaster.pid"
            if pidfile.exists():
                os.kill(int(pidfile.read_text().split("\n", 1)[0]), signal.SIGQUIT)
                time.sleep(2)
            shutil.rmtree(tmp, ignore_errors=True)
        os._exit(0)
    os.wait()
    os.close(r)  # w stays open (not inheritable) until this process ends


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3200")))
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()

    import asyncpg
    import socketio
    import uvloop
    from aiohttp import web

    from botarena.server.embedded_pg import EmbeddedPostgres

    tmp = Path(tempfile.mkdtemp(prefix="py-hub-pg-")).resolve()
    start_reaper(tmp)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)

    n = int(os.environ.get("HUB_BENCH_CLIENTS", "3"))
    rooms = [r for r in os.environ.get("HUB_BENCH_ROOMS", "room-0").split(",") if r]
    tokens = {secrets.token_urlsafe(16): f"bench-{i + 1:04d}" for i in range(n)}
    pg = EmbeddedPostgres(tmp / "pgdata")
    url = loop.run_until_complete(pg.start())
    pool = loop.run_until_complete(asyncpg.create_pool(url, min_size=2, max_size=10))
    loop.run_until_complete(pool.execute(SCHEMA))

    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    waiting: dict[str, list[tuple[str, str, str, str, asyncio.Future]]] = {}
    writers: dict[str, asyncio.Task] = {}

    async def write(room: str) -> None:
        while batch := waiting.pop(room, None):
            rows = await pool.fetch(
                INSERT, room, [b[1] for b in batch], [b[2] for b in batch], [b[3] for b in batch]
            )
            for (_sid, author, text, _cid, done), row in zip(batch, rows, strict=True):
                push = {
                    "id": row["id"],
                    "room": room,
                    "author": author,
                    "author_role": "agent",
                    "text": text,
                    "reply_to": None,
                    "created_at": row["created_at"].isoformat(),
                }
                await sio.emit("message", push, room=room)
                done.set_result({"ok": True, "id": row["id"]})
        del writers[room]

    @sio.event
    async def connect(sid, environ, auth):
        author = tokens.get((auth or {}).get("token", ""))
        if author is None:
            return False
        await sio.save_session(sid, {"author": author})
        return True

    @sio.event
    async def join(sid, data):
        await sio.enter_room(sid, data["room"])
        return {"ok": True}

    @sio.event
    async def send(sid, data):
        session = await sio.get_session(sid)
        room = data["room"]
        done = loop.create_future()
        waiting.setdefault(room, []).append(
            (sid, session["author"], data["text"], data.get("client_id"), done)
        )
        if room not in writers:
            writers[room] = asyncio.create_task(write(room))
        return await done

    setup = os.environ.get("HUB_BENCH_SETUP")
    if setup:
        pid = int((tmp / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
        doc = {
            "tokens": list(tokens),
            "rooms": {r: r for r in rooms},
            "extra_pids": {"postgres": pid},
            "info": {"started": dt.datetime.now(dt.UTC).isoformat()},
        }
        part = Path(setup + ".partial")
        part.write_text(json.dumps(doc))
        part.replace(setup)
    print(f"py_hub_pg listening on {args.host}:{args.port}, postgres at {tmp}", flush=True)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        loop=loop,
        access_log=None,
        print=None,
        handle_signals=True,
        shutdown_timeout=1.0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
