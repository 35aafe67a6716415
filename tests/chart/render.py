"""Render the chart with the real Helm engine (helm-python-sdk embeds Helm v4; no binary, no network)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "proxymedic"
RELEASE = "pm"
NAMESPACE = "proxymedic"

Obj = dict[str, Any]
Mutation = Callable[[list[Obj]], None]


@dataclass
class Rendered:
    """The objects a release would create, and NOTES.txt."""

    objects: list[Obj]
    notes: str
    values: dict[str, Any]

    def find(self, kind: str, name_suffix: str = "") -> Obj:
        matches = [
            o for o in self.objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
        ]
        assert len(matches) == 1, f"expected one {kind} *{name_suffix}, found {len(matches)}"
        return matches[0]

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> Rendered:
    """Render like `helm template` (schema validation included); raises helm's errors unchanged."""
    with helm.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
        merged = chart.merge_values(values or {})
    objects: list[Obj] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(objects=objects, notes=notes, values=merged)


def chart_crds() -> list[Obj]:
    """The CRDs Helm installs from crds/ (not rendered: Helm applies them as they are)."""
    with helm.Chart.load(CHART_DIR) as chart:
        return [yaml.safe_load(crd["data"]) for crd in chart.crds]


def mutated(rendered: Rendered, mutation: Mutation) -> list[Obj]:
    """A deep copy of the rendered objects with ``mutation`` applied: a post-render change."""
    objects = copy.deepcopy(rendered.objects)
    mutation(objects)
    return objects


def containers(obj: Obj) -> Iterator[Obj]:
    spec = obj["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def workload(objects: list[Obj], kind: str, component: str) -> Obj | None:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] == kind and labels.get("app.kubernetes.io/component") == component:
            return obj
    return None
