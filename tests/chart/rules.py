"""Security rules on rendered manifests. Each check returns its violations (empty: the rule holds),
so a test can show both that the chart keeps the rule and that a broken chart is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tests.chart.render import Obj, containers, workload

# What docs/kernel.md measured and docs/security.md documents: CAP_NET_ADMIN covers every agent
# action (IPVS and conntrack netlink); nothing else is added.
AGENT_CAPABILITIES = frozenset({"NET_ADMIN"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection", "*"})
CLUSTER = "<cluster>"


# --- workloads ---------------------------------------------------------------------------------


def operator_hardened(objects: list[Obj]) -> list[str]:
    """Operator: non-root, read-only root file system, no privilege escalation, every capability
    dropped and none added, not privileged, RuntimeDefault seccomp, no host namespaces."""
    deployment = workload(objects, "Deployment", "operator")
    if deployment is None:
        return ["no operator Deployment rendered"]
    problems: list[str] = []
    pod = deployment["spec"]["template"]["spec"]
    pod_ctx = pod.get("securityContext", {})
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            problems.append(f"operator pod sets {host}")
    for container in containers(deployment):
        name = f"operator container {container['name']}"
        ctx = container.get("securityContext", {})
        non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        if non_root is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if uid == 0:
            problems.append(f"{name}: runAsUser is 0")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities.drop lacks ALL")
        if caps.get("add"):
            problems.append(f"{name}: adds capabilities {caps['add']}")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
        if seccomp.get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
    return problems


def agent_privileges(objects: list[Obj], *, sysctl_writes: bool = False) -> list[str]:
    """Agent: drops ALL and adds exactly AGENT_CAPABILITIES; privileged exactly when sysctl writes
    are opted in; host network but no host PID/IPC; host paths, if any, read-only."""
    daemonset = workload(objects, "DaemonSet", "agent")
    if daemonset is None:
        return ["no agent DaemonSet rendered"]
    problems: list[str] = []
    pod = daemonset["spec"]["template"]["spec"]
    for host in ("hostPID", "hostIPC"):
        if pod.get(host):
            problems.append(f"agent pod sets {host}")
    host_volumes = {v["name"] for v in pod.get("volumes", []) if "hostPath" in v}
    for container in containers(daemonset):
        name = f"agent container {container['name']}"
        ctx = container.get("securityContext", {})
        caps = ctx.get("capabilities", {})
        if caps.get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities.drop is {caps.get('drop')}, not [ALL]")
        added = set(caps.get("add", []))
        if added != AGENT_CAPABILITIES:
            problems.append(f"{name}: adds {sorted(added)}, documented: {sorted(AGENT_CAPABILITIES)}")
        privileged = bool(ctx.get("privileged"))
        if privileged and not sysctl_writes:
            problems.append(f"{name}: privileged without the agent.sysctlWrites opt-in")
        if sysctl_writes and not privileged:
            problems.append(
                f"{name}: agent.sysctlWrites needs a privileged container for a writable /proc/sys"
            )
        if not privileged and ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        for mount in container.get("volumeMounts", []):
            if mount["name"] in host_volumes and mount.get("readOnly") is not True:
                problems.append(f"{name}: host path volume {mount['name']} is mounted writable")
    return problems


# --- RBAC --------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Grant:
    """One (scope, group, resource, verb) a subject holds; scope is a namespace or CLUSTER."""

    scope: str
    group: str
    resource: str
    verb: str
    names: tuple[str, ...] = ()


def no_wildcards(objects: list[Obj]) -> list[str]:
    """No `*` in any rule's apiGroups, resources, verbs or resourceNames, and no nonResourceURLs."""
    problems: list[str] = []
    for obj in objects:
        if obj["kind"] not in ("Role", "ClusterRole"):
            continue
        if obj.get("aggregationRule"):
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: aggregationRule")
        for index, rule in enumerate(obj.get("rules") or []):
            where = f"{obj['kind']} {obj['metadata']['name']} rule {index}"
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                if any("*" in item for item in rule.get(field, [])):
                    problems.append(f"{where}: wildcard in {field}: {rule[field]}")
            if rule.get("nonResourceURLs"):
                problems.append(f"{where}: nonResourceURLs {rule['nonResourceURLs']}")
    return problems


def _roles(objects: list[Obj]) -> dict[tuple[str, str | None, str], list[Obj]]:
    roles: dict[tuple[str, str | None, str], list[Obj]] = {}
    for obj in objects:
        if obj["kind"] in ("Role", "ClusterRole"):
            namespace = obj["metadata"].get("namespace") if obj["kind"] == "Role" else None
            key = (obj["kind"], namespace, obj["metadata"]["name"])
            roles[key] = obj.get("rules") or []
    return roles


def _binds(binding: Obj, account: str, namespace: str) -> bool:
    return any(
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == account
        and subject.get("namespace", binding["metadata"].get("namespace")) == namespace
        for subject in binding.get("subjects") or []
    )


def grants(objects: list[Obj], account: str, namespace: str) -> set[Grant]:
    """Every grant the ServiceAccount holds through the rendered bindings."""
    roles = _roles(objects)
    held: set[Grant] = set()
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding") or not _binds(
            binding, account, namespace
        ):
            continue
        ref = binding["roleRef"]
        binding_ns = binding["metadata"].get("namespace")
        role_ns = binding_ns if ref["kind"] == "Role" else None
        scope = CLUSTER if binding["kind"] == "ClusterRoleBinding" else str(binding_ns)
        for rule in roles.get((ref["kind"], role_ns, ref["name"]), []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        held.add(Grant(scope, group, resource, verb, tuple(rule.get("resourceNames", []))))
    return held


def _matches(values: Iterable[str], wanted: str) -> bool:
    return any(value in ("*", wanted) for value in values)


def _resource_match(resource: str, wanted: str) -> bool:
    """`wanted` or one of its subresources (`remediationintents/status`), wildcards included."""
    return resource in ("*", wanted, "*/*") or resource.startswith(wanted + "/") or resource == f"*/{wanted}"


def agent_cannot_write_intents(objects: list[Obj], account: str, namespace: str) -> list[str]:
    """The agent's ServiceAccount holds no write verb on remediationintents or their subresources."""
    return [
        f"agent can {g.verb} {g.resource} ({g.scope})"
        for g in sorted(grants(objects, account, namespace))
        if _matches([g.group], "proxymedic.io")
        and _resource_match(g.resource, "remediationintents")
        and g.verb in WRITE_VERBS
    ]


def pod_delete_only_in(objects: list[Obj], account: str, namespace: str, allowed: str) -> list[str]:
    """The operator may delete pods only in `allowed` (kube-proxy's namespace), never cluster-wide."""
    problems: list[str] = []
    for g in sorted(grants(objects, account, namespace)):
        if not (_matches([g.group], "") and _resource_match(g.resource, "pods")):
            continue
        if g.verb in ("delete", "deletecollection", "*") and g.scope != allowed:
            problems.append(f"operator can {g.verb} {g.resource} in {g.scope}")
    return problems


def beyond(held: set[Grant], allowed: set[Grant]) -> list[str]:
    """Grants not in the documented set: verbs beyond need."""
    return [f"{g.verb} {g.group or 'core'}/{g.resource} ({g.scope})" for g in sorted(held - allowed)]


def service_accounts(objects: list[Obj]) -> Iterator[tuple[str, str]]:
    for obj in objects:
        if obj["kind"] == "ServiceAccount":
            yield obj["metadata"]["name"], obj["metadata"]["namespace"]
