"""Drift watch: past its persona's threshold an agent is reported ``drifted`` (the
console tells it, /metrics counts it for the alert rule) and is pulled back to its
anchors or paused, as its persona says."""

from __future__ import annotations

import asyncio

import pytest

from botarena.agents.persona import DriftWatch, Trait, Traits, load_personas
from botarena.agents.worker import AgentWorker
from botarena.server.protocol import AgentStateKind, Role
from tests.harness import Arena, eventually
from tests.test_agents_e2e import stop_worker
from tests.test_agents_moderator import NoTurns
from tests.test_http import get
from tests.test_personas import SHIPPED


@pytest.mark.unit
def test_the_farthest_trait_and_a_reanchor() -> None:
    traits = Traits({"warmth": Trait(anchor=0.5), "rigor": Trait(anchor=0.9)})
    traits.nudge("warmth", 0.1)
    traits.nudge("rigor", -0.3)
    assert traits.farthest() == ("rigor", pytest.approx(-0.3))
    traits.reanchor()
    assert traits.drift() == {"warmth": 0.0, "rigor": 0.0}
    assert Traits({}).farthest() is None


@pytest.mark.parametrize("on_drift", ["reanchor", "pause"])
async def test_an_agent_past_its_threshold_is_told_and_handled(arena: Arena, on_drift: str) -> None:
    [grace] = [p for p in load_personas(SHIPPED)[0] if p.id == "grace"]
    watch = DriftWatch(threshold=0.15, on_drift=on_drift, pause_seconds=900)  # type: ignore[arg-type]
    grace = grace.model_copy(update={"arenas": ["operations"], "drift_watch": watch})
    token = await arena.token("grace", Role.AGENT, arenas=["operations"])
    worker = AgentWorker(arena.url, [grace], {"grace": token}, NoTurns(), quiet_seconds=600)
    task = asyncio.create_task(worker.run())
    mod = await arena.client("mod", "moderator")
    try:
        await eventually(lambda: worker.seats["grace"].held, 30, what="grace seated")
        await mod.mute("grace", 1, "calm down")  # a mute lowers assertiveness by 0.2

        async def reported() -> AgentStateKind | None:
            states = {s.agent: s for s in (await mod.agent_states()).agents}
            return states["grace"].state if "grace" in states else None

        for _ in range(100):
            if await reported() is AgentStateKind.DRIFTED:
                break
            await asyncio.sleep(0.1)
        state = {s.agent: s for s in (await mod.agent_states()).agents}["grace"]
        assert state.state is AgentStateKind.DRIFTED
        assert "assertiveness drifted -0.20" in state.detail
        assert state.drift["assertiveness"] == pytest.approx(-0.2)  # what passed the threshold
        assert worker.seats["grace"].traits.drift()["assertiveness"] == 0.0  # back at anchor
        await asyncio.sleep(1.2)  # the moderator's one-second mute is over
        if on_drift == "pause":
            assert "paused for 900 s" in state.detail
            assert worker.scheduler.is_muted("grace")
        else:
            assert "pulled back to its anchors" in state.detail
            assert not worker.scheduler.is_muted("grace")
        _, text, _ = await get(arena.url + "/metrics")
        assert 'botarena_agent_drifts_total{agent="grace"} 1.0' in text
    finally:
        await stop_worker(worker, task)
