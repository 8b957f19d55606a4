//! Serving short request/answer connections without blocking, for the control socket and
//! the metrics endpoint: the slow-path loop calls [`Server::serve`] between its other duties,
//! so no client may make it wait.
//!
//! Readiness, not arrival order: the listener and every connection are registered with one
//! `mio` poller, and each turn serves only what the kernel says is ready (one `epoll_wait`
//! with a zero timeout), so a connection that sends nothing costs nothing and a complete
//! request is answered on the turn it arrives, whatever else is connected. Every waiting
//! connection is accepted at once; bounds keep the rest in check:
//!
//! - at most `max_conns` connections in all and `max_per_client` from one client address (a
//!   Unix socket's clients count as one): a newcomer over a bound closes the oldest
//!   connection of that client (or in all) that is still sending its request, the idle ones
//!   (nothing sent yet) first, so an idle or slow crowd never locks a real client out;
//! - a connection that has sent nothing within `idle`, or that has not received its whole
//!   answer within `deadline` of being accepted, is closed;
//! - a request longer than `max_len` is complete as it is (the caller refuses it);
//! - answers are written without blocking as the client reads them (a client that does not
//!   read is closed at its deadline).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

/// A control socket or metrics address that cannot be had (the caller decides whether the
/// balancer runs on without it).
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("control socket {}: {source}", path.display())]
    Control {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("control socket {}: another fulcrum is listening there", path.display())]
    ControlInUse { path: std::path::PathBuf },
    #[error("metrics_listen {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
}

/// Whom a connection comes from, for the per-client bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A Unix socket's client (every one counts as the same client).
    Local,
    Ip(IpAddr),
}

/// A listening socket whose connections a [`Server`] serves.
pub trait Listener: mio::event::Source {
    type Stream: Read + Write + mio::event::Source;
    /// The next waiting connection (`WouldBlock` when none waits).
    fn accept_peer(&self) -> io::Result<(Self::Stream, Peer)>;
}

impl Listener for mio::net::UnixListener {
    type Stream = mio::net::UnixStream;
    fn accept_peer(&self) -> io::Result<(mio::net::UnixStream, Peer)> {
        let (stream, _) = self.accept()?;
        Ok((stream, Peer::Local))
    }
}

impl Listener for mio::net::TcpListener {
    type Stream = mio::net::TcpStream;
    fn accept_peer(&self) -> io::Result<(mio::net::TcpStream, Peer)> {
        let (stream, addr) = self.accept()?;
        Ok((stream, Peer::Ip(addr.ip())))
    }
}

/// The bounds of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections held at once, in all.
    pub max_conns: usize,
    /// Connections held at once from one client address.
    pub max_per_client: usize,
    /// A request longer than this is complete, whatever its end looks like.
    pub max_len: usize,
    /// A connection that has sent nothing by then is closed.
    pub idle: Duration,
    /// A connection not served (request read and answer written) by then is closed.
    pub deadline: Duration,
}

/// What a server has done since it started, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub accepted: u64,
    /// Requests answered (the answer handed to the kernel in full).
    pub answered: u64,
    /// Closed for a newcomer over a bound.
    pub evicted: u64,
    /// Closed at the idle timeout or the deadline.
    pub timed_out: u64,
    /// Closed by the client before its answer, or failed.
    pub failed: u64,
}

/// What one endpoint has done and holds, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointStats {
    /// `control` or `metrics`.
    pub endpoint: &'static str,
    pub server: ServerStats,
    /// Requests answered with a refusal (a malformed or refused control request; a metrics
    /// request for another path or method, too large, or not HTTP).
    pub refused: u64,
    /// Connections held now.
    pub open: usize,
}

struct Conn<S> {
    stream: S,
    peer: Peer,
    since: Instant,
    buf: Vec<u8>,
    /// The answer and how much of it is written, once the request is read.
    out: Option<(Vec<u8>, usize)>,
}

const LISTENER: Token = Token(0);

/// A listener, its connections, and their poller.
pub struct Server<L: Listener> {
    /// For log lines.
    what: &'static str,
    poll: Poll,
    events: Events,
    listener: L,
    conns: HashMap<Token, Conn<L::Stream>>,
    next: usize,
    limits: Limits,
    /// Whether the bytes received so far are a whole request.
    complete: fn(&[u8]) -> bool,
    pub stats: ServerStats,
}

enum Step {
    /// Wait for the next readiness.
    Wait,
    /// Request read: answer it.
    Answer,
    /// Close it (answered, or failed).
    Close { answered: bool },
}

impl<L: Listener> Server<L> {
    pub fn new(
        what: &'static str,
        mut listener: L,
        limits: Limits,
        complete: fn(&[u8]) -> bool,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            what,
            poll,
            events: Events::with_capacity(256),
            listener,
            conns: HashMap::new(),
            next: 1,
            limits,
            complete,
            stats: ServerStats::default(),
        })
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// Accepts what waits, reads what has arrived, answers every complete request with
    /// `answer(request bytes, connection)`, writes what the clients take, closes what is done
    /// or over its time. Never blocks. Returns how many requests were answered this turn.
    /// `answer` returning `None` takes the request over (it answers later on a duplicate of
    /// the connection): this server closes its own handle of it.
    pub fn serve(&mut self, mut answer: impl FnMut(&[u8], &L::Stream) -> Option<Vec<u8>>) -> usize {
        if let Err(e) = self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            if e.kind() != ErrorKind::Interrupted {
                tracing::warn!(error = %e, "{} poll", self.what);
            }
            return 0;
        }
        let ready: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        let mut answered = 0;
        let mut fresh = Vec::new();
        for token in ready {
            if token == LISTENER {
                self.accept(&mut fresh);
            } else {
                answered += self.advance(token, &mut answer);
            }
        }
        // A new connection may have sent its request already: serve it now, not next turn.
        for token in fresh {
            answered += self.advance(token, &mut answer);
        }
        self.expire();
        answered
    }

    fn accept(&mut self, fresh: &mut Vec<Token>) {
        loop {
            let (mut stream, peer) = match self.listener.accept_peer() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, typically: what is held is served meanwhile.
                    tracing::warn!(error = %e, "{} accept", self.what);
                    return;
                }
            };
            self.stats.accepted += 1;
            if self.conns.values().filter(|c| c.peer == peer).count() >= self.limits.max_per_client
            {
                self.evict(Some(peer));
            }
            if self.conns.len() >= self.limits.max_conns {
                self.evict(None);
            }
            let token = Token(self.next);
            self.next = self.next.wrapping_add(1).max(1);
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(error = %e, "{} register", self.what);
                continue;
            }
            self.conns.insert(
                token,
                Conn {
                    stream,
                    peer,
                    since: Instant::now(),
                    buf: Vec::new(),
                    out: None,
                },
            );
            fresh.push(token);
        }
    }

    /// Closes the oldest connection still sending its request (of `peer`, or of anyone),
    /// an idle one (nothing sent) before a slow one.
    fn evict(&mut self, peer: Option<Peer>) {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| c.out.is_none() && peer.is_none_or(|p| c.peer == p))
            .min_by_key(|(_, c)| (!c.buf.is_empty(), c.since))
            .map(|(t, _)| *t);
        if let Some(t) = victim {
            self.stats.evicted += 1;
            self.close(t);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Reads or writes what the connection allows now. Returns 1 if it answered a request.
    fn advance(
        &mut self,
        token: Token,
        answer: &mut impl FnMut(&[u8], &L::Stream) -> Option<Vec<u8>>,
    ) -> usize {
        let Some(c) = self.conns.get_mut(&token) else {
            return 0;
        };
        let mut step = if c.out.is_none() {
            read(c, self.limits.max_len, self.complete)
        } else {
            Step::Wait
        };
        if matches!(step, Step::Answer) {
            match answer(&c.buf, &c.stream) {
                Some(out) => c.out = Some((out, 0)),
                // Taken over: answered elsewhere, later.
                None => step = Step::Close { answered: true },
            }
        }
        if c.out.is_some() {
            step = write(c);
        }
        match step {
            Step::Wait | Step::Answer => 0,
            Step::Close { answered } => {
                if answered {
                    self.stats.answered += 1;
                } else {
                    self.stats.failed += 1;
                }
                self.close(token);
                usize::from(answered)
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let Limits { idle, deadline, .. } = self.limits;
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let age = now.saturating_duration_since(c.since);
                age >= deadline || (c.buf.is_empty() && c.out.is_none() && age >= idle)
            })
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.stats.timed_out += 1;
            self.close(t);
        }
    }
}

/// Reads until the request is complete, the client closes, or nothing more is there.
fn read<S: Read>(c: &mut Conn<S>, max_len: usize, complete: fn(&[u8]) -> bool) -> Step {
    let mut chunk = [0u8; 2048];
    loop {
        match c.stream.read(&mut chunk) {
            // Closed its side: what it sent is its request (an empty one is refused).
            Ok(0) => return Step::Answer,
            Ok(n) => {
                c.buf.extend_from_slice(&chunk[..n]);
                if c.buf.len() > max_len || complete(&c.buf) {
                    return Step::Answer;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Step::Close { answered: false },
        }
    }
}

/// Writes what the client takes of the answer.
fn write<S: Write>(c: &mut Conn<S>) -> Step {
    let Some((out, done)) = c.out.as_mut() else {
        return Step::Wait;
    };
    while *done < out.len() {
        match c.stream.write(&out[*done..]) {
            Ok(0) => return Step::Close { answered: false },
            Ok(n) => *done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Step::Close { answered: false },
        }
    }
    let _ = c.stream.flush();
    Step::Close { answered: true }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn line(b: &[u8]) -> bool {
        b.contains(&b'\n')
    }

    const LIMITS: Limits = Limits {
        max_conns: 8,
        max_per_client: 8,
        max_len: 16,
        idle: Duration::from_millis(150),
        deadline: Duration::from_millis(300),
    };

    fn server(tag: &str, limits: Limits) -> (Server<mio::net::UnixListener>, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "fulcrum-requests-{tag}-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let l = mio::net::UnixListener::bind(&path).expect("bind");
        (Server::new("test", l, limits, line).expect("server"), path)
    }

    /// Serves turns until `until` holds or 2 s pass.
    fn turns(
        s: &mut Server<mio::net::UnixListener>,
        until: impl Fn(&Server<mio::net::UnixListener>) -> bool,
    ) -> usize {
        let end = Instant::now() + Duration::from_secs(2);
        let mut answered = 0;
        while !until(s) && Instant::now() < end {
            answered += s.serve(|req, _| Some([b"echo ", req].concat()));
            std::thread::sleep(Duration::from_millis(2));
        }
        answered
    }

    fn answer(c: &mut UnixStream) -> Vec<u8> {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut v = Vec::new();
        let _ = c.read_to_end(&mut v);
        v
    }

    #[test]
    fn complete_partial_oversized_and_idle_requests() {
        let (mut s, path) = server("a", LIMITS);
        let mut whole = UnixStream::connect(&path).unwrap();
        let mut part = UnixStream::connect(&path).unwrap();
        let mut big = UnixStream::connect(&path).unwrap();
        let mut idle = UnixStream::connect(&path).unwrap();
        whole.write_all(b"status\n").unwrap();
        part.write_all(b"sta").unwrap();
        big.write_all(&[b'x'; 40]).unwrap();
        assert_eq!(turns(&mut s, |s| s.stats.answered == 2), 2);
        assert_eq!(answer(&mut whole), b"echo status\n");
        let b = answer(&mut big);
        assert!(
            b.len() > 16 + 5 && b[5..].iter().all(|&c| c == b'x'),
            "{b:?}"
        );
        // The partial one completes when its line does.
        part.write_all(b"ts\n").unwrap();
        turns(&mut s, |s| s.stats.answered == 3);
        assert_eq!(answer(&mut part), b"echo stats\n");
        // The idle one is closed at its timeout, unanswered.
        turns(&mut s, |s| s.open() == 0);
        assert_eq!(s.stats.timed_out, 1);
        assert_eq!(answer(&mut idle), b"");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_closed_client_completes_its_request_and_a_slow_one_meets_its_deadline() {
        let (mut s, path) = server("b", LIMITS);
        let mut closed = UnixStream::connect(&path).unwrap();
        closed.write_all(b"no newline").unwrap();
        closed.shutdown(std::net::Shutdown::Write).unwrap();
        let mut slow = UnixStream::connect(&path).unwrap();
        turns(&mut s, |s| s.stats.answered == 1);
        assert_eq!(answer(&mut closed), b"echo no newline");
        // A byte now and then keeps it from the idle timeout, not from the deadline.
        let start = Instant::now();
        while s.open() > 0 && start.elapsed() < Duration::from_secs(2) {
            let _ = slow.write_all(b"s");
            s.serve(|r, _| Some(r.to_vec()));
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(1),
            "{took:?}"
        );
        assert_eq!(s.stats.timed_out, 1);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_newcomer_over_the_bound_closes_the_oldest_idle_connection() {
        let (mut s, path) = server("c", LIMITS);
        let mut crowd: Vec<UnixStream> = (0..8)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        // One of the crowd has sent part of a request: it is not the first to go.
        crowd[0].write_all(b"x").unwrap();
        turns(&mut s, |s| s.open() == 8);
        let mut real = UnixStream::connect(&path).unwrap();
        real.write_all(b"status\n").unwrap();
        turns(&mut s, |s| s.stats.answered == 1);
        assert_eq!(answer(&mut real), b"echo status\n");
        assert_eq!(s.stats.evicted, 1);
        assert!(s.open() <= 8);
        // The evicted one is the oldest idle: crowd[1].
        assert_eq!(answer(&mut crowd[1]), b"");
        crowd[0].write_all(b"\n").unwrap();
        turns(&mut s, |s| s.stats.answered == 2);
        assert_eq!(answer(&mut crowd[0]), b"echo x\n");
        let _ = std::fs::remove_file(&path);
    }
}
