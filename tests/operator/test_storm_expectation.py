"""1,000 rollouts on a dual-stack, three-zone cluster: no false finding, no restart of a healthy kube-proxy.

The operator's own judgement, without I/O: its cluster state (``operator.state.Cluster``) takes
every Service, EndpointSlice and Node change as the watches deliver them, ``drift.detect`` judges
each node's report against the policy's selection, and the escalation ladder ages the findings.
The Services are the shapes that gave false findings before the judgement followed kube-proxy's
rules: dual-stack, ``internalTrafficPolicy: Local`` (single and dual stack), topology hints,
NodePorts with ``externalTrafficPolicy: Local``, named target ports. Each rollout replaces one pod
of one Service in three changes (surge, terminating, gone).

Each node's kube-proxy is healthy: after every change it has programmed what ``proxymedic
expect`` gives for some recent state (it lags 0 to 2 changes, at random). That is what a real
kube-proxy programs: the cluster tier's differential test checks the same function against
real kube-proxies (tests/cluster/test_differential.py).

- A node whose kube-proxy has caught up has no finding at all.
- A lagging node's findings name only real servers where its table and the expectation of the
  current state differ (a backend that changed, or one whose topology or locality did).
- No restart is ever proposed: a healthy kube-proxy catches up well within ``staleAfter``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.api.health import NodeProxyHealthStatus
from proxymedic.expectation import NodeExpectation, expect_from_objects
from proxymedic.operator.drift import detect
from proxymedic.operator.guardrails import ActionKind
from proxymedic.operator.state import Cluster
from tests.expectation.manifests import (
    NAMESPACE,
    NODE_NAMES,
    NODES,
    Manifest,
    endpoint,
    endpoint_slice,
    port,
    service,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(600)]

ROLLOUTS = 1_000
T0 = datetime(2030, 1, 1, tzinfo=UTC)
STALE_AFTER = timedelta(seconds=30)
MIN_OBSERVATION = timedelta(seconds=5)
CHANGE_EVERY = timedelta(seconds=1)
MAX_LAG = 2
"""Changes a healthy kube-proxy may be behind: its syncs take a while, never staleAfter."""

POLICY: dict[str, Any] = {
    "apiVersion": "proxymedic.io/v1alpha1",
    "kind": "ProxyHealthPolicy",
    "metadata": {"name": "storm"},
    "spec": {
        "services": {"namespaces": [NAMESPACE], "protocols": ["UDP", "TCP"]},
        "actions": {
            "flushStaleConnections": {"enabled": True},
            "removeStaleRealServers": {"enabled": True},
            "restartKubeProxy": {"enabled": True, "staleAfter": "30s"},
        },
        "guardrails": {"minObservation": "5s", "nodeCooldown": "0s"},
    },
}


@dataclass(frozen=True)
class Pod:
    v4: str
    v6: str
    node: str
    state: str = "ready"  # ready | terminating

    def endpoint(self, family: str, hints: bool) -> dict[str, Any]:
        terminating = self.state == "terminating"
        zone = endpoint(self.v4, self.node)["zone"]
        return endpoint(
            self.v4 if family == "IPv4" else self.v6,
            self.node,
            ready=not terminating,
            serving=True,
            terminating=terminating,
            zones=[zone] if hints else (),
        )


@dataclass(frozen=True)
class Shape:
    name: str
    ports: tuple[tuple[str, int, str, int | str, int | None], ...]
    """(name, port, protocol, targetPort, nodePort)"""
    ips: tuple[str, ...]
    spec: tuple[tuple[str, Any], ...] = ()
    type_: str = "ClusterIP"
    hints: bool = False
    listen: int = 53
    """The port the pods listen on: what the slices give a named targetPort."""


SHAPES = (
    Shape("storm-dual", (("dns", 53, "UDP", "dns", None),), ("10.96.50.1", "fd00:10:96::5001")),
    Shape(
        "storm-local",
        (("dns", 53, "UDP", 53, None),),
        ("10.96.50.2",),
        (("internalTrafficPolicy", "Local"),),
    ),
    Shape(
        "storm-local-dual",
        (("dns", 53, "UDP", 53, None), ("dns-tcp", 53, "TCP", 53, None)),
        ("10.96.50.3", "fd00:10:96::5003"),
        (("internalTrafficPolicy", "Local"),),
    ),
    Shape(
        "storm-zones",
        (("dns", 53, "UDP", "dns", None),),
        ("10.96.50.4",),
        (("trafficDistribution", "PreferClose"),),
        hints=True,
        listen=5353,
    ),
    Shape(
        "storm-nodeport-local",
        (("dns", 53, "UDP", 53, 30553),),
        ("10.96.50.5", "fd00:10:96::5005"),
        (("externalTrafficPolicy", "Local"),),
        type_="NodePort",
    ),
)


class Storm:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.counter = 0
        self.version = 0
        self.pods: dict[str, list[Pod]] = {shape.name: [self.new_pod() for _ in range(3)] for shape in SHAPES}

    def new_pod(self) -> Pod:
        self.counter += 1
        high, low = divmod(self.counter, 250)
        return Pod(
            f"10.244.{high}.{low + 1}", f"fd00:10:244::{self.counter:x}", self.random.choice(NODE_NAMES)
        )

    def services(self) -> list[Manifest]:
        return [
            service(
                shape.name,
                [port(n, p, proto, target=t, node_port=np) for n, p, proto, t, np in shape.ports],
                shape.ips,
                type_=shape.type_,
                spec=dict(shape.spec),
            )
            for shape in SHAPES
        ]

    def slices(self, shape: Shape) -> list[Manifest]:
        families = sorted({"IPv6" if ":" in ip else "IPv4" for ip in shape.ips})
        slice_ports = [
            (n, shape.listen if isinstance(t, str) else t, proto) for n, _, proto, t, _ in shape.ports
        ]
        result = []
        for family in families:
            self.version += 1
            manifest = endpoint_slice(
                shape.name,
                family.lower(),
                [pod.endpoint(family, shape.hints) for pod in self.pods[shape.name]],
                slice_ports,
                address_type=family,
            )
            manifest["metadata"]["resourceVersion"] = str(self.version)
            result.append(manifest)
        return result

    def snapshot(self) -> list[Manifest]:
        return [*self.services(), *(s for shape in SHAPES for s in self.slices(shape)), *NODES]


def expectations(objects: list[Manifest]) -> dict[str, NodeExpectation]:
    """What kube-proxy programs on each node for one state of the cluster."""
    return {node: expect_from_objects(objects, node) for node in NODE_NAMES}


def report(programmed: NodeExpectation, node: str, round_: int, now: datetime) -> NodeProxyHealthStatus:
    """What a node's agent reports when its kube-proxy has programmed ``programmed``."""
    return NodeProxyHealthStatus.model_validate(
        {
            "observedAt": now.isoformat(),
            "incarnation": f"agent-{node}",
            "round": round_,
            "proxyMode": "ipvs",
            "kubeProxy": {"freshness": "Fresh"},
            "virtualServers": [
                {
                    "vip": vs.address,
                    "port": vs.port,
                    "protocol": vs.protocol,
                    "realServers": [
                        {"ip": rs.address, "port": rs.port, "weight": 1} for rs in vs.real_servers
                    ],
                }
                for vs in programmed.virtual_servers
            ],
        }
    )


def table(expectation: NodeExpectation) -> set[tuple[str, int, str | None]]:
    """(virtual server address, port, real server address) of an expectation."""
    return {(vs.address, vs.port, rs.address) for vs in expectation.virtual_servers for rs in vs.real_servers}


def test_a_thousand_rollouts_give_no_false_finding_and_restart_nothing() -> None:
    storm = Storm(seed=20261202)
    cluster = Cluster()
    cluster.set_policy("storm", POLICY)
    for node in NODES:
        cluster.set_node(node, deleted=False)
    for obj in storm.services():
        cluster.set_service(obj, deleted=False)
    history: list[dict[str, NodeExpectation]] = []
    entry = cluster.policies["storm"]
    policy, ladder = entry.policy, entry.ladder
    assert policy is not None, entry.errors
    assert ladder is not None
    assert (ladder.program_grace, ladder.min_observation) == (STALE_AFTER, MIN_OBSERVATION)
    now = T0
    changes = 0
    caught_up = 0
    findings_while_lagging = 0

    def change(shape: Shape) -> None:
        nonlocal now, changes, caught_up, findings_while_lagging
        for obj in storm.slices(shape):
            cluster.set_slice(obj, deleted=False, now=now)
        history.append(expectations(storm.snapshot()))
        changes += 1
        now += CHANGE_EVERY
        selection = cluster.selected_vips(policy)
        for node in NODE_NAMES:
            lag = storm.random.randint(0, min(MAX_LAG, len(history) - 1))
            programmed = history[-1 - lag][node]
            status = report(programmed, node, changes, now)
            findings = detect(node, status, selection)
            if lag == 0:
                assert findings == [], f"change {changes}: {node} is up to date, yet {findings}"
                caught_up += 1
            else:
                differs = table(history[-1][node]) ^ table(programmed)
                false = [f for f in findings if (f.vip, f.port, f.backend) not in differs]
                assert not false, f"change {changes}: {node}, {lag} behind: findings where it agrees: {false}"
                findings_while_lagging += len(findings)
            ladder.observe(node, findings, now)
            steps = ladder.steps(node, findings, now)
            restarts = [step for step in steps if step.kind is ActionKind.RESTART_KUBE_PROXY]
            assert not restarts, f"change {changes}: a restart of {node}'s healthy kube-proxy: {restarts}"

    for shape in SHAPES:
        for obj in storm.slices(shape):
            cluster.set_slice(obj, deleted=False, now=now)
    history.append(expectations(storm.snapshot()))
    for _ in range(ROLLOUTS):
        shape = storm.random.choice(SHAPES)
        pods = storm.pods[shape.name]
        old = storm.random.randrange(len(pods))
        pods.append(storm.new_pod())  # surge: the new pod is ready
        change(shape)
        pods[old] = replace(pods[old], state="terminating")
        change(shape)
        del pods[old]
        change(shape)

    assert changes == 3 * ROLLOUTS
    # Both halves of the claim were exercised: nodes up to date, and nodes behind with findings.
    assert caught_up > ROLLOUTS
    assert findings_while_lagging > ROLLOUTS
