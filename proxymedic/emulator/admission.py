"""What the server does to a custom resource before storing it: prune, default, validate."""

from __future__ import annotations

from typing import Any

from proxymedic.emulator import cel_rules, errors, schema
from proxymedic.emulator.resources import JsonDict, ResourceSpec


def admit(spec: ResourceSpec, obj: JsonDict, old: JsonDict | None) -> JsonDict:
    """Return the object as it would be stored, or raise 422 Invalid with every cause found."""
    if spec.schema is None:
        return obj
    admitted: JsonDict = schema.prune(spec.schema, obj, root=True)
    admitted = schema.apply_defaults(spec.schema, admitted)
    causes = schema.validate(spec.schema, admitted)
    # CEL rules run only on schema-valid objects: a rule may rely on the types the schema ensures.
    if not causes:
        old_value: Any = old if old is not None else cel_rules.NO_OLD_VALUE
        causes = cel_rules.check(spec.schema, admitted, old_value)
    if causes:
        name = str(admitted.get("metadata", {}).get("name", ""))
        raise errors.invalid(spec, name, causes)
    return admitted
