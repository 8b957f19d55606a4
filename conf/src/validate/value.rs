//! Checks of single values shared by every table: integers in a range, fixed choices, IP
//! addresses, prefixes, interface addresses, MACs, names, uniqueness.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};

use toml::Spanned;

use super::Checker;
use crate::model::*;
use crate::schema::Int;

impl Checker<'_> {
    /// An integer checked against `range` and converted to the model's type.
    pub(super) fn int<T: TryFrom<i64>>(
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
    pub(super) fn opt_int<T: TryFrom<i64>>(
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
    pub(super) fn choice<T: Copy + Default>(
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

    pub(super) fn ip(&mut self, v: &Spanned<String>, field: &str, what: &str) -> Option<IpAddr> {
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
    pub(super) fn unicast_ip(
        &mut self,
        ip: IpAddr,
        span: Range<usize>,
        field: &str,
        what: &str,
    ) -> bool {
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

    /// Source prefixes of an access list: each as [`Checker::prefix`] takes it.
    pub(super) fn prefixes(&mut self, list: &[Spanned<String>], field: &str) -> Vec<IfAddr> {
        list.iter()
            .enumerate()
            .filter_map(|(i, v)| self.prefix(v, &format!("{field}[{i}]")))
            .collect()
    }

    /// A prefix (of an access list, of a route): `addr/len` with no host bits set, or a bare
    /// address (one host).
    pub(super) fn prefix(&mut self, v: &Spanned<String>, field: &str) -> Option<IfAddr> {
        let s = v.get_ref();
        let (addr, len) = s.split_once('/').unwrap_or((s, ""));
        let Ok(addr) = addr.parse::<IpAddr>() else {
            self.error(
                v.span(),
                field,
                format!("prefix {s:?}: {addr:?} is not an IPv4 or IPv6 address"),
            );
            return None;
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
                        field,
                        format!("prefix {s:?}: length {len:?} must be a number in 0..={max}"),
                    );
                    return None;
                }
            }
        };
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
                field,
                format!("prefix {s:?} has host bits set; did you mean \"{network}/{prefix_len}\"?"),
            );
            return None;
        }
        Some(IfAddr { addr, prefix_len })
    }

    /// `addr/prefix`, a unicast host address of its subnet.
    pub(super) fn if_addr(&mut self, v: &Spanned<String>, field: &str) -> Option<IfAddr> {
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

    pub(super) fn mac(&mut self, v: &Spanned<String>, field: &str) -> Option<MacAddr> {
        let s = v.get_ref();
        let mac = match s.parse::<MacAddr>() {
            Ok(mac) => mac,
            Err(e) => {
                self.error(v.span(), field, format!("mac {s:?} is {e}"));
                return None;
            }
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
    pub(super) fn name(&mut self, v: &Spanned<String>, field: &str, what: &str) {
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

    /// A free text value (a command, a path): not blank, no NUL; `example` says what to give.
    pub(super) fn text(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        key: &str,
        example: &str,
    ) -> Option<String> {
        let v = v.as_ref()?;
        let s = v.get_ref();
        if s.trim().is_empty() {
            self.error(
                v.span(),
                field,
                format!("{key} is empty; give {example}, or omit the key"),
            );
            return None;
        }
        if s.contains('\0') {
            self.error(v.span(), field, format!("{key} contains a NUL character"));
            return None;
        }
        Some(s.clone())
    }

    /// A Linux interface name (what `ip link` accepts): 1..=15 bytes (IFNAMSIZ less the
    /// NUL), no '/', ':', whitespace, not "." or "..".
    pub(super) fn interface_name(&mut self, v: &Spanned<String>, field: &str) -> Option<String> {
        let s = v.get_ref();
        let problem = if s.is_empty() {
            Some("is empty".to_owned())
        } else if s.len() > 15 {
            Some(format!(
                "is {} bytes long (Linux allows at most 15)",
                s.len()
            ))
        } else if s == "." || s == ".." {
            Some("is not a usable name".to_owned())
        } else if !s
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
        {
            Some("may contain only printable ASCII without '/', ':' or spaces".to_owned())
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.error(v.span(), field, format!("interface name {s:?} {problem}"));
                None
            }
            None => Some(s.clone()),
        }
    }

    /// Reports `v` if an earlier entry (index `seen[v]`) has the same value.
    pub(super) fn unique(
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
