"""A correction to kmock's URL parsing for the core ``namespaces`` resource.

kmock reads ``/api/v1/namespaces/{x}`` as "namespace x" with no resource, so Namespace
objects (``/api/v1/namespaces``, ``/api/v1/namespaces/{name}``, ``.../{name}/status``) cannot
be addressed. The wrapper recognises those URLs and defers to kmock for everything else.
"""

from __future__ import annotations

import re

from kmock._internal import parsing

_NAMESPACE_OBJECT_URL = re.compile(
    r"^/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?$"
)

_original_parse_path = parsing.parse_path


def parse_path(path: str) -> parsing.ParsedPath:
    if match := _NAMESPACE_OBJECT_URL.match(path):
        return parsing.ParsedPath(
            group="", version="v1", plural="namespaces", name=match["name"], subresource=match["sub"]
        )
    return _original_parse_path(path)


def install() -> None:
    """Idempotent: kmock's request parser looks the function up on its module at each request."""
    parsing.parse_path = parse_path
