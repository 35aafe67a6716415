"""Turn pydantic validation errors into messages that name the field and the reason."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from proxymedic.api.health import NodeProxyHealth
from proxymedic.api.intent import RemediationIntent
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.api.types import shown

KubeObject = ProxyHealthPolicy | RemediationIntent | NodeProxyHealth

MODELS_BY_KIND: dict[str, type[ProxyHealthPolicy] | type[RemediationIntent] | type[NodeProxyHealth]] = {
    "ProxyHealthPolicy": ProxyHealthPolicy,
    "RemediationIntent": RemediationIntent,
    "NodeProxyHealth": NodeProxyHealth,
}


class InvalidObjectError(ValueError):
    """An object that does not satisfy its model; ``problems`` holds one line per field."""

    def __init__(self, kind: str, name: str, problems: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.problems = problems
        super().__init__(f'{kind} "{name}" is invalid: ' + "; ".join(problems))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in ("int", "str", "lax-or-strict"):
            continue  # pydantic's names for union branches and validators, not fields
        else:
            path += f".{part}" if path else part
    return path or "(object)"


def _reason(error: Any) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def describe_errors(exc: ValidationError) -> list[str]:
    """One ``field.path: reason`` line per problem, in the order pydantic found them."""
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        line = f"{_field_path(error['loc'])}: {_reason(error)}"
        if line not in lines:
            lines.append(line)
    return lines


def parse_object(obj: dict[str, Any]) -> KubeObject:
    """Validate a manifest of one of the three kinds; raise InvalidObjectError naming each bad field."""
    kind = str(obj.get("kind", ""))
    name = str(obj.get("metadata", {}).get("name", "")) if isinstance(obj.get("metadata"), dict) else ""
    name = name if len(name) <= 253 else name[:252] + "…"  # a name is at most 253 characters
    model = MODELS_BY_KIND.get(kind)
    if model is None:
        known = ", ".join(MODELS_BY_KIND)
        problem = f"kind: must be one of {known}, not {shown(kind)}"
        raise InvalidObjectError(kind[:63] or "object", name, [problem])
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise InvalidObjectError(kind, name, describe_errors(exc)) from None
