//! Instance sync on the ECMP testbed (#18): three Fulcrum instances behind a BIRD router with
//! ECMP (testkit's `Ecmp`, as in tests/e2e_ecmp.rs), four DSR backends running and three in
//! the pool. 300 long-lived DSR streams (real kernel TCP) run through the tier; then backend
//! b4 joins the pool on every instance by live reload, so Maglev now sends about a quarter of
//! the streams' flows to it: those are *exceptions* (their backend is not Maglev's choice any
//! more), and only the instance that holds each one knows. Then the router moves flows:
//!
//! - kill: `kill -9` of one instance; the router withdraws it (BFD) and rehashes its flows
//!   (and, hash-threshold, some of the survivors') onto the others;
//! - join: the third instance was not running; it starts (its config with b4) and the router
//!   rehashes about half the flows onto it. With sync it asks its peers for their exceptions
//!   and announces only once they answered (`startup_wait_ms`).
//!
//! Each scenario runs twice on a fresh testbed: with `[global.sync]` (every other instance a
//! peer, one key file) it must break 0 established streams; without (the same steps, sync off)
//! the instance that picks a moved exception up re-hashes it to b4, which resets it: the test
//! prints how many broke and fails if none did (the scenario would show nothing). Sync's wait
//! is on the instances' own figures (`ctl status`: every instance's exceptions found and
//! learnt by all the others), not a blind sleep. The sync traffic (messages and bytes a
//! second, every instance together, from the reload to 3 s after the route change) is printed.
//!
//! Four testbeds of three DPDK processes, four BIRDs and Python clients and backends: on
//! 2 cores the binary runs alone (.config/nextest.toml).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::{Ecmp, EcmpOptions, Streams};

/// Long streams per client address; three addresses.
const PER_SOURCE: usize = 100;
const STREAMS: usize = 3 * PER_SOURCE;
/// Long enough for the reload, sync, a slow withdrawal and the pickups after it.
const SECS: u32 = 25;
/// The backend that joins the pool.
const ADDED: usize = 4;
/// After the route change: every moved stream's next packets (its client's ACKs, every
/// 100 ms) have reached their new instance well within this.
const AFTER: Duration = Duration::from_secs(3);

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Sync traffic: what every instance sent, from a first look to the last (an instance's last
/// look before it was killed counts; one started later counts from 0).
struct Traffic {
    t0: Instant,
    first: Vec<Option<(u64, u64)>>,
    last: Vec<Option<(u64, u64)>>,
    elapsed: Duration,
}

impl Traffic {
    fn start(e: &Ecmp) -> Traffic {
        let mut t = Traffic {
            t0: Instant::now(),
            first: vec![Some((0, 0)); 3],
            last: vec![None; 3],
            elapsed: Duration::ZERO,
        };
        for i in e.running() {
            let f = e.sync(i);
            t.first[i - 1] = Some((f.messages_sent, f.bytes_sent));
        }
        t.look(e);
        t
    }

    fn look(&mut self, e: &Ecmp) {
        for i in e.running() {
            let f = e.sync(i);
            self.last[i - 1] = Some((f.messages_sent, f.bytes_sent));
        }
        self.elapsed = self.t0.elapsed();
    }

    /// (messages, bytes) a second, every instance together.
    fn rates(&self) -> (f64, f64) {
        let (mut m, mut b) = (0, 0);
        for (f, l) in self.first.iter().zip(&self.last) {
            if let (Some(f), Some(l)) = (f, l) {
                m += l.0 - f.0;
                b += l.1 - f.1;
            }
        }
        let s = self.elapsed.as_secs_f64();
        (m as f64 / s, b as f64 / s)
    }
}

/// What one run saw.
struct Run {
    broken: u64,
    /// Exceptions the instances held before the route change, all together.
    exceptions: u64,
    /// Flows picked up mid-stream after the route change, and of those sent to a peer's
    /// backend, per instance.
    moved: Vec<u64>,
    used: Vec<u64>,
    rates: (f64, f64),
}

/// A run up to its route change.
struct Prepared {
    streams: Streams,
    /// When every stream had its first line.
    ready: Instant,
    traffic: Traffic,
    /// Exceptions the instances held, all together (0 without sync: nothing counts them).
    exceptions: u64,
    /// Per instance, before the route change.
    created: Vec<u64>,
    used: Vec<u64>,
}

/// The testbed: four backends running, `started` instances, sync on or off.
fn testbed(tag: &str, started: usize, sync: bool) -> Ecmp {
    Ecmp::with(
        tag,
        EcmpOptions {
            backends: ADDED,
            started,
            sync,
        },
    )
}

/// The streams, the backend added, sync awaited (or, without it, about what sync's wait
/// takes: a sweep pass and a second); the figures before the route change.
fn prepare(e: &Ecmp, sync: bool, tag: &str) -> Prepared {
    let streams = Streams::start(&e.net, &Ecmp::targets(3), PER_SOURCE, SECS, tag);
    streams.wait_ready();
    let ready = Instant::now();
    let mut traffic = Traffic::start(e);
    let t = Instant::now();
    e.add_backend(ADDED);
    let added = t.elapsed();
    let exceptions = if sync {
        let figures = e.wait_synced(Duration::from_secs(15));
        println!(
            "{tag}: b{ADDED} in every pool {:.0} ms after the reloads began; exceptions spread \
             {:.0} ms later (per instance: own, learnt from the others): {:?}",
            added.as_secs_f64() * 1e3,
            (t.elapsed() - added).as_secs_f64() * 1e3,
            figures
                .iter()
                .map(|(i, f)| format!("lb{i} {} / {}", f.local, f.published))
                .collect::<Vec<_>>()
        );
        figures.iter().map(|(_, f)| f.local).sum()
    } else {
        std::thread::sleep(Duration::from_secs(2));
        0
    };
    // Every instance's last figures before the change (a killed one's too).
    traffic.look(e);
    Prepared {
        streams,
        ready,
        traffic,
        exceptions,
        created: e.per_instance("flows_created"),
        used: e.per_instance("exceptions_used"),
    }
}

/// [`AFTER`] the route change, the streams' end: the run's figures, printed; the streams
/// must have outlived the change and the pause after it.
fn finish(e: &Ecmp, tag: &str, p: Prepared, changed_at: f64) -> Run {
    std::thread::sleep(AFTER);
    let Prepared {
        streams,
        ready,
        mut traffic,
        exceptions,
        created,
        used,
    } = p;
    let moved = e.since("flows_created", &created);
    let used = e.since("exceptions_used", &used);
    traffic.look(e);
    let left = f64::from(SECS) - ready.elapsed().as_secs_f64();
    assert!(
        left > 1.0,
        "{tag}: the streams end {left:.1} s after the route change settled: too late to show it"
    );
    let s = streams.finish();
    let broken = s["broken_count"].as_u64().expect("broken_count");
    let rates = traffic.rates();
    println!(
        "{tag}: {} of {} streams intact, {broken} broken; picked up mid-stream per instance \
         {moved:?}, of those sent to a peer's backend {used:?}; sync traffic {:.1} messages/s, \
         {:.0} bytes/s (every instance, from the reload to 3 s after the change: {:.1} s)",
        s["intact"],
        s["streams"],
        rates.0,
        rates.1,
        traffic.elapsed.as_secs_f64()
    );
    if broken > 0 {
        for b in s["broken"].as_array().into_iter().flatten() {
            println!(
                "  broken {}:{} at change{:+.2}s: {}",
                b["src"],
                b["sport"],
                b["at"].as_f64().unwrap_or(0.0) - changed_at,
                b["error"]
            );
        }
    }
    Run {
        broken,
        exceptions,
        moved,
        used,
        rates,
    }
}

/// Streams, b4 added, then `kill -9` of lb2.
fn kill_run(sync: bool) -> Run {
    let tag = if sync { "ks" } else { "kn" };
    let mut e = testbed(tag, 3, sync);
    let p = prepare(&e, sync, tag);
    let killed_at = now_s();
    let t0 = e.kill(2);
    let gone = e.wait_nexthops(2, t0, Duration::from_secs(10), "kill -9");
    println!(
        "{tag}: kill -9 lb2; the router's FIB dropped it in {:.0} ms",
        gone.as_secs_f64() * 1e3
    );
    finish(&e, tag, p, killed_at)
}

/// lb1 and lb2 only; streams, b4 added, then lb3 starts (its config with b4).
fn join_run(sync: bool) -> Run {
    let tag = if sync { "js" } else { "jn" };
    let mut e = testbed(tag, 2, sync);
    let p = prepare(&e, sync, tag);
    let started_at = now_s();
    let t0 = Instant::now();
    e.start(3);
    let back = e.wait_nexthops(3, t0, Duration::from_secs(30), "join");
    let learnt = e.sync(3).published;
    println!(
        "{tag}: lb3 started; announced {:.0} ms later, then holding {learnt} of the others' \
         {} exceptions",
        back.as_secs_f64() * 1e3,
        p.exceptions
    );
    if sync {
        // It asked its peers before announcing: it knows every exception they hold.
        assert_eq!(
            learnt, p.exceptions,
            "lb3 announced before it learnt them all"
        );
    }
    finish(&e, tag, p, started_at)
}

fn report(what: &str, with: &Run, without: &Run) {
    println!(
        "{what}: with sync {} of {STREAMS} streams broken ({} exceptions held, {} moved flows \
         picked up, {} sent to a peer's backend; {:.1} sync messages/s, {:.0} bytes/s); \
         without sync {} of {STREAMS} broken ({} moved flows picked up)",
        with.broken,
        with.exceptions,
        with.moved.iter().sum::<u64>(),
        with.used.iter().sum::<u64>(),
        with.rates.0,
        with.rates.1,
        without.broken,
        without.moved.iter().sum::<u64>()
    );
    assert_eq!(
        with.broken, 0,
        "{what} with sync: established streams broke"
    );
    assert!(
        with.used.iter().sum::<u64>() > 0,
        "{what} with sync: no moved flow took a peer's backend, so sync was not exercised"
    );
    assert!(
        without.broken > 0,
        "{what} without sync: no stream broke, so the scenario shows nothing"
    );
}

#[test]
fn ecmp_sync_kill_after_a_backend_is_added() {
    let with = kill_run(true);
    let without = kill_run(false);
    report("kill -9 of one of three", &with, &without);
}

#[test]
fn ecmp_sync_join_after_a_backend_is_added() {
    let with = join_run(true);
    let without = join_run(false);
    report("a third instance joins", &with, &without);
}
