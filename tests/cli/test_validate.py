"""``proxymedic validate``: every message names the file and the line, and says what would be valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Run

pytestmark = pytest.mark.unit

POLICY = """\
apiVersion: proxymedic.io/v1alpha1
kind: ProxyHealthPolicy
metadata:
  name: {name}
spec:
{spec}"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_policy(run: Run) -> None:
    example = "examples/policy-coredns.yaml"
    first = 1 + Path(example).read_text().splitlines().index("apiVersion: proxymedic.io/v1alpha1")
    result = run("validate", example)
    assert (result.code, result.err) == (0, "")
    assert result.out == f'{example}:{first}: ProxyHealthPolicy "coredns" is valid\n'


def test_an_unknown_field_names_the_line_and_suggests_the_valid_names(run: Run, tmp_path: Path) -> None:
    path = write(
        tmp_path, POLICY.format(name="typo", spec="  actoins:\n    flushStaleConnections: {enabled: true}\n")
    )
    result = run("validate", str(path))
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f'{path}:1: ProxyHealthPolicy "typo" is invalid:\n'
        f"  {path}:6: spec.actoins: unknown field; did you mean actions? "
        "(valid here: services, nodes, actions, guardrails)\n"
    )


def test_an_unknown_nested_field_lists_that_objects_fields(run: Run, tmp_path: Path) -> None:
    spec = "  guardrails:\n    dryRun: true\n    nodeColdown: 5m\n"
    result = run("validate", str(write(tmp_path, POLICY.format(name="p", spec=spec))))
    assert result.code == 1
    assert (
        ":8: spec.guardrails.nodeColdown: unknown field; did you mean nodeCooldown? (valid here: dryRun, "
        in (result.err)
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"false"', "expected a boolean (true or false), got 'false': write false without quotes"),
        ("yes please", "expected a boolean (true or false), got 'yes please'"),
        ("1", "expected a boolean (true or false), got 1"),
    ],
)
def test_a_bad_boolean_shows_the_value(run: Run, tmp_path: Path, value: str, message: str) -> None:
    spec = f"  guardrails:\n    dryRun: {value}\n"
    path = write(tmp_path, POLICY.format(name="p", spec=spec))
    result = run("validate", str(path))
    assert result.code == 1
    assert f"  {path}:7: spec.guardrails.dryRun: {message}\n" in result.err


def test_a_yaml_error_names_the_file_and_the_line(run: Run, tmp_path: Path) -> None:
    path = write(tmp_path, POLICY.format(name="p", spec="  actions: [oops\n"))
    result = run("validate", str(path))
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(f"{path}:7:1: not valid YAML: expected ',' or ']'")
    assert "<unicode string>" not in result.err
    assert result.err.count("\n") == 1


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n"])
def test_an_empty_file_is_an_error(run: Run, tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    result = run("validate", str(path))
    assert (result.code, result.out) == (1, "")
    assert result.err == f"{path}: no manifest in it: the file is empty or holds only comments\n"


def test_a_missing_file_is_an_error(run: Run, tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nope.yaml"))
    assert result.code == 1
    assert result.err == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n"


def test_other_kinds_are_skipped_and_ours_validated(run: Run, tmp_path: Path) -> None:
    crds = Path("charts/proxymedic/crds/proxymedic.io_proxyhealthpolicies.yaml").read_text()
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n---\n"
        + POLICY.format(name="good", spec="  guardrails: {dryRun: true}\n")
        + "---\n"
        + crds
    )
    path = write(tmp_path, text)
    result = run("validate", str(path))
    assert (result.code, result.err) == (0, "")
    assert result.out == (
        f'{path}:1: skipped ConfigMap "settings": not a kind of ProxyMedic\n'
        f'{path}:5: ProxyHealthPolicy "good" is valid\n'
        f'{path}:13: skipped CustomResourceDefinition "proxyhealthpolicies.proxymedic.io": not a kind of '
        "ProxyMedic\n"
        "1 valid, 0 invalid, 2 skipped\n"
    )


def test_a_misspelt_kind_is_not_skipped(run: Run, tmp_path: Path) -> None:
    path = write(
        tmp_path, "apiVersion: proxymedic.io/v1alpha1\nkind: ProxyHealthPolicies\nmetadata: {name: p}\n"
    )
    result = run("validate", str(path))
    assert result.code == 1
    assert "did you mean ProxyHealthPolicy?" in result.err
    assert f"  {path}:2: kind: " in result.err
