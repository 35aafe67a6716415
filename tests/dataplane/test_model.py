"""The modelled dataplane against the measured kernel table of docs/kernel.md (rows A, B, C, D1-D6) and F5.

Topology as measured: VIP 10.96.0.10:53/UDP, backends 1 and 2, one client re-using one
source port. "Stale" means: the client's flow went to backend 1, backend 1 died, and
(unless the case says otherwise) its real server was removed.
"""

from __future__ import annotations

import ipaddress

import pytest

from proxymedic.dataplane import sysctl
from proxymedic.dataplane.procfs import parse_ip_vs_conn_text
from proxymedic.dataplane.types import (
    ConnectionTable,
    ConntrackAdapter,
    DataplaneError,
    DataplanePermissionError,
    DataplaneUnavailableError,
    Endpoint,
    IPVSAdapter,
    IPVSTimeouts,
    L4Protocol,
    ServiceKey,
    SysctlAdapter,
)
from proxymedic.sim.kernel import ModelConfig, ModelledNode, Outcome

pytestmark = pytest.mark.unit

ip = ipaddress.ip_address
VIP = ip("10.96.0.10")
DNS = ServiceKey(L4Protocol.UDP, VIP, 53)
BACKEND_1 = Endpoint(ip("10.244.1.2"), 53)
BACKEND_2 = Endpoint(ip("10.244.2.3"), 53)
CLIENT = (ip("10.0.0.5"), 40000)


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def make_node(clock: VirtualClock, **config: object) -> ModelledNode:
    node = ModelledNode(clock, ModelConfig(**config), alive=[BACKEND_1.ip, BACKEND_2.ip])  # type: ignore[arg-type]
    node.add_service(DNS)
    node.add_real_server(DNS, BACKEND_1)
    node.add_real_server(DNS, BACKEND_2)
    return node


def go_stale(node: ModelledNode, clock: VirtualClock, remove: bool = True) -> None:
    """Pin the client's flow to backend 1, kill backend 1 and (by default) remove its real server."""
    assert node.send_udp(CLIENT, VIP, 53) == BACKEND_1
    clock.tick(1)
    node.set_alive(BACKEND_1.ip, False)
    if remove:
        assert node.remove_real_server(DNS, BACKEND_1)


def retries(
    node: ModelledNode, clock: VirtualClock, count: int = 5, every: float = 1.0
) -> list[Endpoint | None]:
    answers = []
    for _ in range(count):
        clock.tick(every)
        answers.append(node.send_udp(CLIENT, VIP, 53))
    return answers


def test_model_speaks_every_adapter_protocol(clock: VirtualClock) -> None:
    node = make_node(clock)
    adapters: tuple[IPVSAdapter, ConnectionTable, ConntrackAdapter, SysctlAdapter] = (node, node, node, node)
    assert len(adapters) == 4


def test_round_robin_and_udp_affinity(clock: VirtualClock) -> None:
    node = make_node(clock)
    assert node.send_udp(CLIENT, VIP, 53) == BACKEND_1
    assert node.send_udp(CLIENT, VIP, 53) == BACKEND_1  # same flow, same entry
    assert node.send_udp((CLIENT[0], 40001), VIP, 53) == BACKEND_2
    assert node.send_udp((CLIENT[0], 40002), VIP, 53) == BACKEND_1


def test_a_no_expire_nodest_keeps_the_stale_entry(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=0)
    go_stale(node, clock)
    assert retries(node, clock) == [None] * 5
    entry = node.connection(CLIENT, VIP, 53)
    assert entry is not None
    assert entry.destination == BACKEND_1
    assert entry.expires_at - clock() == pytest.approx(300 - 6)  # dropped packets do not refresh it
    assert node.deliver_udp(CLIENT, VIP, 53).outcome is Outcome.DROPPED_NO_DESTINATION


def test_b_expire_nodest_flushes_within_200ms(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=1)
    go_stale(node, clock)
    clock.tick(0.2)
    assert node.connection(CLIENT, VIP, 53) is None  # flushed without any packet
    assert retries(node, clock, count=3) == [BACKEND_2] * 3


def test_b_packet_before_the_flush_is_rescheduled(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=1, nodest_flush_delay=0.1)
    go_stale(node, clock)
    delivery = node.deliver_udp(CLIENT, VIP, 53)
    assert (delivery.answered_by, delivery.rescheduled) == (BACKEND_2, True)


def test_c_stalled_kube_proxy_loses_traffic_until_removal(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=1)
    go_stale(node, clock, remove=False)
    assert retries(node, clock) == [None] * 5
    assert node.deliver_udp(CLIENT, VIP, 53).outcome is Outcome.BACKEND_DEAD
    node.remove_real_server(DNS, BACKEND_1)
    assert retries(node, clock, count=1, every=0.2) == [BACKEND_2]


def test_d1_lower_udp_timeout_only_bounds_new_entries(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=0)
    go_stale(node, clock)
    node.set_timeouts(IPVSTimeouts(tcp=0, tcp_fin=0, udp=5))
    assert node.get_timeouts() == IPVSTimeouts(tcp=900, tcp_fin=120, udp=5)
    assert retries(node, clock, count=10) == [None] * 10
    stale = node.connection(CLIENT, VIP, 53)
    assert stale is not None
    assert stale.expires_at - clock() > 280
    other = (CLIENT[0], 50000)
    assert node.send_udp(other, VIP, 53) == BACKEND_2
    fresh = node.connection(other, VIP, 53)
    assert fresh is not None
    assert fresh.expires_at - clock() == pytest.approx(5)


def test_d2_enabling_expire_nodest_afterwards_reschedules_the_next_packet(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=0)
    go_stale(node, clock)
    assert retries(node, clock, count=2) == [None, None]
    node.write(sysctl.EXPIRE_NODEST_CONN, 1)
    assert retries(node, clock, count=2) == [BACKEND_2, BACKEND_2]


def test_d3_weight_zero_readd_and_delete_flushes_without_a_packet(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=0)
    go_stale(node, clock)
    node.write(sysctl.EXPIRE_NODEST_CONN, 1)  # too late for the removal's flush
    clock.tick(5)
    assert node.connection(CLIENT, VIP, 53) is not None
    node.flush_dead_real_server(DNS, BACKEND_1)
    clock.tick(0.2)
    assert node.connection(CLIENT, VIP, 53) is None
    assert all(rs.endpoint != BACKEND_1 for rs in node.list_services()[0].real_servers)
    assert retries(node, clock, count=1) == [BACKEND_2]


def recreate_service(node: ModelledNode) -> None:
    assert node.delete_service(DNS)
    node.add_service(DNS)
    node.add_real_server(DNS, BACKEND_2)


def test_d4_recreating_the_service_does_not_help_without_expire_nodest(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=0)
    go_stale(node, clock)
    recreate_service(node)
    assert retries(node, clock) == [None] * 5


def test_d5_deleting_conntrack_entries_does_not_touch_ipvs(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=0, conntrack_udp_timeout=300)
    go_stale(node, clock)
    assert node.delete_udp_entries(VIP, 53, BACKEND_1.ip) == 1
    assert node.delete_udp_entries(VIP, 53, BACKEND_1.ip) == 0
    assert node.connection(CLIENT, VIP, 53) is not None
    assert retries(node, clock) == [None] * 5


def test_d6_recreating_the_service_works_with_expire_nodest(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=1)
    go_stale(node, clock)
    clock.tick(5)  # entry flushed by the removal already; the re-creation alone also flushes
    recreate_service(node)
    assert retries(node, clock, count=2, every=0.2) == [BACKEND_2, BACKEND_2]


def test_d6_recreation_alone_flushes(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=0)
    go_stale(node, clock)
    node.write(sysctl.EXPIRE_NODEST_CONN, 1)
    recreate_service(node)
    clock.tick(0.2)
    assert node.connection(CLIENT, VIP, 53) is None


def test_pre_59_kernel_drops_the_first_packet_and_has_no_flush(clock: VirtualClock) -> None:
    node = make_node(clock, expire_nodest_conn=1, kernel_version=(5, 4))
    go_stale(node, clock)
    clock.tick(1)
    assert node.connection(CLIENT, VIP, 53) is not None  # no queued flush before 5.9
    node.flush_dead_real_server(DNS, BACKEND_1)
    clock.tick(1)
    assert node.connection(CLIENT, VIP, 53) is not None  # so D3 does not flush either
    assert node.deliver_udp(CLIENT, VIP, 53).outcome is Outcome.DROPPED_NO_DESTINATION
    assert retries(node, clock, count=2) == [BACKEND_2, BACKEND_2]


def test_f5_iptables_mode_conntrack_pins_the_flow(clock: VirtualClock) -> None:
    node = make_node(clock, iptables_mode=True)
    go_stale(node, clock, remove=False)
    node.set_endpoints(DNS, [BACKEND_2])  # the rules are right again
    assert retries(node, clock, count=10, every=5) == [None] * 10  # each retry refreshes the entry
    assert node.delete_udp_entries(VIP, 53, BACKEND_1.ip) == 1
    assert retries(node, clock, count=1) == [BACKEND_2]


def test_f5_iptables_entry_idles_out(clock: VirtualClock) -> None:
    node = make_node(clock, iptables_mode=True, conntrack_udp_timeout=30, conntrack_udp_timeout_stream=120)
    go_stale(node, clock, remove=False)
    node.set_endpoints(DNS, [BACKEND_2])
    clock.tick(100)  # the entry saw a reply, so it lives by the stream timeout, not 30 s
    assert node.send_udp(CLIENT, VIP, 53) is None  # ... and this retry re-arms it
    clock.tick(121)
    assert node.send_udp(CLIENT, VIP, 53) == BACKEND_2


def test_iptables_mode_has_no_ipvs(clock: VirtualClock) -> None:
    node = make_node(clock, iptables_mode=True)
    with pytest.raises(DataplaneUnavailableError, match="iptables mode"):
        node.list_services()
    assert node.connection_counts() == []


def test_idle_entry_expires_after_the_udp_timeout(clock: VirtualClock) -> None:
    node = make_node(clock)
    node.send_udp(CLIENT, VIP, 53)
    clock.tick(299)
    assert node.connection(CLIENT, VIP, 53) is not None
    clock.tick(2)
    assert node.connection(CLIENT, VIP, 53) is None


def test_conntrack_entries_record_vip_and_reply_source(clock: VirtualClock) -> None:
    node = make_node(clock)
    node.send_udp(CLIENT, VIP, 53)
    node.send_udp((CLIENT[0], 40001), VIP, 53)
    assert node.stats().count == 2
    assert node.read(sysctl.NF_CONNTRACK_COUNT) == 2
    assert node.delete_udp_entries(VIP, 53, BACKEND_2.ip) == 1
    assert node.delete_udp_entries(VIP, 54, BACKEND_1.ip) == 0
    assert node.stats().count == 1


def test_vs_conntrack_off_creates_no_entries(clock: VirtualClock) -> None:
    node = make_node(clock, vs_conntrack=0)
    node.send_udp(CLIENT, VIP, 53)
    assert node.stats().count == 0


def test_conntrack_exhaustion_drops_new_flows(clock: VirtualClock) -> None:
    node = make_node(clock, conntrack_max=2)
    assert node.send_udp((CLIENT[0], 1), VIP, 53) is not None
    assert node.send_udp((CLIENT[0], 2), VIP, 53) is not None
    node.set_alive(BACKEND_1.ip, False)
    node.set_alive(BACKEND_2.ip, False)
    # Both entries saw replies: nothing to early-drop, so a third flow is refused.
    assert node.deliver_udp((CLIENT[0], 3), VIP, 53).outcome is Outcome.CONNTRACK_FULL
    stats = node.stats()
    assert (stats.count, stats.max, stats.drops) == (2, 2, 1)
    node.write(sysctl.NF_CONNTRACK_MAX, 3)
    assert node.deliver_udp((CLIENT[0], 3), VIP, 53).outcome is Outcome.BACKEND_DEAD


def test_sysctls(clock: VirtualClock) -> None:
    node = make_node(clock)
    assert node.read(sysctl.VS_CONNTRACK) == 1
    assert node.read(sysctl.EXPIRE_NODEST_CONN) == 0
    assert node.read(sysctl.NF_CONNTRACK_UDP_TIMEOUT_STREAM) == 120
    with pytest.raises(DataplanePermissionError):
        node.write(sysctl.NF_CONNTRACK_COUNT, 5)
    with pytest.raises(DataplaneUnavailableError):
        node.read("net.ipv4.ip_forward")


def test_no_service_and_no_real_server(clock: VirtualClock) -> None:
    node = make_node(clock)
    assert node.deliver_udp(CLIENT, VIP, 5353).outcome is Outcome.NO_SERVICE
    node.set_endpoints(DNS, [BACKEND_1])
    node.add_real_server(DNS, BACKEND_1, weight=0)
    assert node.deliver_udp(CLIENT, VIP, 53).outcome is Outcome.NO_REAL_SERVER
    assert not node.remove_real_server(DNS, BACKEND_2)
    with pytest.raises(DataplaneError):
        node.flush_dead_real_server(ServiceKey(L4Protocol.UDP, VIP, 5353), BACKEND_1)


def test_list_services_counts_connections(clock: VirtualClock) -> None:
    node = make_node(clock)
    node.send_udp(CLIENT, VIP, 53)
    (service,) = node.list_services()
    assert {(rs.endpoint, rs.inactive_conns) for rs in service.real_servers} == {
        (BACKEND_1, 1),
        (BACKEND_2, 0),
    }


def test_proc_rendering_parses_back_to_the_same_counts(clock: VirtualClock) -> None:
    node = make_node(clock)
    v6 = ServiceKey(L4Protocol.UDP, ip("fd00:10:96::a"), 53)
    node.add_service(v6)
    node.add_real_server(v6, Endpoint(ip("fd00:10:244:1::2"), 53))
    for port in range(30000, 30010):
        node.send_udp((CLIENT[0], port), VIP, 53)
        node.send_udp((ip("fd00::5"), port), v6.vip, 53)
    scan = parse_ip_vs_conn_text(node.render_ip_vs_conn())
    assert scan.skipped == 0
    assert set(scan.counts) == set(node.connection_counts())
