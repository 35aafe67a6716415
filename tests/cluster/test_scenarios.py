"""Scenarios on real components, each once without and once with ProxyMedic.

Without ProxyMedic no policy exists (the agent senses and reports, nothing acts); with it, a
policy selects the CoreDNS Service with every action enabled and dryRun false. Each run
records queries lost per client and the time from the first disruptive step to the last loss;
the table goes to the report directory as JSON and is printed.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Run, events_since
from tests.cluster.install import Component
from tests.cluster.kubeproxy import NODE
from tests.cluster.netlab import Pod, real_servers, wait_for
from tests.cluster.scenarios import (
    HEALTHY_CHURN_S,
    Cluster,
    assert_recovered_with_less_loss,
    churn_for,
    kill,
    measure,
    new_run,
    rollout,
    set_proxymedic,
    stalled_kube_proxy_then_rollout,
)

# The first test also waits for the session's control plane: tens of minutes on a loaded host.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(2700)]


def test_rollout_with_expire_nodest_conn_0(cluster: Cluster) -> None:
    without = measure(cluster, "rollout, expire_nodest_conn=0", rollout, 0, on=False)
    with_pm = measure(cluster, "rollout, expire_nodest_conn=0", rollout, 0, on=True)
    assert without.on_replaced, "no client was on a replaced pod"
    assert all(without.lost[p] > 0 for p in without.on_replaced), without.row()
    assert_recovered_with_less_loss(without, with_pm)
    wait_for(
        "ProxyMedic's StaleConnectionsFlushed Event of the rollout",
        lambda: events_since(cluster.plane, with_pm.started, "StaleConnectionsFlushed"),
        120,
        every=2,
    )


def test_healthy_churn_proxymedic_does_not_act(cluster: Cluster) -> None:
    """Ten minutes of a healthy Service scaling up and down: ProxyMedic must not restart kube-proxy,
    post a Warning, repair drift or change a sysctl, and no client may lose a query.

    The run without ProxyMedic shows that the churn itself loses nothing; it is two changes long,
    since what is measured over ten minutes is ProxyMedic's restraint. ProxyMedic's flush of a pod
    that left the slice may still find its real server (this tier's kube-proxy takes tens of seconds
    per sync) and remove it: that is the slice-driven repair of a backend that is gone, not an
    action on a live one, and no client loses a query to it."""
    without = measure(cluster, "healthy, scale up and down", churn_for(0), 1, on=False)
    restarts = len(cluster.kube_proxy.restarts)
    with_pm = measure(
        cluster, "healthy, 10 minutes of scaling up and down", churn_for(HEALTHY_CHURN_S), 1, on=True
    )
    assert len(cluster.kube_proxy.restarts) == restarts, "ProxyMedic restarted kube-proxy on a healthy node"
    assert not [r for r in with_pm.reasons if r.startswith("Warning/")], with_pm.reasons
    drift_or_sysctl = {f"Normal/{reason}" for reason in ("StaleRealServerRemoved", "SysctlsEnforced")}
    assert not drift_or_sysctl & set(with_pm.reasons), with_pm.reasons
    for outcome in (without, with_pm):
        assert not any(outcome.lost.values()), outcome.row()


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def repair_timeline(cluster: Cluster, run: Run) -> dict[str, float]:
    """Where the time between the killed pod's endpoint leaving the slice and the node's repair went:
    the operator's decision (the intent's ``decidedAt``) and the agent's part (its result's
    ``completedAt``), both stamped by this VM's clock."""
    assert run.slice_changed_at is not None
    assert run.killed

    def flush() -> dict[str, Any] | None:
        status, body = cluster.plane.request("GET", INTENTS_PATH)
        assert status == 200, body
        return next(
            (i for i in body["items"] if set(run.killed) & set(i["spec"].get("deadBackends", []))), None
        )

    intent = wait_for("the operator's flush of the killed pod", flush, 120, every=2)
    result = wait_for(
        "the agent's result of the killed pod's flush",
        lambda: next(
            (
                r
                for r in cluster.plane.request("GET", REPORT_PATH)[1]
                .get("status", {})
                .get("recentResults", [])
                if r.get("intentUid") == intent["metadata"]["uid"]
            ),
            None,
        ),
        120,
        every=2,
    )
    decided, completed = _stamp(intent["spec"]["decidedAt"]), _stamp(result["completedAt"])
    return {
        "operator_s": round(decided - run.slice_changed_at, 3),
        "agent_s": round(completed - decided, 3),
        "dataplane_change_s": round(float(result.get("durationSeconds") or 0.0), 4),
    }


def test_pods_killed_outright(cluster: Cluster) -> None:
    without = measure(cluster, "pod killed outright", kill, 1, on=False)
    runs: list[Run] = []

    def kept(run: Run) -> list[int]:
        runs.append(run)
        return kill(run)

    with_pm = measure(cluster, "pod killed outright", kept, 1, on=True)
    timeline = repair_timeline(cluster, runs[0])
    # The goal, at most one query lost per client, leaves ProxyMedic one query interval (100 ms)
    # from the slice change: the timeline says where this tier's time goes (docs/cluster-tier.md).
    cluster.table[-1]["repair_after_slice_change"] = timeline
    cluster.save_table()
    print(json.dumps({"repair_after_slice_change": timeline}))
    assert_recovered_with_less_loss(without, with_pm)
    assert timeline["operator_s"] >= 0, timeline
    assert timeline["agent_s"] >= 0, timeline


def test_rollout_with_expire_nodest_conn_1(cluster: Cluster) -> None:
    without = measure(cluster, "rollout, expire_nodest_conn=1", rollout, 1, on=False)
    with_pm = measure(cluster, "rollout, expire_nodest_conn=1", rollout, 1, on=True)
    assert_recovered_with_less_loss(without, with_pm)


def test_stalled_kube_proxy_then_rollout(cluster: Cluster) -> None:
    stalled_kube_proxy_then_rollout(cluster, expire=1)


INTENTS_PATH = "/apis/proxymedic.io/v1alpha1/remediationintents"
REPORT_PATH = f"/apis/proxymedic.io/v1alpha1/nodeproxyhealths/{NODE}"


def start_if_stopped(*components: Component) -> None:
    for component in components:
        if component.proc is None or component.proc.poll() is not None:
            component.start()


def test_agent_restarted_with_an_old_intent_changes_nothing_live(cluster: Cluster) -> None:
    """The agent is down while a pod is replaced, and the pod's address comes back on a new,
    ready pod before the agent does. The flush the operator decided meanwhile is still pending
    when the agent starts: the agent must keep that real server, and no client may lose a query
    from then on.

    The operator is stopped before the address comes back, so that nobody withdraws the intent:
    what is tested is the agent's own check against the EndpointSlices it reads when it applies
    an intent."""
    plane, pm = cluster.plane, cluster.proxymedic
    set_proxymedic(cluster, True)
    run = new_run(cluster)
    run.start()
    pm.agent.stop()
    try:
        victim = run.pods[next(name for name, state in run.states.items() if state == "ready")]
        run.step()
        run.publish(**{victim.name: "terminating"})
        victim.terminate()
        victim.wait_exit(60)
        run.publish(**{victim.name: "gone"})
        victim.kill()

        def pending_flush() -> dict[str, Any] | None:
            status, body = plane.request("GET", INTENTS_PATH)
            assert status == 200, body
            return next((i for i in body["items"] if victim.ip in i["spec"].get("deadBackends", [])), None)

        intent = wait_for(f"the operator's flush intent for {victim.ip}", pending_flush, 300, every=2)
        pm.operator.stop()
        # The namespace's teardown finishes in the kernel's own time: its veth must be gone first.
        link = f"pmv-{victim.ip.split('.')[-1]}"
        wait_for(f"{link} to be gone", lambda: not Path(f"/sys/class/net/{link}").exists(), 60)
        again = Pod(f"{victim.name}-again", victim.ip)
        again.start(5.0)
        run.pods[again.name] = again
        run.publish(**{again.name: "ready"})
        run.wait_programmed()
        assert pending_flush() is not None, "the intent was still pending when the agent came back"
        back = run.step()
        pm.agent.start()

        def replayed() -> dict[str, Any] | None:
            status, body = plane.request("GET", REPORT_PATH)
            results = body.get("status", {}).get("recentResults", []) if status == 200 else []
            return next((r for r in results if r.get("intentUid") == intent["metadata"]["uid"]), None)

        # The agent's imports take minutes on the VM's emulated CPU; the intent lives 10 minutes.
        result = wait_for("the restarted agent's result of the old intent", replayed, 480, every=5)
        print(json.dumps({"replayed": result}))
        run.settle()
        programmed_after = set(real_servers())
        outcome = run.finish("agent restarted with an old intent pending", True, [])
    finally:
        start_if_stopped(pm.agent, pm.operator)
    cluster.table.append({**outcome.row(), "replayed": result})
    cluster.save_table()
    assert f"kept {victim.ip}: kube-proxy uses it now" in result["message"], result
    assert not result.get("removedRealServers"), result
    assert again.ip in programmed_after, "the replay left the live backend's real server"
    assert programmed_after == run.ready_ips(), programmed_after
    lost_after = {
        port: [q for q in queries if q[1] >= back and q[2] is None]
        for port, queries in run.clients.rows.items()
    }
    assert not any(lost_after.values()), f"queries lost after the agent came back: {lost_after}"
