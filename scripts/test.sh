#!/usr/bin/env bash
# The full test suite: lint gates, every pytest tier, then the real-kernel tier in a QEMU VM.
# Tiers that cannot run here (kind without a Docker engine, QEMU without root) skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --kernel

echo "== lint: ruff, mypy --strict, import-linter, CRD drift"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.y*ml
.venv/bin/proxymedic crds --check

echo "== pytest: unit, emulator, chart, e2e (kernel tests run in the VM below)"
.venv/bin/pytest

echo "== kernel tier: real IPVS and conntrack in a QEMU VM"
status=0
bash scripts/vm/run-kernel-tests.sh || status=$?
if [ "$status" -eq 77 ]; then
    echo "kernel tier SKIPPED: see the reason above"
elif [ "$status" -ne 0 ]; then
    exit "$status"
fi
