#!/usr/bin/env bash
# The full test suite: lint gates, every pytest tier, then the real-kernel tier and the
# real-cluster tier, each in a QEMU VM.
#
# Every tier runs even when an earlier one failed; the output ends with one line per tier
# (passed, failed with its exit code, or skipped with the reason), and the script exits 1 if any
# tier failed. A tier is one line, `tier NAME -- COMMAND` (scripts/lib/tiers.sh says how exit
# codes count: 77 is skipped, with the reason).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tiers.sh

lint() {
    local rc=0
    .venv/bin/ruff check . || rc=1
    .venv/bin/ruff format --check . || rc=1
    .venv/bin/mypy || rc=1
    .venv/bin/lint-imports || rc=1
    .venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.y*ml || rc=1
    .venv/bin/proxymedic crds --check || rc=1
    return "$rc"
}

tier setup -- bash scripts/setup.sh --kernel
tier lint -- lint
# Every pytest tier but the kernel's, whose tests run in the VM below. No tests at all (exit 5)
# is a failure here.
tier pytest -- .venv/bin/pytest
tier kernel -- bash scripts/vm/run-kernel-tests.sh
# etcd and kube-apiserver on this machine, kube-proxy and ProxyMedic in one VM (about 25
# minutes under emulation); exit 77, skipped with the reason, where it cannot run.
tier cluster -- bash scripts/vm/run-cluster-tests.sh

tier_summary
