"""Reports count as evidence only when sensed after the change they are judged against.

The first tests drive the real controller and node repairs with reports as the agents write them
(the API emulator stands in for the API server; the operator's clock is the test's): a report the
operator already held when a backend became live, or one sensed before a removal was applied,
must not restart kube-proxy. The last ones pin ``Evidence``'s ordering rules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from proxymedic.api.health import NodeProxyHealthStatus
from proxymedic.emulator.runner import serve
from proxymedic.kube.client import Connection, KubeClient
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import EVENTS, INTENTS
from proxymedic.operator.backends import ServiceRef
from proxymedic.operator.causality import Evidence, Sensed
from proxymedic.operator.controller import Controller
from proxymedic.operator.repairs import NodeRepairs
from proxymedic.operator.state import Cluster
from proxymedic.sim.coredns import DnsPods, dns_service
from tests.contract.test_crd_parity import CRDS

NODE = "node-1"
LIVE = "10.244.2.7"
NEW = "10.244.2.8"
DEAD = "10.244.1.5"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
RESTART_ATTEMPT = "KubeProxyNotFound"
"""The emulated cluster runs no kube-proxy pod: a restart the guardrails allow ends in this Event."""
POLICY_SPEC: dict[str, Any] = {
    "services": {"namespaces": ["kube-system"], "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}}},
    "actions": {
        "flushStaleConnections": {"enabled": True},
        "removeStaleRealServers": {"enabled": True},
        "restartKubeProxy": {"enabled": True, "staleAfter": "10s"},
    },
    "guardrails": {"minObservation": "1s", "nodeCooldown": "0s"},
}


def report(
    round_: int, real_servers: list[str], results: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "NodeProxyHealth",
        "metadata": {"name": NODE},
        "spec": {"nodeName": NODE},
        "status": {
            "observedAt": T0.isoformat(),
            "incarnation": "agent-a",
            "round": round_,
            "proxyMode": "ipvs",
            "kubeProxy": {"freshness": "Fresh"},
            "sysctls": {"net.ipv4.vs.expire_nodest_conn": 1},
            "virtualServers": [
                {
                    "vip": "10.96.0.10",
                    "port": 53,
                    "protocol": "UDP",
                    "realServers": [{"ip": ip, "port": 53, "weight": 1} for ip in real_servers],
                }
            ],
            "recentResults": results or [],
        },
    }


@dataclass
class Operator:
    controller: Controller
    repairs: NodeRepairs
    client: KubeClient
    clock: list[datetime]

    async def report(self, body: dict[str, Any]) -> None:
        if await self.controller.accept_report(NODE, body):
            await self.repairs.on_report(NODE)
        await self.controller.drain()

    async def sweep_after(self, seconds: float) -> None:
        """Time passes on the operator's clock, and its housekeeping re-judges every node."""
        self.clock[0] += timedelta(seconds=seconds)
        await self.repairs.sweep()
        await self.controller.drain()

    async def pods(self, backends: dict[str, str]) -> None:
        self.controller.slice_event("MODIFIED", DnsPods(backends).endpoint_slice())
        await self.controller.drain()

    async def restart_attempts(self) -> int:
        events, _ = await self.client.list(EVENTS, "default")
        return sum(int(e.get("count") or 1) for e in events if e["reason"] == RESTART_ATTEMPT)


@pytest.fixture
async def operator() -> AsyncIterator[Operator]:
    async with serve() as api:
        for path in sorted(CRDS.glob("*.yaml")):
            api.register_crd(yaml.safe_load(path.read_text()))
        async with KubeClient(Connection(server=str(api.url).rstrip("/"))) as client:
            clock = [T0]
            recorder = EventRecorder(client, "proxymedic-operator", "test")
            controller = Controller(client, recorder, clock=lambda: clock[0])
            policy = {
                "apiVersion": "proxymedic.io/v1alpha1",
                "kind": "ProxyHealthPolicy",
                "metadata": {"name": "coredns"},
                "spec": POLICY_SPEC,
            }
            await controller.policy_event("ADDED", policy)
            controller.service_event("ADDED", dns_service())
            controller.cluster.set_node(
                {"metadata": {"name": NODE, "uid": "uid-1", "labels": {}}}, deleted=False
            )
            yield Operator(controller, NodeRepairs.of(controller), client, clock)
            await controller.close()


@pytest.mark.emulator
async def test_a_report_sensed_before_a_backend_became_live_is_no_evidence(operator: Operator) -> None:
    await operator.pods({LIVE: "ready"})
    await operator.report(report(1, [LIVE]))
    await operator.sweep_after(5)
    await operator.pods({LIVE: "ready", NEW: "ready"})
    # The API server holds back the agent's next reports: the operator only has round 1, sensed
    # before NEW was live. It says nothing about NEW, however long it is kept.
    for _ in range(3):
        await operator.sweep_after(5)
    assert await operator.restart_attempts() == 0
    # Round 2, sensed after the change, still misses NEW: now it is a finding, and it ages.
    await operator.report(report(2, [LIVE]))
    assert await operator.restart_attempts() == 0, "kube-proxy gets staleAfter to program it first"
    await operator.sweep_after(10)
    assert await operator.restart_attempts() == 0, "then the minimum observation"
    await operator.sweep_after(2)
    assert await operator.restart_attempts() > 0


@pytest.mark.emulator
async def test_a_report_from_before_the_removal_was_applied_is_not_a_readd(operator: Operator) -> None:
    await operator.pods({LIVE: "ready", DEAD: "ready"})
    await operator.report(report(1, [LIVE, DEAD]))
    await operator.pods({LIVE: "ready"})
    # Round 2, sensed after DEAD left: its real server is stale; after the observation, removed.
    await operator.report(report(2, [LIVE, DEAD]))
    await operator.sweep_after(2)
    intents, _ = await operator.client.list(INTENTS)
    removal = next(i for i in intents if i["spec"]["nodeNames"] == [NODE])
    assert "RemoveRealServers" in removal["spec"]["steps"]
    # Round 3 was sensed before the agent applied the removal: the real server is still there.
    await operator.report(report(3, [LIVE, DEAD]))
    await operator.sweep_after(5)
    assert await operator.restart_attempts() == 0, "a removal ordered is not a removal done"
    # Round 4 verified it; round 5 sees the real server back: kube-proxy's cache is stale.
    applied = {
        "intent": removal["metadata"]["name"],
        "intentUid": removal["metadata"]["uid"],
        "outcome": "Applied",
        "completedAt": T0.isoformat(),
        "removedRealServers": 1,
        "verifiedRound": 4,
    }
    await operator.report(report(4, [LIVE], [applied]))
    assert await operator.restart_attempts() == 0
    await operator.report(report(5, [LIVE, DEAD], [applied]))
    assert await operator.restart_attempts() > 0, "re-added after a verified removal"


async def _service_removal_verified(operator: Operator) -> dict[str, Any]:
    """DEAD leaves; the Service's flush intent removes its real server; round 2 verifies it."""
    await operator.pods({LIVE: "ready", DEAD: "ready"})
    await operator.report(report(1, [LIVE, DEAD]))
    await operator.pods({LIVE: "ready"})
    intents, _ = await operator.client.list(INTENTS)
    flush = next(i for i in intents if i["spec"].get("allNodes"))
    assert "RemoveRealServers" in flush["spec"]["steps"]
    applied = {
        "intent": flush["metadata"]["name"],
        "intentUid": flush["metadata"]["uid"],
        "outcome": "Applied",
        "completedAt": T0.isoformat(),
        "removedRealServers": 1,
        "verifiedRound": 2,
    }
    await operator.report(report(2, [LIVE], [applied]))
    return applied


@pytest.mark.emulator
async def test_a_lagging_kube_proxy_that_puts_a_removed_real_server_back_once_is_not_restarted(
    operator: Operator,
) -> None:
    applied = await _service_removal_verified(operator)
    # A sync that began before kube-proxy saw DEAD leave writes it back; its next sync removes it.
    await operator.report(report(3, [LIVE, DEAD], [applied]))
    assert await operator.restart_attempts() == 0, "not evidence of a stale cache"
    await operator.report(report(4, [LIVE], [applied]))
    await operator.sweep_after(5)
    assert await operator.restart_attempts() == 0


@pytest.mark.emulator
async def test_a_real_server_put_back_after_the_service_flush_is_removed_again_before_any_restart(
    operator: Operator,
) -> None:
    applied = await _service_removal_verified(operator)
    await operator.report(report(3, [LIVE, DEAD], [applied]))
    await operator.sweep_after(2)
    # Back after the Service's removal: a stale real server again, not yet evidence.
    assert await operator.restart_attempts() == 0
    intents, _ = await operator.client.list(INTENTS)
    again = next(i for i in intents if i["spec"]["nodeNames"] == [NODE])
    assert "RemoveRealServers" in again["spec"]["steps"]
    # The ladder's own removal, verified, and the real server back once more: a stale cache.
    applied_again = {**applied, "intent": again["metadata"]["name"], "intentUid": again["metadata"]["uid"]}
    await operator.report(report(4, [LIVE], [applied, {**applied_again, "verifiedRound": 4}]))
    assert await operator.restart_attempts() == 0
    await operator.report(report(5, [LIVE, DEAD], [applied, {**applied_again, "verifiedRound": 4}]))
    await operator.sweep_after(1)  # the minimum observation, counted from the ladder's removal
    assert await operator.restart_attempts() > 0, "re-added after the ladder's verified removal"


def status(incarnation: str, round_: int) -> NodeProxyHealthStatus:
    return NodeProxyHealthStatus.model_validate(
        {"observedAt": T0.isoformat(), "incarnation": incarnation, "round": round_}
    )


DNS = ServiceRef("kube-system", "kube-dns")


@pytest.mark.unit
def test_rounds_order_reports_within_an_incarnation() -> None:
    evidence = Evidence()
    evidence.seen(NODE, status("a", 7), T0)
    evidence.backends_changed(DNS, [NEW], T0)
    assert not evidence.counts(NODE, status("a", 7), DNS, NEW), "the report held at the change"
    assert evidence.counts(NODE, status("a", 8), DNS, NEW)
    assert evidence.counts(NODE, status("a", 7), DNS, LIVE), "no change of LIVE: any report tells"
    assert not evidence.seen(NODE, status("a", 6), T0), "an older report of the incarnation is refused"
    assert not evidence.counts(NODE, NodeProxyHealthStatus(observed_at=T0), DNS, NEW), "no round, no order"


@pytest.mark.unit
def test_a_new_incarnation_counts_from_its_second_report_seen() -> None:
    evidence = Evidence()
    evidence.seen(NODE, status("a", 7), T0)
    evidence.backends_changed(DNS, [NEW], T0)
    evidence.seen(NODE, status("b", 1), T0)
    assert not evidence.counts(NODE, status("b", 1), DNS, NEW), "may have been sensed before the change"
    evidence.seen(NODE, status("b", 2), T0)
    assert evidence.counts(NODE, status("b", 2), DNS, NEW)


@pytest.mark.unit
def test_a_previous_incarnation_never_counts_against_a_later_change() -> None:
    evidence = Evidence()
    evidence.seen(NODE, status("a", 7), T0)
    evidence.seen(NODE, status("b", 1), T0)
    evidence.backends_changed(DNS, [NEW], T0)
    assert not evidence.counts(NODE, status("a", 7), DNS, NEW)
    assert not evidence.counts(NODE, status("a", 8), DNS, NEW), "a late write of the replaced agent"
    assert not evidence.counts(NODE, status("b", 1), DNS, NEW)
    evidence.seen(NODE, status("a", 8), T0)  # a rolling update overlapped them: b stays the current one
    assert evidence.counts(NODE, status("b", 2), DNS, NEW)


@pytest.mark.unit
def test_reports_before_a_restart_do_not_count_after_it() -> None:
    evidence = Evidence()
    evidence.seen(NODE, status("a", 3), T0)
    evidence.restarted(NODE)
    assert not evidence.counts(NODE, status("a", 3), None, None)
    assert evidence.counts(NODE, status("a", 4), None, None)


@pytest.mark.unit
def test_baselines_of_long_gone_backends_are_pruned() -> None:
    evidence = Evidence()
    evidence.backends_changed(DNS, [DEAD, LIVE], T0)
    evidence.prune({DNS: frozenset({LIVE})}, T0 + timedelta(hours=1))
    assert set(evidence.backends) == {DNS}
    assert set(evidence.backends[DNS]) == {LIVE}
    evidence.prune({}, T0 + timedelta(hours=1))  # the Service gone: nothing of it is left
    assert evidence.backends == {}
    assert Sensed("a", 2).after(Sensed("a", 1))
    assert not Sensed("b", 2).after(Sensed("a", 1))


@pytest.mark.unit
def test_an_older_version_of_an_endpoint_slice_is_not_taken_back() -> None:
    cluster = Cluster()
    before = DnsPods({DEAD: "ready"}).endpoint_slice()
    before["metadata"].update(uid="slice-1", generation=3)
    after = DnsPods({DEAD: "gone", NEW: "ready"}).endpoint_slice()
    after["metadata"].update(uid="slice-1", generation=4)
    assert cluster.set_slice(after, deleted=False, now=T0) == DNS
    # A lagging list serves generation 3 again: NEW must not turn dead (nor DEAD live) on it.
    assert cluster.set_slice(before, deleted=False, now=T0) is None
    assert cluster.endpoints[DNS].in_use() == {NEW}
    recreated = DnsPods({DEAD: "ready"}).endpoint_slice()
    recreated["metadata"].update(uid="slice-2", generation=1)
    assert cluster.set_slice(recreated, deleted=False, now=T0) == DNS, "a new slice of the same name"
    assert cluster.endpoints[DNS].in_use() == {DEAD}
