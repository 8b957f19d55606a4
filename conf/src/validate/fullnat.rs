//! `[global.fullnat]` (the local ports every FullNAT service shares) and a FullNAT service's
//! `local_addresses` and `proxy_protocol`.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::Checker;
use super::port::Ports;
use crate::model::*;
use crate::schema;

impl Checker<'_> {
    pub(super) fn fullnat_settings(
        &mut self,
        t: &schema::FullNatTable,
        health: &HealthGlobal,
        health_span: Option<&toml::Spanned<String>>,
    ) -> FullNatSettings {
        let d = FullNatSettings::default();
        let local_ports = match &t.local_ports {
            None => d.local_ports.clone(),
            Some(v) => {
                let field = "global.fullnat.local_ports";
                match self.port_range(
                    v,
                    field,
                    "local_ports",
                    "1024-32767",
                    FullNatSettings::LOCAL_PORT_MIN,
                    FullNatSettings::LOCAL_PORTS_MIN_COUNT,
                ) {
                    Some(r) if overlaps(&r, &health.source_ports) => {
                        self.error(
                            v.span(),
                            field,
                            format!(
                                "local_ports {:?} overlaps the health checks' source_ports {}-{} \
                                 (the slow path's, on the same addresses); choose ports outside them",
                                v.get_ref(),
                                health.source_ports.start(),
                                health.source_ports.end()
                            ),
                        );
                        d.local_ports.clone()
                    }
                    Some(r) => r,
                    None => d.local_ports.clone(),
                }
            }
        };
        // A health range moved onto the default local ports is as much a clash.
        if t.local_ports.is_none()
            && overlaps(&local_ports, &health.source_ports)
            && let Some(v) = health_span
        {
            self.error(
                v.span(),
                "global.health.source_ports",
                format!(
                    "source_ports {:?} overlaps FullNAT's default local_ports {}-{}; choose \
                     other ports or set [global.fullnat] local_ports apart from them",
                    v.get_ref(),
                    local_ports.start(),
                    local_ports.end()
                ),
            );
        }
        let port_quiet_ms = self.opt_int(
            &t.port_quiet_ms,
            "global.fullnat.port_quiet_ms",
            "port_quiet_ms",
            i64::from(*FullNatSettings::QUIET_RANGE_MS.start())
                ..=i64::from(*FullNatSettings::QUIET_RANGE_MS.end()),
            d.port_quiet_ms,
        );
        FullNatSettings {
            local_ports,
            port_quiet_ms,
        }
    }

    /// `local_addresses`: only with `forwarding = "fullnat"`, each one of the balancer's own
    /// addresses, listed once.
    pub(super) fn local_addresses(
        &mut self,
        t: &schema::ServiceTable,
        si: usize,
        forwarding: Forwarding,
        ports: &Ports,
    ) -> Vec<IpAddr> {
        let field = format!("service[{si}].local_addresses");
        let mut out: Vec<IpAddr> = Vec::new();
        for v in &t.local_addresses {
            if forwarding != Forwarding::FullNat {
                self.error(
                    v.span(),
                    &field,
                    format!(
                        "local_addresses needs forwarding = \"fullnat\" (this service's is \"{}\"); \
                         remove it or switch the service to FullNAT",
                        forwarding.as_str()
                    ),
                );
                return Vec::new();
            }
            let Some(ip) = self.ip(v, &field, "local address") else {
                continue;
            };
            if ports.subnets_known && !ports.own.contains_key(&ip) {
                let mut own: Vec<String> = ports.own.keys().map(ToString::to_string).collect();
                own.sort();
                self.error(
                    v.span(),
                    &field,
                    format!(
                        "local address {ip} is not one of the balancer's own addresses ({}); \
                         backends answer it, so it must be an address of a [[port]]",
                        if own.is_empty() {
                            "it has none".to_owned()
                        } else {
                            own.join(", ")
                        }
                    ),
                );
                continue;
            }
            if out.contains(&ip) {
                self.error(
                    v.span(),
                    &field,
                    format!("local address {ip} is listed twice"),
                );
                continue;
            }
            out.push(ip);
        }
        out
    }

    /// `proxy_protocol`: `"v2"`, only with `forwarding = "fullnat"` and `protocol = "tcp"`
    /// (the header goes into a TCP stream whose sequence numbers the balancer shifts; a
    /// backend that reads it must see every connection through FullNAT).
    pub(super) fn proxy_protocol(
        &mut self,
        t: &schema::ServiceTable,
        si: usize,
        forwarding: Forwarding,
        protocol: Protocol,
    ) -> Option<ProxyProtocol> {
        let v = t.proxy_protocol.as_ref()?;
        let field = format!("service[{si}].proxy_protocol");
        if v.get_ref() != "v2" {
            self.error(
                v.span(),
                field,
                format!(
                    "proxy_protocol {:?} is not known; use \"v2\" (PROXY protocol version 2, \
                     binary)",
                    v.get_ref()
                ),
            );
            return None;
        }
        let refuse = if forwarding != Forwarding::FullNat {
            Some(format!(
                "proxy_protocol needs forwarding = \"fullnat\" (this service's is \"{}\"); \
                 the header goes into the TCP stream only where the balancer owns both halves",
                forwarding.as_str()
            ))
        } else if protocol != Protocol::Tcp {
            Some(
                "proxy_protocol needs protocol = \"tcp\" (this service's is \"udp\"); \
                 PROXY v2 is sent in a TCP stream"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(message) = refuse {
            self.error(v.span(), field, message);
            return None;
        }
        Some(ProxyProtocol::V2)
    }
}

fn overlaps(a: &RangeInclusive<u16>, b: &RangeInclusive<u16>) -> bool {
    a.start() <= b.end() && b.start() <= a.end()
}
