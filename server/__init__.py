"""The hub: Socket.IO rooms over aiohttp, tokens and roles, the PostgreSQL store and its
migrations, moderation, health and metrics, and the ``botarena`` command."""
