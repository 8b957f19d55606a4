#!/usr/bin/env bash
# Shows Fulcrum working on real traffic: it installs what is missing, builds, brings up a
# testbed of network namespaces (a client, three HTTP backends, the balancer on DPDK),
# starts Fulcrum with conf/examples/testbed.toml, sends real connections, and shows where
# they went, what an empty pool does, an IPIP service added by a live reload whose backend
# without a tunnel endpoint is taken out by the check through the tunnel, and Fulcrum's own
# counters. Then it removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

scripts/setup.sh
bold "Building Fulcrum"
cargo build --quiet
bin=$root/target/debug/fulcrum

name="dm$(( $$ % 10000 ))"
work=$(mktemp -d /tmp/fulcrum-demo.XXXXXX)
lb_pid=""
decap_pids=()
cleanup() {
    for pid in "${decap_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$lb_pid" ] && kill -0 "$lb_pid" 2>/dev/null; then kill "$lb_pid" 2>/dev/null || true; wait "$lb_pid" 2>/dev/null || true; fi
    scripts/testbed.sh down "$name" >/dev/null 2>&1 || true
    # Fulcrum removes its runtime files on a clean exit; not when it was killed.
    scripts/dpdk-clean-prefix.sh "fulcrum-demo-$name"
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

bold "Testbed $name: client $name-c1, backends $name-b1..b3 (python HTTP servers that say who they are), balancer $name-lb"
scripts/testbed.sh up "$name" 3

sed "s/fulcrum-testbed/fulcrum-demo-$name/" conf/examples/testbed.toml > "$work/fulcrum.toml"
bold "Config: conf/examples/testbed.toml"
"$bin" check -c "$work/fulcrum.toml"
ip netns exec "$name-lb" "$bin" run -c "$work/fulcrum.toml" >"$work/fulcrum.out" 2>"$work/fulcrum.err" &
lb_pid=$!
for _ in $(seq 1 300); do grep -q "port up" "$work/fulcrum.err" 2>/dev/null && break; sleep 0.1; done
grep -q "port up" "$work/fulcrum.err" || { cat "$work/fulcrum.err"; echo "Fulcrum did not start" >&2; exit 1; }
echo "Fulcrum is up (DPDK net_af_packet on lb0); learning backend MACs by ARP and checking their health..."
ups() { grep -c 'backend health.*to="up"' "$work/fulcrum.err" || true; }
for _ in $(seq 1 100); do [ "$(ups)" -ge 6 ] && break; sleep 0.1; done
grep "neighbour learnt\|backend health" "$work/fulcrum.err" | sed -E 's/^[^ ]+ +//; s/^/   /' | head -12

client() {
    scripts/testbed.sh exec "$name" c1 python3 tests/tools/client.py "$@"
}


bold "1. DSR: 400 new connections from 4 client addresses to VIP 10.77.0.100:80 (weights b1:b2:b3 = 100:100:200)"
echo "   Backends answer the client directly; Fulcrum only rewrote the destination MAC."
client --host 10.77.0.100 --port 80 --count 400 --source 10.77.0.101 --source 10.77.0.102 --source 10.77.0.103 --source 10.77.0.104 --human

bold "2. NAT: 300 connections to VIP 10.79.0.200:80, translated to backend:8080 and back (equal weights)"
client --host 10.79.0.200 --port 80 --count 300 --source 10.78.0.101 --source 10.78.0.102 --human

bold "3. Same flow, same backend: where would Fulcrum send these? (fulcrum which, offline, from the config)"
"$bin" which -c "$work/fulcrum.toml" "10.77.0.101:40000 10.77.0.100:80" "10.77.0.101:40001 10.77.0.100:80" "10.78.0.101:40000 10.79.0.200:80"

bold "3b. The running balancer, over its control socket (fulcrum ctl backends)"
"$bin" ctl -c "$work/fulcrum.toml" backends | sed 's/^/   /'

bold "4. A VIP whose pool is empty (its only backend is in maintenance): the SYN gets a RST at once"
scripts/testbed.sh exec "$name" c1 curl -sS -m 5 http://10.77.0.99/ 2>&1 | sed 's/^/   curl: /' || true
echo "   20 more connection attempts, timed by the client:"
client --host 10.77.0.99 --port 80 --count 20 --source 10.77.0.101 --human

bold "5. Backend b3's server is stopped: within interval x fall (1 s) its health check fails, it gets no new flows"
scripts/testbed.sh stop-backend "$name" b3
sleep 2
grep 'backend health.*b3.*to="down"' "$work/fulcrum.err" | sed -E 's/^[^ ]+ +//; s/^/   /' | tail -2 || true
client --host 10.77.0.100 --port 80 --count 200 --source 10.77.0.101 --source 10.77.0.102 --human
echo "   b3's server comes back: after rise (2) checks it takes flows again"
scripts/testbed.sh start-backend "$name" b3
sleep 2
client --host 10.77.0.100 --port 80 --count 200 --source 10.77.0.101 --source 10.77.0.102 --human

bold "5b. IPIP: a tunnelled service on VIP 10.77.0.110, added by a live reload, checked through the tunnel"
echo "   b1 and b2 run a tunnel endpoint (tests/tools/decap.py: this kernel has no ipip device);"
echo "   b3 has none. Its own address answers the check, but the same check to the VIP inside"
echo "   IPIP (through_tunnel = true) does not: b3 is taken out instead of swallowing its share."
for i in 1 2 3; do
    scripts/testbed.sh exec "$name" "b$i" ip addr add 10.77.0.110/32 dev lo
done
for i in 1 2; do
    ip netns exec "$name-b$i" python3 tests/tools/decap.py --local "10.77.0.1$i" \
        --gue-port 0 --max-secs 300 --stats "$work/b$i.decap.json" >"$work/b$i.decap.out" 2>&1 &
    decap_pids+=($!)
done
for i in 1 2; do
    for _ in $(seq 1 50); do grep -q ready "$work/b$i.decap.out" 2>/dev/null && break; sleep 0.1; done
done
cat >>"$work/fulcrum.toml" <<'TOML'

[[service]]
name = "web-ipip"
vip = "10.77.0.110"
port = 80
forwarding = "ipip"
[service.health]
type = "http"
interval_ms = 500
timeout_ms = 300
rise = 2
fall = 2
through_tunnel = true
[[service.backend]]
name = "b1"
address = "10.77.0.11"
[[service.backend]]
name = "b2"
address = "10.77.0.12"
[[service.backend]]
name = "b3"
address = "10.77.0.13"
TOML
"$bin" ctl -c "$work/fulcrum.toml" reload | sed 's/^/   reload: /'
sleep 2
grep 'backend health.*web-ipip' "$work/fulcrum.err" | sed -E 's/^[^ ]+ +//; s/^/   /' | tail -3 || true
"$bin" which -c "$work/fulcrum.toml" "10.77.0.101:40000 10.77.0.110:80" | sed 's/^/   /'
client --host 10.77.0.110 --port 80 --count 200 --source 10.77.0.101 --source 10.77.0.102 --human
for pid in "${decap_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
decap_pids=()
echo "   What the endpoints took and refused:"
for i in 1 2; do echo "   b$i: $(cat "$work/b$i.decap.json" 2>/dev/null)"; done

bold "6. Every backend frozen (SIGSTOP: their kernels still accept connections, nothing answers)"
echo "   Without Fulcrum a client would connect and hang. Fulcrum's checks time out, the pool"
echo "   empties, and each SYN is answered with a RST at once:"
for b in b1 b2 b3; do scripts/testbed.sh freeze-backend "$name" "$b"; done
sleep 2.5
client --host 10.77.0.100 --port 80 --count 20 --source 10.77.0.101 --timeout 3 --human
for b in b1 b2 b3; do scripts/testbed.sh thaw-backend "$name" "$b"; done
sleep 2
echo "   Thawed: served again"
client --host 10.77.0.100 --port 80 --count 100 --source 10.77.0.101 --human

bold "7. Fulcrum's counters (after SIGTERM)"
kill -TERM "$lb_pid"
wait "$lb_pid" || true
lb_pid=""
cat "$work/fulcrum.out"

bold "Done: tearing the testbed down"
