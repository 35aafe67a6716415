"""API errors rendered by kmock as Kubernetes ``Status`` objects, worded like the real server's."""

from __future__ import annotations

import dataclasses
from typing import Any

import kmock

from proxymedic.emulator.resources import ResourceSpec


@dataclasses.dataclass(frozen=True)
class Cause:
    """One entry of ``details.causes``: which field is wrong and why."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def render(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def _details(spec: ResourceSpec, name: str | None, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": spec.plural}
    if spec.group:
        details["group"] = spec.group
    if name is not None:
        details["name"] = name
    details.update(extra)
    return details


def not_found(spec: ResourceSpec, name: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=404,
        reason="NotFound",
        message=f'{spec.group_resource} "{name}" not found',
        details=_details(spec, name),
    )


def already_exists(spec: ResourceSpec, name: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=409,
        reason="AlreadyExists",
        message=f'{spec.group_resource} "{name}" already exists',
        details=_details(spec, name),
    )


def conflict(spec: ResourceSpec, name: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=409,
        reason="Conflict",
        message=(
            f'Operation cannot be fulfilled on {spec.group_resource} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again"
        ),
        details=_details(spec, name),
    )


def invalid(spec: ResourceSpec, name: str, causes: list[Cause]) -> kmock.KubernetesError:
    rendered = [cause.render() for cause in causes]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return kmock.KubernetesError(
        status=422,
        reason="Invalid",
        message=f'{spec.group_kind} "{name}" is invalid: {summary}',
        details={
            "kind": spec.kind,
            **({"group": spec.group} if spec.group else {}),
            "name": name,
            "causes": [cause.as_dict() for cause in causes],
        },
    )


def bad_request(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=400, reason="BadRequest", message=message, details={})


def unsupported_media_type(content_type: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=415,
        reason="UnsupportedMediaType",
        message=f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f'application/apply-patch+yaml; got "{content_type}"',
        details={},
    )


def method_not_allowed(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=405, reason="MethodNotAllowed", message=message, details={})


def unprocessable(spec: ResourceSpec, name: str, message: str) -> kmock.KubernetesError:
    """A patch that cannot be applied (e.g. a failed JSON-patch ``test``), as the server reports it."""
    return kmock.KubernetesError(
        status=422,
        reason="Invalid",
        message=message,
        details=_details(spec, name),
    )


def gone_status(message: str) -> dict[str, Any]:
    """The Status object a watch stream sends in an ERROR event when the version is too old."""
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Expired",
        "code": 410,
    }


def continue_expired() -> kmock.KubernetesError:
    """A list's ``continue`` token older than the kept history, in the server's words."""
    return kmock.KubernetesError(
        status=410,
        reason="Expired",
        message=(
            "The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter."
        ),
        details={},
    )
