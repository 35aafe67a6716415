from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from proxymedic.dataplane import sysctl
from proxymedic.dataplane.sysctl import ProcSysctl, sysctl_path
from proxymedic.dataplane.types import (
    DataplaneError,
    DataplanePermissionError,
    DataplaneUnavailableError,
    SysctlAdapter,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def proc_sys(tmp_path: Path) -> Path:
    """A copy of the parts of /proc/sys the agent reads, as the kernel formats them."""
    for name, value in {
        sysctl.EXPIRE_NODEST_CONN: "0",
        sysctl.EXPIRE_QUIESCENT_TEMPLATE: "0",
        sysctl.VS_CONNTRACK: "1",
        sysctl.NF_CONNTRACK_MAX: "262144",
        sysctl.NF_CONNTRACK_COUNT: "466",
        sysctl.NF_CONNTRACK_UDP_TIMEOUT: "30",
        sysctl.NF_CONNTRACK_UDP_TIMEOUT_STREAM: "120",
    }.items():
        path = sysctl_path(tmp_path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return tmp_path


def test_read_and_write_round_trip(proc_sys: Path) -> None:
    adapter: SysctlAdapter = ProcSysctl(proc_sys)
    assert adapter.read(sysctl.EXPIRE_NODEST_CONN) == 0
    adapter.write(sysctl.EXPIRE_NODEST_CONN, 1)
    assert adapter.read(sysctl.EXPIRE_NODEST_CONN) == 1
    assert (proc_sys / "net/ipv4/vs/expire_nodest_conn").read_text() == "1\n"
    assert adapter.read(sysctl.NF_CONNTRACK_MAX) == 262144


def test_writable_says_whether_a_write_would_be_refused(proc_sys: Path) -> None:
    adapter = ProcSysctl(proc_sys)
    assert adapter.writable(sysctl.EXPIRE_NODEST_CONN) is True
    assert adapter.writable("net.ipv4.vs.not_loaded") is None  # missing: nothing can be said
    if os.geteuid() != 0:  # root writes whatever the mode says; only a read-only mount stops it
        (proc_sys / "net/ipv4/vs/expire_nodest_conn").chmod(0o444)
        assert adapter.writable(sysctl.EXPIRE_NODEST_CONN) is False


@pytest.mark.parametrize(
    "name",
    ["", "net..ipv4", "net/ipv4/vs/conntrack", "net.ipv4.vs.conntrack/../../x", "..", "net.ipv4.", "a\0b"],
    ids=["empty", "empty-part", "slash", "dotdot-slash", "dotdot", "trailing-dot", "nul"],
)
def test_names_that_escape_the_tree_are_refused(proc_sys: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a sysctl name"):
        ProcSysctl(proc_sys).read(name)


@pytest.mark.parametrize(
    ("name", "module"),
    [(sysctl.EXPIRE_NODEST_CONN, "ip_vs"), (sysctl.NF_CONNTRACK_MAX, "nf_conntrack")],
    ids=["ipvs", "conntrack"],
)
def test_missing_file_names_the_module(tmp_path: Path, name: str, module: str) -> None:
    with pytest.raises(DataplaneUnavailableError, match=f"{name}.*the {module} module may not be loaded"):
        ProcSysctl(tmp_path).read(name)
    with pytest.raises(DataplaneUnavailableError):
        ProcSysctl(tmp_path).write(name, 1)


@pytest.mark.parametrize("content", ["", "abc\n", "1 2\n", "0x1\n"], ids=["empty", "text", "two", "hex"])
def test_non_integer_content_is_an_error(proc_sys: Path, content: str) -> None:
    sysctl_path(proc_sys, sysctl.VS_CONNTRACK).write_text(content)
    with pytest.raises(DataplaneError, match="not one integer"):
        ProcSysctl(proc_sys).read(sysctl.VS_CONNTRACK)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EPERM], ids=["erofs", "eacces", "eperm"])
def test_refused_write_names_the_missing_privilege(proc_sys: Path, code: int) -> None:
    # /proc/sys is read-only in an unprivileged container: the kernel answers EROFS. Root in
    # a test cannot be refused by chmod, so the refusal is injected at the opener.
    def refusing_opener(path: str, flags: int) -> int:
        if flags & os.O_WRONLY:
            raise OSError(code, os.strerror(code), path)
        return os.open(path, flags)

    adapter = ProcSysctl(proc_sys, opener=refusing_opener)
    assert adapter.read(sysctl.EXPIRE_NODEST_CONN) == 0
    with pytest.raises(DataplanePermissionError, match=r"expire_nodest_conn.*read-only"):
        adapter.write(sysctl.EXPIRE_NODEST_CONN, 1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through mode 0444; covered by the injected opener")
def test_read_only_file_on_disk(proc_sys: Path) -> None:
    path = sysctl_path(proc_sys, sysctl.EXPIRE_NODEST_CONN)
    path.chmod(0o444)
    with pytest.raises(DataplanePermissionError):
        ProcSysctl(proc_sys).write(sysctl.EXPIRE_NODEST_CONN, 1)


def test_other_os_errors_stay_generic(proc_sys: Path) -> None:
    def failing_opener(path: str, flags: int) -> int:
        raise OSError(errno.EIO, "I/O error", path)

    with pytest.raises(DataplaneError, match="I/O error") as caught:
        ProcSysctl(proc_sys, opener=failing_opener).read(sysctl.VS_CONNTRACK)
    assert not isinstance(caught.value, DataplanePermissionError | DataplaneUnavailableError)


def test_write_takes_integers_only(proc_sys: Path) -> None:
    with pytest.raises(TypeError):
        ProcSysctl(proc_sys).write(sysctl.VS_CONNTRACK, True)
