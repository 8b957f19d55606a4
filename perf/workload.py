#!/usr/bin/env python3
"""Benchmark workloads for Fulcrum: a pcap of client traffic to VIPs, and the config that
serves it.

    perf/workload.py pcap   --out FILE [--flows N] [--packets N] [--syn-share F] ...
    perf/workload.py config --out FILE --rx-device DEV --tx-device DEV [--forwarding dsr|nat|ipip|gue|fullnat]
                            [--backends N] [--empty] ...

Both subcommands agree on one address plan, so any pcap made here is served by any config
made here with the same --vips:

    port 0 "outside"  mac 02:00:00:00:00:01  192.0.2.2/24   clients' frames arrive here
                       (from the router mac 02:00:00:00:01:fe)
    port 1 "inside"   mac 02:00:00:00:00:02  10.1.0.1/16    backends 10.1.X.Y live here, so
                       DSR and NAT output leaves through this port
    VIPs              198.51.100.1 ..       TCP port 80 and UDP port 53 on each
    clients           198.18.0.0/15 (RFC 2544's benchmarking range), ports 32768..65535

Flow i of a pcap has a distinct 5-tuple for every i < 2^32 (an odd multiplier permutes the
32 bits into 17 bits of client address and 15 bits of port), spread over the VIPs. Packets
are laid out round by round: round r holds packet r of every flow, the flows in a shuffled
order. A flow's packets are SYN (with probability --syn-share, and always for the first
packet of every flow when --syn-first), otherwise ACK with payload; TCP unless drawn UDP
(--udp-share). Frame sizes (--size, on the wire with FCS as RFC 2544 counts them; the pcap
holds the frame without the 4 FCS bytes): a number, or "imix" (7:4:1 of 64, 594, 1518).

Pure Python with `struct` and no per-packet checksum loop (header checksums are sums of a few
words, payload sums are precomputed per size): ~1M packets in a few seconds. Deterministic
for a given --seed.
"""

import argparse
import json
import random
import struct
import sys

OUTSIDE_MAC = bytes.fromhex("020000000001")
INSIDE_MAC = bytes.fromhex("020000000002")
ROUTER_MAC = bytes.fromhex("0200000001fe")
OUTSIDE_ADDR = "192.0.2.2/24"
INSIDE_ADDR = "10.1.0.1/16"
TCP_PORT = 80
UDP_PORT = 53
CLIENT_BASE = (198 << 24) | (18 << 16)  # 198.18.0.0/15
MAX_VIPS = 250

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
IMIX = [64] * 7 + [594] * 4 + [1518]


def vip_addr(i):
    """VIP number i (0-based) as an integer: 198.51.100.1 + i."""
    return (198 << 24) | (51 << 16) | (100 << 8) | (1 + i)


def backend_addr(i):
    """Backend number i (0-based): 10.1.0.11 + i, skipping .0 and .255 of each /24."""
    n = 11 + i
    return (10 << 24) | (1 << 16) | ((n // 254) << 8) | (1 + n % 254)


def backend_mac(i):
    return bytes([0x02, 0x00, 0x00, 0x01, (i >> 8) & 0xFF, i & 0xFF])


def dotted(a):
    return ".".join(str((a >> s) & 0xFF) for s in (24, 16, 8, 0))


def mac_str(m):
    return ":".join(f"{b:02x}" for b in m)


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def payload_sum(n):
    """16-bit one's complement sum (unfolded) of the payload pattern bytes(i % 251)."""
    data = bytes(i % 251 for i in range(n))
    if n % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def flow_tuple(i, vips, udp_share, rng_seed):
    """(client addr, client port, vip index, is_udp) of flow i: distinct for i < 2^32."""
    x = (i * 0x9E3779B1 + rng_seed) & 0xFFFFFFFF
    client = CLIENT_BASE + (x & 0x1FFFF)
    sport = 32768 + (x >> 17)
    vip = i % vips
    # A cheap deterministic draw per flow, independent of the address bits.
    h = ((i + 1) * 0x85EBCA6B) & 0xFFFFFFFF
    udp = (h / 2**32) < udp_share
    return client, sport, vip, udp


def make_pcap(a):
    sizes = IMIX if a.size == "imix" else [int(a.size)]
    for s in sizes:
        if not 64 <= s <= 1518:
            sys.exit(f"workload: frame size {s} outside 64..1518")
    if not 1 <= a.vips <= MAX_VIPS:
        sys.exit(f"workload: --vips must be 1..{MAX_VIPS}")
    flows = a.flows
    packets = a.packets if a.packets is not None else flows
    rng = random.Random(a.seed)
    psums = {}
    order = list(range(flows))

    hdr = struct.Struct("!6s6sH" "BBHHHBBHII" "HHIIBBHHH")  # eth, ipv4, tcp: 54 bytes
    uhdr = struct.Struct("!6s6sH" "BBHHHBBHII" "HHHH")  # eth, ipv4, udp: 42 bytes
    rec = struct.Struct("<IIII")
    out = open(a.out, "wb")
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    written = syns = udps = 0
    nbytes = 0
    rnd = 0
    ts = 1_700_000_000
    chunk = []
    while written < packets:
        rng.shuffle(order)
        for f in order:
            if written >= packets:
                break
            client, sport, vi, udp = flow_tuple(f, a.vips, a.udp_share, a.seed)
            vip = vip_addr(vi)
            wire = sizes[rng.randrange(len(sizes))] if len(sizes) > 1 else sizes[0]
            flen = wire - 4  # the pcap holds the frame without its FCS
            ident = written & 0xFFFF
            if udp:
                plen = max(0, flen - 42)
                ip_len = 28 + plen
                ps = psums.get(plen)
                if ps is None:
                    ps = psums[plen] = payload_sum(plen)
                ipsum = 0x4500 + ip_len + ident + 0x4000 + (64 << 8 | 17)
                ipsum += (client >> 16) + (client & 0xFFFF) + (vip >> 16) + (vip & 0xFFFF)
                ipc = ~fold(ipsum) & 0xFFFF
                ulen = 8 + plen
                us = (client >> 16) + (client & 0xFFFF) + (vip >> 16) + (vip & 0xFFFF)
                us += 17 + ulen + sport + UDP_PORT + ulen + ps
                uc = ~fold(us) & 0xFFFF or 0xFFFF
                h = uhdr.pack(OUTSIDE_MAC, ROUTER_MAC, 0x0800,
                              0x45, 0, ip_len, ident, 0x4000, 64, 17, ipc, client, vip,
                              sport, UDP_PORT, ulen, uc)
                frame = h + PAYLOAD[:plen]
                udps += 1
            else:
                syn = (a.syn_first and rnd == 0) or (a.syn_share > 0 and rng.random() < a.syn_share)
                flags = SYN if syn else (ACK | PSH)
                plen = 0 if syn else max(0, flen - 54)
                ip_len = 40 + plen
                ps = psums.get(plen)
                if ps is None:
                    ps = psums[plen] = payload_sum(plen)
                ipsum = 0x4500 + ip_len + ident + 0x4000 + (64 << 8 | 6)
                ipsum += (client >> 16) + (client & 0xFFFF) + (vip >> 16) + (vip & 0xFFFF)
                ipc = ~fold(ipsum) & 0xFFFF
                seq = (f * 2654435761 + rnd * 1448) & 0xFFFFFFFF
                ack = 0 if syn else (f * 40503 + 1) & 0xFFFFFFFF
                ts_sum = (client >> 16) + (client & 0xFFFF) + (vip >> 16) + (vip & 0xFFFF)
                ts_sum += 6 + 20 + plen + sport + TCP_PORT
                ts_sum += (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
                ts_sum += (5 << 12 | flags) + 64240 + ps
                tc = ~fold(ts_sum) & 0xFFFF
                h = hdr.pack(OUTSIDE_MAC, ROUTER_MAC, 0x0800,
                             0x45, 0, ip_len, ident, 0x4000, 64, 6, ipc, client, vip,
                             sport, TCP_PORT, seq, ack, 5 << 4, flags, 64240, tc, 0)
                frame = h + PAYLOAD[:plen]
                syns += syn
            if len(frame) < flen:
                frame += bytes(flen - len(frame))  # Ethernet padding (after the IP packet)
            chunk.append(rec.pack(ts + written // 1_000_000, written % 1_000_000, len(frame), len(frame)))
            chunk.append(frame)
            nbytes += wire
            written += 1
            if len(chunk) >= 65536:
                out.write(b"".join(chunk))
                chunk.clear()
        rnd += 1
    out.write(b"".join(chunk))
    out.close()
    summary = {
        "pcap": a.out,
        "packets": written,
        "flows": min(flows, written),
        "syn": syns,
        "udp": udps,
        "vips": a.vips,
        "mean_wire_bytes": round(nbytes / max(written, 1), 1),
    }
    print(json.dumps(summary))


PAYLOAD = bytes(i % 251 for i in range(1500))


def make_config(a):
    vips = a.vips
    lines = [
        "# Made by perf/workload.py config: the benchmark's address plan (see its --help).",
        "[dpdk]",
        "eal_args = [" + ", ".join(json.dumps(x) for x in a.eal.split()) + "]",
        f"workers = [{a.worker_cpu}]",
        f"slowpath_cpu = {a.slowpath_cpu}",
        f"mbufs = {a.mbufs}",
        f"burst = {a.burst}",
        "",
        "[global]",
        "hash_seed = 7",
        f"maglev_table_size = {a.maglev_size}",
        f"flow_table_capacity = {a.flow_capacity}",
        f"control_socket = {json.dumps(a.control_socket)}",
        "",
    ]
    if a.port_quiet_ms is not None:
        lines += ["[global.fullnat]", f"port_quiet_ms = {a.port_quiet_ms}", ""]
    lines += [
        "[[port]]",
        'name = "outside"',
        f"device = {json.dumps(a.rx_device)}",
        f'mac = "{mac_str(OUTSIDE_MAC)}"',
        f'addresses = ["{OUTSIDE_ADDR}"]',
        "",
        "[[port]]",
        'name = "inside"',
        f"device = {json.dumps(a.tx_device)}",
        f'mac = "{mac_str(INSIDE_MAC)}"',
        f'addresses = ["{INSIDE_ADDR}"]',
        "",
    ]
    n = 0
    for v in range(vips):
        for proto, port in (("tcp", TCP_PORT), ("udp", UDP_PORT)):
            lines += [
                "[[service]]",
                f'name = "vip{v}-{proto}"',
                f'vip = "{dotted(vip_addr(v))}"',
                f'protocol = "{proto}"',
                f"port = {port}",
                f'forwarding = "{a.forwarding}"',
                'on_empty = "reset"',
                "",
            ]
            if a.empty:
                continue
            for b in range(a.backends):
                lines += [
                    "[[service.backend]]",
                    f'name = "be{b}"',
                    f'address = "{dotted(backend_addr(b))}"',
                    f'mac = "{mac_str(backend_mac(b))}"',
                    "",
                ]
                n += 1
    with open(a.out, "w") as f:
        f.write("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("pcap", help="write a pcap of client traffic to the VIPs")
    g.add_argument("--out", required=True)
    g.add_argument("--flows", type=int, default=1024, help="distinct 5-tuples (default 1024)")
    g.add_argument("--packets", type=int, help="total packets (default: one per flow)")
    g.add_argument("--syn-share", type=float, default=0.0, help="probability a TCP packet is a SYN")
    g.add_argument("--syn-first", action="store_true", help="every flow's first packet is a SYN")
    g.add_argument("--udp-share", type=float, default=0.0, help="share of flows that are UDP")
    g.add_argument("--size", default="64", help="wire frame size with FCS, 64..1518, or imix")
    g.add_argument("--vips", type=int, default=1)
    g.add_argument("--seed", type=int, default=1)
    c = sub.add_parser("config", help="write the Fulcrum config serving those pcaps")
    c.add_argument("--out", required=True)
    c.add_argument("--rx-device", required=True, help="port 0 (traffic source)")
    c.add_argument("--tx-device", required=True, help="port 1 (where backends are)")
    c.add_argument("--eal", default="--no-huge -m 1024 --no-pci --file-prefix fulcrum-perf")
    c.add_argument("--worker-cpu", type=int, default=1)
    c.add_argument("--slowpath-cpu", type=int, default=0)
    c.add_argument("--mbufs", type=int, default=16383)
    c.add_argument("--burst", type=int, default=32)
    c.add_argument("--flow-capacity", type=int, default=1 << 20)
    c.add_argument("--maglev-size", type=int, default=65537)
    c.add_argument("--forwarding", choices=["dsr", "nat", "ipip", "gue", "fullnat"], default="dsr")
    c.add_argument("--backends", type=int, default=10)
    c.add_argument("--empty", action="store_true", help="no backends: SYNs get a RST")
    c.add_argument("--port-quiet-ms", type=int,
                   help="FullNAT: how long a freed local port rests (default: Fulcrum's)")
    c.add_argument("--vips", type=int, default=1)
    c.add_argument("--control-socket", default="/tmp/fulcrum-perf.sock",
                   help="unique per concurrent instance (default /tmp/fulcrum-perf.sock)")
    a = p.parse_args()
    if a.cmd == "pcap":
        make_pcap(a)
    else:
        make_config(a)


if __name__ == "__main__":
    main()
