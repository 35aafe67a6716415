"""``proxymedic reference``: write docs/reference.md from the models and the chart's values.yaml.

The fields of the three kinds come from the same OpenAPI schemas as the CRDs (types, defaults,
bounds, CEL rules and descriptions); the chart values come from values.yaml, whose every value
carries a ``# --`` comment. ``--check`` fails when the file on disk differs.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from proxymedic.api.crd import KINDS, KindInfo, openapi_schema
from proxymedic.api.meta import GROUP, VERSION

DEFAULT_OUTPUT = Path("docs/reference.md")
DEFAULT_VALUES = Path("charts/proxymedic/values.yaml")
DOC_MARK = "# --"
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    default: str
    bounds: str
    description: str


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _type(schema: dict[str, Any]) -> str:
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"[]{_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:
        return f"map[string]{_type(schema['additionalProperties'])}"
    if schema.get("format"):
        return f"{kind} ({schema['format']})"
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    return kind


def _bounds(schema: dict[str, Any]) -> str:
    parts: list[str] = []
    items = schema.get("items", {}) if schema.get("type") == "array" else {}
    for source in (schema, items):
        if "enum" in source:
            parts.append("one of " + ", ".join(f"`{v}`" for v in source["enum"]))
        for key, word in (("minimum", "≥"), ("maximum", "≤")):
            if key in source:
                parts.append(f"{word} {source[key]}")
        for key, word in (("minLength", "length ≥"), ("maxLength", "length ≤")):
            if key in source:
                parts.append(f"{word} {source[key]}")
        if "pattern" in source:
            parts.append(f"pattern `{source['pattern']}`")
    for key, word in (("minItems", "items ≥"), ("maxItems", "items ≤")):
        if key in schema:
            parts.append(f"{word} {schema[key]}")
    for rule in schema.get("x-kubernetes-validations", []):
        parts.append(str(rule.get("message") or rule["rule"]))
    return "; ".join(parts)


def schema_rows(schema: dict[str, Any], prefix: str, required: frozenset[str] = frozenset()) -> Iterator[Row]:
    """One row per field, depth first, in the schema's order."""
    wanted = frozenset(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        default = _code(field["default"]) if "default" in field else ("required" if name in wanted else "")
        description = str(field.get("description", ""))
        yield Row(path, _type(field), default, _bounds(field), description)
        target = field.get("items", {}) if field.get("type") == "array" else field
        if target.get("properties"):
            child = f"{path}[]" if field.get("type") == "array" else path
            yield from schema_rows(target, child)


def kind_section(info: KindInfo) -> list[str]:
    schema = openapi_schema(info)
    lines = [
        f"## {info.kind}",
        "",
        f"`{GROUP}/{VERSION}`, cluster-scoped; plural `{info.plural}`, short names "
        + ", ".join(f"`{name}`" for name in info.short_names)
        + ".",
        "",
    ]
    doc = (info.model.__doc__ or "").strip()
    if doc:
        lines += [" ".join(doc.split()), ""]
    for part in ("spec", "status"):
        sub = schema["properties"].get(part)
        if not sub or not sub.get("properties"):
            continue
        lines += [
            f"### {info.kind} `{part}`",
            "",
            "| Field | Type | Default | Bounds and rules | Description |",
            "|---|---|---|---|---|",
        ]
        for row in schema_rows(sub, part):
            lines.append(
                f"| `{row.path}` | {_cell(row.type)} | {_cell(row.default)} | "
                f"{_cell(row.bounds)} | {_cell(row.description)} |"
            )
        lines.append("")
    return lines


def value_docs(text: str) -> list[tuple[str, str]]:
    """(dotted path, description) of every value with a ``# --`` comment, in file order.

    Keys nested inside a documented value belong to its default and are not listed separately.
    """
    documented: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    pending: str | None = None
    inside: int | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(DOC_MARK):
            if inside is None or len(line) - len(line.lstrip()) <= inside:
                pending = stripped[len(DOC_MARK) :].strip()
            continue
        match = _KEY.match(line)
        if stripped.startswith("#") or not stripped or match is None:
            continue
        indent = len(match["indent"])
        if inside is not None and indent > inside:
            continue
        inside = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            documented.append((".".join(key for _, key in stack), pending))
            inside = indent
            pending = None
    return documented


def _lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node[key]
    return node


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "map"


def values_section(values_text: str) -> list[str]:
    values = yaml.safe_load(values_text)
    lines = [
        "## Helm chart values",
        "",
        "From `charts/proxymedic/values.yaml`; `values.schema.json` checks them on every install,",
        "upgrade and render.",
        "",
        "| Value | Type | Default | Description |",
        "|---|---|---|---|",
    ]
    for path, description in value_docs(values_text):
        value = _lookup(values, path)
        lines.append(f"| `{path}` | {_value_type(value)} | {_cell(_code(value))} | {_cell(description)} |")
    lines.append("")
    return lines


def render_reference(values_text: str) -> str:
    lines = [
        "<!-- Generated by `proxymedic reference` from proxymedic/api and charts/proxymedic/values.yaml:"
        " do not edit by hand. -->",
        "# Reference",
        "",
        "The custom resources (generated from the pydantic models in `proxymedic/api`, the same",
        "schemas as the CRDs) and the Helm chart's values. Durations use Go syntax (`30s`, `5m`,",
        "`1h30m`). `proxymedic validate FILE` checks a manifest against the same rules.",
        "",
    ]
    for info in KINDS:
        lines += kind_section(info)
    lines += values_section(values_text)
    return "\n".join(lines).rstrip("\n") + "\n"


def run(output: Path, values: Path, check: bool) -> int:
    expected = render_reference(values.read_text())
    if not check:
        if not output.exists() or output.read_text() != expected:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(expected)
            print(f"wrote {output}")
        return 0
    actual = output.read_text() if output.exists() else ""
    if actual == expected:
        print(f"{output}: matches the models and {values}")
        return 0
    diff = difflib.unified_diff(
        actual.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        fromfile=f"{output} (on disk)",
        tofile=f"{output} (generated)",
    )
    print(f"{output} differs from the models and {values}:", file=sys.stderr)
    print("".join(diff), file=sys.stderr)
    print("run `proxymedic reference` to regenerate", file=sys.stderr)
    return 1
