"""CrewAI as the agents run it: three costs of a kickoff that a turn does not need, cut.

CrewAI (imported only when a turn needs it: :func:`crewai`) is run as it ships, except:

- a crew keeps no replay log (:class:`_NoReplayLog`): CrewAI writes every task's whole
  output, the agent's messages included, to ``latest_kickoff_task_outputs.db`` under
  the user's data folder, opened at every crew's creation and written three times a
  turn; turns are kept in BotArena's own store, and nothing of an agent's is written
  outside the var folder;
- every agent's executor starts from one state class made once: CrewAI's
  ``AgentExecutor`` makes a pydantic class for the state of each (8 ms of CPU, at every
  agent's first turn: a tenth of a worker's CPU when 500 agents come in);
- the file store is off, as CrewAI has it without ``aiocache``: the agents attach no
  files, and every kickoff asked the store four times for them, each on a new event
  loop whose closing walks every task of the process (with 500 agents connected,
  thousands); its calls now return at once, without a loop (:func:`_at_once`).
"""

from __future__ import annotations

import functools
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

T = TypeVar("T")


class _NoReplayLog:
    """What a crew keeps for ``crewai replay`` instead of its SQLite log: nothing."""

    def update(self, task_index: int, log: dict[str, Any]) -> None:
        pass

    def add(self, *args: Any, **kwargs: Any) -> None:
        pass

    def reset(self) -> None:
        pass

    def load(self) -> None:
        return None


def _at_once(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits to its end, without an event loop (CrewAI's
    ``_run_sync``, for the file store switched off)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a CrewAI file-store call waited, though the store is off")


@functools.cache
def crewai() -> Any:
    """The ``crewai`` package, adjusted as the module says (once per process)."""
    import crewai as package
    from crewai.agents.agent_executor import AgentExecutor, AgentExecutorState
    from crewai.flow.runtime import FlowState
    from crewai.utilities import file_store

    class TurnState(FlowState, AgentExecutorState):  # what CrewAI makes for each executor
        pass

    package.Crew.__private_attributes__["_task_output_handler"].default_factory = _NoReplayLog
    AgentExecutor._initial_state_t = TurnState  # type: ignore[attr-defined]  # as Flow[...] does
    file_store._file_store = None  # as without aiocache: every call returns at once
    file_store._run_sync = _at_once
    return package
