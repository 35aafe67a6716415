"""Label and field selectors, parsed once per request and matched against stored objects."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists"]


class SelectorError(ValueError):
    """A selector the real server would reject with 400 Bad Request."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case "=":
                return labels.get(self.key) in self.values
            case "!=":
                return labels.get(self.key) not in self.values
            case "in":
                return labels.get(self.key) in self.values
            case "notin":
                return labels.get(self.key) not in self.values
            case "exists":
                return self.key in labels
            case "!exists":
                return self.key not in labels


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


_SET_RE = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=,()]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=,()]+)\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside the parentheses of a set-based term."""
    terms: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``labelSelector``: ``a=b``, ``a==b``, ``a!=b``, ``a in (x)``, ``a notin (x)``, ``a``, ``!a``."""
    if not text:
        return LabelSelector()
    requirements: list[Requirement] = []
    for term in _split_terms(text):
        if match := _SET_RE.match(term):
            values = frozenset(value.strip() for value in match["values"].split(",") if value.strip())
            operator: Operator = "in" if match["op"] == "in" else "notin"
            requirements.append(Requirement(match["key"], operator, values))
        elif match := _EQ_RE.match(term):
            operator = "!=" if match["op"] == "!=" else "="
            requirements.append(Requirement(match["key"], operator, frozenset({match["value"]})))
        elif match := _EXISTS_RE.match(term):
            operator = "!exists" if match["neg"] else "exists"
            requirements.append(Requirement(match["key"], operator))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
    return LabelSelector(tuple(requirements))


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    negated: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) != self.negated


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(requirement.matches(obj) for requirement in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form the server compares: missing fields are empty, booleans are lowercase."""
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_field_selector(text: str | None, supported: frozenset[str]) -> FieldSelector:
    """Parse ``fieldSelector`` (``=``, ``==``, ``!=``); unsupported fields are an error, as on a server."""
    if not text:
        return FieldSelector()
    requirements: list[FieldRequirement] = []
    for term in _split_terms(text):
        match = _EQ_RE.match(term)
        if match is None:
            raise SelectorError(f"invalid selector: {text!r}; can't understand {term.strip()!r}")
        if match["key"] not in supported:
            raise SelectorError(f"field label not supported: {match['key']}")
        requirements.append(FieldRequirement(match["key"], match["value"], negated=match["op"] == "!="))
    return FieldSelector(tuple(requirements))


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a list or watch request asks for: a namespace (None for all) and both selectors."""

    namespace: str | None = None
    labels: LabelSelector = LabelSelector()
    fields: FieldSelector = FieldSelector()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata", {})
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        return self.labels.matches(obj) and self.fields.matches(obj)
