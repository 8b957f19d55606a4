#!/usr/bin/env python3
"""Writes a pcap of many client flows to one VIP, made with scapy, for replay tests.

Each flow is a client address and port; TCP flows send SYN, then ACK, then data packets;
UDP flows send datagrams. Packets are written round by round (all first packets, then all
second packets, ...) so a flow's packets are spread over the file and over the workers.

    gen_flows.py --out in.pcap --flows 8000 --vip 10.0.0.100 --dport 80 --dst-mac 02:00:00:00:00:01
"""
import argparse
import ipaddress
import random

from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw
from scapy.utils import PcapWriter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--packets-per-flow", type=int, default=3)
    ap.add_argument("--vip", default="10.0.0.100")
    ap.add_argument("--dport", type=int, default=80)
    ap.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    ap.add_argument("--clients", default="10.1.0.0/16", help="client source network")
    ap.add_argument("--src-mac", default="02:00:00:00:00:fe")
    ap.add_argument("--dst-mac", default="02:00:00:00:00:01")
    ap.add_argument("--payload", type=int, default=64, help="payload bytes of data packets")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    rnd = random.Random(a.seed)
    net = ipaddress.ip_network(a.clients)
    v6 = ipaddress.ip_address(a.vip).version == 6
    seen = set()
    flows = []
    while len(flows) < a.flows:
        src = str(net[rnd.randrange(1, net.num_addresses - 1)])
        sport = rnd.randrange(1024, 65535)
        if (src, sport) in seen:
            continue
        seen.add((src, sport))
        flows.append((src, sport, rnd.randrange(0, 2**32)))

    w = PcapWriter(a.out, linktype=1, sync=False)
    payload = Raw(b"x" * a.payload)
    n = 0
    for round_ in range(a.packets_per_flow):
        for src, sport, isn in flows:
            l3 = IPv6(src=src, dst=a.vip) if v6 else IP(src=src, dst=a.vip)
            if a.proto == "udp":
                l4 = UDP(sport=sport, dport=a.dport) / payload
            elif round_ == 0:
                l4 = TCP(sport=sport, dport=a.dport, flags="S", seq=isn)
            elif round_ == 1:
                l4 = TCP(sport=sport, dport=a.dport, flags="A", seq=isn + 1, ack=1)
            else:
                l4 = TCP(sport=sport, dport=a.dport, flags="PA", seq=isn + 1, ack=1) / payload
            pkt = Ether(src=a.src_mac, dst=a.dst_mac) / l3 / l4
            # A fixed timestamp, 1 ms apart. Scapy's default (the time of creation, a float)
            # rounds to 1,000,000 microseconds about once in a million packets, which pcap
            # readers refuse (pcap-file: "ts_nanosecond >= 1_000_000_000").
            pkt.time = 1_700_000_000 + n // 1000 + (n % 1000) / 1000
            n += 1
            w.write(pkt)
    w.close()


if __name__ == "__main__":
    main()
