#!/usr/bin/env bash
# Create .venv and install ProxyMedic with its test and lint tools. Idempotent.
# Usage: scripts/setup.sh            Python packages only
#        scripts/setup.sh --demo     only what the demo needs (ProxyMedic and its API emulator)
#        scripts/setup.sh --kernel   also the QEMU VM tier (Debian packages and a kernel; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: ProxyMedic needs Python 3.11 or newer; set PYTHON to one" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# Install again only when pyproject.toml changed since the last install (or the demo's packages
# were installed and now every tool is wanted): pip takes half a minute just to find everything
# already there, which a second `make demo` would wait for.
stamp=.venv/.installed-from-pyproject
digest="$(sha256sum pyproject.toml | cut -d' ' -f1)"
installed="$(cat "$stamp" 2>/dev/null || true)"
if [ "${1:-}" = "--demo" ]; then
    # The demo needs no test, lint or benchmark tools: a first `make demo` installs a third as much.
    if [ "$installed" != "$digest dev" ] && [ "$installed" != "$digest demo" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[emulator]"
        echo "$digest demo" > "$stamp"
    fi
elif [ "$installed" != "$digest dev" ]; then
    # Dependency groups (pyproject [dependency-groups]) need pip >= 25.1.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e . --group dev
    echo "$digest dev" > "$stamp"
fi

if [ "${1:-}" = "--kernel" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        bash scripts/vm/setup.sh
    else
        echo "setup: the real-kernel tier needs root (QEMU and kernel modules): not preparing it"
    fi
fi
