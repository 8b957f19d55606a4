//! Schema -> runtime model. Every check runs even after an earlier one failed, so the operator
//! sees every problem of a file at once, each at the position of the value to fix. Checks that
//! depend on another value (a backend on-link in a port's subnet) are skipped when that value
//! was itself invalid, so one mistake does not cascade into a page of errors.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;

use toml::Spanned;

use crate::error::{Diagnostic, Locator};
use crate::model::*;
use crate::schema::{self, Document, Int};

mod health;

/// Validates a deserialized document. `Err` holds at least one diagnostic, in check order.
pub(crate) fn validate(doc: Document, loc: &Locator<'_>) -> Result<Config, Vec<Diagnostic>> {
    let mut c = Checker {
        loc,
        diags: Vec::new(),
    };
    let dpdk = c.dpdk(&doc.dpdk);
    let global = c.global(&doc.global);
    let ports = c.ports(&doc.port);
    let services = c.services(&doc.service, &ports);
    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    Ok(Config {
        path: loc.path.to_owned(),
        dpdk,
        global,
        ports: ports.ports,
        services,
    })
}

struct Checker<'a> {
    loc: &'a Locator<'a>,
    diags: Vec<Diagnostic>,
}

/// What later checks need to know about the ports.
struct Ports {
    ports: Vec<Port>,
    /// Own address -> name of its port, for "VIP/backend is an own address".
    own: HashMap<IpAddr, String>,
    /// False when some port address was invalid or no port exists: on-link checks would then
    /// report backends that are in fact fine, so they are skipped.
    subnets_known: bool,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let d = self.loc.diagnostic(span.start, field, message);
        // A value shared by several backends (a service's health key) is checked once per
        // backend in some cross-key checks: report it once.
        if !self.diags.contains(&d) {
            self.diags.push(d);
        }
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        crate::error::line_col(self.loc.text, span.start).0
    }

    // ---- [dpdk] -------------------------------------------------------------------------

    fn dpdk(&mut self, t: &schema::DpdkTable) -> Dpdk {
        let d = Dpdk::default();
        let mut workers = Vec::new();
        if let Some(list) = &t.workers {
            if list.get_ref().is_empty() {
                self.error(
                    list.span(),
                    "dpdk.workers",
                    "workers is empty; at least one worker CPU is needed",
                );
            }
            let mut seen: HashMap<usize, usize> = HashMap::new();
            for (i, cpu) in list.get_ref().iter().enumerate() {
                let field = format!("dpdk.workers[{i}]");
                let Some(id) =
                    self.int::<usize>(cpu, &field, "worker CPU", 0..=Dpdk::MAX_CPU as i64)
                else {
                    continue;
                };
                let first = *seen.entry(id).or_insert(i);
                if first != i {
                    self.error(
                        cpu.span(),
                        field,
                        format!(
                            "CPU {id} is already worker {first}; each worker needs a CPU of its own"
                        ),
                    );
                } else {
                    workers.push(id);
                }
            }
        } else {
            workers = d.workers.clone();
        }
        let slowpath_cpu = t.slowpath_cpu.as_ref().and_then(|v| {
            let id = self.int::<usize>(v, "dpdk.slowpath_cpu", "slowpath_cpu", 0..=Dpdk::MAX_CPU as i64)?;
            if let Some(w) = workers.iter().position(|&w| w == id) {
                self.error(
                    v.span(),
                    "dpdk.slowpath_cpu",
                    format!(
                        "slowpath_cpu {id} is also worker {w}'s CPU; a busy-polling worker would starve \
                         the slow path, give it a CPU that is not in workers"
                    ),
                );
            }
            Some(id)
        });
        let mbufs = self.opt_int(
            &t.mbufs,
            "dpdk.mbufs",
            "mbufs",
            Dpdk::MBUFS_MIN as i64..=u32::MAX as i64,
            d.mbufs,
        );
        let mbuf_cache = self.opt_int(
            &t.mbuf_cache,
            "dpdk.mbuf_cache",
            "mbuf_cache",
            0..=Dpdk::MBUF_CACHE_MAX as i64,
            d.mbuf_cache,
        );
        let mbuf_data_room = self.opt_int(
            &t.mbuf_data_room,
            "dpdk.mbuf_data_room",
            "mbuf_data_room",
            range_i64(&Dpdk::MBUF_DATA_ROOM_RANGE),
            d.mbuf_data_room,
        );
        let rx_descriptors =
            self.descriptors(&t.rx_descriptors, "rx_descriptors", d.rx_descriptors);
        let tx_descriptors =
            self.descriptors(&t.tx_descriptors, "tx_descriptors", d.tx_descriptors);
        let burst = self.opt_int(
            &t.burst,
            "dpdk.burst",
            "burst",
            range_i64(&Dpdk::BURST_RANGE),
            d.burst,
        );
        let idle_sleep_us = self.opt_int(
            &t.idle_sleep_us,
            "dpdk.idle_sleep_us",
            "idle_sleep_us",
            0..=Dpdk::IDLE_SLEEP_MAX_US as i64,
            d.idle_sleep_us,
        );
        Dpdk {
            eal_args: t.eal_args.clone().unwrap_or(d.eal_args),
            workers,
            slowpath_cpu,
            mbufs,
            mbuf_cache,
            mbuf_data_room,
            rx_descriptors,
            tx_descriptors,
            burst,
            idle_sleep_us,
        }
    }

    fn descriptors(&mut self, v: &Option<Spanned<Int>>, key: &str, default: u16) -> u16 {
        let Some(v) = v else { return default };
        let field = format!("dpdk.{key}");
        let Some(n) = self.int::<u16>(v, &field, key, range_i64(&Dpdk::DESCRIPTORS_RANGE)) else {
            return default;
        };
        if !n.is_power_of_two() {
            let lower = 1u16 << (15 - n.leading_zeros());
            self.error(
                v.span(),
                field,
                format!(
                    "{key} {n} is not a power of two; use {lower} or {}",
                    u32::from(lower) * 2
                ),
            );
        }
        n
    }

    // ---- [global] -----------------------------------------------------------------------

    fn global(&mut self, t: &schema::GlobalTable) -> Global {
        let d = Global::default();
        let hash_seed = self.opt_int(
            &t.hash_seed,
            "global.hash_seed",
            "hash_seed",
            0..=i64::MAX,
            d.hash_seed,
        );
        let maglev_table_size = match &t.maglev_table_size {
            None => d.maglev_table_size,
            Some(v) => {
                let field = "global.maglev_table_size";
                match self.int::<u32>(
                    v,
                    field,
                    "maglev_table_size",
                    range_i64(&Global::MAGLEV_TABLE_SIZE_RANGE),
                ) {
                    Some(n) if !is_prime(n) => {
                        let (below, above) = nearest_primes(n);
                        let hint = match (below, above) {
                            (Some(b), Some(a)) => format!("the nearest primes are {b} and {a}"),
                            (Some(p), None) | (None, Some(p)) => {
                                format!("the nearest prime is {p}")
                            }
                            (None, None) => "choose a prime".to_owned(),
                        };
                        self.error(
                            v.span(),
                            field,
                            format!("maglev_table_size {n} is not prime (Maglev needs a prime size); {hint}"),
                        );
                        d.maglev_table_size
                    }
                    Some(n) => n,
                    None => d.maglev_table_size,
                }
            }
        };
        let flow_table_capacity = self.opt_int(
            &t.flow_table_capacity,
            "global.flow_table_capacity",
            "flow_table_capacity",
            range_i64(&Global::FLOW_TABLE_CAPACITY_RANGE),
            d.flow_table_capacity,
        );
        let control_socket = match &t.control_socket {
            None => d.control_socket,
            Some(v) => {
                let s = v.get_ref();
                let field = "global.control_socket";
                if s.is_empty() {
                    self.error(
                        v.span(),
                        field,
                        "control_socket is empty; give a path like \"/run/fulcrum/fulcrum.sock\"",
                    );
                } else if s.contains('\0') {
                    self.error(v.span(), field, "control_socket contains a NUL character");
                } else if s.len() > Global::CONTROL_SOCKET_MAX_LEN {
                    self.error(
                        v.span(),
                        field,
                        format!(
                            "control_socket is {} bytes long; a Unix socket path can have at most {}",
                            s.len(),
                            Global::CONTROL_SOCKET_MAX_LEN
                        ),
                    );
                }
                PathBuf::from(s)
            }
        };
        let metrics_listen = t.metrics_listen.as_ref().and_then(|v| {
            let parsed = v.get_ref().parse::<SocketAddr>();
            if parsed.is_err() {
                self.error(
                    v.span(),
                    "global.metrics_listen",
                    format!(
                        "metrics_listen {:?} is not an IP address with a port, like \"127.0.0.1:9180\" or \
                         \"[::1]:9180\" (omit the key to disable metrics)",
                        v.get_ref()
                    ),
                );
            }
            parsed.ok()
        });
        let dt = Timeouts::default();
        let tt = &t.timeouts;
        let range = range_i64(&Timeouts::RANGE);
        let timeouts = Timeouts {
            tcp_syn: self.opt_int(
                &tt.tcp_syn,
                "global.timeouts.tcp_syn",
                "tcp_syn",
                range.clone(),
                dt.tcp_syn,
            ),
            tcp_established: self.opt_int(
                &tt.tcp_established,
                "global.timeouts.tcp_established",
                "tcp_established",
                range.clone(),
                dt.tcp_established,
            ),
            tcp_closing: self.opt_int(
                &tt.tcp_closing,
                "global.timeouts.tcp_closing",
                "tcp_closing",
                range.clone(),
                dt.tcp_closing,
            ),
            udp: self.opt_int(&tt.udp, "global.timeouts.udp", "udp", range, dt.udp),
        };
        Global {
            hash_seed,
            maglev_table_size,
            flow_table_capacity,
            timeouts,
            control_socket,
            metrics_listen,
            control_optional: t.control_optional.as_ref().is_some_and(|b| *b.get_ref()),
            health: self.health_global(&t.health),
            neighbors: self.neighbor_settings(&t.neighbors),
        }
    }

    // ---- [[port]] -----------------------------------------------------------------------

    fn ports(&mut self, tables: &[schema::PortTable]) -> Ports {
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

            out.ports.push(Port {
                name: t.name.get_ref().clone(),
                device: device.clone(),
                mac,
                addresses,
                neighbors,
            });
        }
        out
    }

    // ---- [[service]] --------------------------------------------------------------------

    fn services(&mut self, tables: &[schema::ServiceTable], ports: &Ports) -> Vec<Service> {
        let mut names: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        let mut listeners = Listeners::new();
        let mut services = Vec::new();
        // Backends are checked against every VIP, including those of later services.
        let vips: HashMap<IpAddr, usize> = tables
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.vip.get_ref().parse().ok()?, i)))
            .collect();
        let mut tracks = Vec::new();

        for (si, t) in tables.iter().enumerate() {
            let f = |key: &str| format!("service[{si}].{key}");
            self.name(&t.name, &f("name"), "service");
            self.unique(
                &mut names,
                &t.name,
                si,
                &f("name"),
                "service name",
                "service",
            );

            let vip = self.ip(&t.vip, &f("vip"), "vip");
            if let Some(vip) = vip {
                self.unicast_ip(vip, t.vip.span(), &f("vip"), "vip");
                if let Some(port) = ports.own.get(&vip) {
                    self.error(
                        t.vip.span(),
                        f("vip"),
                        format!(
                            "vip {vip} is the balancer's own address on port {port:?}; a VIP must be \
                             an address of its own"
                        ),
                    );
                }
            }
            let protocol = self.choice(
                &t.protocol,
                &f("protocol"),
                "protocol",
                &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
            );
            let port = t.port.as_ref().and_then(|p| {
                if p.get_ref().0 == 0 {
                    self.error(
                        p.span(),
                        f("port"),
                        "port 0 is not a port; omit `port` to serve every port of the VIP",
                    );
                    return None;
                }
                self.int::<u16>(p, &f("port"), "port", 1..=65535)
            });
            let forwarding = self.choice(
                &t.forwarding,
                &f("forwarding"),
                "forwarding",
                &[("dsr", Forwarding::Dsr), ("nat", Forwarding::Nat)],
            );
            let hash = self.choice(
                &t.hash,
                &f("hash"),
                "hash",
                &[
                    ("5-tuple", HashKey::FiveTuple),
                    ("source-ip", HashKey::SourceIp),
                ],
            );
            let on_empty = self.choice(
                &t.on_empty,
                &f("on_empty"),
                "on_empty",
                &[("reset", OnEmpty::Reset), ("drop", OnEmpty::Drop)],
            );

            // A port that failed to parse is left out of the overlap check rather than being
            // taken for "every port".
            if let (Some(vip), true) = (vip, t.port.is_none() || port.is_some()) {
                self.claim_listener(&mut listeners, tables, si, (vip, protocol, port));
            }

            let (on_change, state_file) = self.hook(t, si);
            let allow = self.prefixes(&t.allow, &f("allow"));
            let deny = self.prefixes(&t.deny, &f("deny"));
            let health = t
                .health
                .as_ref()
                .map(|h| self.health_table(h, &f("health")));
            if let Some(h) = &health {
                self.health_keys_apply(h, h.kind());
            }
            let ctx = ServiceCtx {
                si,
                vip,
                port,
                forwarding,
                ports,
                vips: &vips,
                tables,
                health: health.as_ref(),
            };
            let backends = self.backends(&t.backend, &ctx, &mut tracks);
            services.push(Service {
                name: t.name.get_ref().clone(),
                vip: vip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                protocol,
                port,
                forwarding,
                hash,
                on_empty,
                backends,
                on_change,
                state_file,
                allow,
                deny,
            });
        }
        self.resolve_tracks(&mut services, &tracks);
        services
    }

    /// Records service `si` as the holder of its VIP, protocol and port (or every port), or
    /// reports the earlier service that already holds it or overlaps it.
    fn claim_listener(
        &mut self,
        listeners: &mut Listeners,
        tables: &[schema::ServiceTable],
        si: usize,
        (vip, protocol, port): (IpAddr, Protocol, Option<u16>),
    ) {
        let t = &tables[si];
        let holders = listeners.entry((vip, protocol)).or_default();
        let clash = holders
            .iter()
            .find(|h| h.port.is_none() || port.is_none() || h.port == port);
        let Some(holder) = clash else {
            holders.push(Listener {
                service: si,
                port,
                vip_span: t.vip.span(),
            });
            return;
        };
        let other = tables[holder.service].name.get_ref();
        let line = self.line_of(&holder.vip_span);
        let name = t.name.get_ref();
        let proto = protocol_name(protocol);
        let message = match (port, holder.port) {
            (Some(p), Some(_)) => format!(
                "service {name:?} listens on {proto} {} like service {other:?} (line {line}); \
                 a VIP, protocol and port can belong to one service only",
                endpoint(vip, Some(p)),
            ),
            (None, _) => format!(
                "service {name:?} takes every {proto} port of {vip}, which overlaps service \
                 {other:?} (line {line}); give it a `port` or move one of them to another VIP",
            ),
            (Some(p), None) => format!(
                "{proto} port {p} of {vip} is already served by service {other:?} (line {line}), \
                 which takes every port of that VIP",
            ),
        };
        // Point at the port when there is one: that is usually the value to change.
        match &t.port {
            Some(p) => self.error(p.span(), format!("service[{si}].port"), message),
            None => self.error(t.vip.span(), format!("service[{si}].vip"), message),
        }
    }

    fn backends(
        &mut self,
        tables: &[schema::BackendTable],
        s: &ServiceCtx<'_>,
        tracks: &mut Vec<health::PendingTrack>,
    ) -> Vec<Backend> {
        let si = s.si;
        let mut names: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        let mut endpoints: HashMap<(IpAddr, Option<u16>), usize> = HashMap::new();
        let mut out = Vec::new();
        for (bi, t) in tables.iter().enumerate() {
            let f = |key: &str| format!("service[{si}].backend[{bi}].{key}");
            self.name(&t.name, &f("name"), "backend");
            self.unique(
                &mut names,
                &t.name,
                bi,
                &f("name"),
                "backend name",
                "backend",
            );

            let port = t.port.as_ref().and_then(|p| {
                if s.forwarding == Forwarding::Dsr {
                    self.error(
                        p.span(),
                        f("port"),
                        "a backend port needs forwarding = \"nat\": DSR forwards the packet unchanged \
                         and cannot change its port; remove `port` or switch the service to NAT",
                    );
                    return None;
                }
                if p.get_ref().0 == 0 {
                    self.error(
                        p.span(),
                        f("port"),
                        "port 0 is not a valid NAT target; omit `port` to keep the client's destination port",
                    );
                    return None;
                }
                self.int::<u16>(p, &f("port"), "port", 1..=65535)
            });

            let address = self.ip(&t.address, &f("address"), "address");
            if let Some(addr) = address {
                self.backend_address(addr, t, &f("address"), s);
                if let Some(first) = endpoints.insert((addr, port), bi) {
                    let first_name = tables[first].name.get_ref();
                    self.error(
                        t.address.span(),
                        f("address"),
                        format!(
                            "backend {} is already backend[{first}] ({first_name:?}) of this service; \
                             each address and port can be listed once",
                            endpoint(addr, port)
                        ),
                    );
                }
            }

            let weight = self.opt_int(
                &t.weight,
                &f("weight"),
                "weight",
                range_i64(&Backend::WEIGHT_RANGE),
                Backend::DEFAULT_WEIGHT,
            );
            let mac = t.mac.as_ref().and_then(|m| self.mac(m, &f("mac")));
            let admin = self.choice(
                &t.admin,
                &f("admin"),
                "admin",
                &[
                    ("enabled", AdminState::Enabled),
                    ("drain", AdminState::Drain),
                    ("disabled", AdminState::Disabled),
                ],
            );
            let own = t
                .health
                .as_ref()
                .map(|h| self.health_table(h, &f("health")));
            let merged = match (s.health, &own) {
                (Some(svc), Some(own)) => Some(svc.overlay(own)),
                (Some(svc), None) => Some(svc.clone()),
                (None, Some(own)) => Some(own.clone()),
                (None, None) => None,
            };
            if let (Some(own), Some(merged)) = (&own, &merged) {
                self.health_keys_apply(own, merged.kind());
            }
            let health = match &t.track {
                Some(v) => {
                    self.track(v, t.health.as_ref(), si, bi, tracks);
                    None
                }
                None => merged
                    .as_ref()
                    .and_then(|m| self.health_check(m, port.or(s.port))),
            };
            out.push(Backend {
                name: t.name.get_ref().clone(),
                address: address.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                port,
                weight,
                backup: t.backup.as_ref().is_some_and(|b| *b.get_ref()),
                mac,
                admin,
                health,
                track: None,
            });
        }
        out
    }

    fn backend_address(
        &mut self,
        addr: IpAddr,
        t: &schema::BackendTable,
        field: &str,
        s: &ServiceCtx<'_>,
    ) {
        let span = t.address.span();
        if !self.unicast_ip(addr, span.clone(), field, "address") {
            return;
        }
        if let Some(port_name) = s.ports.own.get(&addr) {
            self.error(
                span,
                field,
                format!(
                    "backend address {addr} is the balancer's own address on port {port_name:?}"
                ),
            );
            return;
        }
        if let Some(&vi) = s.vips.get(&addr) {
            self.error(
                span,
                field,
                format!(
                    "backend address {addr} is the VIP of service {:?}; a backend must be a real host",
                    s.tables[vi].name.get_ref()
                ),
            );
            return;
        }
        if let (Forwarding::Nat, Some(vip)) = (s.forwarding, s.vip) {
            if vip.is_ipv4() != addr.is_ipv4() {
                self.error(
                    span,
                    field,
                    format!(
                        "backend address {addr} is {} but the VIP {vip} is {}; NAT cannot translate \
                         between address families",
                        family(addr),
                        family(vip)
                    ),
                );
                return;
            }
        }
        if s.ports.subnets_known
            && !s
                .ports
                .ports
                .iter()
                .flat_map(|p| &p.addresses)
                .any(|a| a.contains(addr))
        {
            let subnets: Vec<IfAddr> = s
                .ports
                .ports
                .iter()
                .flat_map(|p| p.addresses.iter().copied())
                .filter(|a| a.addr.is_ipv4() == addr.is_ipv4())
                .collect();
            self.error(
                span,
                field,
                format!(
                    "backend address {addr} is not on-link: it is in no {} subnet of any [[port]] ({}); \
                     Fulcrum reaches backends directly at layer 2",
                    family(addr),
                    list_or_none(&subnets)
                ),
            );
        }
    }

    // ---- value checks ----------------------------------------------------------------------

    /// An integer checked against `range` and converted to the model's type.
    fn int<T: TryFrom<i64>>(
        &mut self,
        v: &Spanned<Int>,
        field: &str,
        what: &str,
        range: RangeInclusive<i64>,
    ) -> Option<T> {
        let n = v.get_ref().0;
        if !range.contains(&n) {
            let message = if *range.end() >= i64::from(u32::MAX) && n < *range.start() {
                format!("{what} {n} is below the minimum {}", range.start())
            } else if *range.end() >= i64::from(u32::MAX) {
                format!("{what} {n} is above the maximum {}", range.end())
            } else {
                format!(
                    "{what} {n} is out of range {}..={}",
                    range.start(),
                    range.end()
                )
            };
            self.error(v.span(), field, message);
            return None;
        }
        // The range is within T by construction; a failure here is a bug in the range.
        T::try_from(n).ok()
    }

    /// An optional integer: the default when absent or invalid (invalid is already reported).
    fn opt_int<T: TryFrom<i64>>(
        &mut self,
        v: &Option<Spanned<Int>>,
        field: &str,
        what: &str,
        range: RangeInclusive<i64>,
        default: T,
    ) -> T {
        v.as_ref()
            .and_then(|v| self.int(v, field, what, range))
            .unwrap_or(default)
    }

    /// One of a fixed set of strings; the first option is the default.
    fn choice<T: Copy + Default>(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        what: &str,
        options: &[(&str, T)],
    ) -> T {
        let Some(v) = v else { return T::default() };
        if let Some((_, value)) = options.iter().find(|(name, _)| name == v.get_ref()) {
            return *value;
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
        let (last, rest) = names.split_last().expect("options are not empty");
        self.error(
            v.span(),
            field,
            format!(
                "{what} {:?} is not known; use {} or {last}",
                v.get_ref(),
                rest.join(", ")
            ),
        );
        T::default()
    }

    fn ip(&mut self, v: &Spanned<String>, field: &str, what: &str) -> Option<IpAddr> {
        let s = v.get_ref();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(ip);
        }
        let hint = if s.contains('/') {
            ": write the address alone, without a prefix length"
        } else if s.parse::<SocketAddr>().is_ok() {
            ": write the address alone, without a port"
        } else if s.contains(|c: char| c.is_ascii_alphabetic()) && !s.contains(':') {
            ": host names are not resolved, write the IP address"
        } else {
            ""
        };
        self.error(
            v.span(),
            field,
            format!("{what} {s:?} is not an IPv4 or IPv6 address{hint}"),
        );
        None
    }

    /// Rejects addresses no single host can own. Returns false (after reporting) if `ip` is one.
    fn unicast_ip(&mut self, ip: IpAddr, span: Range<usize>, field: &str, what: &str) -> bool {
        let problem = if ip.is_unspecified() {
            "the unspecified address"
        } else if ip.is_multicast() {
            "a multicast address"
        } else if ip.is_loopback() {
            "a loopback address"
        } else if ip == IpAddr::from([255, 255, 255, 255]) {
            "the broadcast address"
        } else {
            return true;
        };
        self.error(
            span,
            field,
            format!("{what} {ip} is {problem}; it must be a unicast address"),
        );
        false
    }

    /// Source prefixes of an access list: `addr/len` with no host bits set, or a bare address
    /// (one host).
    fn prefixes(&mut self, list: &[Spanned<String>], field: &str) -> Vec<IfAddr> {
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let s = v.get_ref();
            let (addr, len) = s.split_once('/').unwrap_or((s, ""));
            let Ok(addr) = addr.parse::<IpAddr>() else {
                self.error(
                    v.span(),
                    &field,
                    format!("prefix {s:?}: {addr:?} is not an IPv4 or IPv6 address"),
                );
                continue;
            };
            let max = if addr.is_ipv4() { 32u8 } else { 128 };
            let prefix_len = if len.is_empty() {
                max
            } else {
                match len.parse::<u8>() {
                    Ok(p) if p <= max => p,
                    _ => {
                        self.error(
                            v.span(),
                            &field,
                            format!("prefix {s:?}: length {len:?} must be a number in 0..={max}"),
                        );
                        continue;
                    }
                }
            };
            let p = IfAddr { addr, prefix_len };
            let network = match addr {
                IpAddr::V4(a) => {
                    let mask = if prefix_len == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(prefix_len))
                    };
                    IpAddr::from(std::net::Ipv4Addr::from(u32::from(a) & mask))
                }
                IpAddr::V6(a) => {
                    let mask = if prefix_len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - u32::from(prefix_len))
                    };
                    IpAddr::from(std::net::Ipv6Addr::from(u128::from(a) & mask))
                }
            };
            if network != addr {
                self.error(
                    v.span(),
                    &field,
                    format!(
                        "prefix {s:?} has host bits set; did you mean \"{network}/{prefix_len}\"?"
                    ),
                );
                continue;
            }
            out.push(p);
        }
        out
    }

    /// `addr/prefix`, a unicast host address of its subnet.
    fn if_addr(&mut self, v: &Spanned<String>, field: &str) -> Option<IfAddr> {
        let s = v.get_ref();
        let Some((addr, prefix)) = s.split_once('/') else {
            let example = if s.contains(':') { "/64" } else { "/24" };
            self.error(
                v.span(),
                field,
                format!("address {s:?} needs a prefix length, e.g. \"{s}{example}\": it defines the on-link subnet"),
            );
            return None;
        };
        let Ok(addr) = addr.parse::<IpAddr>() else {
            self.error(
                v.span(),
                field,
                format!("address {s:?}: {addr:?} is not an IPv4 or IPv6 address"),
            );
            return None;
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => {
                self.error(
                    v.span(),
                    field,
                    format!(
                        "address {s:?}: prefix length {prefix:?} must be a number in 0..={max}"
                    ),
                );
                return None;
            }
        };
        if !self.unicast_ip(addr, v.span(), field, "address") {
            return None;
        }
        if let IpAddr::V4(a) = addr {
            // /31 and /32 have no network or broadcast address (RFC 3021).
            if prefix_len <= 30 {
                let host_mask = u32::MAX >> prefix_len;
                let host = u32::from(a) & host_mask;
                if host == 0 || host == host_mask {
                    let which = if host == 0 { "network" } else { "broadcast" };
                    self.error(
                        v.span(),
                        field,
                        format!("address {s:?} is the {which} address of its subnet; give the port's own host address"),
                    );
                    return None;
                }
            }
        }
        Some(IfAddr { addr, prefix_len })
    }

    fn mac(&mut self, v: &Spanned<String>, field: &str) -> Option<MacAddr> {
        let s = v.get_ref();
        let Ok(mac) = s.parse::<MacAddr>() else {
            self.error(
                v.span(),
                field,
                format!("mac {s:?} is not a MAC address; write six hex pairs separated by ':', e.g. \"02:00:00:00:00:01\""),
            );
            return None;
        };
        if !mac.is_unicast() {
            let what = if mac.is_multicast() {
                "a multicast or broadcast"
            } else {
                "the all-zero"
            };
            self.error(
                v.span(),
                field,
                format!("mac {mac} is {what} address; an interface needs a unicast MAC (even first octet, not all zero)"),
            );
            return None;
        }
        Some(mac)
    }

    /// Names appear in control-socket commands and metric labels, so they stay simple.
    fn name(&mut self, v: &Spanned<String>, field: &str, what: &str) {
        let s = v.get_ref();
        let problem = if s.is_empty() {
            Some("is empty".to_owned())
        } else if s.len() > 64 {
            Some(format!("is {} bytes long (at most 64)", s.len()))
        } else if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            Some("may contain only ASCII letters, digits, '-', '_' and '.'".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(v.span(), field, format!("{what} name {s:?} {problem}"));
        }
    }

    /// Reports `v` if an earlier entry (index `seen[v]`) has the same value.
    fn unique(
        &mut self,
        seen: &mut HashMap<String, (usize, Range<usize>)>,
        v: &Spanned<String>,
        index: usize,
        field: &str,
        what: &str,
        table: &str,
    ) {
        match seen.get(v.get_ref()) {
            Some((first, span)) => {
                let line = self.line_of(span);
                self.error(
                    v.span(),
                    field,
                    format!(
                        "{what} {:?} is already used by {table}[{first}] (line {line})",
                        v.get_ref()
                    ),
                );
            }
            None => {
                seen.insert(v.get_ref().clone(), (index, v.span()));
            }
        }
    }
}

/// A service holding a (VIP, protocol) on one port or, with `port: None`, on all of them.
struct Listener {
    service: usize,
    port: Option<u16>,
    vip_span: Range<usize>,
}

/// The services on each (VIP, protocol) so far.
type Listeners = HashMap<(IpAddr, Protocol), Vec<Listener>>;

/// What a backend's checks need to know about its service and the rest of the file.
struct ServiceCtx<'a> {
    si: usize,
    vip: Option<IpAddr>,
    /// The service's port (`None`: every port).
    port: Option<u16>,
    forwarding: Forwarding,
    ports: &'a Ports,
    vips: &'a HashMap<IpAddr, usize>,
    tables: &'a [schema::ServiceTable],
    /// The service's `[service.health]`, checked.
    health: Option<&'a health::Partial>,
}

/// A model range as the `i64` range TOML integers are checked against.
fn range_i64<T: Copy + TryInto<i64>>(r: &RangeInclusive<T>) -> RangeInclusive<i64> {
    let wide = |v: T| v.try_into().unwrap_or(i64::MAX);
    wide(*r.start())..=wide(*r.end())
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn endpoint(ip: IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (ip, None) => ip.to_string(),
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
    }
}

fn list_or_none(addrs: &[IfAddr]) -> String {
    if addrs.is_empty() {
        "it has none".to_owned()
    } else {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// True when `n` is prime. Deterministic Miller–Rabin: bases 2, 7 and 61 decide every
/// `n < 4_759_123_141`, which covers all of `u32`.
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u32, 3, 5, 7, 11, 13, 61] {
        if n % p == 0 {
            return n == p;
        }
    }
    let n64 = u64::from(n);
    let mut d = n64 - 1;
    let mut s = 0;
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    let pow = |mut b: u64, mut e: u64| {
        let mut r = 1u64;
        b %= n64;
        while e > 0 {
            if e & 1 == 1 {
                r = r * b % n64;
            }
            b = b * b % n64;
            e >>= 1;
        }
        r
    };
    'bases: for a in [2u64, 7, 61] {
        let mut x = pow(a, d);
        if x == 1 || x == n64 - 1 {
            continue;
        }
        for _ in 1..s {
            x = x * x % n64;
            if x == n64 - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// The primes just below and above `n` within the allowed table sizes.
fn nearest_primes(n: u32) -> (Option<u32>, Option<u32>) {
    let r = &Global::MAGLEV_TABLE_SIZE_RANGE;
    let below = (*r.start()..n).rev().find(|&k| is_prime(k));
    let above = (n + 1..=*r.end()).find(|&k| is_prime(k));
    (below, above)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigError, parse};
    use std::path::Path;

    const PORT: &str =
        "[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\naddresses = [\"10.0.0.2/24\"]\n";

    fn errors(text: &str) -> Vec<Diagnostic> {
        match parse(text, Path::new("t.toml")) {
            Err(ConfigError::Invalid(d)) => d,
            other => panic!("expected diagnostics, got {other:?}"),
        }
    }

    fn has(diags: &[Diagnostic], line: usize, field: &str, needle: &str) {
        assert!(
            diags
                .iter()
                .any(|d| d.line == line && d.field == field && d.message.contains(needle)),
            "no diagnostic at line {line} for {field} containing {needle:?} in:\n{}",
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn is_prime_matches_trial_division() {
        let slow = |n: u32| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
        for n in 0..20_000 {
            assert_eq!(is_prime(n), slow(n), "{n}");
        }
        for n in [65537, 655_373, 16_777_213, 4_294_967_291] {
            assert!(is_prime(n), "{n}");
        }
        // Strong pseudoprimes to some of the bases, and the largest u32.
        for n in [
            3_215_031_751,
            2_152_302_898_747u64 as u32,
            65536,
            16_777_215,
            u32::MAX,
        ] {
            assert_eq!(is_prime(n), slow(n), "{n}");
        }
    }

    #[test]
    fn reports_every_error_at_once() {
        let text = format!(
            "[dpdk]\nworkers = [1, 2, 1]\nslowpath_cpu = 2\nburst = 0\nrx_descriptors = 1000\n\
             [global]\nmaglev_table_size = 65536\n[global.timeouts]\nudp = 0\n{PORT}\
             [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"sctp\"\n\
             [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\nweight = 0\n\
             [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\n\
             [[service]]\nname = \"web\"\nvip = \"10.0.0.2\"\n"
        );
        let d = errors(&text);
        has(&d, 2, "dpdk.workers[2]", "CPU 1 is already worker 0");
        has(
            &d,
            3,
            "dpdk.slowpath_cpu",
            "slowpath_cpu 2 is also worker 1's CPU",
        );
        has(&d, 4, "dpdk.burst", "burst 0 is out of range 1..=64");
        has(
            &d,
            5,
            "dpdk.rx_descriptors",
            "not a power of two; use 512 or 1024",
        );
        has(
            &d,
            7,
            "global.maglev_table_size",
            "nearest primes are 65521 and 65537",
        );
        has(
            &d,
            9,
            "global.timeouts.udp",
            "udp 0 is out of range 1..=86400",
        );
        has(&d, 18, "service[0].protocol", "use \"tcp\" or \"udp\"");
        has(
            &d,
            22,
            "service[0].backend[0].weight",
            "weight 0 is out of range 1..=10000",
        );
        has(
            &d,
            24,
            "service[0].backend[1].name",
            "backend name \"a\" is already used by backend[0] (line 20)",
        );
        has(
            &d,
            25,
            "service[0].backend[1].address",
            "backend 10.0.0.11 is already backend[0]",
        );
        has(
            &d,
            27,
            "service[1].name",
            "service name \"web\" is already used by service[0] (line 15)",
        );
        has(
            &d,
            28,
            "service[1].vip",
            "the balancer's own address on port \"lan0\"",
        );
        assert_eq!(d.len(), 12, "{d:#?}");
    }

    #[test]
    fn vip_overlaps() {
        let text = format!(
            "{PORT}\
             [[service]]\nname = \"a\"\nvip = \"10.0.0.100\"\nport = 80\n\
             [[service]]\nname = \"b\"\nvip = \"10.0.0.100\"\nport = 80\n\
             [[service]]\nname = \"c\"\nvip = \"10.0.0.100\"\n\
             [[service]]\nname = \"d\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"udp\"\n\
             [[service]]\nname = \"e\"\nvip = \"10.0.0.101\"\n\
             [[service]]\nname = \"f\"\nvip = \"10.0.0.101\"\nport = 443\n"
        );
        let d = errors(&text);
        has(
            &d,
            12,
            "service[1].port",
            "listens on tcp 10.0.0.100:80 like service \"a\" (line 7)",
        );
        has(
            &d,
            15,
            "service[2].vip",
            "takes every tcp port of 10.0.0.100, which overlaps service \"a\"",
        );
        has(
            &d,
            27,
            "service[5].port",
            "tcp port 443 of 10.0.0.101 is already served by service \"e\"",
        );
        // udp/80 on the same VIP is a different service key: no error for "d".
        assert_eq!(d.len(), 3, "{d:#?}");
    }

    #[test]
    fn backend_addressing() {
        let text = format!(
            "{PORT}\
             [[service]]\nname = \"n\"\nvip = \"10.0.0.100\"\nforwarding = \"nat\"\n\
             [[service.backend]]\nname = \"v6\"\naddress = \"2001:db8::1\"\n\
             [[service.backend]]\nname = \"far\"\naddress = \"192.0.2.1\"\n\
             [[service.backend]]\nname = \"zero\"\naddress = \"10.0.0.12\"\nport = 0\n\
             [[service.backend]]\nname = \"self\"\naddress = \"10.0.0.2\"\n\
             [[service]]\nname = \"d\"\nvip = \"10.0.0.101\"\n\
             [[service.backend]]\nname = \"p\"\naddress = \"10.0.0.13\"\nport = 8080\n\
             [[service.backend]]\nname = \"loop\"\naddress = \"10.0.0.100\"\n"
        );
        let d = errors(&text);
        has(
            &d,
            11,
            "service[0].backend[0].address",
            "is IPv6 but the VIP 10.0.0.100 is IPv4",
        );
        has(
            &d,
            14,
            "service[0].backend[1].address",
            "not on-link: it is in no IPv4 subnet of any [[port]] (10.0.0.2/24)",
        );
        has(
            &d,
            18,
            "service[0].backend[2].port",
            "port 0 is not a valid NAT target",
        );
        has(
            &d,
            21,
            "service[0].backend[3].address",
            "the balancer's own address",
        );
        has(
            &d,
            28,
            "service[1].backend[0].port",
            "needs forwarding = \"nat\"",
        );
        has(
            &d,
            31,
            "service[1].backend[1].address",
            "is the VIP of service \"n\"",
        );
        assert_eq!(d.len(), 6, "{d:#?}");
    }

    #[test]
    fn port_errors() {
        let text = "[[port]]\nname = \"a b\"\ndevice = \"x\"\nmac = \"01:00:5e:00:00:01\"\n\
                    addresses = [\"10.0.0.0/24\", \"10.0.1.1\", \"10.0.2.1/33\"]\n\
                    neighbors = [{ ip = \"10.9.9.9\", mac = \"02:00:00:00:00:09\" }]\n\
                    [[port]]\nname = \"b\"\ndevice = \"x\"\n";
        let d = errors(text);
        has(&d, 2, "port[0].name", "may contain only");
        has(&d, 4, "port[0].mac", "multicast");
        has(&d, 5, "port[0].addresses[0]", "network address");
        has(
            &d,
            5,
            "port[0].addresses[1]",
            "needs a prefix length, e.g. \"10.0.1.1/24\"",
        );
        has(
            &d,
            5,
            "port[0].addresses[2]",
            "prefix length \"33\" must be a number in 0..=32",
        );
        has(
            &d,
            9,
            "port[1].device",
            "device \"x\" is already used by port[0] (line 3)",
        );
        // Port addresses were invalid, so the on-link check of the neighbour is skipped.
        assert_eq!(d.len(), 6, "{d:#?}");
    }

    /// IPv4 10.0.0.x and IPv6 a00:x:: share their leading bytes; they are still different
    /// addresses: no "already served", "own address" or "is the VIP" error between them.
    #[test]
    fn same_bytes_in_two_families_do_not_collide() {
        let text = "[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\n\
                    addresses = [\"10.0.0.2/24\", \"a00:1:0:1::2/16\"]\n\
                    [[service]]\nname = \"web4\"\nvip = \"10.0.0.1\"\nport = 80\n\
                    [[service.backend]]\nname = \"b\"\naddress = \"10.0.0.21\"\n\
                    [[service]]\nname = \"web6\"\nvip = \"a00:1::\"\nport = 80\n\
                    [[service.backend]]\nname = \"b\"\naddress = \"a00:15::\"\n\
                    [[service]]\nname = \"all4\"\nvip = \"10.0.0.3\"\n\
                    [[service]]\nname = \"all6\"\nvip = \"a00:3::\"\n\
                    [[service]]\nname = \"own-twin\"\nvip = \"a00:2::\"\n\
                    [[service.backend]]\nname = \"vip-twin\"\naddress = \"a00:4::\"\n\
                    [[service]]\nname = \"v4\"\nvip = \"10.0.0.4\"\n";
        let c = parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        let vips: Vec<String> = c.services.iter().map(|s| s.vip.to_string()).collect();
        assert_eq!(
            vips,
            [
                "10.0.0.1", "a00:1::", "10.0.0.3", "a00:3::", "a00:2::", "10.0.0.4"
            ]
        );
        // The same check still refuses a real duplicate of either family.
        for dup in ["10.0.0.1", "a00:1::"] {
            let text = format!("{text}[[service]]\nname = \"dup\"\nvip = \"{dup}\"\nport = 80\n");
            let d = errors(&text);
            has(
                &d,
                37,
                "service[6].port",
                &format!(
                    "like service \"web{}\"",
                    if dup.contains(':') { 6 } else { 4 }
                ),
            );
            assert_eq!(d.len(), 1, "{d:#?}");
        }
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let c = parse(PORT, Path::new("m.toml")).expect("valid");
        assert_eq!(c.dpdk, Dpdk::default());
        assert_eq!(c.global, Global::default());
        assert!(c.services.is_empty());
        assert_eq!(c.ports[0].addresses[0].to_string(), "10.0.0.2/24");
    }
}
