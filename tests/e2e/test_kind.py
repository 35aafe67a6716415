"""Cluster end-to-end on kind: runs tests/e2e/run.sh where Docker has an engine and the tools exist.

Tools are looked for when the test runs, never at import: collecting the suite needs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
RUN = HERE / "run.sh"
SKIPPED = 77  # run.sh's exit code when the tier cannot run here


def missing_requirements() -> list[str]:
    """Why the kind tier cannot run on this machine; empty when it can."""
    missing: list[str] = []
    if shutil.which("docker") is None:
        missing.append("docker is not installed")
    else:
        try:
            info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            missing.append(f"docker info failed: {exc}")
        else:
            if info.returncode != 0:
                lines = (info.stderr or info.stdout).strip().splitlines()
                missing.append(
                    "docker has no engine (docker info failed: " + (lines[-1] if lines else "no output") + ")"
                )
    missing += [
        f"{tool} is not installed" for tool in ("kind", "kubectl", "helm") if shutil.which(tool) is None
    ]
    return missing


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_coredns_rollout_is_repaired_on_kind() -> None:
    missing = missing_requirements()
    if missing:
        pytest.skip("kind e2e needs Docker with an engine, kind, kubectl and helm: " + "; ".join(missing))
    result = subprocess.run(["bash", str(RUN)], env=os.environ.copy(), check=False)
    if result.returncode == SKIPPED:
        pytest.skip("tests/e2e/run.sh could not run here: see its output")
    assert result.returncode == 0, "tests/e2e/run.sh failed: see its output"


@pytest.mark.unit
def test_kind_cluster_runs_kube_proxy_in_ipvs_mode() -> None:
    config = yaml.safe_load((HERE / "kind-config.yaml").read_text())
    assert config["networking"]["kubeProxyMode"] == "ipvs"
    assert any(node["role"] == "worker" for node in config["nodes"])


@pytest.mark.unit
def test_run_script_is_valid_bash_and_exercises_the_policy() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    subprocess.run([bash, "-n", str(RUN)], check=True)
    script = RUN.read_text()
    assert "policy.coredns.dryRun=false" in script
    assert "rollout restart deployment/coredns" in script
    assert "StaleConnectionsFlushed" in script
