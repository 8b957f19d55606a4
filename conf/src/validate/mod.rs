//! Schema -> runtime model. Every check runs even after an earlier one failed, so the operator
//! sees every problem of a file at once, each at the position of the value to fix. Checks that
//! depend on another value (a backend on-link in a port's subnet) are skipped when that value
//! was itself invalid, so one mistake does not cascade into a page of errors.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::{Range, RangeInclusive};

use crate::error::{Diagnostic, Locator};
use crate::model::*;
use crate::schema::Document;

mod backend;
mod dpdk;
mod fullnat;
mod global;
mod health;
mod port;
mod service;
mod sync;
mod value;

pub use global::is_prime;

/// Validates a deserialized document. `Err` holds at least one diagnostic, in check order.
/// `dropped` names the fields the shape check took out (already reported): absent here, but
/// not to be taken for absent by checks that depend on them.
pub(crate) fn validate(
    doc: Document,
    loc: &Locator<'_>,
    dropped: &HashSet<String>,
) -> Result<Config, Vec<Diagnostic>> {
    let mut c = Checker {
        loc,
        dropped,
        diags: Vec::new(),
        seen: HashSet::new(),
    };
    let dpdk = c.dpdk(&doc.dpdk);
    let mut global = c.global(&doc.global);
    let ports = c.ports(&doc.port);
    global.sync = c.sync(&doc.global.sync, &ports.ports);
    let services = c.services(&doc.service, &ports, global.announce.bird_file.is_some());
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
    dropped: &'a HashSet<String>,
    diags: Vec<Diagnostic>,
    /// `diags` as a set, to report each once.
    seen: HashSet<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        if self.dropped.contains(&field) {
            // Missing or of the wrong type: reported by the shape check, read as a placeholder.
            return;
        }
        let d = self.loc.diagnostic(span.start, field, message);
        // A value shared by several backends (a service's health key) is checked once per
        // backend in some cross-key checks: report it once.
        if self.seen.insert(d.clone()) {
            self.diags.push(d);
        }
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.loc.line(span.start)
    }
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

#[cfg(test)]
mod tests;
