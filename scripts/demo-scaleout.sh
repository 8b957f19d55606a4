#!/usr/bin/env bash
# Shows Fulcrum scaling out: three instances with the same config behind a Linux router that
# spreads flows over them by ECMP, each announcing the VIP by BGP from its own BIRD over its
# DPDK port (the kernel exception path). Real connections are spread over the instances; one
# instance is killed (-9) while long streams run, the router withdraws it, and its flows carry
# on through the others (same Maglev choices). Every step is bounded; everything it made is
# removed at the end. The network is scripts/ecmp-testbed.sh's (the e2e_ecmp tests' too).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

scripts/setup.sh
bold "Building Fulcrum"
cargo build --quiet
bin=$root/target/debug/fulcrum

name="so$(( $$ % 10000 ))"
work=$(mktemp -d /tmp/fulcrum-scaleout.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    scripts/ecmp-testbed.sh down "$name" >/dev/null 2>&1 || true
    for i in 1 2 3; do scripts/dpdk-clean-prefix.sh "fulcrum-$name-lb$i"; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

vip=10.66.0.100
in_ns() { local n=$1; shift; ip netns exec "$name-$n" "$@"; }
hops() { ip -n "$name-rt" route show "$vip/32" | grep -o 'via [0-9.]*' | wc -l; }
ms() { date +%s%3N; }
ctl() { "$bin" ctl -s "$work/lb$1.sock" --json "${@:2}"; }
flows() { ctl "$1" stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"].get("flows_created", 0))'; }
bird() {
    # bird NODE: BIRD in NODE's namespace with its own config, socket and pid file.
    ip netns exec "$name-$1" bird -f -c "$work/bird-$1.conf" -s "$work/bird-$1.ctl" \
        -P "$work/bird-$1.pid" 2>"$work/bird-$1.log" &
    pids+=($!)
}

bold "Testbed $name: router $name-rt (BIRD, ECMP), instances $name-lb1..lb3, backends $name-b1..b3, client $name-c1"
scripts/ecmp-testbed.sh up "$name" "$work"
bird rt
for i in 1 2 3; do
    # `ip netns exec` execs Fulcrum: $! is Fulcrum's pid (kill -9 below).
    ip netns exec "$name-lb$i" "$bin" run -c "$work/fulcrum-lb$i.toml" >"$work/lb$i.out" 2>"$work/lb$i.err" &
    pids+=($!)
    eval "lb${i}_pid=$!"
    for _ in $(seq 1 300); do [ -f "$work/lb$i-vips.conf" ] && break; sleep 0.1; done
    [ -f "$work/lb$i-vips.conf" ] || { cat "$work/lb$i.err"; echo "lb$i did not start" >&2; exit 1; }
    bird "lb$i"
done
echo "Waiting for the three BGP sessions and the VIP's route over three next hops..."
for _ in $(seq 1 600); do [ "$(hops)" -eq 3 ] && break; sleep 0.1; done
[ "$(hops)" -eq 3 ] || { birdc -s "$work/bird-rt.ctl" show protocols; echo "not announced" >&2; exit 1; }
birdc -s "$work/bird-rt.ctl" show protocols | grep -E 'Name|lb'
echo "Router's FIB:"
ip -n "$name-rt" route show "$vip/32" | sed 's/^/   /'

client() { in_ns c1 python3 tests/tools/client.py "$@"; }
srcs=(--source 10.68.0.101 --source 10.68.0.102 --source 10.68.0.103)

bold "1. 600 new connections from behind the router to $vip:80: spread over the instances, then over the backends"
before=(); for i in 1 2 3; do before+=("$(flows "$i")"); done
client --host "$vip" --count 600 --concurrency 8 --timeout 5 "${srcs[@]}" --human
for i in 1 2 3; do echo "   lb$i took $(( $(flows "$i") - before[i-1] )) flows"; done

bold "2. 150 long streams (12 s each, ten lines a second), then kill -9 of lb2"
in_ns c1 python3 tests/tools/streams.py --target "$vip:80:10.68.0.101" --target "$vip:80:10.68.0.102" \
    --target "$vip:80:10.68.0.103" --count 50 --secs 12 --ready "$work/ready" >"$work/streams.json" &
streams=$!
pids+=("$streams")
for _ in $(seq 1 600); do [ -f "$work/ready" ] && break; sleep 0.1; done
sleep 2
for i in 1 2 3; do before[i-1]=$(flows "$i"); done
t0=$(ms)
{ kill -9 "$lb2_pid"; wait "$lb2_pid"; } 2>/dev/null || true
for _ in $(seq 1 1000); do [ "$(hops)" -eq 2 ] && break; sleep 0.01; done
[ "$(hops)" -eq 2 ] || { echo "the router did not withdraw lb2" >&2; exit 1; }
echo "   the router withdrew lb2's next hop $(( $(ms) - t0 )) ms after the kill (BFD 100 ms x 3):"
ip -n "$name-rt" route show "$vip/32" | sed 's/^/   /'
sleep 2
for i in 1 3; do echo "   lb$i picked up $(( $(flows "$i") - before[i-1] )) flows mid-stream (Maglev: the same backend)"; done
wait "$streams" || true
python3 - "$work/streams.json" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
print(f"   streams: {v['intact']} of {v['streams']} intact, {v['broken_count']} broken, "
      f"longest silence {v['max_gap_ms']} ms")
EOF

bold "3. 300 new connections with lb2 gone: all answered by lb1 and lb3"
client --host "$vip" --count 300 --concurrency 8 --timeout 5 "${srcs[@]}" --human

bold "Done: removing the testbed"
