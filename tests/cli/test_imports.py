"""``proxymedic agent`` loads the agent's code only: not the other commands', nor what only they use.

Each module loaded stays in the agent's memory for its life (docs/benchmarks-notes.md, "Where the
agent's memory goes at start"). Checked in a fresh interpreter: this one has loaded everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

# `proxymedic agent` without a node name returns 2 once run_agent_command has made its imports;
# the kernel adapters are imported as kernel_dataplane() does when the agent starts.
AGENT_START = """
import json, sys
from proxymedic.cli.main import main
code = main(["agent"])
from proxymedic.dataplane import conntrack, ipvs, procfs, sysctl
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

NOT_FOR_THE_AGENT = [
    "proxymedic.cli.crds",
    "proxymedic.cli.expect",
    "proxymedic.cli.reference",
    "proxymedic.cli.runbook_commands",
    "proxymedic.cli.validate",
    "proxymedic.expectation",
    "proxymedic.operator",
    "proxymedic.runbook",
    "jsonschema",
    "kopf",
    "kubernetes",
    "yaml",
    "pyroute2.ipdb",
    "pyroute2.ndb",
    "sqlite3",
]


def test_the_agent_loads_no_other_command_and_not_all_of_pyroute2() -> None:
    env = {key: value for key, value in os.environ.items() if key != "NODE_NAME"}
    done = subprocess.run(
        [sys.executable, "-c", AGENT_START], capture_output=True, text=True, env=env, check=True, timeout=60
    )
    started = json.loads(done.stdout.splitlines()[-1])
    assert started["code"] == 2  # no node name: stopped after the imports
    assert "proxymedic.agent.runner" in started["modules"]
    assert "pyroute2.ipvs" in started["modules"]
    loaded = [name for name in NOT_FOR_THE_AGENT if name in started["modules"]]
    assert loaded == []


def test_the_commands_options_keep_the_defaults_of_their_code() -> None:
    from proxymedic.cli import options
    from proxymedic.expectation import MODE, RULE_MODES
    from proxymedic.runbook.status import DEFAULT_EVENT_LIMIT

    assert options.DEFAULT_EVENT_LIMIT == DEFAULT_EVENT_LIMIT
    assert (MODE, *RULE_MODES) == options.EXPECT_MODES
