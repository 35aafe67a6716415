"""No harm from an old intent: an agent restarted while an intent was pending replays it, but
leaves alone a backend that is ready again by then.

The operator deletes an open intent whose dead backend is live again, when it sees the change;
the agent's own check covers the times it does not (the operator is down, as here, or the
intent was already summarized)."""

from __future__ import annotations

import pytest

from tests.scenarios.harness import OLD, eventually, has_state_of, settled, world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def test_replayed_intent_keeps_a_backend_that_is_ready_again() -> None:
    async with world(2, min_sync_period=30.0) as w:
        await settled(w)
        await w.stop_component("agent:node-2")
        await w.terminate_backend(OLD[0], lameduck=0.2)
        await eventually(lambda: not has_state_of(w, "node-1", OLD[0]))
        assert w.controller is not None
        decided = [t for t in w.controller.cluster.intents.values() if OLD[0] in t.intent.spec.dead_backends]
        assert decided, "the operator decided the flush while node-2's agent was down"
        assert has_state_of(w, "node-2", OLD[0]), "node-2 still programs the old backend"

        await w.stop_component("operator")  # nobody withdraws the intent: the agent alone must see it
        await w.add_backend(OLD[0])  # the same address is ready again before the agent comes back
        w.start_agent("node-2")
        runner = w.agents["node-2"]
        await eventually(lambda: any(OLD[0] in r.message for r in runner.agent.recent_results()), within=40)
        replayed = [r for r in runner.agent.recent_results() if OLD[0] in r.message]
        for result in replayed:  # the termination and the removal each made one
            assert f"kept {OLD[0]}: kube-proxy uses it now" in result.message
            assert result.removed_real_servers == 0
        assert has_state_of(w, "node-2", OLD[0]), "the replay left the live backend's real server alone"
