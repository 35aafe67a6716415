"""Security rules on the rendered chart: each holds on the real output, and each is shown to catch
its own violation (a values change or a post-render mutation that breaks the rule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.render import RELEASE, Obj, Rendered, containers, mutated, render, workload
from tests.chart.rules import (
    CLUSTER,
    Grant,
    agent_cannot_write_intents,
    agent_privileges,
    beyond,
    grants,
    no_wildcards,
    operator_hardened,
    pod_delete_only_in,
)

pytestmark = pytest.mark.chart

NS = "proxymedic"
OPERATOR_SA = f"{RELEASE}-proxymedic-operator"
AGENT_SA = f"{RELEASE}-proxymedic-agent"
ALL_ON: dict[str, Any] = {
    "namespace": {"create": True},
    "agent": {"sysctlWrites": True},
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "grafanaDashboard": {"enabled": True},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "all-on": ALL_ON,
    "standalone": {"operator": {"peering": {"enabled": False}}},
    "custom-kube-proxy-ns": {"kubeProxy": {"namespace": "kube-proxy"}},
}


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render()


def _container(objects: list[Obj], kind: str, component: str) -> Obj:
    found = workload(objects, kind, component)
    assert found is not None
    return next(containers(found))


def _op_ctx(objects: list[Obj]) -> dict[str, Any]:
    ctx: dict[str, Any] = _container(objects, "Deployment", "operator")["securityContext"]
    return ctx


def _agent_ctx(objects: list[Obj]) -> dict[str, Any]:
    ctx: dict[str, Any] = _container(objects, "DaemonSet", "agent")["securityContext"]
    return ctx


def _role(objects: list[Obj], kind: str, suffix: str) -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))


# --- operator: non-root, read-only root, drop ALL --------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_operator_is_hardened(values: dict[str, Any]) -> None:
    assert operator_hardened(render(values).objects) == []


def _set(path: str, value: Any) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        _op_ctx(objects)[path] = value

    return mutate


def _pod_root(objects: list[Obj]) -> None:
    _op_ctx(objects).pop("runAsNonRoot")
    deployment = workload(objects, "Deployment", "operator")
    assert deployment is not None
    deployment["spec"]["template"]["spec"]["securityContext"] = {"runAsUser": 0}


OPERATOR_BREAKS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "root": (_pod_root, "runAsNonRoot is not true"),
    "writable-root": (_set("readOnlyRootFilesystem", False), "readOnlyRootFilesystem is not true"),
    "escalation": (_set("allowPrivilegeEscalation", True), "allowPrivilegeEscalation is not false"),
    "no-drop": (_set("capabilities", {"drop": []}), "capabilities.drop lacks ALL"),
    "adds-cap": (_set("capabilities", {"drop": ["ALL"], "add": ["NET_RAW"]}), "adds capabilities"),
    "privileged": (_set("privileged", True), "privileged"),
}


@pytest.mark.parametrize(("mutation", "expected"), OPERATOR_BREAKS.values(), ids=OPERATOR_BREAKS.keys())
def test_operator_rule_catches(
    default: Rendered, mutation: Callable[[list[Obj]], None], expected: str
) -> None:
    problems = operator_hardened(mutated(default, mutation))
    assert any(expected in p for p in problems), problems


# --- agent: exactly NET_ADMIN, privileged only with the sysctl opt-in ------------------------


def test_agent_capabilities_as_documented(default: Rendered) -> None:
    assert agent_privileges(default.objects, sysctl_writes=False) == []
    ctx = _agent_ctx(default.objects)
    assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert ctx["privileged"] is False
    pod = workload(default.objects, "DaemonSet", "agent")
    assert pod is not None
    assert pod["spec"]["template"]["spec"]["hostNetwork"] is True
    assert not any("hostPath" in v for v in pod["spec"]["template"]["spec"].get("volumes", []))


def test_agent_privileged_only_with_sysctl_opt_in() -> None:
    opted_in = render({"agent": {"sysctlWrites": True}}).objects
    assert agent_privileges(opted_in, sysctl_writes=True) == []
    assert _agent_ctx(opted_in)["privileged"] is True
    # The same output judged against the default (no opt-in) is a violation:
    assert agent_privileges(opted_in, sysctl_writes=False) == [
        "agent container agent: privileged without the agent.sysctlWrites opt-in"
    ]


def _agent_set(path: str, value: Any) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        _agent_ctx(objects)[path] = value

    return mutate


def _host_path(objects: list[Obj]) -> None:
    ds = workload(objects, "DaemonSet", "agent")
    assert ds is not None
    ds["spec"]["template"]["spec"]["volumes"].append({"name": "proc", "hostPath": {"path": "/proc"}})
    _container(objects, "DaemonSet", "agent")["volumeMounts"].append(
        {"name": "proc", "mountPath": "/host/proc"}
    )


def _host_pid(objects: list[Obj]) -> None:
    ds = workload(objects, "DaemonSet", "agent")
    assert ds is not None
    ds["spec"]["template"]["spec"]["hostPID"] = True


AGENT_BREAKS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "sys-admin": (_agent_set("capabilities", {"drop": ["ALL"], "add": ["NET_ADMIN", "SYS_ADMIN"]}), "adds"),
    "no-drop": (_agent_set("capabilities", {"add": ["NET_ADMIN"]}), "capabilities.drop is None"),
    "no-net-admin": (_agent_set("capabilities", {"drop": ["ALL"]}), "adds []"),
    "privileged": (_agent_set("privileged", True), "privileged without the agent.sysctlWrites opt-in"),
    "writable-host-path": (_host_path, "host path volume proc is mounted writable"),
    "host-pid": (_host_pid, "agent pod sets hostPID"),
}


@pytest.mark.parametrize(("mutation", "expected"), AGENT_BREAKS.values(), ids=AGENT_BREAKS.keys())
def test_agent_rule_catches(default: Rendered, mutation: Callable[[list[Obj]], None], expected: str) -> None:
    problems = agent_privileges(mutated(default, mutation))
    assert any(expected in p for p in problems), problems


# --- RBAC: no wildcards ------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_no_rbac_wildcards(values: dict[str, Any]) -> None:
    assert no_wildcards(render(values).objects) == []


@pytest.mark.parametrize("field", ["verbs", "resources", "apiGroups"])
def test_wildcard_rule_catches(default: Rendered, field: str) -> None:
    def mutate(objects: list[Obj]) -> None:
        _role(objects, "ClusterRole", "-agent")["rules"][0][field] = ["*"]

    assert no_wildcards(mutated(default, mutate)) == [
        f"ClusterRole pm-proxymedic-agent rule 0: wildcard in {field}: ['*']"
    ]


# --- RBAC: the agent cannot write intents ------------------------------------------------------


def test_agent_cannot_write_intents(default: Rendered) -> None:
    assert agent_cannot_write_intents(default.objects, AGENT_SA, NS) == []


def _intent_rule(objects: list[Obj]) -> dict[str, Any]:
    rules = _role(objects, "ClusterRole", "-agent")["rules"]
    rule: dict[str, Any] = next(r for r in rules if r["resources"] == ["remediationintents"])
    return rule


def _agent_patches_intents(objects: list[Obj]) -> None:
    _intent_rule(objects)["verbs"].append("patch")


def _agent_writes_intent_status(objects: list[Obj]) -> None:
    _role(objects, "ClusterRole", "-agent")["rules"].append(
        {"apiGroups": ["proxymedic.io"], "resources": ["remediationintents/status"], "verbs": ["update"]}
    )


def _agent_bound_to_operator_role(objects: list[Obj]) -> None:
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "sneaky"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR_SA},
            "subjects": [{"kind": "ServiceAccount", "name": AGENT_SA, "namespace": NS}],
        }
    )


INTENT_BREAKS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "patch-verb": (_agent_patches_intents, "agent can patch remediationintents"),
    "status-update": (_agent_writes_intent_status, "agent can update remediationintents/status"),
    "bound-to-operator-role": (_agent_bound_to_operator_role, "agent can create remediationintents"),
}


@pytest.mark.parametrize(("mutation", "expected"), INTENT_BREAKS.values(), ids=INTENT_BREAKS.keys())
def test_intent_rule_catches(default: Rendered, mutation: Callable[[list[Obj]], None], expected: str) -> None:
    problems = agent_cannot_write_intents(mutated(default, mutation), AGENT_SA, NS)
    assert any(expected in p for p in problems), problems


# --- RBAC: the operator deletes pods only in kube-proxy's namespace ----------------------------


@pytest.mark.parametrize("namespace", ["kube-system", "kube-proxy"])
def test_operator_pod_delete_only_in_kube_proxy_namespace(namespace: str) -> None:
    objects = render({"kubeProxy": {"namespace": namespace}}).objects
    assert pod_delete_only_in(objects, OPERATOR_SA, NS, namespace) == []
    assert Grant(namespace, "", "pods", "delete") in grants(objects, OPERATOR_SA, NS)


def _cluster_wide_pod_delete(objects: list[Obj]) -> None:
    _role(objects, "ClusterRole", "-operator")["rules"].append(
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}
    )


def _role_made_cluster_role(objects: list[Obj]) -> None:
    role = _role(objects, "Role", "-kube-proxy")
    role["kind"] = "ClusterRole"
    del role["metadata"]["namespace"]
    binding = _role(objects, "RoleBinding", "-kube-proxy")
    binding["kind"] = "ClusterRoleBinding"
    binding["roleRef"]["kind"] = "ClusterRole"
    del binding["metadata"]["namespace"]


def _bound_in_other_namespace(objects: list[Obj]) -> None:
    _role(objects, "Role", "-kube-proxy")["kind"] = "ClusterRole"
    binding = _role(objects, "RoleBinding", "-kube-proxy")
    binding["roleRef"]["kind"] = "ClusterRole"
    binding["metadata"]["namespace"] = "default"


POD_BREAKS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "cluster-role-rule": (_cluster_wide_pod_delete, f"operator can delete pods in {CLUSTER}"),
    "role-made-cluster-wide": (_role_made_cluster_role, f"operator can delete pods in {CLUSTER}"),
    "other-namespace": (_bound_in_other_namespace, "operator can delete pods in default"),
}


@pytest.mark.parametrize(("mutation", "expected"), POD_BREAKS.values(), ids=POD_BREAKS.keys())
def test_pod_delete_rule_catches(
    default: Rendered, mutation: Callable[[list[Obj]], None], expected: str
) -> None:
    problems = pod_delete_only_in(mutated(default, mutation), OPERATOR_SA, NS, "kube-system")
    assert expected in problems, problems


# --- RBAC: exactly what each process needs -----------------------------------------------------


def _grants(scope: str, group: str, resource: str, *verbs: str) -> set[Grant]:
    return {Grant(scope, group, resource, verb) for verb in verbs}


OPERATOR_NEEDS = (
    _grants(CLUSTER, "apiextensions.k8s.io", "customresourcedefinitions", "list", "watch")
    | _grants(CLUSTER, "kopf.dev", "clusterkopfpeerings", "get", "list", "watch", "patch")
    | _grants(CLUSTER, "", "services", "list", "watch")
    | _grants(CLUSTER, "", "nodes", "list", "watch")
    | _grants(CLUSTER, "discovery.k8s.io", "endpointslices", "list", "watch")
    | _grants(CLUSTER, "proxymedic.io", "proxyhealthpolicies", "list", "watch", "patch")
    | _grants(CLUSTER, "proxymedic.io", "proxyhealthpolicies/status", "patch")
    | _grants(CLUSTER, "proxymedic.io", "remediationintents", "list", "watch", "create", "delete")
    | _grants(CLUSTER, "proxymedic.io", "remediationintents/status", "patch")
    | _grants(CLUSTER, "proxymedic.io", "nodeproxyhealths", "list", "watch")
    | _grants(CLUSTER, "", "events", "create", "patch", "list")
    | _grants("kube-system", "", "pods", "list", "delete")
)
AGENT_NEEDS = (
    _grants(CLUSTER, "", "nodes", "get")
    | _grants(CLUSTER, "proxymedic.io", "remediationintents", "list", "watch")
    | _grants(CLUSTER, "proxymedic.io", "proxyhealthpolicies", "list", "watch")
    | _grants(CLUSTER, "discovery.k8s.io", "endpointslices", "list")
    | _grants(CLUSTER, "proxymedic.io", "nodeproxyhealths", "create")
    | _grants(CLUSTER, "proxymedic.io", "nodeproxyhealths/status", "patch")
)


def test_rbac_is_exactly_what_is_needed(default: Rendered) -> None:
    assert grants(default.objects, OPERATOR_SA, NS) == OPERATOR_NEEDS
    assert grants(default.objects, AGENT_SA, NS) == AGENT_NEEDS


def test_standalone_operator_has_no_peering_rights() -> None:
    objects = render({"operator": {"peering": {"enabled": False}}}).objects
    peering = _grants(CLUSTER, "kopf.dev", "clusterkopfpeerings", "get", "list", "watch", "patch")
    assert grants(objects, OPERATOR_SA, NS) == OPERATOR_NEEDS - peering


def test_extra_verb_is_reported(default: Rendered) -> None:
    def mutate(objects: list[Obj]) -> None:
        _role(objects, "ClusterRole", "-agent")["rules"][0]["verbs"] = ["get", "list"]

    assert beyond(grants(mutated(default, mutate), AGENT_SA, NS), AGENT_NEEDS) == [
        f"list core/nodes ({CLUSTER})"
    ]
