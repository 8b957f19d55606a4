#!/usr/bin/env python3
"""Makes the golden packet cases of dataplane/tests/golden.rs.

Each case: what it shows, the input frame, the verdict the pipeline must give, and the exact
frame it must emit. Expected frames are built by scapy from scratch (checksums computed by
scapy, never copied from Fulcrum), so a pass means Fulcrum's incremental checksum updates and
reply construction agree with an independent implementation.

Cases run in order on ONE pipeline (worker 0 of 1), so later cases may rely on the flows
earlier ones created (NAT replies). Addresses match golden.toml.

    python3 make_golden.py > cases.json
"""
import json
import socket
import struct
import sys

from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, ICMPv6DestUnreach, \
    ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, \
    ICMPv6NDOptSrcLLAddr, ICMPv6PacketTooBig, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, \
    IPv6ExtHdrHopByHop, Padding, Raw, raw

PORT_MAC = "02:00:00:00:00:01"
CLIENT_MAC = "02:00:00:00:00:aa"
ROUTER_MAC = "02:00:00:00:00:fe"
CLIENT = "10.0.0.50"
CLIENT6 = "fd00::50"
OWN = "10.0.0.2"

cases = []


def case(what, inp, verdict, out=None):
    cases.append({
        "what": what,
        "input": raw(inp).hex(),
        "verdict": verdict,
        "output": raw(out).hex() if out is not None else None,
    })


def rebuilt(pkt):
    """Scapy recomputes every length and checksum we deleted."""
    return Ether(raw(pkt))


def eth(src=CLIENT_MAC, dst=PORT_MAC):
    return Ether(src=src, dst=dst)


# ---- DSR: only the MACs change; the VIP stays in the packet.
syn = eth() / IP(src=CLIENT, dst="10.0.0.100", id=1) / TCP(sport=40000, dport=80, flags="S", seq=1000)
exp = syn.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:11", PORT_MAC
case("dsr: SYN to VIP goes to the backend's MAC, VIP kept", syn, "forward:0", exp)

ack = eth() / IP(src=CLIENT, dst="10.0.0.100", id=2) / TCP(sport=40000, dport=80, flags="A", seq=1001, ack=5) / Raw(b"GET / HTTP/1.1\r\n\r\n")
exp = ack.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:11", PORT_MAC
case("dsr: data of the same flow, same backend", ack, "forward:0", exp)

vl = Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1Q(vlan=100) / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=40001, dport=80, flags="S")
exp = vl.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:11", PORT_MAC
case("dsr: 802.1Q tagged, tag kept", vl, "forward:0", exp)

opt = eth() / IP(src=CLIENT, dst="10.0.0.100", options=b"\x01\x01\x01\x00") / TCP(sport=40002, dport=80, flags="S")
exp = opt.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:11", PORT_MAC
case("dsr: IPv4 with options", opt, "forward:0", exp)

# ---- NAT: VIP:80 -> 10.0.0.21:8080, and back.
syn = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.101", id=7, ttl=60) / TCP(sport=41000, dport=80, flags="S", seq=77, options=[("MSS", 1460)])
exp = syn.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("nat: SYN to VIP:80 rewritten to backend:8080, checksums valid", syn, "forward:0", rebuilt(exp))

rep = Ether(src="02:00:00:00:00:21", dst=PORT_MAC) / IP(src="10.0.0.21", dst=CLIENT, id=9) / TCP(sport=8080, dport=41000, flags="SA", seq=500, ack=78)
exp = rep.copy()
exp[Ether].dst, exp[Ether].src = ROUTER_MAC, PORT_MAC
exp[IP].src = "10.0.0.101"
exp[TCP].sport = 80
del exp[IP].chksum
del exp[TCP].chksum
case("nat: backend's SYN-ACK leaves from VIP:80 toward the MAC the SYN came from", rep, "forward:0", rebuilt(exp))

data = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.101") / TCP(sport=41000, dport=80, flags="PA", seq=78, ack=501) / Raw(b"x" * 333)
exp = data.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("nat: data with odd-length payload", data, "forward:0", rebuilt(exp))

stray = Ether(src="02:00:00:00:00:21", dst=PORT_MAC) / IP(src="10.0.0.21", dst=CLIENT) / TCP(sport=8080, dport=41999, flags="A")
case("nat: reply matching no flow is dropped", stray, "drop:nat_no_flow")

q = eth() / IP(src=CLIENT, dst="10.0.0.101") / UDP(sport=42000, dport=53) / Raw(b"\x12\x34query")
exp = q.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:22", PORT_MAC
exp[IP].dst = "10.0.0.22"
exp[UDP].dport = 5353
del exp[IP].chksum
del exp[UDP].chksum
case("nat: UDP to VIP:53 rewritten to backend:5353", q, "forward:0", rebuilt(exp))

a = Ether(src="02:00:00:00:00:22", dst=PORT_MAC) / IP(src="10.0.0.22", dst=CLIENT) / UDP(sport=5353, dport=42000) / Raw(b"\x12\x34answer")
exp = a.copy()
exp[Ether].dst, exp[Ether].src = CLIENT_MAC, PORT_MAC
exp[IP].src = "10.0.0.101"
exp[UDP].sport = 53
del exp[IP].chksum
del exp[UDP].chksum
case("nat: UDP answer un-NATed", a, "forward:0", rebuilt(exp))

q0 = eth() / IP(src=CLIENT, dst="10.0.0.101") / UDP(sport=42001, dport=53, chksum=0) / Raw(b"nochecksum")
exp = q0.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:22", PORT_MAC
exp[IP].dst = "10.0.0.22"
exp[UDP].dport = 5353
del exp[IP].chksum
exp = rebuilt(exp)
case("nat: UDP without checksum stays without one", q0, "forward:0", exp)

# ---- Empty pool: fail fast.
syn = eth() / IP(src=CLIENT, dst="10.0.0.102") / TCP(sport=43000, dport=80, flags="S", seq=123456, options=[("MSS", 1460), ("SAckOK", b"")])
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src="10.0.0.102", dst=CLIENT, ttl=64, id=0, flags="DF") / TCP(sport=80, dport=43000, flags="RA", seq=0, ack=123457, window=0)
case("empty pool: SYN answered with RST|ACK from the VIP, ack = seq + 1", syn, "reply", rebuilt(exp))

syn = eth() / IP(src=CLIENT, dst="10.0.0.102") / TCP(sport=43001, dport=80, flags="S", seq=0xfffffff0) / Raw(b"fastopen-data")
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src="10.0.0.102", dst=CLIENT, ttl=64, id=0, flags="DF") / TCP(sport=80, dport=43001, flags="RA", seq=0, ack=(0xfffffff0 + 1 + 13) & 0xffffffff, window=0)
case("empty pool: SYN with payload, ack counts the payload and wraps", syn, "reply", rebuilt(exp))

ack = eth() / IP(src=CLIENT, dst="10.0.0.102") / TCP(sport=43002, dport=80, flags="A")
case("empty pool: non-SYN is dropped", ack, "drop:no_backend")

rst = eth() / IP(src=CLIENT, dst="10.0.0.102") / TCP(sport=43003, dport=80, flags="R")
case("empty pool: a RST is never answered", rst, "drop:no_backend")

u = eth() / IP(src=CLIENT, dst="10.0.0.102", id=5) / UDP(sport=44000, dport=53) / Raw(b"0123456789abcdef")
quoted = raw(u[IP])[:28]
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src="10.0.0.102", dst=CLIENT, ttl=64, id=0, flags="DF") / ICMP(type=3, code=3) / Raw(quoted)
case("empty pool: UDP answered with ICMP port unreachable quoting header + 8 bytes", u, "reply", rebuilt(exp))

syn = eth() / IP(src=CLIENT, dst="10.0.0.103") / TCP(sport=43004, dport=80, flags="S")
case("empty pool, on_empty=drop: SYN dropped", syn, "drop:no_backend")

syn6 = eth() / IPv6(src=CLIENT6, dst="fd00::102") / TCP(sport=43005, dport=80, flags="S", seq=99)
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IPv6(src="fd00::102", dst=CLIENT6, hlim=64) / TCP(sport=80, dport=43005, flags="RA", seq=0, ack=100, window=0)
case("empty pool, IPv6: SYN answered with RST|ACK", syn6, "reply", rebuilt(exp))

# ---- ARP and ICMP for VIPs and own addresses.
req = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, pdst="10.0.0.100")
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / ARP(op=2, hwsrc=PORT_MAC, psrc="10.0.0.100", hwdst=CLIENT_MAC, pdst=CLIENT)
case("arp: who-has VIP answered with the port's MAC", req, "reply", exp)

req = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, pdst=OWN)
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / ARP(op=2, hwsrc=PORT_MAC, psrc=OWN, hwdst=CLIENT_MAC, pdst=CLIENT)
case("arp: who-has own address answered", req, "reply", exp)

req = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, pdst="10.0.0.99")
case("arp: who-has somebody else ignored", req, "drop:arp_not_ours")

# A gratuitous request (sender = target: a neighbour announcing a new MAC) feeds the cache.
req = Ether(src="02:00:00:00:00:12", dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc="02:00:00:00:00:12", psrc="10.0.0.11", pdst="10.0.0.11")
case("arp: a gratuitous request goes to the slow path's neighbour cache", req, "slowpath")

rep = Ether(src="02:00:00:00:00:11", dst=PORT_MAC) / ARP(op=2, hwsrc="02:00:00:00:00:11", psrc="10.0.0.11", hwdst=PORT_MAC, pdst=OWN)
case("arp: replies go to the slow path's neighbour cache", rep, "slowpath")

case("arp: truncated", Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff", type=0x0806) / Raw(raw(ARP(op=1, psrc=CLIENT, pdst="10.0.0.100"))[:20]), "drop:malformed_arp")
case("arp: not Ethernet/IPv4", Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, ptype=0x86dd, plen=4, psrc=CLIENT, pdst="10.0.0.100"), "drop:malformed_arp")

ping = eth() / IP(src=CLIENT, dst="10.0.0.100", ttl=55, id=42) / ICMP(type=8, id=7, seq=3) / Raw(b"ping-payload")
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src="10.0.0.100", dst=CLIENT, ttl=64, id=42) / ICMP(type=0, id=7, seq=3) / Raw(b"ping-payload")
case("icmp: echo to a VIP answered", ping, "reply", rebuilt(exp))

ping = eth() / IP(src=CLIENT, dst=OWN, id=43) / ICMP(type=8, id=8, seq=1)
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src=OWN, dst=CLIENT, ttl=64, id=43) / ICMP(type=0, id=8, seq=1)
case("icmp: echo to own address answered", ping, "reply", rebuilt(exp))

ts = eth() / IP(src=CLIENT, dst="10.0.0.100") / ICMP(type=13, id=1, seq=1, ts_ori=1, ts_rx=2, ts_tx=3)
case("icmp: other ICMP to a VIP (a timestamp request) is counted, not answered", ts, "drop:icmp_unhandled")
unr = eth() / IP(src=CLIENT, dst="10.0.0.100") / ICMP(type=3, code=1) / Raw(b"\x45" + b"\x00" * 27)
case("icmp: an error to a VIP whose quoted IPv4 length cannot hold ports", unr, "drop:icmp_error_malformed")

ping6 = eth() / IPv6(src=CLIENT6, dst="fd00::100", hlim=50) / ICMPv6EchoRequest(id=1, seq=2, data=b"v6ping")
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IPv6(src="fd00::100", dst=CLIENT6, hlim=64) / ICMPv6EchoReply(id=1, seq=2, data=b"v6ping")
case("icmpv6: echo to a VIP answered", ping6, "reply", rebuilt(exp))

ns = Ether(src=CLIENT_MAC, dst="33:33:ff:00:01:00") / IPv6(src=CLIENT6, dst="ff02::1:ff00:100", hlim=255) / ICMPv6ND_NS(tgt="fd00::100") / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT_MAC)
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IPv6(src="fd00::100", dst=CLIENT6, hlim=255) / ICMPv6ND_NA(tgt="fd00::100", R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=PORT_MAC)
case("nd: solicitation for a v6 VIP answered with an advertisement", ns, "reply", rebuilt(exp))

na = Ether(src="02:00:00:00:00:12", dst="33:33:00:00:00:01") / IPv6(src="fd00::12", dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt="fd00::12", R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:12")
case("nd: an unsolicited advertisement to all-nodes goes to the slow path's neighbour cache", na, "slowpath")

# ---- IPv6 forwarding.
syn6 = eth() / IPv6(src=CLIENT6, dst="fd00::100") / TCP(sport=45000, dport=80, flags="S")
exp = syn6.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:61", PORT_MAC
case("dsr v6: SYN to v6 VIP", syn6, "forward:0", exp)

hbh = eth() / IPv6(src=CLIENT6, dst="fd00::100") / IPv6ExtHdrHopByHop() / TCP(sport=45001, dport=80, flags="S")
exp = hbh.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:61", PORT_MAC
case("dsr v6: hop-by-hop extension header skipped", hbh, "forward:0", exp)

syn6 = eth(src=ROUTER_MAC) / IPv6(src=CLIENT6, dst="fd00::101") / TCP(sport=45002, dport=443, flags="S", seq=5)
exp = syn6.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:62", PORT_MAC
exp[IPv6].dst = "fd00::21"
exp[TCP].dport = 8443
del exp[TCP].chksum
case("nat v6: SYN rewritten to [fd00::21]:8443", syn6, "forward:0", rebuilt(exp))

rep6 = Ether(src="02:00:00:00:00:62", dst=PORT_MAC) / IPv6(src="fd00::21", dst=CLIENT6) / TCP(sport=8443, dport=45002, flags="SA", ack=6)
exp = rep6.copy()
exp[Ether].dst, exp[Ether].src = ROUTER_MAC, PORT_MAC
exp[IPv6].src = "fd00::101"
exp[TCP].sport = 443
del exp[TCP].chksum
case("nat v6: reply un-NATed", rep6, "forward:0", rebuilt(exp))

good6 = raw(eth() / IPv6(src=CLIENT6, dst="fd00::100") / TCP(sport=45004, dport=80, flags="S"))
case("IPv6 header truncated", Raw(good6[:14 + 30]), "drop:malformed_ipv6")
bad6 = bytearray(good6)
bad6[18:20] = (400).to_bytes(2, "big")
case("IPv6 payload length beyond the frame", Raw(bytes(bad6)), "drop:malformed_ipv6")

frag6 = eth() / IPv6(src=CLIENT6, dst="fd00::100") / IPv6ExtHdrFragment(offset=0, m=1, id=9) / TCP(sport=45003, dport=80, flags="S")
case("v6 fragment to a VIP: counted as fragment", frag6, "drop:fragment")

# ---- Refusals.
case("not a VIP: dropped, never forwarded", eth() / IP(src=CLIENT, dst="10.0.0.77") / TCP(dport=80, flags="S"), "drop:not_vip")
case("VIP, unserved port", eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(dport=81, flags="S"), "drop:no_service")
case("VIP, unserved protocol", eth() / IP(src=CLIENT, dst="10.0.0.100", proto=47) / Raw(b"\x00" * 8), "drop:unsupported_protocol")
case("unicast to another MAC", Ether(src=CLIENT_MAC, dst="02:00:00:00:00:99") / IP(src=CLIENT, dst="10.0.0.100") / TCP(dport=80), "drop:l2_not_for_us")
case("unknown ethertype", Ether(src=CLIENT_MAC, dst=PORT_MAC, type=0x88cc) / Raw(b"\x00" * 40), "drop:unsupported_ethertype")
case("runt frame", Raw(bytes.fromhex("020000000001" + "0200000000aa")), "drop:malformed_l2")
case("VLAN tag cut off", Raw(bytes.fromhex("020000000001" "0200000000aa" "8100" "00")), "drop:malformed_l2")
case("three VLAN tags", Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(dst="10.0.0.100") / TCP(dport=80), "drop:too_many_vlans")
good = raw(eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=46000, dport=80, flags="S"))
case("IPv4 truncated inside the header", Raw(good[:14 + 12]), "drop:malformed_ipv4")
bad_ihl = bytearray(good)
bad_ihl[14] = 0x44
case("IPv4 IHL < 5", Raw(bytes(bad_ihl)), "drop:malformed_ipv4")
bad_len = bytearray(good)
bad_len[16:18] = (2000).to_bytes(2, "big")
case("IPv4 total length beyond the frame", Raw(bytes(bad_len)), "drop:malformed_ipv4")
bad_sum = bytearray(good)
bad_sum[24] ^= 0xff
case("IPv4 header checksum wrong", Raw(bytes(bad_sum)), "drop:malformed_ipv4")
case("TCP header truncated", Raw(good[:14 + 20 + 10]), "drop:malformed_ipv4")
short_tcp = eth() / IP(src=CLIENT, dst="10.0.0.100") / Raw(b"\x00\x50\x00\x50")
short_tcp[IP].proto = 6
case("TCP header shorter than 20 bytes (IP length consistent)", rebuilt(short_tcp), "drop:malformed_l4")
frag = eth() / IP(src=CLIENT, dst="10.0.0.100", flags="MF") / TCP(sport=46001, dport=80, flags="S")
case("first fragment: counted as fragment", frag, "drop:fragment")
frag = eth() / IP(src=CLIENT, dst="10.0.0.100", frag=100) / Raw(b"\x00" * 16)
case("non-first fragment: counted as fragment", frag, "drop:fragment")
case("health-check reply to own address goes to the slow path", Ether(src="02:00:00:00:00:11", dst=PORT_MAC) / IP(src="10.0.0.11", dst=OWN) / TCP(sport=80, dport=50000, flags="SA"), "slowpath")

# ==== Hostile traffic. What Fulcrum does, decided here and checked case by case:
#
# - Truncation at any header (Ethernet, VLAN, IPv4, IPv6 and its extension headers, TCP, UDP,
#   ICMP) is dropped under the reason of the layer that is short; nothing is forwarded.
# - Ethernet padding (IP length shorter than the frame): the IP length rules. DSR forwards the
#   frame as it is, padding included; NAT rewrites in place and its checksums cover only the
#   IP length (the padding is kept, outside the packet); a RST's ack and an ICMP error's quote
#   never count the padding. An IP length longer than the frame is malformed.
# - IP options: forwarded untouched (DSR and NAT); replies the balancer builds carry none,
#   except an echo reply, which is the request turned around (options included).
# - Fragments (first or later, v4 or v6) to a VIP, an own address or from a NAT backend:
#   dropped and counted as `fragment` (a fragment carries no complete 5-tuple; no reassembly).
#   Fragments to anything else: `not_vip`.
# - TTL / hop limit 0 or 1: no check and no decrement. Fulcrum forwards at L2 (DSR) or as a
#   bump in the wire (NAT): the packet keeps its TTL, as with Katran / GLB; replies the
#   balancer builds use 64.
# - VLAN: one or two tags of 0x8100 / 0x88a8 in any order are parsed and kept on forwarded
#   frames and replies; a third tag is `too_many_vlans`.
# - Jumbo frames (9000 bytes) are forwarded like any other frame (DSR and NAT) by the
#   pipeline when the egress port's mtu holds them (golden.toml's p0: mtu 9000). On DPDK today a frame longer than one mbuf (2 KiB of data room) arrives as a
#   chain whose first segment is all the pipeline sees: its IP length is then beyond the data
#   and it is dropped as malformed_ipv4 / malformed_ipv6 (seen with `fulcrum replay`); a
#   jumbo MTU needs a bigger mbuf data room.
# - TCP flags: every one of the 256 combinations to a served VIP is forwarded (the backend's
#   stack judges them; the flags only drive the flow's state, and a RST makes no flow). To an
#   empty pool with on_empty = "reset", a RST|ACK answers exactly the segments with SYN set and
#   ACK and RST clear (FIN, PSH, URG, ECE, CWR may be set: an ECN-setup SYN is a SYN), with
#   ack = SEG.SEQ + SEG.LEN (SYN and FIN each count one, RFC 9293 3.10.7.1); every other
#   combination is dropped as no_backend.
# - ICMP errors to a VIP (v4: unreachable incl. fragmentation needed, time exceeded,
#   parameter problem; v6: those and packet too big) quote a packet the VIP sent to a client.
#   They go to the backend of the quoted flow (client = quoted destination, VIP:port = quoted
#   source): its flow-table entry's backend, else Maglev's choice; no flow entry is made or
#   refreshed. DSR: only the MACs change. NAT: outer destination and the quoted source
#   address:port become the backend's, with the outer IPv4, quoted IPv4, quoted TCP/UDP (when
#   quoted) and ICMP checksums updated. A quote without an IP header and 8 bytes of TCP/UDP is
#   icmp_error_malformed; a quoted source other than the VIP the error was sent to,
#   icmp_error_not_vip; no service for the quoted port, icmp_error_no_service; an empty pool
#   and no flow, icmp_error_no_backend; the flow's backend down, icmp_error_backend_down
#   (pipeline/icmp_error_tests.rs: this table's snapshot never changes); the service's access
#   list applies to the client, as for the flow's packets. ICMP errors to an own address go to
#   the slow path.
# - An L2 broadcast frame with a unicast IP destination that is a VIP is forwarded: the L3
#   destination decides, as on a host.

PAD = b"\xde\xad\xbe\xef\x00\x01"  # junk that must never be read as payload


def dsr_out(pkt, mac="02:00:00:00:00:11"):
    exp = pkt.copy()
    exp[Ether].dst, exp[Ether].src = mac, PORT_MAC
    return exp


def rst_for(src, dst, sport, dport, ack, v6=False, l2=None):
    ip = IPv6(src=src, dst=dst, hlim=64) if v6 else IP(src=src, dst=dst, ttl=64, id=0, flags="DF")
    head = l2 if l2 is not None else Ether(src=PORT_MAC, dst=CLIENT_MAC)
    return rebuilt(head / ip / TCP(sport=sport, dport=dport, flags="RA", seq=0, ack=ack & 0xffffffff, window=0))


def cut(pkt, n):
    return Raw(raw(pkt)[:n])


def fix_ip_sum(frame, l3=14):
    """The frame with its IPv4 header checksum recomputed (for hand-made headers)."""
    hl = (frame[l3] & 15) * 4
    b = bytearray(frame)
    b[l3 + 10:l3 + 12] = b"\x00\x00"
    s = 0
    for i in range(l3, l3 + hl, 2):
        s += (b[i] << 8) | b[i + 1]
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    b[l3 + 10:l3 + 12] = (~s & 0xffff).to_bytes(2, "big")
    return bytes(b)


# ---- Truncated at every header.
case("hostile: empty frame", Raw(b""), "drop:malformed_l2")
case("hostile: 13 bytes, one short of an Ethernet header", Raw(bytes.fromhex("020000000001" "0200000000aa" "08")), "drop:malformed_l2")
qinq_cut = Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src=CLIENT, dst="10.0.0.100") / TCP(dport=80)
case("hostile: QinQ, inner VLAN tag cut off", cut(qinq_cut, 14 + 4 + 2), "drop:malformed_l2")
v4 = eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47000, dport=80, flags="S")
case("hostile: IPv4 header one byte short", cut(v4, 14 + 19), "drop:malformed_ipv4")
opts = eth() / IP(src=CLIENT, dst="10.0.0.100", options=b"\x01" * 40) / TCP(sport=47001, dport=80, flags="S")
case("hostile: IPv4 options cut off (IHL 15, frame ends in the options)", cut(opts, 14 + 40), "drop:malformed_ipv4")
b = bytearray(raw(v4))
b[14] = 0x40
case("hostile: IPv4 IHL 0", Raw(fix_ip_sum(bytes(b))), "drop:malformed_ipv4")
b = bytearray(raw(v4))
b[14] = 0x65
case("hostile: version 6 in an IPv4 ethertype", Raw(fix_ip_sum(bytes(b))), "drop:malformed_ipv4")
b = bytearray(raw(v4))
b[16:18] = (10).to_bytes(2, "big")
case("hostile: IPv4 total length 10, below the header length", Raw(fix_ip_sum(bytes(b))), "drop:malformed_ipv4")
bare = eth() / IP(src=CLIENT, dst="10.0.0.100", proto=6)
case("hostile: IPv4 to a VIP with TCP as protocol and no TCP header at all", rebuilt(bare), "drop:malformed_l4")
short = eth() / IP(src=CLIENT, dst="10.0.0.100", proto=6) / Raw(raw(TCP(sport=47002, dport=80, flags="S"))[:19])
case("hostile: TCP header one byte short (IP length consistent)", rebuilt(short), "drop:malformed_l4")
doff = eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47003, dport=80, flags="S", dataofs=15)
case("hostile: TCP data offset 15 past the segment", rebuilt(doff), "drop:malformed_l4")
doff = eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47004, dport=80, flags="S", dataofs=4)
case("hostile: TCP data offset 4", rebuilt(doff), "drop:malformed_l4")
u7 = eth() / IP(src=CLIENT, dst="10.0.0.101", proto=17) / Raw(raw(UDP(sport=47005, dport=53))[:7])
case("hostile: UDP header one byte short", rebuilt(u7), "drop:malformed_l4")
ulong = eth() / IP(src=CLIENT, dst="10.0.0.101") / UDP(sport=47006, dport=53, len=200) / Raw(b"q" * 10)
case("hostile: UDP length beyond the IP payload", rebuilt(ulong), "drop:malformed_l4")
ushort = eth() / IP(src=CLIENT, dst="10.0.0.101") / UDP(sport=47007, dport=53, len=7) / Raw(b"q" * 10)
case("hostile: UDP length 7, below its own header", rebuilt(ushort), "drop:malformed_l4")
icmp4 = eth() / IP(src=CLIENT, dst="10.0.0.100", proto=1) / Raw(b"\x08\x00\xf7\xff")
case("hostile: ICMP header cut to 4 bytes", rebuilt(icmp4), "drop:malformed_l4")
v6 = eth() / IPv6(src=CLIENT6, dst="fd00::100") / TCP(sport=47008, dport=80, flags="S")
case("hostile: IPv6 header one byte short", cut(v6, 14 + 39), "drop:malformed_ipv6")
b = bytearray(raw(v6))
b[14] = 0x40
case("hostile: version 4 in an IPv6 ethertype", Raw(bytes(b)), "drop:malformed_ipv6")
b = bytearray(raw(eth() / IPv6(src=CLIENT6, dst="fd00::100") / IPv6ExtHdrHopByHop() / TCP(sport=47009, dport=80, flags="S")))
b[14 + 40 + 1] = 4  # hop-by-hop claims 40 bytes; the payload has 28
case("hostile: IPv6 extension header longer than the payload", Raw(bytes(b)), "drop:malformed_ipv6")
chain = IPv6(src=CLIENT6, dst="fd00::100")
for _ in range(9):
    chain = chain / IPv6ExtHdrDestOpt()
case("hostile: IPv6 chain of nine extension headers", eth() / chain / TCP(sport=47010, dport=80, flags="S"), "drop:malformed_ipv6")
late_hbh = eth() / IPv6(src=CLIENT6, dst="fd00::100") / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / TCP(sport=47011, dport=80, flags="S")
case("hostile: IPv6 hop-by-hop header not first", late_hbh, "drop:malformed_ipv6")
t6 = eth() / IPv6(src=CLIENT6, dst="fd00::100", nh=6) / Raw(raw(TCP(sport=47012, dport=80, flags="S"))[:10])
case("hostile: IPv6 TCP header cut to 10 bytes", rebuilt(t6), "drop:malformed_l4")
i6 = eth() / IPv6(src=CLIENT6, dst="fd00::100", nh=58) / Raw(b"\x80\x00\x00\x00")
case("hostile: ICMPv6 header cut to 4 bytes", rebuilt(i6), "drop:malformed_l4")

# ---- Ethernet padding: the IP length rules.
syn = eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47100, dport=80, flags="S", seq=5) / Padding(PAD)
case("padding: DSR forwards the frame as it is, padding included", syn, "forward:0", dsr_out(syn))
syn = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.101", id=3) / TCP(sport=47101, dport=80, flags="S", seq=9) / Padding(PAD)
exp = syn.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("padding: NAT rewrites, checksums over the IP length only, padding kept", syn, "forward:0", rebuilt(exp))
q = eth() / IP(src=CLIENT, dst="10.0.0.101") / UDP(sport=47102, dport=53) / Raw(b"pad?") / Padding(PAD * 3)
exp = q.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:22", PORT_MAC
exp[IP].dst = "10.0.0.22"
exp[UDP].dport = 5353
del exp[IP].chksum
del exp[UDP].chksum
case("padding: NAT UDP, checksum over the UDP length only", q, "forward:0", rebuilt(exp))
syn = eth() / IP(src=CLIENT, dst="10.0.0.102") / TCP(sport=47103, dport=80, flags="S", seq=1000) / Padding(PAD)
case("padding: empty pool RST acks seq + 1, not the padding", syn, "reply", rst_for("10.0.0.102", CLIENT, 80, 47103, 1001))
u = eth() / IP(src=CLIENT, dst="10.0.0.102", id=6) / UDP(sport=47104, dport=53) / Raw(b"0123456789") / Padding(PAD)
quoted = raw(u[IP])[:28]
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src="10.0.0.102", dst=CLIENT, ttl=64, id=0, flags="DF") / ICMP(type=3, code=3) / Raw(quoted)
case("padding: ICMP unreachable quotes header + 8 bytes, no padding", u, "reply", rebuilt(exp))
ping = eth() / IP(src=CLIENT, dst="10.0.0.100", id=44) / ICMP(type=8, id=9, seq=1) / Raw(b"pp") / Padding(PAD)
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src="10.0.0.100", dst=CLIENT, ttl=64, id=44) / ICMP(type=0, id=9, seq=1) / Raw(b"pp") / Padding(PAD)
case("padding: echo reply checksums the message only; the requester's padding stays", ping, "reply", rebuilt(exp))
syn6 = eth(src=ROUTER_MAC) / IPv6(src=CLIENT6, dst="fd00::101") / TCP(sport=47105, dport=443, flags="S", seq=5) / Padding(PAD)
exp = syn6.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:62", PORT_MAC
exp[IPv6].dst = "fd00::21"
exp[TCP].dport = 8443
del exp[TCP].chksum
case("padding: NAT v6 checksum over the payload length only", syn6, "forward:0", rebuilt(exp))

# ---- IP options.
syn = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.101", options=b"\x01\x01\x01\x00") / TCP(sport=47200, dport=80, flags="S")
exp = syn.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("options: NAT rewrites behind IPv4 options, options kept", syn, "forward:0", rebuilt(exp))
syn = eth() / IP(src=CLIENT, dst="10.0.0.102", options=b"\x94\x04\x00\x00") / TCP(sport=47201, dport=80, flags="S", seq=41)
case("options: empty pool RST carries no options", syn, "reply", rst_for("10.0.0.102", CLIENT, 80, 47201, 42))
ping = eth() / IP(src=CLIENT, dst="10.0.0.100", id=45, options=b"\x01\x01\x01\x00") / ICMP(type=8, id=10, seq=2)
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src="10.0.0.100", dst=CLIENT, ttl=64, id=45, options=b"\x01\x01\x01\x00") / ICMP(type=0, id=10, seq=2)
case("options: echo reply is the request turned around, options included", ping, "reply", rebuilt(exp))

# ---- Fragments.
frag = eth() / IPv6(src=CLIENT6, dst="fd00::100") / IPv6ExtHdrFragment(offset=100, m=0, id=10) / Raw(b"\x00" * 24)
case("fragment: v6 later fragment to a VIP", frag, "drop:fragment")
frag = eth() / IP(src=CLIENT, dst=OWN, flags="MF") / ICMP(type=8)
case("fragment: to an own address", frag, "drop:fragment")
frag = Ether(src="02:00:00:00:00:21", dst=PORT_MAC) / IP(src="10.0.0.21", dst=CLIENT, flags="MF") / TCP(sport=8080, dport=41000, flags="A")
case("fragment: first fragment of a NAT backend's reply", frag, "drop:fragment")
frag = eth() / IP(src=CLIENT, dst="10.0.0.101", frag=185) / Raw(b"\x00" * 16)
case("fragment: later fragment to a NAT VIP", frag, "drop:fragment")
frag = eth() / IP(src=CLIENT, dst="10.0.0.77", flags="MF") / TCP(sport=47300, dport=80, flags="S")
case("fragment: to an address that is not ours is not_vip", frag, "drop:not_vip")

# ---- TTL 0 and 1: forwarded unchanged.
syn = eth() / IP(src=CLIENT, dst="10.0.0.100", ttl=0) / TCP(sport=47400, dport=80, flags="S")
case("ttl: 0 forwarded by DSR, TTL kept", syn, "forward:0", dsr_out(syn))
syn = eth() / IP(src=CLIENT, dst="10.0.0.100", ttl=1) / TCP(sport=47401, dport=80, flags="S")
case("ttl: 1 forwarded by DSR, TTL kept", syn, "forward:0", dsr_out(syn))
syn = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.101", ttl=1) / TCP(sport=47402, dport=80, flags="S")
exp = syn.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("ttl: 1 through NAT, not decremented", syn, "forward:0", rebuilt(exp))
ping = eth() / IP(src=CLIENT, dst="10.0.0.100", ttl=0, id=46) / ICMP(type=8, id=11, seq=3)
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IP(src="10.0.0.100", dst=CLIENT, ttl=64, id=46) / ICMP(type=0, id=11, seq=3)
case("ttl: echo with TTL 0 answered with TTL 64", ping, "reply", rebuilt(exp))
syn6 = eth() / IPv6(src=CLIENT6, dst="fd00::100", hlim=0) / TCP(sport=47403, dport=80, flags="S")
case("ttl: v6 hop limit 0 forwarded by DSR", syn6, "forward:0", dsr_out(syn6, "02:00:00:00:00:61"))

# ---- VLAN in VLAN.
qq = Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47500, dport=80, flags="S")
case("qinq: 0x88a8 + 0x8100 forwarded by DSR, both tags kept", qq, "forward:0", dsr_out(qq))
dd = Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1Q(vlan=30) / Dot1Q(vlan=40) / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47501, dport=80, flags="S")
case("qinq: 0x8100 + 0x8100 forwarded, both tags kept", dd, "forward:0", dsr_out(dd))
qq = Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src=CLIENT, dst="10.0.0.101") / TCP(sport=47502, dport=80, flags="S")
exp = qq.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("qinq: NAT behind two tags", qq, "forward:0", rebuilt(exp))
qq = Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src=CLIENT, dst="10.0.0.102") / TCP(sport=47503, dport=80, flags="S", seq=7)
case("qinq: empty pool RST keeps both tags", qq, "reply",
     rst_for("10.0.0.102", CLIENT, 80, 47503, 8, l2=Ether(src=PORT_MAC, dst=CLIENT_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20)))
req = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1AD(vlan=10) / Dot1Q(vlan=20) / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, pdst="10.0.0.100")
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / ARP(op=2, hwsrc=PORT_MAC, psrc="10.0.0.100", hwdst=CLIENT_MAC, pdst=CLIENT)
case("qinq: ARP for a VIP answered inside both tags", req, "reply", exp)
case("qinq: 0x88a8 + 0x88a8 + 0x8100 is one tag too many",
     Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1AD(vlan=1) / Dot1AD(vlan=2) / Dot1Q(vlan=3) / IP(src=CLIENT, dst="10.0.0.100") / TCP(dport=80),
     "drop:too_many_vlans")

# ---- Jumbo frames (9000 bytes).
jumbo = eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47600, dport=80, flags="PA", seq=1, ack=1)
jumbo = jumbo / Raw(b"j" * (9000 - len(raw(jumbo))))
assert len(raw(jumbo)) == 9000
case("jumbo: 9000-byte frame forwarded by DSR", jumbo, "forward:0", dsr_out(jumbo))
jumbo = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.101") / TCP(sport=47601, dport=80, flags="PA", seq=1, ack=1)
jumbo = jumbo / Raw((bytes(range(256)) * 40)[: 9000 - len(raw(jumbo))])
jumbo = Ether(raw(jumbo))
assert len(raw(jumbo)) == 9000
exp = jumbo.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("jumbo: 9000-byte frame through NAT, checksum over all of it", jumbo, "forward:0", rebuilt(exp))
jumbo6 = eth() / IPv6(src=CLIENT6, dst="fd00::100") / TCP(sport=47602, dport=80, flags="A")
jumbo6 = jumbo6 / Raw(b"k" * (9000 - len(raw(jumbo6))))
case("jumbo: 9000-byte IPv6 frame forwarded by DSR", jumbo6, "forward:0", dsr_out(jumbo6, "02:00:00:00:00:61"))

# ---- SYN with payload.
syn = eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47700, dport=80, flags="S", seq=50) / Raw(b"tfo-cookie-data")
case("syn+data: forwarded by DSR as is", syn, "forward:0", dsr_out(syn))
syn = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.101") / TCP(sport=47701, dport=80, flags="S", seq=60) / Raw(b"tfo-cookie-data!")
exp = syn.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("syn+data: NAT, checksum covers the payload", syn, "forward:0", rebuilt(exp))

# ---- ICMP errors quoting a VIP's flow: to the flow's backend (path-MTU discovery).
quoted = IP(src="10.0.0.100", dst=CLIENT) / TCP(sport=80, dport=40000, flags="A", seq=1)
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(raw(quoted)[:28])
case("icmp error: fragmentation needed for a DSR flow in the table goes to its backend, MACs only", err, "forward:0", dsr_out(err))
nf = IP(src="10.0.0.100", dst=CLIENT) / TCP(sport=80, dport=40999, flags="A", seq=1)
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(raw(nf)[:28])
case("icmp error: fragmentation needed for a DSR flow not in the table goes to Maglev's choice", err, "forward:0", dsr_out(err))
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=11, code=0) / Raw(raw(quoted)[:28])
case("icmp error: time exceeded quoting a DSR flow is forwarded", err, "forward:0", dsr_out(err))
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=12, code=0, ptr=1) / Raw(raw(quoted))
case("icmp error: parameter problem with the whole packet quoted is forwarded", err, "forward:0", dsr_out(err))
quoted6 = IPv6(src="fd00::100", dst=CLIENT6) / TCP(sport=80, dport=45000, flags="A")
err6 = eth(src=ROUTER_MAC) / IPv6(src="fd00::1", dst="fd00::100") / ICMPv6PacketTooBig(mtu=1280) / Raw(raw(quoted6))
case("icmp error: v6 packet too big for a DSR flow goes to its backend", err6, "forward:0", dsr_out(err6, "02:00:00:00:00:61"))
err6 = eth(src=ROUTER_MAC) / IPv6(src="fd00::1", dst="fd00::100") / ICMPv6DestUnreach(code=4) / Raw(raw(quoted6))
case("icmp error: v6 unreachable quoting a DSR flow is forwarded", err6, "forward:0", dsr_out(err6, "02:00:00:00:00:61"))
hq6 = IPv6(src="fd00::100", dst=CLIENT6) / IPv6ExtHdrDestOpt() / TCP(sport=80, dport=45999, flags="A")
err6 = eth(src=ROUTER_MAC) / IPv6(src="fd00::1", dst="fd00::100") / ICMPv6PacketTooBig(mtu=1280) / Raw(raw(hq6)[:40 + 8 + 8])
case("icmp error: v6 quote with an extension header, cut after the ports", err6, "forward:0", dsr_out(err6, "02:00:00:00:00:61"))

# NAT: the backend must see an error about its own packet.
def nat_err(outer, icmp, quoted_in, quoted_out, mac, backend, cut_at=None):
    qi, qo = raw(quoted_in), raw(quoted_out)
    if cut_at is not None:
        qi, qo = qi[:cut_at], qo[:cut_at]
    inp = eth(src=ROUTER_MAC) / outer / icmp / Raw(qi)
    o = outer.copy()
    o.dst = backend
    exp = Ether(src=PORT_MAC, dst=mac) / o / icmp.copy() / Raw(qo)
    return inp, rebuilt(exp)

inp, exp = nat_err(IP(src="10.0.0.1", dst="10.0.0.101", id=77, ttl=250), ICMP(type=3, code=4, nexthopmtu=1400),
                   IP(src="10.0.0.101", dst=CLIENT, id=5) / TCP(sport=80, dport=41000, flags="A", seq=501),
                   IP(src="10.0.0.21", dst=CLIENT, id=5) / TCP(sport=8080, dport=41000, flags="A", seq=501),
                   "02:00:00:00:00:21", "10.0.0.21", cut_at=28)
case("icmp error nat: fragmentation needed to backend:8080, quoted source and every checksum translated", inp, "forward:0", exp)
inp, exp = nat_err(IP(src="10.0.0.1", dst="10.0.0.101"), ICMP(type=3, code=3),
                   IP(src="10.0.0.101", dst=CLIENT) / UDP(sport=53, dport=42000) / Raw(b"\x12\x34answer"),
                   IP(src="10.0.0.22", dst=CLIENT) / UDP(sport=5353, dport=42000) / Raw(b"\x12\x34answer"),
                   "02:00:00:00:00:22", "10.0.0.22")
case("icmp error nat: UDP quoted whole, its checksum translated too", inp, "forward:0", exp)
inp, exp = nat_err(IPv6(src="fd00::1", dst="fd00::101", hlim=60), ICMPv6PacketTooBig(mtu=1280),
                   IPv6(src="fd00::101", dst=CLIENT6) / TCP(sport=443, dport=45002, flags="A", seq=6) / Raw(b"reply"),
                   IPv6(src="fd00::21", dst=CLIENT6) / TCP(sport=8443, dport=45002, flags="A", seq=6) / Raw(b"reply"),
                   "02:00:00:00:00:62", "fd00::21")
case("icmp error nat v6: packet too big to [fd00::21]:8443, ICMPv6 pseudo-header checksum", inp, "forward:0", exp)

# Refused ICMP errors.
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(raw(quoted)[:27])
case("icmp error: quote one byte short of the ports", err, "drop:icmp_error_malformed")
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=3, code=4, nexthopmtu=1400)
case("icmp error: no quote at all", err, "drop:icmp_error_malformed")
err6 = eth(src=ROUTER_MAC) / IPv6(src="fd00::1", dst="fd00::100") / ICMPv6PacketTooBig(mtu=1280) / Raw(raw(quoted6)[:40 + 3])
case("icmp error: v6 quote cut inside the ports", err6, "drop:icmp_error_malformed")
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=3, code=4) / Raw(raw(quoted6)[:48])
case("icmp error: a v4 error quoting an IPv6 packet", err, "drop:icmp_error_malformed")
eq = IP(src="10.0.0.100", dst=CLIENT) / ICMP(type=0, id=1, seq=1)
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=3, code=1) / Raw(raw(eq))
case("icmp error: quoting an echo reply (no ports)", err, "drop:icmp_error_malformed")
fq = IP(src="10.0.0.100", dst=CLIENT, frag=10) / Raw(b"\x00" * 8)
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=11, code=1) / Raw(raw(fq))
case("icmp error: quoting a later fragment (no ports)", err, "drop:icmp_error_malformed")
oq = IP(src="10.0.0.77", dst=CLIENT) / TCP(sport=80, dport=40000, flags="A")
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=3, code=4) / Raw(raw(oq)[:28])
case("icmp error: to a VIP, quoting a packet that is not from it", err, "drop:icmp_error_not_vip")
sq = IP(src="10.0.0.100", dst=CLIENT) / TCP(sport=81, dport=40000, flags="A")
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.100") / ICMP(type=3, code=4) / Raw(raw(sq)[:28])
case("icmp error: quoting a VIP port without service", err, "drop:icmp_error_no_service")
eq = IP(src="10.0.0.102", dst=CLIENT) / TCP(sport=80, dport=43000, flags="RA")
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.102") / ICMP(type=3, code=4) / Raw(raw(eq)[:28])
case("icmp error: quoting a flow of a service with an empty pool", err, "drop:icmp_error_no_backend")
aq = IP(src="10.0.0.104", dst="10.0.0.66") / TCP(sport=80, dport=47001, flags="A")
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.104") / ICMP(type=3, code=4) / Raw(raw(aq)[:28])
case("icmp error: quoting a flow whose client the access list refuses", err, "drop:acl_denied")
err = Ether(src="02:00:00:00:00:11", dst=PORT_MAC) / IP(src="10.0.0.11", dst=OWN) / ICMP(type=3, code=3) / Raw(raw(IP(src=OWN, dst="10.0.0.11") / TCP(sport=50001, dport=80))[:28])
case("icmp error: to an own address goes to the slow path", err, "slowpath")
ping = eth() / IP(src=CLIENT, dst="10.0.0.100") / ICMP(type=8, code=1, id=1)
case("icmp: echo request with a nonzero code is not answered", ping, "drop:icmp_unhandled")
pong = eth() / IP(src=CLIENT, dst="10.0.0.100") / ICMP(type=0, id=1)
case("icmp: an echo reply to a VIP is not answered", pong, "drop:icmp_unhandled")

# ---- Odd L2 and addresses.
bc = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=47800, dport=80, flags="S")
case("l2: broadcast frame to a VIP forwarded (the IP destination decides)", bc, "forward:0", dsr_out(bc))

# ---- Every TCP flag combination: to a served DSR VIP (all forwarded), to an empty pool
# that resets (RST|ACK for SYN without ACK and RST, the rest dropped).
SYN, ACK, RST, FIN = 0x02, 0x10, 0x04, 0x01
for flags in range(256):
    seg = eth() / IP(src=CLIENT, dst="10.0.0.100") / TCP(sport=50000 + flags, dport=80, flags=flags, seq=7000 + flags)
    case(f"flags {flags:#04x} to a DSR VIP: forwarded", seg, "forward:0", dsr_out(seg))
for flags in range(256):
    seq = 0xfffffffe - flags
    seg = eth() / IP(src=CLIENT, dst="10.0.0.102") / TCP(sport=51000 + flags, dport=80, flags=flags, seq=seq)
    if flags & (SYN | ACK | RST) == SYN:
        ack = seq + 1 + (1 if flags & FIN else 0)
        case(f"flags {flags:#04x} to an empty pool: RST|ACK", seg, "reply", rst_for("10.0.0.102", CLIENT, 80, 51000 + flags, ack))
    else:
        case(f"flags {flags:#04x} to an empty pool: dropped", seg, "drop:no_backend")

# ---- Path MTU (port p1, toward the mtu-* services' backends, has mtu 1400; p0 has 9000).
# A packet whose IP length exceeds the egress port's MTU (DSR and NAT add no encapsulation)
# is not forwarded. IPv4 with DF: ICMP fragmentation needed (3/4) with next-hop MTU 1400, from
# the VIP to the client, quoting the IP header and 8 bytes (RFC 792/1191); IPv6: ICMPv6 packet
# too big (2/0) with MTU 1400, quoting as much as fits in 1280 bytes (RFC 4443 3.2); both
# back out of the port the packet came in on, VLAN tags kept. A NAT backend's reply too big
# for the port toward its client is answered the same way, to the backend, from the VIP. IPv4 without DF: dropped as
# mtu_exceeded_no_df (Fulcrum never fragments). A packet of exactly the MTU is forwarded.
P1_MAC = "02:00:00:00:01:01"


def big(ip, sport, dport, size, flags="PA", l2=None):
    """A TCP segment to `ip`'s VIP whose IP packet is `size` bytes."""
    head = (l2 if l2 is not None else eth()) / ip / TCP(sport=sport, dport=dport, flags=flags, seq=7777, ack=1)
    l3 = len(raw(head)) - len(raw(head[IP] if IP in head else head[IPv6]))
    return Ether(raw(head / Raw(b"m" * (size - (len(raw(head)) - l3)))))


def to_p1(pkt, mac):
    exp = pkt.copy()
    exp[Ether].dst, exp[Ether].src = mac, P1_MAC
    return exp


def frag_needed(pkt, mtu, vip, l2=None):
    quoted = raw(pkt[IP])[:pkt[IP].ihl * 4 + 8]
    head = l2 if l2 is not None else Ether(src=PORT_MAC, dst=CLIENT_MAC)
    return rebuilt(head / IP(src=vip, dst=pkt[IP].src, ttl=64, id=0, flags="DF") / ICMP(type=3, code=4, nexthopmtu=mtu) / Raw(quoted))


p = big(IP(src=CLIENT, dst="10.0.0.105", flags="DF"), 48000, 80, 1401)
case("mtu: IPv4 DF, 1401 bytes to a DSR backend behind a 1400 port: fragmentation needed, next-hop MTU 1400, from the VIP",
     p, "reply", frag_needed(p, 1400, "10.0.0.105"))
p = big(IP(src=CLIENT, dst="10.0.0.105", flags="DF"), 48000, 80, 1400)
case("mtu: IPv4 DF, exactly 1400 bytes: forwarded", p, "forward:1", to_p1(p, "02:00:00:00:01:11"))
p = big(IP(src=CLIENT, dst="10.0.0.105", flags="DF"), 48001, 80, 1500, flags="S")
case("mtu: a new flow's first packet (a SYN with 1460 bytes of data) too big: answered too",
     p, "reply", frag_needed(p, 1400, "10.0.0.105"))
p = big(IP(src=CLIENT, dst="10.0.0.105", flags="DF"), 48002, 443, 1500)
case("mtu: NAT, IPv4 DF, 1500 bytes: fragmentation needed quoting the client's packet as sent (VIP:443)",
     p, "reply", frag_needed(p, 1400, "10.0.0.105"))
p = big(IP(src=CLIENT, dst="10.0.0.105", flags="DF", options=b"\x01\x01\x01\x00"), 48003, 80, 1500)
case("mtu: IPv4 DF with options: the quote is the 24-byte header and 8 bytes",
     p, "reply", frag_needed(p, 1400, "10.0.0.105"))
vl = Ether(src=CLIENT_MAC, dst=PORT_MAC) / Dot1Q(vlan=100)
p = big(IP(src=CLIENT, dst="10.0.0.105", flags="DF"), 48004, 80, 1500, l2=vl)
case("mtu: 802.1Q tagged IPv4 DF: the answer keeps the tag",
     p, "reply", frag_needed(p, 1400, "10.0.0.105", l2=Ether(src=PORT_MAC, dst=CLIENT_MAC) / Dot1Q(vlan=100)))
p = big(IP(src=CLIENT, dst="10.0.0.105", flags=0), 48005, 80, 1500)
case("mtu: IPv4 without DF, 1500 bytes: dropped, never fragmented", p, "drop:mtu_exceeded_no_df")
p = big(IPv6(src=CLIENT6, dst="fd00::105"), 48006, 80, 1500)
quoted = raw(p[IPv6])[:1280 - 48]
exp = rebuilt(Ether(src=PORT_MAC, dst=CLIENT_MAC) / IPv6(src="fd00::105", dst=CLIENT6, hlim=64) / ICMPv6PacketTooBig(mtu=1400) / Raw(quoted))
assert len(raw(exp)) == 14 + 1280
case("mtu: IPv6, 1500 bytes: packet too big, MTU 1400, from the VIP, quoting 1232 bytes (the answer is 1280)",
     p, "reply", exp)
p = big(IPv6(src=CLIENT6, dst="fd00::105"), 48006, 80, 1400)
case("mtu: IPv6, exactly 1400 bytes: forwarded", p, "forward:1", to_p1(p, "02:00:00:00:01:61"))

# A NAT backend's reply too big for the client's port (p0, mtu 9000): answered to the
# backend, from the VIP, quoting the reply as the backend sent it (its kernel's socket).
syn = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.101") / TCP(sport=48010, dport=80, flags="S", seq=10)
exp = syn.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:21", PORT_MAC
exp[IP].dst = "10.0.0.21"
exp[TCP].dport = 8080
del exp[IP].chksum
del exp[TCP].chksum
case("mtu: a NAT flow to reply on", syn, "forward:0", rebuilt(exp))
bl2 = Ether(src="02:00:00:00:00:21", dst=PORT_MAC)
p = big(IP(src="10.0.0.21", dst=CLIENT, flags="DF"), 8080, 48010, 9001, flags="A", l2=bl2)
case("mtu: NAT reply of 9001 bytes, DF, to a client behind a port of mtu 9000: fragmentation needed to the backend, from the VIP",
     p, "reply", frag_needed(p, 9000, "10.0.0.101", l2=Ether(src=PORT_MAC, dst="02:00:00:00:00:21")))
p = big(IP(src="10.0.0.21", dst=CLIENT, flags=0), 8080, 48010, 9001, flags="A", l2=bl2)
case("mtu: NAT reply of 9001 bytes without DF: dropped", p, "drop:mtu_exceeded_no_df")

# ---- Access lists (service acl-web: allow 10.0.0.0/24 and fd00::/64, deny 10.0.0.66).
syn = eth() / IP(src=CLIENT, dst="10.0.0.104") / TCP(sport=47000, dport=80, flags="S")
exp = syn.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:41", PORT_MAC
case("acl: an allowed source is forwarded", syn, "forward:0", exp)
case("acl: a denied source is dropped, even inside an allowed prefix",
     eth() / IP(src="10.0.0.66", dst="10.0.0.104") / TCP(sport=47001, dport=80, flags="S"), "drop:acl_denied")
case("acl: a source outside every allowed prefix is dropped",
     eth(src=ROUTER_MAC) / IP(src="198.51.100.7", dst="10.0.0.104") / TCP(sport=47002, dport=80, flags="S"), "drop:acl_denied")
case("acl: also mid-flow (no flow is made for a refused source)",
     eth(src=ROUTER_MAC) / IP(src="198.51.100.7", dst="10.0.0.104") / TCP(sport=47002, dport=80, flags="A"), "drop:acl_denied")

# ---- Tunnels: the client's packet, byte for byte, inside an outer header to the backend.
# Outer: TTL/hop limit 64, DSCP/ECN copied from the inner packet, IPv4 DF set and ID 0, IPv6
# flow label 0; source the port's own address of the backend's family. GUE: UDP to the
# service's gue_port from a source port Fulcrum derives from the flow's frozen hash, which is
# written again here (flow_hash in dataplane/src/hash.rs, pinned there by golden values);
# UDP checksum 0 over IPv4, computed by scapy over IPv6.
M64 = (1 << 64) - 1
HP = [0xa0761d6478bd642f, 0xe7037ed1a0b428db, 0x8ebc6af09c88c6e3, 0x589965cc75374cc3]
SEED = 7  # golden.toml's hash_seed


def mum(a, b):
    p = (a & M64) * (b & M64)
    return (p & M64) ^ (p >> 64)


def flow_hash(seed, src, dst, sport, dport, proto):
    """hash::flow_hash of a flow key: addresses in 16 bytes (IPv4 in the first 4)."""
    import ipaddress
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 6 if a.version == 6 else 4
    sb, db = a.packed.ljust(16, b"\0"), b.packed.ljust(16, b"\0")
    s0, s1 = int.from_bytes(sb[:8], "little"), int.from_bytes(sb[8:], "little")
    d0, d1 = int.from_bytes(db[:8], "little"), int.from_bytes(db[8:], "little")
    rest = sport | dport << 16 | proto << 32 | fam << 40
    x = mum(s0 ^ seed ^ HP[0], d0 ^ HP[1])
    y = mum(s1 ^ seed ^ HP[2], d1 ^ HP[3])
    return mum(mum(x ^ rest ^ HP[1], y ^ HP[0]) ^ HP[2], HP[3])


def gue_sport(src, dst, sport, dport, proto):
    return 49152 | (flow_hash(SEED, src, dst, sport, dport, proto) >> 50)


OWN6 = "fd00::2"


def inner_of(pkt):
    """The first IP packet of a frame, without Ethernet padding, and its DSCP/ECN byte."""
    l3 = rebuilt(pkt).payload
    while not isinstance(l3, (IP, IPv6)):
        l3 = l3.payload
    b = raw(l3)
    if isinstance(l3, IP):
        return b[:l3.len], l3.tos
    return b[:40 + l3.plen], l3.tc


def outer_ip(dst, proto, tos):
    if ":" in dst:
        return IPv6(src=OWN6, dst=dst, nh=proto, hlim=64, tc=tos, fl=0)
    return IP(src=OWN, dst=dst, proto=proto, ttl=64, tos=tos, flags="DF", id=0)


def ipip_out(pkt, mac, dst, l2=None):
    inner, tos = inner_of(pkt)
    proto = 41 if inner[0] >> 4 == 6 else 4
    head = Ether(src=PORT_MAC, dst=mac) if l2 is None else l2
    return rebuilt(head / outer_ip(dst, proto, tos) / Raw(inner))


def gue_out(pkt, mac, dst, dport, flow):
    inner, tos = inner_of(pkt)
    udp = UDP(sport=gue_sport(*flow), dport=dport)
    if ":" not in dst:
        udp.chksum = 0
    return rebuilt(Ether(src=PORT_MAC, dst=mac) / outer_ip(dst, 17, tos) / udp / Raw(inner))


syn = eth() / IP(src=CLIENT, dst="10.0.0.125", tos=0xb9, id=11) / TCP(sport=43000, dport=80, flags="S", seq=9)
case("ipip: SYN, IPv4 in IPv4 to the backend, DSCP/ECN copied, DF, TTL 64", syn, "forward:0",
     ipip_out(syn, "02:00:00:00:00:51", "10.0.0.51"))
data = eth() / IP(src=CLIENT, dst="10.0.0.125", id=12) / TCP(sport=43000, dport=80, flags="PA", seq=10) / Raw(b"y" * 333)
case("ipip: data of the flow, odd length, same tunnel", data, "forward:0",
     ipip_out(data, "02:00:00:00:00:51", "10.0.0.51"))
pad = eth() / IP(src=CLIENT, dst="10.0.0.125") / TCP(sport=43001, dport=80, flags="S") / Padding(b"\0" * 6)
case("ipip: Ethernet padding is not carried into the tunnel", pad, "forward:0",
     ipip_out(pad, "02:00:00:00:00:51", "10.0.0.51"))
vl = eth() / Dot1Q(vlan=100) / IP(src=CLIENT, dst="10.0.0.125") / TCP(sport=43002, dport=80, flags="S")
case("ipip: 802.1Q tagged, tag kept in front of the outer header", vl, "forward:0",
     ipip_out(vl, None, "10.0.0.51", l2=Ether(src=PORT_MAC, dst="02:00:00:00:00:51") / Dot1Q(vlan=100)))
syn6 = eth() / IPv6(src=CLIENT6, dst="fd00::125", tc=0x2e, fl=0x12345) / TCP(sport=43100, dport=80, flags="S")
case("ipip: IPv6 in IPv6 (next header 41), traffic class copied, flow label 0", syn6, "forward:0",
     ipip_out(syn6, "02:00:00:00:00:56", "fd00::51"))
syn46 = eth() / IP(src=CLIENT, dst="10.0.0.126", tos=0x10) / TCP(sport=43200, dport=80, flags="S")
case("ipip: IPv4 VIP to an IPv6 backend, IPv4 in IPv6 (next header 4)", syn46, "forward:0",
     ipip_out(syn46, "02:00:00:00:00:52", "fd00::52"))
q = eth() / IP(src=CLIENT, dst="10.0.0.127", tos=0x20) / UDP(sport=43300, dport=53) / Raw(b"\x12\x34query")
case("gue: UDP in UDP:6080 over IPv4, source port from the flow hash, UDP checksum 0", q, "forward:0",
     gue_out(q, "02:00:00:00:00:53", "10.0.0.53", 6080, (CLIENT, "10.0.0.127", 43300, 53, 17)))
q2 = eth() / IP(src=CLIENT, dst="10.0.0.127") / UDP(sport=43300, dport=53) / Raw(b"\x56\x78again")
case("gue: the flow's next datagram, same source port", q2, "forward:0",
     gue_out(q2, "02:00:00:00:00:53", "10.0.0.53", 6080, (CLIENT, "10.0.0.127", 43300, 53, 17)))
q3 = eth() / IP(src=CLIENT, dst="10.0.0.127") / UDP(sport=43301, dport=53) / Raw(b"other")
case("gue: another flow, its own source port", q3, "forward:0",
     gue_out(q3, "02:00:00:00:00:53", "10.0.0.53", 6080, (CLIENT, "10.0.0.127", 43301, 53, 17)))
syn6 = eth() / IPv6(src=CLIENT6, dst="fd00::127", tc=0xb8) / TCP(sport=43400, dport=80, flags="S") / Raw(b"odd")
case("gue: IPv6 in UDP:7777 over IPv6, UDP checksum computed", syn6, "forward:0",
     gue_out(syn6, "02:00:00:00:00:57", "fd00::53", 7777, (CLIENT6, "fd00::127", 43400, 80, 6)))

# ICMP errors quoting a tunnelled flow: the error, unchanged, through that flow's tunnel (GUE:
# with the flow's source port, the hash of the flow as its client sends it).
quoted = IP(src="10.0.0.125", dst=CLIENT) / TCP(sport=80, dport=43000, flags="A", seq=1)
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.125", tos=0xc0) / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(raw(quoted)[:28])
case("icmp error through ipip: fragmentation needed for a tunnelled flow goes through its tunnel", err, "forward:0",
     ipip_out(err, "02:00:00:00:00:51", "10.0.0.51"))
quoted46 = IP(src="10.0.0.126", dst=CLIENT) / TCP(sport=80, dport=43200, flags="A")
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.126") / ICMP(type=3, code=4, nexthopmtu=1300) / Raw(raw(quoted46)[:28])
case("icmp error through ipip: IPv4 error to an IPv6 backend, IPv4 in IPv6", err, "forward:0",
     ipip_out(err, "02:00:00:00:00:52", "fd00::52"))
quoted6 = IPv6(src="fd00::127", dst=CLIENT6) / TCP(sport=80, dport=43400, flags="SA")
err6 = eth(src=ROUTER_MAC) / IPv6(src="fd00::1", dst="fd00::127") / ICMPv6PacketTooBig(mtu=1280) / Raw(raw(quoted6))
case("icmp error through gue: v6 packet too big goes in the flow's GUE tunnel, its source port", err6, "forward:0",
     gue_out(err6, "02:00:00:00:00:57", "fd00::53", 7777, (CLIENT6, "fd00::127", 43400, 80, 6)))

# ICMP errors forwarded to a backend respect its link's MTU too: one that would not fit once
# encapsulated (p1, toward the mtu-* backends, has mtu 1400) has the end of its quote cut so
# that it does (RFC 1812 4.3.2.3 / RFC 4443 2.4: the quote is as much of the invoking packet
# as fits), with its lengths and checksums made right; the quoted headers stay. The outer
# source is p1's own address. Without a tunnel the same holds for the link alone.
def icmp4_err(vip, quoted, n):
    return eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst=vip, id=5) / ICMP(type=3, code=4, nexthopmtu=1300) / Raw(raw(quoted)[:n])


def icmp6_err(vip, quoted, n):
    return eth(src=ROUTER_MAC) / IPv6(src="fd00::1", dst=vip) / ICMPv6PacketTooBig(mtu=1300) / Raw(raw(quoted)[:n])


quoted = IP(src="10.0.0.128", dst=CLIENT, flags="DF") / TCP(sport=80, dport=43500, flags="PA", seq=1) / Raw(b"q" * 1500)
err = icmp4_err("10.0.0.128", quoted, 1400 - 28)
assert len(raw(err[IP])) == 1400
inner, _ = inner_of(icmp4_err("10.0.0.128", quoted, 1380 - 28))
case("icmp error through ipip, 1400 bytes, to a backend behind a 1400 port: its quote cut so that it is 1380 bytes inside the tunnel",
     err, "forward:1",
     rebuilt(Ether(src=P1_MAC, dst="02:00:00:00:01:13") / IP(src="10.9.0.2", dst="10.9.0.13", proto=4, ttl=64, tos=0, flags="DF", id=0) / Raw(inner)))
quoted6 = IPv6(src="fd00::128", dst=CLIENT6) / TCP(sport=80, dport=43600, flags="PA", seq=1) / Raw(b"q" * 1500)
err6 = icmp6_err("fd00::128", quoted6, 1400 - 48)
assert len(raw(err6[IPv6])) == 1400
inner, _ = inner_of(icmp6_err("fd00::128", quoted6, 1352 - 48))
case("icmp error through gue over IPv6, 1400 bytes (more than RFC 4443's 1280): its quote cut so that it is 1352 bytes inside the tunnel",
     err6, "forward:1",
     rebuilt(Ether(src=P1_MAC, dst="02:00:00:00:01:63") / IPv6(src="fd09::2", dst="fd09::13", nh=17, hlim=64, tc=0, fl=0)
             / UDP(sport=gue_sport(CLIENT6, "fd00::128", 43600, 80, 6), dport=6080) / Raw(inner)))
quoted = IP(src="10.0.0.105", dst=CLIENT, flags="DF") / TCP(sport=80, dport=43700, flags="PA", seq=1) / Raw(b"q" * 1500)
err = icmp4_err("10.0.0.105", quoted, 1500 - 28)
case("icmp error to a DSR backend, 1500 bytes, behind a 1400 port: its quote cut so that it is 1400 bytes",
     err, "forward:1", to_p1(icmp4_err("10.0.0.105", quoted, 1400 - 28), "02:00:00:00:01:11"))

# ==== FullNAT: client:cport -> VIP:vport leaves as local:lport -> backend:bport (local: p0's
# own address of the backend's family, ports from 20000 in order, one pool per local
# address); the backend's replies to local:lport leave as VIP:vport -> client:cport toward the
# MAC the flow came from. ICMP errors either way are translated as the packet they quote was:
# to the VIP about a reply (-> the backend, about backend:bport -> local:lport), to the local
# address about a forwarded packet (-> the client, about client:cport -> VIP:vport).
FN_MAC = "02:00:00:00:00:71"


def fn_out(pkt, mac, src, sport, dst, dport):
    exp = pkt.copy()
    exp[Ether].dst, exp[Ether].src = mac, PORT_MAC
    l3 = exp[IPv6] if IPv6 in exp else exp[IP]
    l4 = exp[TCP] if TCP in exp else exp[UDP]
    l3.src, l3.dst, l4.sport, l4.dport = src, dst, sport, dport
    if IP in exp:
        del exp[IP].chksum
    del l4.chksum
    return rebuilt(exp)


syn = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.110", id=11) / TCP(sport=52000, dport=80, flags="S", seq=900, options=[("MSS", 1460)])
case("fullnat: SYN leaves from local 10.0.0.2:20000 to backend:8080", syn, "forward:0",
     fn_out(syn, FN_MAC, OWN, 20000, "10.0.0.61", 8080))
rep = Ether(src=FN_MAC, dst=PORT_MAC) / IP(src="10.0.0.61", dst=OWN, id=12) / TCP(sport=8080, dport=20000, flags="SA", seq=300, ack=901)
case("fullnat: backend's SYN-ACK to the local port leaves as VIP:80 -> client toward the SYN's MAC", rep, "forward:0",
     fn_out(rep, ROUTER_MAC, "10.0.0.110", 80, CLIENT, 52000))
data = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.110") / TCP(sport=52000, dport=80, flags="PA", seq=901, ack=301) / Raw(b"y" * 101)
case("fullnat: the flow's data keeps its local port", data, "forward:0",
     fn_out(data, FN_MAC, OWN, 20000, "10.0.0.61", 8080))
q = eth() / IP(src=CLIENT, dst="10.0.0.110") / UDP(sport=52001, dport=53) / Raw(b"\x43\x21query")
case("fullnat: UDP to VIP:53 leaves from 10.0.0.2:20001 to backend:5353", q, "forward:0",
     fn_out(q, "02:00:00:00:00:72", OWN, 20001, "10.0.0.62", 5353))
a = Ether(src="02:00:00:00:00:72", dst=PORT_MAC) / IP(src="10.0.0.62", dst=OWN) / UDP(sport=5353, dport=20001) / Raw(b"\x43\x21answer!")
case("fullnat: UDP answer back to the client from VIP:53", a, "forward:0",
     fn_out(a, CLIENT_MAC, "10.0.0.110", 53, CLIENT, 52001))
q0 = eth() / IP(src=CLIENT, dst="10.0.0.110") / UDP(sport=52002, dport=53, chksum=0) / Raw(b"nochecksum")
exp = q0.copy()
exp[Ether].dst, exp[Ether].src = "02:00:00:00:00:72", PORT_MAC
exp[IP].src, exp[IP].dst, exp[UDP].sport, exp[UDP].dport = OWN, "10.0.0.62", 20002, 5353
del exp[IP].chksum
case("fullnat: UDP without checksum stays without one", q0, "forward:0", rebuilt(exp))
syn6 = eth(src=ROUTER_MAC) / IPv6(src=CLIENT6, dst="fd00::110") / TCP(sport=52003, dport=80, flags="S", seq=7)
case("fullnat v6: SYN leaves from [fd00::2]:20000 (its own pool) to [fd00::61]:8080", syn6, "forward:0",
     fn_out(syn6, "02:00:00:00:00:76", "fd00::2", 20000, "fd00::61", 8080))
rep6 = Ether(src="02:00:00:00:00:76", dst=PORT_MAC) / IPv6(src="fd00::61", dst="fd00::2") / TCP(sport=8080, dport=20000, flags="SA", ack=8) / Raw(b"odd")
case("fullnat v6: reply back as [fd00::110]:80 -> client", rep6, "forward:0",
     fn_out(rep6, ROUTER_MAC, "fd00::110", 80, CLIENT6, 52003))
stray = Ether(src=FN_MAC, dst=PORT_MAC) / IP(src="10.0.0.61", dst=OWN) / TCP(sport=8080, dport=20050, flags="A")
case("fullnat: a reply to a local port no flow holds", stray, "drop:fullnat_no_flow")
rst = eth() / IP(src=CLIENT, dst="10.0.0.110") / TCP(sport=52999, dport=80, flags="R")
case("fullnat: a RST of no flow opens none (no local port to send it from)", rst, "drop:fullnat_no_flow")
hc = Ether(src=FN_MAC, dst=PORT_MAC) / IP(src="10.0.0.61", dst=OWN) / TCP(sport=8080, dport=61000, flags="SA")
case("fullnat: a health check's reply to the same address still goes to the slow path", hc, "slowpath")


def fn_err(outer, icmp, quoted_in, quoted_out, mac, to, cut_at=None):
    qi, qo = raw(quoted_in), raw(quoted_out)
    if cut_at is not None:
        qi, qo = qi[:cut_at], qo[:cut_at]
    inp = eth(src=ROUTER_MAC) / outer / icmp / Raw(qi)
    o = outer.copy()
    o.dst = to
    exp = Ether(src=PORT_MAC, dst=mac) / o / icmp.copy() / Raw(qo)
    return inp, rebuilt(exp)


inp, exp = fn_err(IP(src="10.0.0.1", dst="10.0.0.110", id=78), ICMP(type=3, code=4, nexthopmtu=1400),
                  IP(src="10.0.0.110", dst=CLIENT, id=6) / TCP(sport=80, dport=52000, flags="A", seq=301),
                  IP(src="10.0.0.61", dst=OWN, id=6) / TCP(sport=8080, dport=20000, flags="A", seq=301),
                  FN_MAC, "10.0.0.61", cut_at=28)
case("icmp error fullnat: to the VIP about a reply, to the backend about backend:8080 -> local:20000", inp, "forward:0", exp)
inp, exp = fn_err(IP(src="10.0.0.1", dst=OWN, id=79), ICMP(type=3, code=4, nexthopmtu=1300),
                  IP(src=OWN, dst="10.0.0.61", id=8) / TCP(sport=20000, dport=8080, flags="PA", seq=901) / Raw(b"y" * 20),
                  IP(src=CLIENT, dst="10.0.0.110", id=8) / TCP(sport=52000, dport=80, flags="PA", seq=901) / Raw(b"y" * 20),
                  ROUTER_MAC, CLIENT)
case("icmp error fullnat: to the local address about a forwarded packet, to the client about client -> VIP:80, quoted TCP checksum too", inp, "forward:0", exp)
inp, exp = fn_err(IP(src="10.0.0.1", dst=OWN), ICMP(type=3, code=3),
                  IP(src=OWN, dst="10.0.0.62") / UDP(sport=20001, dport=5353) / Raw(b"\x43\x21query"),
                  IP(src=CLIENT, dst="10.0.0.110") / UDP(sport=52001, dport=53) / Raw(b"\x43\x21query"),
                  CLIENT_MAC, CLIENT)
case("icmp error fullnat: port unreachable from the backend's side, UDP quoted whole", inp, "forward:0", exp)
inp, exp = fn_err(IPv6(src="fd00::1", dst="fd00::110", hlim=60), ICMPv6PacketTooBig(mtu=1280),
                  IPv6(src="fd00::110", dst=CLIENT6) / TCP(sport=80, dport=52003, flags="A", seq=9) / Raw(b"reply"),
                  IPv6(src="fd00::61", dst="fd00::2") / TCP(sport=8080, dport=20000, flags="A", seq=9) / Raw(b"reply"),
                  "02:00:00:00:00:76", "fd00::61")
case("icmp error fullnat v6: packet too big to the VIP, to the backend, ICMPv6 pseudo-header checksum", inp, "forward:0", exp)
inp, exp = fn_err(IPv6(src="fd00::1", dst="fd00::2", hlim=60), ICMPv6PacketTooBig(mtu=1280),
                  IPv6(src="fd00::2", dst="fd00::61") / TCP(sport=20000, dport=8080, flags="A", seq=8) / Raw(b"ask"),
                  IPv6(src=CLIENT6, dst="fd00::110") / TCP(sport=52003, dport=80, flags="A", seq=8) / Raw(b"ask"),
                  ROUTER_MAC, CLIENT6)
case("icmp error fullnat v6: packet too big toward the backend, to the client", inp, "forward:0", exp)
nf = IP(src="10.0.0.110", dst=CLIENT) / TCP(sport=80, dport=52998, flags="A")
err = eth(src=ROUTER_MAC) / IP(src="10.0.0.1", dst="10.0.0.110") / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(raw(nf)[:28])
case("icmp error fullnat: about a flow not in the table (no local tuple to translate to)", err, "drop:fullnat_no_flow")

# Exhaustion: fullnat-tight has 10.0.0.3 alone, 64 ports; the 65th flow is refused with a
# RST (on_empty = "reset"), a non-SYN without a port is dropped; no live tuple is reused.
for i in range(64):
    syn = eth() / IP(src=CLIENT, dst="10.0.0.111") / TCP(sport=53000 + i, dport=80, flags="S", seq=i)
    case(f"fullnat exhaustion: flow {i + 1} of 64 takes 10.0.0.3:{20000 + i}", syn, "forward:0",
         fn_out(syn, "02:00:00:00:00:73", "10.0.0.3", 20000 + i, "10.0.0.63", 80))
syn = eth() / IP(src=CLIENT, dst="10.0.0.111") / TCP(sport=53064, dport=80, flags="S", seq=41)
case("fullnat exhaustion: the 65th SYN is refused with RST|ACK from the VIP", syn, "reply",
     rst_for("10.0.0.111", CLIENT, 80, 53064, 42))
ack = eth() / IP(src=CLIENT, dst="10.0.0.111") / TCP(sport=53065, dport=80, flags="A")
case("fullnat exhaustion: a non-SYN without a port is dropped under its own reason", ack, "drop:no_local_port")

# ==== PROXY protocol v2 (proxy_protocol = "v2" on a FullNAT TCP service). The header
# (proxy-protocol.txt 2.2: signature, 0x21 v2/PROXY, 0x11 AF_INET+STREAM or 0x21 AF_INET6+
# STREAM, length, client address, VIP, client port, VIP port; 28 bytes for IPv4, 52 for IPv6)
# goes before the payload of the client's first data segment (sequence number = ISN + 1),
# which keeps its sequence number; every later client segment's sequence number is + N; the
# backend's acknowledgement number and SACK edges are - N (inside the header: ISN + 1). A
# first segment sent again gets the header again. Built here with struct, independently.
def pp2(src, dst, sport, dport, v6=False):
    if v6:
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        addrs = socket.inet_aton(src) + socket.inet_aton(dst)
        fam = 0x11
    body = addrs + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


PP_MAC = "02:00:00:00:01:64"
PP_LOCAL = "10.9.0.2"
# The golden harness feeds every frame to p0: the backend's replies are addressed to p0's MAC.


def pp_out(l4, payload=b"", ip_id=1):
    """A client's segment as the backend must get it (from 10.9.0.2:20000 on p1)."""
    return rebuilt(Ether(src=P1_MAC, dst=PP_MAC) / IP(src=PP_LOCAL, dst="10.9.0.64", id=ip_id) / l4 / Raw(payload))


def pp_in(l4, payload=b"", ip_id=1):
    return eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.112", id=ip_id) / l4 / Raw(payload)


ISN = 5000
HDR = pp2(CLIENT, "10.0.0.112", 54000, 80)
assert len(HDR) == 28
syn = eth(src=ROUTER_MAC) / IP(src=CLIENT, dst="10.0.0.112", id=1) / TCP(sport=54000, dport=80, flags="S", seq=ISN, options=[("MSS", 1460)])
case("proxy v2: the SYN leaves unchanged in sequence, from local 10.9.0.2:20000 on p1", syn, "forward:1",
     rebuilt(Ether(src=P1_MAC, dst=PP_MAC) / IP(src=PP_LOCAL, dst="10.9.0.64", id=1) / TCP(sport=20000, dport=8080, flags="S", seq=ISN, options=[("MSS", 1460)])))
sa = Ether(src=PP_MAC, dst=PORT_MAC) / IP(src="10.9.0.64", dst=PP_LOCAL, id=2) / TCP(sport=8080, dport=20000, flags="SA", seq=7000, ack=ISN + 1,
                                                                               options=[("MSS", 1360), ("SAckOK", b""), ("WScale", 7)])
case("proxy v2: the backend's SYN-ACK: ack ISN + 1 unchanged, its MSS 1360 offered to the client as 1332 (- 28)", sa, "forward:0",
     rebuilt(Ether(src=PORT_MAC, dst=ROUTER_MAC) / IP(src="10.0.0.112", dst=CLIENT, id=2) / TCP(sport=80, dport=54000, flags="SA", seq=7000, ack=ISN + 1,
                                                                                                options=[("MSS", 1332), ("SAckOK", b""), ("WScale", 7)])))
case("proxy v2: the handshake's ACK (ISN + 1, no payload) is not shifted",
     pp_in(TCP(sport=54000, dport=80, flags="A", seq=ISN + 1, ack=7001)), "forward:1",
     pp_out(TCP(sport=20000, dport=8080, flags="A", seq=ISN + 1, ack=7001)))
REQ = b"GET / HTTP/1.0\r\n\r\n"
case("proxy v2: the first data segment gets the 28-byte IPv4 header before its payload, same sequence number",
     pp_in(TCP(sport=54000, dport=80, flags="PA", seq=ISN + 1, ack=7001), REQ, ip_id=3), "forward:1",
     pp_out(TCP(sport=20000, dport=8080, flags="PA", seq=ISN + 1, ack=7001), HDR + REQ, ip_id=3))
case("proxy v2: a later client segment's sequence number + 28",
     pp_in(TCP(sport=54000, dport=80, flags="PA", seq=ISN + 1 + len(REQ), ack=7001), b"more", ip_id=4), "forward:1",
     pp_out(TCP(sport=20000, dport=8080, flags="PA", seq=ISN + 1 + len(REQ) + 28, ack=7001), b"more", ip_id=4))
back = Ether(src=PP_MAC, dst=PORT_MAC) / IP(src="10.9.0.64", dst=PP_LOCAL, id=5) / TCP(
    sport=8080, dport=20000, flags="A", seq=7001, ack=ISN + 1 + 28 + len(REQ) + 4,
    options=[("NOP", None), ("NOP", None), ("SAck", (ISN + 200, ISN + 300, ISN + 400, ISN + 500))]) / Raw(b"HTTP/1.0 200 OK\r\n")
case("proxy v2: the backend's ack and both SACK blocks - 28 on their way to the client", back, "forward:0",
     rebuilt(Ether(src=PORT_MAC, dst=ROUTER_MAC) / IP(src="10.0.0.112", dst=CLIENT, id=5) / TCP(
         sport=80, dport=54000, flags="A", seq=7001, ack=ISN + 1 + len(REQ) + 4,
         options=[("NOP", None), ("NOP", None), ("SAck", (ISN + 172, ISN + 272, ISN + 372, ISN + 472))]) / Raw(b"HTTP/1.0 200 OK\r\n")))
part = Ether(src=PP_MAC, dst=PORT_MAC) / IP(src="10.9.0.64", dst=PP_LOCAL, id=6) / TCP(sport=8080, dport=20000, flags="A", seq=7001, ack=ISN + 1 + 10)
case("proxy v2: an ack inside the header reaches the client as ISN + 1 (never below the first data)", part, "forward:0",
     rebuilt(Ether(src=PORT_MAC, dst=ROUTER_MAC) / IP(src="10.0.0.112", dst=CLIENT, id=6) / TCP(sport=80, dport=54000, flags="A", seq=7001, ack=ISN + 1)))
case("proxy v2: the first data segment sent again gets the header again (recognised by its sequence number)",
     pp_in(TCP(sport=54000, dport=80, flags="PA", seq=ISN + 1, ack=7001), REQ, ip_id=7), "forward:1",
     pp_out(TCP(sport=20000, dport=8080, flags="PA", seq=ISN + 1, ack=7001), HDR + REQ, ip_id=7))
case("proxy v2: a first segment that fits p1's 1400 but not with the header is dropped",
     pp_in(TCP(sport=54000, dport=80, flags="PA", seq=ISN + 1, ack=7001), b"b" * 1350, ip_id=8), "drop:proxy_v2_too_big")
ISN2 = 80000
case("proxy v2: a new SYN on the same tuple (the client's port reused) goes to the same local port, unchanged",
     pp_in(TCP(sport=54000, dport=80, flags="S", seq=ISN2), ip_id=9), "forward:1",
     pp_out(TCP(sport=20000, dport=8080, flags="S", seq=ISN2), ip_id=9))
case("proxy v2: ... and its first data segment (ISN2 + 1) gets the header: the SYN reset where data starts",
     pp_in(TCP(sport=54000, dport=80, flags="PA", seq=ISN2 + 1, ack=1), REQ, ip_id=10), "forward:1",
     pp_out(TCP(sport=20000, dport=8080, flags="PA", seq=ISN2 + 1, ack=1), HDR + REQ, ip_id=10))

ISN6 = 9000
HDR6 = pp2(CLIENT6, "fd00::112", 54001, 80, v6=True)
assert len(HDR6) == 52
syn6 = eth(src=ROUTER_MAC) / IPv6(src=CLIENT6, dst="fd00::112") / TCP(sport=54001, dport=80, flags="S", seq=ISN6)
case("proxy v2 v6: the SYN leaves from [fd00::2]:20001", syn6, "forward:0",
     fn_out(syn6, "02:00:00:00:00:64", "fd00::2", 20001, "fd00::64", 8080))
sa6 = Ether(src="02:00:00:00:00:64", dst=PORT_MAC) / IPv6(src="fd00::64", dst="fd00::2") / TCP(
    sport=8080, dport=20001, flags="SA", seq=0, ack=ISN6 + 1, options=[("NOP", None), ("MSS", 1440)])
case("proxy v2 v6: the SYN-ACK's MSS 1440 at an odd option offset offered as 1388 (- 52)", sa6, "forward:0",
     rebuilt(Ether(src=PORT_MAC, dst=ROUTER_MAC) / IPv6(src="fd00::112", dst=CLIENT6) / TCP(
         sport=80, dport=54001, flags="SA", seq=0, ack=ISN6 + 1, options=[("NOP", None), ("MSS", 1388)])))
d6 = eth(src=ROUTER_MAC) / IPv6(src=CLIENT6, dst="fd00::112") / TCP(sport=54001, dport=80, flags="PA", seq=ISN6 + 1, ack=1) / Raw(b"hello6")
case("proxy v2 v6: the first data segment gets the 52-byte IPv6 header, payload length + 52", d6, "forward:0",
     rebuilt(Ether(src=PORT_MAC, dst="02:00:00:00:00:64") / IPv6(src="fd00::2", dst="fd00::64") / TCP(sport=20001, dport=8080, flags="PA", seq=ISN6 + 1, ack=1) / Raw(HDR6 + b"hello6")))
b6 = Ether(src="02:00:00:00:00:64", dst=PORT_MAC) / IPv6(src="fd00::64", dst="fd00::2") / TCP(
    sport=8080, dport=20001, flags="A", seq=1, ack=ISN6 + 1 + 52 + 6, options=[("NOP", None), ("SAck", (ISN6 + 100, ISN6 + 200))])
case("proxy v2 v6: ack - 52, and a SACK block at an odd option offset - 52", b6, "forward:0",
     rebuilt(Ether(src=PORT_MAC, dst=ROUTER_MAC) / IPv6(src="fd00::112", dst=CLIENT6) / TCP(
         sport=80, dport=54001, flags="A", seq=1, ack=ISN6 + 1 + 6, options=[("NOP", None), ("SAck", (ISN6 + 48, ISN6 + 148))])))

json.dump(cases, sys.stdout, indent=1)
sys.stdout.write("\n")
