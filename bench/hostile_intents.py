"""How long the agent takes to refuse each malformed intent of the hostile-input suite (huge lists
and strings among them), and to execute each valid but hostile one (the largest intent the model
admits among them), on a modelled node.

The suite (tests/reliability/test_input_intents.py) checks what the agent does with each; how
fast it does it depends on the machine, so it is measured here. Prints the slowest case of each
kind and its time over several runs (the best of the runs, so a busy moment does not count).
Run: .venv/bin/python bench/hostile_intents.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from proxymedic.agent.agent import AgentSettings, NodeAgent
from tests.agent.test_executor import node
from tests.reliability.input_intents import EXECUTED, IGNORED


def _agent() -> NodeAgent:
    dp, _ = node()
    agent = NodeAgent(AgentSettings(node_name="node-1"), dp)
    agent.node_labels = {"kubernetes.io/hostname": "node-1"}
    return agent


async def _seconds(build: Callable[[], Any]) -> float:
    agent = _agent()
    raw = build()
    started = time.perf_counter()
    await agent.on_intent(raw)
    return time.perf_counter() - started


async def _best(cases: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(runs):
        for name, build in cases.items():
            seconds = await _seconds(build)
            best[name] = min(best.get(name, seconds), seconds)
    return best


async def main(runs: int) -> None:
    logging.disable(logging.WARNING)  # each refusal logs its reason once: not what is measured
    refused = await _best({name: case[0] for name, case in IGNORED.items()}, runs)
    executed = await _best({name: case[0] for name, case in EXECUTED.items()}, runs)
    for kind, times in (("refused", refused), ("executed", executed)):
        slowest = max(times, key=lambda name: times[name])
        print(
            f"{kind}: {len(times)} intents, slowest {slowest} in {times[slowest] * 1000:,.0f} ms, "
            f"all {sum(times.values()) * 1000:,.0f} ms (best of {runs} runs)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args().runs))
