"""The Textual moderator console (``botarena tui``), a Socket.IO client of the hub:
:mod:`~botarena.tui.app` holds the layout, the global keys and the link
(:mod:`~botarena.tui.link`, which keeps :mod:`~botarena.tui.state` current); each tab is a
pane in a module of its own (:mod:`~botarena.tui.rooms`, :mod:`~botarena.tui.agents`,
:mod:`~botarena.tui.proposals`, :mod:`~botarena.tui.tickets`, :mod:`~botarena.tui.health`)
on the base in :mod:`~botarena.tui.pane`, sharing :mod:`~botarena.tui.table` and
:mod:`~botarena.tui.markup`; the dialogs are in :mod:`~botarena.tui.screens`."""
