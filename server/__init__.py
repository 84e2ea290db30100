"""Two layers in one folder. The contract every process shares: the protocol, the hub
client, the error tree, settings, logs, rate limiting, small helpers and the root
``botarena`` command. Above it, the hub's internals: the hub (``hub/``: Socket.IO rooms
over aiohttp, tokens and roles, moderation), its store (``store/``: PostgreSQL and its
migrations), health and metrics, the object store, backups and the hub's commands."""
