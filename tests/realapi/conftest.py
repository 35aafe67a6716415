"""A real kube-apiserver and etcd on the host, once per test session (about 10 s to start).

The fixture skips every test of the tier, with the reason, where a binary is missing: etcd
from Debian's etcd-server, kube-apiserver from shared/k8s or PROXYMEDIC_K8S_BIN_DIR.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realk8s import binaries, controlplane
from tests.realk8s.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def real_api() -> Iterator[ControlPlane]:
    try:
        found = binaries.find()
    except binaries.Missing as missing:
        pytest.skip(f"real kube-apiserver tier: {missing}")
    with controlplane.running(found, ready_timeout=180) as plane:
        plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        yield plane
