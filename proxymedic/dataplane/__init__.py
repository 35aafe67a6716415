"""Typed adapters over the kernel (IPVS, conntrack, sysctls) and kube-proxy, plus a modelled dataplane."""

from __future__ import annotations

import importlib.util
import pkgutil
import sys
import threading
from typing import Any


def _defer_pyroute2_init() -> None:
    """Let pyroute2's modules be imported without its package ``__init__``, until a name only the
    package defines is asked for (``pyroute2.IPRoute``, ``from pyroute2 import NDB``): then it runs.

    That ``__init__`` imports the whole library to re-export its classes (NDB with sqlite3, IPDB,
    nl80211, nftables, plan9, unittest.mock, ...): about 7 MB of the agent's RSS, for the two
    sockets the adapters use, which they import from their own modules. Nothing else changes:
    the adapters run the same pyroute2 code, and whoever wants the package's names gets them.
    """
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not installed: the adapters' imports fail as they would have
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)
    submodules = {info.name for info in pkgutil.iter_modules(spec.submodule_search_locations)}
    lock = threading.RLock()  # the __init__ may ask for a name it has not defined yet
    ran = False

    def __getattr__(name: str) -> Any:
        nonlocal ran
        # A submodule is left to the import system, which imports it when it is not an attribute yet.
        if name not in submodules:
            with lock:
                if not ran:
                    ran = True
                    loader.exec_module(package)
            if name in package.__dict__:
                return package.__dict__[name]
        raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")

    vars(package)["__getattr__"] = __getattr__  # PEP 562: the module's own __getattr__
    sys.modules["pyroute2"] = package
    # The package's one side effect: a NullHandler on the "pyroute2" logger.
    importlib.import_module("pyroute2.config.log")


_defer_pyroute2_init()
