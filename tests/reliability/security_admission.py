"""Evaluate the chart's ValidatingAdmissionPolicy for NodeProxyHealth writes the way the API server does.

The rendered policy's CEL (match conditions, variables, validations, message expressions) runs
with the ``cel`` package against admission requests; ``admission_problems`` lists every way the
rendered output fails the rule "a report can only be written by its own node's agent", so a test
can show both that the chart keeps it and that a broken policy is reported.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import cel

from tests.chart.render import Obj

NODE_CLAIM = "authentication.kubernetes.io/node-name"


@dataclass(frozen=True)
class Decision:
    matched: bool
    denials: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.denials


def policy_objects(objects: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    policies = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"]
    bindings = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    return policies, bindings


def _evaluate(expression: str, context: dict[str, Any]) -> Any:
    return cel.compile(expression).execute(cel.Context(context))


def decide(policy: Obj, request: dict[str, Any], obj: dict[str, Any]) -> Decision:
    """The policy's verdict on one request: matched at all, and the messages of failed validations.

    An expression that fails to evaluate denies, as with ``failurePolicy: Fail``.
    """
    spec = policy["spec"]
    context: dict[str, Any] = {"request": request, "object": obj}
    fail_closed = spec.get("failurePolicy", "Fail") == "Fail"
    for condition in spec.get("matchConditions", []):
        try:
            if _evaluate(condition["expression"], context) is not True:
                return Decision(matched=False)
        except Exception as exc:
            return Decision(True, (f"match condition failed: {exc}",) if fail_closed else ())
    variables: dict[str, Any] = {}
    for variable in spec.get("variables", []):
        try:
            variables[variable["name"]] = _evaluate(
                variable["expression"], {**context, "variables": variables}
            )
        except Exception as exc:
            return Decision(True, (f"variable {variable['name']} failed: {exc}",) if fail_closed else ())
    context["variables"] = variables
    denials: list[str] = []
    for validation in spec.get("validations", []):
        try:
            passed = _evaluate(validation["expression"], context) is True
        except Exception as exc:
            if fail_closed:
                denials.append(f"validation failed to evaluate: {exc}")
            continue
        if passed:
            continue
        message = validation.get("message") or f"failed expression: {validation['expression']}"
        if "messageExpression" in validation:
            with contextlib.suppress(Exception):  # a broken one leaves the static message, as on a server
                message = str(_evaluate(validation["messageExpression"], context))
        denials.append(message)
    return Decision(True, tuple(denials))


def request(username: str, operation: str = "UPDATE", node: str | list[str] | None = None) -> dict[str, Any]:
    """An admission request's CEL view: the user and, for a pod-bound token, its node-name claim."""
    user: dict[str, Any] = {
        "username": username,
        "groups": ["system:serviceaccounts", "system:authenticated"],
    }
    if node is not None:
        extra = {
            NODE_CLAIM: [node] if isinstance(node, str) else node,
            "authentication.kubernetes.io/pod-name": ["pm-proxymedic-agent-x7k2p"],
        }
        user["extra"] = extra
    return {
        "operation": operation,
        "userInfo": user,
        "resource": {"group": "proxymedic.io", "version": "v1alpha1", "resource": "nodeproxyhealths"},
        "subResource": "status" if operation == "UPDATE" else "",
    }


def report(name: str, node_name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "NodeProxyHealth",
        "metadata": {"name": name},
        "spec": {"nodeName": node_name or name},
    }


@dataclass(frozen=True)
class Scenario:
    """One writer, one report, and what the policy must say."""

    username: str
    node_claim: str | list[str] | None
    target: dict[str, Any]
    allowed: bool
    message: str = ""
    operation: str = "UPDATE"


def scenarios(agent: str, operator: str) -> dict[str, Scenario]:
    """The writers that matter, for the agent and operator usernames of a release."""
    return {
        "agent-own-node-status": Scenario(agent, "node-1", report("node-1"), True),
        "agent-own-node-create": Scenario(agent, "node-1", report("node-1"), True, operation="CREATE"),
        "agent-other-node": Scenario(
            agent,
            "node-1",
            report("node-2"),
            False,
            "the agent on node node-1 may write only its own NodeProxyHealth, not node-2",
        ),
        "agent-other-node-create": Scenario(
            agent,
            "node-1",
            report("node-2"),
            False,
            "may write only its own NodeProxyHealth, not node-2",
            "CREATE",
        ),
        "agent-own-name-other-spec-node": Scenario(
            agent, "node-1", report("node-1", "node-2"), False, "may write only its own NodeProxyHealth"
        ),
        "agent-without-node-claim": Scenario(
            agent, None, report("node-1"), False, "the agent's token names no node"
        ),
        "agent-with-two-node-claims": Scenario(
            agent, ["node-1", "node-2"], report("node-1"), False, "the agent's token names no node"
        ),
        "operator": Scenario(
            operator, None, report("node-1"), False, "the operator only reads NodeProxyHealth"
        ),
        "operator-with-node-claim": Scenario(
            operator, "node-1", report("node-1"), False, "the operator only reads NodeProxyHealth"
        ),
        "cluster-admin": Scenario("kubernetes-admin", None, report("node-1"), True),
        "other-service-account": Scenario(
            "system:serviceaccount:default:builder", None, report("node-1"), True
        ),
        "agent-name-in-other-namespace": Scenario(
            agent.replace(":proxymedic:", ":elsewhere:"), None, report("node-1"), True
        ),
    }


def admission_problems(objects: list[Obj], agent: str, operator: str) -> list[str]:
    """Every way the rendered objects fail to keep NodeProxyHealth writes to the node's own agent."""
    policies, bindings = policy_objects(objects)
    if len(policies) != 1:
        return [f"expected one ValidatingAdmissionPolicy, found {len(policies)}"]
    policy = policies[0]
    name = policy["metadata"]["name"]
    spec = policy["spec"]
    problems: list[str] = []
    if spec.get("failurePolicy", "Fail") != "Fail":
        problems.append(
            f"failurePolicy is {spec.get('failurePolicy')}: an evaluation error would let a write through"
        )
    rules = spec.get("matchConstraints", {}).get("resourceRules", [])
    covered = {
        (resource, operation)
        for rule in rules
        if "proxymedic.io" in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for operation in rule.get("operations", [])
    }
    for resource in ("nodeproxyhealths", "nodeproxyhealths/status"):
        for operation in ("CREATE", "UPDATE"):
            if (resource, operation) not in covered and (resource, "*") not in covered:
                problems.append(f"{operation} of {resource} is not matched")
    bound = [b for b in bindings if b["spec"].get("policyName") == name]
    if not bound:
        problems.append(f"no ValidatingAdmissionPolicyBinding binds {name}")
    for binding in bound:
        actions = binding["spec"].get("validationActions", [])
        if "Deny" not in actions:
            problems.append(
                f"binding {binding['metadata']['name']} does not deny (validationActions {actions})"
            )
    for case, scenario in scenarios(agent, operator).items():
        decision = decide(
            policy, request(scenario.username, scenario.operation, scenario.node_claim), scenario.target
        )
        if decision.allowed != scenario.allowed:
            verdict = "allowed" if decision.allowed else f"denied ({'; '.join(decision.denials)})"
            problems.append(f"{case}: {verdict}, expected {'allowed' if scenario.allowed else 'denied'}")
        elif not scenario.allowed and not any(scenario.message in d for d in decision.denials):
            problems.append(f"{case}: denied without saying why ({decision.denials})")
    return problems
