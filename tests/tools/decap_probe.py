#!/usr/bin/env python3
"""Probes a backend's tunnel endpoint (testkit's `Decap`) with encapsulated SYNs built by
scapy, independently of Fulcrum, in testkit's routed layout.

    decap_probe.py send --iface lb0 --src-mac M --router-mac M --backend 10.80.3.11 \\
        --backend6 fd80:3::11 --client 10.80.1.101 --client6 fd80:1::101 \\
        --vip 10.80.9.100 --vip6 fd80:9::100 --wrong-dst 10.80.9.250 --lb 10.80.2.2 --lb6 fd80:2::2
    decap_probe.py listen --iface eth0

`send` (in the balancer's namespace, on the port's veth, as Fulcrum would send) emits one SYN
per case to VIP:80, each from its own client port, through the router; it prints the cases as
JSON: {"good": {name: sport}, "bad": {name: sport}}. Good cases: IPv4 in IPv4, IPv6 in IPv6,
IPv4 in IPv6, GUE (direct IP, UDP 6080) over IPv4 and IPv6. Bad ones, each a different reason
a kernel would refuse: a bad inner TCP checksum, a bad inner IPv4 header checksum, an outer
destination that is local on the backend but not its address (`--wrong-dst`, which the router
must send to the backend), a GUE header of variant 0, IPv6 inside protocol 4.

`listen` (in the client's namespace) prints `ready` once sniffing, then, when its stdin closes
(or after --max-secs), one JSON line: the SYN-ACKs seen, as [{"src", "sport", "dst", "dport"}].
"""
import argparse
import json
import sys
import threading
import time

from scapy.all import IP, TCP, UDP, AsyncSniffer, Ether, IPv6, Raw, conf, sendp

GUE_PORT = 6080


def cases(a):
    def syn4(sport, **kw):
        return IP(src=a.client, dst=a.vip) / TCP(sport=sport, dport=80, flags="S", seq=1000, **kw)

    def syn6(sport):
        return IPv6(src=a.client6, dst=a.vip6) / TCP(sport=sport, dport=80, flags="S", seq=1000)

    out4 = IP(src=a.lb, dst=a.backend, ttl=64, flags="DF")
    out6 = IPv6(src=a.lb6, dst=a.backend6, hlim=64)
    gue = UDP(sport=40000, dport=GUE_PORT)
    good = {
        "ipip": lambda p: out4 / syn4(p),
        "ip6ip6": lambda p: out6 / syn6(p),
        "ip4ip6": lambda p: out6 / syn4(p),
        "gue4": lambda p: out4 / gue / syn4(p),
        "gue6": lambda p: out6 / gue / syn6(p),
    }

    def bad_ip_checksum(p):
        inner = IP(bytes(syn4(p)))
        inner.chksum ^= 0x5555
        return out4 / inner

    bad = {
        "inner_l4_checksum": lambda p: out4 / syn4(p, chksum=0x1234),
        "inner_ip_checksum": bad_ip_checksum,
        "outer_dst_not_local": lambda p: IP(src=a.lb, dst=a.wrong_dst, flags="DF") / syn4(p),
        # GUE variant 0: a 4-byte header (version 0, hlen 0, proto 4) before the inner packet.
        "gue_not_direct_ip": lambda p: out4 / gue / Raw(b"\x00\x04\x00\x00") / syn4(p),
        "inner_family": lambda p: IP(src=a.lb, dst=a.backend, flags="DF", proto=4) / syn6(p),
    }
    return good, bad


def send(a):
    conf.verb = 0
    good, bad = cases(a)
    ports = {}
    sport = 41000
    for group, table in (("good", good), ("bad", bad)):
        ports[group] = {}
        for name, make in table.items():
            sport += 1
            ports[group][name] = sport
            sendp(Ether(src=a.src_mac, dst=a.router_mac) / make(sport), iface=a.iface)
            time.sleep(0.02)
    json.dump(ports, sys.stdout)
    print()


def listen(a):
    conf.verb = 0
    sniffer = AsyncSniffer(iface=a.iface, filter="tcp", store=True)
    sniffer.start()
    time.sleep(0.3)  # the capture socket is open once the sniffer thread runs
    print("ready", flush=True)
    stdin_closed = threading.Thread(target=sys.stdin.read, daemon=True)
    stdin_closed.start()
    stdin_closed.join(a.max_secs)
    sniffer.stop()
    seen = []
    for p in sniffer.results or []:
        ip = p[IP] if IP in p else p[IPv6] if IPv6 in p else None
        if ip is None or TCP not in p or p[TCP].flags & 0x12 != 0x12:
            continue
        seen.append({"src": ip.src, "sport": p[TCP].sport, "dst": ip.dst, "dport": p[TCP].dport})
    json.dump(seen, sys.stdout)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    for k in ("iface", "src-mac", "router-mac", "backend", "backend6", "client", "client6",
              "vip", "vip6", "wrong-dst", "lb", "lb6"):
        s.add_argument("--" + k, required=True)
    listen_p = sub.add_parser("listen")
    listen_p.add_argument("--iface", required=True)
    listen_p.add_argument("--max-secs", type=float, default=60.0)
    a = ap.parse_args()
    send(a) if a.cmd == "send" else listen(a)


if __name__ == "__main__":
    main()
