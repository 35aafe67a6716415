#!/usr/bin/env bash
# Prepare a Debian 12 machine (as root) for the real-kernel test tier.
#
# Installs QEMU, busybox, the CLI oracles (ipvsadm, conntrack), etcd, and iptables and ipset for
# kube-proxy's IPVS mode (scripts/vm/run-cluster-tests.sh), installs virtme-ng into
# the repository's virtualenv, and unpacks the Debian generic kernel that linux-image-amd64
# depends on into .cache/vm/ inside the repository (its modules go to /lib/modules/<ver>).
# Safe to run again: every step checks whether it is already done.
#
# Environment: VENV (default <repo>/.venv), VM_CACHE (default <repo>/.cache/vm).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
CACHE="${VM_CACHE:-$REPO/.cache/vm}"

log() { printf '[setup] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: must run as root (installs packages and kernel modules)" >&2
    exit 1
fi

# --- system packages --------------------------------------------------------------------
# iptables and ipset: kube-proxy's IPVS mode (the cluster tier); nftables (with libnftables1) and
# iptables: kube-proxy's rule modes on the host (the real-API tier); openssl: the API server's keys.
PKGS=(qemu-system-x86 busybox-static ipvsadm conntrack nftables iproute2 util-linux libcap2-bin kmod etcd-server
    iptables ipset openssl)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "system packages present"
fi

# --- virtme-ng in the project's virtualenv ------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup.sh: no virtualenv at $VENV (set VENV=...)" >&2
    exit 1
fi
if [[ -x "$VENV/bin/vng" ]]; then
    log "virtme-ng present: $("$VENV/bin/vng" --version 2>/dev/null || echo '?')"
else
    log "installing virtme-ng into $VENV"
    "$VENV/bin/python" -m pip install -q virtme-ng
fi

# --- the Debian generic kernel ------------------------------------------------------------
mkdir -p "$CACHE"
# linux-image-amd64 is a metapackage; its dependency names the versioned generic image.
if [[ -z "$(ls "$CACHE"/linux-image-*-amd64_*.deb 2>/dev/null)" ]]; then
    apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -qq
fi
IMG_PKG="$(apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
if [[ -z "$IMG_PKG" ]]; then
    echo "setup.sh: cannot resolve the package linux-image-amd64 depends on" >&2
    exit 1
fi
KVER="${IMG_PKG#linux-image-}"
DEB="$(ls "$CACHE"/"${IMG_PKG}"_*.deb 2>/dev/null | head -n1 || true)"
if [[ -z "$DEB" ]]; then
    log "downloading $IMG_PKG"
    (cd "$CACHE" && apt-get download -q -o APT::Sandbox::User=root "$IMG_PKG")
    DEB="$(ls "$CACHE"/"${IMG_PKG}"_*.deb | head -n1)"
fi
ROOT="$CACHE/$KVER"
if [[ ! -f "$ROOT/boot/vmlinuz-$KVER" ]]; then
    log "unpacking $(basename "$DEB")"
    rm -rf "$ROOT"
    dpkg -x "$DEB" "$ROOT"
fi
if [[ ! -d "/lib/modules/$KVER/kernel" ]]; then
    log "installing modules to /lib/modules/$KVER"
    mkdir -p /lib/modules
    cp -a "$ROOT/lib/modules/$KVER" /lib/modules/
fi
if [[ ! -f "/lib/modules/$KVER/modules.dep" || "/lib/modules/$KVER/modules.dep" -ot "$DEB" ]]; then
    log "depmod $KVER"
    depmod "$KVER"
fi
ln -sfn "$KVER" "$CACHE/current"
log "kernel ready: $ROOT/boot/vmlinuz-$KVER"
