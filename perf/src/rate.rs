//! Transmit rates (`--rate`) and the pacer that enforces them.
//!
//! A [`Rate`] is parsed from text such as `max`, `10000pps`, `2.5mpps`, `200mbps` or
//! `1gbps`. Bit rates count the bits of the frames handed to the PMD (`--size` bytes
//! each: Ethernet header to end of payload; no FCS, preamble or inter-frame gap), so
//! `--size 64 --rate 512kbps` is 1000 frames per second.
//!
//! The [`Pacer`] is time-injected (it is given TSC readings, never reads a clock),
//! so it is unit-tested with a simulated clock. It keeps an absolute schedule —
//! frame *k* is due at `start + k / pps` — rather than a token bucket with a cap:
//! a loop iteration that arrives late sends the frames it owes (bounded by the
//! burst size per call), so the long-run average is exact, which is what the
//! paced end-to-end tests count on.

use std::fmt;
use std::str::FromStr;

/// A transmit rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as the port accepts frames.
    Max,
    /// Frames per second.
    Pps(f64),
    /// Bits per second of frame data (see the module doc).
    Bps(f64),
}

/// Why a rate string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad rate {0:?}: expected max, or a positive number followed by pps, kpps, mpps, bps, kbps, mbps or gbps (e.g. 10000pps, 200mbps, 1gbps)")]
pub struct RateParseError(pub String);

impl FromStr for Rate {
    type Err = RateParseError;
    fn from_str(s: &str) -> Result<Rate, RateParseError> {
        let t = s.trim().to_ascii_lowercase();
        if t == "max" || t == "0" {
            return Ok(Rate::Max);
        }
        const UNITS: [(&str, f64, bool); 7] = [
            ("kpps", 1e3, true),
            ("mpps", 1e6, true),
            ("pps", 1.0, true),
            ("kbps", 1e3, false),
            ("mbps", 1e6, false),
            ("gbps", 1e9, false),
            ("bps", 1.0, false),
        ];
        for (unit, mult, is_pps) in UNITS {
            if let Some(num) = t.strip_suffix(unit) {
                let v: f64 = num
                    .trim()
                    .parse()
                    .map_err(|_| RateParseError(s.to_string()))?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(RateParseError(s.to_string()));
                }
                return Ok(if is_pps {
                    Rate::Pps(v * mult)
                } else {
                    Rate::Bps(v * mult)
                });
            }
        }
        Err(RateParseError(s.to_string()))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => write!(f, "max"),
            Rate::Pps(p) => write!(f, "{p}pps"),
            Rate::Bps(b) => write!(f, "{b}bps"),
        }
    }
}

impl Rate {
    /// Frames per second for frames of `frame_len` bytes; `None` for [`Rate::Max`].
    pub fn pps(&self, frame_len: usize) -> Option<f64> {
        match *self {
            Rate::Max => None,
            Rate::Pps(p) => Some(p),
            Rate::Bps(b) => Some(b / (frame_len.max(1) as f64 * 8.0)),
        }
    }
}

/// Paces one transmit stream on a TSC timeline.
///
/// Invariant: `issued` never exceeds the number of frames due by the latest `now`
/// passed to [`Pacer::due`] (plus one: frame 0 is due at `start`).
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Frames per TSC tick; `None` = unpaced.
    per_tick: Option<f64>,
    start: u64,
    issued: u64,
}

impl Pacer {
    /// A pacer for `pps` frames per second (`None` = as fast as possible) on a clock
    /// of `hz` ticks per second, starting at tick `start`.
    pub fn new(pps: Option<f64>, hz: u64, start: u64) -> Pacer {
        Pacer {
            per_tick: pps.map(|p| p / hz.max(1) as f64),
            start,
            issued: 0,
        }
    }

    /// How many frames may be sent at tick `now`, at most `max`. The caller reports
    /// what it actually generated with [`Pacer::issued`].
    #[inline]
    pub fn due(&self, now: u64, max: u64) -> u64 {
        match self.per_tick {
            None => max,
            Some(r) => {
                let elapsed = now.saturating_sub(self.start) as f64;
                let allowed = ((elapsed * r) as u64).saturating_add(1);
                allowed.saturating_sub(self.issued).min(max)
            }
        }
    }

    /// Records that `n` frames were generated.
    #[inline]
    pub fn issued(&mut self, n: u64) {
        self.issued += n;
    }

    /// Frames generated so far.
    pub fn total(&self) -> u64 {
        self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("max".parse::<Rate>().unwrap(), Rate::Max);
        assert_eq!("10000pps".parse::<Rate>().unwrap(), Rate::Pps(10000.0));
        assert_eq!("2.5Mpps".parse::<Rate>().unwrap(), Rate::Pps(2.5e6));
        assert_eq!("200mbps".parse::<Rate>().unwrap(), Rate::Bps(200e6));
        assert_eq!("1gbps".parse::<Rate>().unwrap(), Rate::Bps(1e9));
        assert_eq!("64kbps".parse::<Rate>().unwrap(), Rate::Bps(64e3));
        for bad in [
            "",
            "fast",
            "-5pps",
            "0pps",
            "1e400pps",
            "nanpps",
            "10 furlongs",
            "gbps",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} accepted");
        }
    }

    /// A rate far beyond any port (`--rate 1e20pps`) sends as fast as it can; the
    /// frame budget once wrapped to 0 after a fraction of a second and sending stopped.
    #[test]
    fn an_absurd_rate_is_as_fast_as_possible() {
        let p = Pacer::new(Some(1e20), 1_000_000_000, 0);
        assert_eq!(p.due(1_000_000_000, 32), 32);
        assert_eq!(p.due(u64::MAX, 32), 32);
    }

    #[test]
    fn bit_rate_converts_with_frame_size() {
        let r: Rate = "512kbps".parse().unwrap();
        assert_eq!(r.pps(64), Some(1000.0));
        assert_eq!(Rate::Max.pps(64), None);
    }

    #[test]
    fn pacer_keeps_the_schedule_under_a_simulated_clock() {
        let hz = 1_000_000_000;
        let mut p = Pacer::new(Some(10_000.0), hz, 5_000);
        // A jittery loop: steps of 1..=250 µs, burst cap 32.
        let mut now = 5_000;
        let mut step = 1u64;
        while now < 5_000 + hz {
            let n = p.due(now, 32);
            p.issued(n);
            step = step * 7 % 251 + 1;
            now += step * 1_000;
        }
        let sent = p.total();
        assert!(
            (10_000..=10_001).contains(&sent),
            "sent {sent} in 1 s at 10000 pps"
        );
    }

    #[test]
    fn pacer_catches_up_but_only_one_burst_at_a_time() {
        let mut p = Pacer::new(Some(1000.0), 1000, 0);
        assert_eq!(p.due(0, 32), 1);
        p.issued(1);
        assert_eq!(p.due(0, 32), 0);
        // 100 ticks late: 100 frames owed, handed out 32 at a time.
        assert_eq!(p.due(100, 32), 32);
        p.issued(32);
        assert_eq!(p.due(100, 100), 68);
    }

    #[test]
    fn unpaced_is_always_the_cap() {
        let p = Pacer::new(None, 1000, 0);
        assert_eq!(p.due(0, 32), 32);
        assert_eq!(p.due(u64::MAX, 7), 7);
    }
}
