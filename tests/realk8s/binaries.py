"""Find the real Kubernetes binaries the real-control-plane tests run.

Resolution order, first match wins:
1. ``PROXYMEDIC_K8S_BIN_DIR``: a folder holding ``kube-apiserver`` (and ``kube-proxy``), for
   example an upstream release of the same minor version;
2. ``PROXYMEDIC_K8S_XZ_DIR`` (default: ``shared/k8s`` beside the repository): xz-compressed
   binaries, unpacked once into ``.cache/k8s/`` and checked against its ``SHA256SUMS``.

etcd comes from the system (Debian's ``etcd-server``). A missing piece is a skip reason, never
an error: the tests that need it skip and say which piece and how to get it.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_XZ_DIR = ROOT.parent / "shared" / "k8s"
CACHE = ROOT / ".cache" / "k8s"
MINOR = "v1.36"


class Missing(Exception):
    """A binary the tier needs is not here; the message says which and how to provide it."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_proxy: Path | None
    etcd: Path


def _expected_sums(xz_dir: Path) -> dict[str, str]:
    """``name`` → sha256 of the uncompressed binary, from SHA256SUMS' ``(uncompressed)`` lines."""
    sums: dict[str, str] = {}
    path = xz_dir / "SHA256SUMS"
    if not path.exists():
        return sums
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and "uncompressed" in line:
            sums[parts[1]] = parts[0]
    return sums


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack(xz_dir: Path, name: str) -> Path | None:
    source = xz_dir / f"{name}.xz"
    if not source.exists():
        return None
    target = CACHE / name
    expected = _expected_sums(xz_dir).get(name)
    stamp = CACHE / f"{name}.sha256"
    if target.exists() and stamp.exists() and (expected is None or stamp.read_text() == expected):
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with lzma.open(source) as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    actual = _sha256(partial)
    if expected is not None and actual != expected:
        partial.unlink()
        raise Missing(f"{source} unpacks to sha256 {actual}, SHA256SUMS says {expected}")
    partial.chmod(0o755)
    partial.replace(target)
    stamp.write_text(actual)
    return target


def find(*, need_proxy: bool = False) -> Binaries:
    """The binaries, unpacked where needed; raises Missing with the reason."""
    etcd = shutil.which("etcd")
    if etcd is None:
        raise Missing("no etcd on PATH: apt-get install etcd-server (scripts/setup.sh --kernel does)")
    bin_dir = os.environ.get("PROXYMEDIC_K8S_BIN_DIR")
    if bin_dir:
        apiserver: Path | None = Path(bin_dir) / "kube-apiserver"
        proxy: Path | None = Path(bin_dir) / "kube-proxy"
        origin = f"PROXYMEDIC_K8S_BIN_DIR={bin_dir}"
    else:
        xz_dir = Path(os.environ.get("PROXYMEDIC_K8S_XZ_DIR", DEFAULT_XZ_DIR))
        origin = f"{xz_dir} (set PROXYMEDIC_K8S_BIN_DIR to a folder of {MINOR} binaries instead)"
        apiserver = _unpack(xz_dir, "kube-apiserver")
        proxy = _unpack(xz_dir, "kube-proxy") if need_proxy else None
    if apiserver is None or not apiserver.exists():
        raise Missing(f"no kube-apiserver in {origin}")
    if need_proxy and (proxy is None or not proxy.exists()):
        raise Missing(f"no kube-proxy in {origin}")
    return Binaries(kube_apiserver=apiserver, kube_proxy=proxy if need_proxy else None, etcd=Path(etcd))
