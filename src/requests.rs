//! Reading requests without blocking, for the control socket and the metrics endpoint: the
//! main loop polls both between its other duties, so neither may wait on a slow client.
//! Accept what is waiting (up to a bound; more wait in the listen backlog), read each
//! connection until its request is complete, drop the ones that take too long. Answering is
//! the caller's.

use std::io::{self, ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// A listening socket whose connections [`Requests`] reads.
pub trait Listener {
    type Stream: Read;
    /// The next waiting connection, made non-blocking (`WouldBlock` when none waits).
    fn accept_nonblocking(&self) -> io::Result<Self::Stream>;
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    fn accept_nonblocking(&self) -> io::Result<UnixStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    fn accept_nonblocking(&self) -> io::Result<TcpStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    }
}

struct Pending<S> {
    stream: S,
    buf: Vec<u8>,
    since: Instant,
}

/// The connections being read.
pub struct Requests<S> {
    /// For the log line of a failed accept.
    what: &'static str,
    pending: Vec<Pending<S>>,
    /// Connections read at once.
    max_pending: usize,
    /// A request longer than this is complete, whatever its end looks like (the caller
    /// refuses it).
    max_len: usize,
    /// A client that has not sent its whole request by then is dropped.
    timeout: Duration,
}

impl<S: Read> Requests<S> {
    pub fn new(what: &'static str, max_pending: usize, max_len: usize, timeout: Duration) -> Self {
        Requests {
            what,
            pending: Vec::new(),
            max_pending,
            max_len,
            timeout,
        }
    }

    /// Accepts what waits on `listener`, reads what every pending connection has sent, and
    /// returns the ones whose request is complete: `complete` says so of the bytes, or the
    /// client closed its side, or it sent more than `max_len` bytes. Never blocks.
    pub fn poll(
        &mut self,
        listener: &impl Listener<Stream = S>,
        complete: impl Fn(&[u8]) -> bool,
    ) -> Vec<(S, Vec<u8>)> {
        while self.pending.len() < self.max_pending {
            match listener.accept_nonblocking() {
                Ok(stream) => self.pending.push(Pending {
                    stream,
                    buf: Vec::new(),
                    since: Instant::now(),
                }),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "{} accept", self.what);
                    break;
                }
            }
        }
        let mut ready = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            let mut chunk = [0u8; 1024];
            let done = loop {
                match p.stream.read(&mut chunk) {
                    Ok(0) => break true,
                    Ok(n) => {
                        p.buf.extend_from_slice(&chunk[..n]);
                        if complete(&p.buf) || p.buf.len() > self.max_len {
                            break true;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if !done && p.since.elapsed() < self.timeout {
                i += 1;
                continue;
            }
            let p = self.pending.swap_remove(i);
            if done {
                ready.push((p.stream, p.buf));
            }
            // else timed out: dropped, which closes it
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn listener() -> (UnixListener, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "fulcrum-requests-test-{}-{:?}.sock",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        (l, path)
    }

    fn line(b: &[u8]) -> bool {
        b.contains(&b'\n')
    }

    #[test]
    fn complete_partial_oversized_and_slow_requests() {
        let (l, path) = listener();
        let mut r = Requests::new("test", 8, 16, Duration::from_millis(200));
        let mut whole = UnixStream::connect(&path).unwrap();
        let mut part = UnixStream::connect(&path).unwrap();
        let mut big = UnixStream::connect(&path).unwrap();
        let mut slow = UnixStream::connect(&path).unwrap();
        whole.write_all(b"status\n").unwrap();
        part.write_all(b"sta").unwrap();
        big.write_all(&[b'x'; 40]).unwrap();
        slow.write_all(b"s").unwrap();

        let got = r.poll(&l, line);
        let mut bufs: Vec<Vec<u8>> = got.into_iter().map(|(_, b)| b).collect();
        bufs.sort();
        assert_eq!(
            bufs.len(),
            2,
            "the whole line and the oversized one: {bufs:?}"
        );
        assert_eq!(bufs[0], b"status\n");
        assert!(bufs[1].len() > 16 && bufs[1].iter().all(|&c| c == b'x'));
        assert_eq!(r.pending.len(), 2, "two still being read");

        // The partial one completes; the slow one never does and is dropped after the timeout.
        part.write_all(b"ts\n").unwrap();
        let got = r.poll(&l, line);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"stats\n");
        std::thread::sleep(Duration::from_millis(250));
        assert!(r.poll(&l, line).is_empty());
        assert!(r.pending.is_empty(), "the slow client was dropped");
        let mut rest = Vec::new();
        slow.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(
            slow.read_to_end(&mut rest).unwrap(),
            0,
            "and its connection closed"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_closed_client_completes_its_request_and_at_most_max_pending_are_read() {
        let (l, path) = listener();
        let mut r = Requests::new("test", 2, 64, Duration::from_secs(5));
        let mut clients: Vec<UnixStream> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let got = r.poll(&l, line);
        assert!(got.is_empty());
        assert_eq!(r.pending.len(), 2, "the third waits in the backlog");
        // Kept open, all three: a closed client's request is complete (empty).
        let first = &mut clients[0];
        first.write_all(b"no newline").unwrap();
        first.shutdown(std::net::Shutdown::Write).unwrap();
        let got = r.poll(&l, line);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"no newline");
        assert_eq!(r.pending.len(), 1);
        assert!(r.poll(&l, line).is_empty());
        assert_eq!(
            r.pending.len(),
            2,
            "the third taken in once a place was free"
        );
        let _ = std::fs::remove_file(&path);
    }
}
