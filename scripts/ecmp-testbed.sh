#!/usr/bin/env bash
# A routed tier in network namespaces for scale-out: a router running BIRD with ECMP, three
# Fulcrum instances peering with it over their DPDK ports (through the kernel exception path),
# DSR backends on a segment every instance reaches, kernel TCP clients behind the router.
# It builds the network, starts the backends' servers and writes every BIRD config and the
# instances' Fulcrum configs; who starts Fulcrum and BIRD is the caller's (testkit's `Ecmp`,
# scripts/demo-scaleout.sh).
#
#   scripts/ecmp-testbed.sh up NAME DIR [BACKENDS] [sync]  # default 3 backends; configs into
#                                                          # DIR; "sync": instance sync on
#   scripts/ecmp-testbed.sh down NAME                      # every namespace and process of NAME
#   scripts/ecmp-testbed.sh cut NAME lbN                   # lbN's link to the backend segment down
#   scripts/ecmp-testbed.sh mend NAME lbN                  # ... and up again
#
# NAME: at most 6 characters (interface names are short).
#
#   NAME-c1: eth0 10.68.0.50, .101-.104/24 --- eth2 10.68.0.1   NAME-rt: ip_forward=1,
#            default via 10.68.0.1                              fib_multipath_hash_policy=1 (L4),
#                                                               a fixed fib_multipath_hash_seed,
#                                                               BIRD AS 65001, merge paths on
#                                         eth0 10.66.0.1/24 -- NAME-sw br0 (uplink segment)
#                                                                 |       |       |
#   NAME-lb1..lb3: up0 (DPDK port "up", Fulcrum owns 10.66.0.2/.3/.4, its kernel interface fx0
#                  carries them: BIRD AS 65002/65003/65004 with BFD peers with the router),
#                  dn0 (DPDK port "down", Fulcrum owns 10.67.0.2/.3/.4)
#                                         eth1 10.67.0.1/24 -- NAME-sw br1 (backend segment)
#                                                                 |       |       |
#   NAME-b1..bN: eth0 10.67.0.1N/24, default via 10.67.0.1 (DSR replies go straight to the
#                router), VIP 10.66.0.100 on lo (arp_ignore), tests/tools/backend.py on :80
#
# Files written into DIR: bird-rt.conf, bird-lbI.conf (packaging/bird.conf with this
# instance's addresses, AS and the file Fulcrum writes, DIR/lbI-vips.conf), fulcrum-lbI.toml
# (tests/configs/ecmp.toml: control socket DIR/lbI.sock, disable file DIR/lbI.disable, BIRD
# socket DIR/bird-lbI.ctl, EAL prefix fulcrum-NAME-lbI), bI.agent. The instances' pool is
# b1..b3 whatever BACKENDS says (more backends run, for a test to add them by reload). With
# "sync", each config has a [global.sync] naming the other instances and the shared key
# DIR/sync.key (32 random bytes); without, no sync table.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
instances=3
# Reproducible placement of flows over the next hops.
hash_seed=7919

die() { echo "ecmp-testbed: $*" >&2; exit 1; }

in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

node() {
    # node NAME NODE: its namespace with loopback up.
    ip netns add "$1-$2"
    in_ns "$1-$2" ip link set lo up
}

link() {
    # link NAME NODE IFNAME BRIDGE: a veth from NODE's namespace to BRIDGE in NAME-sw.
    local name=$1 node=$2 ifname=$3 bridge=$4
    local a="v${name}${node}${ifname}" b="w${name}${node}${ifname}"
    ip link add "$a" type veth peer name "$b"
    ip link set "$a" netns "$name-$node"
    ip link set "$b" netns "$name-sw"
    in_ns "$name-$node" ip link set "$a" name "$ifname"
    in_ns "$name-$node" ip link set "$ifname" up
    # Kernel TCP through a DPDK af_packet port needs real checksums on the wire.
    in_ns "$name-$node" ethtool -K "$ifname" tx off >/dev/null
    in_ns "$name-sw" ip link set "$b" master "$bridge"
    in_ns "$name-sw" ip link set "$b" up
}

instance_addr() { echo "10.66.0.$(( $1 + 1 ))"; }

bird_configs() {
    local dir=$1 i
    {
        echo "# The router: ECMP over the Fulcrum instances (written by scripts/ecmp-testbed.sh)."
        echo "router id 10.66.0.1;"
        echo "protocol device {}"
        echo 'protocol bfd { interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }'
        echo "protocol kernel { ipv4 { export all; }; merge paths on; }"
        for i in $(seq 1 $instances); do
            echo "protocol bgp lb$i {"
            echo "    local 10.66.0.1 as 65001;"
            echo "    neighbor $(instance_addr "$i") as $(( 65001 + i ));"
            echo "    hold time 9; bfd on; connect retry time 1; error wait time 1, 2;"
            echo "    ipv4 { import all; export none; };"
            echo "}"
        done
    } > "$dir/bird-rt.conf"
    for i in $(seq 1 $instances); do
        # The shipped config with this instance's addresses, AS and the file Fulcrum writes.
        sed -e "s/192\.0\.2\.2/$(instance_addr "$i")/g" \
            -e "s/192\.0\.2\.1/10.66.0.1/g" \
            -e "s/as 65002;/as $(( 65001 + i ));/" \
            -e "s|/run/fulcrum/bird-vips.conf|$dir/lb$i-vips.conf|" \
            -e "s/error wait time 1, 10;/error wait time 1, 2;/" \
            "$here/packaging/bird.conf" > "$dir/bird-lb$i.conf"
    done
}

sync_table() {
    # sync_table DIR I: instance I's [global.sync]: every other instance a peer, one key.
    local dir=$1 i=$2 j peers=""
    for j in $(seq 1 $instances); do
        [ "$j" = "$i" ] || peers+="${peers:+, }\"$(instance_addr "$j")\""
    done
    printf '[global.sync]\npeers = [%s]\nkey_file = "%s"\n' "$peers" "$dir/sync.key"
}

fulcrum_configs() {
    local name=$1 dir=$2 sync=$3 i
    if [ "$sync" = sync ]; then
        head -c 32 /dev/urandom > "$dir/sync.key"
        chmod 600 "$dir/sync.key"
    fi
    for i in $(seq 1 $instances); do
        local prefix="fulcrum-$name-lb$i"
        local eal="eal_args = [\"--no-huge\", \"-m\", \"512\", \"--no-pci\", \"--file-prefix\", \"$prefix\", \"--log-level\", \"*:warning\"]"
        local table="$dir/sync-lb$i.toml"
        if [ "$sync" = sync ]; then sync_table "$dir" "$i" > "$table"; else : > "$table"; fi
        # {{sync}} stands alone on its line: replaced by the table (or nothing).
        sed -e "/^{{sync}}\$/{r $table" -e "d}" \
            -e "s|{{eal_args}}|$eal|" -e "s|{{dir}}|$dir|g" -e "s|{{node}}|lb$i|g" \
            -e "s|{{up}}|$(instance_addr "$i")|" -e "s|{{down}}|10.67.0.$(( i + 1 ))|" \
            "$here/tests/configs/ecmp.toml" > "$dir/fulcrum-lb$i.toml"
        ! grep -q '{{' "$dir/fulcrum-lb$i.toml" || die "tests/configs/ecmp.toml: a placeholder left"
    done
}

start_backend() {
    local name=$1 dir=$2 b=$3
    echo up > "$dir/$b.agent"
    in_ns "$name-$b" setsid python3 "$here/tests/tools/backend.py" --name "$b" --port 80 \
        --agent-port 5555 --agent-file "$dir/$b.agent" </dev/null >"$dir/$b.log" 2>&1 &
    for _ in $(seq 1 100); do
        in_ns "$name-$b" bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' 2>/dev/null && return
        sleep 0.1
    done
    die "backend $b did not start"
}

up() {
    local name=$1 dir=$2 backends=${3:-3} sync=${4:-} i
    [ -z "$sync" ] || [ "$sync" = sync ] || die "up: the 4th argument is \"sync\" or nothing"
    [ ${#name} -le 6 ] || die "NAME at most 6 characters"
    mkdir -p "$dir"
    node "$name" sw
    for br in br0 br1; do
        in_ns "$name-sw" ip link add "$br" type bridge
        in_ns "$name-sw" ip link set "$br" up
    done

    node "$name" rt
    link "$name" rt eth0 br0
    link "$name" rt eth1 br1
    in_ns "$name-rt" ip addr add 10.66.0.1/24 dev eth0
    in_ns "$name-rt" ip addr add 10.67.0.1/24 dev eth1
    in_ns "$name-rt" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
        "net.ipv4.fib_multipath_hash_seed=$hash_seed"

    node "$name" c1
    ip link add "v${name}c1" type veth peer name "w${name}c1"
    ip link set "v${name}c1" netns "$name-c1"
    ip link set "w${name}c1" netns "$name-rt"
    in_ns "$name-c1" ip link set "v${name}c1" name eth0
    in_ns "$name-rt" ip link set "w${name}c1" name eth2
    for n in c1:eth0 rt:eth2; do
        in_ns "$name-${n%%:*}" ip link set "${n#*:}" up
        in_ns "$name-${n%%:*}" ethtool -K "${n#*:}" tx off >/dev/null
    done
    in_ns "$name-rt" ip addr add 10.68.0.1/24 dev eth2
    for a in 10.68.0.50 10.68.0.101 10.68.0.102 10.68.0.103 10.68.0.104; do
        in_ns "$name-c1" ip addr add "$a/24" dev eth0
    done
    in_ns "$name-c1" ip route add default via 10.68.0.1

    for i in $(seq 1 $instances); do
        node "$name" "lb$i"
        link "$name" "lb$i" up0 br0
        link "$name" "lb$i" dn0 br1
        # The DPDK ports keep no kernel address; IPv6 off so the kernel sends nothing on them.
        in_ns "$name-lb$i" sysctl -qw net.ipv6.conf.up0.disable_ipv6=1 net.ipv6.conf.dn0.disable_ipv6=1
        # A veth that DPDK reads (af_packet) still hands every frame to the kernel as well, and
        # the kernel takes those for its own addresses (on fx0) on any interface: ping and BGP
        # would be answered twice. Strict reverse-path filtering drops them (the way back to
        # every peer is fx0, not the veth), as if DPDK owned the NIC; no ARP answers there.
        in_ns "$name-lb$i" sysctl -qw net.ipv4.conf.all.rp_filter=1 \
            net.ipv4.conf.up0.rp_filter=1 net.ipv4.conf.dn0.rp_filter=1 \
            net.ipv4.conf.up0.arp_ignore=8 net.ipv4.conf.dn0.arp_ignore=8
    done

    for i in $(seq 1 "$backends"); do
        local b="b$i"
        node "$name" "$b"
        link "$name" "$b" eth0 br1
        in_ns "$name-$b" ip addr add "10.67.0.$(( 10 + i ))/24" dev eth0
        in_ns "$name-$b" ip route add default via 10.67.0.1
        in_ns "$name-$b" ip addr add 10.66.0.100/32 dev lo
        in_ns "$name-$b" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
        start_backend "$name" "$dir" "$b"
    done

    bird_configs "$dir"
    fulcrum_configs "$name" "$dir" "$sync"
}

down() {
    local name=$1 n
    for n in $(ip netns list | awk '{print $1}' | grep "^$name-" || true); do
        for p in $(ip netns pids "$n" 2>/dev/null); do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
}

cut() {
    local name=$1 lb=$2 state=$3
    in_ns "$name-sw" ip link set "w${name}${lb}dn0" "$state"
}

case "${1:-}" in
    up) [ $# -ge 3 ] || die "up NAME DIR [BACKENDS] [sync]"; down "$2"; up "$2" "$3" "${4:-3}" "${5:-}" ;;
    down) [ $# -eq 2 ] || die "down NAME"; down "$2" ;;
    cut) [ $# -eq 3 ] || die "cut NAME lbN"; cut "$2" "$3" down ;;
    mend) [ $# -eq 3 ] || die "mend NAME lbN"; cut "$2" "$3" up ;;
    *) die "usage: up NAME DIR [BACKENDS] [sync] | down NAME | cut NAME lbN | mend NAME lbN" ;;
esac
