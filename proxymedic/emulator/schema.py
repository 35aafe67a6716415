"""Structural schemas of custom resources: pruning, defaulting and OpenAPI validation.

The order follows the real API server: unknown fields are pruned, defaults applied, then
the object is validated against the schema and its CEL rules (see ``cel_rules``).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from proxymedic.emulator.errors import Cause

Schema = Mapping[str, Any]

# Top-level fields the server keeps whatever the schema says.
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def prune(schema: Schema, value: Any, *, root: bool = False) -> Any:
    """Drop fields the schema does not declare, unless it preserves unknown fields there."""
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema or root):
        properties: Mapping[str, Any] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        result: dict[str, Any] = {}
        for key, item in value.items():
            if root and key in _ROOT_FIELDS:
                result[key] = item
            elif key in properties:
                result[key] = prune(properties[key], item)
            elif isinstance(additional, Mapping):
                result[key] = prune(additional, item)
            elif preserve or additional is True:
                result[key] = item
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune(schema["items"], item) for item in value]
    return value


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Fill in ``default`` values of absent properties, recursively, in objects that exist."""
    if isinstance(value, dict):
        result = dict(value)
        for key, subschema in schema.get("properties", {}).items():
            if key not in result and "default" in subschema:
                result[key] = copy.deepcopy(subschema["default"])
            if key in result:
                result[key] = apply_defaults(subschema, result[key])
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            known = schema.get("properties", {})
            for key in result:
                if key not in known:
                    result[key] = apply_defaults(additional, result[key])
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def to_json_schema(schema: Any) -> Any:
    """Translate Kubernetes' OpenAPI dialect into JSON Schema draft 4 (which shares its keywords)."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-") or key in ("nullable", "default", "example", "externalDocs", "format"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            result[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        else:
            result[key] = to_json_schema(value)
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("x-kubernetes-list-type") == "set":
        result["uniqueItems"] = True
    if schema.get("nullable") and "type" in result:
        result["type"] = [result["type"], "null"]
        if "enum" in result:
            result["enum"] = [*result["enum"], None]
    return result


def field_path(path: Any) -> str:
    """``spec.rules[0].port``, the way the server names fields in its messages."""
    rendered = ""
    for part in path:
        if isinstance(part, int):
            rendered += f"[{part}]"
        else:
            rendered += f".{part}" if rendered else str(part)
    return rendered


def render_value(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _cause(error: jsonschema.ValidationError) -> Cause:
    path = field_path(error.absolute_path)
    value: Any = error.instance
    expected_value: Any = error.validator_value
    error_schema: Any = error.schema
    shown = render_value(value)
    match error.validator:
        case "required":
            missing = str(error.message).split("'")[1] if "'" in error.message else ""
            full = f"{path}.{missing}" if path else missing
            return Cause(full, "Required value", "FieldValueRequired")
        case "type":
            expected = expected_value
            expected = expected[0] if isinstance(expected, list) else expected
            return Cause(
                path,
                f"Invalid value: {shown}: {path} in body must be of type {expected}: {shown}",
                "FieldValueTypeInvalid",
            )
        case "enum":
            allowed = ", ".join(json.dumps(item) for item in expected_value if item is not None)
            return Cause(
                path, f"Unsupported value: {shown}: supported values: {allowed}", "FieldValueNotSupported"
            )
        case "maxLength" | "maxItems" | "maxProperties":
            unit = {"maxLength": "bytes", "maxItems": "items", "maxProperties": "properties"}[
                str(error.validator)
            ]
            return Cause(path, f"Too long: may not be more than {expected_value} {unit}", "FieldValueTooLong")
        case "minimum" | "maximum":
            word = "greater" if error.validator == "minimum" else "less"
            exclusive = error_schema.get(f"exclusive{str(error.validator).capitalize()}", False)
            relation = f"{word} than" if exclusive else f"{word} than or equal to"
            return Cause(
                path, f"Invalid value: {shown}: {path} in body should be {relation} {expected_value}"
            )
        case "pattern":
            return Cause(path, f"Invalid value: {shown}: {path} in body should match '{expected_value}'")
        case "minLength":
            return Cause(
                path,
                f"Invalid value: {shown}: {path} in body should be at least {expected_value} chars long",
            )
        case "minItems":
            return Cause(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least {expected_value} items",
            )
        case _:
            return Cause(path, f"Invalid value: {shown}: {error.message}")


@functools.lru_cache(maxsize=128)
def _validator(schema_json: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(to_json_schema(json.loads(schema_json)))


def validate(schema: Schema, value: Any) -> list[Cause]:
    """All OpenAPI violations of ``value``, in a stable order (by field path)."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    causes = [_cause(error) for error in validator.iter_errors(value)]
    return sorted(causes, key=lambda cause: cause.field)
