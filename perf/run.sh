#!/usr/bin/env bash
# Fulcrum's benchmark: the I/O floor (dpdk-testpmd io and macswap) and Fulcrum's forwarding
# rate, measured in one run on the same virtual devices (net_pcap infinite_rx -> net_null)
# and the same core, printed as Mpps and as a ratio to the floor. See perf/RESULTS.md.
#
#   perf/run.sh                      # every scenario (a few minutes)
#   perf/run.sh --only dsr,syn       # a subset of dsr,nat,ipip,gue,fullnat,syn,pickup,natnew,flows1m,rst
#   perf/run.sh --repeat 3           # median of 3 runs per figure (noisy machines)
#   perf/run.sh --ab OLD/fulcrum     # also an earlier build, runs interleaved, side by side
#   perf/run.sh --duration 10        # seconds per measurement (default 6)
#   perf/run.sh --smoke              # ~20 s: a tiny pcap, the floors and DSR; proves it works
#   perf/run.sh --memory             # also: bytes per flow-table entry, RSS with 10M flows
#   perf/run.sh --callgrind          # also: instructions per packet by stage (perf/callgrind.sh)
#   perf/run.sh --no-build           # use the binaries already built
#
# Needs what scripts/setup.sh installs (DPDK with dpdk-testpmd, python3, cargo) and root (DPDK
# opens its runtime directory under /var/run/dpdk). CPU 1 forwards, CPU 0 runs the main
# threads: on a 2-core machine anything else running (builds, tests) shows in the figures,
# so run it on a quiet machine or use --repeat. Performance is measured here, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
memory=0
callgrind=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --memory) memory=1 ;;
        --callgrind) callgrind=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) args+=("$1") ;;
    esac
    shift
done

for tool in dpdk-testpmd python3 cargo; do
    command -v "$tool" >/dev/null || { echo "perf/run.sh: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done
target="${CARGO_TARGET_DIR:-target}"
if [ "$build" = 1 ]; then
    echo "building (cargo build --release) ..."
    cargo build --release --quiet --bin fulcrum
    if [ "$memory" = 1 ]; then
        cargo build --release --quiet -p dataplane --example flow_memory
    fi
fi
[ -x "$target/release/fulcrum" ] || { echo "perf/run.sh: $target/release/fulcrum missing" >&2; exit 1; }

python3 perf/harness.py --fulcrum "$target/release/fulcrum" ${args[@]+"${args[@]}"}

if [ "$memory" = 1 ]; then
    echo
    echo "flow table memory (dataplane/examples/flow_memory.rs):"
    for n in 10000 1000000 10000000; do
        "$target/release/examples/flow_memory" "$n"
    done
    # One layout for both families: the same bytes per entry, printed for each.
    "$target/release/examples/flow_memory" 1000000 v6
fi
if [ "$callgrind" = 1 ]; then
    echo
    perf/callgrind.sh $([ "$build" = 0 ] && echo --no-build)
fi
