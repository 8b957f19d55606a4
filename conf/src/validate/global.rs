//! `[global]` and `[global.timeouts]`: hash seed, Maglev table size (a prime), flow-table
//! capacity, control socket and metrics address, flow idle timeouts. `[global.health]` and
//! `[global.neighbors]` are checked with the health checks (`health.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Checker, range_i64};
use crate::model::*;
use crate::schema;

impl Checker<'_> {
    pub(super) fn global(&mut self, t: &schema::GlobalTable) -> Global {
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
        let flow_state_dir = t.flow_state_dir.as_ref().map(|v| {
            let s = v.get_ref();
            if s.is_empty() || s.contains('\0') {
                self.error(
                    v.span(),
                    "global.flow_state_dir",
                    "flow_state_dir must be a directory path (omit the key for the default)",
                );
            }
            PathBuf::from(s)
        });
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
        let health = self.health_global(&t.health);
        let fullnat = self.fullnat_settings(&t.fullnat, &health, t.health.source_ports.as_ref());
        Global {
            hash_seed,
            maglev_table_size,
            flow_table_capacity,
            timeouts,
            control_socket,
            flow_state_dir,
            metrics_listen,
            control_optional: t.control_optional.as_ref().is_some_and(|b| *b.get_ref()),
            health,
            fullnat,
            neighbors: self.neighbor_settings(&t.neighbors),
            announce: self.announce_settings(&t.announce),
            // Checked with the ports (`sync.rs`): a peer must not be an own address.
            sync: None,
        }
    }

    fn announce_settings(&mut self, t: &schema::AnnounceTable) -> AnnounceSettings {
        let d = AnnounceSettings::default();
        let mut path = |v: &Option<toml::Spanned<String>>, key: &str, example: &str| {
            self.text(v, &format!("global.announce.{key}"), key, example)
                .map(PathBuf::from)
        };
        AnnounceSettings {
            bird_file: path(
                &t.bird_file,
                "bird_file",
                "a path like \"/run/fulcrum/bird-vips.conf\"",
            ),
            bird_socket: path(
                &t.bird_socket,
                "bird_socket",
                "a path like \"/run/bird/bird.ctl\"",
            )
            .unwrap_or(d.bird_socket),
            disable_file: path(
                &t.disable_file,
                "disable_file",
                "a path like \"/etc/fulcrum/disable\"",
            )
            .unwrap_or(d.disable_file),
        }
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
