"""The five arenas as data: charters, turn-taking and initiative policy, knowledge weights
and the kinds of proposal each may make. The arena rooms themselves exist in the hub from
its first migration (:data:`server.protocol.ARENAS`)."""
