#!/usr/bin/env python3
"""A user-space tunnel endpoint for test backends whose kernel has no ipip, ip6tnl or fou
(this project's machines): run inside the backend's namespace, it takes the tunnelled packets
a kernel tunnel device would take and writes each inner packet into a TUN device, so the
backend's own kernel TCP stack terminates the connection (the VIP on lo) and answers the
client directly.

    decap.py --tun dec0 --local 10.80.3.11 --local fd80:3::11 --gue-port 6080 \\
             --stats /tmp/b1.decap.json

Encapsulations taken (what Linux's tunl0, ip6tnl0 and `fou ... gue` take):
  - IP protocol 4 over IPv4 (IPv4 in IPv4): a raw IPv4 socket, outer header included;
  - IP protocol 4 over IPv6 (IPv4 in IPv6) and 41 over IPv6 (IPv6 in IPv6): raw IPv6
    sockets, which return the payload; the outer destination comes from IPV6_PKTINFO;
  - GUE variant 1 (direct IP encapsulation: the inner packet right after the UDP header) on
    --gue-port, over IPv4 and IPv6 (the kernel has checked the UDP checksum).

Refused and counted, never written to the TUN device (what a kernel would not deliver): an
outer destination that is not one of --local (e.g. the VIP, which is local too), an inner
packet of the wrong family for its protocol number, a truncated or inconsistent inner header,
a bad inner IPv4 header checksum, a bad inner TCP/UDP/ICMP checksum, a GUE header that is not
variant 1, and (with --vip) an inner destination that is not a VIP.

Counters go to --stats as JSON, rewritten at most every 100 ms while packets come and at exit
(SIGTERM/SIGINT); `ready` is printed on stdout once every socket is open. The loop stops by
itself after --max-secs (default 1800) so a forgotten instance cannot run for ever.
"""
import argparse
import fcntl
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from array import array

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPPROTO_IPIP = 4
IPPROTO_IPV6 = 41
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58
# What each carrier takes: (name, family, IP protocol); `gue` is UDP on --gue-port.
RAW = [("ipip", socket.AF_INET, IPPROTO_IPIP),
       ("ip4ip6", socket.AF_INET6, IPPROTO_IPIP),
       ("ip6ip6", socket.AF_INET6, IPPROTO_IPV6)]


class Refused(Exception):
    """A packet a kernel tunnel would not deliver; the argument names the counter."""


def fold(total):
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(*parts):
    """The ones'-complement sum of the concatenated parts, 16 bits at a time in native order
    (a valid checksum sums to 0xffff in either byte order)."""
    data = b"".join(parts)
    if len(data) % 2:
        data += b"\0"
    return fold(sum(array("H", data)))


def check_l4(proto, pseudo, segment, v6):
    """The checksum of a TCP, UDP, ICMP or ICMPv6 segment (with its pseudo-header where the
    protocol has one). Other protocols pass: a kernel would hand them on unchecked."""
    if proto == IPPROTO_TCP and len(segment) < 20 or proto == IPPROTO_UDP and len(segment) < 8:
        raise Refused("inner_truncated")
    if proto == IPPROTO_UDP and not v6 and segment[6:8] == b"\0\0":
        return  # IPv4 UDP without a checksum
    if proto in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6):
        if ones_sum(pseudo, segment) != 0xFFFF:
            raise Refused("inner_l4_checksum")
    elif proto == IPPROTO_ICMP and ones_sum(segment) != 0xFFFF:
        raise Refused("inner_l4_checksum")


def check_inner(pkt, vips):
    """Checks an inner packet as the receiving kernel would; returns its family (4 or 6)."""
    if len(pkt) < 20:
        raise Refused("inner_truncated")
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 0x0F) * 4
        total = struct.unpack_from("!H", pkt, 2)[0]
        if ihl < 20 or total < ihl or total != len(pkt):
            raise Refused("inner_length")
        if ones_sum(pkt[:ihl]) != 0xFFFF:
            raise Refused("inner_ip_checksum")
        src, dst, proto = pkt[12:16], pkt[16:20], pkt[9]
        frag = struct.unpack_from("!H", pkt, 6)[0] & 0x3FFF
        if frag == 0:  # a fragment's checksum covers the whole datagram: not checkable here
            seg = pkt[ihl:total]
            check_l4(proto, src + dst + struct.pack("!BBH", 0, proto, len(seg)), seg, False)
    elif version == 6:
        if len(pkt) < 40:
            raise Refused("inner_truncated")
        plen = struct.unpack_from("!H", pkt, 4)[0]
        if 40 + plen != len(pkt):
            raise Refused("inner_length")
        src, dst, proto = pkt[8:24], pkt[24:40], pkt[6]
        seg = pkt[40:]
        check_l4(proto, src + dst + struct.pack("!IxxxB", len(seg), proto), seg, True)
    else:
        raise Refused("inner_version")
    if vips and bytes(dst) not in vips:
        raise Refused("inner_dst_not_vip")
    return version


class Decap:
    def __init__(self, a):
        self.locals = {ipaddress.ip_address(x).packed for x in a.local}
        self.vips = {ipaddress.ip_address(x).packed for x in a.vip}
        self.stats_path = a.stats
        self.received = {name: 0 for name, _, _ in RAW}
        self.received.update(gue4=0, gue6=0)
        self.delivered = 0
        self.refused = {}
        self.dirty = False
        self.tun = self.open_tun(a.tun, a.mtu)
        self.socks = {}
        for name, family, proto in RAW:
            s = socket.socket(family, socket.SOCK_RAW, proto)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            self.add(s, name)
        if a.gue_port:
            g4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            g4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            g4.bind(("0.0.0.0", a.gue_port))
            self.add(g4, "gue4")
            g6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            g6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            g6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            g6.bind(("::", a.gue_port))
            self.add(g6, "gue6")

    def add(self, s, name):
        # Room for bursts while Python catches up (FORCE: past rmem_max, as root).
        s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 23)
        s.setblocking(False)
        self.socks[s.fileno()] = (s, name)

    @staticmethod
    def open_tun(name, mtu):
        """The TUN device `name` (made here, gone with the process), up, taking packets for
        the local VIPs from any source: rp_filter off, accept_local on."""
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        subprocess.run(["ip", "link", "set", "dev", name, "mtu", str(mtu), "up"], check=True)
        subprocess.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
                        f"net.ipv4.conf.{name}.rp_filter=0",
                        f"net.ipv4.conf.{name}.accept_local=1"], check=True)
        return fd

    def refuse(self, reason):
        self.refused[reason] = self.refused.get(reason, 0) + 1

    @staticmethod
    def outer_dst(ancdata):
        """The outer destination address from IP_PKTINFO / IPV6_PKTINFO."""
        for level, kind, data in ancdata:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                return data[:16]
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                return data[8:12]  # in_pktinfo: ifindex, spec_dst, addr (the header's)
        return None

    def inner_of(self, name, data, ancdata):
        """The inner packet of one received datagram, after the outer checks."""
        if name == "ipip":  # the raw IPv4 socket returns the outer header too
            ihl = (data[0] & 0x0F) * 4
            dst = data[16:20]
            inner = data[ihl:]
        else:
            dst = self.outer_dst(ancdata)
            inner = data
        if dst not in self.locals:
            raise Refused("outer_dst_not_local")
        if name.startswith("gue"):
            if not inner or inner[0] >> 6 != 1:  # variant 1: the first nibble is 4 or 6
                raise Refused("gue_not_direct_ip")
        version = check_inner(inner, self.vips)
        want = {"ipip": 4, "ip4ip6": 4, "ip6ip6": 6}.get(name, version)
        if version != want:
            raise Refused("inner_family")
        return inner

    def read(self, fd):
        s, name = self.socks[fd]
        for _ in range(256):  # bounded: let the other sockets have their turn
            try:
                data, ancdata, _, _ = s.recvmsg(65535, 256)
            except BlockingIOError:
                return
            self.received[name] += 1
            self.dirty = True
            try:
                inner = self.inner_of(name, data, ancdata)
            except Refused as r:
                self.refuse(r.args[0])
                continue
            os.write(self.tun, inner)
            self.delivered += 1

    def stats(self):
        return {"received": self.received, "delivered": self.delivered,
                "refused": self.refused}

    def write_stats(self):
        if self.stats_path:
            tmp = self.stats_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.stats(), f)
            os.replace(tmp, self.stats_path)
        self.dirty = False

    def run(self, max_secs):
        stop = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.append(1))
        self.write_stats()
        print("ready", flush=True)
        end = time.monotonic() + max_secs
        last = 0.0
        poll = select.poll()
        for fd in self.socks:
            poll.register(fd, select.POLLIN)
        while not stop and time.monotonic() < end:
            try:
                events = poll.poll(100)
            except InterruptedError:
                continue
            for fd, _ in events:
                self.read(fd)
            now = time.monotonic()
            if self.dirty and now - last >= 0.1:
                self.write_stats()
                last = now
        self.write_stats()
        json.dump(self.stats(), sys.stdout)
        print(flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tun", default="dec0", help="the TUN device to make (default dec0)")
    ap.add_argument("--local", action="append", required=True,
                    help="an outer destination this host takes (its own address); repeat")
    ap.add_argument("--vip", action="append", default=[],
                    help="an inner destination taken (default: any); repeat")
    ap.add_argument("--gue-port", type=int, default=6080, help="0: no GUE socket")
    ap.add_argument("--mtu", type=int, default=9000, help="of the TUN device")
    ap.add_argument("--stats", help="where the counters are written (JSON)")
    ap.add_argument("--max-secs", type=float, default=1800)
    a = ap.parse_args()
    Decap(a).run(a.max_secs)


if __name__ == "__main__":
    main()
