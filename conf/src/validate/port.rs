//! `[[port]]`: names, devices, MACs, the balancer's own addresses (which define the on-link
//! subnets), static neighbours and routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use super::{Checker, family, list_or_none, range_i64};
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
    /// False when some route was invalid: "no route reaches the backend" could then be wrong,
    /// so it is not said.
    pub(super) routes_known: bool,
}

impl Checker<'_> {
    pub(super) fn ports(&mut self, tables: &[schema::PortTable]) -> Ports {
        let mut out = Ports {
            ports: Vec::new(),
            own: HashMap::new(),
            subnets_known: !tables.is_empty(),
            routes_known: true,
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
        // Route prefix -> the port and span that first listed it (over every port: the same
        // prefix on two ports would leave the choice of port to file order).
        let mut prefixes: HashMap<IfAddr, (usize, Range<usize>)> = HashMap::new();
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
            if self.dropped.contains(&f("routes")) {
                out.routes_known = false;
            }
            let routes = self.routes(t, pi, &addresses, &mut prefixes, &mut out);

            out.ports.push(Port {
                name: t.name.get_ref().clone(),
                device: device.clone(),
                mac,
                mtu,
                addresses,
                neighbors,
                kernel_interface,
                routes,
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

impl Checker<'_> {
    /// Port `pi`'s routes: each prefix without host bits and listed once over every port, each
    /// gateway a unicast address of the prefix's family, on-link on this port and not the
    /// port's own.
    fn routes(
        &mut self,
        t: &schema::PortTable,
        pi: usize,
        addresses: &[IfAddr],
        prefixes: &mut HashMap<IfAddr, (usize, Range<usize>)>,
        out: &mut Ports,
    ) -> Vec<Route> {
        let list = t.routes.as_deref().unwrap_or_default();
        if list.len() > Port::ROUTES_MAX {
            self.error(
                list[Port::ROUTES_MAX].prefix.span(),
                format!("port[{pi}].routes"),
                format!(
                    "port has {} routes; at most {}: summarise prefixes or use a default route",
                    list.len(),
                    Port::ROUTES_MAX
                ),
            );
        }
        let mut routes = Vec::new();
        for (ri, r) in list.iter().enumerate().take(Port::ROUTES_MAX) {
            let field = format!("port[{pi}].routes[{ri}]");
            let prefix = self.prefix(&r.prefix, &format!("{field}.prefix"));
            let via = self.ip(&r.via, &format!("{field}.via"), "via");
            let (Some(prefix), Some(via)) = (prefix, via) else {
                out.routes_known = false;
                continue;
            };
            if !self.route(r, &field, prefix, via, addresses, out.subnets_known) {
                out.routes_known = false;
                continue;
            }
            if let Some((first, span)) = prefixes.get(&prefix) {
                let line = self.line_of(span);
                self.error(
                    r.prefix.span(),
                    format!("{field}.prefix"),
                    format!(
                        "prefix {prefix} already has a route (port[{first}], line {line}); \
                         a prefix is listed once"
                    ),
                );
                continue;
            }
            prefixes.insert(prefix, (pi, r.prefix.span()));
            routes.push(Route { prefix, via });
        }
        routes
    }

    /// One route's gateway against its prefix and the port's addresses. False (after
    /// reporting) when it is unusable.
    fn route(
        &mut self,
        r: &schema::RouteTable,
        field: &str,
        prefix: IfAddr,
        via: IpAddr,
        addresses: &[IfAddr],
        subnets_known: bool,
    ) -> bool {
        let vf = format!("{field}.via");
        if !self.unicast_ip(via, r.via.span(), &vf, "via") {
            return false;
        }
        if via.is_ipv4() != prefix.addr.is_ipv4() {
            self.error(
                r.via.span(),
                vf,
                format!(
                    "via {via} is {} but the prefix {prefix} is {}; a gateway forwards its own family",
                    family(via),
                    family(prefix.addr)
                ),
            );
            return false;
        }
        if addresses.iter().any(|a| a.addr == via) {
            self.error(
                r.via.span(),
                vf,
                format!("via {via} is this port's own address; a gateway is another host"),
            );
            return false;
        }
        if subnets_known && !addresses.iter().any(|a| a.contains(via)) {
            let subnets: Vec<IfAddr> = addresses
                .iter()
                .copied()
                .filter(|a| a.addr.is_ipv4() == via.is_ipv4())
                .collect();
            self.error(
                r.via.span(),
                vf,
                format!(
                    "via {via} is not in an {} subnet of this port ({}); a gateway must be on-link \
                     on the port of its route",
                    family(via),
                    list_or_none(&subnets)
                ),
            );
            return false;
        }
        true
    }
}
