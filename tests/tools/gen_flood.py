#!/usr/bin/env python3
"""Writes a SYN-flood pcap with established flows mixed in, fast (struct, no scapy), and
prints a JSON description of the established flows for the test that checks the output.

The file, in order:
  1. the handshakes of the established flows: DSR flows SYN, ACK; NAT flows SYN (client ->
     VIP), SYN-ACK (backend -> client), ACK (the NAT service has one backend, so the reply
     direction is known beforehand);
  2. SYN_COUNT SYNs from random spoofed sources (100.64.0.0/10, random ports, random ISNs),
     half to the DSR VIP and half to the NAT VIP, with the data packets of the established
     flows spread evenly among them (DSR: client -> VIP; NAT: client -> VIP and backend ->
     client alternately), so every established flow keeps sending while the flood churns
     the flow table.
  3. with --hostile N, N rounds of frames the balancer must refuse or answer, each kind
     once per round: a runt, a SYN to an address that is not a VIP, a fragment to the DSR
     VIP, an IPv4 header with a wrong checksum, a SYN to an unserved VIP port, an ARP
     request for the DSR VIP, an ICMP echo request to it, and an ARP reply from a DSR
     backend to the balancer's own address (for the slow path). Their expected verdicts are
     in the JSON ("hostile_kinds").
Every IPv4, TCP and ICMP checksum is right, except where wrong on purpose. Deterministic
for a given --seed.

    gen_flood.py --out flood.pcap --syns 100000 --established 200 --data 20 \\
        --dsr-vip 10.0.0.100 --nat-vip 10.0.0.101 --nat-backend 10.0.0.21
"""
import argparse
import ipaddress
import json
import random
import struct
import sys

LB_MAC = bytes.fromhex("020000000001")
ROUTER_MAC = bytes.fromhex("0200000000fe")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src_mac, src, dst, sport, dport, flags, seq, ack, payload=b"", ident=0):
    """Ethernet + IPv4 + TCP with right checksums. `src`, `dst`: 4-byte addresses."""
    tcp_len = 20 + len(payload)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, tcp_len)
    c = csum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, ident & 0xFFFF, 0x4000, 64, 6, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return LB_MAC + src_mac + b"\x08\x00" + ip + tcp


class Pcap:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.n = 0

    def write(self, data):
        self.f.write(struct.pack("<IIII", self.n // 1_000_000, self.n % 1_000_000, len(data),
                                 len(data)))
        self.f.write(data)
        self.n += 1

    def close(self):
        self.f.close()


SYN, ACK, PSH = 0x02, 0x10, 0x08


def arp(op, sha, spa, tha, tpa, dst_mac):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)
    return dst_mac + sha + b"\x08\x06" + body


def hostile_frames(a, dsr_vip):
    """(expected verdict, frame) of each hostile kind."""
    client = bytes([10, 1, 200, 1])
    frag = bytearray(frame(ROUTER_MAC, client, dsr_vip, 40000, a.port, SYN, 1, 0))
    frag[14 + 6:14 + 8] = struct.pack("!H", 0x2000)  # more fragments
    frag[14 + 10:14 + 12] = b"\0\0"
    frag[14 + 10:14 + 12] = struct.pack("!H", csum(bytes(frag[14:34])))
    bad_sum = bytearray(frame(ROUTER_MAC, client, dsr_vip, 40001, a.port, SYN, 1, 0))
    bad_sum[14 + 10] ^= 0xFF
    icmp = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"ping" * 4
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0, client, dsr_vip)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    echo = LB_MAC + ROUTER_MAC + b"\x08\x00" + ip + icmp
    backend_mac = bytes.fromhex(a.dsr_backend_mac.replace(":", ""))
    backend = ipaddress.IPv4Address(a.dsr_backend).packed
    own = ipaddress.IPv4Address(a.own).packed
    return [
        ("drop:malformed_l2", LB_MAC + ROUTER_MAC),
        ("drop:not_vip", frame(ROUTER_MAC, client, bytes([10, 0, 0, 77]), 40002, a.port, SYN,
                               1, 0)),
        ("drop:fragment", bytes(frag)),
        ("drop:malformed_ipv4", bytes(bad_sum)),
        ("drop:no_service", frame(ROUTER_MAC, client, dsr_vip, 40003, a.port + 1, SYN, 1, 0)),
        ("reply", arp(1, ROUTER_MAC, client, b"\0" * 6, dsr_vip, b"\xff" * 6)),
        ("reply", echo),
        ("slowpath", arp(2, backend_mac, backend, LB_MAC, own, LB_MAC)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--syns", type=int, default=100_000)
    ap.add_argument("--established", type=int, default=200, help="flows, half DSR, half NAT")
    ap.add_argument("--data", type=int, default=20, help="data packets per flow during the flood")
    ap.add_argument("--dsr-vip", default="10.0.0.100")
    ap.add_argument("--nat-vip", default="10.0.0.101")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--nat-backend", default="10.0.0.21")
    ap.add_argument("--nat-backend-port", type=int, default=8080)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hostile", type=int, default=0, help="rounds of hostile frames")
    ap.add_argument("--flood-flags", choices=["syn", "ack"], default="syn",
                    help="what the flood sends: SYNs, or ACKs (mid-stream pickups)")
    ap.add_argument("--own", default="10.0.0.2", help="the balancer's own address")
    ap.add_argument("--dsr-backend", default="10.0.0.11")
    ap.add_argument("--dsr-backend-mac", default="02:00:00:00:00:11")
    a = ap.parse_args()

    rnd = random.Random(a.seed)
    dsr_vip = ipaddress.IPv4Address(a.dsr_vip).packed
    nat_vip = ipaddress.IPv4Address(a.nat_vip).packed
    backend = ipaddress.IPv4Address(a.nat_backend).packed
    flows = []
    seen = set()
    while len(flows) < a.established:
        client = bytes([10, 1, rnd.randrange(256), rnd.randrange(1, 255)])
        sport = rnd.randrange(1024, 65535)
        if (client, sport) in seen:
            continue
        seen.add((client, sport))
        nat = len(flows) % 2 == 1
        flows.append({"client": client, "sport": sport, "nat": nat, "isn": rnd.randrange(2**32),
                      "fwd": 0, "rev": 0})

    w = Pcap(a.out)
    payload = b"d" * 32
    # 1. Handshakes.
    for f in flows:
        vip = nat_vip if f["nat"] else dsr_vip
        w.write(frame(ROUTER_MAC, f["client"], vip, f["sport"], a.port, SYN, f["isn"], 0))
        f["fwd"] += 1
    for f in flows:
        if f["nat"]:
            w.write(frame(ROUTER_MAC, backend, f["client"], a.nat_backend_port, f["sport"],
                          SYN | ACK, 5000, f["isn"] + 1))
            f["rev"] += 1
    for f in flows:
        vip = nat_vip if f["nat"] else dsr_vip
        w.write(frame(ROUTER_MAC, f["client"], vip, f["sport"], a.port, ACK, f["isn"] + 1, 5001))
        f["fwd"] += 1

    # 2. The flood, with the established flows' data spread through it.
    data_total = a.data * len(flows)
    every = max(1, a.syns // max(1, data_total))
    sent_data = 0
    flood_flags = SYN if a.flood_flags == "syn" else ACK
    flood_sources = set()
    for i in range(a.syns):
        src = bytes([100, 64 + rnd.randrange(64), rnd.randrange(256), rnd.randrange(256)])
        sport = rnd.randrange(1024, 65536)
        flood_sources.add((src, sport))
        vip = dsr_vip if i % 2 == 0 else nat_vip
        w.write(frame(ROUTER_MAC, src, vip, sport, a.port, flood_flags, rnd.randrange(2**32), 0,
                      ident=i))
        if i % every == every - 1 and sent_data < data_total:
            f = flows[sent_data % len(flows)]
            k = sent_data // len(flows)
            vip = nat_vip if f["nat"] else dsr_vip
            seq = f["isn"] + 1 + k * len(payload)
            if f["nat"] and k % 2 == 1:
                # The backend answers.
                w.write(frame(ROUTER_MAC, backend, f["client"], a.nat_backend_port, f["sport"],
                              ACK | PSH, 5001 + k, seq, payload))
                f["rev"] += 1
            else:
                w.write(frame(ROUTER_MAC, f["client"], vip, f["sport"], a.port, ACK | PSH, seq,
                              5001, payload))
                f["fwd"] += 1
            sent_data += 1
    kinds = hostile_frames(a, dsr_vip)
    for _ in range(a.hostile):
        for _, f in kinds:
            w.write(f)
    w.close()
    out = {
        "frames": w.n,
        "syns": a.syns,
        "distinct_flood_sources": len(flood_sources),
        "hostile_rounds": a.hostile,
        "hostile_kinds": [k for k, _ in kinds],
        "established": [
            {"client": str(ipaddress.IPv4Address(f["client"])), "sport": f["sport"],
             "nat": f["nat"], "to_vip": f["fwd"], "from_backends": f["rev"]}
            for f in flows
        ],
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
