#!/usr/bin/env bash
# Replays a pcap into a RUNNING Fulcrum with dpdk-testpmd over shared memory (net_memif), and
# optionally records what Fulcrum sends back on that port. For your own captures.
#
#   perf/replay-into.sh --pcap capture.pcap --socket /run/fulcrum/memif.sock [options]
#
#   --pcap FILE        frames to send (Ethernet pcap)
#   --socket PATH      the memif socket of Fulcrum's port (see below)
#   --loop             replay the file in a loop (net_pcap infinite_rx: it is preloaded into
#                      mbufs, so it must fit the pool: --mbufs)
#   --duration SECS    stop after this long (default: 10 with --loop, else when the file is
#                      sent, at most 60)
#   --dst-mac MAC      rewrite every frame's destination MAC (testpmd "mac" forwarding), e.g.
#                      to the MAC of Fulcrum's port; default: frames go out as captured
#   --out FILE         write the frames Fulcrum sends back on this port to FILE (pcap)
#   --cpu N            testpmd's forwarding CPU (default 0; give Fulcrum's worker another)
#   --mbufs N          testpmd's pool (default 65535)
#   --demo             start a Fulcrum for the demo first (port 0 = memif server on --socket,
#                      port 1 = net_null, DSR to 10 backends; the address plan of
#                      perf/workload.py), replay, stop it and print its counters
#
# Fulcrum's side: give the port a memif device in server role, with a filesystem socket
# (socket-abstract=no: works without hugepages, and both ends must agree):
#
#   [[port]]
#   name = "outside"
#   device = "net_memif0,role=server,socket=/run/fulcrum/memif.sock,socket-abstract=no"
#
# testpmd connects as the client. Its port 0 is the pcap (net_pcap rx_pcap=FILE, plus
# tx_pcap=OUT with --out), its port 1 the memif; `io` forwarding moves pcap -> memif and
# memif -> pcap. testpmd prints its port counters when it stops. Throughput over memif
# between two processes tops out around 9 Mpps on this project's 2-core machines (see
# TESTBED.md): use perf/run.sh for forwarding rates, this for your traffic's behaviour.
set -euo pipefail
cd "$(dirname "$0")/.."

pcap=""; socket=""; loop=0; duration=""; dst_mac=""; out=""; cpu=0; mbufs=65535; demo=0
while [ $# -gt 0 ]; do
    case "$1" in
        --pcap) pcap="$2"; shift ;;
        --socket) socket="$2"; shift ;;
        --loop) loop=1 ;;
        --duration) duration="$2"; shift ;;
        --dst-mac) dst_mac="$2"; shift ;;
        --out) out="$2"; shift ;;
        --cpu) cpu="$2"; shift ;;
        --mbufs) mbufs="$2"; shift ;;
        --demo) demo=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "perf/replay-into.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
    shift
done
[ -n "$pcap" ] && [ -f "$pcap" ] || { echo "perf/replay-into.sh: --pcap FILE needed" >&2; exit 1; }
[ -n "$socket" ] || socket="/tmp/fulcrum-replay-$$.sock"
pcap=$(realpath "$pcap")
[ -n "$duration" ] || duration=$([ "$loop" = 1 ] && echo 10 || echo 60)

prefix="fulcrum-replay-tp-$$"
work=$(mktemp -d /tmp/fulcrum-replay.XXXXXX)
fulcrum_pid=""
tp=""
cleanup() {
    [ -n "$tp" ] && kill -INT "$tp" 2>/dev/null && sleep 1 && kill -9 "$tp" 2>/dev/null || true
    [ -n "$fulcrum_pid" ] && kill "$fulcrum_pid" 2>/dev/null || true
    [ -n "$tp" ] && wait "$tp" 2>/dev/null || true
    [ -n "$fulcrum_pid" ] && wait "$fulcrum_pid" 2>/dev/null || true
    scripts/dpdk-clean-prefix.sh "$prefix" "fulcrum-replay-fl-$$"
    [ "$demo" = 1 ] && rm -f "$socket"
    rm -rf "$work"
}
trap cleanup EXIT

if [ "$demo" = 1 ]; then
    target="${CARGO_TARGET_DIR:-target}"
    [ -x "$target/release/fulcrum" ] || cargo build --release --quiet --bin fulcrum
    python3 perf/workload.py config --out "$work/demo.toml" \
        --rx-device "net_memif0,role=server,socket=$socket,socket-abstract=no" \
        --tx-device "net_null0,no-rx=1" --worker-cpu 1 --slowpath-cpu 0 --vips 4 \
        --eal "--no-huge -m 1024 --no-pci --file-prefix fulcrum-replay-fl-$$" \
        --control-socket "$work/fulcrum.sock"
    "$target/release/fulcrum" run -c "$work/demo.toml" --json > "$work/fulcrum.json" 2> "$work/fulcrum.log" &
    fulcrum_pid=$!
    for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done
    [ -S "$socket" ] || { cat "$work/fulcrum.log" >&2; echo "demo: fulcrum did not open $socket" >&2; exit 1; }
    echo "demo: fulcrum running (pid $fulcrum_pid), memif server on $socket"
fi
[ -S "$socket" ] || { echo "perf/replay-into.sh: no memif socket at $socket: is Fulcrum running with a memif server port?" >&2; exit 1; }

pcapdev="net_pcap0,rx_pcap=$pcap"
[ "$loop" = 1 ] && pcapdev+=",infinite_rx=1"
[ -n "$out" ] && pcapdev+=",tx_pcap=$(realpath -m "$out")"
mode=(--forward-mode=io)
[ -n "$dst_mac" ] && mode=(--forward-mode=mac "--eth-peer=1,$dst_mac")
main_cpu=$(( cpu == 0 ? 1 : 0 ))

echo "replaying $pcap into $socket ($([ "$loop" = 1 ] && echo "in a loop, ${duration}s" || echo "once"))"
dpdk-testpmd -l "$main_cpu,$cpu" --no-huge -m 1024 --no-pci --file-prefix "$prefix" \
    --vdev "$pcapdev" --vdev "net_memif0,role=client,socket=$socket,socket-abstract=no" -- \
    --no-flush-rx --nb-cores=1 "${mode[@]}" --total-num-mbufs="$mbufs" --stats-period=1 \
    < /dev/null > "$work/testpmd.log" 2>&1 &
tp=$!
# Once: stop when port 0 has received the whole file and nothing moved for a second.
frames=$(python3 -c "
import struct, sys
f = open(sys.argv[1], 'rb'); f.read(24); n = 0
while True:
    h = f.read(16)
    if len(h) < 16: break
    f.seek(struct.unpack('<IIII', h)[2], 1); n += 1
print(n)" "$pcap")
end=$(( $(date +%s) + duration ))
while kill -0 "$tp" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do
    sleep 1
    if [ "$loop" = 0 ]; then
        got=$( (grep -oE "RX-packets: +[0-9]+" "$work/testpmd.log" || true) | awk 'NR%2==1{v=$2} END{print v+0}')
        [ "${got:-0}" -ge "$frames" ] && { sleep 1; break; }
    fi
done
kill -INT "$tp" 2>/dev/null || true
wait "$tp" 2>/dev/null || true
tp=""
sed -n '/Forward statistics for port 0/,/Accumulated forward/p' "$work/testpmd.log" \
    | grep -E "Forward statistics|RX-packets|TX-packets" || { tail -20 "$work/testpmd.log" >&2; exit 1; }
[ -n "$out" ] && echo "frames Fulcrum sent back on this port: $out"

if [ "$demo" = 1 ]; then
    kill -INT "$fulcrum_pid"
    wait "$fulcrum_pid" || true
    fulcrum_pid=""
    python3 -c "
import json, sys
v = json.load(open(sys.argv[1])); t = v['totals']
print(f\"fulcrum: rx {t['rx']} forwarded {t['forwarded']} replies {t['replies']} dropped {t['dropped']} \"
      f\"flows created {t['flows_created']} (every packet accounted: {t['balanced']})\")" "$work/fulcrum.json"
fi
