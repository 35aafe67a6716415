"""The CRDs in crds/ are generated from the models, structural, and checked for drift."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field

from proxymedic.api import crd
from proxymedic.api.policy import ProxyHealthPolicy, ProxyHealthPolicySpec
from proxymedic.cli import crds as crds_cli

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or "(root)", schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """Violations of the API server's structural-schema rules that the generator must avoid."""
    problems: list[str] = []
    for path, node in _walk(schema):
        if "$ref" in node or "$defs" in node:
            problems.append(f"{path}: references are not allowed")
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: every node needs a type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties are exclusive")
        if node.get("type") == "null" or "const" in node or "oneOf" in node:
            problems.append(f"{path}: JSON-Schema construct the API server rejects")
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: anyOf only for int-or-string")
        if node.get("type") == "array" and "maxItems" not in node and path != "(root)":
            problems.append(f"{path}: arrays need maxItems to bound CEL cost")
        if "default" in node and node.get("type") == "object" and node["default"] not in ({},):
            for key in node["default"]:
                if key not in node.get("properties", {}) and "additionalProperties" not in node:
                    problems.append(f"{path}: default sets unknown field {key}")
    return problems


@pytest.mark.parametrize("info", crd.KINDS, ids=lambda info: info.kind)
def test_schema_is_structural(info: crd.KindInfo) -> None:
    assert structural_problems(crd.openapi_schema(info)) == []


@pytest.mark.parametrize("info", crd.KINDS, ids=lambda info: info.kind)
def test_crd_has_status_short_names_and_columns(info: crd.KindInfo) -> None:
    manifest = crd.build_crd(info)
    version = manifest["spec"]["versions"][0]
    assert manifest["spec"]["scope"] == "Cluster"
    assert version["subresources"] == {"status": {}}
    assert manifest["spec"]["names"]["shortNames"]
    columns = {column["name"] for column in version["additionalPrinterColumns"]}
    assert "Age" in columns
    assert len(columns) >= 5


def test_cross_field_rules_are_cel() -> None:
    rules = yaml.safe_dump(crd.build_crd(crd.KINDS[1]))
    assert "set exactly one of allNodes or nodeNames" in rules
    assert "self == oldSelf" in rules


@pytest.mark.parametrize("directory", crds_cli.DEFAULT_DIRECTORIES, ids=str)
def test_committed_crds_match_the_models(directory: Path) -> None:
    assert crds_cli.stale_crds(REPO / directory) == {}


def test_cli_check_passes_on_the_repository() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxymedic.cli.main", "crds", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_changing_a_model_without_regenerating_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crds_cli.run(tmp_path, check=False) == 0
    assert crds_cli.run(tmp_path, check=True) == 0

    class ChangedSpec(ProxyHealthPolicySpec):
        quiet_hours: int = Field(default=0, ge=0)

    class ChangedPolicy(ProxyHealthPolicy):
        spec: ChangedSpec = Field(default_factory=ChangedSpec)

    monkeypatch.setattr(
        crd, "KINDS", (dataclasses.replace(crd.KINDS[0], model=ChangedPolicy), *crd.KINDS[1:])
    )
    capsys.readouterr()
    assert crds_cli.run(tmp_path, check=True) == 1
    err = capsys.readouterr().err
    assert "proxymedic.io_proxyhealthpolicies.yaml differs from the models" in err
    assert "+              quietHours:" in err
    assert "run `proxymedic crds` to regenerate" in err


def test_missing_file_is_drift(tmp_path: Path) -> None:
    crds_cli.write_crds(tmp_path)
    (tmp_path / crd.KINDS[2].file_name).unlink()
    assert list(crds_cli.stale_crds(tmp_path)) == [tmp_path / crd.KINDS[2].file_name]
