//! The state of one checked backend: rise/fall counting over check outcomes, and what an
//! agent asked for (drain, maintenance, a weight). Pure: no clock, no I/O; the scheduler in
//! [`super::Monitor`] feeds it outcomes.
//!
//! Semantics, HAProxy's in spirit:
//! - A checked backend starts down, and its first outcome decides at once (up on success),
//!   so a healthy pool is in service one check after start rather than `rise` checks.
//! - After that, `fall` failures in a row take an up backend down, `rise` successes in a row
//!   bring a down one up. A result that does not change the state resets the other count.
//! - An agent's reply: `up`/`ready` is a success; `down`/`fail`/`failed`/`stopped` takes the
//!   backend down at once (the backend itself says so: nothing to debounce); `drain` and
//!   `maint` are successes that set the agent's mode until a reply without them; `N%` sets
//!   the weight, which stays until another percentage (HAProxy keeps it too). Text after `#`
//!   is a comment. A reply with none of these words is a failure.

/// What health checking says of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
    /// Alive, but its agent asks for no new flows (established flows stay).
    Drain,
    /// Its agent asks for maintenance: no flows at all.
    Maint,
}

impl Health {
    /// The state's name, as logs, `ctl` and the metrics print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Drain => "drain",
            Health::Maint => "maint",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(Failure),
    Agent(AgentReply),
}

/// Why a check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused (RST) or reset before an answer.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// An answer that is not a healthy one (status, TLS alert, garbage).
    BadReply,
    /// Closed before a complete answer.
    Closed,
    /// Could not even start: no source port free, no local address.
    NoResources,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
            Failure::BadReply => "bad reply",
            Failure::Closed => "closed early",
            Failure::NoResources => "no resources",
        }
    }

    /// The name of this failure of a check through the backend's tunnel to the VIP.
    pub fn name_through_tunnel(self) -> &'static str {
        match self {
            Failure::Refused => "refused through the tunnel",
            Failure::Timeout => "timeout through the tunnel",
            Failure::BadReply => "bad reply through the tunnel",
            Failure::Closed => "closed early through the tunnel",
            Failure::NoResources => "no resources through the tunnel",
        }
    }
}

/// What the agent asked for beyond up/down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentMode {
    #[default]
    Normal,
    Drain,
    Maint,
}

/// A parsed agent reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentReply {
    /// `down` (or `fail`, `stopped`) was said.
    pub down: bool,
    /// `up`/`ready`/`drain`/`maint` or a weight was said (the agent is alive and knows it).
    pub alive: bool,
    pub mode: AgentMode,
    /// A weight percentage, if one was given.
    pub weight_pct: Option<u32>,
}

impl AgentReply {
    /// The largest weight percentage accepted; the effective weight is capped by the
    /// configuration's maximum anyway.
    pub const MAX_PCT: u32 = 1000;

    /// Parses an agent's reply line. `None`: nothing in it is understood.
    pub fn parse(text: &str) -> Option<AgentReply> {
        let text = text.split('#').next().unwrap_or("");
        let mut r = AgentReply::default();
        let mut understood = false;
        for word in text
            .split(|c: char| c.is_ascii_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
        {
            let w = word.to_ascii_lowercase();
            match w.as_str() {
                "up" | "ready" => r.alive = true,
                "down" | "fail" | "failed" | "stopped" => r.down = true,
                "drain" => {
                    r.alive = true;
                    r.mode = AgentMode::Drain;
                }
                "maint" | "maintenance" => {
                    r.alive = true;
                    r.mode = AgentMode::Maint;
                }
                _ => match w.strip_suffix('%').map(str::parse::<u32>) {
                    Some(Ok(p)) if p <= Self::MAX_PCT => {
                        r.alive = true;
                        r.weight_pct = Some(p);
                    }
                    _ => continue, // unknown words are skipped, as HAProxy does
                },
            }
            understood = true;
        }
        understood.then_some(r)
    }
}

/// Rise/fall counting for one backend.
#[derive(Debug, Clone)]
pub struct CheckState {
    rise: u32,
    fall: u32,
    up: bool,
    /// No outcome recorded yet.
    fresh: bool,
    successes: u32,
    failures: u32,
    mode: AgentMode,
    weight_pct: u32,
    /// The last failure, for logs.
    pub last_failure: Option<Failure>,
}

impl CheckState {
    pub fn new(rise: u32, fall: u32) -> CheckState {
        CheckState {
            rise: rise.max(1),
            fall: fall.max(1),
            up: false,
            fresh: true,
            successes: 0,
            failures: 0,
            mode: AgentMode::Normal,
            weight_pct: 100,
            last_failure: None,
        }
    }

    /// Starts up rather than down, still fresh (so the first outcome decides either way): a
    /// restart that adopted the previous process's flows keeps them going until the first
    /// check says otherwise, instead of resetting them for the first interval.
    pub fn assume_up(&mut self) {
        if self.fresh {
            self.up = true;
        }
    }

    /// Records one outcome; true when [`CheckState::health`] or the weight changed.
    pub fn record(&mut self, outcome: &Outcome) -> bool {
        let before = (self.health(), self.weight_pct);
        let fresh = std::mem::replace(&mut self.fresh, false);
        match outcome {
            Outcome::Success => self.success(fresh),
            Outcome::Failure(f) => {
                self.last_failure = Some(*f);
                self.failure(fresh);
            }
            Outcome::Agent(r) => {
                if let Some(p) = r.weight_pct {
                    self.weight_pct = p;
                }
                if r.down {
                    self.last_failure = Some(Failure::BadReply);
                    self.up = false;
                    self.successes = 0;
                    self.failures = self.fall;
                } else if r.alive {
                    self.mode = r.mode;
                    self.success(fresh);
                } else {
                    self.failure(fresh);
                }
            }
        }
        before != (self.health(), self.weight_pct)
    }

    fn success(&mut self, fresh: bool) {
        self.failures = 0;
        if self.up {
            return;
        }
        self.successes += 1;
        if fresh || self.successes >= self.rise {
            self.up = true;
            self.successes = 0;
        }
    }

    fn failure(&mut self, fresh: bool) {
        self.successes = 0;
        if !self.up {
            return;
        }
        self.failures += 1;
        if fresh || self.failures >= self.fall {
            self.up = false;
            self.failures = 0;
        }
    }

    /// What the workers should do with the backend.
    pub fn health(&self) -> Health {
        match (self.up, self.mode) {
            (false, _) => Health::Down,
            (true, AgentMode::Normal) => Health::Up,
            (true, AgentMode::Drain) => Health::Drain,
            (true, AgentMode::Maint) => Health::Maint,
        }
    }

    /// The weight an agent set, in percent of the configured one.
    pub fn weight_pct(&self) -> u32 {
        self.weight_pct
    }

    /// Whether any outcome was recorded yet.
    pub fn checked(&self) -> bool {
        !self.fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Outcome = Outcome::Success;
    const KO: Outcome = Outcome::Failure(Failure::Refused);

    fn run(s: &mut CheckState, outcomes: &[Outcome]) -> Vec<Health> {
        outcomes
            .iter()
            .map(|o| {
                s.record(o);
                s.health()
            })
            .collect()
    }

    #[test]
    fn first_outcome_decides_then_rise_and_fall_count() {
        let mut s = CheckState::new(2, 3);
        assert_eq!(s.health(), Health::Down);
        assert!(!s.checked());
        use Health::*;
        assert_eq!(
            run(&mut s, &[OK, KO, KO, KO, OK, OK, OK]),
            [Up, Up, Up, Down, Down, Up, Up]
        );
        // A failing first check leaves it down, and then rise applies.
        let mut s = CheckState::new(2, 3);
        assert_eq!(run(&mut s, &[KO, OK, OK]), [Down, Down, Up]);
    }

    #[test]
    fn flapping_never_reaches_fall_or_rise() {
        let mut s = CheckState::new(3, 3);
        s.record(&OK);
        // Alternating results reset the other count every time: it stays up.
        let got = run(&mut s, &[KO, OK, KO, KO, OK, KO, KO, OK]);
        assert!(got.iter().all(|h| *h == Health::Up), "{got:?}");
        // Three failures in a row: down; then alternating keeps it down.
        let got = run(&mut s, &[KO, KO, KO, OK, KO, OK, OK, KO]);
        assert_eq!(got[2], Health::Down);
        assert!(got[2..].iter().all(|h| *h == Health::Down), "{got:?}");
    }

    #[test]
    fn agent_words() {
        let p = |t: &str| AgentReply::parse(t);
        assert_eq!(
            p("up\n"),
            Some(AgentReply {
                alive: true,
                ..Default::default()
            })
        );
        assert_eq!(p("DRAIN").unwrap().mode, AgentMode::Drain);
        assert_eq!(p("maint # disk replaced").unwrap().mode, AgentMode::Maint);
        assert!(p("down#overloaded").unwrap().down);
        assert!(p("stopped").unwrap().down);
        let r = p("up, 75%").unwrap();
        assert_eq!((r.alive, r.weight_pct), (true, Some(75)));
        assert_eq!(p("0%").unwrap().weight_pct, Some(0));
        assert_eq!(p("hello there"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("# just a comment up"), None);
        assert_eq!(p("5000%"), None, "beyond MAX_PCT");
        // Unknown words beside known ones are skipped.
        assert!(p("foo up bar").unwrap().alive);
    }

    #[test]
    fn agent_replies_drive_state_and_weight() {
        let agent = |t: &str| Outcome::Agent(AgentReply::parse(t).unwrap());
        let mut s = CheckState::new(2, 3);
        assert!(s.record(&agent("up")));
        assert_eq!(s.health(), Health::Up);
        assert!(s.record(&agent("drain")));
        assert_eq!(s.health(), Health::Drain);
        assert!(s.record(&agent("75%")), "a weight change is a change");
        assert_eq!((s.health(), s.weight_pct()), (Health::Up, 75));
        assert!(!s.record(&agent("up")), "the weight stays");
        assert_eq!(s.weight_pct(), 75);
        assert!(s.record(&agent("maint")));
        assert_eq!(s.health(), Health::Maint);
        // "down" is immediate, whatever fall is; coming back needs rise.
        assert!(s.record(&agent("down")));
        assert_eq!(s.health(), Health::Down);
        assert!(!s.record(&agent("up")));
        assert!(s.record(&agent("up")));
        assert_eq!(s.health(), Health::Up);
        // An agent that stops answering counts as failed checks.
        let got = run(&mut s, &[KO, KO, KO]);
        assert_eq!(got, [Health::Up, Health::Up, Health::Down]);
    }
}
