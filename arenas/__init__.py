"""The five arenas as data: charters with each arena's mission, turn budget and
initiative prompts (:mod:`arenas.charter`). The arena rooms themselves exist in the hub
from its first migration (:data:`server.protocol.ARENAS`)."""
