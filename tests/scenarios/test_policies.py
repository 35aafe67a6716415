"""Invalid policies: rejected with a message naming the field, on the status and as an Event,
and never half-applied."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxymedic.kube.client import ApiError
from proxymedic.kube.resources import POLICIES
from tests.scenarios.harness import (
    BUSY_KUBE_PROXY,
    OLD,
    all_summarized,
    events,
    eventually,
    has_state_of,
    policy,
    settled,
    sweeps,
    world,
)

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def _status(w: Any, name: str) -> dict[str, Any]:
    obj = await w.client.get(POLICIES, name)
    return dict(obj.get("status") or {})


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


async def test_the_api_rejects_what_the_schema_can_say() -> None:
    async with world(1) as w:
        await settled(w)
        bad = {
            "apiVersion": "proxymedic.io/v1alpha1",
            "kind": "ProxyHealthPolicy",
            "metadata": {"name": "bad"},
            "spec": {"guardrails": {"maxConcurrentKubeProxyRestarts": "150%"}},
        }
        with pytest.raises(ApiError) as caught:
            await w.client.create(POLICIES, bad)
        assert caught.value.status == 422
        assert "spec.guardrails.maxConcurrentKubeProxyRestarts" in caught.value.message


async def test_a_policy_the_models_reject_is_reported_and_not_applied() -> None:
    async with world(2, **BUSY_KUBE_PROXY) as w:
        await settled(w)
        status = await _status(w, "coredns")
        assert _condition(status, "Accepted")["status"] == "True"
        # The schema cannot know time zones; the operator can, and says which field is wrong.
        broken = policy(maintenanceWindows=[{"start": "01:00", "end": "02:00", "timeZone": "Mars/Olympus"}])
        await w.client.patch(POLICIES, "coredns", {"spec": broken})

        async def rejected() -> dict[str, Any]:
            while True:
                current = await _status(w, "coredns")
                if _condition(current, "Accepted").get("status") == "False":
                    return current
                await asyncio.sleep(0.1)

        async with asyncio.timeout(30):
            status = await rejected()
        accepted = _condition(status, "Accepted")
        assert accepted["reason"] == "Invalid"
        assert (
            "spec.guardrails.maintenanceWindows[0].timeZone: 'Mars/Olympus' is not a known IANA time zone"
            in (accepted["message"])
        )
        assert _condition(status, "Active")["status"] == "False"
        rejection = await events(w, "PolicyRejected")
        assert rejection[0]["type"] == "Warning"
        assert "maintenanceWindows[0].timeZone" in rejection[0]["message"]
        # Never half-applied: the next Service change is not acted on.
        await w.terminate_backend(OLD[0], lameduck=0.2)
        # The operator has seen the change (it records every Service's in-use backends, valid policy
        # or not) and swept since: whatever it would have done, it has had its chance.
        controller = w.controller
        assert controller is not None
        await eventually(lambda: OLD[0] not in next(iter(controller.cluster.acted.values()), {OLD[0]}))
        await sweeps(w)
        assert all(has_state_of(w, node, OLD[0]) for node in w.nodes)
        assert await events(w, "StaleConnectionsFlushed") == []


async def test_policy_status_counts_and_conditions() -> None:
    async with world(2) as w:
        await settled(w)
        await w.terminate_backend(OLD[0], lameduck=0.2)
        await eventually(lambda: all_summarized(w))

        async def counted() -> dict[str, Any]:
            while True:
                current = await _status(w, "coredns")
                if current.get("lastRemediation"):
                    return current
                await asyncio.sleep(0.1)

        async with asyncio.timeout(30):
            status = await counted()
        assert status["selectedServices"] == 1
        assert status["selectedNodes"] == 2
        assert status["counters"]["intentsIssued"] >= 1
        assert status["lastRemediation"]["action"] == "StaleConnectionsFlushed"
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Accepted": "True",
            "Active": "True",
            "Degraded": "False",
            "Paused": "False",
            "SysctlNotEnforced": "False",
        }
