"""TRex stateless (STL) profile: many client flows to a Fulcrum VIP, for real hardware.

Not runnable on the project's development machines (no TRex, no NICs for DPDK there); it is
here for a lab with a TRex box cabled to the balancer. See perf/trex/README.md.

    trex-console> start -f fulcrum_vip.py -m 10mpps -p 0 \\
        -t vip=198.51.100.1,dport=80,clients=65536,ports=16,syn_share=0.0,size=64

Each stream's field engine draws (client address, client port) from a tuple generator, so
the flow count is `clients * ports` distinct 5-tuples, all to `vip:dport`:

- stream 0, "established": TCP ACK (with payload up to `size`) on every flow, a share
  `1 - syn_share` of the rate: flows the balancer has already seen after the first pass.
- stream 1, "syn": TCP SYN from a different client range, a share `syn_share` of the rate:
  every packet a flow the balancer has not seen (with `syn_clients` large enough that the
  generator does not come back to a tuple before the balancer's flow table evicted it).
- with `udp=1`, stream 0 is UDP instead of TCP (to the same dport).

Sizes are wire sizes with FCS, as TRex's `-m` rates count them. The destination MAC is the
balancer port's (`dst_mac`), as Fulcrum drops unicast frames not addressed to it.
"""

from trex_stl_lib.api import (
    STLProfile,
    STLPktBuilder,
    STLScVmRaw,
    STLStream,
    STLTXCont,
    STLVmFixChecksumHw,
    STLVmFixIpv4,
    STLVmTupleGen,
    STLVmWrFlowVar,
    CTRexVmInsFixHwCs,
)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether


def _ip_plus(base, n):
    parts = [int(x) for x in base.split(".")]
    v = (parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]) + n
    return ".".join(str((v >> s) & 0xFF) for s in (24, 16, 8, 0))


class FulcrumVip:
    def _stream(self, name, l4, client_base, clients, ports, size, dst_mac, vip, share, udp):
        base = Ether(dst=dst_mac) / IP(src=client_base, dst=vip, ttl=64) / l4
        # Wire size includes the 4-byte FCS that the NIC adds.
        pad = max(0, size - 4 - len(base))
        pkt = base / (b"\x00" * pad)
        vm = STLScVmRaw(
            [
                STLVmTupleGen(
                    name="t",
                    ip_min=client_base,
                    ip_max=_ip_plus(client_base, clients - 1),
                    port_min=32768,
                    port_max=32768 + ports - 1,
                ),
                STLVmWrFlowVar(fv_name="t.ip", pkt_offset="IP.src"),
                STLVmWrFlowVar(fv_name="t.port", pkt_offset=("UDP" if udp else "TCP") + ".sport"),
                STLVmFixIpv4(offset="IP"),
                STLVmFixChecksumHw(
                    l3_offset="IP",
                    l4_offset="UDP" if udp else "TCP",
                    l4_type=CTRexVmInsFixHwCs.L4_TYPE_UDP if udp else CTRexVmInsFixHwCs.L4_TYPE_TCP,
                ),
            ]
        )
        return STLStream(
            name=name,
            packet=STLPktBuilder(pkt=pkt, vm=vm),
            mode=STLTXCont(percentage=100.0 * share),
        )

    def get_streams(
        self,
        direction=0,
        vip="198.51.100.1",
        dport=80,
        dst_mac="02:00:00:00:00:01",
        clients=65536,
        ports=16,
        syn_share=0.0,
        syn_clients=1 << 20,
        size=64,
        udp=0,
        **kwargs,
    ):
        dport, clients, ports = int(dport), int(clients), int(ports)
        size, udp, syn_share = int(size), int(udp), float(syn_share)
        streams = []
        if syn_share < 1.0:
            l4 = UDP(dport=dport) if udp else TCP(dport=dport, flags="PA", seq=1, ack=1)
            streams.append(
                self._stream("established", l4, "16.0.0.0", clients, ports, size, dst_mac, vip,
                             1.0 - syn_share, udp)
            )
        if syn_share > 0.0:
            streams.append(
                self._stream("syn", TCP(dport=dport, flags="S", seq=1), "48.0.0.0",
                             int(syn_clients), 16, size, dst_mac, vip, syn_share, False)
            )
        return streams


def register():
    return FulcrumVip()
