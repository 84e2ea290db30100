"""The bottom layer: the names everyone shares (:mod:`botarena.arenas.names`: arenas, room
rules, proposal kinds and statuses) and the five arenas' charters
(:mod:`botarena.arenas.charter`). It imports nothing else of BotArena."""
