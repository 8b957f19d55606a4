#!/usr/bin/env bash
# Instructions per packet of the pipeline, by stage, counted by callgrind on fixed pcaps: a
# figure that does not move with the machine's load (unlike Mpps on a shared 2-core box).
#
#   perf/callgrind.sh              # build, then every scenario
#   perf/callgrind.sh --no-build   # use target/release/examples/pipeline_replay as it is
#   perf/callgrind.sh --only dsr,syn
#
# Each scenario runs `Pipeline::process` (dataplane/examples/pipeline_replay.rs) over a pcap
# made by perf/workload.py: one warm-up pass (fills the flow table, not counted), then one
# counted pass (`--toggle-collect` on the measured call only). The counted instructions are
# split into stages by perf/callgrind_stages.py (inline stacks from the line tables).
# No DPDK and no I/O here: the worker's RX/TX and mbuf handling are not in these figures.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
only="dsr,nat,ipip,gue,fullnat,syn,pickup,natnew,fnatnew,rst,udp"
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --only) only="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "perf/callgrind.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "perf/callgrind.sh: valgrind not found" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
if [ "$build" = 1 ]; then
    cargo build --release --quiet -p dataplane --example pipeline_replay
fi
bin="$target/release/examples/pipeline_replay"
[ -x "$bin" ] || { echo "perf/callgrind.sh: $bin missing" >&2; exit 1; }

out=perf/out/callgrind
mkdir -p "$out"
wl() { python3 perf/workload.py "$@" >/dev/null; }
# The pcaps: small, so a counted pass takes seconds under callgrind.
[ -f "$out/est.pcap" ] || wl pcap --out "$out/est.pcap" --flows 4096 --packets 16384 --vips 4
[ -f "$out/syn.pcap" ] || wl pcap --out "$out/syn.pcap" --flows 16384 --packets 16384 --vips 4 --syn-share 1
[ -f "$out/udp.pcap" ] || wl pcap --out "$out/udp.pcap" --flows 4096 --packets 16384 --vips 4 --udp-share 1
[ -f "$out/flood.pcap" ] || wl pcap --out "$out/flood.pcap" --flows 32768 --packets 32768 --vips 4 --syn-share 1
[ -f "$out/new.pcap" ] || wl pcap --out "$out/new.pcap" --flows 16384 --packets 16384 --vips 4
cfg() { # name, extra config options
    local name="$1"; shift
    wl config --out "$out/$name.toml" --rx-device net_pcap0 --tx-device net_null0 --vips 4 "$@"
}

results=()
for s in ${only//,/ }; do
    case "$s" in
        dsr) pcap=est; cfg dsr --forwarding dsr ;;
        nat) pcap=est; cfg nat --forwarding nat ;;
        # The same established flows through a tunnel: IPv4 in IPv4, and in UDP (GUE).
        ipip) pcap=est; cfg ipip --forwarding ipip ;;
        gue) pcap=est; cfg gue --forwarding gue ;;
        # The same flows through FullNAT: the warm-up pass opens each pair (a local port),
        # the counted pass rewrites source and destination.
        fullnat) pcap=est; cfg fullnat --forwarding fullnat ;;
        # A SYN flood: the table holds 1/32 of the SYNs' keys, so ~97% of the counted SYNs
        # find no entry and no room (forwarded unrecorded: a SYN never evicts).
        syn) pcap=flood; cfg syn --forwarding dsr --flow-capacity 1024 ;;
        # Every packet a new flow that is recorded: mid-stream pickups (one ACK per flow)
        # into a table of a quarter of the keys, so each counted packet misses and evicts.
        pickup) pcap=new; cfg pickup --forwarding dsr --flow-capacity 4096 ;;
        # The same pickups through NAT: each records a pair (the client's half and the
        # backend's reply half, linked), so each counted packet evicts a pair to make room.
        natnew) pcap=new; cfg natnew --forwarding nat --flow-capacity 4096 ;;
        # And through FullNAT: each also takes a local port (freed ports reusable at once, so
        # the pool of one local address is not exhausted by evicted pairs' resting ports).
        fnatnew) pcap=new; cfg fnatnew --forwarding fullnat --flow-capacity 4096 --port-quiet-ms 0 ;;
        rst) pcap=syn; cfg rst --forwarding dsr --flow-capacity 4096 --empty ;;
        udp) pcap=udp; cfg udp --forwarding dsr ;;
        *) echo "perf/callgrind.sh: unknown scenario $s" >&2; exit 1 ;;
    esac
    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$out/$s.callgrind" \
        --toggle-collect='*measure_*' \
        "$bin" --config "$out/$s.toml" --pcap "$out/$pcap.pcap" --warmup 1 --passes 1 \
        > "$out/$s.json" 2> "$out/$s.valgrind.log"
    packets=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["measured_packets"])' "$out/$s.json")
    python3 perf/callgrind_stages.py "$out/$s.callgrind" "$packets" --json > "$out/$s.stages.json"
    results+=("$s")
done

python3 - "$out" "${results[@]}" <<'EOF'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
data = {n: json.load(open(f"{out}/{n}.stages.json")) for n in names}
runs = {n: json.load(open(f"{out}/{n}.json")) for n in names}
stages = []
for n in names:
    for s in data[n]["stages"]:
        if s not in stages:
            stages.append(s)
stages.sort(key=lambda s: -max(data[n]["stages"].get(s, 0) for n in names))
w = max(len(s) for s in stages + ["instructions per packet"])
print("instructions per packet, by stage (callgrind; one counted pass after one warm-up pass)")
print(f"{'':<{w}}" + "".join(f"{n:>9}" for n in names))
for s in stages:
    print(f"{s:<{w}}" + "".join(f"{data[n]['stages'].get(s, 0):>9.1f}" for n in names))
print(f"{'total':<{w}}" + "".join(f"{data[n]['total_per_packet']:>9.1f}" for n in names))
print(f"{'verdicts':<{w}}" + "".join(f"{','.join(runs[n]['verdicts']):>9}" for n in names))
json.dump({n: {"stages": data[n], "run": runs[n]} for n in names}, open(f"{out}/summary.json", "w"), indent=1)
EOF
