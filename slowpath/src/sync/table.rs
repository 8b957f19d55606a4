//! What a receiver keeps of its peers' messages, pure (the caller gives the clocks):
//! per peer, the last sequence number accepted (a message at or below it is a replay) and
//! its counters; and the exceptions the peers told of, at most `capacity`, each expiring
//! unless its sender refreshes it, and leaving at once when the sender says it closed.

use std::collections::HashMap;
use std::net::IpAddr;

use dataplane::flow::FlowKey;

use super::message::{Key, Kind, Message, Op, ParseError};

/// Why a received datagram changed nothing (each has its counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a sync message, or inconsistent after authentication.
    Malformed,
    /// The MAC does not match the shared key: forged, corrupted, or a peer with another key.
    Unauthenticated,
    /// Authentic, but its sequence number is not above the last one accepted from that peer.
    Replayed,
    /// Authentic, but its timestamp is further from our clock than the window allows.
    Stale,
}

/// Counters of one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Messages accepted.
    pub messages: u64,
    /// Entries of accepted messages.
    pub entries: u64,
    /// Requests accepted ("send me yours").
    pub requests: u64,
    pub malformed: u64,
    pub unauthenticated: u64,
    pub replayed: u64,
    pub stale: u64,
}

#[derive(Debug, Clone, Default)]
struct Peer {
    /// The last sequence number accepted (0: none yet).
    last_seq: u64,
    stats: PeerStats,
}

/// An exception a peer told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub backend: IpAddr,
    pub backend_port: Option<u16>,
    /// Index of the peer that said so last.
    pub peer: usize,
    /// When it leaves unless refreshed (the caller's monotonic ms).
    pub expires_ms: u64,
}

/// Limits of a [`Receiver`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Exceptions held at most (all peers together).
    pub capacity: usize,
    /// An exception not refreshed for this long leaves.
    pub expiry_ms: u64,
    /// A message whose timestamp is further than this from our clock is refused.
    pub window_ms: u64,
}

/// The receiving side: authentication, replay guard, the bounded table with expiry.
#[derive(Debug)]
pub struct Receiver {
    key: Key,
    limits: Limits,
    peers: Vec<Peer>,
    held: HashMap<FlowKey, Held>,
    /// Entries refused because the table was full.
    pub dropped_no_room: u64,
    /// Entries that left by expiry.
    pub expired: u64,
    /// The table changed since [`take_changed`](Self::take_changed).
    changed: bool,
}

impl Receiver {
    pub fn new(key: Key, peers: usize, limits: Limits) -> Receiver {
        Receiver {
            key,
            limits,
            peers: vec![Peer::default(); peers],
            held: HashMap::new(),
            dropped_no_room: 0,
            expired: 0,
            changed: false,
        }
    }

    /// Takes a datagram from peer `peer` (known by its source address). `now_ms` is the
    /// monotonic clock of expiry, `unix_ms` the wall clock the timestamp is compared with.
    /// An accepted message's kind is returned; a refused one changes nothing but its peer's
    /// counter.
    pub fn accept(
        &mut self,
        peer: usize,
        bytes: &[u8],
        now_ms: u64,
        unix_ms: u64,
    ) -> Result<Kind, Refusal> {
        let Some(p) = self.peers.get_mut(peer) else {
            return Err(Refusal::Malformed);
        };
        let m = match Message::open(bytes, &self.key) {
            Ok(m) => m,
            Err(ParseError::Unauthenticated) => {
                p.stats.unauthenticated += 1;
                return Err(Refusal::Unauthenticated);
            }
            Err(_) => {
                p.stats.malformed += 1;
                return Err(Refusal::Malformed);
            }
        };
        if m.seq <= p.last_seq {
            p.stats.replayed += 1;
            return Err(Refusal::Replayed);
        }
        if m.timestamp_ms.abs_diff(unix_ms) > self.limits.window_ms {
            p.stats.stale += 1;
            return Err(Refusal::Stale);
        }
        p.last_seq = m.seq;
        p.stats.messages += 1;
        p.stats.entries += m.entries.len() as u64;
        if m.kind == Kind::Request {
            p.stats.requests += 1;
        }
        let expires_ms = now_ms + self.limits.expiry_ms;
        for e in &m.entries {
            match e.op {
                Op::Holds => {
                    let h = Held {
                        backend: e.backend,
                        backend_port: e.backend_port,
                        peer,
                        expires_ms,
                    };
                    if let Some(old) = self.held.get_mut(&e.key) {
                        self.changed |=
                            (old.backend, old.backend_port) != (h.backend, h.backend_port);
                        *old = h;
                    } else if self.held.len() < self.limits.capacity {
                        self.held.insert(e.key, h);
                        self.changed = true;
                    } else {
                        self.dropped_no_room += 1;
                    }
                }
                // Only the peer that holds it may close it: after a flow moved, its old
                // instance's close must not remove what the new one says.
                Op::Closed => {
                    if self.held.get(&e.key).is_some_and(|h| h.peer == peer) {
                        self.held.remove(&e.key);
                        self.changed = true;
                    }
                }
            }
        }
        Ok(m.kind)
    }

    /// Removes what was not refreshed in time; returns how many left.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.held.len();
        self.held.retain(|_, h| h.expires_ms > now_ms);
        let gone = before - self.held.len();
        self.expired += gone as u64;
        self.changed |= gone > 0;
        gone
    }

    /// Whether the table changed since the last call (the caller publishes it then).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Every exception held.
    pub fn held(&self) -> impl Iterator<Item = (&FlowKey, &Held)> {
        self.held.iter()
    }

    /// The exception held for `key`, if any.
    pub fn get(&self, key: &FlowKey) -> Option<&Held> {
        self.held.get(key)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Counters of peer `i`.
    pub fn peer_stats(&self, i: usize) -> PeerStats {
        self.peers.get(i).map(|p| p.stats).unwrap_or_default()
    }

    /// Holds per peer, by peer index.
    pub fn held_by_peer(&self) -> Vec<u64> {
        let mut v = vec![0; self.peers.len()];
        for h in self.held.values() {
            v[h.peer] += 1;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::{Entry, MAX_ENTRIES};
    use super::*;

    fn key() -> Key {
        Key::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    const LIMITS: Limits = Limits {
        capacity: 4,
        expiry_ms: 30_000,
        window_ms: 10_000,
    };
    const UNIX: u64 = 1_700_000_000_000;

    fn entry(n: u16, op: Op) -> Entry {
        Entry {
            op,
            key: FlowKey::v4([10, 1, 0, 2], [10, 0, 0, 100], 40000 + n, 80, 6),
            backend: "10.2.0.12".parse().unwrap(),
            backend_port: None,
        }
    }

    fn msg(seq: u64, entries: Vec<Entry>) -> Vec<u8> {
        Message {
            kind: Kind::Exceptions,
            seq,
            timestamp_ms: UNIX,
            entries,
        }
        .seal(&key())
    }

    #[test]
    fn holds_then_closed_by_the_same_peer_only() {
        let mut r = Receiver::new(key(), 2, LIMITS);
        r.accept(0, &msg(1, vec![entry(1, Op::Holds)]), 0, UNIX)
            .unwrap();
        assert!(r.take_changed());
        let k = entry(1, Op::Holds).key;
        assert_eq!(r.get(&k).unwrap().peer, 0);
        // Peer 1 says it closed: not its flow, nothing happens.
        r.accept(1, &msg(1, vec![entry(1, Op::Closed)]), 0, UNIX)
            .unwrap();
        assert!(r.get(&k).is_some());
        assert!(!r.take_changed());
        r.accept(0, &msg(2, vec![entry(1, Op::Closed)]), 0, UNIX)
            .unwrap();
        assert!(r.get(&k).is_none());
        assert!(r.take_changed());
        assert_eq!(r.peer_stats(0).messages, 2);
        assert_eq!(r.peer_stats(1).messages, 1);
    }

    #[test]
    fn bounded_the_rest_dropped_and_counted() {
        let mut r = Receiver::new(key(), 1, LIMITS);
        let entries = (0..10).map(|n| entry(n, Op::Holds)).collect();
        r.accept(0, &msg(1, entries), 0, UNIX).unwrap();
        assert_eq!(r.len(), LIMITS.capacity);
        assert_eq!(r.dropped_no_room, 10 - LIMITS.capacity as u64);
        // A refresh of one held is no new room taken.
        r.accept(0, &msg(2, vec![entry(0, Op::Holds)]), 0, UNIX)
            .unwrap();
        assert_eq!(r.dropped_no_room, 6);
    }

    #[test]
    fn entries_expire_unless_refreshed() {
        let mut r = Receiver::new(key(), 1, LIMITS);
        r.accept(
            0,
            &msg(1, vec![entry(1, Op::Holds), entry(2, Op::Holds)]),
            0,
            UNIX,
        )
        .unwrap();
        // Entry 1 refreshed at 20 s; entry 2 not.
        r.accept(0, &msg(2, vec![entry(1, Op::Holds)]), 20_000, UNIX)
            .unwrap();
        assert_eq!(r.expire(29_999), 0);
        assert_eq!(r.expire(30_000), 1);
        assert!(r.get(&entry(1, Op::Holds).key).is_some());
        assert_eq!(r.expire(50_000), 1);
        assert!(r.is_empty());
        assert_eq!(r.expired, 2);
    }

    #[test]
    fn a_replayed_or_stale_message_is_refused() {
        let mut r = Receiver::new(key(), 1, LIMITS);
        let m5 = msg(5, vec![entry(1, Op::Holds)]);
        r.accept(0, &m5, 0, UNIX).unwrap();
        r.accept(0, &msg(6, vec![entry(1, Op::Closed)]), 0, UNIX)
            .unwrap();
        // The old message again, byte for byte: it would bring the closed flow back.
        assert_eq!(r.accept(0, &m5, 0, UNIX), Err(Refusal::Replayed));
        assert!(r.is_empty());
        // An older sequence number made by the key's holder is refused too.
        assert_eq!(
            r.accept(0, &msg(4, vec![entry(2, Op::Holds)]), 0, UNIX),
            Err(Refusal::Replayed)
        );
        // A fresh sequence number but a timestamp from long ago (a receiver that restarted
        // forgets sequence numbers; the window bounds what it could be fed).
        let old = Message {
            kind: Kind::Exceptions,
            seq: 100,
            timestamp_ms: UNIX - LIMITS.window_ms - 1,
            entries: vec![entry(3, Op::Holds)],
        }
        .seal(&key());
        assert_eq!(r.accept(0, &old, 0, UNIX), Err(Refusal::Stale));
        assert!(r.is_empty());
        let s = r.peer_stats(0);
        assert_eq!((s.messages, s.replayed, s.stale), (2, 2, 1));
    }

    /// A flood of forged messages (right shape, wrong MAC) costs each one refusal and one
    /// counter, and nothing else: no entry, no change of the replay guard, so the genuine
    /// sender's next message is accepted as if the flood had not been.
    #[test]
    fn a_flood_of_forged_messages_costs_one_drop_each() {
        let mut r = Receiver::new(key(), 1, LIMITS);
        r.accept(0, &msg(1, vec![entry(1, Op::Holds)]), 0, UNIX)
            .unwrap();
        r.take_changed();
        let forger = Key::new(b"guessed key, not the shared one").unwrap();
        let n = 20_000u64;
        for i in 0..n {
            let f = Message {
                kind: Kind::Exceptions,
                seq: u64::MAX - i,
                timestamp_ms: UNIX,
                entries: (0..MAX_ENTRIES as u16)
                    .map(|k| entry(100 + k, Op::Holds))
                    .collect(),
            }
            .seal(&forger);
            assert_eq!(r.accept(0, &f, 0, UNIX), Err(Refusal::Unauthenticated));
        }
        let s = r.peer_stats(0);
        assert_eq!((s.unauthenticated, s.messages, s.entries), (n, 1, 1));
        assert_eq!(r.len(), 1);
        assert!(!r.take_changed());
        assert_eq!(r.dropped_no_room, 0);
        // The guard still expects 2: the flood's huge sequence numbers were never taken.
        r.accept(0, &msg(2, vec![entry(1, Op::Closed)]), 0, UNIX)
            .unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn requests_are_counted_and_carry_nothing() {
        let mut r = Receiver::new(key(), 1, LIMITS);
        let q = Message {
            kind: Kind::Request,
            seq: 1,
            timestamp_ms: UNIX,
            entries: vec![],
        }
        .seal(&key());
        assert_eq!(r.accept(0, &q, 0, UNIX), Ok(Kind::Request));
        assert_eq!(r.peer_stats(0).requests, 1);
        assert!(r.is_empty());
    }
}
