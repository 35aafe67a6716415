"""Every field of a ProxyHealthPolicy spec, given invalid values: the models reject each one with a
message naming the field path and the reason; the generated CRD rejects the same where a schema can
say it; and random structures never make validation raise anything but InvalidObjectError."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxymedic.api.errors import InvalidObjectError, parse_object
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.emulator.runner import serve
from proxymedic.emulator.server import KubernetesApiEmulator
from tests.contract.test_crd_parity import CRDS, post
from tests.reliability.input_policies import MESSAGE_LIMIT, MODEL_ONLY, POLICY_CASES
from tests.unit.factories import policy, with_change

HYPOTHESIS_EXAMPLES = 300


def _problems(obj: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidObjectError) as caught:
        parse_object(obj)
    assert caught.value.kind == "ProxyHealthPolicy"
    return caught.value.problems


@pytest.mark.unit
@pytest.mark.parametrize(("path", "value", "field", "reason"), POLICY_CASES.values(), ids=POLICY_CASES.keys())
def test_the_models_name_the_field_and_the_reason(path: str, value: Any, field: str, reason: str) -> None:
    problems = _problems(with_change(policy(), path, value))
    assert any(p.startswith(f"{field}: ") and reason in p for p in problems), problems
    assert all(len(p) < MESSAGE_LIMIT for p in problems), [len(p) for p in problems]
    assert len(str(InvalidObjectError("ProxyHealthPolicy", "x", problems))) < 4 * MESSAGE_LIMIT


@pytest.mark.unit
def test_every_spec_field_is_tried() -> None:
    """The table covers every field of the spec model, down to the leaves."""
    tried = {path.removeprefix("spec.") for path, *_ in POLICY_CASES.values()}

    def fields(model: Any, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for name, info in model.model_fields.items():
            alias = info.alias or name
            path = f"{prefix}{alias}"
            found.add(path)
            annotation = info.annotation
            nested = isinstance(annotation, type) and hasattr(annotation, "model_fields")
            if nested and annotation.__name__ != "LabelSelector":
                found |= fields(annotation, path + ".")
        return found

    spec_fields = fields(ProxyHealthPolicy.model_fields["spec"].annotation)
    untried = {f for f in spec_fields if not any(t == f or t.startswith(f + ".") for t in tried)}
    assert untried == set()


@pytest.fixture
async def api() -> AsyncIterator[KubernetesApiEmulator]:
    async with serve() as emulator:
        for path in sorted(CRDS.glob("*.yaml")):
            emulator.register_crd(yaml.safe_load(path.read_text()))
        yield emulator


@pytest.mark.emulator
async def test_the_crd_rejects_the_same_where_a_schema_can_say_it(api: KubernetesApiEmulator) -> None:
    assert set(MODEL_ONLY) <= set(POLICY_CASES)
    mismatches: list[str] = []
    for index, (case, (path, value, field, _)) in enumerate(POLICY_CASES.items()):
        obj = with_change(policy(), path, value)
        if case not in MODEL_ONLY:
            obj["metadata"]["name"] = f"case-{index}"
        status, body = await post(api, obj)
        if case in MODEL_ONLY:
            continue
        causes = (
            [c.get("field", "") for c in body.get("details", {}).get("causes", [])] if status == 422 else []
        )
        if not any(c == field or c.startswith((field + ".", field + "[")) for c in causes):
            mismatches.append(f"{case}: HTTP {status}, fields {causes}, wanted {field}")
    assert mismatches == []


# --- random structures ------------------------------------------------------------------------------

FIELD_NAMES = [
    "services", "nodes", "actions", "guardrails", "namespaces", "labelSelector", "matchLabels",
    "matchExpressions", "key", "operator", "values", "protocols", "flushStaleConnections", "enabled",
    "restartKubeProxy", "staleAfter", "target", "namespace", "ipvsUDPTimeout", "timeout", "raiseConntrackMax",
    "ceiling", "dryRun", "nodeCooldown", "hourlyBudget", "perNode", "perCluster",
    "maxConcurrentKubeProxyRestarts", "maintenanceWindows", "days", "start", "end", "timeZone",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["30s", "-1s", "1h", "100%", "101%", "UDP", "In", "02:00", "UTC"])
)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=12)
structures = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=25,
)
EXAMPLES = settings(
    max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _validate(obj: dict[str, Any]) -> None:
    problems: list[str] = []
    try:
        parse_object(obj)
    except InvalidObjectError as exc:
        problems = exc.problems or ["(none)"]
    assert all(": " in problem for problem in problems), problems


@pytest.mark.unit
@EXAMPLES
@given(spec=structures)
def test_random_specs_raise_only_the_validation_error(spec: Any) -> None:
    _validate({**policy(), "spec": spec})


@pytest.mark.unit
@EXAMPLES
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(sorted({p for p, *_ in POLICY_CASES.values()})), structures), max_size=4
    )
)
def test_random_changes_to_a_valid_policy_raise_only_the_validation_error(
    changes: list[tuple[str, Any]],
) -> None:
    obj = policy()
    for path, value in changes:
        try:
            obj = with_change(obj, path, value)
        except (AttributeError, TypeError, IndexError, ValueError):
            continue  # the path runs through a value that is no longer an object
    _validate(obj)
