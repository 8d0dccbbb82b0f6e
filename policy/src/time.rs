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
