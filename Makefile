# The two commands a newcomer needs; each installs what it needs first.
.PHONY: demo test test-cluster setup lint crds

demo:  ## set up (the demo's packages only) and run the embedded demo (no cluster needed)
	bash scripts/setup.sh --demo
	.venv/bin/proxymedic demo

test:  ## set up and run the whole test suite, the real-kernel VM tier included
	bash scripts/test.sh

test-cluster:  ## the real-control-plane tier alone (etcd, kube-apiserver, kube-proxy in a QEMU VM)
	bash scripts/setup.sh --kernel
	bash scripts/vm/run-cluster-tests.sh

setup:
	bash scripts/setup.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.y*ml
	.venv/bin/proxymedic crds --check

crds: setup
	.venv/bin/proxymedic crds
