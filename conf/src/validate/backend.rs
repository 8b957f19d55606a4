//! `[[service.backend]]`: names and endpoints unique within the service, NAT ports, weights,
//! admin states, addresses on-link (DSR) or reached by a route (NAT), and each backend's health check or `track`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use super::service::ServiceCtx;
use super::{Checker, endpoint, family, health, list_or_none, range_i64};
use crate::model::*;
use crate::schema;

impl Checker<'_> {
    pub(super) fn backends(
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
                if !matches!(s.forwarding, Forwarding::Nat | Forwarding::FullNat) {
                    let mode = match s.forwarding {
                        Forwarding::Dsr => "DSR",
                        _ => "a tunnel",
                    };
                    self.error(
                        p.span(),
                        f("port"),
                        format!(
                            "a backend port needs forwarding = \"nat\": {mode} forwards the packet \
                             unchanged and cannot change its port; remove `port` or switch the \
                             service to NAT"
                        ),
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
                self.health_tunnel_applies(own, s.forwarding);
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

    pub(super) fn backend_address(
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
        if let (Forwarding::Nat | Forwarding::FullNat, Some(vip)) = (s.forwarding, s.vip) {
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
        if let (true, Some(vip)) = (s.forwarding.is_tunnel(), s.vip)
            && vip.is_ipv6()
            && addr.is_ipv4()
        {
            self.error(
                span,
                field,
                format!(
                    "backend address {addr} is IPv4 but the VIP {vip} is IPv6; a tunnel carries \
                     IPv4 in IPv4 or IPv6, and IPv6 only in IPv6: give the backend an IPv6 address"
                ),
            );
            return;
        }
        if s.forwarding == Forwarding::FullNat
            && !s.local_addresses.is_empty()
            && !s
                .local_addresses
                .iter()
                .any(|l| l.is_ipv4() == addr.is_ipv4())
        {
            self.error(
                span,
                field,
                format!(
                    "backend address {addr} is {} but none of the service's local_addresses is; \
                     add a local address of that family (or remove local_addresses: each backend \
                     then gets the egress port's own addresses of its family)",
                    family(addr),
                ),
            );
            return;
        }
        if let (true, Some(src)) = (s.forwarding.is_tunnel(), s.tunnel_source)
            && src.is_ipv4() != addr.is_ipv4()
        {
            self.error(
                span,
                field,
                format!(
                    "backend address {addr} is {} but the service's tunnel_source {src} is {}; \
                     an outer header has one family: remove tunnel_source (each backend then gets \
                     the egress port's own address of its family) or use backends of one family",
                    family(addr),
                    family(src)
                ),
            );
            return;
        }
        if !s.ports.subnets_known {
            return;
        }
        let on_link = s
            .ports
            .ports
            .iter()
            .flat_map(|p| &p.addresses)
            .any(|a| a.contains(addr));
        if on_link {
            return;
        }
        let subnets: Vec<IfAddr> = s
            .ports
            .ports
            .iter()
            .flat_map(|p| p.addresses.iter().copied())
            .filter(|a| a.addr.is_ipv4() == addr.is_ipv4())
            .collect();
        if s.forwarding.needs_link() {
            self.error(
                span,
                field,
                format!(
                    "backend address {addr} is not on-link: it is in no {} subnet of any [[port]] ({}); \
                     forwarding = \"{}\" reaches backends directly at layer 2 (a route's gateway \
                     cannot carry it)",
                    family(addr),
                    list_or_none(&subnets),
                    s.forwarding.as_str()
                ),
            );
            return;
        }
        if s.ports.routes_known && route(&s.ports.ports, addr).is_none() {
            let example = if addr.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            self.error(
                span,
                field,
                format!(
                    "no route reaches backend address {addr}: it is in no {} subnet of any [[port]] \
                     ({}) and no port's `routes` covers it; add one, e.g. routes = [{{ prefix = \
                     \"{example}\", via = GATEWAY }}] on the port that reaches it",
                    family(addr),
                    list_or_none(&subnets),
                ),
            );
            return;
        }
        if let Some(mac) = &t.mac {
            let gateway = route(&s.ports.ports, addr).map(|p| p.next_hop);
            if let Some(gw) = gateway {
                self.error(
                    mac.span(),
                    field.replace(".address", ".mac"),
                    format!(
                        "backend {addr} is reached through the gateway {gw}: its frames go to the \
                         gateway's MAC, not its own; remove `mac` (a static MAC for the gateway goes \
                         in its port's `neighbors`)"
                    ),
                );
            }
        }
    }
}
