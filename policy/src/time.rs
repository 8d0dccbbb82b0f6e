//! Time as the policy code sees it: nanoseconds on a monotonic clock chosen by the caller.
//!
//! The data plane passes TSC-derived or `Instant`-derived nanoseconds; tests pass a
//! simulated clock. Nothing in `policy` reads a clock itself.

/// Nanoseconds since an arbitrary, caller-chosen epoch on a monotonic clock.
pub type Nanos = u64;

/// One millisecond in [`Nanos`].
pub const MS: Nanos = 1_000_000;
/// One second in [`Nanos`].
pub const SEC: Nanos = 1_000_000_000;
/// One microsecond in [`Nanos`].
pub const US: Nanos = 1_000;

/// The rate in bits per second of `bytes` moved over `dt` nanoseconds, saturating at
/// `u64::MAX` (0 when `dt` is 0).
///
/// Computed in 128 bits: `bytes * 8 * SEC` overflows 64 bits from about 2.3 GB, one
/// second of a 20 Gb/s NIC.
pub fn bits_per_sec(bytes: u64, dt: Nanos) -> u64 {
    if dt == 0 {
        return 0;
    }
    (bytes as u128 * 8 * SEC as u128 / dt as u128).min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_sec_of_a_100g_nic_over_a_second_does_not_wrap() {
        // 100 Gb/s for 1.2 s: 15 GB, whose bits times SEC is beyond 64 bits.
        let bytes = 15_000_000_000u64;
        assert_eq!(bits_per_sec(bytes, 1_200 * MS), 100_000_000_000);
        assert_eq!(bits_per_sec(1_000, SEC), 8_000);
        assert_eq!(bits_per_sec(1_000, 0), 0);
        assert_eq!(bits_per_sec(u64::MAX, 1), u64::MAX);
    }
}
