"""Who may write RemediationIntents, from the rendered chart's RBAC: the operator's ServiceAccount
alone; the agent reads them. Built on the grant machinery of tests/chart/rules.py."""

from __future__ import annotations

from tests.chart.render import Obj
from tests.chart.rules import WRITE_VERBS, grants

READ_VERBS = frozenset({"get", "list", "watch"})
INTENTS = "remediationintents"
AGGREGATION_LABEL = "rbac.authorization.k8s.io/aggregate-to-"


def _intent_rules(role: Obj) -> list[dict[str, list[str]]]:
    return [
        rule
        for rule in role.get("rules") or []
        if any(group in ("proxymedic.io", "*") for group in rule.get("apiGroups", []))
        and any(
            r in ("*", "*/*") or r == INTENTS or r.startswith(INTENTS + "/")
            for r in rule.get("resources", [])
        )
    ]


def intent_write_problems(objects: list[Obj], namespace: str, operator: str, agent: str) -> list[str]:
    """Every grant of an intent write to anyone but the operator, and every agent right beyond reading."""
    problems: list[str] = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        for subject in binding.get("subjects") or []:
            kind, name = subject.get("kind"), subject.get("name")
            subject_ns = subject.get("namespace", binding["metadata"].get("namespace"))
            if kind == "ServiceAccount" and subject_ns == namespace and name in (operator, agent):
                continue
            role = next(
                (
                    o
                    for o in objects
                    if o["kind"] == binding["roleRef"]["kind"]
                    and o["metadata"]["name"] == binding["roleRef"]["name"]
                ),
                None,
            )
            if role is None:
                continue
            for rule in _intent_rules(role):
                writes = sorted(set(rule.get("verbs", [])) & WRITE_VERBS)
                if writes:
                    problems.append(f"{kind} {subject_ns}/{name} can {', '.join(writes)} {rule['resources']}")
    for role in objects:
        if role["kind"] != "ClusterRole":
            continue
        labels = role["metadata"].get("labels") or {}
        aggregated = [
            key for key, value in labels.items() if key.startswith(AGGREGATION_LABEL) and value == "true"
        ]
        aggregates_writes = any(set(rule.get("verbs", [])) & WRITE_VERBS for rule in _intent_rules(role))
        if aggregated and aggregates_writes:
            problems.append(
                f"ClusterRole {role['metadata']['name']} aggregates intent writes into {aggregated}"
            )
    for grant in sorted(grants(objects, agent, namespace)):
        if (
            grant.group in ("proxymedic.io", "*")
            and (
                grant.resource == INTENTS or grant.resource.startswith(INTENTS + "/") or "*" in grant.resource
            )
            and (grant.resource != INTENTS or grant.verb not in READ_VERBS)
        ):
            problems.append(f"agent can {grant.verb} {grant.resource} ({grant.scope})")
    operator_writes = {
        g.verb
        for g in grants(objects, operator, namespace)
        if g.group == "proxymedic.io" and g.resource == INTENTS
    } & WRITE_VERBS
    if "create" not in operator_writes:
        problems.append("the operator cannot create intents")
    return problems
