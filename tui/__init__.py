"""The Textual moderator console (``botarena tui``), a Socket.IO client of the hub."""
