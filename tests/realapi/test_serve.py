"""The launcher the cluster tier starts on the host (``python -m tests.realk8s.serve``): it writes
what a client elsewhere needs once the API server is ready, serves until told to stop, and
leaves the components' logs behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.realk8s import binaries
from tests.realk8s.controlplane import ControlPlane

pytestmark = [pytest.mark.realapi, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]


def test_serve_describes_a_ready_api_server_and_stops_on_sigterm(tmp_path: Path) -> None:
    try:
        binaries.find()
    except binaries.Missing as missing:
        pytest.skip(f"real kube-apiserver tier: {missing}")
    state = tmp_path / "plane"
    serve = subprocess.Popen(
        [sys.executable, "-m", "tests.realk8s.serve", str(state), "--advertise-address", "10.0.2.2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while not (state / "plane.json").exists():
            assert serve.poll() is None, serve.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "no plane.json within 180 s"
            time.sleep(0.2)
        plane = ControlPlane.attach(state / "plane.json", tmp_path / "client")
        assert plane.server.startswith("https://10.0.2.2:"), "clients are told the advertised address"
        # This machine reaches the same server on loopback; the certificate names both addresses.
        plane.server = plane.server.replace("10.0.2.2", "127.0.0.1")
        assert plane.request("GET", "/readyz")[0] == 200
        status, body = plane.request("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
        assert status == 200, body
        assert [a["ip"] for a in body["subsets"][0]["addresses"]] == ["10.0.2.2"]
        certificate = subprocess.run(
            ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(plane.ca_file)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "IP Address:10.0.2.2" in certificate
        assert "IP Address:127.0.0.1" in certificate
    finally:
        serve.send_signal(signal.SIGTERM)
        output = serve.communicate(timeout=60)[0].decode(errors="replace")
    assert serve.returncode == 0, output
    assert (state / "kube-apiserver.log").exists()
    assert (state / "etcd.log").exists()
