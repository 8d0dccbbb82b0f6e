//! An exact, integer, time-injected token bucket.
//!
//! Tokens are kept in *bit-nanoseconds*: one byte is worth `8 × 10⁹` units and a
//! rate of `r` bits per second adds exactly `r` units per elapsed nanosecond. Refill
//! is therefore a single multiplication, with no division and no rounding: over any
//! interval the bucket never grants more than `burst + rate × elapsed / 8e9` bytes
//! (plus at most one oversized consumption, see below), and never loses a fraction of
//! a byte. All arithmetic is on `u128`/`i128` with saturation, so no input can panic
//! or overflow.
//!
//! Oversized consumption: a request larger than the bucket's depth could never be
//! admitted by a plain bucket. Such a request is admitted when the bucket is full (and
//! the rate is non-zero), leaving the bucket in debt; the debt is repaid by refill
//! before anything else is admitted, so the long-run rate stays exact.

use crate::time::{Nanos, SEC};

/// Token units per byte: 8 bits × 10⁹ ns.
const UNITS_PER_BYTE: u128 = 8 * SEC as u128;

/// A token bucket refilled at `rate_bps` bits per second up to `burst_bytes` bytes.
///
/// Starts full. Time never goes backwards for it: a `now` earlier than the last one
/// seen refills nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate_bps: u64,
    burst_bytes: u64,
    /// Depth in units (`burst_bytes × UNITS_PER_BYTE`).
    capacity: i128,
    /// Current tokens in units; negative while in debt after an oversized request.
    tokens: i128,
    /// Time of the last refill; `None` until the first call that passes a time.
    last: Option<Nanos>,
}

impl TokenBucket {
    /// A full bucket refilled at `rate_bps` bits per second, holding at most
    /// `burst_bytes` bytes.
    pub fn new(rate_bps: u64, burst_bytes: u64) -> Self {
        let capacity = units(burst_bytes);
        TokenBucket {
            rate_bps,
            burst_bytes,
            capacity,
            tokens: capacity,
            last: None,
        }
    }

    /// The refill rate in bits per second.
    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// The depth in bytes.
    pub fn burst_bytes(&self) -> u64 {
        self.burst_bytes
    }

    /// Whole bytes available now (negative while in debt), as of the last refill.
    pub fn available_bytes(&self) -> i64 {
        let b = self.tokens / UNITS_PER_BYTE as i128;
        b.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Whole bytes that [`consume`](Self::consume) may take now without going below
    /// zero, as of the last refill (0 while in debt): any request of at most this many
    /// bytes passes [`can_consume`](Self::can_consume) at the last refill's time.
    /// Fast path: no 128-bit division for any depth below 2³¹ GB.
    #[inline]
    pub fn credit_bytes(&self) -> u64 {
        if self.tokens <= 0 {
            0
        } else if let Ok(t) = u64::try_from(self.tokens) {
            t / UNITS_PER_BYTE as u64
        } else {
            u64::try_from(self.tokens / UNITS_PER_BYTE as i128).unwrap_or(u64::MAX)
        }
    }

    /// Adds the tokens earned since the last refill. Fast path: integer only.
    #[inline]
    pub fn refill(&mut self, now: Nanos) {
        match self.last {
            None => self.last = Some(now),
            Some(last) if now > last => {
                let earned = (now - last) as u128 * self.rate_bps as u128;
                let earned = i128::try_from(earned).unwrap_or(i128::MAX);
                self.tokens = self.tokens.saturating_add(earned).min(self.capacity);
                self.last = Some(now);
            }
            Some(_) => {}
        }
    }

    /// Whether `bytes` could be consumed now (after refilling to `now`), without
    /// consuming them. Fast path.
    #[inline]
    pub fn can_consume(&mut self, bytes: u64, now: Nanos) -> bool {
        self.refill(now);
        self.fits(bytes)
    }

    /// Whether `bytes` fit in the tokens as of the last refill.
    #[inline]
    fn fits(&self, bytes: u64) -> bool {
        let need = units(bytes);
        need <= self.tokens
            || (self.rate_bps > 0 && need > self.capacity && self.tokens >= self.capacity)
    }

    /// Takes `bytes` tokens unconditionally (the bucket may go into debt). Call it
    /// only after [`can_consume`](Self::can_consume) said yes, or to charge traffic
    /// that was sent anyway.
    #[inline]
    pub fn consume(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(units(bytes));
    }

    /// Refills to `now`, then consumes `bytes` if they fit. Fast path.
    #[inline]
    pub fn try_consume(&mut self, bytes: u64, now: Nanos) -> bool {
        if self.can_consume(bytes, now) {
            self.consume(bytes);
            true
        } else {
            false
        }
    }

    /// Nanoseconds from `now` until `bytes` can be consumed (0 if they can now), or
    /// `None` if they never can at the current rate.
    pub fn time_until(&mut self, bytes: u64, now: Nanos) -> Option<Nanos> {
        self.refill(now);
        if self.fits(bytes) {
            return Some(0);
        }
        if self.rate_bps == 0 {
            return None;
        }
        let target = units(bytes).min(self.capacity.max(0));
        let missing = (target - self.tokens).max(0) as u128;
        let rate = self.rate_bps as u128;
        let ns = missing.div_ceil(rate);
        Some(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Changes rate and depth from the last refill on. Tokens above the new depth are
    /// discarded. The time since the last refill will be credited at the *new* rate;
    /// use [`set_rate_at`](Self::set_rate_at) when the exact switch time matters.
    pub fn set_rate(&mut self, rate_bps: u64, burst_bytes: u64) {
        self.rate_bps = rate_bps;
        self.burst_bytes = burst_bytes;
        self.capacity = units(burst_bytes);
        self.tokens = self.tokens.min(self.capacity);
    }

    /// Refills to `now` at the old rate, then changes rate and depth.
    pub fn set_rate_at(&mut self, rate_bps: u64, burst_bytes: u64, now: Nanos) {
        self.refill(now);
        self.set_rate(rate_bps, burst_bytes);
    }
}

#[inline]
fn units(bytes: u64) -> i128 {
    // ≤ 1.5e29, well inside i128.
    (bytes as u128 * UNITS_PER_BYTE) as i128
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MS, US};
    use proptest::prelude::*;

    #[test]
    fn starts_full_and_refills_exactly() {
        // 8 bit/s = one byte per second.
        let mut b = TokenBucket::new(8, 2);
        assert!(b.try_consume(2, 0));
        assert!(!b.try_consume(1, 0));
        assert!(!b.try_consume(1, SEC - 1));
        assert!(b.try_consume(1, SEC));
        assert!(!b.try_consume(1, SEC + SEC / 2));
        // Half a byte was earned before; the other half arrives at 2 s exactly.
        assert!(b.try_consume(1, 2 * SEC));
    }

    #[test]
    fn capped_at_depth() {
        let mut b = TokenBucket::new(1_000_000, 1000);
        assert!(b.try_consume(1000, 0));
        // 10 s at 1 Mb/s would be 1.25 MB, but the depth is 1000 bytes.
        assert!(b.can_consume(1000, 10 * SEC));
        assert_eq!(b.available_bytes(), 1000);
        // A full bucket admits one oversized request, then owes the excess.
        assert!(b.try_consume(1001, 10 * SEC));
        assert_eq!(b.available_bytes(), -1);
        assert!(!b.try_consume(1, 10 * SEC));
    }

    #[test]
    fn time_backwards_refills_nothing() {
        let mut b = TokenBucket::new(8_000, 1000);
        assert!(b.try_consume(1000, 5 * SEC));
        assert!(!b.try_consume(1, SEC));
        assert!(!b.try_consume(1, 5 * SEC));
        assert!(b.try_consume(1, 5 * SEC + MS));
    }

    #[test]
    fn oversized_request_from_full_bucket_goes_into_debt() {
        // 8 Mb/s = 1 byte/µs, depth 100 bytes.
        let mut b = TokenBucket::new(8_000_000, 100);
        assert!(b.try_consume(1000, 0));
        assert_eq!(b.available_bytes(), -900);
        assert!(!b.try_consume(1, 900 * US - 1));
        assert!(b.try_consume(1, 901 * US));
        // Oversized again needs a full bucket.
        assert!(!b.try_consume(1000, 950 * US));
        assert!(b.try_consume(1000, 1001 * US));
    }

    #[test]
    fn zero_rate_never_admits_beyond_initial_tokens() {
        let mut b = TokenBucket::new(0, 100);
        assert!(b.try_consume(100, 0));
        assert!(!b.try_consume(1, 1000 * SEC));
        assert!(!b.try_consume(1000, 2000 * SEC));
        assert_eq!(b.time_until(1, 0), None);
        let mut z = TokenBucket::new(0, 0);
        assert!(!z.try_consume(1, 0));
    }

    #[test]
    fn time_until_is_exact() {
        let mut b = TokenBucket::new(8_000_000, 100);
        assert!(b.try_consume(100, 0));
        assert_eq!(b.time_until(50, 0), Some(50 * US));
        assert!(!b.try_consume(50, 50 * US - 1));
        assert!(b.try_consume(50, 50 * US));
        assert_eq!(b.time_until(0, 50 * US), Some(0));
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let mut b = TokenBucket::new(u64::MAX, u64::MAX);
        assert!(b.try_consume(u64::MAX, 0));
        assert!(b.try_consume(u64::MAX, u64::MAX));
        b.set_rate(u64::MAX, 0);
        let _ = b.try_consume(u64::MAX, u64::MAX);
        let _ = b.time_until(u64::MAX, u64::MAX);
    }

    #[test]
    fn set_rate_at_credits_old_rate_until_switch() {
        let mut b = TokenBucket::new(8_000_000, 10_000);
        assert!(b.try_consume(10_000, 0));
        b.set_rate_at(0, 10_000, 1000 * US); // 1000 bytes earned at the old rate
        assert!(b.try_consume(1000, 5 * SEC));
        assert!(!b.try_consume(1, 6 * SEC));
    }

    proptest! {
        /// Over any run, what is consumed never exceeds depth + rate × time, plus one
        /// oversized request's debt.
        #[test]
        fn never_exceeds_rate_plus_burst(
            rate in 0u64..20_000_000_000,
            burst in 0u64..2_000_000,
            reqs in proptest::collection::vec((0u64..100_000, 0u32..70_000), 1..300),
        ) {
            let mut b = TokenBucket::new(rate, burst);
            let mut now = 0u64;
            let mut consumed: u128 = 0;
            let mut biggest: u128 = 0;
            for (dt, bytes) in reqs {
                now += dt;
                if b.try_consume(bytes as u64, now) {
                    consumed += bytes as u128;
                    biggest = biggest.max(bytes as u128);
                }
                let earned_bits = rate as u128 * now as u128;
                // consumed*8e9 <= burst*8e9 + earned + oversized debt
                let lhs = consumed * UNITS_PER_BYTE;
                let rhs = (burst as u128 + biggest) * UNITS_PER_BYTE + earned_bits;
                prop_assert!(lhs <= rhs);
            }
        }

        /// A request that fits is always admitted once enough time has passed.
        #[test]
        fn eventually_admits(rate in 1u64..100_000_000_000, burst in 0u64..100_000, bytes in 0u64..100_000) {
            let mut b = TokenBucket::new(rate, burst);
            let _ = b.try_consume(burst, 0);
            let wait = b.time_until(bytes, 0);
            prop_assert!(wait.is_some());
            let wait = wait.unwrap_or(0);
            prop_assert!(b.try_consume(bytes, wait));
        }
    }
}
