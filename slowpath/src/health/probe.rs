//! What each check type sends once connected, and how it judges what comes back. Pure
//! functions over bytes: the runner feeds them whatever the socket received so far.
//!
//! - `tcp`: the handshake is the whole check; nothing is sent.
//! - `http`: `METHOD PATH HTTP/1.0` with `Host`, `User-Agent` and `Connection: close`; the
//!   status line decides (the rest of the response is not read).
//! - `tls-hello`: a TLS 1.2-compatible ClientHello offering TLS 1.3 and 1.2; the first
//!   handshake record decides: a ServerHello (also a TLS 1.3 HelloRetryRequest, which is one
//!   on the wire) is healthy, an alert is not.
//! - `agent`: the optional `send` text; the reply's first line is parsed by
//!   [`AgentReply::parse`].

use std::net::IpAddr;

use conf::{CheckKind, HttpCheck};

use super::state::{AgentReply, Failure, Outcome};

/// Bytes a check may need to read before it can judge: a status line, a record header, an
/// agent's line. More than this without a verdict is a bad reply.
pub const MAX_REPLY: usize = 1024;

/// The request a check of `kind` sends to `addr` after connecting (empty: nothing).
pub fn request(kind: &CheckKind, addr: IpAddr, random: [u8; 32]) -> Vec<u8> {
    match kind {
        CheckKind::Tcp => Vec::new(),
        CheckKind::Http(h) => http_request(h, addr),
        CheckKind::TlsHello { sni } => client_hello(sni.as_deref(), random),
        CheckKind::Agent { send } => send.clone().unwrap_or_default().into_bytes(),
    }
}

fn http_request(h: &HttpCheck, addr: IpAddr) -> Vec<u8> {
    let host = match (&h.host, addr) {
        (Some(host), _) => host.clone(),
        (None, IpAddr::V4(a)) => a.to_string(),
        (None, IpAddr::V6(a)) => format!("[{a}]"),
    };
    format!(
        "{} {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: fulcrum-health-check\r\nConnection: close\r\n\r\n",
        h.method, h.path
    )
    .into_bytes()
}

/// Judges the bytes received so far; `closed` when the peer will send no more. `None`: wait
/// for more.
pub fn judge(kind: &CheckKind, reply: &[u8], closed: bool) -> Option<Outcome> {
    match kind {
        CheckKind::Tcp => Some(Outcome::Success),
        CheckKind::Http(h) => judge_http(h, reply, closed),
        CheckKind::TlsHello { .. } => judge_tls(reply, closed),
        CheckKind::Agent { .. } => judge_agent(reply, closed),
    }
}

fn judge_http(h: &HttpCheck, reply: &[u8], closed: bool) -> Option<Outcome> {
    let line_end = reply.windows(2).position(|w| w == b"\r\n");
    let line = match line_end {
        Some(end) => &reply[..end],
        None if closed || reply.len() >= MAX_REPLY => reply,
        None => return None,
    };
    if line.is_empty() && closed {
        return Some(Outcome::Failure(Failure::Closed));
    }
    // "HTTP/1.1 200 OK": a version, a three-digit status, an optional reason.
    let text = String::from_utf8_lossy(line);
    let mut parts = text.splitn(3, ' ');
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") && code.len() == 3 => {
            code.parse::<u16>().ok()
        }
        _ => None,
    };
    Some(match status {
        Some(s) if h.expect.contains(&s) => Outcome::Success,
        _ => Outcome::Failure(Failure::BadReply),
    })
}

fn judge_tls(reply: &[u8], closed: bool) -> Option<Outcome> {
    const HANDSHAKE: u8 = 22;
    const ALERT: u8 = 21;
    const SERVER_HELLO: u8 = 2;
    // Record header (type, version, length), then the handshake message type.
    if reply.len() < 6 {
        return closed.then_some(Outcome::Failure(Failure::Closed));
    }
    let ok = reply[0] == HANDSHAKE && reply[1] == 3 && reply[5] == SERVER_HELLO;
    if !ok && reply[0] != ALERT && reply[0] != HANDSHAKE {
        return Some(Outcome::Failure(Failure::BadReply));
    }
    Some(if ok {
        Outcome::Success
    } else {
        Outcome::Failure(Failure::BadReply)
    })
}

fn judge_agent(reply: &[u8], closed: bool) -> Option<Outcome> {
    let line = match reply.iter().position(|&b| b == b'\n') {
        Some(end) => &reply[..end],
        None if closed || reply.len() >= MAX_REPLY => reply,
        None => return None,
    };
    let text = String::from_utf8_lossy(line);
    Some(match AgentReply::parse(&text) {
        Some(r) => Outcome::Agent(r),
        None if reply.is_empty() => Outcome::Failure(Failure::Closed),
        None => Outcome::Failure(Failure::BadReply),
    })
}

/// A ClientHello record any TLS 1.2 or 1.3 server answers with a ServerHello: TLS 1.3 and
/// common ECDHE/AES-GCM/ChaCha20 suites, SNI when given, x25519 key share (any 32 bytes are
/// a valid x25519 public key, so the random bytes serve; the handshake never goes further).
pub fn client_hello(sni: Option<&str>, random: [u8; 32]) -> Vec<u8> {
    let mut ext = Vec::new();
    let mut extension = |kind: u16, body: &[u8]| {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(body.len() as u16).to_be_bytes());
        ext.extend_from_slice(body);
    };
    if let Some(name) = sni {
        let n = name.as_bytes();
        let mut body = Vec::with_capacity(n.len() + 5);
        body.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes()); // server_name_list
        body.push(0); // host_name
        body.extend_from_slice(&(n.len() as u16).to_be_bytes());
        body.extend_from_slice(n);
        extension(0x0000, &body);
    }
    // supported_groups: x25519, secp256r1, secp384r1.
    extension(0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]);
    // ec_point_formats: uncompressed.
    extension(0x000b, &[1, 0]);
    // signature_algorithms: ecdsa_p256_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256,
    // ecdsa_p384_sha384, rsa_pss_rsae_sha384, rsa_pkcs1_sha384, rsa_pss_rsae_sha512,
    // rsa_pkcs1_sha512, ed25519.
    extension(
        0x000d,
        &[0, 18, 4, 3, 8, 4, 4, 1, 5, 3, 8, 5, 5, 1, 8, 6, 6, 1, 8, 7],
    );
    // supported_versions: TLS 1.3, TLS 1.2.
    extension(0x002b, &[4, 3, 4, 3, 3]);
    // psk_key_exchange_modes: psk_dhe_ke (some servers want it beside a key share).
    extension(0x002d, &[1, 1]);
    // key_share: x25519 with 32 bytes.
    let mut share = vec![0, 36, 0, 0x1d, 0, 32];
    share.extend_from_slice(&random);
    extension(0x0033, &share);

    // TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256,
    // ECDHE-ECDSA/RSA with AES-128/256-GCM and ChaCha20, RSA AES-128/256-GCM.
    let suites: [u16; 11] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0x009c, 0x009d,
    ];
    let mut hello = Vec::with_capacity(256);
    hello.extend_from_slice(&[3, 3]); // legacy_version TLS 1.2
    hello.extend_from_slice(&random); // random (reusing the bytes is harmless here)
    hello.push(32); // legacy_session_id: 32 bytes, as middlebox-compatible clients send
    hello.extend_from_slice(&random);
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);

    let mut handshake = Vec::with_capacity(hello.len() + 4);
    handshake.push(1); // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);

    let mut record = Vec::with_capacity(handshake.len() + 5);
    record.extend_from_slice(&[22, 3, 1]); // handshake, legacy record version TLS 1.0
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(expect: std::ops::RangeInclusive<u16>) -> CheckKind {
        CheckKind::Http(HttpCheck {
            method: "HEAD".into(),
            path: "/healthz".into(),
            host: None,
            expect,
        })
    }

    #[test]
    fn http_request_and_status() {
        let k = http(200..=399);
        let req = request(&k, "10.0.0.11".parse().unwrap(), [0; 32]);
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "HEAD /healthz HTTP/1.0\r\nHost: 10.0.0.11\r\nUser-Agent: fulcrum-health-check\r\n\
             Connection: close\r\n\r\n"
        );
        let req = request(&k, "2001:db8::1".parse().unwrap(), [0; 32]);
        assert!(
            String::from_utf8(req)
                .unwrap()
                .contains("Host: [2001:db8::1]\r\n")
        );

        assert_eq!(
            judge(&k, b"HTTP/1.1 200", false),
            None,
            "wait for the line end"
        );
        assert_eq!(
            judge(&k, b"HTTP/1.1 204 No Content\r\n", false),
            Some(Outcome::Success)
        );
        assert_eq!(
            judge(&k, b"HTTP/1.0 302 Found\r\nLocation: /\r\n", false),
            Some(Outcome::Success)
        );
        let bad = Some(Outcome::Failure(Failure::BadReply));
        assert_eq!(
            judge(&k, b"HTTP/1.1 503 Service Unavailable\r\n", false),
            bad
        );
        assert_eq!(judge(&k, b"SSH-2.0-OpenSSH_9.2\r\n", false), bad);
        assert_eq!(judge(&k, b"HTTP/1.1 20", true), bad, "closed mid-line");
        assert_eq!(
            judge(&k, b"", true),
            Some(Outcome::Failure(Failure::Closed))
        );
        assert_eq!(
            judge(&http(200..=200), b"HTTP/1.1 201 Created\r\n", false),
            bad
        );
        assert_eq!(
            judge(&k, &[b'x'; MAX_REPLY], false),
            bad,
            "no line end in a KiB"
        );
    }

    #[test]
    fn tls_server_hello_or_alert() {
        let k = CheckKind::TlsHello { sni: None };
        assert_eq!(judge(&k, &[22, 3, 3, 0, 90], false), None);
        assert_eq!(
            judge(&k, &[22, 3, 3, 0, 90, 2, 0, 0], false),
            Some(Outcome::Success)
        );
        let bad = Some(Outcome::Failure(Failure::BadReply));
        assert_eq!(
            judge(&k, &[21, 3, 3, 0, 2, 2, 40], false),
            bad,
            "handshake_failure alert"
        );
        assert_eq!(judge(&k, b"HTTP/1.1 400 Bad Request\r\n", false), bad);
        assert_eq!(
            judge(&k, &[22, 3], true),
            Some(Outcome::Failure(Failure::Closed))
        );
    }

    #[test]
    fn client_hello_is_well_formed() {
        let r = client_hello(Some("www.example.com"), [7; 32]);
        // Record: handshake, length matches.
        assert_eq!(&r[..3], &[22, 3, 1]);
        assert_eq!(usize::from(u16::from_be_bytes([r[3], r[4]])), r.len() - 5);
        // Handshake: client_hello, 24-bit length matches.
        assert_eq!(r[5], 1);
        let hl = u32::from_be_bytes([0, r[6], r[7], r[8]]) as usize;
        assert_eq!(hl, r.len() - 9);
        let body = &r[9..];
        assert_eq!(&body[..2], &[3, 3]);
        // session id, suites, compression, then the extensions block fills the rest.
        let mut at = 2 + 32;
        at += 1 + usize::from(body[at]);
        let suites = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        at += 2 + suites;
        at += 1 + usize::from(body[at]);
        let ext_len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        assert_eq!(at + 2 + ext_len, body.len());
        // Each extension's length adds up; SNI carries the name.
        let mut e = at + 2;
        let mut kinds = Vec::new();
        while e < body.len() {
            let kind = u16::from_be_bytes([body[e], body[e + 1]]);
            let len = usize::from(u16::from_be_bytes([body[e + 2], body[e + 3]]));
            kinds.push(kind);
            e += 4 + len;
        }
        assert_eq!(e, body.len());
        assert_eq!(
            kinds,
            [0x0000, 0x000a, 0x000b, 0x000d, 0x002b, 0x002d, 0x0033]
        );
        assert!(r.windows(15).any(|w| w == b"www.example.com"));
        // Without a name there is no SNI extension.
        let r = client_hello(None, [0; 32]);
        assert_eq!(
            r.len(),
            client_hello(Some("www.example.com"), [0; 32]).len() - 24
        );
    }

    #[test]
    fn agent_line() {
        let k = CheckKind::Agent { send: None };
        assert_eq!(judge(&k, b"dra", false), None);
        match judge(&k, b"drain\n", false) {
            Some(Outcome::Agent(r)) => assert_eq!(r.mode, super::super::AgentMode::Drain),
            other => panic!("{other:?}"),
        }
        match judge(&k, b"up 50%", true) {
            Some(Outcome::Agent(r)) => assert_eq!(r.weight_pct, Some(50)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            judge(&k, b"", true),
            Some(Outcome::Failure(Failure::Closed))
        );
        assert_eq!(
            judge(&k, b"what?\n", false),
            Some(Outcome::Failure(Failure::BadReply))
        );
    }
}
