"""kube-proxy's rules in nftables and iptables mode, as the kernel holds them.

nftables: kube-proxy's ``ip`` and ``ip6`` ``kube-proxy`` tables as libnftables' JSON, through
the library itself (``libnftables.so.1``, Debian's ``libnftables1``, the library behind ``nft``)
by ctypes, as its own Python binding does: no ``nft`` command, no text to scrape.

iptables: ``iptables-save`` and ``ip6tables-save``. No library reads rules of the nf_tables
backend with their DNAT targets (libnftables shows xtables targets by name only; libiptc knows
only the legacy backend), and the ``-save`` format is what kube-proxy itself reads back.

``proxymedic.expectation.rules`` turns either into the per-node view.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import subprocess
from typing import Any

from proxymedic.dataplane.types import DataplaneError, DataplanePermissionError, DataplaneUnavailableError

NFT_CTX_OUTPUT_JSON = 1 << 4
"""``enum nft_output_flags`` in ``nftables/libnftables.h``."""
TABLES = ("ip kube-proxy", "ip6 kube-proxy")
SAVE_TIMEOUT_SECONDS = 20.0


class Libnftables:
    """One libnftables context with JSON output; not thread-safe, as the library's contexts are not."""

    def __init__(self, library: str | None = None) -> None:
        name = library or ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise DataplaneUnavailableError(f"libnftables is not installed ({name}: {exc})") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise DataplaneError("libnftables: cannot create a context")
        lib.nft_ctx_output_set_flags(self._ctx, NFT_CTX_OUTPUT_JSON)
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def close(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def __enter__(self) -> Libnftables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, command: str) -> tuple[int, str, str]:
        """The command's return code, its JSON output and its error text."""
        rc = int(self._lib.nft_run_cmd_from_buffer(self._ctx, command.encode()))
        output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
        error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        return rc, output, error

    def list_tables(self, tables: tuple[str, ...] = TABLES) -> dict[str, Any]:
        """The tables as one libnftables JSON document; a table that does not exist is left out."""
        objects: list[Any] = []
        for table in tables:
            rc, output, error = self.run(f"list table {table}")
            if rc != 0:
                if "No such file or directory" in error:
                    continue
                if "Operation not permitted" in error:
                    raise DataplanePermissionError(f"libnftables: list table {table}: {error.strip()}")
                raise DataplaneError(f"libnftables: list table {table}: {error.strip() or f'error {rc}'}")
            try:
                document = json.loads(output)
            except ValueError as exc:
                raise DataplaneError(f"libnftables: list table {table}: not JSON ({exc})") from None
            found = document.get("nftables") if isinstance(document, dict) else None
            if isinstance(found, list):
                objects.extend(item for item in found if isinstance(item, dict) and "metainfo" not in item)
        return {"nftables": objects}


def read_nftables() -> dict[str, Any]:
    """kube-proxy's nftables tables of this network namespace, as libnftables JSON."""
    with Libnftables() as nft:
        return nft.list_tables()


def _save(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise DataplaneUnavailableError(f"{command} is not installed")
    try:
        proc = subprocess.run(
            [path], capture_output=True, text=True, timeout=SAVE_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise DataplaneError(f"{command} did not finish in {SAVE_TIMEOUT_SECONDS:.0f} s") from None
    if proc.returncode != 0:
        message = proc.stderr.strip()[:300] or f"exit code {proc.returncode}"
        if "Permission denied" in message or "not permitted" in message:
            raise DataplanePermissionError(f"{command}: {message}")
        raise DataplaneError(f"{command}: {message}")
    return proc.stdout


KUBE_PROXY_CHAIN = ":KUBE-SERVICES "
BACKENDS = ("", "-nft", "-legacy")
"""``iptables-save`` first, then each backend's own: the node's kube-proxy may use the other backend
than this image's default (kube-proxy's image picks the one that holds rules, as this does)."""


def _save_with_rules(family: str) -> str:
    """The first backend's ``-save`` output that holds kube-proxy's chains, else the default's."""
    first: str | None = None
    for backend in BACKENDS:
        command = f"{family}{backend}-save"
        if backend and shutil.which(command) is None:
            continue
        try:
            text = _save(command)
        except DataplaneError:
            if not backend:
                raise
            continue  # that backend cannot be read here: it holds no rules of this node's
        if KUBE_PROXY_CHAIN in text:
            return text
        first = text if first is None else first
    return first or ""


def read_iptables() -> tuple[str, str]:
    """``iptables-save`` and ``ip6tables-save`` of this network namespace (IPv6 empty without it)."""
    ipv4 = _save_with_rules("iptables")
    try:
        ipv6 = _save_with_rules("ip6tables")
    except DataplaneUnavailableError:
        ipv6 = ""
    return ipv4, ipv6


def local_addresses() -> tuple[str, ...]:
    """Every address of this network namespace (RTM_GETADDR): where iptables mode's NodePort rules,
    matched by ``--dst-type LOCAL``, take traffic."""
    from pyroute2.iproute.linux import IPRoute

    try:
        with IPRoute() as ipr:
            found = {message.get_attr("IFA_ADDRESS") for message in ipr.get_addr()}
    except OSError as exc:
        raise DataplaneError(f"list the node's addresses: {exc}") from exc
    return tuple(sorted(str(address) for address in found if address))
