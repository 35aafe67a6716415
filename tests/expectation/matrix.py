"""A case of the expectation matrix, and the builders the case modules share."""

from __future__ import annotations

from dataclasses import dataclass

from tests.expectation.manifests import NODE_NAMES, Manifest, VirtualServerRow


@dataclass(frozen=True)
class Case:
    name: str
    why: str
    manifests: list[Manifest]
    expected: dict[str, list[VirtualServerRow]]


def per_node(rows: dict[str, list[VirtualServerRow]]) -> dict[str, list[VirtualServerRow]]:
    assert set(rows) == set(NODE_NAMES)
    return rows


def case(name: str, why: str, manifests: list[Manifest], expected: dict[str, list[VirtualServerRow]]) -> Case:
    return Case(name, why, manifests, expected)
