"""Turn pydantic validation errors into messages that name the field and the reason."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

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


FieldLocation = tuple[int | str, ...]
"""Where a problem is in the manifest: keys and list indexes from the document's root."""


class InvalidObjectError(ValueError):
    """An object that does not satisfy its model; ``problems`` holds one line per field, and
    ``locations`` where each one is in the manifest (``()`` for the object as a whole)."""

    def __init__(
        self, kind: str, name: str, problems: list[str], locations: list[FieldLocation] | None = None
    ) -> None:
        self.kind = kind
        self.name = name
        self.problems = problems
        self.locations = locations if locations is not None else [() for _ in problems]
        super().__init__(f'{kind} "{name}" is invalid: ' + "; ".join(problems))


def _is_branch(part: str) -> bool:
    """pydantic's names for union branches and validators in a location: not fields."""
    return part.startswith("function-") or part in ("int", "str", "lax-or-strict")


def field_location(loc: tuple[int | str, ...]) -> FieldLocation:
    """The location of an error with pydantic's union and validator names left out."""
    return tuple(part for part in loc if isinstance(part, int) or not _is_branch(part))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in field_location(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(object)"


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` to ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _model_at(model: type[BaseModel], loc: FieldLocation) -> type[BaseModel] | None:
    """The model that holds the field at ``loc``'s end, following list items and dict values."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int) or get_origin(annotation) is dict:
            args = get_args(annotation)
            annotation = args[-1] if args else None
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = annotation.model_fields
            found = next((f for n, f in fields.items() if part in (n, f.alias)), None)
            if found is None:
                return None
            annotation = found.annotation
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _unknown_field(model: type[BaseModel] | None, loc: FieldLocation) -> str:
    name = str(loc[-1]) if loc else ""
    parent = _model_at(model, loc[:-1]) if model is not None else None
    if parent is None:
        return "unknown field"
    valid = _field_names(parent)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown field{hint} (valid here: {', '.join(valid)})"


def _reason(error: Any, model: type[BaseModel] | None) -> str:
    kind = str(error.get("type", ""))
    if kind == "extra_forbidden":
        return _unknown_field(model, field_location(error["loc"]))
    if kind in ("bool_type", "bool_parsing"):
        value = error.get("input")
        reason = f"expected a boolean (true or false), got {shown(value)}"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            reason += f": write {value.strip().lower()} without quotes"
        return reason
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def describe_problems(
    exc: ValidationError, model: type[BaseModel] | None = None
) -> list[tuple[str, FieldLocation]]:
    """One ``field.path: reason`` line per problem with its location, in the order pydantic found them.

    With the ``model`` that was validated, an unknown field's line names the valid fields."""
    problems: list[tuple[str, FieldLocation]] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        line = f"{_field_path(error['loc'])}: {_reason(error, model)}"
        if line not in seen:
            seen.add(line)
            problems.append((line, field_location(error["loc"])))
    return problems


def describe_errors(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One ``field.path: reason`` line per problem, in the order pydantic found them."""
    return [line for line, _ in describe_problems(exc, model)]


def parse_object(obj: dict[str, Any]) -> KubeObject:
    """Validate a manifest of one of the three kinds; raise InvalidObjectError naming each bad field."""
    kind = str(obj.get("kind", ""))
    name = str(obj.get("metadata", {}).get("name", "")) if isinstance(obj.get("metadata"), dict) else ""
    name = name if len(name) <= 253 else name[:252] + "…"  # a name is at most 253 characters
    model = MODELS_BY_KIND.get(kind)
    if model is None:
        known = ", ".join(MODELS_BY_KIND)
        close = difflib.get_close_matches(kind, list(MODELS_BY_KIND), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        problem = f"kind: must be one of {known}, not {shown(kind)}{hint}"
        raise InvalidObjectError(kind[:63] or "object", name, [problem], [("kind",)])
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        problems = describe_problems(exc, model)
        raise InvalidObjectError(
            kind, name, [line for line, _ in problems], [where for _, where in problems]
        ) from None
