//! `[[service]]`: names, VIPs, protocols and ports (no two services on one listener), forwarding,
//! hashing, access lists; each service's backends are checked in `backend.rs`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use super::port::Ports;
use super::{Checker, endpoint, health, protocol_name};
use crate::model::*;
use crate::schema;

impl Checker<'_> {
    pub(super) fn services(
        &mut self,
        tables: &[schema::ServiceTable],
        ports: &Ports,
        bird_file: bool,
    ) -> Vec<Service> {
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
                &[
                    ("dsr", Forwarding::Dsr),
                    ("nat", Forwarding::Nat),
                    ("fullnat", Forwarding::FullNat),
                    ("ipip", Forwarding::Ipip),
                    ("gue", Forwarding::Gue),
                ],
            );
            let (tunnel_source, gue_port) = self.tunnel_keys(t, si, forwarding, ports);
            let local_addresses = self.local_addresses(t, si, forwarding, ports);
            let proxy_protocol = self.proxy_protocol(t, si, forwarding, protocol);
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

            // A port that failed to parse (or was of the wrong type) is left out of the overlap
            // check rather than being taken for "every port".
            let port_known = match &t.port {
                None => !self.dropped.contains(&f("port")),
                Some(_) => port.is_some(),
            };
            if let (Some(vip), true) = (vip, port_known) {
                self.claim_listener(&mut listeners, tables, si, (vip, protocol, port));
            }

            let (on_change, state_file) = self.hook(t, si);
            let announce = self.choice(
                &t.announce,
                &f("announce"),
                "announce",
                &[
                    ("arp", Announce::Arp),
                    ("bgp", Announce::Bgp),
                    ("none", Announce::None),
                    ("vrrp", Announce::Vrrp),
                ],
            );
            if let Some(a) = &t.announce
                && announce == Announce::Bgp
                && !bird_file
            {
                self.error(
                    a.span(),
                    f("announce"),
                    "announce = \"bgp\" needs [global.announce] bird_file (the file BIRD \
                     includes, where Fulcrum lists the VIPs to announce)",
                );
            }
            if let Some(a) = &t.announce
                && announce == Announce::Vrrp
                && ports.subnets_known
                && !ports.ports.iter().any(|p| p.kernel_interface.is_some())
            {
                self.error(
                    a.span(),
                    f("announce"),
                    "announce = \"vrrp\" needs a [[port]] with kernel_interface (keepalived \
                     speaks VRRP through it)",
                );
            }
            let disable_file = self
                .text(
                    &t.disable_file,
                    &f("disable_file"),
                    "disable_file",
                    "a path like \"/etc/fulcrum/disable-web\"",
                )
                .map(std::path::PathBuf::from);
            let allow = self.prefixes(&t.allow, &f("allow"));
            let deny = self.prefixes(&t.deny, &f("deny"));
            let health = t
                .health
                .as_ref()
                .map(|h| self.health_table(h, &f("health")));
            if let Some(h) = &health {
                self.health_keys_apply(h, h.kind());
                self.health_tunnel_applies(h, forwarding);
            }
            let ctx = ServiceCtx {
                si,
                vip,
                port,
                forwarding,
                tunnel_source,
                local_addresses: &local_addresses,
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
                tunnel_source,
                gue_port,
                local_addresses: local_addresses.clone(),
                proxy_protocol,
                hash,
                on_empty,
                backends,
                on_change,
                state_file,
                allow,
                deny,
                announce,
                disable_file,
            });
        }
        self.resolve_tracks(&mut services, &tracks);
        services
    }

    /// `tunnel_source` and `gue_port`: only in the modes that use them; the source is one of
    /// the balancer's own addresses (the backends' ICMP errors about the tunnel, and their
    /// decapsulators' checks, expect a real address of the balancer).
    fn tunnel_keys(
        &mut self,
        t: &schema::ServiceTable,
        si: usize,
        forwarding: Forwarding,
        ports: &Ports,
    ) -> (Option<IpAddr>, u16) {
        let f = |key: &str| format!("service[{si}].{key}");
        let source = t.tunnel_source.as_ref().and_then(|v| {
            if !forwarding.is_tunnel() {
                self.error(
                    v.span(),
                    f("tunnel_source"),
                    format!(
                        "tunnel_source needs forwarding = \"ipip\" or \"gue\" (this service's is \"{}\"); \
                         remove it or switch the service to a tunnel",
                        forwarding.as_str()
                    ),
                );
                return None;
            }
            let ip = self.ip(v, &f("tunnel_source"), "tunnel_source")?;
            if ports.subnets_known && !ports.own.contains_key(&ip) {
                let mut own: Vec<String> = ports.own.keys().map(ToString::to_string).collect();
                own.sort();
                self.error(
                    v.span(),
                    f("tunnel_source"),
                    format!(
                        "tunnel_source {ip} is not one of the balancer's own addresses ({}); \
                         use an address of a [[port]]",
                        if own.is_empty() { "it has none".to_owned() } else { own.join(", ") }
                    ),
                );
                return None;
            }
            Some(ip)
        });
        let gue_port = match &t.gue_port {
            Some(p) if forwarding != Forwarding::Gue => {
                self.error(
                    p.span(),
                    f("gue_port"),
                    format!(
                        "gue_port needs forwarding = \"gue\" (this service's is \"{}\"); remove it",
                        forwarding.as_str()
                    ),
                );
                Service::DEFAULT_GUE_PORT
            }
            Some(p) => self
                .int::<u16>(p, &f("gue_port"), "gue_port", 1..=65535)
                .unwrap_or(Service::DEFAULT_GUE_PORT),
            None => Service::DEFAULT_GUE_PORT,
        };
        (source, gue_port)
    }

    /// Records service `si` as the holder of its VIP, protocol and port (or every port), or
    /// reports the earlier service that already holds it or overlaps it.
    pub(super) fn claim_listener(
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
}

/// A service holding a (VIP, protocol) on one port or, with `port: None`, on all of them.
pub(super) struct Listener {
    service: usize,
    port: Option<u16>,
    vip_span: Range<usize>,
}

/// The services on each (VIP, protocol) so far.
pub(super) type Listeners = HashMap<(IpAddr, Protocol), Vec<Listener>>;

/// What a backend's checks need to know about its service and the rest of the file.
pub(super) struct ServiceCtx<'a> {
    pub(super) si: usize,
    pub(super) vip: Option<IpAddr>,
    /// The service's port (`None`: every port).
    pub(super) port: Option<u16>,
    pub(super) forwarding: Forwarding,
    /// The service's `tunnel_source`, checked.
    pub(super) tunnel_source: Option<IpAddr>,
    /// The service's `local_addresses`, checked (FullNAT).
    pub(super) local_addresses: &'a [IpAddr],
    pub(super) ports: &'a Ports,
    pub(super) vips: &'a HashMap<IpAddr, usize>,
    pub(super) tables: &'a [schema::ServiceTable],
    /// The service's `[service.health]`, checked.
    pub(super) health: Option<&'a health::Partial>,
}
