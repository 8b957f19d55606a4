//! Neighbour resolution: the MAC address of every backend, by ARP (IPv4, [`arp`]) or
//! neighbour discovery (IPv6, [`nd`]), kept fresh; and the Ethernet framing of the slow
//! path's own IP packets (the stack speaks IP only). This file is the table; [`l2`] holds
//! what ARP and ND share.
//!
//! One table serves both the workers (their next hops, through `Dynamic::neighbors`) and the
//! health checks, so a check goes to exactly the MAC the traffic goes to. Static MACs from
//! the config (a backend's `mac`, a port's `neighbors`) override ARP and are never asked for.
//!
//! Life of an entry: created when a backend (or a packet of the stack) needs it; asked for
//! by broadcast (IPv6: a solicitation to the target's solicited-node multicast group) every
//! `retry_ms` until answered; then confirmed by a unicast request every `refresh_ms`. An
//! unanswered confirmation keeps the MAC (forwarding goes on; the health checks decide
//! whether the backend is alive) and falls back to broadcast requests every `retry_ms`, so a
//! backend that moved to another MAC is found again. A reply with a new MAC replaces the old
//! one at once (e.g. an address taken over by a standby; for IPv6, an advertisement with the
//! override flag), and so does a gratuitous ARP request (the workers pass those on: Linux
//! sends one when an interface's MAC changes, with `arp_notify`).
//!
//! Packets of the stack for a neighbour not yet resolved wait in a short queue (like Linux's
//! `unres_qlen`) and leave as soon as the reply comes: dropping them would cost a health
//! check a TCP retransmission timeout (a second or more) every time an entry is created.
//!
//! IPv6 advertisements reach the slow path when they are addressed to one of the balancer's
//! own addresses (the answers to its solicitations are) or to all-nodes (unsolicited ones,
//! which Linux sends when an interface's MAC changes, with `ndisc_notify`): one with the
//! override flag moves a backend to its new MAC at once.
//!
//! The other way round, the table announces addresses this node takes over ([`Neighbors::announce`]:
//! the VIPs of `announce = "vrrp"` services when keepalived makes the node master): a
//! gratuitous ARP request (IPv6: an unsolicited advertisement with the override flag) on
//! every port with an address of the family, at once and [`GRATUITOUS_REPEATS`] - 1 more
//! times [`GRATUITOUS_INTERVAL`] apart, so that one lost frame does not strand the clients on
//! the old master.

pub mod arp;
pub mod l2;
pub mod nd;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use conf::{Config, NeighborSettings};
use dataplane::ids::PortIdx;
use dataplane::wire::ethernet::ETHERTYPE_IPV6;

use l2::BROADCAST;
pub use l2::{ETH_HEADER, PortL2};

/// Packets kept per unresolved neighbour; older ones are dropped first.
const PENDING_MAX: usize = 8;

/// Gratuitous announcements of an address taken over: this many in all...
pub const GRATUITOUS_REPEATS: u32 = 3;
/// ... this far apart (keepalived's default repeats 5 at once, then again after 5 s).
pub const GRATUITOUS_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never answered: broadcast requests.
    Unresolved,
    /// Answered recently: the next request is a unicast confirmation.
    Fresh,
    /// A confirmation went unanswered: broadcast requests, MAC kept.
    Unconfirmed,
}

#[derive(Debug)]
struct Entry {
    port: PortIdx,
    mac: Option<[u8; 6]>,
    state: State,
    /// When the next request goes out.
    next: Duration,
    pending: VecDeque<Vec<u8>>,
}

/// What the table knows of one neighbour, for `fulcrum ctl status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Its MAC is the config's (a port's `neighbors`, a backend's `mac`); never asked for.
    Static([u8; 6]),
    /// Answered recently.
    Resolved([u8; 6]),
    /// A confirmation is outstanding or went unanswered: the MAC is kept (broadcast requests
    /// go out until it answers).
    Unconfirmed([u8; 6]),
    /// Asked for, never answered: frames to it wait or are not sent.
    Unresolved,
}

impl Resolution {
    /// Its name in `ctl status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Static(_) => "static",
            Resolution::Resolved(_) => "resolved",
            Resolution::Unconfirmed(_) => "unconfirmed",
            Resolution::Unresolved => "unresolved",
        }
    }

    /// The MAC frames to it go to, if any.
    pub fn mac(self) -> Option<[u8; 6]> {
        match self {
            Resolution::Static(m) | Resolution::Resolved(m) | Resolution::Unconfirmed(m) => Some(m),
            Resolution::Unresolved => None,
        }
    }
}

/// Counters of the neighbour table.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeighStats {
    pub requests: u64,
    pub learnt: u64,
    /// A known neighbour answered with another MAC.
    pub changed: u64,
    /// Stack packets dropped: queue of an unresolved neighbour full.
    pub dropped: u64,
    /// ND solicitations and advertisements refused (hop limit, checksum, length, options).
    pub nd_invalid: u64,
    /// Gratuitous ARP requests and unsolicited advertisements sent ([`Neighbors::announce`]).
    pub gratuitous: u64,
}

/// The neighbour table of every port.
#[derive(Debug)]
pub struct Neighbors {
    settings: NeighborSettings,
    ports: Vec<PortL2>,
    statics: HashMap<IpAddr, [u8; 6]>,
    entries: HashMap<IpAddr, Entry>,
    /// No entry has a request due before this.
    next_scan: Duration,
    /// The learnt MACs changed since [`Neighbors::take_changed`].
    changed: bool,
    /// Announcements of addresses taken over, still to send: (when, address).
    gratuitous: Vec<(Duration, IpAddr)>,
    pub stats: NeighStats,
}

impl Neighbors {
    /// The table for `cfg` with every next hop without a static MAC to resolve at once: each
    /// backend's (itself on-link, else its gateway) and every route's gateway.
    pub fn new(cfg: &Config, ports: Vec<PortL2>, now: Duration) -> Neighbors {
        let mut statics = HashMap::new();
        for p in &cfg.ports {
            for (ip, mac) in &p.neighbors {
                statics.insert(*ip, mac.0);
            }
        }
        for s in &cfg.services {
            for b in &s.backends {
                if let Some(mac) = b.mac {
                    statics.insert(b.address, mac.0);
                }
            }
        }
        let mut n = Neighbors {
            settings: cfg.global.neighbors,
            ports,
            statics,
            entries: HashMap::new(),
            next_scan: now,
            changed: false,
            gratuitous: Vec::new(),
            stats: NeighStats::default(),
        };
        for s in &cfg.services {
            for b in &s.backends {
                // A routed backend's frames go to its gateway: that is the neighbour to know.
                if let Some(path) = cfg.route(b.address) {
                    n.want(path.next_hop, PortIdx::new(path.port as u8), now);
                }
            }
        }
        // Every gateway, so that the first packet through one does not wait.
        for (i, p) in cfg.ports.iter().enumerate() {
            for r in &p.routes {
                n.want(r.via, PortIdx::new(i as u8), now);
            }
        }
        n
    }

    /// Takes a reloaded config: its static MACs and settings, and resolution of backends it
    /// adds. What was learnt stays (a removed backend's entry just ages in the table).
    pub fn reconfigure(&mut self, cfg: &Config, now: Duration) {
        let fresh = Neighbors::new(cfg, std::mem::take(&mut self.ports), now);
        self.settings = fresh.settings;
        self.statics = fresh.statics;
        self.ports = fresh.ports;
        for (ip, e) in fresh.entries {
            if !self.entries.contains_key(&ip) {
                self.want(ip, e.port, now);
            }
        }
    }

    /// Makes sure `ip` (reached through `port`) gets resolved, starting now.
    pub fn want(&mut self, ip: IpAddr, port: PortIdx, now: Duration) {
        if self.statics.contains_key(&ip) || !resolvable(ip) {
            return;
        }
        self.entries.entry(ip).or_insert_with(|| Entry {
            port,
            mac: None,
            state: State::Unresolved,
            next: now,
            pending: VecDeque::new(),
        });
        self.next_scan = self.next_scan.min(now);
    }

    /// The MAC of `ip`: static first, then learnt.
    pub fn lookup(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.statics
            .get(&ip)
            .copied()
            .or_else(|| self.entries.get(&ip).and_then(|e| e.mac))
    }

    /// What the table knows of `ip`; `None` when it is neither static nor wanted.
    pub fn resolution(&self, ip: IpAddr) -> Option<Resolution> {
        if let Some(mac) = self.statics.get(&ip) {
            return Some(Resolution::Static(*mac));
        }
        let e = self.entries.get(&ip)?;
        Some(match (e.state, e.mac) {
            (_, None) => Resolution::Unresolved,
            (State::Unconfirmed, Some(m)) => Resolution::Unconfirmed(m),
            (_, Some(m)) => Resolution::Resolved(m),
        })
    }

    /// Every MAC learnt by ARP or ND (statics are the config's, which the snapshot reads itself).
    pub fn learnt(&self) -> HashMap<IpAddr, [u8; 6]> {
        self.entries
            .iter()
            .filter_map(|(ip, e)| Some((*ip, e.mac?)))
            .collect()
    }

    /// Starts with the MACs a previous process learnt (`learnt`, from [`load`]): each entry
    /// this config wants takes its MAC at once, as an unconfirmed one (kept, and asked for
    /// again now), so that adopted flows are forwarded from the first packet instead of
    /// waiting for ARP.
    pub fn seed(&mut self, learnt: &HashMap<IpAddr, [u8; 6]>, now: Duration) {
        for (ip, e) in &mut self.entries {
            if let (None, Some(mac)) = (e.mac, learnt.get(ip)) {
                e.mac = Some(*mac);
                e.state = State::Unconfirmed;
                e.next = now;
                self.changed = true;
            }
        }
        self.next_scan = self.next_scan.min(now);
    }

    /// True once after any learnt MAC appeared or changed.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// When a request is due next.
    pub fn next_due(&self) -> Option<Duration> {
        let gratuitous = self.gratuitous.iter().map(|(t, _)| *t).min();
        let scan = (!self.entries.is_empty()).then_some(self.next_scan);
        [gratuitous, scan].into_iter().flatten().min()
    }

    /// Announces that `addrs` are this node's now (see the module doc): the first round goes
    /// out at the next [`Neighbors::poll`]. Replaces what was still to send for them.
    pub fn announce(&mut self, addrs: &[IpAddr], now: Duration) {
        self.gratuitous.retain(|(_, a)| !addrs.contains(a));
        for i in 0..GRATUITOUS_REPEATS {
            for a in addrs {
                self.gratuitous.push((now + GRATUITOUS_INTERVAL * i, *a));
            }
        }
    }

    /// Forgets the announcements not sent yet (the node no longer holds the addresses).
    pub fn cancel_announcements(&mut self) {
        self.gratuitous.clear();
    }

    /// Sends the announcements that are due, on every port with an address of their family.
    fn send_gratuitous(&mut self, now: Duration, send: &mut impl FnMut(PortIdx, &[u8])) {
        let ports = &self.ports;
        let stats = &mut self.stats;
        self.gratuitous.retain(|&(at, addr)| {
            if at > now {
                return true;
            }
            for (i, port) in ports.iter().enumerate() {
                if !port
                    .addrs
                    .iter()
                    .any(|a| a.addr.is_ipv6() == addr.is_ipv6())
                {
                    continue;
                }
                let frame = match addr {
                    IpAddr::V4(a) => Some(arp::gratuitous(port, a)),
                    IpAddr::V6(a) => nd::unsolicited(port, a),
                };
                if let Some(frame) = frame {
                    send(PortIdx::new(i as u8), &frame);
                    stats.gratuitous += 1;
                }
            }
            false
        });
    }

    /// Sends the requests and announcements that are due (`send(port, frame)`).
    pub fn poll(&mut self, now: Duration, send: &mut impl FnMut(PortIdx, &[u8])) {
        self.send_gratuitous(now, send);
        if now < self.next_scan {
            return;
        }
        let (refresh, retry) = (
            Duration::from_millis(u64::from(self.settings.refresh_ms)),
            Duration::from_millis(u64::from(self.settings.retry_ms)),
        );
        let mut next_scan = now + refresh;
        for (ip, e) in &mut self.entries {
            if e.next <= now {
                // A confirmation goes to the known MAC; anything else to everyone.
                let unicast = match e.state {
                    State::Fresh => {
                        e.state = State::Unconfirmed;
                        e.mac
                    }
                    State::Unresolved | State::Unconfirmed => None,
                };
                if let Some(port) = self.ports.get(e.port.index())
                    && let Some(frame) = match *ip {
                        IpAddr::V4(t) => arp::request(port, t, unicast.unwrap_or(BROADCAST)),
                        IpAddr::V6(t) => nd::solicitation(port, t, unicast),
                    }
                {
                    send(e.port, &frame);
                    self.stats.requests += 1;
                }
                e.next = now + retry;
            }
            next_scan = next_scan.min(e.next);
        }
        self.next_scan = next_scan;
    }

    /// Takes an ARP frame (reply or announcement) received on `port`; learns the sender if
    /// it is a neighbour of interest, and hands back the packets that waited for it.
    pub fn receive_arp(&mut self, port: PortIdx, arp: &[u8], now: Duration) -> Vec<Vec<u8>> {
        match arp::sender(arp) {
            Some((ip, mac)) => self.learn(port, IpAddr::V4(ip), mac, now),
            None => Vec::new(),
        }
    }

    /// Takes an IPv6 packet received on `port` (`eth_src`: its frame's Ethernet source).
    /// `None` if it is not an ND solicitation or advertisement (the stack's, then); otherwise
    /// it is consumed: learns from a valid advertisement for an address of interest (its
    /// target) or solicitation from one (its source), and hands back the frames to send: the
    /// packets that waited, and the answer to a solicitation for one of the port's addresses.
    pub fn receive_nd(
        &mut self,
        port: PortIdx,
        eth_src: [u8; 6],
        packet: &[u8],
        now: Duration,
    ) -> Option<Vec<Vec<u8>>> {
        if !nd::is_nd(packet) {
            return None;
        }
        let Some(msg) = nd::parse(eth_src, packet) else {
            self.stats.nd_invalid += 1;
            return Some(Vec::new());
        };
        Some(match msg {
            nd::Nd::Advert { ip, mac, override_ } => {
                let ip = IpAddr::V6(ip);
                // Without the override flag, an advertisement only confirms the MAC we have.
                if !override_ && self.lookup(ip).is_some_and(|m| m != mac) {
                    return Some(Vec::new());
                }
                self.learn(port, ip, mac, now)
            }
            nd::Nd::Solicit { ip, mac, target } => {
                let mut out = match mac {
                    Some(mac) => self.learn(port, IpAddr::V6(ip), mac, now),
                    None => Vec::new(),
                };
                if let Some(p) = self.ports.get(port.index())
                    && let Some(na) = nd::advertisement(p, target, ip, mac.unwrap_or(eth_src))
                {
                    out.push(na);
                }
                out
            }
        })
    }

    /// Records `ip` at `mac` (if it is a neighbour of interest); returns its waiting packets,
    /// framed.
    pub fn learn(
        &mut self,
        port: PortIdx,
        ip: IpAddr,
        mac: [u8; 6],
        now: Duration,
    ) -> Vec<Vec<u8>> {
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Vec::new();
        }
        let Some(e) = self.entries.get_mut(&ip) else {
            return Vec::new();
        };
        match e.mac {
            None => {
                self.stats.learnt += 1;
                self.changed = true;
            }
            Some(old) if old != mac => {
                self.stats.changed += 1;
                self.changed = true;
            }
            Some(_) => {}
        }
        e.mac = Some(mac);
        e.port = port;
        e.state = State::Fresh;
        e.next = now + Duration::from_millis(u64::from(self.settings.refresh_ms));
        let pending: Vec<Vec<u8>> = e.pending.drain(..).collect();
        let Some(p) = self.ports.get(port.index()) else {
            return Vec::new();
        };
        pending
            .iter()
            .map(|packet| l2::frame(p.mac, mac, l2::ethertype(ip), packet))
            .collect()
    }

    /// Frames an IP packet of the stack for the next hop `dst` (its destination, or the
    /// gateway that reaches it) on `port`; `None` when it has to wait for resolution (it is
    /// queued, and a request goes out at the next poll) or cannot be sent.
    pub fn frame(
        &mut self,
        port: PortIdx,
        dst: IpAddr,
        packet: &[u8],
        now: Duration,
    ) -> Option<Vec<u8>> {
        let src = self.ports.get(port.index())?.mac;
        if let Some(mac) = self.lookup(dst) {
            return Some(l2::frame(src, mac, l2::ethertype(dst), packet));
        }
        if let IpAddr::V6(group) = dst
            && group.is_multicast()
        {
            return Some(l2::frame(
                src,
                nd::multicast_mac(group),
                ETHERTYPE_IPV6,
                packet,
            ));
        }
        if !resolvable(dst) {
            self.stats.dropped += 1;
            return None;
        }
        self.want(dst, port, now);
        let e = self.entries.get_mut(&dst).expect("just wanted");
        if e.pending.len() == PENDING_MAX {
            e.pending.pop_front();
            self.stats.dropped += 1;
        }
        e.pending.push_back(packet.to_vec());
        None
    }
}

/// Whether `ip` can be asked for: IPv4, or a unicast IPv6 address (not unspecified,
/// loopback nor multicast).
fn resolvable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified() || a == Ipv6Addr::LOCALHOST),
    }
}

#[cfg(test)]
mod tests;

/// Saves learnt MACs (one `IP MAC` line each) to `file`, through a new file renamed over it:
/// what the next process [`Neighbors::seed`]s itself with.
pub fn save(learnt: &HashMap<IpAddr, [u8; 6]>, file: &std::path::Path) -> std::io::Result<()> {
    let mut rows: Vec<_> = learnt.iter().collect();
    rows.sort();
    let mut text = String::new();
    for (ip, m) in rows {
        text.push_str(&format!("{ip} {}\n", conf::MacAddr(*m)));
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

/// The MACs [`save`] wrote to `file`; lines that do not parse are skipped, a missing file is
/// an empty map.
pub fn load(file: &std::path::Path) -> HashMap<IpAddr, [u8; 6]> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (ip, mac) = l.split_once(' ')?;
            Some((ip.parse().ok()?, mac.parse::<conf::MacAddr>().ok()?.0))
        })
        .collect()
}
