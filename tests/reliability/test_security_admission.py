"""A NodeProxyHealth can only be written by its own node's agent: the chart's ValidatingAdmissionPolicy,
rendered by the real Helm engine, validated against the Kubernetes schemas, and its CEL evaluated for
each writer. Every check is shown to catch a broken policy."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from tests.chart.render import NAMESPACE, RELEASE, Obj, Rendered, mutated, render
from tests.reliability.security_admission import (
    admission_problems,
    decide,
    policy_objects,
    report,
    request,
    scenarios,
)

pytestmark = pytest.mark.chart

AGENT = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-proxymedic-agent"
OPERATOR = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-proxymedic-operator"
KUBERNETES_VERSIONS = ("1.31.0", "1.34.0")
SCENARIOS = scenarios(AGENT, OPERATOR)


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render()


def _policy(objects: list[Obj]) -> Obj:
    return policy_objects(objects)[0][0]


def test_the_rendered_policy_keeps_reports_to_their_own_agent(default: Rendered) -> None:
    assert admission_problems(default.objects, AGENT, OPERATOR) == []


@pytest.mark.parametrize("case", SCENARIOS, ids=SCENARIOS.keys())
def test_each_writer_gets_the_documented_answer(default: Rendered, case: str) -> None:
    scenario = SCENARIOS[case]
    decision = decide(
        _policy(default.objects),
        request(scenario.username, scenario.operation, scenario.node_claim),
        scenario.target,
    )
    assert decision.allowed is scenario.allowed, decision
    if not scenario.allowed:
        assert any(scenario.message in denial for denial in decision.denials), decision.denials
        assert all(denial.strip() for denial in decision.denials)
    if scenario.username.endswith(("-agent", "-operator")) and ":proxymedic:" in scenario.username:
        assert decision.matched


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_policy_and_binding_are_valid_kubernetes_objects(default: Rendered, version: str) -> None:
    policies, bindings = policy_objects(default.objects)
    assert len(policies) == 1
    assert len(bindings) == 1
    for obj in policies + bindings:
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_broken_policy_object_is_reported(default: Rendered) -> None:
    broken = copy.deepcopy(_policy(default.objects))
    broken["spec"]["validationz"] = broken["spec"].pop("validations")
    with pytest.raises(kubernetes_validate.ValidationError, match="validationz"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_custom_service_account_names_are_the_ones_judged() -> None:
    objects = render(
        {
            "agent": {"serviceAccount": {"name": "node-agent"}},
            "operator": {"serviceAccount": {"name": "decider"}},
        }
    ).objects
    agent = f"system:serviceaccount:{NAMESPACE}:node-agent"
    operator = f"system:serviceaccount:{NAMESPACE}:decider"
    assert admission_problems(objects, agent, operator) == []
    assert admission_problems(objects, AGENT, OPERATOR) != [], "the default names are not matched any more"


@pytest.mark.parametrize(
    "values",
    [{"agent": {"admissionPolicy": {"enabled": False}}}, {"agent": {"enabled": False}}],
    ids=["policy-off", "no-agent"],
)
def test_the_policy_can_be_turned_off(values: dict[str, Any]) -> None:
    assert policy_objects(render(values).objects) == ([], [])


# --- each check catches its own violation -------------------------------------------------------------


def _validation(objects: list[Obj], index: int) -> dict[str, Any]:
    validation: dict[str, Any] = _policy(objects)["spec"]["validations"][index]
    return validation


def _replace_in(index: int, old: str, new: str) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        validation = _validation(objects, index)
        assert old in validation["expression"]
        validation["expression"] = validation["expression"].replace(old, new)

    return mutate


def _drop_validation(index: int) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        del _policy(objects)["spec"]["validations"][index]

    return mutate


def _set_spec(key: str, value: Any) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        _policy(objects)["spec"][key] = value

    return mutate


def _binding(key: str, value: Any) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        policy_objects(objects)[1][0]["spec"][key] = value

    return mutate


def _drop_binding(objects: list[Obj]) -> None:
    objects.remove(policy_objects(objects)[1][0])


def _only_status(objects: list[Obj]) -> None:
    _policy(objects)["spec"]["matchConstraints"]["resourceRules"][0]["resources"] = [
        "nodeproxyhealths/status"
    ]


def _match_agent_only_by_group(objects: list[Obj]) -> None:
    _policy(objects)["spec"]["matchConditions"][0]["expression"] = "'system:nodes' in request.userInfo.groups"


BREAKS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "any-node-passes": (
        lambda objects: _validation(objects, 2).update(expression="true"),
        "agent-other-node: allowed",
    ),
    "spec-node-not-checked": (
        _replace_in(2, "object.spec.nodeName == node", "true"),
        "agent-own-name-other-spec-node: allowed",
    ),
    "missing-claim-passes": (
        _replace_in(1, "size(variables.nodeClaim) == 1", "true"),
        "agent-without-node-claim: allowed",
    ),
    "two-claims-pass": (
        _replace_in(1, "== 1", ">= 1"),
        "agent-with-two-node-claims: denied without saying why",
    ),
    "operator-may-write": (_drop_validation(0), "operator-with-node-claim: allowed"),
    "fails-open": (_set_spec("failurePolicy", "Ignore"), "failurePolicy is Ignore"),
    "warn-only": (_binding("validationActions", ["Warn", "Audit"]), "does not deny"),
    "binding-names-another-policy": (
        _binding("policyName", "other"),
        "no ValidatingAdmissionPolicyBinding binds",
    ),
    "no-binding": (_drop_binding, "no ValidatingAdmissionPolicyBinding binds"),
    "create-not-matched": (_only_status, "CREATE of nodeproxyhealths is not matched"),
    "agent-not-matched": (_match_agent_only_by_group, "agent-other-node: allowed"),
    "message-says-nothing": (
        lambda objects: _validation(objects, 2).update(messageExpression="''", message=" "),
        "agent-other-node: denied without saying why",
    ),
}


@pytest.mark.parametrize(("mutation", "expected"), BREAKS.values(), ids=BREAKS.keys())
def test_the_admission_check_catches(
    default: Rendered, mutation: Callable[[list[Obj]], None], expected: str
) -> None:
    problems = admission_problems(mutated(default, mutation), AGENT, OPERATOR)
    assert any(expected in p for p in problems), problems


def test_the_object_under_test_is_what_the_agent_writes() -> None:
    """The scenarios write what AgentRunner creates: name and spec.nodeName both the node's."""
    assert report("node-1") == {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "NodeProxyHealth",
        "metadata": {"name": "node-1"},
        "spec": {"nodeName": "node-1"},
    }
