#!/usr/bin/env python3
"""Checks every frame of a pcap with scapy, independently of Fulcrum: IPv4 header, TCP, UDP
and ICMP checksums must equal what scapy computes from scratch. Prints a JSON summary and
exits 1 if any frame is wrong.

    check_checksums.py out.pcap
"""
import json
import sys

from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6, rdpcap, raw


def recomputed(pkt, layer):
    c = pkt.copy()
    del c[layer].chksum
    if layer is not IP and IP in c:
        pass
    return Ether(raw(c))[layer].chksum


def main():
    frames = rdpcap(sys.argv[1])
    bad = []
    checked = 0
    for i, f in enumerate(frames):
        p = Ether(raw(f))
        for layer in (IP, TCP, UDP, ICMP):
            if layer in p:
                got = p[layer].chksum
                if layer is UDP and got == 0 and IP in p:
                    continue  # IPv4 UDP without checksum
                want = recomputed(p, layer)
                checked += 1
                if got != want:
                    bad.append({"frame": i, "layer": layer.__name__, "got": got, "want": want})
    print(json.dumps({"frames": len(frames), "checked": checked, "bad": bad[:20], "bad_count": len(bad)}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
