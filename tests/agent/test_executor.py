"""The agent applies intents through the adapters, verifies them, and never touches a live backend."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from typing import Any

import pytest

from proxymedic.agent.agent import AgentSettings, NodeAgent
from proxymedic.agent.executor import execute
from proxymedic.agent.liveness import InUse
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.runner import AgentRunner
from proxymedic.api.health import ProxyMode
from proxymedic.api.intent import IntentOutcome, RemediationIntent
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.dataplane.types import Endpoint, L4Protocol, ServiceKey
from proxymedic.expectation import NodeExpectation, RealServer, VirtualServer
from proxymedic.kube.client import ApiError
from proxymedic.sim.kernel import ModelConfig, ModelledNode
from proxymedic.sim.waiting import until
from tests.unit.factories import intent, with_change

pytestmark = pytest.mark.unit

VIP = ipaddress.ip_address("10.96.0.10")
DEAD, LIVE = ipaddress.ip_address("10.244.1.5"), ipaddress.ip_address("10.244.2.7")
DNS = ServiceKey(L4Protocol.UDP, VIP, 53)
NOW = datetime(2026, 11, 22, 10, 0, 5, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now

    async def pause(self, seconds: float) -> None:
        self.now += seconds


def modelled(model: ModelledNode, clock: Clock, **extra: Any) -> NodeDataplane:
    """The agent's view of a modelled node: every adapter is the model, on the model's clock."""

    async def probe() -> KubeProxyObservation:
        return KubeProxyObservation(observed_at=clock())

    return NodeDataplane(
        ipvs=model,
        connections=model,
        conntrack=model,
        sysctls=model,
        probe=probe,
        clock=clock,
        pause=clock.pause,
        **extra,
    )


def node(
    expire_nodest_conn: int = 1, stale_rs: bool = True, clients: int = 3
) -> tuple[NodeDataplane, ModelledNode]:
    clock = Clock()
    model = ModelledNode(clock, ModelConfig(expire_nodest_conn=expire_nodest_conn), alive=[DEAD, LIVE])
    model.add_service(DNS)
    model.add_real_server(DNS, Endpoint(DEAD, 53))
    for port in range(clients):  # flows pinned to the soon-dead backend
        model.send_udp((ipaddress.ip_address("10.244.9.9"), 40000 + port), VIP, 53)
    model.add_real_server(DNS, Endpoint(LIVE, 53))
    model.send_udp((ipaddress.ip_address("10.244.9.9"), 50000), VIP, 53)  # round robin: to LIVE
    model.set_alive(DEAD, False)
    if not stale_rs:
        model.remove_real_server(DNS, Endpoint(DEAD, 53))  # kube-proxy did its part (with expire 0)
    return modelled(model, clock), model


def flush_intent(**changes: Any) -> RemediationIntent:
    raw = intent(
        liveBackends=["10.244.2.7"], decidedAt="2026-11-22T10:00:00Z", expiresAt="2026-11-22T10:10:00Z"
    )
    raw["metadata"]["uid"] = "uid-1"
    for field, value in changes.items():
        raw = with_change(raw, f"spec.{field}", value)
    return RemediationIntent.model_validate(raw)


def connections_to(model: ModelledNode, ip: Any) -> int:
    return sum(c.count for c in model.connection_counts() if c.destination.ip == ip)


async def test_removes_the_stale_real_server_and_verifies_the_flush() -> None:
    dp, model = node()
    result = await execute(flush_intent(), dp)
    assert result.outcome is IntentOutcome.APPLIED, result.message
    assert result.removed_real_servers == 1
    assert result.flushed_connections == 3
    assert connections_to(model, DEAD) == 0
    assert connections_to(model, LIVE) == 1, "the live backend's flow is untouched"
    assert [rs.endpoint.ip for vs in model.list_services() for rs in vs.real_servers] == [LIVE]


async def test_without_ipvs_the_conntrack_step_is_the_repair() -> None:
    """iptables or nftables mode: the IPVS steps do not apply (a note, not a failure), and the
    conntrack entries that pin the clients to the dead backend are deleted."""
    clock = Clock()
    model = ModelledNode(clock, ModelConfig(iptables_mode=True), alive=[DEAD, LIVE])
    model.add_service(DNS)
    model.add_real_server(DNS, Endpoint(DEAD, 53))
    clients = [(ipaddress.ip_address("10.244.9.9"), 40000 + port) for port in range(3)]
    assert [model.send_udp(client, VIP, 53) for client in clients] == [Endpoint(DEAD, 53)] * 3
    model.set_alive(DEAD, False)
    model.set_endpoints(DNS, [Endpoint(LIVE, 53)])  # kube-proxy's rules are right; the entries pin
    assert model.send_udp(clients[0], VIP, 53) is None
    dp = modelled(model, clock)
    result = await execute(flush_intent(), dp)
    assert result.outcome is IntentOutcome.APPLIED, result.message
    assert result.deleted_conntrack_entries == 3
    assert "IPVS steps not applicable: no IPVS on this node" in result.message
    assert [model.send_udp(client, VIP, 53) for client in clients] == [Endpoint(LIVE, 53)] * 3
    again = await execute(flush_intent(), dp)
    assert again.outcome is IntentOutcome.ALREADY_CLEAN, again.message


async def test_flushes_connections_of_a_removed_real_server_proactively() -> None:
    dp, model = node(stale_rs=False, expire_nodest_conn=0)
    model.write(
        "net.ipv4.vs.expire_nodest_conn", 1
    )  # fixed since; the entries stayed (docs/kernel.md, row D3)
    assert connections_to(model, DEAD) == 3
    result = await execute(flush_intent(steps=["FlushConnections"]), dp)
    assert result.outcome is IntentOutcome.APPLIED, result.message
    assert result.flushed_connections == 3
    assert connections_to(model, DEAD) == 0


async def test_applying_twice_is_harmless() -> None:
    dp, _ = node()
    await execute(flush_intent(), dp)
    again = await execute(flush_intent(), dp)
    assert again.outcome is IntentOutcome.ALREADY_CLEAN
    assert again.message == "nothing to do"


async def test_dry_run_changes_nothing_and_says_what_it_would_do() -> None:
    dp, model = node()
    result = await execute(flush_intent(dryRun=True), dp)
    assert result.outcome is IntentOutcome.DRY_RUN
    assert "would remove real server 10.244.1.5:53" in result.message
    assert result.removed_real_servers == 1
    assert connections_to(model, DEAD) == 3


async def test_expire_nodest_conn_zero_is_a_failure_with_the_reason() -> None:
    dp, model = node(expire_nodest_conn=0)
    result = await execute(flush_intent(), dp)
    assert result.outcome is IntentOutcome.FAILED
    assert "net.ipv4.vs.expire_nodest_conn is 0" in result.message
    assert "enforceSysctls" in result.message
    assert [rs.endpoint.ip for vs in model.list_services() for rs in vs.real_servers] == [LIVE], (
        "the stale real server is still removed: new flows stop going to it"
    )


async def test_flush_without_removal_refuses_while_the_real_server_is_present() -> None:
    dp, model = node()
    result = await execute(flush_intent(steps=["FlushConnections"]), dp)
    assert result.outcome is IntentOutcome.REFUSED
    assert "does not allow removing it" in result.message
    assert connections_to(model, DEAD) == 3


async def test_never_touches_a_backend_listed_as_live() -> None:
    dp, model = node()
    raw = intent(deadBackends=["10.244.1.5"], liveBackends=["10.244.2.7"])
    bad = RemediationIntent.model_construct(  # bypass the model's own check: defence in depth
        metadata=RemediationIntent.model_validate(raw).metadata,
        spec=RemediationIntent.model_validate(raw).spec.model_copy(update={"live_backends": ["10.244.1.5"]}),
    )
    result = await execute(bad, dp)
    assert result.outcome is IntentOutcome.REFUSED
    assert connections_to(model, DEAD) == 3


async def test_sysctls_are_set_and_read_back() -> None:
    dp, model = node(expire_nodest_conn=0)
    result = await execute(
        flush_intent(
            action="EnforceSysctls", steps=[], parameters={"sysctls": {"net.ipv4.vs.expire_nodest_conn": 1}}
        ),
        dp,
    )
    assert result.outcome is IntentOutcome.APPLIED
    assert result.message == "set net.ipv4.vs.expire_nodest_conn from 0 to 1"
    assert model.read("net.ipv4.vs.expire_nodest_conn") == 1


async def test_udp_timeout_is_set_for_new_entries_only() -> None:
    dp, model = node()
    result = await execute(
        flush_intent(action="SetIPVSUDPTimeout", steps=[], parameters={"udpTimeoutSeconds": 30}), dp
    )
    assert result.outcome is IntentOutcome.APPLIED
    assert "from 300s to 30s (new entries only" in result.message
    assert model.get_timeouts().udp == 30


async def test_udp_timeout_without_ipvs_is_refused_not_failed() -> None:
    dp, _ = node()
    dp.ipvs = ModelledNode(Clock(), ModelConfig(iptables_mode=True))
    result = await execute(
        flush_intent(action="SetIPVSUDPTimeout", steps=[], parameters={"udpTimeoutSeconds": 30}), dp
    )
    assert result.outcome is IntentOutcome.REFUSED, result.message
    assert result.message == "no IPVS on this node"


async def test_the_agent_skips_intents_for_other_nodes_expired_or_malformed() -> None:
    dp, model = node()
    agent = NodeAgent(AgentSettings(node_name="node-1"), dp)
    other = flush_intent(allNodes=False, nodeNames=["node-2"])
    assert await agent.on_intent(other.model_dump(mode="json", by_alias=True)) is None
    expired = flush_intent(expiresAt="2026-11-22T10:00:01Z")
    assert await agent.on_intent(expired.model_dump(mode="json", by_alias=True)) is None
    assert await agent.on_intent({"metadata": {"name": "broken"}, "spec": {"action": 7}}) is None
    assert connections_to(model, DEAD) == 3
    mine = flush_intent()
    result = await agent.on_intent(mine.model_dump(mode="json", by_alias=True))
    assert result is not None
    assert result.outcome is IntentOutcome.APPLIED
    assert await agent.on_intent(mine.model_dump(mode="json", by_alias=True)) is None, "applied once"
    assert [r.intent for r in agent.recent_results()] == ["kube-dns-flush-1"]


async def test_keeps_a_backend_kube_proxy_uses_now_though_the_intent_calls_it_dead() -> None:
    """An old intent (replayed after an agent restart, or superseded) never removes the real
    server of a backend that is ready now."""
    dp, model = node()
    result = await execute(flush_intent(), dp, InUse(frozenset({str(DEAD), str(LIVE)})))
    assert result.outcome is IntentOutcome.ALREADY_CLEAN
    assert "kept 10.244.1.5: kube-proxy uses it now" in result.message
    assert connections_to(model, DEAD) == 3
    assert {rs.endpoint.ip for vs in model.list_services() for rs in vs.real_servers} == {DEAD, LIVE}


async def test_a_backend_gone_from_the_slices_is_flushed() -> None:
    dp, model = node()
    result = await execute(flush_intent(), dp, InUse(frozenset({str(LIVE)})))
    assert result.outcome is IntentOutcome.APPLIED, result.message
    assert connections_to(model, DEAD) == 0


async def test_a_terminating_udp_backend_is_flushed_as_kube_proxy_would() -> None:
    """kube-proxy deletes a UDP real server as soon as its endpoint terminates beside ready ones."""
    dp, model = node()
    result = await execute(flush_intent(), dp, InUse(frozenset({str(LIVE)}), frozenset({str(DEAD)})))
    assert result.outcome is IntentOutcome.APPLIED, result.message
    assert connections_to(model, DEAD) == 0


async def test_the_agent_does_not_act_when_it_cannot_tell_what_is_live_now() -> None:
    dp, model = node()

    async def unreachable(namespace: str, name: str) -> InUse:
        raise ConnectionError("API server unreachable")

    agent = NodeAgent(AgentSettings(node_name="node-1"), dp, live_now=unreachable)
    raw = flush_intent().model_dump(mode="json", by_alias=True)
    assert await agent.on_intent(raw) is None
    assert connections_to(model, DEAD) == 3, "unknown is never a reason to act"

    async def reachable(namespace: str, name: str) -> InUse:
        assert (namespace, name) == ("kube-system", "kube-dns")
        return InUse(frozenset({str(LIVE)}))

    agent.live_now = reachable
    result = await agent.on_intent(raw)
    assert result is not None
    assert result.outcome is IntentOutcome.APPLIED, "retried on the next delivery"
    assert connections_to(model, DEAD) == 0


class SlicesUnreadable:
    """The API as an agent's runner sees it: its EndpointSlice reads refused ``failures`` times
    (429, the API server's priority and fairness), then answered."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reads = 0

    async def list(self, resource: Any, namespace: str | None = None, **_: Any) -> tuple[list[Any], str]:
        self.reads += 1
        if self.reads <= self.failures:
            raise ApiError(429, "TooManyRequests", "Too many requests, please try again later.", 0.0)
        endpoint = {"addresses": [str(LIVE)], "conditions": {"ready": True}}
        return [{"metadata": {"name": "kube-dns-1"}, "endpoints": [endpoint]}], "1"


async def test_an_intent_whose_slices_could_not_be_read_is_read_again_until_applied() -> None:
    dp, model = node()
    api = SlicesUnreadable(failures=2)
    agent = NodeAgent(AgentSettings(node_name="node-1"), dp)
    runner = AgentRunner(api, agent)  # type: ignore[arg-type]  # only its list is used here
    raw = flush_intent().model_dump(mode="json", by_alias=True)
    await runner.handle("ADDED", raw)
    assert connections_to(model, DEAD) == 3, "unknown is never a reason to act"
    assert "uid-1" in agent.unread
    async with asyncio.timeout(30):  # the watch delivers an intent once: the runner reads again
        await until(lambda: bool(agent.recent_results()))
    assert api.reads == 3
    assert agent.recent_results()[0].outcome is IntentOutcome.APPLIED
    assert connections_to(model, DEAD) == 0
    assert not agent.unread


async def test_a_draining_tcp_backend_keeps_its_real_server() -> None:
    """kube-proxy keeps a terminating TCP real server at weight 0 until its connections end."""
    dp, model = node()
    dns_tcp = ServiceKey(L4Protocol.TCP, VIP, 53)
    model.add_service(dns_tcp)
    model.add_real_server(dns_tcp, Endpoint(DEAD, 53))
    ports = [
        {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
        {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 53},
    ]
    tcp_intent = flush_intent(**{"service.ports": ports})
    result = await execute(tcp_intent, dp, InUse(frozenset({str(LIVE)}), frozenset({str(DEAD)})))
    assert "kept 10.244.1.5: it is draining now" in result.message
    assert result.removed_real_servers == 0
    assert any(rs.endpoint.ip == DEAD for vs in model.list_services() for rs in vs.real_servers)


async def test_reports_carry_the_round_and_results_the_round_that_verified_them() -> None:
    dp, _ = node()
    agent = NodeAgent(AgentSettings(node_name="node-1"), dp)
    before = await agent.observe()
    assert (before.incarnation, before.round, before.recent_results) == (agent.incarnation, 1, [])
    result = await agent.on_intent(flush_intent().model_dump(mode="json", by_alias=True))
    assert result is not None
    assert result.verified_round is None, "applied, not yet sensed"
    verifying = await agent.observe()
    assert verifying.round == 2
    assert [(r.intent, r.verified_round) for r in verifying.recent_results] == [("kube-dns-flush-1", 2)]
    later = await agent.observe()
    assert (later.round, later.recent_results[0].verified_round) == (3, 2)
    restarted = NodeAgent(AgentSettings(node_name="node-1"), dp)
    assert restarted.incarnation != agent.incarnation
    assert (await restarted.observe()).round == 1


def rule_mode_node(
    sync_after: float | None,
) -> tuple[NodeDataplane, ModelledNode, Clock, list[tuple[Any, int]]]:
    """An iptables-mode node whose clients are pinned to DEAD by conntrack, and whose kube-proxy
    rewrites its rules ``sync_after`` seconds from now (None: never, it is stalled)."""
    clock = Clock()
    model = ModelledNode(clock, ModelConfig(iptables_mode=True), alive=[DEAD, LIVE])
    model.add_service(DNS)
    model.add_real_server(DNS, Endpoint(DEAD, 53))
    clients = [(ipaddress.ip_address("10.244.9.9"), 40000 + port) for port in range(3)]
    for client in clients:
        model.send_udp(client, VIP, 53)
    model.set_alive(DEAD, False)
    synced_at = None if sync_after is None else clock() + sync_after

    def rules(mode: ProxyMode) -> NodeExpectation:
        synced = synced_at is not None and clock() >= synced_at
        if synced:
            model.set_endpoints(DNS, [Endpoint(LIVE, 53)])
        backend = LIVE if synced else DEAD
        vs = VirtualServer(str(VIP), 53, "UDP", (RealServer(str(backend), 53),))
        return NodeExpectation("node-1", (vs,), str(mode))

    return modelled(model, clock, rules=rules, proxy_mode=ProxyMode.IPTABLES), model, clock, clients


async def test_a_rule_mode_flush_waits_for_kube_proxys_rules() -> None:
    """Flushed while kube-proxy's rules still name the dead backend, the next packet is DNATed to it
    again; the agent waits until the rules have moved on, then flushes: the clients move."""
    dp, model, clock, clients = rule_mode_node(sync_after=0.5)
    started = clock()
    result = await execute(flush_intent(), dp)
    assert result.outcome is IntentOutcome.APPLIED, result.message
    assert result.deleted_conntrack_entries == 3
    assert 0.5 <= clock() - started < 1.0
    assert [model.send_udp(client, VIP, 53) for client in clients] == [Endpoint(LIVE, 53)] * 3


async def test_without_the_wait_the_flush_is_undone_by_the_old_rules() -> None:
    """The same node judged as not in a rule mode (its mode unknown): no wait, and the clients'
    next packets go to the dead backend again; what the wait is for."""
    dp, model, _, clients = rule_mode_node(sync_after=0.5)
    dp.proxy_mode = ProxyMode.UNKNOWN
    result = await execute(flush_intent(), dp)
    assert result.deleted_conntrack_entries == 3
    assert [model.send_udp(client, VIP, 53) for client in clients] == [None] * 3


async def test_a_stalled_kube_proxys_rules_are_waited_for_then_flushed_anyway() -> None:
    dp, _, clock, _ = rule_mode_node(sync_after=None)
    started = clock()
    result = await execute(flush_intent(), dp)
    assert result.outcome is IntentOutcome.APPLIED, result.message
    assert result.deleted_conntrack_entries == 3
    assert clock() - started == pytest.approx(3.0, abs=0.15)
    assert "kube-proxy's iptables rules still send traffic to 10.244.1.5 after 3 s: flushed anyway" in (
        result.message
    )
