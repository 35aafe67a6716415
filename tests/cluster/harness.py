"""The CoreDNS Service on the real API server, and one measured run of a scenario.

No controller-manager runs: the tests create the Service, the Node and the EndpointSlice
themselves (managed-by label of their own) and publish each pod's conditions as the
EndpointSlice controller would. A ``Run`` starts pods and clients with fresh IPs and source
ports, so nothing of an earlier run (IPVS or conntrack entries) is reused, and measures every
query: lost per client and the time from the first disruptive step to the last loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.cluster import netlab
from tests.cluster.kubeproxy import NODE
from tests.cluster.netlab import Clients, Pod, wait_for
from tests.realk8s.controlplane import ControlPlane

DNS_NAMESPACE, DNS_SERVICE = "kube-system", "kube-dns"
SLICE = f"{DNS_SERVICE}-tests"
SLICE_PATH = f"/apis/discovery.k8s.io/v1/namespaces/{DNS_NAMESPACE}/endpointslices/{SLICE}"
POLICY_NAME = "cluster-dns"
POLICY_PATH = f"/apis/proxymedic.io/v1alpha1/proxyhealthpolicies/{POLICY_NAME}"
INTERVAL = 0.1
POLICY: dict[str, Any] = {
    "apiVersion": "proxymedic.io/v1alpha1",
    "kind": "ProxyHealthPolicy",
    "metadata": {"name": POLICY_NAME},
    "spec": {
        "services": {
            "namespaces": [DNS_NAMESPACE],
            "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "protocols": ["UDP"],
        },
        "actions": {
            "flushStaleConnections": {"enabled": True},
            "removeStaleRealServers": {"enabled": True},
            "flushStaleConntrack": {"enabled": True},
            "enforceSysctls": {"enabled": True},
            # kube-proxy's syncs take 18 to 45 s on the VM's emulated CPU: a shorter staleAfter
            # would call a healthy kube-proxy that is still programming a new pod stale.
            "restartKubeProxy": {"enabled": True, "staleAfter": "2m"},
        },
        "guardrails": {"dryRun": False, "minObservation": "5s", "nodeCooldown": "1m"},
    },
}


def base_objects() -> list[dict[str, Any]]:
    """The node, the CoreDNS Service (no selector: no controller would fill it) and its slice."""
    port = {"name": "dns", "protocol": "UDP", "port": 53}
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": DNS_SERVICE, "namespace": DNS_NAMESPACE, "labels": {"k8s-app": "kube-dns"}},
            "spec": {"clusterIP": netlab.VIP, "ports": [{**port, "targetPort": 53}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": SLICE,
                "namespace": DNS_NAMESPACE,
                "labels": {
                    "kubernetes.io/service-name": DNS_SERVICE,
                    "endpointslice.kubernetes.io/managed-by": "proxymedic-cluster-tests",
                },
            },
            "addressType": "IPv4",
            "ports": [port],
            "endpoints": [],
        },
    ]


def _endpoint(pod: Pod, state: str) -> dict[str, Any]:
    ready = state == "ready"
    return {
        "addresses": [pod.ip],
        "conditions": {"ready": ready, "serving": True, "terminating": not ready},
        "nodeName": NODE,
        "targetRef": {"kind": "Pod", "namespace": DNS_NAMESPACE, "name": pod.name},
    }


def events_since(plane: ControlPlane, since: float, reason: str | None = None) -> list[dict[str, Any]]:
    """Events (all namespaces) last seen at or after ``since``, optionally of one reason."""
    query = f"?fieldSelector=reason%3D{reason}" if reason else ""
    status, body = plane.request("GET", f"/api/v1/events{query}")
    assert status == 200, body
    found = []
    for event in body["items"]:
        stamp = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"]["creationTimestamp"]
        if datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() >= int(since):
            found.append(event)
    return found


@dataclass
class Outcome:
    scenario: str
    proxymedic: bool
    lost: dict[int, int]
    sent: dict[int, int]
    recovery_s: float | None
    still_failing: bool
    on_replaced: list[int]
    reasons: dict[str, int]
    started: float
    lost_after_slice: dict[int, int] | None = None
    """Queries lost that were sent after the last pod to go left the EndpointSlice: what is lost
    once anything that watches the slice (kube-proxy, ProxyMedic) could know."""

    def row(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "proxymedic": self.proxymedic,
            "lost_per_client": [self.lost[p] for p in sorted(self.lost)],
            "queries_per_client": [self.sent[p] for p in sorted(self.sent)],
            "clients_on_replaced_pods": len(self.on_replaced),
            "time_to_recovery_s": None if self.recovery_s is None else round(self.recovery_s, 1),
            "still_failing_at_end": self.still_failing,
            "events": self.reasons,
            **(
                {"lost_after_slice_change": [self.lost_after_slice[p] for p in sorted(self.lost_after_slice)]}
                if self.lost_after_slice is not None
                else {}
            ),
        }


@dataclass
class Run:
    """One scenario run: pods, clients and the measurement."""

    plane: ControlPlane
    clients: Clients
    first_ip: int
    pods: dict[str, Pod] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    t0: float | None = None
    last_step: float = 0.0
    slice_changed_at: float | None = None
    """When the scenario's last pod to go left the EndpointSlice (set by the scenario)."""
    killed: list[str] = field(default_factory=list)
    """Addresses of the pods the scenario killed outright."""
    node_ns: str | None = None
    """The node's network namespace; None: this one (the VM)."""
    programmed: Callable[[], set[str]] = field(default=lambda: set(netlab.real_servers()))
    """The backends kube-proxy programmed for the VIP: IPVS's real servers, or what its rules DNAT to."""
    _next: int = 0

    @property
    def next_ip(self) -> int:
        """The last octet of the address the run's next pod takes."""
        return self.first_ip + self._next

    def pod(self, lameduck: float = 5.0) -> Pod:
        """A new CoreDNS pod; on SIGTERM it answers for ``lameduck`` seconds (CoreDNS's default 5 s)."""
        assert self.next_ip < 255, "the runs have used every address of 10.244.1.0/24"
        pod = Pod(f"coredns-{self.next_ip:03d}", f"10.244.1.{self.next_ip}", node_ns=self.node_ns)
        self._next += 1
        pod.start(lameduck)
        self.pods[pod.name] = pod
        return pod

    def publish(self, **states: str) -> None:
        """Set pods' states (ready, terminating, gone) in the EndpointSlice, as its controller would."""
        self.states.update(states)
        endpoints = [_endpoint(self.pods[n], s) for n, s in self.states.items() if s != "gone"]
        status, body = self.plane.request(
            "PATCH", SLICE_PATH, {"endpoints": endpoints}, content_type="application/merge-patch+json"
        )
        assert status == 200, body

    def ready_ips(self) -> set[str]:
        return {self.pods[n].ip for n, s in self.states.items() if s == "ready"}

    def wait_programmed(self, timeout: float = 180.0) -> None:
        """Until kube-proxy programmed exactly the ready pods for the VIP."""
        want = self.ready_ips()
        wait_for(
            f"kube-proxy to program real servers {sorted(want)}", lambda: self.programmed() == want, timeout
        )

    def start(self, pods: int = 2) -> None:
        for _ in range(pods):
            self.publish(**{self.pod().name: "ready"})
        self.wait_programmed()
        self.clients.start()
        wait_for(
            "every client to get an answer through the VIP",
            lambda: (s := self.clients.status()) and all(c["backend"] for c in s.values()),
            180,
        )
        self.started = time.time()

    def step(self) -> float:
        now = time.time()
        self.t0 = self.t0 or now
        self.last_step = now
        return now

    def backends(self) -> dict[int, str | None]:
        return {port: c["backend"] for port, c in self.clients.status().items()}

    def settle(self, quiet: float = 3.0, cap: float = 15.0, since: float = 0.0) -> bool:
        """Until every client has answered for ``quiet`` seconds since its last loss, the last step
        and ``since`` (when the scenario's last action ended: what it did after its last step, a
        pod's exit or kill, may cost queries that count as lost only ``--lost-after`` later), or
        ``cap`` seconds after the later of the two; True when they did."""
        start = max(self.last_step, since)

        def quiet_now() -> bool:
            status = self.clients.status()
            return bool(status) and all(
                (c["last_answer_sent_at"] or 0) - max(c["last_lost_sent_at"] or 0, start) >= quiet
                for c in status.values()
            )

        deadline = start + cap
        while time.time() < deadline:
            if quiet_now():
                return True
            time.sleep(0.25)
        return False

    def finish(self, scenario: str, proxymedic: bool, on_replaced: list[int]) -> Outcome:
        rows = self.clients.stop()
        for pod in self.pods.values():
            pod.kill()
        lost: dict[int, int] = {}
        last_lost: list[float] = []
        failing = False
        for port, queries in rows.items():
            counted = [q for q in queries if q[1] >= self.started]
            missed = [q for q in counted if q[2] is None]
            lost[port] = len(missed)
            if missed:
                last_lost.append(missed[-1][1])
                failing = failing or counted[-1][2] is None
        recovery = None if not last_lost or self.t0 is None else max(last_lost) + INTERVAL - self.t0
        reasons: dict[str, int] = {}
        for event in events_since(self.plane, self.started):
            if "proxymedic" in str(
                event.get("reportingComponent") or event.get("source", {}).get("component")
            ):
                key = f"{event['type']}/{event['reason']}"
                reasons[key] = reasons.get(key, 0) + int(event.get("count") or 1)
        return Outcome(
            scenario,
            proxymedic,
            lost,
            {port: len([q for q in queries if q[1] >= self.started]) for port, queries in rows.items()},
            recovery,
            failing,
            on_replaced,
            reasons,
            self.started,
            None
            if self.slice_changed_at is None
            else {
                port: sum(1 for q in queries if q[1] >= self.slice_changed_at and q[2] is None)
                for port, queries in rows.items()
            },
        )
