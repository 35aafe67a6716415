#!/bin/sh
# Runs inside the virtme-ng guest (called by run-kernel-tests.sh and run-cluster-tests.sh); not
# meant for the host.
# Arguments: MODE(pytest|bench|cluster) RWDIR VENV [args...]
MODE="$1"; RWDIR="$2"; VENV="$3"; shift 3
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$REPO" || exit 1
dmesg -n 1 2>/dev/null  # keep kernel messages off the console (and out of the test output)
for m in ip_vs ip_vs_rr ip_vs_wlc nf_conntrack nf_conntrack_netlink nf_nat nf_tables nft_nat dummy veth; do
    modprobe "$m" 2>/dev/null || echo "guest: modprobe $m failed"
done
if [ "$MODE" = cluster ]; then  # kube-proxy's IPVS mode: more schedulers, ipset and iptables
    for m in ip_vs_sh ip_vs_wrr ip_set ip_set_hash_ip ip_set_hash_ipport ip_set_hash_ipportip \
        ip_set_hash_ipportnet ip_set_hash_net ip_set_bitmap_port xt_set nft_compat nft_chain_nat \
        xt_mark xt_comment xt_addrtype xt_conntrack xt_MASQUERADE xt_nat; do
        modprobe "$m" 2>/dev/null || echo "guest: modprobe $m failed"
    done
    # The tier's kubectl and Helm write caches under HOME; the host's is read-only here.
    export PROXYMEDIC_CLUSTER_VM=1 CLUSTER_REPORT_DIR="$RWDIR" HOME=/tmp/cluster-home
    mkdir -p "$HOME"
    # The API server runs on the host (run-cluster-tests.sh), reached over QEMU's user network
    # where the host's loopback is 10.0.2.2. No udev loads the NIC's driver, and virtme-ng's
    # DHCP waits for it forever, so the script boots with --no-dhcp and the guest sets it up
    # (the address is tests/cluster/netlab.py's NODE_IP).
    if [ -f "$RWDIR/plane/plane.json" ]; then
        export PROXYMEDIC_CLUSTER_PLANE="$RWDIR/plane/plane.json"
        modprobe virtio_net && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 \
            || echo "guest: cannot set up eth0 for the API server on the host"
    fi
fi
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH="$VENV/bin:$PATH" KERNEL_REPORT_DIR="$RWDIR"
echo "guest: kernel $(uname -r), $(nproc) cpus"
rm -f "$RWDIR/exit-code.tmp"
# Stream the output (tee) and keep the command's own exit code (POSIX sh has no PIPESTATUS).
if [ "$MODE" = bench ]; then
    # One boot, both kernel benchmarks: the flush against the CLI tools, then the big node.
    { "$VENV/bin/python" bench/kernel_flush.py "$@" && "$VENV/bin/python" bench/kernel_scale.py "$@";
        echo $? >"$RWDIR/exit-code.tmp"; } 2>&1 | tee "$RWDIR/guest.log"
elif [ "$MODE" = cluster ]; then
    { "$VENV/bin/python" -m pytest -p no:cacheprovider -p no:hypothesispytest -m cluster tests/cluster -s -v \
        --junitxml="$RWDIR/junit.xml" "$@"; echo $? >"$RWDIR/exit-code.tmp"; } 2>&1 | tee "$RWDIR/guest.log"
else
    { "$VENV/bin/python" -m pytest -p no:cacheprovider -m kernel tests/kernel \
        --junitxml="$RWDIR/junit.xml" "$@"; echo $? >"$RWDIR/exit-code.tmp"; } 2>&1 | tee "$RWDIR/guest.log"
fi
rc="$(cat "$RWDIR/exit-code.tmp" 2>/dev/null || echo 1)"
rm -f "$RWDIR/exit-code.tmp"
echo "$rc" >"$RWDIR/exit-code"
