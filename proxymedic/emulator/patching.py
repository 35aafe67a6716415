"""PATCH bodies: RFC 7386 merge patch and RFC 6902 JSON patch.

``application/strategic-merge-patch+json`` is applied as a plain merge patch: the emulator has
no per-field patch strategies, so lists are replaced as a whole rather than merged by key.
This is the one place where a strategic patch of e.g. a Pod's containers would differ from a
real server; the project's own kinds are custom resources, which do not support strategic
merge patches at all on a real server (it answers 415).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
SUPPORTED_PATCH_TYPES = (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)


class PatchError(ValueError):
    """A patch that cannot be applied to the current object."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902, including ``test`` (which Kopf uses on metadata.resourceVersion)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        result = jsonpatch.apply_patch(target, operations, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchError(f"the server rejected our request due to an error in our request: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchError(str(exc)) from exc
    if not isinstance(result, dict):
        raise PatchError("a JSON patch must leave an object")
    return result


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def apply_patch(target: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply a PATCH body of the given (already validated) media type."""
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise PatchError("a merge patch must be a JSON object")
    result = merge_patch(target, patch)
    assert isinstance(result, dict)
    return result
