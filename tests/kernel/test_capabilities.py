"""Which privilege each dataplane action needs, measured (docs/kernel.md, "Privileges").

Each variant forks a child of the test process (which has pyroute2 imported, so no new
interpreter start under emulation), drops to the given uid and capability set with
capset(2), runs every adapter action and reports the outcome. ``setpriv`` runs the CLI
oracles under the same restrictions as an independent check. Results are printed and, when
KERNEL_REPORT_DIR is set (the VM run script sets it), written there as capabilities.json.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from proxymedic.dataplane.conntrack import NetlinkConntrack
from proxymedic.dataplane.ipvs import NetlinkIPVS
from proxymedic.dataplane.types import DataplanePermissionError, Endpoint, L4Protocol, ServiceKey
from tests.kernel.lab import BACKENDS, VIP4, Lab, need_tool, run
from tests.kernel.test_ipvs_adapter import ipvsadm_add

CAP_NET_ADMIN = 12
NOBODY = 65534
SVC = ServiceKey(L4Protocol.UDP, VIP4, 53)
THROWAWAY = Endpoint(ipaddress.IPv4Address("10.0.9.9"), 53)
VS = Path("/proc/sys/net/ipv4/vs/expire_nodest_conn")
CT_UDP = Path("/proc/sys/net/netfilter/nf_conntrack_udp_timeout")

VARIANTS = {
    "uid0+NET_ADMIN": (0, {CAP_NET_ADMIN}),
    "uid65534+NET_ADMIN": (NOBODY, {CAP_NET_ADMIN}),
    "uid0,no caps": (0, set()),
    "uid65534,no caps": (NOBODY, set()),
}


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_privileges(uid: int, caps: set[int]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(8, 1, 0, 0, 0) != 0:  # PR_SET_KEEPCAPS: keep permitted caps across setuid
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    if uid != 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    mask = sum(1 << c for c in caps)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)(_CapData(mask, mask, 0), _CapData(0, 0, 0))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _outcome(fn: Callable[[], object]) -> str:
    try:
        fn()
    except DataplanePermissionError:
        return "EPERM"
    except PermissionError:
        return "EACCES"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"


def _actions() -> dict[str, Callable[[], object]]:
    ipvs, ct = NetlinkIPVS(), NetlinkConntrack()

    def stats_netlink() -> object:
        s = ct.stats()
        if s.drops is None:  # the /proc fallback answered: netlink was refused
            raise DataplanePermissionError("netlink refused, /proc fallback used")
        return s

    return {
        "ipvs list_services": ipvs.list_services,
        "ipvs get_timeouts (GET_CONFIG)": ipvs.get_timeouts,
        "ipvs set_timeouts (SET_CONFIG)": lambda: ipvs.set_timeouts(ipvs.get_timeouts()),
        "ipvs set_weight (SET_DEST)": lambda: ipvs.set_weight(SVC, Endpoint(BACKENDS[1].ip4, 53), 1),
        "ipvs remove_real_server (DEL_DEST)": lambda: ipvs.remove_real_server(SVC, THROWAWAY),
        "ipvs flush_dead_real_server (NEW_DEST+DEL_DEST)": lambda: ipvs.flush_dead_real_server(
            SVC, THROWAWAY
        ),
        "conntrack stats (ctnetlink)": stats_netlink,
        "conntrack stats (/proc fallback)": ct.stats,
        "conntrack list (filtered dump)": lambda: ct.list_udp_entries(VIP4, 53),
        "conntrack delete_udp_entries": lambda: ct.delete_udp_entries(VIP4, 53, BACKENDS[0].ip4),
        "read /proc/net/ip_vs_conn": lambda: Path("/proc/net/ip_vs_conn").read_text(),
        "read net.ipv4.vs.expire_nodest_conn": VS.read_text,
        "write net.ipv4.vs.expire_nodest_conn": lambda: VS.write_text(VS.read_text()),
        "write net.netfilter.nf_conntrack_udp_timeout": lambda: CT_UDP.write_text(CT_UDP.read_text()),
        "read net.netfilter.nf_conntrack_count": Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text,
    }


def run_restricted(uid: int, caps: set[int]) -> dict[str, str]:
    """Fork, drop to uid/caps, run every action; the child's outcomes (and its CapEff)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            os.close(r)
            _drop_privileges(uid, caps)
            status = Path("/proc/self/status").read_text()
            out = {"CapEff": re.search(r"CapEff:\s*(\S+)", status).group(1)}  # type: ignore[union-attr]
            out.update({name: _outcome(fn) for name, fn in _actions().items()})
            os.write(w, json.dumps(out).encode())
        except BaseException as exc:
            os.write(w, json.dumps({"child failed": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    result: dict[str, str] = json.loads(b"".join(chunks))
    return result


@pytest.fixture
def service(node: Lab) -> ServiceKey:
    ipvsadm_add(SVC, BACKENDS[0].ip4, BACKENDS[1].ip4)
    return SVC


def test_privilege_needed_per_action(service: ServiceKey) -> None:
    """Every adapter action works with CAP_NET_ADMIN alone (uid 0 or not); without it every netlink
    action fails with DataplanePermissionError. Sysctl writes under /proc/sys/net need CAP_NET_ADMIN
    in the netns' user namespace or uid 0; reading /proc/net/ip_vs_conn needs nothing."""
    table = {name: run_restricted(uid, caps) for name, (uid, caps) in VARIANTS.items()}
    report = json.dumps(table, indent=2, sort_keys=True)
    print(report)
    if out_dir := os.environ.get("KERNEL_REPORT_DIR"):
        Path(out_dir, "capabilities.json").write_text(report)
    netlink = [a for a in _actions() if a.startswith(("ipvs ", "conntrack ")) and "fallback" not in a]
    for variant in ("uid0+NET_ADMIN", "uid65534+NET_ADMIN"):
        assert table[variant]["CapEff"] == f"{1 << CAP_NET_ADMIN:016x}"
        assert {a: table[variant][a] for a in netlink} == dict.fromkeys(netlink, "ok"), variant
    for variant in ("uid0,no caps", "uid65534,no caps"):
        assert table[variant]["CapEff"] == "0" * 16
        assert {a: table[variant][a] for a in netlink} == dict.fromkeys(netlink, "EPERM"), variant
        assert table[variant]["conntrack stats (/proc fallback)"] == "ok"
        assert table[variant]["read /proc/net/ip_vs_conn"] == "ok"
    assert table["uid65534+NET_ADMIN"]["write net.ipv4.vs.expire_nodest_conn"] == "ok"
    assert table["uid65534,no caps"]["write net.ipv4.vs.expire_nodest_conn"] == "EACCES"


def test_setpriv_cli_oracles_need_net_admin(service: ServiceKey) -> None:
    """Independent check with setpriv(1): ipvsadm and conntrack need CAP_NET_ADMIN and nothing more."""
    need_tool("setpriv")
    only = ["setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "--"]
    none = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]
    assert "10.96.0.10:53" in run(*only, "ipvsadm", "-Ln")
    run(*only, "conntrack", "-L")
    with pytest.raises(RuntimeError):
        run(*none, "ipvsadm", "-Ln")
    with pytest.raises(RuntimeError):
        run(*none, "conntrack", "-L")
