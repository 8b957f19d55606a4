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
import sys

from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6EchoReply, ICMPv6EchoRequest, \
    ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrFragment, \
    IPv6ExtHdrHopByHop, Raw, raw

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

unr = eth() / IP(src=CLIENT, dst="10.0.0.100") / ICMP(type=3, code=1) / Raw(b"\x45" + b"\x00" * 27)
case("icmp: other ICMP to a VIP is counted, not forwarded", unr, "drop:icmp_unhandled")

ping6 = eth() / IPv6(src=CLIENT6, dst="fd00::100", hlim=50) / ICMPv6EchoRequest(id=1, seq=2, data=b"v6ping")
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IPv6(src="fd00::100", dst=CLIENT6, hlim=64) / ICMPv6EchoReply(id=1, seq=2, data=b"v6ping")
case("icmpv6: echo to a VIP answered", ping6, "reply", rebuilt(exp))

ns = Ether(src=CLIENT_MAC, dst="33:33:ff:00:01:00") / IPv6(src=CLIENT6, dst="ff02::1:ff00:100", hlim=255) / ICMPv6ND_NS(tgt="fd00::100") / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT_MAC)
exp = Ether(src=PORT_MAC, dst=CLIENT_MAC) / IPv6(src="fd00::100", dst=CLIENT6, hlim=255) / ICMPv6ND_NA(tgt="fd00::100", R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=PORT_MAC)
case("nd: solicitation for a v6 VIP answered with an advertisement", ns, "reply", rebuilt(exp))

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

json.dump(cases, sys.stdout, indent=1)
sys.stdout.write("\n")
