"""The kernel benchmarks' host side: boot the real-kernel VM once, run bench/kernel_flush.py and
bench/kernel_scale.py in it, and read back the figures they wrote.

``python -m bench`` runs this as its ``kernel`` section; where the VM cannot boot (no QEMU, no
prepared kernel: ``scripts/setup.sh --kernel`` prepares it) the section records why and the doc
says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = 77


async def kernel_benchmarks(sizes: str, services: int, real_servers: int, log: list[str]) -> dict[str, Any]:
    from bench.kernel_scale import python_reference

    # The same pure-Python work as in the VM, here: their ratio is the emulation's slowdown. It runs
    # its own event loops, so in a thread of its own, outside the benchmark's.
    host_reference = await asyncio.to_thread(python_reference)
    with tempfile.TemporaryDirectory(prefix="proxymedic-kernel-bench-") as rwdir:
        skip_file = Path(rwdir) / "skip-reason"
        env = {
            **os.environ,
            "VM_RWDIR": rwdir,
            "VM_TIMEOUT": os.environ.get("VM_TIMEOUT", "3600"),
            "TIER_SKIP_REASON": str(skip_file),
        }
        args = ["--sizes", sizes, "--services", str(services), "--real-servers", str(real_servers)]
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(ROOT / "scripts/vm/run-kernel-tests.sh"),
            "--bench",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith(("  ", "==", "summary", "run-kernel-tests:")):
                print(line, flush=True)
                log.append(line)
        code = await process.wait()
        if code == SKIPPED:
            reason = skip_file.read_text().strip() if skip_file.exists() else "the VM cannot run here"
            return {"skipped": reason}
        if code != 0:
            raise RuntimeError(f"the kernel benchmarks failed in the VM (exit {code}); the log is above")
        flush = json.loads((Path(rwdir) / "kernel_flush.json").read_text())
        scale = json.loads((Path(rwdir) / "kernel_scale.json").read_text())
    return {"flush": flush, "scale": scale, "host_python_reference": host_reference}
