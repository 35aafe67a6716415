"""Connection settings for clients of a running emulator (plain HTTP on 127.0.0.1, no auth)."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml


def kubeconfig(url: str, *, context: str = "emulator") -> dict[str, Any]:
    """A kubeconfig document pointing at the emulator, for kubectl-like tools and clients."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }


def write_kubeconfig(url: str, path: pathlib.Path, *, context: str = "emulator") -> pathlib.Path:
    path.write_text(yaml.safe_dump(kubeconfig(url, context=context)))
    return path


def kubernetes_configuration(url: str) -> Any:
    """A ``kubernetes.client.Configuration`` for the emulator (imported lazily: an optional client)."""
    import kubernetes.client

    configuration = kubernetes.client.Configuration()
    configuration.host = url
    configuration.verify_ssl = False
    return configuration
