"""Run the real control plane on this machine for clients elsewhere: the VM of the cluster tier.

    python -m tests.realk8s.serve STATE_DIR [--advertise-address 10.0.2.2]

Starts etcd and kube-apiserver (``controlplane.running``) at native speed, writes
``STATE_DIR/plane.json`` (the server's address as the clients reach it, an admin token, the CA)
once /readyz answers, and serves until SIGTERM or SIGINT; then it stops both and copies their
logs into STATE_DIR. If the start fails, ``STATE_DIR/plane-error.txt`` says why and the exit
code is 1.

Under QEMU's user networking a guest reaches the host's loopback at 10.0.2.2, so the default
advertise address serves a guest of ``scripts/vm/run-cluster-tests.sh``; the API server still
listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.realk8s import binaries, controlplane

GUEST_SEES_HOST_AT = "10.0.2.2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realk8s.serve", description=__doc__.split("\n")[0])
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--advertise-address", default=GUEST_SEES_HOST_AT)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    state: Path = args.state_dir
    state.mkdir(parents=True, exist_ok=True)
    for stale in ("plane.json", "plane-error.txt"):
        (state / stale).unlink(missing_ok=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    work = Path(tempfile.mkdtemp(prefix="proxymedic-k8s-serve-"))
    try:
        found = binaries.find(need_proxy=False)
        with controlplane.running(
            found, workdir=work, ready_timeout=args.ready_timeout, advertise_address=args.advertise_address
        ) as plane:
            port = plane.server.rsplit(":", 1)[1]
            described = plane.describe(f"https://{args.advertise_address}:{port}")
            described["hostServer"] = plane.server
            tmp = state / "plane.json.tmp"
            tmp.write_text(json.dumps(described, indent=2) + "\n")
            tmp.replace(state / "plane.json")
            print(
                f"serve: kube-apiserver ready at {plane.server}, clients use {described['server']}",
                flush=True,
            )
            stop.wait()
            print("serve: stopping", flush=True)
    except (binaries.Missing, controlplane.StartError, OSError) as err:
        (state / "plane-error.txt").write_text(f"{err}\n")
        print(f"serve: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        for log in work.glob("*.log"):
            shutil.copy(log, state / log.name)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
