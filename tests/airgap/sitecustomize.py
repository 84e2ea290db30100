"""Network audit for the air-gap test: loaded by every Python process of the run (its
folder is put first on PYTHONPATH, which BotArena passes on to its Python children) when
BOTARENA_NET_AUDIT, or a ``net-audit.path`` file beside it, names a file: BotArena's
children get an allow-listed environment, so the file is what reaches them. It records
every socket connection, send and name lookup the process attempts, one JSON line each."""

import json
import os
import sys

_marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "net-audit.path")
_path = os.environ.get("BOTARENA_NET_AUDIT")
if not _path and os.path.exists(_marker):
    with open(_marker) as _named:
        _path = _named.read().strip()

if _path:
    _EVENTS = {
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
    }

    def _audit(event, args):
        if event not in _EVENTS:
            return
        if event == "socket.connect" or event in ("socket.sendto", "socket.sendmsg"):
            target = args[1] if len(args) > 1 else None
        else:
            target = args[0] if args else None
        if isinstance(target, tuple):
            target = list(target[:2])
        elif isinstance(target, bytes):
            target = target.decode(errors="replace")
        line = json.dumps(
            {"pid": os.getpid(), "event": event, "target": target, "argv": sys.argv[:3]},
            default=str,
        )
        with open(_path, "a") as out:
            out.write(line + "\n")

    sys.addaudithook(_audit)
    with open(_path, "a") as _out:  # proves the hook is live in this process
        _out.write(
            json.dumps(
                {"pid": os.getpid(), "event": "audit.start", "target": None, "argv": sys.argv[:3]}
            )
            + "\n"
        )
