from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxymedic.emulator.patching import PatchError, json_patch, merge_patch

pytestmark = pytest.mark.emulator

keys = st.sampled_from(["a", "b", "c"])
scalars = st.one_of(st.integers(), st.text(max_size=3), st.booleans())
documents = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda inner: st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
patches = st.recursive(
    st.none() | scalars | st.lists(scalars, max_size=3),
    lambda inner: st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
    ids=lambda value: None,
)
def test_merge_patch_rfc7386_examples(target: dict[str, Any], patch: dict[str, Any], expected: Any) -> None:
    assert merge_patch(target, patch) == expected


@given(documents.filter(lambda doc: isinstance(doc, dict)), patches.filter(lambda p: isinstance(p, dict)))
def test_merge_patch_is_idempotent_and_does_not_mutate(target: dict[str, Any], patch: dict[str, Any]) -> None:
    snapshot = repr(target)
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once
    assert repr(target) == snapshot
    for key, value in patch.items():
        if value is None:
            assert key not in once
        elif not isinstance(value, dict):
            assert once[key] == value


def test_json_patch_failures_are_patch_errors() -> None:
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "remove", "path": "/missing"}])
    with pytest.raises(PatchError):
        json_patch({"a": 1}, {"op": "add"})
