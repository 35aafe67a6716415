"""Point a Kopf operator at the emulator (the only emulator module that imports Kopf)."""

from __future__ import annotations

from typing import Any

import kopf


def connection_info(url: str) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=url, insecure=True)


def install_login(url: str, *, registry: kopf.OperatorRegistry | None = None) -> None:
    """Register an ``@kopf.on.login`` handler that connects to the emulator at ``url``.

    It replaces Kopf's default kubeconfig/in-cluster logins for the given (or default) registry.
    """

    def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(url)

    kopf.on.login(registry=registry, id="emulator-login")(login_to_emulator)
