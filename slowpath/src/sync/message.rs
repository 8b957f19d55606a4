//! The sync message on the wire: a header, up to [`MAX_ENTRIES`] exceptions, and an
//! HMAC-SHA256 over everything before it. Pure: bytes in, bytes out, no I/O.
//!
//! ```text
//! offset size
//!  0      4   magic "FXS1"
//!  4      1   kind: 1 = exceptions (entries follow), 2 = request ("send me yours", none)
//!  5      1   reserved, 0
//!  6      2   entry count (<= MAX_ENTRIES)
//!  8      8   sequence: strictly increasing per sender (it starts at the sender's start
//!             time in µs since the Unix epoch, so a restarted sender continues above)
//! 16      8   timestamp: the sender's clock, ms since the Unix epoch
//! 24   60*n   entries (below)
//! end-32 32   HMAC-SHA256(key, every byte before it)
//!
//! entry:
//!  0  1  family (4, 6)     1  1  IP protocol     2  1  op: 1 = holds, 2 = closed
//!  3  1  reserved, 0       4 16  client address  20 16  VIP
//! 36  2  client port      38  2  VIP port       40 16  backend address
//! 56  2  backend port (0: the client's destination port)     58  2  reserved, 0
//! ```
//!
//! Integers are big-endian; IPv4 addresses sit in the first 4 of their 16 bytes (the flow
//! key's layout), the rest zero. A backend is named by its address and port, which are unique
//! within a service (a config error otherwise) and the same on every instance with the same
//! config; backend ids are local to an instance and never leave it.
//!
//! [`Message::open`] checks the length, then the MAC, and only then reads an entry, so a
//! forged message costs one HMAC and nothing else.

use std::net::IpAddr;

use dataplane::flow::{FAMILY_V4, FAMILY_V6, FlowKey, v4_addr, v4_of};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// First bytes of every message.
pub const MAGIC: [u8; 4] = *b"FXS1";
/// Bytes before the first entry.
pub const HEADER_LEN: usize = 24;
/// Bytes of one entry.
pub const ENTRY_LEN: usize = 60;
/// Bytes of the MAC at the end.
pub const MAC_LEN: usize = 32;
/// Entries in one message: 19 keep a message (1196 bytes) and its IPv6 and UDP headers
/// within IPv6's minimum MTU of 1280, so a message is never fragmented.
pub const MAX_ENTRIES: usize = 19;
/// The largest message.
pub const MAX_LEN: usize = HEADER_LEN + MAX_ENTRIES * ENTRY_LEN + MAC_LEN;
/// The smallest key accepted: shorter keys are guessable.
pub const MIN_KEY_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// What a message asks or says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exceptions of the sender's flows (entries follow).
    Exceptions = 1,
    /// "Send me every exception you hold": an instance that starts, before it announces.
    Request = 2,
    /// "Every exception I held when your request came has been sent" (no entries): the
    /// end of the answer to a [`Kind::Request`], sent even when there was nothing to send,
    /// so that a starting instance need not wait out `startup_wait_ms` for a peer with no
    /// exceptions.
    Answered = 3,
}

/// What an entry says of its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The sender holds the flow on this backend (new, or a refresh).
    Holds = 1,
    /// The flow closed at the sender: forget it.
    Closed = 2,
}

/// One exception: a flow and the backend it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub op: Op,
    /// The client -> VIP key, as the flow table has it.
    pub key: FlowKey,
    pub backend: IpAddr,
    /// The backend's configured port (NAT), `None` when it takes the client's.
    pub backend_port: Option<u16>,
}

/// A message as read or to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub seq: u64,
    pub timestamp_ms: u64,
    pub entries: Vec<Entry>,
}

/// Why received bytes are not a message. The first two are decided before the MAC is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("too short or too long for a message")]
    Length,
    #[error("not a sync message (magic)")]
    Magic,
    #[error("the MAC does not match the key")]
    Unauthenticated,
    #[error("malformed header or entry")]
    Malformed,
}

/// The shared key, checked for length.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

impl Key {
    /// A key of at least [`MIN_KEY_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Option<Key> {
        (bytes.len() >= MIN_KEY_LEN).then(|| Key(bytes.to_vec()))
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }
}

impl Message {
    /// The bytes of this message, authenticated with `key`. At most [`MAX_ENTRIES`] entries
    /// are written (the caller batches).
    pub fn seal(&self, key: &Key) -> Vec<u8> {
        let entries = &self.entries[..self.entries.len().min(MAX_ENTRIES)];
        let mut b = Vec::with_capacity(HEADER_LEN + entries.len() * ENTRY_LEN + MAC_LEN);
        b.extend_from_slice(&MAGIC);
        b.push(self.kind as u8);
        b.push(0);
        b.extend_from_slice(&(entries.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        for e in entries {
            write_entry(&mut b, e);
        }
        authenticate(b, key)
    }

    /// Reads and authenticates `bytes`: length and magic first, then the MAC, then the rest.
    pub fn open(bytes: &[u8], key: &Key) -> Result<Message, ParseError> {
        if bytes.len() < HEADER_LEN + MAC_LEN || bytes.len() > MAX_LEN {
            return Err(ParseError::Length);
        }
        if bytes[..4] != MAGIC {
            return Err(ParseError::Magic);
        }
        let (body, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut mac = key.mac();
        mac.update(body);
        mac.verify_slice(tag)
            .map_err(|_| ParseError::Unauthenticated)?;
        let kind = match body[4] {
            1 => Kind::Exceptions,
            2 => Kind::Request,
            3 => Kind::Answered,
            _ => return Err(ParseError::Malformed),
        };
        let count = usize::from(u16::from_be_bytes([body[6], body[7]]));
        if body[5] != 0 || count > MAX_ENTRIES || body.len() != HEADER_LEN + count * ENTRY_LEN {
            return Err(ParseError::Malformed);
        }
        if kind != Kind::Exceptions && count != 0 {
            return Err(ParseError::Malformed);
        }
        let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().expect("8 bytes"));
        let entries = body[HEADER_LEN..]
            .chunks_exact(ENTRY_LEN)
            .map(read_entry)
            .collect::<Option<Vec<Entry>>>()
            .ok_or(ParseError::Malformed)?;
        Ok(Message {
            kind,
            seq: u64_at(8),
            timestamp_ms: u64_at(16),
            entries,
        })
    }
}

/// `body` with its MAC under `key` appended: a message's last step (and the fuzz target's
/// way past the MAC to the parser behind it).
pub fn authenticate(mut body: Vec<u8>, key: &Key) -> Vec<u8> {
    let mut mac = key.mac();
    mac.update(&body);
    body.extend_from_slice(&mac.finalize().into_bytes());
    body
}

fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => v4_addr(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

fn write_entry(b: &mut Vec<u8>, e: &Entry) {
    let k = &e.key;
    b.extend_from_slice(&[k.family, k.proto, e.op as u8, 0]);
    b.extend_from_slice(&k.src);
    b.extend_from_slice(&k.dst);
    b.extend_from_slice(&k.sport.to_be_bytes());
    b.extend_from_slice(&k.dport.to_be_bytes());
    b.extend_from_slice(&addr_bytes(e.backend));
    b.extend_from_slice(&e.backend_port.unwrap_or(0).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
}

/// One entry of `ENTRY_LEN` bytes; `None` when a field holds what no sender writes.
fn read_entry(c: &[u8]) -> Option<Entry> {
    let (family, proto, op) = (c[0], c[1], c[2]);
    let op = match op {
        1 => Op::Holds,
        2 => Op::Closed,
        _ => return None,
    };
    if c[3] != 0 || c[58] != 0 || c[59] != 0 {
        return None;
    }
    let a16 = |i: usize| -> [u8; 16] { c[i..i + 16].try_into().expect("16 bytes") };
    let (src, dst, backend) = (a16(4), a16(20), a16(40));
    let v4_clean = |a: &[u8; 16]| a[4..].iter().all(|&x| x == 0);
    let backend = match family {
        FAMILY_V4 if v4_clean(&src) && v4_clean(&dst) && v4_clean(&backend) => {
            IpAddr::from(v4_of(&backend))
        }
        FAMILY_V6 => IpAddr::from(backend),
        _ => return None,
    };
    let port = |i: usize| u16::from_be_bytes([c[i], c[i + 1]]);
    Some(Entry {
        op,
        key: FlowKey {
            src,
            dst,
            sport: port(36),
            dport: port(38),
            proto,
            family,
        },
        backend,
        backend_port: Some(port(56)).filter(|&p| p != 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn key() -> Key {
        Key::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    pub(crate) fn entry(n: u16) -> Entry {
        Entry {
            op: Op::Holds,
            key: FlowKey::v4([10, 1, 0, 2], [10, 0, 0, 100], 40000 + n, 80, 6),
            backend: "10.2.0.12".parse().unwrap(),
            backend_port: None,
        }
    }

    /// A message made by hand, byte by byte, read back: the layout is the documented one.
    #[test]
    fn golden_message_layout() {
        let m = Message {
            kind: Kind::Exceptions,
            seq: 0x0102_0304_0506_0708,
            timestamp_ms: 1_700_000_000_000,
            entries: vec![Entry {
                op: Op::Holds,
                key: FlowKey::v4([10, 1, 0, 2], [10, 0, 0, 100], 40001, 80, 6),
                backend: "10.2.0.12".parse().unwrap(),
                backend_port: Some(8080),
            }],
        };
        let b = m.seal(&key());
        let mut want = Vec::new();
        want.extend_from_slice(b"FXS1"); // magic
        want.extend_from_slice(&[1, 0, 0, 1]); // exceptions, reserved, 1 entry
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // sequence
        want.extend_from_slice(&1_700_000_000_000u64.to_be_bytes()); // timestamp
        want.extend_from_slice(&[4, 6, 1, 0]); // IPv4, TCP, holds, reserved
        want.extend_from_slice(&[10, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // client
        want.extend_from_slice(&[10, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // VIP
        want.extend_from_slice(&[0x9c, 0x41, 0, 80]); // 40001, 80
        want.extend_from_slice(&[10, 2, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // backend
        want.extend_from_slice(&[0x1f, 0x90, 0, 0]); // 8080, reserved
        assert_eq!(&b[..b.len() - MAC_LEN], &want[..]);
        // HMAC-SHA256 of those bytes under the test key, computed independently with
        // Python's `hmac.new(key, body, hashlib.sha256).hexdigest()`.
        let tag: String = b[b.len() - MAC_LEN..]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        assert_eq!(
            tag,
            "fd5ffd65a8f47006745d7d3128cf77eced186c1e755d86382e4a83df72a2c59a"
        );
        assert_eq!(Message::open(&b, &key()), Ok(m));
    }

    #[test]
    fn round_trip_every_kind() {
        let mut m = Message {
            kind: Kind::Exceptions,
            seq: 7,
            timestamp_ms: 9,
            entries: (0..MAX_ENTRIES as u16).map(entry).collect(),
        };
        m.entries[3].op = Op::Closed;
        m.entries[4].key = FlowKey::v6([0xfd; 16], [0xfe; 16], 1, 443, 17);
        m.entries[4].backend = "fd00::12".parse().unwrap();
        let b = m.seal(&key());
        assert_eq!(b.len(), MAX_LEN);
        assert_eq!(Message::open(&b, &key()), Ok(m));
        let r = Message {
            kind: Kind::Request,
            seq: 8,
            timestamp_ms: 10,
            entries: vec![],
        };
        assert_eq!(Message::open(&r.seal(&key()), &key()), Ok(r));
        let a = Message {
            kind: Kind::Answered,
            seq: 9,
            timestamp_ms: 11,
            entries: vec![],
        };
        assert_eq!(Message::open(&a.seal(&key()), &key()), Ok(a.clone()));
        // A request or an end of answer carries no entry.
        for kind in [Kind::Request, Kind::Answered] {
            let bad = Message {
                kind,
                entries: vec![entry(1)],
                ..a.clone()
            };
            assert_eq!(
                Message::open(&bad.seal(&key()), &key()),
                Err(ParseError::Malformed),
                "{kind:?} with an entry"
            );
        }
    }

    #[test]
    fn a_wrong_key_or_any_changed_byte_is_unauthenticated() {
        let m = Message {
            kind: Kind::Exceptions,
            seq: 1,
            timestamp_ms: 2,
            entries: vec![entry(1)],
        };
        let b = m.seal(&key());
        let other = Key::new(b"another key of 16+ bytes").unwrap();
        assert_eq!(Message::open(&b, &other), Err(ParseError::Unauthenticated));
        for i in 4..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x01;
            assert_eq!(
                Message::open(&c, &key()),
                Err(ParseError::Unauthenticated),
                "byte {i}"
            );
        }
    }

    #[test]
    fn lengths_and_magic_are_refused_before_the_mac() {
        assert_eq!(Message::open(&[], &key()), Err(ParseError::Length));
        assert_eq!(
            Message::open(&[0u8; MAX_LEN + 1], &key()),
            Err(ParseError::Length)
        );
        assert_eq!(
            Message::open(&[0u8; HEADER_LEN + MAC_LEN], &key()),
            Err(ParseError::Magic)
        );
    }

    /// Authenticated but inconsistent (a sender bug, or a key in the wrong hands): refused
    /// as malformed, never a panic.
    #[test]
    fn authenticated_nonsense_is_malformed() {
        let seal_raw = |body: &[u8]| authenticate(body.to_vec(), &key());
        let good = Message {
            kind: Kind::Exceptions,
            seq: 1,
            timestamp_ms: 2,
            entries: vec![entry(1)],
        }
        .seal(&key());
        let body = &good[..good.len() - MAC_LEN];
        for (at, v) in [
            (4, 9u8),
            (5, 1),
            (7, 2),
            (24, 5),
            (26, 3),
            (27, 1),
            (28 + 4, 1),
        ] {
            let mut b = body.to_vec();
            b[at] = v;
            assert_eq!(
                Message::open(&seal_raw(&b), &key()),
                Err(ParseError::Malformed),
                "byte {at} = {v}"
            );
        }
        // A request with entries.
        let mut b = body.to_vec();
        b[4] = 2;
        assert_eq!(
            Message::open(&seal_raw(&b), &key()),
            Err(ParseError::Malformed)
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Key::new(b"short").is_none());
        assert!(Key::new(&[0u8; MIN_KEY_LEN]).is_some());
    }
}
