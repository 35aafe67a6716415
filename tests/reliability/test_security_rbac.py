"""Only the operator's identity can issue intents: the rendered chart's RBAC grants RemediationIntent
writes to the operator's ServiceAccount alone, the agent only reads them (and nothing on their
status), and no ClusterRole aggregates intent writes into the built-in roles. Each rule is shown to
catch a chart that breaks it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.render import NAMESPACE, RELEASE, Obj, Rendered, mutated, render
from tests.reliability.security_rbac import intent_write_problems

pytestmark = pytest.mark.chart

OPERATOR_SA = f"{RELEASE}-proxymedic-operator"
AGENT_SA = f"{RELEASE}-proxymedic-agent"
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": {"namespace": {"create": True}, "agent": {"sysctlWrites": True}},
    "standalone": {"operator": {"peering": {"enabled": False}}},
}


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render()


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_only_the_operator_writes_intents(values: dict[str, Any]) -> None:
    assert intent_write_problems(render(values).objects, NAMESPACE, OPERATOR_SA, AGENT_SA) == []


def _role(objects: list[Obj], suffix: str) -> Obj:
    return next(o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith(suffix))


def _intent_rule(objects: list[Obj]) -> dict[str, Any]:
    rule: dict[str, Any] = next(
        r for r in _role(objects, "-agent")["rules"] if r["resources"] == ["remediationintents"]
    )
    return rule


def _extra_binding(subject: dict[str, str]) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "extra"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": OPERATOR_SA,
                },
                "subjects": [subject],
            }
        )

    return mutate


def _aggregated(objects: list[Obj]) -> None:
    _role(objects, "-operator")["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] = "true"


def _agent_status(objects: list[Obj]) -> None:
    _role(objects, "-agent")["rules"].append(
        {"apiGroups": ["proxymedic.io"], "resources": ["remediationintents/status"], "verbs": ["patch"]}
    )


def _operator_cannot_create(objects: list[Obj]) -> None:
    for rule in _role(objects, "-operator")["rules"]:
        if rule["resources"] == ["remediationintents"]:
            rule["verbs"] = ["list", "watch"]


BREAKS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "agent-deletes": (
        lambda objects: _intent_rule(objects)["verbs"].append("delete"),
        "agent can delete remediationintents",
    ),
    "agent-patches-status": (_agent_status, "agent can patch remediationintents/status"),
    "agent-wildcard": (
        lambda objects: _intent_rule(objects).update(verbs=["*"]),
        "agent can * remediationintents",
    ),
    "a-user": (_extra_binding({"kind": "User", "name": "jane"}), "User None/jane can create, delete"),
    "a-group": (
        _extra_binding({"kind": "Group", "name": "system:authenticated"}),
        "Group None/system:authenticated can create",
    ),
    "another-service-account": (
        _extra_binding({"kind": "ServiceAccount", "name": "default", "namespace": NAMESPACE}),
        f"ServiceAccount {NAMESPACE}/default can create",
    ),
    "same-name-other-namespace": (
        _extra_binding({"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": "default"}),
        f"ServiceAccount default/{OPERATOR_SA} can create",
    ),
    "aggregated-into-admin": (_aggregated, "aggregates intent writes into"),
    "operator-cannot-create": (_operator_cannot_create, "the operator cannot create intents"),
}


@pytest.mark.parametrize(("mutation", "expected"), BREAKS.values(), ids=BREAKS.keys())
def test_the_intent_rule_catches(
    default: Rendered, mutation: Callable[[list[Obj]], None], expected: str
) -> None:
    problems = intent_write_problems(mutated(default, mutation), NAMESPACE, OPERATOR_SA, AGENT_SA)
    assert any(expected in p for p in problems), problems
