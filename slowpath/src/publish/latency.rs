//! Latency samples of publication (publish -> visible, publish -> first packet, build time)
//! and their summary.

/// Latency samples kept (the latest ones).
const SAMPLES_MAX: usize = 100_000;

/// A set of latency samples in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<u64>,
    pub count: u64,
}

/// A summary of [`Samples`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Samples {
    pub fn add(&mut self, us: u64) {
        if self.values.len() == SAMPLES_MAX {
            self.values.remove(0);
        }
        self.values.push(us);
        self.count += 1;
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.values.clone();
        v.sort_unstable();
        let at = |q: f64| {
            v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        Summary {
            count: self.count,
            min: at(0.0).unwrap_or(0),
            p50: at(0.5).unwrap_or(0),
            p99: at(0.99).unwrap_or(0),
            max: at(1.0).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_samples() {
        let mut s = Samples::default();
        assert_eq!(s.summary(), Summary::default());
        for v in (1..=100).rev() {
            s.add(v);
        }
        let sum = s.summary();
        assert_eq!((sum.count, sum.min, sum.max), (100, 1, 100));
        assert!((50..=51).contains(&sum.p50));
        assert_eq!(sum.p99, 99);
    }
}
