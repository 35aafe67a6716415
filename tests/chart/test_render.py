"""The chart renders with the real Helm engine, lints clean, and every object is valid."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

import proxymedic
from proxymedic.agent.metrics import AgentMetrics
from proxymedic.api.crd import render_all
from proxymedic.api.errors import InvalidObjectError, parse_object
from proxymedic.api.types import parse_duration
from proxymedic.cli.main import build_parser
from proxymedic.emulator.resources import kopf_peering_crds
from proxymedic.operator.metrics import OperatorMetrics
from tests.chart.render import CHART_DIR, Obj, chart_crds, render

pytestmark = pytest.mark.chart

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion: the CRDs' CEL needs 1.31)
# and a current release.
KUBERNETES_VERSIONS = ("1.31.0", "1.34.0")
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": {
        "namespace": {"create": True},
        "agent": {"sysctlWrites": True},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "grafanaDashboard": {"enabled": True},
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "registry"}],
    },
    "standalone-active-policy": {
        "operator": {"peering": {"enabled": False}},
        "policy": {"coredns": {"dryRun": False}},
    },
    "minimal": {"policy": {"coredns": {"enabled": False}}, "metrics": {"service": {"enabled": False}}},
}
# Kinds kubernetes-validate has no schema for, and how each is checked instead.
NOT_IN_KUBERNETES = {
    "ProxyHealthPolicy": "ProxyMedic's own kind: validated with the models (test_own_kinds_are_valid)",
    "ClusterKopfPeering": "Kopf's kind: validated against the peering CRD's schema (test_peering_objects)",
    "ServiceMonitor": "Prometheus Operator kind: its metric names are checked (test_alerts_use_real_metrics)",
    "PrometheusRule": "Prometheus Operator kind: its metric names are checked (test_alerts_use_real_metrics)",
}


def test_lint_is_clean() -> None:
    report = helm.lint(CHART_DIR, strict=True, kube_version="v1.34.0")
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert errors == [], report
    assert report["errors"] == [], report


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_objects_match_kubernetes_schemas(values: dict[str, Any], version: str) -> None:
    objects = render(values).objects + chart_crds()
    problems: list[str] = []
    for obj in objects:
        if obj["kind"] in NOT_IN_KUBERNETES:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.absolute_path)
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {path}: {exc.message}")
    assert problems == []
    assert {"Deployment", "DaemonSet", "ClusterRole", "CustomResourceDefinition"} <= {
        o["kind"] for o in objects
    }


def test_a_broken_object_is_reported() -> None:
    daemonset = next(o for o in render().objects if o["kind"] == "DaemonSet")
    daemonset["spec"]["template"]["spec"]["hostNetwrk"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="hostNetwrk"):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSIONS[-1], strict=True)


def test_own_kinds_are_valid() -> None:
    for values in VALUE_SETS.values():
        for obj in render(values).objects:
            if obj["apiVersion"].startswith("proxymedic.io/"):
                parse_object(obj)


def test_bad_guardrails_are_caught_by_the_models() -> None:
    policy = next(
        o
        for o in render({"policy": {"coredns": {"guardrails": {"nodeCooldown": "2 minutes"}}}}).objects
        if o["kind"] == "ProxyHealthPolicy"
    )
    with pytest.raises(InvalidObjectError) as caught:
        parse_object(policy)
    assert any("spec.guardrails.nodeCooldown" in p for p in caught.value.problems)


def test_coredns_policy_is_dry_run_until_enabled() -> None:
    def policy(values: dict[str, Any]) -> Obj:
        return next(o for o in render(values).objects if o["kind"] == "ProxyHealthPolicy")

    default = policy({})
    assert default["metadata"]["name"] == "coredns"
    assert default["spec"]["guardrails"]["dryRun"] is True
    assert default["spec"]["services"] == {
        "namespaces": ["kube-system"],
        "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        "protocols": ["UDP"],
    }
    assert default["spec"]["actions"]["enforceSysctls"]["enabled"] is False  # no sysctl opt-in
    live = policy({"policy": {"coredns": {"dryRun": False}}, "agent": {"sysctlWrites": True}})
    assert live["spec"]["guardrails"]["dryRun"] is False
    assert live["spec"]["actions"]["enforceSysctls"]["enabled"] is True
    target = policy({"kubeProxy": {"namespace": "kube-proxy"}})["spec"]["actions"]["restartKubeProxy"][
        "target"
    ]
    assert target == {"namespace": "kube-proxy", "labelSelector": {"matchLabels": {"k8s-app": "kube-proxy"}}}


def test_chart_ships_the_generated_crds() -> None:
    shipped = {crd["metadata"]["name"]: crd for crd in chart_crds()}
    generated = {crd["metadata"]["name"]: crd for crd in (yaml.safe_load(t) for t in render_all().values())}
    assert shipped == generated


def test_peering_objects() -> None:
    objects = render().objects
    crd = next(o for o in objects if o["kind"] == "CustomResourceDefinition")
    assert crd["spec"] == kopf_peering_crds()[0]["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    peering = next(o for o in objects if o["kind"] == "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "proxymedic"  # OperatorOptions.peering_name
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]
    jsonschema.validate(peering, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    standalone = render({"operator": {"peering": {"enabled": False}}}).objects
    assert not [o for o in standalone if o["kind"] in ("CustomResourceDefinition", "ClusterKopfPeering")]
    operator = next(o for o in standalone if o["kind"] == "Deployment")
    assert "--standalone" in operator["spec"]["template"]["spec"]["containers"][0]["args"]
    shared = render({"operator": {"peering": {"createCRD": False}}}).objects
    assert [o["kind"] for o in shared if o["apiVersion"].startswith(("kopf", "apiextensions"))] == [
        "ClusterKopfPeering"
    ]


def test_versions_follow_the_project() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        metadata = chart.metadata
    assert metadata["appVersion"] == proxymedic.__version__
    assert metadata["version"] == re.sub(r"\.?(dev|a|b|rc)", r"-\1", proxymedic.__version__, count=1)


def test_notes_tell_how_to_upgrade_crds() -> None:
    notes = render().notes
    assert "kubectl apply --server-side -f charts/proxymedic/crds/" in notes
    assert "dry-run" in notes
    # Node-level DryRun Events go to the default namespace, Service-level ones to the Service's.
    assert "kubectl get events -A --field-selector reason=DryRun" in notes


def test_notes_say_what_the_default_sysctl_choice_costs() -> None:
    default = render().notes
    assert "agent.sysctlWrites is false, so ProxyMedic cannot set net.ipv4.vs.expire_nodest_conn" in default
    assert "--set agent.sysctlWrites=true" in default
    assert "agent.sysctlWrites" not in render({"agent": {"sysctlWrites": True}}).notes


def _images(values: dict[str, Any]) -> set[str]:
    return {
        container["image"]
        for obj in render(values).objects
        if obj["kind"] in ("Deployment", "DaemonSet")
        for container in obj["spec"]["template"]["spec"]["containers"]
    }


def test_the_default_image_is_the_published_one_at_the_charts_app_version() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        app_version = chart.metadata["appVersion"]
    assert _images({}) == {f"ghcr.io/proxymedic/proxymedic:{app_version}"}
    assert _images({"image": {"tag": "0.2.0"}}) == {"ghcr.io/proxymedic/proxymedic:0.2.0"}
    digest = "sha256:" + "b" * 64
    assert _images({"image": {"repository": "registry.example/pm", "digest": digest}}) == {
        f"registry.example/pm@{digest}"
    }


def test_the_release_workflow_pushes_that_image_for_both_platforms() -> None:
    workflow = yaml.safe_load((CHART_DIR.parents[1] / ".github/workflows/release.yml").read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as true
    assert workflow["env"]["IMAGE"] == "ghcr.io/proxymedic/proxymedic"
    steps = workflow["jobs"]["image"]["steps"]
    uses = [step.get("uses", "").split("@")[0] for step in steps]
    for action in ("docker/setup-qemu-action", "docker/setup-buildx-action", "docker/login-action"):
        assert action in uses
    build = next(step for step in steps if step.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True


def _metric_names(registry: CollectorRegistry) -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix for family in registry.collect() for suffix in suffixes.get(family.type, ("",))
    }


def test_alerts_use_real_metrics() -> None:
    known = _metric_names(OperatorMetrics().registry) | _metric_names(AgentMetrics().registry)
    objects = render(VALUE_SETS["everything"]).objects
    rules = next(o for o in objects if o["kind"] == "PrometheusRule")
    exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"]}
    assert {"KubeProxySyncStale", "ProxyMedicStaleEntriesPersist", "ProxyMedicRemediationHeld"} <= alerts
    assert "ProxyMedicAgentSilent" in alerts
    dashboard = next(o for o in objects if o["kind"] == "ConfigMap")
    panels = json.loads(dashboard["data"]["proxymedic.json"])["panels"]
    exprs += [t["expr"] for p in panels for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bproxymedic_[a-z_]+", expr)}
    assert used, "no ProxyMedic metric in the alerts and dashboard"
    assert used - known == set()
    agent_job = next(o for o in objects if o["kind"] == "Service" and "agent" in o["metadata"]["name"])
    assert f'job="{agent_job["metadata"]["name"]}"' in " ".join(exprs)
    # The alerts group agent metrics by node: the agents' ServiceMonitor must add that label.
    monitor = next(
        o for o in objects if o["kind"] == "ServiceMonitor" and o["metadata"]["name"].endswith("-agent")
    )
    relabel = monitor["spec"]["endpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"} in relabel


def test_metric_services_target_named_ports() -> None:
    objects = render().objects
    for service in (o for o in objects if o["kind"] == "Service"):
        component = service["spec"]["selector"]["app.kubernetes.io/component"]
        pod = next(
            o
            for o in objects
            if o["kind"] in ("Deployment", "DaemonSet") and component in o["metadata"]["name"]
        )
        ports = {p["name"] for c in pod["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_container_args_are_what_the_cli_accepts(values: dict[str, Any]) -> None:
    objects = render(values).objects
    for kind, command in (("Deployment", "operator"), ("DaemonSet", "agent")):
        workload = next(o for o in objects if o["kind"] == kind)
        container = workload["spec"]["template"]["spec"]["containers"][0]
        args = build_parser().parse_args(container["args"])
        assert args.command == command
        for name in ("coalesce_window", "intent_ttl", "housekeeping_interval", "sense_interval", "heartbeat"):
            if hasattr(args, name):
                parse_duration(getattr(args, name))
        if command == "agent":
            env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
            assert env == {"NODE_NAME": "spec.nodeName"}
        else:
            assert args.standalone is (not values.get("operator", {}).get("peering", {}).get("enabled", True))
