//! The flow syntax of `fulcrum which` and `fulcrum ctl which`: `SRC:PORT DST:PORT [tcp|udp]`
//! (IPv6 as `[ADDR]:PORT`), given as one argument or as separate words, several flows one
//! after the other; the protocol defaults to tcp.

use std::net::{IpAddr, SocketAddr};

use dataplane::flow::FlowKey;

/// A flow that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{what} {word:?}: {source}")]
    Addr {
        what: &'static str,
        word: String,
        source: std::net::AddrParseError,
    },
    #[error("protocol {0:?}: expected tcp or udp")]
    Protocol(String),
    #[error("{0} and {1}: source and destination must be of one address family")]
    Family(SocketAddr, SocketAddr),
}

/// One flow: its text in the canonical form (`SRC:PORT DST:PORT PROTO`) and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub text: String,
    pub key: FlowKey,
}

fn addr(what: &'static str, word: Option<&str>) -> Result<SocketAddr, FlowError> {
    let word = word.ok_or(FlowError::Missing(what))?;
    word.parse().map_err(|source| FlowError::Addr {
        what,
        word: word.to_string(),
        source,
    })
}

fn protocol(word: &str) -> Option<u8> {
    match word {
        "tcp" => Some(6),
        "udp" => Some(17),
        _ => None,
    }
}

/// Every flow in `args` (each argument split at whitespace).
pub fn parse_flows<S: AsRef<str>>(args: &[S]) -> Result<Vec<Flow>, FlowError> {
    let mut words = args
        .iter()
        .flat_map(|a| a.as_ref().split_whitespace())
        .peekable();
    let mut flows = Vec::new();
    while words.peek().is_some() {
        let src = addr("SRC:PORT", words.next())?;
        let dst = addr("DST:PORT", words.next())?;
        let (proto, name) = match words.peek().copied() {
            Some(w) if protocol(w).is_some() => {
                words.next();
                (protocol(w).unwrap_or(6), w)
            }
            // A word that is neither an address nor a protocol: say which.
            Some(w) if w.parse::<SocketAddr>().is_err() => {
                return Err(FlowError::Protocol(w.to_string()));
            }
            _ => (6, "tcp"),
        };
        let key = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                FlowKey::v4(s.octets(), d.octets(), src.port(), dst.port(), proto)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                FlowKey::v6(s.octets(), d.octets(), src.port(), dst.port(), proto)
            }
            _ => return Err(FlowError::Family(src, dst)),
        };
        flows.push(Flow {
            text: format!("{src} {dst} {name}"),
            key,
        });
    }
    Ok(flows)
}

/// Exactly one flow.
pub fn parse_flow(text: &str) -> Result<Flow, FlowError> {
    let mut flows = parse_flows(&[text])?;
    match flows.len() {
        0 => Err(FlowError::Missing("SRC:PORT")),
        1 => Ok(flows.remove(0)),
        _ => Err(FlowError::Protocol(
            text.split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_argument_or_separate_words_give_the_same_flows() {
        let one = parse_flows(&["10.0.0.1:1234 10.0.0.100:80 udp"]).unwrap();
        let words = parse_flows(&["10.0.0.1:1234", "10.0.0.100:80", "udp"]).unwrap();
        assert_eq!(one, words);
        assert_eq!(one[0].text, "10.0.0.1:1234 10.0.0.100:80 udp");
        assert_eq!(one[0].key.proto, 17);
        // The protocol is optional, also between flows.
        let two = parse_flows(&["10.0.0.1:1 10.0.0.100:80", "[::1]:2 [::2]:80 udp"]).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].key.proto, 6);
        assert_eq!(two[1].text, "[::1]:2 [::2]:80 udp");
        assert_eq!(parse_flow("10.0.0.1:1 10.0.0.100:80").unwrap(), two[0]);
    }

    #[test]
    fn bad_flows_say_what_is_wrong() {
        for (bad, says) in [
            ("", "missing SRC:PORT"),
            ("10.0.0.1:1", "missing DST:PORT"),
            ("10.0.0.1 10.0.0.2:80", "SRC:PORT \"10.0.0.1\""),
            ("10.0.0.1:1 10.0.0.2:80 sctp", "protocol \"sctp\""),
            ("10.0.0.1:1 [::1]:80", "one address family"),
            ("10.0.0.1:1 10.0.0.2:80 10.0.0.3:1 10.0.0.2:80", "protocol"),
        ] {
            let e = parse_flow(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
