"""Integer sysctls through /proc/sys, with errors that say what is missing.

The vs sysctls exist only while the ip_vs module is loaded, the nf_conntrack ones only
while nf_conntrack is; in a container /proc/sys is mounted read-only unless the pod is
privileged, which is the usual reason a write fails.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

from proxymedic.api.sysctls import (
    CONNTRACK_SYSCTLS,
    EXPIRE_NODEST_CONN,
    EXPIRE_QUIESCENT_TEMPLATE,
    IPVS_SYSCTLS,
    NF_CONNTRACK_COUNT,
    NF_CONNTRACK_MAX,
    NF_CONNTRACK_UDP_TIMEOUT,
    NF_CONNTRACK_UDP_TIMEOUT_STREAM,
    VS_CONNTRACK,
)
from proxymedic.dataplane.types import (
    DataplaneError,
    DataplanePermissionError,
    DataplaneUnavailableError,
)

# The names live in the contract (proxymedic.api.sysctls); the dataplane's users find them here too.
__all__ = [
    "CONNTRACK_SYSCTLS",
    "EXPIRE_NODEST_CONN",
    "EXPIRE_QUIESCENT_TEMPLATE",
    "IPVS_SYSCTLS",
    "NF_CONNTRACK_COUNT",
    "NF_CONNTRACK_MAX",
    "NF_CONNTRACK_UDP_TIMEOUT",
    "NF_CONNTRACK_UDP_TIMEOUT_STREAM",
    "VS_CONNTRACK",
]

_PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# What the kernel prints for an integer sysctl (proc_dointvec, proc_doulongvec_minmax): digits, maybe
# a sign; nothing Python's int() also accepts (underscores, other scripts' digits), nothing wider
# than 64 bits (the API server stores int64).
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Opens a file by path with os.open flags and returns a descriptor; injectable so tests
# can produce EROFS/EACCES even when they run as root.
Opener = Callable[[str, int], int]


def _default_opener(path: str, flags: int) -> int:
    return os.open(path, flags)


def owning_module(name: str) -> str:
    """The kernel module that provides a sysctl, for error messages."""
    if name.startswith("net.ipv4.vs."):
        return "ip_vs"
    if name.startswith(("net.netfilter.nf_conntrack", "net.nf_conntrack")):
        return "nf_conntrack"
    return "the kernel module providing it"


def sysctl_path(root: Path, name: str) -> Path:
    """``net.ipv4.vs.conntrack`` -> ``<root>/net/ipv4/vs/conntrack``; refuses paths in disguise."""
    parts = name.split(".")
    if not name or "/" in name or "\\" in name or "\0" in name or any(p in ("", "..") for p in parts):
        raise ValueError(f"not a sysctl name: {name!r}")
    return root.joinpath(*parts)


class ProcSysctl:
    """The ``SysctlAdapter`` protocol over a /proc/sys tree (or a copy of one in tests)."""

    def __init__(self, root: Path = Path("/proc/sys"), opener: Opener = _default_opener) -> None:
        self.root = root
        self._open = opener

    def _error(self, name: str, action: str, exc: OSError) -> DataplaneError:
        if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
            return DataplaneUnavailableError(
                f"sysctl {name} is missing ({exc.filename or self.root}): "
                f"the {owning_module(name)} module may not be loaded"
            )
        if exc.errno in _PERMISSION_ERRNOS:
            return DataplanePermissionError(
                f"cannot {action} sysctl {name}: {os.strerror(exc.errno or 0)}; "
                "writing needs CAP_NET_ADMIN and a writable /proc/sys "
                "(a container without privilege sees it read-only)"
            )
        return DataplaneError(f"cannot {action} sysctl {name}: {exc}")

    def read(self, name: str) -> int:
        path = sysctl_path(self.root, name)
        try:
            fd = self._open(str(path), os.O_RDONLY)
            try:
                raw = os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._error(name, "read", exc) from exc
        text = raw.decode("ascii", "replace").strip()
        if not _INTEGER.fullmatch(text) or not _INT64_MIN <= int(text) <= _INT64_MAX:
            raise DataplaneError(f"sysctl {name} holds {text[:40]!r}, not one integer of at most 64 bits")
        return int(text)

    def writable(self, name: str) -> bool | None:
        """Whether this process may write the sysctl: False when its file system is read-only (the
        runtime mounts /proc/sys so in an unprivileged container) or its mode forbids it; None when
        the sysctl is missing (its module is not loaded), so nothing can be said."""
        path = sysctl_path(self.root, name)
        if not path.exists():
            return None
        return os.access(path, os.W_OK)

    def write(self, name: str, value: int) -> None:
        path = sysctl_path(self.root, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"sysctl {name} takes an integer, not {value!r}")
        try:
            fd = self._open(str(path), os.O_WRONLY)
            try:
                os.write(fd, f"{value}\n".encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._error(name, "write", exc) from exc
