"""values.schema.json: good values pass, bad ones are rejected by Helm naming the value, and the
schema and values.yaml describe the same keys (a hand-written schema drifts otherwise)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml

from proxymedic.api.types import DURATION_PATTERN, parse_duration
from proxymedic.cli.reference import value_docs
from tests.chart.render import CHART_DIR, render

pytestmark = pytest.mark.chart

GOOD: dict[str, dict[str, Any]] = {
    "defaults": {},
    "digest": {"image": {"repository": "registry.example/proxymedic", "digest": "sha256:" + "0" * 64}},
    "no-operator": {"operator": {"enabled": False}},
    "scaled-to-zero": {"operator": {"replicas": 0}},
    "no-agent": {"agent": {"enabled": False}},
    "durations": {
        "agent": {"senseInterval": "1m30s", "heartbeat": "1h"},
        "operator": {"coalesceWindow": "250ms"},
    },
    "max-unavailable-count": {"agent": {"maxUnavailable": 3}},
    "guardrails": {"policy": {"coredns": {"guardrails": {"minObservation": "1m", "paused": True}}}},
    "tolerations": {
        "agent": {"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]}
    },
}

BAD: dict[str, tuple[dict[str, Any], str]] = {
    "two-replicas": ({"operator": {"replicas": 2}}, "/operator/replicas"),
    "duration-typo": ({"agent": {"heartbeat": "5 minutes"}}, "/agent/heartbeat"),
    "duration-fraction": ({"operator": {"coalesceWindow": "0.5s"}}, "/operator/coalesceWindow"),
    "unknown-key": ({"agent": {"sysctlwrites": True}}, "sysctlwrites"),
    "sysctl-not-bool": ({"agent": {"sysctlWrites": "yes"}}, "/agent/sysctlWrites"),
    "pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "port-range": ({"agent": {"metricsPort": 70000}}, "/agent/metricsPort"),
    "pod-security": ({"namespace": {"podSecurityEnforce": "baseline"}}, "/namespace/podSecurityEnforce"),
    "digest": ({"image": {"digest": "latest"}}, "/image/digest"),
    "max-unavailable": ({"agent": {"maxUnavailable": "0%"}}, "/agent/maxUnavailable"),
    "kube-proxy-namespace": ({"kubeProxy": {"namespace": "Kube_System"}}, "/kubeProxy/namespace"),
    "dry-run-in-guardrails": (
        {"policy": {"coredns": {"guardrails": {"dryRun": False}}}},
        "/policy/coredns/guardrails/dryRun",
    ),
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return loaded


def test_schema_is_draft_07(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_durations_are_what_the_processes_parse(schema: dict[str, Any]) -> None:
    # The operator and the agent parse their duration flags with the models' parser: the
    # schema must not admit a value that parser rejects.
    assert schema["definitions"]["duration"]["pattern"] == DURATION_PATTERN
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for component, keys in {
        "operator": ("coalesceWindow", "intentTTL", "housekeepingInterval"),
        "agent": ("senseInterval", "heartbeat", "staleAfter"),
    }.items():
        for key in keys:
            ref = schema["properties"][component]["properties"][key]
            assert ref == {"$ref": "#/definitions/duration"}, key
            parse_duration(defaults[component][key])


@pytest.mark.parametrize("values", GOOD.values(), ids=GOOD.keys())
def test_good_values_render(values: dict[str, Any]) -> None:
    assert render(values).objects


@pytest.mark.parametrize(("values", "named"), BAD.values(), ids=BAD.keys())
def test_bad_values_are_rejected_naming_the_value(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    assert named in str(caught.value)


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        yield path
        yield from _schema_paths(sub, path)


def test_every_value_is_documented_and_in_the_schema(schema: dict[str, Any]) -> None:
    text = (CHART_DIR / "values.yaml").read_text()
    values = yaml.safe_load(text)
    documented = [path for path, _ in value_docs(text)]
    assert len(documented) == len(set(documented))
    undocumented = [
        leaf for leaf in _leaves(values) if not any(leaf == d or leaf.startswith(d + ".") for d in documented)
    ]
    assert undocumented == []
    in_schema = set(_schema_paths(schema))
    assert [path for path in documented if path not in in_schema] == []
    # …and the schema declares no value that values.yaml lacks (`global` is Helm's own).
    parents = {p.rsplit(".", n)[0] for p in documented for n in range(1, p.count(".") + 1)}
    known = set(documented) | parents
    assert (
        sorted(p for p in in_schema if p not in known and p != "global" and not _inside(p, documented)) == []
    )


def _inside(path: str, documented: list[str]) -> bool:
    return any(path.startswith(d + ".") for d in documented)
