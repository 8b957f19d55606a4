//! `[global.sync]`: peers (addresses no own address, each reached by a port), the key file
//! (read here, at least 16 bytes), the port, the source address and the bounds.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{Checker, range_i64};
use crate::model::*;
use crate::schema;

impl Checker<'_> {
    /// The sync settings, or `None` without peers (the other keys alone turn nothing on).
    pub(super) fn sync(&mut self, t: &schema::SyncTable, ports: &[Port]) -> Option<SyncSettings> {
        let own: HashSet<IpAddr> = ports
            .iter()
            .flat_map(|p| p.addresses.iter().map(|a| a.addr))
            .collect();
        let mut peers = Vec::new();
        for v in &t.peers {
            let field = "global.sync.peers";
            let Some(ip) = self.ip(v, field, "peer") else {
                continue;
            };
            if own.contains(&ip) {
                self.error(
                    v.span(),
                    field,
                    format!("peer {ip} is an address of this balancer; list the other instances"),
                );
            } else if peers.contains(&ip) {
                self.error(v.span(), field, format!("peer {ip} is listed twice"));
            } else if !ports.is_empty() && route(ports, ip).is_none() {
                self.error(
                    v.span(),
                    field,
                    format!(
                        "no port reaches peer {ip}: no port has it on-link and no route covers it"
                    ),
                );
            } else {
                peers.push(ip);
            }
        }
        let key_file = self.text(
            &t.key_file,
            "global.sync.key_file",
            "key_file",
            "a path like \"/etc/fulcrum/sync.key\"",
        );
        // A relative path is the config file's neighbour, wherever `fulcrum` was started.
        let key_file = key_file.map(|f| match self.loc.path.parent() {
            Some(dir) if Path::new(&f).is_relative() => dir.join(f),
            _ => PathBuf::from(f),
        });
        let key = match (&t.key_file, &key_file) {
            (Some(v), Some(path)) => match std::fs::read(path) {
                Err(e) => {
                    self.error(
                        v.span(),
                        "global.sync.key_file",
                        format!("cannot read the key file {}: {e}", path.display()),
                    );
                    None
                }
                Ok(k) if k.len() < SyncSettings::MIN_KEY_LEN => {
                    self.error(
                        v.span(),
                        "global.sync.key_file",
                        format!(
                            "the key file {} holds {} bytes; a key needs at least {} \
                             (e.g. `head -c 32 /dev/urandom > {}`)",
                            path.display(),
                            k.len(),
                            SyncSettings::MIN_KEY_LEN,
                            path.display()
                        ),
                    );
                    None
                }
                Ok(k) => Some(SyncKey(k)),
            },
            _ => None,
        };
        let port = self.opt_int(
            &t.port,
            "global.sync.port",
            "port",
            1..=65535,
            SyncSettings::PORT,
        );
        let source = t.source.as_ref().and_then(|v| {
            let ip = self.ip(v, "global.sync.source", "source")?;
            if !own.contains(&ip) {
                self.error(
                    v.span(),
                    "global.sync.source",
                    format!("source {ip} is not an address of any port"),
                );
                return None;
            }
            Some(ip)
        });
        let max_exceptions = self.opt_int(
            &t.max_exceptions,
            "global.sync.max_exceptions",
            "max_exceptions",
            range_i64(&SyncSettings::MAX_EXCEPTIONS_RANGE),
            SyncSettings::MAX_EXCEPTIONS,
        );
        let max_messages_per_sec = self.opt_int(
            &t.max_messages_per_sec,
            "global.sync.max_messages_per_sec",
            "max_messages_per_sec",
            range_i64(&SyncSettings::MAX_MESSAGES_PER_SEC_RANGE),
            SyncSettings::MAX_MESSAGES_PER_SEC,
        );
        let refresh_ms = self.opt_int(
            &t.refresh_ms,
            "global.sync.refresh_ms",
            "refresh_ms",
            range_i64(&SyncSettings::REFRESH_MS_RANGE),
            SyncSettings::REFRESH_MS,
        );
        let expiry_ms = self.opt_int(
            &t.expiry_ms,
            "global.sync.expiry_ms",
            "expiry_ms",
            range_i64(&SyncSettings::EXPIRY_MS_RANGE),
            SyncSettings::EXPIRY_MS,
        );
        if let Some(v) = &t.expiry_ms
            && expiry_ms <= refresh_ms
        {
            self.error(
                v.span(),
                "global.sync.expiry_ms",
                format!(
                    "expiry_ms {expiry_ms} must exceed refresh_ms {refresh_ms} (3 times it \
                     lets two refreshes be lost)"
                ),
            );
        }
        let startup_wait_ms = self.opt_int(
            &t.startup_wait_ms,
            "global.sync.startup_wait_ms",
            "startup_wait_ms",
            range_i64(&SyncSettings::STARTUP_WAIT_MS_RANGE),
            SyncSettings::STARTUP_WAIT_MS,
        );
        if t.peers.is_empty() {
            return None;
        }
        if t.key_file.is_none() && !self.dropped.contains("global.sync.key_file") {
            let span = t.peers[0].span();
            self.error(
                span,
                "global.sync.key_file",
                "peers need a key_file: sync messages are authenticated with a shared key",
            );
        }
        Some(SyncSettings {
            peers,
            key_file: key_file?,
            key: key?,
            port,
            source,
            max_exceptions,
            max_messages_per_sec,
            refresh_ms,
            expiry_ms,
            startup_wait_ms,
        })
    }
}
