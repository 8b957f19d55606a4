//! `[[port]]`: names, devices, MACs, the balancer's own addresses (which define the on-link
//! subnets) and static neighbours.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use super::{Checker, list_or_none, range_i64};
use crate::model::*;
use crate::schema;

/// What later checks need to know about the ports.
pub(super) struct Ports {
    pub(super) ports: Vec<Port>,
    /// Own address -> name of its port, for "VIP/backend is an own address".
    pub(super) own: HashMap<IpAddr, String>,
    /// False when some port address was invalid or no port exists: on-link checks would then
    /// report backends that are in fact fine, so they are skipped.
    pub(super) subnets_known: bool,
}

impl Checker<'_> {
    pub(super) fn ports(&mut self, tables: &[schema::PortTable]) -> Ports {
        let mut out = Ports {
            ports: Vec::new(),
            own: HashMap::new(),
            subnets_known: !tables.is_empty(),
        };
        if tables.is_empty() {
            self.error(
                0..0,
                "port",
                "no [[port]] table; at least one data port is needed (see conf/examples/minimal.toml)",
            );
        }
        let mut names: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        let mut devices: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        let mut kernel_names: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        // Own address -> the port and span that first claimed it.
        let mut claimed: HashMap<IpAddr, (usize, Range<usize>)> = HashMap::new();
        for (pi, t) in tables.iter().enumerate() {
            let f = |key: &str| format!("port[{pi}].{key}");
            self.name(&t.name, &f("name"), "port");
            self.unique(&mut names, &t.name, pi, &f("name"), "port name", "port");

            let device = t.device.get_ref();
            if device.trim().is_empty() {
                self.error(
                    t.device.span(),
                    f("device"),
                    "device is empty; give a PCI address like \"0000:03:00.0\" or a vdev like \
                     \"net_af_packet0,iface=eth1\"",
                );
            } else if device.chars().any(char::is_whitespace) {
                self.error(
                    t.device.span(),
                    f("device"),
                    format!("device {device:?} contains whitespace"),
                );
            }
            self.unique(&mut devices, &t.device, pi, &f("device"), "device", "port");

            let mac = t.mac.as_ref().and_then(|m| self.mac(m, &f("mac")));

            if self.dropped.contains(&f("addresses")) {
                // Its subnets are unknown: on-link checks would refuse backends that are fine.
                out.subnets_known = false;
            }
            let mut addresses = Vec::new();
            for (ai, a) in t.addresses.iter().flatten().enumerate() {
                let field = format!("port[{pi}].addresses[{ai}]");
                let Some(ifa) = self.if_addr(a, &field) else {
                    out.subnets_known = false;
                    continue;
                };
                if let Some((other, first)) = claimed.get(&ifa.addr) {
                    let line = self.line_of(first);
                    self.error(
                        a.span(),
                        field,
                        format!(
                            "address {} is already assigned to port[{other}] (line {line})",
                            ifa.addr
                        ),
                    );
                    continue;
                }
                claimed.insert(ifa.addr, (pi, a.span()));
                out.own.insert(ifa.addr, t.name.get_ref().clone());
                addresses.push(ifa);
            }

            let mut neighbors: Vec<(IpAddr, MacAddr)> = Vec::new();
            let mut neigh_seen: HashMap<IpAddr, usize> = HashMap::new();
            for (ni, n) in t.neighbors.iter().flatten().enumerate() {
                let field = format!("port[{pi}].neighbors[{ni}]");
                let ip = self.ip(&n.ip, &format!("{field}.ip"), "ip");
                let nmac = self.mac(&n.mac, &format!("{field}.mac"));
                let Some(ip) = ip else { continue };
                let first = *neigh_seen.entry(ip).or_insert(ni);
                if first != ni {
                    self.error(
                        n.ip.span(),
                        format!("{field}.ip"),
                        format!("neighbor {ip} is already listed as neighbors[{first}]"),
                    );
                    continue;
                }
                if addresses.iter().any(|a| a.addr == ip) {
                    self.error(
                        n.ip.span(),
                        format!("{field}.ip"),
                        format!(
                            "neighbor {ip} is this port's own address; a neighbour is another host"
                        ),
                    );
                } else if out.subnets_known && !addresses.iter().any(|a| a.contains(ip)) {
                    self.error(
                        n.ip.span(),
                        format!("{field}.ip"),
                        format!(
                            "neighbor {ip} is not in a subnet of this port ({}); a static neighbour \
                             must be on-link",
                            list_or_none(&addresses)
                        ),
                    );
                }
                if let Some(nmac) = nmac {
                    neighbors.push((ip, nmac));
                }
            }

            let kernel_interface = t.kernel_interface.as_ref().and_then(|k| {
                let field = f("kernel_interface");
                self.unique(&mut kernel_names, k, pi, &field, "kernel interface", "port");
                self.interface_name(k, &field)
            });
            let mtu = self.mtu(t, pi, &addresses);

            out.ports.push(Port {
                name: t.name.get_ref().clone(),
                device: device.clone(),
                mac,
                mtu,
                addresses,
                neighbors,
                kernel_interface,
            });
        }
        out
    }

    /// Port `pi`'s `mtu`: in [`Port::MTU_RANGE`], and at least IPv6's minimum link MTU when
    /// the port has an IPv6 address (a smaller one could not carry IPv6 at all).
    fn mtu(&mut self, t: &schema::PortTable, pi: usize, addresses: &[IfAddr]) -> u16 {
        let field = format!("port[{pi}].mtu");
        let mtu = self.opt_int(
            &t.mtu,
            &field,
            "mtu",
            range_i64(&Port::MTU_RANGE),
            Port::DEFAULT_MTU,
        );
        if let (Some(v), Some(a6)) = (&t.mtu, addresses.iter().find(|a| a.addr.is_ipv6()))
            && mtu < Port::MTU_MIN_V6
        {
            self.error(
                v.span(),
                field,
                format!(
                    "mtu {mtu} is below {}, IPv6's minimum link MTU, and this port has the IPv6 \
                     address {a6}",
                    Port::MTU_MIN_V6
                ),
            );
        }
        mtu
    }
}
