//! Instance sync in `status` (`[global.sync]`).

use serde::{Deserialize, Serialize};

/// Instance sync: the exceptions shared with peer instances (flows whose backend is not
/// Maglev's choice now), and the messages that carry them. The workers' `exceptions_used`
/// counter says how many new flows took a peer's backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The UDP port.
    pub port: u16,
    /// This instance's own exceptions (its sweeps found them).
    pub local: u64,
    /// Exceptions learnt from peers and held now.
    pub learnt: u64,
    /// Of those, the ones the workers use (their backend exists here).
    pub published: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// Entries waiting for the send rate.
    pub backlog: u64,
    /// Learnt entries refused because the table was full (`max_exceptions`).
    pub dropped_no_room: u64,
    /// Learnt entries that expired (not refreshed by their sender).
    pub expired: u64,
    /// Datagrams to the sync port from an address that is no peer.
    pub unknown_source: u64,
    /// Datagrams over a peer's rate, dropped unread.
    pub rate_limited: u64,
    /// Learnt entries naming a service or backend this config does not have.
    pub unknown_backend: u64,
    /// Messages not sent (no route to the peer, or the socket's buffer full).
    pub send_failed: u64,
    /// Still waiting for the peers' exceptions before announcing by BGP.
    pub waiting: bool,
    pub peers: Vec<SyncPeer>,
}

impl From<&slowpath::sync::SyncReport> for SyncStatus {
    fn from(r: &slowpath::sync::SyncReport) -> SyncStatus {
        SyncStatus {
            port: r.port,
            local: r.local as u64,
            learnt: r.learnt as u64,
            published: r.published as u64,
            messages_sent: r.messages_sent,
            bytes_sent: r.bytes_sent,
            backlog: r.backlog as u64,
            dropped_no_room: r.dropped_no_room,
            expired: r.expired,
            unknown_source: r.unknown_source,
            rate_limited: r.rate_limited,
            unknown_backend: r.unknown_backend,
            send_failed: r.send_failed,
            waiting: r.waiting,
            peers: r
                .peers
                .iter()
                .map(|p| SyncPeer {
                    address: p.address.to_string(),
                    held: p.held,
                    messages: p.stats.messages,
                    entries: p.stats.entries,
                    requests: p.stats.requests,
                    unauthenticated: p.stats.unauthenticated,
                    replayed: p.stats.replayed,
                    stale: p.stats.stale,
                    malformed: p.stats.malformed,
                })
                .collect(),
        }
    }
}

/// What one peer sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPeer {
    pub address: String,
    /// Exceptions held that it told of.
    pub held: u64,
    /// Messages accepted, and their entries.
    pub messages: u64,
    pub entries: u64,
    /// Its requests for our exceptions.
    pub requests: u64,
    /// Refused: the MAC did not match the key.
    pub unauthenticated: u64,
    /// Refused: a sequence number already seen (a replay).
    pub replayed: u64,
    /// Refused: a timestamp outside the window.
    pub stale: u64,
    /// Refused: not a sync message, or inconsistent.
    pub malformed: u64,
}
