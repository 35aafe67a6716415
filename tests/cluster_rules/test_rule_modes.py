"""The scenarios of the real-control-plane tier with kube-proxy in nftables and in iptables mode.

Each runs once without and once with ProxyMedic, on a real kube-proxy whose rules the agent
reads (no IPVS: its flush intents delete conntrack entries, and a stale rule is cured only by
restarting kube-proxy). The test id names the mode. The measured tables go to the report
directory as ``cluster-table-<mode>.json`` and are printed.

What a healthy kube-proxy does by itself in these modes sets the bar: its rules move new flows
as soon as the slice changes, and its conntrack reconciler deletes the UDP entries of an endpoint
that left the slice within a second of the change. It keeps those of a serving terminating
endpoint, so a graceful rollout's clients stay on the old pod until it exits; ProxyMedic's flush
moves them when the pod stops being ready. Before a slice change nothing driven by the slice can
act, and a stalled kube-proxy neither programs nor reconciles: that is ProxyMedic's main work here.
"""

from __future__ import annotations

import pytest

from tests.cluster.scenarios import (
    Cluster,
    churn_for,
    kill,
    measure,
    rollout,
    stalled_kube_proxy_then_rollout,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

HEALTHY_CHURN_S = 120.0
"""Long enough for ProxyMedic's periodic parts to come round (sense rounds, minObservation, the
policy's 30 s staleAfter, cooldowns) several times; the VM tier's run is the 10-minute one."""


def warnings_of(reasons: dict[str, int]) -> list[str]:
    return [reason for reason in reasons if reason.startswith("Warning/")]


def test_graceful_rollout(cluster: Cluster) -> None:
    """The old pod leaves ready, answers through its lameduck, then goes. kube-proxy's rules move new
    flows at once, but its reconciler keeps a serving terminating endpoint's conntrack entries:
    the clients on the old pod stay there until it exits, and lose what they send between its exit
    and kube-proxy's reconcile after the slice change (0 to 2 queries each, by timing).
    ProxyMedic flushes their entries when the pod stops being ready, while it still answers, once
    kube-proxy's rules send new flows elsewhere, so they move before it dies: nothing is lost."""
    without = measure(cluster, "rollout", rollout, None, on=False)
    with_pm = measure(cluster, "rollout", rollout, None, on=True)
    assert without.on_replaced, "no client was on a replaced pod"
    assert not without.still_failing, without.row()
    assert not with_pm.still_failing, with_pm.row()
    assert not any(with_pm.lost.values()), with_pm.row()
    assert not warnings_of(with_pm.reasons), with_pm.reasons


def test_pod_killed_outright(cluster: Cluster) -> None:
    """The pod dies a second before its endpoint leaves the slice: its clients lose what they send
    in that second whatever watches the slice; after the change, kube-proxy's reconciler and
    ProxyMedic's flush race to delete the entries. Both runs recover; the table has the figures."""
    without = measure(cluster, "pod killed outright", kill, None, on=False)
    with_pm = measure(cluster, "pod killed outright", kill, None, on=True)
    for outcome in (without, with_pm):
        assert not outcome.still_failing, outcome.row()
        assert outcome.recovery_s is not None, outcome.row()
    assert not warnings_of(with_pm.reasons), with_pm.reasons


def test_stalled_kube_proxy_then_rollout(cluster: Cluster) -> None:
    """kube-proxy's API connection dies silently (healthz stays 200, its resyncs go on from its
    cache), then a rollout: without ProxyMedic the rules keep sending new flows to the dead pods
    until someone restarts kube-proxy; with it, the stale rules are found against the expectation
    of this mode and kube-proxy is restarted within staleAfter + minObservation + one sense interval."""
    stalled_kube_proxy_then_rollout(cluster, expire=None)


def test_healthy_churn_proxymedic_does_not_act(cluster: Cluster) -> None:
    """A healthy Service scaling up and down: ProxyMedic must not restart kube-proxy or post a
    Warning, and no client may lose a query."""
    restarts = len(cluster.kube_proxy.restarts)
    with_pm = measure(cluster, "healthy, scaling up and down", churn_for(HEALTHY_CHURN_S), None, on=True)
    assert len(cluster.kube_proxy.restarts) == restarts, "ProxyMedic restarted kube-proxy on a healthy node"
    assert not warnings_of(with_pm.reasons), with_pm.reasons
    assert not any(with_pm.lost.values()), with_pm.row()
