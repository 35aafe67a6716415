"""The emulator's shortcuts in evaluating CEL rules give the answers a full evaluation gives."""

from __future__ import annotations

from typing import Any

import pytest

from proxymedic.emulator import cel_rules

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("rule", "fields"),
    [
        ("self.metadata.name == self.spec.nodeName", {"metadata", "spec"}),
        ("has(self.x) || self.y == 1", {"x", "y"}),
        ("self == oldSelf", None),
        ("size(self) > 0", None),
        ("self['a'] > 1", None),
        ("self.all(k, k != 'bad')", None),
        ("self.size() > 1", None),
        ("isIP(self)", None),
    ],
)
def test_fields_a_rule_reads(rule: str, fields: set[str] | None) -> None:
    assert cel_rules._fields_used(rule) == (None if fields is None else frozenset(fields))


def _schema(rule: str) -> dict[str, Any]:
    return {"type": "object", "x-kubernetes-validations": [{"rule": rule, "message": "no"}]}


@pytest.mark.parametrize(
    ("rule", "value", "valid"),
    [
        ("has(self.x) || self.y == 1", {"y": 2}, False),  # x absent stays absent
        ("has(self.x) || self.y == 1", {"x": 0, "y": 2}, True),
        ("has(self.x) || self.y == 1", {"y": 1, "z": 5}, True),
        ("self.all(k, k != 'bad')", {"good": 1, "bad": 2}, False),  # a macro sees every key
        ("self.all(k, k != 'bad')", {"good": 1}, True),
        ("size(self) == 2", {"a": 1, "b": 2}, True),
    ],
)
def test_narrowed_objects_give_the_same_verdict(rule: str, value: dict[str, Any], valid: bool) -> None:
    assert (cel_rules.check(_schema(rule), value) == []) is valid


def test_a_scalar_rule_is_remembered_per_value_and_type() -> None:
    schema = {"type": "string", "x-kubernetes-validations": [{"rule": "isIP(self)", "message": "not an IP"}]}
    for _ in range(3):
        assert cel_rules.check(schema, "10.0.0.1") == []
        causes = cel_rules.check(schema, "10.0.0.300")
        assert [cause.field for cause in causes] == [""]
        assert "not an IP" in causes[0].message
    number = {"type": "integer", "x-kubernetes-validations": [{"rule": "self == 1"}]}
    assert cel_rules.check(number, 1) == []
    assert (
        cel_rules.check({"type": "boolean", "x-kubernetes-validations": [{"rule": "self == true"}]}, True)
        == []
    )
