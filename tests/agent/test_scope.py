"""Sensing and repairs cost what they look at: a scope of virtual servers, not the node's table."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

import pytest

from proxymedic.agent.executor import execute
from proxymedic.agent.sensing import LocalFindings, SenseSettings, sense
from proxymedic.dataplane.types import ConnectionCounts, Endpoint, L4Protocol, ServiceKey, VirtualService
from proxymedic.sim.kernel import ModelledNode
from tests.agent.test_executor import DNS, flush_intent, node

pytestmark = pytest.mark.unit

OTHER_UDP = ServiceKey(L4Protocol.UDP, ipaddress.ip_address("10.96.5.5"), 5353)
OTHER_TCP = ServiceKey(L4Protocol.TCP, ipaddress.ip_address("10.96.5.6"), 80)


class Recording:
    """Records which virtual services each adapter call asked for."""

    def __init__(self, model: ModelledNode) -> None:
        self.model = model
        self.dumps = 0
        self.gets: list[list[ServiceKey]] = []
        self.counted: list[Collection[ServiceKey] | None] = []

    def list_services(self) -> list[VirtualService]:
        self.dumps += 1
        return self.model.list_services()

    def get_services(self, keys: Collection[ServiceKey]) -> list[VirtualService]:
        self.gets.append(list(keys))
        return self.model.get_services(keys)

    def connection_counts(self, services: Collection[ServiceKey] | None = None) -> list[ConnectionCounts]:
        self.counted.append(services)
        return self.model.connection_counts(services)

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)


def _with_unselected(model: ModelledNode) -> None:
    for key in (OTHER_UDP, OTHER_TCP):
        model.add_service(key)
        model.add_real_server(key, Endpoint(ipaddress.ip_address("10.244.7.7"), key.port))
    model.send_udp((ipaddress.ip_address("10.244.9.8"), 41000), OTHER_UDP.vip, OTHER_UDP.port)


async def test_a_scoped_round_senses_only_its_virtual_servers() -> None:
    dataplane, model = node()
    _with_unselected(model)
    recording = Recording(model)
    dataplane.ipvs = dataplane.connections = recording  # type: ignore[assignment]

    whole = await sense(dataplane, SenseSettings(), LocalFindings(), "test")
    assert recording.dumps == 1
    assert {(vs.vip, vs.port) for vs in whole.virtual_servers} == {("10.96.0.10", 53), ("10.96.5.5", 5353)}

    scoped = await sense(dataplane, SenseSettings(virtual_servers=frozenset({DNS})), LocalFindings(), "test")
    assert recording.dumps == 1, "a scoped round never dumps the table"
    assert recording.gets == [[DNS]]
    assert recording.counted[-1] == frozenset({DNS})
    [vs] = scoped.virtual_servers
    assert (vs.vip, vs.port) == ("10.96.0.10", 53)
    assert {rs.ip for rs in vs.real_servers} == {"10.244.1.5", "10.244.2.7"}
    assert sum(rs.connections for rs in vs.real_servers) == 4


async def test_a_scope_naming_an_absent_virtual_server_reports_it_absent() -> None:
    dataplane, _ = node()
    absent = ServiceKey(L4Protocol.UDP, ipaddress.ip_address("10.96.9.9"), 53)
    report = await sense(dataplane, SenseSettings(virtual_servers=frozenset({absent})), LocalFindings(), "t")
    assert report.virtual_servers == []
    assert report.problems == []


async def test_a_flush_intent_reads_only_its_services() -> None:
    dataplane, model = node()
    _with_unselected(model)
    recording = Recording(model)
    dataplane.ipvs = dataplane.connections = recording  # type: ignore[assignment]
    result = await execute(flush_intent(), dataplane)
    assert result.outcome == "Applied", result.message
    assert recording.dumps == 0
    assert recording.gets == [[DNS]]
    assert all(asked is not None and set(asked) <= {DNS} for asked in recording.counted)
