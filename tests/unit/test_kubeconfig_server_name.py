"""A kubeconfig's ``tls-server-name`` reaches the connection: the server's certificate is checked for
that name when the server is reached at another address (a tunnel, a relay), as kubectl does."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxymedic.kube.config import load_connection

pytestmark = pytest.mark.unit

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://169.254.1.1:6443
    insecure-skip-tls-verify: false
{extra}contexts:
- name: c
  context: {{cluster: c, user: u}}
current-context: c
users:
- name: u
  user: {{token: abc}}
"""


@pytest.mark.parametrize(("extra", "name"), [("    tls-server-name: 127.0.0.1\n", "127.0.0.1"), ("", None)])
def test_the_server_name_is_taken_from_the_kubeconfig(tmp_path: Path, extra: str, name: str | None) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.format(extra=extra))
    connection = load_connection(str(path))
    assert connection.server == "https://169.254.1.1:6443"
    assert connection.tls_server_name == name
