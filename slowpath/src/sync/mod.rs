//! Instance sync (`[global.sync]`): instances behind the same ECMP routers agree on every
//! flow, also on flows whose backend is no longer Maglev's choice (begun before a backend
//! was added, removed, re-weighted or drained). Each instance tells its peers of those
//! *exceptions*; a peer's worker that misses such a flow in its flow table (the flow moved)
//! takes the peer's backend instead of Maglev's.
//!
//! ```text
//! worker sweep (once a second per entry) --Report--> bounded queue per worker
//!   slow path: local exceptions (new -> sent at once; held -> sent every refresh_ms;
//!              gone from two sweeps or closing -> "closed")
//!   -> messages of 19 entries, HMAC-SHA256, sequence + timestamp, at most
//!      max_messages_per_sec -> UDP from the balancer's own address over the data ports
//! peer: rate bound per peer -> MAC -> replay guard -> bounded table with expiry
//!   -> ExceptionTable (backends by address and port -> local ids) -> Engine::install_exceptions
//! ```
//!
//! The messages travel over the data ports from the slow path's own stack (smoltcp, the
//! stack of the health checks): it needs no kernel interface, reaches peers wherever the
//! ports' routes do, and leaves from an address the peers' configs name. A starting
//! instance sends each peer a request and holds its BGP announcement until every peer
//! answered (all it held, then an end-of-answer message, even with nothing to send) and the
//! answers are in the workers' table, or `startup_wait_ms` passed ([`PeerSync::ready`]).

pub mod message;
pub mod table;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conf::{Config, SyncSettings};
use dataplane::engine::Engine;
use dataplane::exceptions::{Exception, ExceptionTable, Report};
use dataplane::flow::{FAMILY_V6, FlowKey, SWEEP_MS};
use dataplane::snapshot::{BackendId, IpKey, Snapshot};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use crate::stack::{Stack, ip_address};
use message::{Entry, Key, Kind, MAX_ENTRIES, MAX_LEN, Message, Op};
use table::{Limits, Receiver};

/// A message whose timestamp is further than this from our clock is refused (a receiver
/// that restarted has forgotten the sequence numbers; this bounds what it can be replayed).
pub const REPLAY_WINDOW_MS: u64 = 30_000;
/// A local exception no sweep reported for this long has left its flow table.
const GONE_AFTER_MS: u64 = 5 * SWEEP_MS as u64 / 2;
/// The exceptions published to the workers are rebuilt at most this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// What is due to send, and expiry, are looked at this often (each passes every entry).
const TICK: Duration = Duration::from_millis(50);
/// The longest a part-filled message waits for more entries.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Datagrams a socket buffers each way.
const SOCKET_PACKETS: usize = 256;

/// Counters and gauges of instance sync, for `ctl status`, `ctl sync` and metrics.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub port: u16,
    /// This instance's own exceptions (flows its sweep reported).
    pub local: usize,
    /// Exceptions learnt from peers, held now.
    pub learnt: usize,
    /// Of those, the ones the workers use (backend known here).
    pub published: usize,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// Entries waiting for the send rate to allow them.
    pub backlog: usize,
    /// Learnt entries refused because the table was full.
    pub dropped_no_room: u64,
    pub expired: u64,
    /// Datagrams to the sync port from an address that is no peer.
    pub unknown_source: u64,
    /// Datagrams of a peer over its rate, dropped before any check.
    pub rate_limited: u64,
    /// Learnt entries whose service or backend this config does not have.
    pub unknown_backend: u64,
    /// Sends the socket refused (its buffer full) or no port reaching the peer.
    pub send_failed: u64,
    /// Still waiting for peers' answers before announcing.
    pub waiting: bool,
    pub peers: Vec<PeerReport>,
}

/// One peer's figures.
#[derive(Debug, Clone)]
pub struct PeerReport {
    pub address: IpAddr,
    /// Exceptions held that this peer told of.
    pub held: u64,
    pub stats: table::PeerStats,
}

/// A token bucket: `rate` a second, bursts of a tenth of a second (at least one).
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Duration,
}

impl Bucket {
    fn new(rate: u32, now: Duration) -> Bucket {
        Bucket {
            tokens: Self::cap(rate.into()),
            rate: rate.into(),
            at: now,
        }
    }

    fn cap(rate: f64) -> f64 {
        (rate / 10.0).max(1.0)
    }

    fn take(&mut self, now: Duration) -> bool {
        let dt = now.saturating_sub(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(Self::cap(self.rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One local exception.
#[derive(Debug, Clone, Copy)]
struct Local {
    backend: BackendId,
    /// When a sweep last reported it.
    seen: Duration,
    /// When it was last queued for the peers (`None`: never).
    sent: Option<Duration>,
}

/// A peer and how to reach it.
#[derive(Debug, Clone)]
struct Peer {
    addr: IpAddr,
    /// The port and source address toward it (`None`: no port reaches it now).
    path: Option<(u8, IpAddr)>,
    /// It said it answered our start-up request ([`Kind::Answered`]).
    answered: bool,
    rx_bucket: Bucket,
}

/// The sync of one running instance.
pub struct PeerSync {
    settings: SyncSettings,
    key: Key,
    peers: Vec<Peer>,
    receiver: Receiver,
    /// This instance's own exceptions.
    local: HashMap<FlowKey, Local>,
    /// Entries to send, in order.
    queue: VecDeque<Entry>,
    /// When the oldest entry in `queue` was queued.
    queued_at: Option<Duration>,
    /// A request for our exceptions came: everything held goes out again.
    resend_all: bool,
    /// That resend is queued: once the queue is sent, a [`Kind::Answered`] follows it.
    answer_queued: bool,
    /// Every peer answered our start-up request and the table the workers hold has what
    /// they sent (set by [`PeerSync::turn`] after an install, never cleared).
    answered_all: bool,
    tx_bucket: Bucket,
    seq: u64,
    /// One socket per port with an address, by port index.
    sockets: HashMap<u8, SocketHandle>,
    /// When the start-up wait ends.
    ready_at: Duration,
    published_at: Duration,
    /// The next look at what is due and what expired.
    tick_at: Duration,
    /// Publish the learnt table (it or the snapshot changed).
    dirty: bool,
    generation: u64,
    /// Seed of the published tables' hash (private to the process).
    table_seed: u64,
    report: SyncReport,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PeerSync {
    /// Sync for `cfg` (`None` when it has no peers), its sockets added to `stack`; a request
    /// for the peers' exceptions is queued at once.
    pub fn new(cfg: &Config, stack: &mut Stack, now: Duration) -> Option<PeerSync> {
        let s = cfg.global.sync.clone()?;
        let key = Key::new(&s.key.0)?;
        let peers = s
            .peers
            .iter()
            .map(|&addr| Peer {
                addr,
                path: cfg
                    .route(addr)
                    .map(|p| (p.port as u8, s.source.unwrap_or(p.source))),
                answered: false,
                rx_bucket: Bucket::new(s.max_messages_per_sec, now),
            })
            .collect::<Vec<_>>();
        // A socket on every port with an address: a peer's messages may arrive by another
        // port than ours leave by.
        let mut sockets = HashMap::new();
        for (i, ps) in stack.ports.iter_mut().enumerate() {
            if ps.addrs.is_empty() {
                continue;
            }
            let buf = || {
                udp::PacketBuffer::new(
                    vec![udp::PacketMetadata::EMPTY; SOCKET_PACKETS],
                    vec![0u8; SOCKET_PACKETS * MAX_LEN],
                )
            };
            let mut sock = udp::Socket::new(buf(), buf());
            if sock.bind(s.port).is_err() {
                continue;
            }
            sockets.insert(i as u8, ps.sockets.add(sock));
        }
        let receiver = Receiver::new(
            key.clone(),
            peers.len(),
            Limits {
                capacity: s.max_exceptions as usize,
                expiry_ms: u64::from(s.expiry_ms),
                window_ms: REPLAY_WINDOW_MS,
            },
        );
        let start_seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        let mut me = PeerSync {
            ready_at: now + Duration::from_millis(u64::from(s.startup_wait_ms)),
            tx_bucket: Bucket::new(s.max_messages_per_sec, now),
            report: SyncReport {
                port: s.port,
                waiting: !peers.is_empty(),
                ..Default::default()
            },
            settings: s,
            key,
            peers,
            receiver,
            local: HashMap::new(),
            queue: VecDeque::new(),
            queued_at: None,
            resend_all: false,
            answer_queued: false,
            answered_all: false,
            seq: start_seq,
            sockets,
            published_at: Duration::ZERO,
            tick_at: Duration::ZERO,
            dirty: false,
            generation: 0,
            table_seed: start_seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        };
        me.send_all(stack, Kind::Request, &[]);
        Some(me)
    }

    /// Until every peer answered our request ([`Kind::Answered`], after all it held) and
    /// what they sent is in the workers' table, or `startup_wait_ms` passed: the VIPs are
    /// not announced meanwhile, so no flow moves here before its exceptions are known.
    /// Once ready, it stays so (a later refresh that is not yet in the table does not hold
    /// the announcements back).
    pub fn ready(&self, now: Duration) -> bool {
        self.answered_all || now >= self.ready_at
    }

    /// The peer index of `addr`, if it is one.
    fn peer_of(&self, addr: IpAddr) -> Option<usize> {
        self.peers.iter().position(|p| p.addr == addr)
    }

    /// Which peer told of the exception of `key`, and its backend (`ctl which`).
    pub fn learnt(&self, key: &FlowKey) -> Option<(IpAddr, IpAddr, Option<u16>)> {
        let h = self.receiver.get(key)?;
        Some((self.peers[h.peer].addr, h.backend, h.backend_port))
    }

    /// One slow-path turn: the workers' reports, the peers' datagrams, what is due to
    /// send, expiry and publication. Returns the work done (0: idle).
    pub fn turn(&mut self, engine: &mut Engine, stack: &mut Stack, now: Duration) -> usize {
        let snap = engine.snapshot();
        let mut work = self.take_reports(engine, &snap, now);
        work += self.receive(stack, now);
        if now >= self.tick_at {
            self.tick_at = now + TICK;
            self.due(&snap, now);
            self.receiver.expire(now.as_millis() as u64);
        }
        work += self.send(stack, now);
        // A new or changed entry, or one gone by expiry or "closed".
        self.dirty |= self.receiver.take_changed();
        if snap.generation != self.generation {
            // Backend ids or states may have changed: translate again.
            self.generation = snap.generation;
            self.dirty |= !self.receiver.is_empty();
        }
        if self.dirty && now >= self.published_at + PUBLISH_EVERY {
            self.dirty = false;
            self.published_at = now;
            let t = self.table(&snap, self.table_seed);
            self.report.published = t.len();
            engine.install_exceptions(t);
            work += 1;
        }
        self.report.local = self.local.len();
        self.report.learnt = self.receiver.len();
        self.report.backlog = self.queue.len();
        self.answered_all |= !self.dirty && self.peers.iter().all(|p| p.answered);
        self.report.waiting = !self.ready(now);
        work
    }

    /// The workers' reports: new exceptions are queued at once, closing ones as closed.
    fn take_reports(&mut self, engine: &Engine, snap: &Snapshot, now: Duration) -> usize {
        let mut n = 0;
        for q in engine.reports() {
            // Bounded per turn: at most what a queue holds.
            while let Some(r) = q.pop() {
                n += 1;
                self.reported(snap, r, now);
            }
        }
        n
    }

    fn reported(&mut self, snap: &Snapshot, r: Report, now: Duration) {
        if r.closing {
            if let Some(l) = self.local.remove(&r.key)
                && l.sent.is_some()
                && let Some(e) = wire_entry(snap, r.key, l.backend, Op::Closed)
            {
                self.queue.push_back(e);
            }
            return;
        }
        let l = self.local.entry(r.key).or_insert(Local {
            backend: r.backend,
            seen: now,
            sent: None,
        });
        l.seen = now;
        if l.backend != r.backend {
            l.backend = r.backend;
            l.sent = None;
        }
    }

    /// Queues what is due: new exceptions, refreshes, and "closed" for those the sweeps no
    /// longer report.
    fn due(&mut self, snap: &Snapshot, now: Duration) {
        let refresh = Duration::from_millis(u64::from(self.settings.refresh_ms));
        let gone = Duration::from_millis(GONE_AFTER_MS);
        // Refreshes go together: once one is due, every entry sent more than half a refresh
        // ago goes with it, so after the first period they fill whole messages instead of
        // following the sweep's spread in small ones.
        // A peer's request: everything goes again, then the end of the answer.
        let refresh = if std::mem::take(&mut self.resend_all) {
            self.answer_queued = true;
            Duration::ZERO
        } else if self
            .local
            .values()
            .any(|l| l.sent.is_some_and(|s| now.saturating_sub(s) >= refresh))
        {
            refresh / 2
        } else {
            refresh
        };
        let queue = &mut self.queue;
        self.local.retain(|k, l| {
            if now.saturating_sub(l.seen) > gone {
                if l.sent.is_some()
                    && let Some(e) = wire_entry(snap, *k, l.backend, Op::Closed)
                {
                    queue.push_back(e);
                }
                return false;
            }
            if l.sent.is_none_or(|s| now.saturating_sub(s) >= refresh) {
                if let Some(e) = wire_entry(snap, *k, l.backend, Op::Holds) {
                    queue.push_back(e);
                }
                l.sent = Some(now);
            }
            true
        });
    }

    /// Sends queued entries in messages of up to [`MAX_ENTRIES`], within the rate; once a
    /// requested resend is all sent, the end of the answer.
    fn send(&mut self, stack: &mut Stack, now: Duration) -> usize {
        let mut n = 0;
        // A part-filled message waits up to BATCH_WAIT for more (the sweep finds new
        // exceptions over its whole pass).
        if self.queue.is_empty() {
            self.queued_at = None;
            if self.answer_queued && self.tx_bucket.take(now) {
                self.answer_queued = false;
                self.send_all(stack, Kind::Answered, &[]);
                return 1;
            }
            return 0;
        }
        let since = *self.queued_at.get_or_insert(now);
        if self.queue.len() < MAX_ENTRIES && now.saturating_sub(since) < BATCH_WAIT {
            return 0;
        }
        self.queued_at = None;
        while !self.queue.is_empty() && self.tx_bucket.take(now) {
            let k = self.queue.len().min(MAX_ENTRIES);
            let entries: Vec<Entry> = self.queue.drain(..k).collect();
            self.send_all(stack, Kind::Exceptions, &entries);
            n += 1;
        }
        n
    }

    /// One message to every peer.
    fn send_all(&mut self, stack: &mut Stack, kind: Kind, entries: &[Entry]) {
        self.seq += 1;
        let bytes = Message {
            kind,
            seq: self.seq,
            timestamp_ms: unix_ms(),
            entries: entries.to_vec(),
        }
        .seal(&self.key);
        for p in &self.peers {
            let Some((port, source)) = p.path else {
                self.report.send_failed += 1;
                continue;
            };
            let (Some(h), Some(ps)) = (
                self.sockets.get(&port),
                stack.ports.get_mut(usize::from(port)),
            ) else {
                self.report.send_failed += 1;
                continue;
            };
            let sock = ps.sockets.get_mut::<udp::Socket>(*h);
            let meta = udp::UdpMetadata {
                endpoint: IpEndpoint::new(ip_address(p.addr), self.settings.port),
                local_address: Some(ip_address(source)),
                meta: Default::default(),
            };
            if sock.send_slice(&bytes, meta).is_ok() {
                self.report.messages_sent += 1;
                self.report.bytes_sent += bytes.len() as u64;
            } else {
                self.report.send_failed += 1;
            }
        }
    }

    /// The peers' datagrams: rate bound, then the receiver's checks.
    fn receive(&mut self, stack: &mut Stack, now: Duration) -> usize {
        let mut n = 0;
        let mut buf = [0u8; MAX_LEN + 1];
        let handles: Vec<(u8, SocketHandle)> = self.sockets.iter().map(|(&p, &h)| (p, h)).collect();
        let (now_ms, unix) = (now.as_millis() as u64, unix_ms());
        for (port, h) in handles {
            let Some(ps) = stack.ports.get_mut(usize::from(port)) else {
                continue;
            };
            // Bounded per turn: what the socket buffered.
            for _ in 0..SOCKET_PACKETS {
                let sock = ps.sockets.get_mut::<udp::Socket>(h);
                let Ok((len, meta)) = sock.recv_slice(&mut buf) else {
                    break;
                };
                n += 1;
                let from = IpAddr::from(meta.endpoint.addr);
                let Some(i) = self.peer_of(from) else {
                    self.report.unknown_source += 1;
                    continue;
                };
                if !self.peers[i].rx_bucket.take(now) {
                    self.report.rate_limited += 1;
                    continue;
                }
                // A refusal is counted per peer by the receiver.
                match self.receiver.accept(i, &buf[..len], now_ms, unix) {
                    Ok(Kind::Request) => self.resend_all = true,
                    Ok(Kind::Answered) => self.peers[i].answered = true,
                    Ok(Kind::Exceptions) | Err(_) => {}
                }
            }
        }
        n
    }

    /// The learnt exceptions in the workers' form: each backend found by address and port
    /// among its service's backends here (ids are this instance's own).
    fn table(&mut self, snap: &Snapshot, seed: u64) -> ExceptionTable {
        let mut v = Vec::with_capacity(self.receiver.len());
        for (k, h) in self.receiver.held() {
            match local_backend(snap, k, h.backend, h.backend_port) {
                Some(backend) => v.push(Exception {
                    key: *k,
                    backend,
                    peer: h.peer as u8,
                }),
                None => self.report.unknown_backend += 1,
            }
        }
        ExceptionTable::build(&v, seed)
    }

    /// Figures for `ctl` and metrics.
    pub fn report(&self) -> SyncReport {
        let mut r = self.report.clone();
        r.dropped_no_room = self.receiver.dropped_no_room;
        r.expired = self.receiver.expired;
        let held = self.receiver.held_by_peer();
        r.peers = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| PeerReport {
                address: p.addr,
                held: held[i],
                stats: self.receiver.peer_stats(i),
            })
            .collect();
        r
    }
}

/// The service of flow `key` in `snap`.
fn service_of(snap: &Snapshot, key: &FlowKey) -> Option<dataplane::snapshot::ServiceIdx> {
    snap.service(
        IpKey::new(&key.dst, key.family == FAMILY_V6),
        key.proto,
        key.dport,
    )
}

/// An exception in wire form: its backend by address and configured port.
fn wire_entry(snap: &Snapshot, key: FlowKey, id: BackendId, op: Op) -> Option<Entry> {
    let b = snap.backend(id)?;
    Some(Entry {
        op,
        key,
        backend: b.addr,
        backend_port: b.port,
    })
}

/// The local id of the backend at `addr`/`port` of flow `key`'s service.
fn local_backend(
    snap: &Snapshot,
    key: &FlowKey,
    addr: IpAddr,
    port: Option<u16>,
) -> Option<BackendId> {
    let si = service_of(snap, key)?;
    snap.services[si.index()]
        .backends
        .iter()
        .copied()
        .find(|&id| {
            snap.backend(id)
                .is_some_and(|b| b.addr == addr && b.port == port)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_bounds_the_rate() {
        let mut b = Bucket::new(100, Duration::ZERO);
        let burst = (0..1000).filter(|_| b.take(Duration::ZERO)).count();
        assert_eq!(burst, 10);
        let mut sent = 0;
        for ms in 1..=1000u64 {
            sent += (0..10)
                .filter(|_| b.take(Duration::from_millis(ms)))
                .count();
        }
        assert!((99..=101).contains(&sent), "{sent} in a second at 100/s");
    }
}
