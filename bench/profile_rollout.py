"""Where the time goes during a rollout at scale: py-spy samples the operator process and the
benchmark's own process (emulator and simulated agents) while one CoreDNS rollout runs, and the
functions with the most samples are printed for each.

Run: .venv/bin/python -m bench.profile_rollout [--nodes 5000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.rollout import Timing, run
from bench.run_all import PRODUCTION_HEARTBEAT, scale_settings
from proxymedic.sim.world import World


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: make setup installs it (the bench dependency group)")
    return found


def top(raw: Path, count: int) -> list[str]:
    """The functions with the most samples in py-spy's raw (collapsed stacks) output: own samples,
    then samples with the function anywhere on the stack."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    if not total:
        return ["no samples"]
    lines = [f"{total} samples; own time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(count)]
    lines.append("on the stack:")
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in anywhere.most_common(count * 2)]
    return lines


async def profile(nodes: int, seconds: float, out: Path) -> dict[str, Any]:
    recorders: list[asyncio.subprocess.Process] = []
    rollout = World.rollout

    async def recorded_rollout(self: World, new_ips: list[str], lameduck: float, surge_wait: float) -> None:
        operator = self.operator_pid()
        assert operator is not None
        for name, pid in (("operator", operator), ("benchmark", os.getpid())):
            command = [
                py_spy(),
                "record",
                "--rate",
                "100",
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
            ]
            command += ["--output", str(out / f"{name}.txt"), "--pid", str(pid)]
            recorders.append(
                await asyncio.create_subprocess_exec(
                    *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
            )
        await rollout(self, new_ips, lameduck, surge_wait)

    World.rollout = recorded_rollout  # type: ignore[method-assign]
    try:
        timing = Timing(warm_up=3.0, steady=0.0, surge_wait=1.0, lameduck=2.0, settle=max(2.0, seconds - 4))
        result = await run(
            scale_settings(nodes, PRODUCTION_HEARTBEAT), timing, f"{nodes} nodes", PRODUCTION_HEARTBEAT
        )
    finally:
        World.rollout = rollout  # type: ignore[method-assign]
        for recorder in recorders:
            await recorder.wait()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long py-spy samples")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="proxymedic-profile-"))
    result = asyncio.run(profile(args.nodes, args.seconds, out))
    lat = result["latency"]
    print(
        f"{args.nodes} nodes: repair latency p50 {1000 * lat['p50']:.0f} ms, p99 {1000 * lat['p99']:.0f} ms; "
        "intent seen by the agents after "
        + ", ".join(f"{1000 * v:.0f} ms" for v in lat["intent_seen_after"].values())
    )
    for name in ("operator", "benchmark"):
        print(f"\n== {name} process ({out / (name + '.txt')})")
        print("\n".join(top(out / f"{name}.txt", args.top)))


if __name__ == "__main__":
    main()
