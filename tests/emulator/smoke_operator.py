"""A minimal Kopf operator for the emulator smoke test; point it at any CRD via ``Target``."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import kopf

from proxymedic.emulator.kopf_login import install_login


@dataclasses.dataclass(frozen=True)
class Target:
    group: str
    version: str
    plural: str


@dataclasses.dataclass
class Observed:
    """What the handlers saw, shared with the test thread."""

    pod_events: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add_pod_event(self, kind: str, name: str) -> None:
        with self.lock:
            self.pod_events.append((kind, name))

    def pods_seen(self) -> set[str]:
        with self.lock:
            return {name for _, name in self.pod_events}


def build_registry(url: str, target: Target, observed: Observed) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    install_login(url, registry=registry)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.server_timeout = 10
        settings.watching.client_timeout = 15
        settings.peering.stealth = False

    @kopf.on.create(target.group, target.version, target.plural, registry=registry, id="created")
    def created(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
        patch.status["phase"] = "Ready"
        kopf.info(body, reason="Probed", message=f"{body.metadata.name} is ready")
        return {"replicas": spec.get("replicas")}

    @kopf.on.update(
        target.group, target.version, target.plural, registry=registry, field="spec.replicas", id="rescaled"
    )
    def rescaled(new: Any, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = f"Scaled to {new}"

    # An event handler stores nothing on the objects it watches (no annotations, no status).
    @kopf.on.event("v1", "pods", registry=registry, id="pod_event")
    def pod_event(type: str | None, name: str, **_: Any) -> None:
        observed.add_pod_event(type or "LISTED", name)

    return registry
