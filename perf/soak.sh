#!/usr/bin/env bash
# The long soak: tests/dpdk_soak.rs for ten minutes (CI runs the same test for two). Real DPDK
# (`fulcrum run` on net_pcap, infinite_rx over a mixed pcap: established DSR and NAT flows, a
# SYN flood larger than the flow table, hostile frames), sampled every second: VmRSS, open
# file descriptors, mbufs in use, flow-table occupancy, printed as a table and asserted flat
# after warm-up; then the books (every packet accounted) and the mbufs back in the pool.
#
#   perf/soak.sh          # 600 s
#   perf/soak.sh 1800     # half an hour
#
# Needs what scripts/setup.sh installs (DPDK, cargo-nextest, scapy) and root. Unlike the rest
# of perf/, this one asserts: it fails if anything grew.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
# nextest's per-test timeout (.config/nextest.toml) allows 15 minutes: longer soaks run the
# test binary under cargo test instead.
if [ "$secs" -le 780 ]; then
    FULCRUM_SOAK_SECS="$secs" exec cargo nextest run --test dpdk_soak --no-capture
fi
FULCRUM_SOAK_SECS="$secs" exec cargo test --test dpdk_soak -- --nocapture
