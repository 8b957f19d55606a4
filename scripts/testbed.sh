#!/usr/bin/env bash
# A test network of real hosts in network namespaces, around one Fulcrum.
#
#   scripts/testbed.sh up NAME [BACKENDS]   # default 3 backends
#   scripts/testbed.sh down NAME            # removes every namespace, veth and process of NAME
#   scripts/testbed.sh exec NAME NODE CMD.. # run CMD in node NODE (lb, c1, b1, b2, ...)
#   scripts/testbed.sh stop-backend NAME bN | start-backend NAME bN | freeze-backend NAME bN | thaw-backend NAME bN
#
# NAME: at most 6 characters (interface names are short); every run picks its own.
#
#                       +------------- NAME-sw (bridge br0) -------------+
#                       |               |                |               |
#   NAME-c1 (client)  eth0          NAME-lb: lb0     NAME-b1..bN: eth0   ...
#   10.77.0.101-104/24              no kernel address:     10.77.0.11..  (DSR VIP 10.77.0.100 on lo)
#   10.78.0.101-104/24              Fulcrum (DPDK          HTTP :80 :8080, agent :5555
#   route 10.79.0.0/24              net_af_packet) owns    route 10.78.0.0/24 via 10.77.0.2
#         via 10.78.0.1             10.77.0.2, 10.78.0.1
#   fd77::101-104/64, fd78::101-104/64   (IPv6: fd77::2,   fd77::1N/64 (DSR VIP fd77::100 on lo)
#   route fd79::/64 via fd78::1           fd78::1)         route fd78::/64 via fd77::2
#
# DSR: clients reach VIP 10.77.0.100 on-link; backends hold it on lo (arp_ignore=1,
# arp_announce=2) and answer clients directly. NAT: clients reach VIPs in 10.79.0.0/24 from
# 10.78.0.0/24 through Fulcrum (10.78.0.1); backends route 10.78.0.0/24 back through Fulcrum
# (10.77.0.2), so replies pass the balancer and are translated back. IPv6 mirrors IPv4 (the
# addresses above; backends serve both families): a config uses it by giving the balancer's
# port fd77::2/64 and fd78::1/64 (testkit's `Net::testbed_config_v6`).
# MAC addresses are fixed: lb0 02:fc:00:00:00:02, bN 02:fc:00:00:00:1N, c1 02:fc:00:00:01:01.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state_root=/tmp/fulcrum-testbed

die() { echo "testbed: $*" >&2; exit 1; }

ns() { echo "$1-$2"; }

in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

link() {
    # link NAME NODE IFNAME MAC: a veth from NODE's namespace to the bridge.
    local name=$1 node=$2 ifname=$3 mac=$4
    local a="v${name}${node}" b="w${name}${node}"
    ip link add "$a" type veth peer name "$b"
    ip link set "$a" netns "$(ns "$name" "$node")"
    ip link set "$b" netns "$(ns "$name" sw)"
    in_ns "$(ns "$name" "$node")" ip link set "$a" name "$ifname"
    in_ns "$(ns "$name" "$node")" ip link set "$ifname" address "$mac"
    in_ns "$(ns "$name" "$node")" ip link set "$ifname" up
    # Kernel TCP through a DPDK af_packet port needs real checksums on the wire.
    in_ns "$(ns "$name" "$node")" ethtool -K "$ifname" tx off >/dev/null 2>&1 || true
    in_ns "$(ns "$name" sw)" ip link set "$b" master br0
    in_ns "$(ns "$name" sw)" ip link set "$b" up
}

start_backend() {
    local name=$1 b=$2 dir=$state_root/$1
    local agent=$dir/$b.agent
    [ -f "$agent" ] || echo up > "$agent"
    in_ns "$(ns "$name" "$b")" setsid python3 "$here/tests/tools/backend.py" --name "$b" \
        --port 80 --port 8080 --agent-port 5555 --agent-file "$agent" \
        >"$dir/$b.log" 2>&1 < /dev/null &
    echo $! > "$dir/$b.pid"
    # Bounded wait until it listens.
    for _ in $(seq 1 50); do
        in_ns "$(ns "$name" "$b")" bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' 2>/dev/null && return 0
        sleep 0.1
    done
    die "backend $b did not start (see $dir/$b.log)"
}

stop_backend() {
    local name=$1 b=$2 dir=$state_root/$1
    if [ -f "$dir/$b.pid" ]; then
        kill -CONT "$(cat "$dir/$b.pid")" 2>/dev/null || true
        kill "$(cat "$dir/$b.pid")" 2>/dev/null || true
        rm -f "$dir/$b.pid"
    fi
    # Anything else left listening in that namespace goes too.
    for pid in $(ip netns pids "$(ns "$name" "$b")" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
}

up() {
    local name=$1 backends=${2:-3}
    [ ${#name} -le 6 ] || die "NAME must be at most 6 characters"
    [ "$(id -u)" -eq 0 ] || die "run as root"
    ip netns list | grep -q "^$name-" && die "$name already up (run: $0 down $name)"
    local dir=$state_root/$name
    mkdir -p "$dir"
    echo "$backends" > "$dir/backends"

    local nodes=(sw lb c1)
    for i in $(seq 1 "$backends"); do nodes+=("b$i"); done
    for n in "${nodes[@]}"; do
        ip netns add "$(ns "$name" "$n")"
        in_ns "$(ns "$name" "$n")" ip link set lo up
    done
    in_ns "$(ns "$name" sw)" ip link add br0 type bridge
    in_ns "$(ns "$name" sw)" ip link set br0 up

    # The balancer's port: no kernel address, DPDK owns it.
    link "$name" lb lb0 02:fc:00:00:00:02
    in_ns "$(ns "$name" lb)" sysctl -qw net.ipv6.conf.lb0.disable_ipv6=1

    # One client host with several addresses in both client subnets.
    link "$name" c1 eth0 02:fc:00:00:01:01
    for h in 101 102 103 104; do
        in_ns "$(ns "$name" c1)" ip addr add "10.77.0.$h/24" dev eth0
        in_ns "$(ns "$name" c1)" ip addr add "10.78.0.$h/24" dev eth0
    done
    in_ns "$(ns "$name" c1)" ip route add 10.79.0.0/24 via 10.78.0.1 src 10.78.0.101
    # IPv6: the same plan in fd77::/64 (DSR) and fd78::/64 (NAT, VIPs in fd79::/64).
    for h in 101 102 103 104; do
        in_ns "$(ns "$name" c1)" ip -6 addr add "fd77::$h/64" dev eth0 nodad
        in_ns "$(ns "$name" c1)" ip -6 addr add "fd78::$h/64" dev eth0 nodad
    done
    in_ns "$(ns "$name" c1)" ip -6 route add fd79::/64 via fd78::1 src fd78::101
    in_ns "$(ns "$name" c1)" sysctl -qw net.ipv4.ip_local_port_range="20000 60999"
    # Connections are short-lived and many: do not run out of ports in TIME_WAIT.
    in_ns "$(ns "$name" c1)" sysctl -qw net.ipv4.tcp_tw_reuse=1

    for i in $(seq 1 "$backends"); do
        local b="b$i" n
        n=$(ns "$name" "$b")
        link "$name" "$b" eth0 "02:fc:00:00:00:1$i"
        in_ns "$n" ip addr add "10.77.0.1$i/24" dev eth0
        in_ns "$n" ip addr add 10.77.0.100/32 dev lo
        in_ns "$n" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
        in_ns "$n" ip route add 10.78.0.0/24 via 10.77.0.2
        # IPv6: no arp_ignore needed, Linux answers neighbour solicitations only for the
        # addresses of the interface they arrive on (the VIP is on lo).
        in_ns "$n" ip -6 addr add "fd77::1$i/64" dev eth0 nodad
        in_ns "$n" ip -6 addr add fd77::100/128 dev lo
        in_ns "$n" ip -6 route add fd78::/64 via fd77::2
        start_backend "$name" "$b"
    done
    echo "testbed $name up: lb=$(ns "$name" lb) client=$(ns "$name" c1) backends=$backends"
}

down() {
    local name=$1
    for n in $(ip netns list | awk '{print $1}' | grep "^$name-" || true); do
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    done
    sleep 0.2
    for n in $(ip netns list | awk '{print $1}' | grep "^$name-" || true); do
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
    # veths die with their namespaces; a half-made pair may linger in the root namespace.
    for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^[vw]${name}" || true); do
        ip link del "$l" 2>/dev/null || true
    done
    rm -rf "${state_root:?}/$name"
}

cmd=${1:-}
case "$cmd" in
    up) [ $# -ge 2 ] || die "usage: $0 up NAME [BACKENDS]"; up "$2" "${3:-3}" ;;
    down) [ $# -ge 2 ] || die "usage: $0 down NAME"; down "$2" ;;
    exec) [ $# -ge 4 ] || die "usage: $0 exec NAME NODE CMD..."; name=$2 node=$3; shift 3; in_ns "$(ns "$name" "$node")" "$@" ;;
    stop-backend) stop_backend "$2" "$3" ;;
    start-backend) start_backend "$2" "$3" ;;
    # Every process of the backend's namespace: the pid file names the launching shell.
    freeze-backend) for pid in $(ip netns pids "$(ns "$2" "$3")"); do kill -STOP "$pid"; done ;;
    thaw-backend) for pid in $(ip netns pids "$(ns "$2" "$3")"); do kill -CONT "$pid"; done ;;
    *) die "usage: $0 up|down|exec|stop-backend|start-backend|freeze-backend|thaw-backend NAME ..." ;;
esac
