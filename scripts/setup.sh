#!/usr/bin/env bash
# Installs what Fulcrum needs on Debian 12 and prepares hugepages. Idempotent: run it as often
# as you like; it only installs what is missing.
#
#   scripts/setup.sh            # packages + hugepages
#   FULCRUM_NO_HUGEPAGES=1 scripts/setup.sh   # skip the hugepage step
set -euo pipefail

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (it installs packages and reserves hugepages)" >&2
    exit 1
fi

# Build: DPDK (Debian's 22.11 LTS), bindgen's libclang, pcap for net_pcap.
# Test peers: real servers and clients for the end-to-end suites, and dissectors.
PKGS=(
    dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev libpcap-dev
    iproute2 ethtool procps psmisc
    nginx-light curl wrk tshark tcpdump socat iperf3 python3
    bird2 iputils-ping  # BGP peers (one BIRD per namespace), ping of own addresses
    keepalived       # VRRP pairs (tests/e2e_vrrp.rs: one keepalived per namespace)
    nftables         # loss on purpose in a router namespace (tests/e2e_fullnat.rs, PROXY v2)
    valgrind llvm    # perf/callgrind.sh: callgrind, and llvm-symbolizer for inline stacks
    dpkg-dev systemd man-db  # tests/package.rs: dpkg-shlibdeps (cargo-deb's $auto), systemd-analyze verify, man
)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi
# Debian's nginx starts a system instance on install; the tests run their own, in namespaces.
if systemctl is-active --quiet nginx 2>/dev/null; then systemctl stop nginx || true; fi
# Likewise bird2's system BIRD (root namespace): the tests start one per namespace, each with
# its own config, control socket and pid file.
if systemctl is-active --quiet bird 2>/dev/null; then systemctl stop bird || true; fi
if [ -f /run/bird/bird.pid ] && ! systemctl is-system-running >/dev/null 2>&1; then
    kill "$(cat /run/bird/bird.pid)" 2>/dev/null || true
fi
# keepalived's system service (it starts only once /etc/keepalived/keepalived.conf exists):
# the tests run one per namespace, each with its own config and pid files; a system one
# would speak VRRP in the root namespace and run notify hooks nobody asked for.
if systemctl is-active --quiet keepalived 2>/dev/null; then systemctl stop keepalived || true; fi
if systemctl is-enabled --quiet keepalived 2>/dev/null; then systemctl disable keepalived || true; fi
if [ -f /run/keepalived.pid ] && ! systemctl is-system-running >/dev/null 2>&1; then
    kill "$(cat /run/keepalived.pid)" 2>/dev/null || true
fi

# scapy: the independent dissector and pcap generator of the tests.
if ! python3 -c 'import scapy' 2>/dev/null; then
    say "installing scapy"
    python3 -m pip install -q scapy 2>/dev/null || {
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq python3-scapy >/dev/null
    }
fi

# Rust tooling: cargo is expected (rustup); nextest runs each DPDK test in its own process.
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found: install Rust with rustup first" >&2
    exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi
# cargo-fuzz builds and runs the fuzz targets of fuzz/ (scripts/fuzz.sh); stable Rust works
# with --sanitizer none, which the script uses.
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
# cargo-deb builds the Debian package (tests/package.rs); pinned. Its release build took 40 min
# on the shared, busy 2-core development machine (a few minutes on an idle one).
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
    say "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
for c in clippy rustfmt; do
    if ! cargo "$c" --version >/dev/null 2>&1; then
        rustup component add "$c" 2>/dev/null || true
    fi
done

# Hugepages: reserve 512 x 2 MiB and mount hugetlbfs when we can; otherwise DPDK runs with
# --no-huge (slower memory, but everything works).
if [ -z "${FULCRUM_NO_HUGEPAGES:-}" ]; then
    hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
    if [ -w "$hp" ] && [ "$(cat "$hp")" -lt 512 ]; then
        echo 512 > "$hp" 2>/dev/null || true
    fi
    if ! mountpoint -q /dev/hugepages 2>/dev/null; then
        mkdir -p /dev/hugepages
        mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true
    fi
    if [ -r "$hp" ] && [ "$(cat "$hp")" -ge 64 ] && mountpoint -q /dev/hugepages; then
        say "hugepages: $(cat "$hp") x 2 MiB reserved, hugetlbfs on /dev/hugepages"
    else
        say "hugepages unavailable: use EAL args --no-huge -m 1024 (the example configs do)"
    fi
fi
say "ready (DPDK $(pkg-config --modversion libdpdk))"
