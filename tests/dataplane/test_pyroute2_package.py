"""pyroute2's package ``__init__`` runs only when a name it defines is asked for
(``proxymedic/dataplane/__init__.py``); the adapters import their classes from pyroute2's modules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

USE = """
import json, logging, sys
from proxymedic.dataplane import conntrack, ipvs
seen = {"after_adapters": "pyroute2.ndb" in sys.modules or "sqlite3" in sys.modules}
seen["handlers"] = [type(handler).__name__ for handler in logging.getLogger("pyroute2").handlers]
import pyroute2
from pyroute2 import IPVS, NDB, config
seen["same_ipvs"] = IPVS is ipvs.IPVS
seen["iproute"] = pyroute2.IPRoute.__name__
seen["version"] = pyroute2.__version__
seen["after_names"] = "pyroute2.ndb" in sys.modules
try:
    pyroute2.no_such_name
except AttributeError as missing:
    seen["missing"] = str(missing)
print(json.dumps(seen))
"""


def test_the_package_runs_when_its_names_are_asked_for_and_not_before() -> None:
    done = subprocess.run([sys.executable, "-c", USE], capture_output=True, text=True, check=True, timeout=60)
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["after_adapters"] is False
    assert seen["handlers"] == ["NullHandler"]  # what the package's __init__ would have set up
    assert seen["same_ipvs"] is True
    assert seen["iproute"] == "IPRoute"
    assert seen["version"] not in ("", "unknown")
    assert seen["after_names"] is True
    assert seen["missing"] == "module 'pyroute2' has no attribute 'no_such_name'"
