"""``x-kubernetes-validations``: CEL rules evaluated with the ``cel`` package.

``self`` is bound to the value of the schema node that carries the rule, ``oldSelf`` to the
previous value at the same path on updates. Rules that mention ``oldSelf`` are transition
rules: they are checked only on updates where the old value exists, as on a real server.

The ``cel`` package implements standard CEL; of the Kubernetes extension libraries the
emulator provides the helpers that rules on network objects use (``isIP``, ``isCIDR``,
``isURL``, ``lowerAscii``, ``upperAscii``). A rule that does not compile, or that calls a
function not available here, is reported once as a warning and skipped (a real server would
reject such a CRD); every other rule is always enforced.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import cel

from proxymedic.emulator.errors import Cause
from proxymedic.emulator.schema import Schema, render_value

logger = logging.getLogger(__name__)

_MISSING: Any = object()


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    # Kubernetes' isIP() rejects IPv4-mapped IPv6 and zone-qualified forms.
    return "%" not in value


def _is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


def _is_url(value: str) -> bool:
    parsed = urllib.parse.urlparse(value)
    return bool(parsed.scheme and (parsed.netloc or parsed.path))


EXTRA_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "isIP": _is_ip,
    "isCIDR": _is_cidr,
    "isURL": _is_url,
    "lowerAscii": lambda value: value.lower(),
    "upperAscii": lambda value: value.upper(),
}

# Functions of the CEL standard library that the ``cel`` package implements.
_STANDARD_FUNCTIONS = frozenset(
    {
        "size",
        "matches",
        "startsWith",
        "endsWith",
        "contains",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "type",
        "dyn",
        "duration",
        "timestamp",
        "has",
        "all",
        "exists",
        "exists_one",
        "map",
        "filter",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getMonth",
        "getSeconds",
        "max",
        "min",
    }
)


def _is_operator(name: str) -> bool:
    return not name[:1].isalpha()


@dataclasses.dataclass(frozen=True)
class CompiledRule:
    rule: str
    program: Any
    transition: bool


@functools.lru_cache(maxsize=1024)
def compile_rule(rule: str) -> CompiledRule | None:
    """Compile once; None (with a warning) for a rule the emulator cannot evaluate."""
    try:
        program = cel.compile(rule)
    except (ValueError, RuntimeError) as exc:
        logger.warning("Skipping a CEL rule that does not compile: %r: %s", rule, exc)
        return None
    unknown = [
        name
        for name in program.functions()
        if not _is_operator(name) and name not in _STANDARD_FUNCTIONS and name not in EXTRA_FUNCTIONS
    ]
    if unknown:
        logger.warning("Skipping a CEL rule with functions the emulator lacks (%s): %r", unknown, rule)
        return None
    return CompiledRule(rule, program, transition="oldSelf" in program.variables())


def _message(spec: Mapping[str, Any], value: Any, old: Any) -> str:
    if "messageExpression" in spec:
        compiled = compile_rule(spec["messageExpression"])
        if compiled is not None:
            try:
                return str(compiled.program.execute(_context(value, old)))
            except Exception:  # a broken message falls back to the static one, as on a server
                logger.debug("messageExpression failed: %r", spec["messageExpression"])
    if "message" in spec:
        return str(spec["message"])
    return f"failed rule: {spec['rule']}"


def _context(value: Any, old: Any) -> cel.Context:
    variables = {"self": value}
    if old is not _MISSING:
        variables["oldSelf"] = old
    return cel.Context(variables, EXTRA_FUNCTIONS)


def _check_node(schema: Schema, value: Any, old: Any, path: str) -> Iterator[Cause]:
    for spec in schema.get("x-kubernetes-validations", ()):
        compiled = compile_rule(spec["rule"])
        if compiled is None or (compiled.transition and old is _MISSING):
            continue
        field = path + str(spec.get("fieldPath", ""))
        try:
            passed = compiled.program.execute(_context(value, old))
        except Exception as exc:  # a runtime error in a rule rejects the object on a server too
            yield Cause(field, f"Invalid value: {render_value(value)}: rule evaluation failed: {exc}")
            continue
        if passed is not True:
            reason = {
                "FieldValueRequired": "FieldValueRequired",
                "FieldValueForbidden": "FieldValueForbidden",
                "FieldValueDuplicate": "FieldValueDuplicate",
            }.get(str(spec.get("reason")), "FieldValueInvalid")
            yield Cause(field, f"Invalid value: {render_value(value)}: {_message(spec, value, old)}", reason)


def check(schema: Schema, value: Any, old: Any = _MISSING, path: str = "") -> list[Cause]:
    """Evaluate every rule in the schema tree against ``value`` (and ``old`` on updates)."""
    causes = list(_check_node(schema, value, old, path))
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            subschema = properties.get(key, additional if isinstance(additional, Mapping) else None)
            if subschema is None:
                continue
            old_item = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            causes += check(subschema, item, old_item, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        # List items are correlated with old ones only for atomic lists of equal position; the
        # server correlates map-type lists by key, which the emulator does not (no oldSelf there).
        for index, item in enumerate(value):
            causes += check(schema["items"], item, _MISSING, f"{path}[{index}]")
    return causes


def default_violations(schema: Schema, path: str = "openAPIV3Schema") -> Iterator[str]:
    """Each ``default`` in the schema tree that fails its own node's rules, as the server words it.

    A real kube-apiserver validates every default against the rules of the node that carries it,
    as written: nested defaults are not applied to it first, so a rule reading a field the
    default omits fails with "no such key" and the whole CRD is rejected.
    """
    if "default" in schema:
        for cause in check(schema, schema["default"]):
            yield f"{path}.default: {cause.message}"
    for key, subschema in schema.get("properties", {}).items():
        if isinstance(subschema, Mapping):
            yield from default_violations(subschema, f"{path}.properties[{key}]")
    for key in ("items", "additionalProperties"):
        subschema = schema.get(key)
        if isinstance(subschema, Mapping):
            yield from default_violations(subschema, f"{path}.{key}")


NO_OLD_VALUE: Any = _MISSING
