//! Per-vNIC bandwidth: shares, reservations, priority and traffic shaping
//! (specification [0083], [0089]–[0099], [0111]–[0118]; claims 2–4 and 30).
//!
//! # Design: two halves
//!
//! Deciding "send, queue or drop" for every burst needs two kinds of knowledge: what
//! every vNIC on an uplink is asking for (global, slow-changing) and whether *this*
//! vNIC has tokens left right now (local, per burst). They are split accordingly.
//!
//! **Control side — [`ShareAllocator`], one per uplink (bond or unbonded NIC), owned
//! by the control thread.** Every `interval` (1–2 ms) the control thread reads each
//! vNIC's offered bytes (published by workers through atomics, see
//! [`GateCounters::offered_bytes`]) and calls [`ShareAllocator::allocate`], which
//! computes the rate each vNIC may send at over the next interval, in this order:
//!
//! 1. *reservations* ([0112]): each vNIC's guaranteed minimum, capped at its demand,
//!    regardless of priority or shares (scaled down together if they do not fit);
//! 2. *floors* ([0097]): under congestion every busy vNIC with shares > 0 gets a
//!    small minimum (`floor_permille` of the capacity, split by shares), so no one is
//!    locked out — except lower-priority vNICs shed in a degraded bond (below);
//! 3. *priority classes* ([0111], [0115], [0117]): higher priority (0–10, 10 highest)
//!    is served before lower;
//! 4. *shares within a class* ([0091]–[0096]): weighted water-filling over
//!    per-vNIC virtual times (start-time fair queueing at interval granularity): each
//!    vNIC's virtual time advances by the bytes granted to it divided by its shares,
//!    and the grant brings every backlogged vNIC of the class up to one common
//!    virtual-time level, capped at its demand. The result is work conserving
//!    ([0095]): what a vNIC does not use goes to the busy ones in proportion to their
//!    shares;
//! 5. *shares = 0* vNICs ([0091], minimum may be zero) get only what is left;
//! 6. *headroom*: capacity still unused is handed to all vNICs by shares so they can
//!    grow without waiting an interval; it does not advance virtual time.
//!
//! Lag is bounded ([0097]): a vNIC that was idle, or was granted all it asked for
//! (not backlogged), rejoins at the system virtual time — under-use earns no credit,
//! as in start-time fair queueing; a vNIC that was held back keeps at most
//! `max_lag_intervals` of its fair share as credit, so it can catch up at most that
//! much faster than its share, and the floors keep everyone else served meanwhile.
//!
//! Demand is the offered rate (sent, queued and dropped bytes alike), folded in over
//! windows of at least half an interval, rising at once and falling by 3/4 per
//! window; a shaped vNIC's demand is capped at its peak rate (it could never use
//! more).
//!
//! Capacity ([0116]): [`ShareAllocator::set_capacity`] is called by the control
//! thread when a bond member fails or returns; it should call `allocate` right after,
//! so that the very next decisions use the new capacity (a vNIC that used 15 % of a
//! bond is then over its 20 % of the halved capacity and limited to it). The uplink
//! itself is paced to its capacity by the data plane.
//!
//! Degraded bond (claim 30, [0118]): when `degraded` is set and demand exceeds the
//! remaining capacity, [`DegradedMode::DropLowerPriority`] serves classes strictly by
//! priority with no floors; the classes left without bandwidth get rate = their
//! reservation and [`LimitReason::LowerPriorityDegraded`], so their gates drop the
//! excess at once instead of queueing it. A class is also shed when only dust
//! (≤ `floor_permille` of capacity) is left for it under congestion. [`DegradedMode::Proportional`] ignores
//! priority while degraded: the reduced capacity is shared by shares alone, so every
//! vNIC loses in proportion and no one is shed. (When not degraded, priority classes
//! apply under congestion in both modes, with floors.)
//!
//! **Worker side — [`VnicGate`], one per vNIC, owned by the worker that polls the
//! vNIC.** It holds a [`TokenBucket`] refilled at the allocated rate and the vNIC's
//! own [`Shaper`] (average/peak/burst, [0090]). [`VnicGate::admit`] is the fast path:
//! integer token arithmetic in bit-nanoseconds, no allocation, no floating point,
//! no shared state. It answers [`Verdict::Send`], [`Verdict::Queue`] (bounded by
//! `queue_limit_bytes` and `max_delay`) or [`Verdict::Drop`] with a [`DropReason`],
//! each counted in [`GateCounters`].
//!
//! What crosses threads is plain numbers: workers publish offered bytes (atomics
//! written by the owner, read by the control thread); the control thread publishes
//! each [`Allocation`] — [`Allocation::to_bits`] packs it into one `u64` for a single
//! atomic store — and the worker applies it with [`VnicGate::set_allocation`] at a
//! quiescent point. Neither half ever touches the other's state.
//!
//! Why rates rather than per-frame virtual times on the fast path: [0096] updates
//! virtual times per frame, which would need every worker sending on a bond to share
//! one ordered structure. Computing the same start-time fair allocation per interval
//! on the control thread keeps the fast path lock-free and per-vNIC, at the cost of
//! reacting within one interval (1–2 ms) instead of one frame; the token bucket's
//! burst (`burst_time` of the allocated rate) absorbs the difference.
//!
//! # Invariants
//!
//! - The allocated rates of an uplink sum to at most its capacity (integer floors).
//! - A busy vNIC with shares > 0 gets a non-zero rate whenever capacity > 0, unless
//!   it is shed by [`DegradedMode::DropLowerPriority`] in a degraded bond.
//! - Reservations (capped at demand) are met whenever they sum to at most
//!   `(1000 − floor_permille)‰` of capacity.
//! - Nothing here reads a clock or panics on any input.

mod allocator;
mod gate;
mod shaper;
mod token_bucket;

#[cfg(test)]
mod sim;

pub use allocator::{AllocatorConfig, ShareAllocator};
pub use gate::{CreditRun, GateConfig, GateCounters, Verdict, VnicGate};
pub use shaper::{Shaper, DEFAULT_PEAK_PERIOD};
pub use token_bucket::TokenBucket;

use crate::time::Nanos;
use core::fmt;
use core::str::FromStr;

/// Highest priority; priorities above it are treated as it.
pub const MAX_PRIORITY: u8 = 10;

/// Traffic shaping parameters of a vNIC, vSphere's four numbers ([0090]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Shaping {
    /// Long-run average rate, bits per second.
    pub average_bps: u64,
    /// Rate never exceeded even while bursting, bits per second (raised to
    /// `average_bps` if lower).
    pub peak_bps: u64,
    /// Bytes that may be sent above the average after a quiet period.
    pub burst_bytes: u64,
    /// Window over which the peak is enforced; [`DEFAULT_PEAK_PERIOD`] if `None`.
    pub peak_period: Option<Nanos>,
}

/// Bandwidth settings of a vNIC (or a VM-wide default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct VnicBandwidth {
    /// Proportional share of the uplink ([0091]); 0 means "only what is left".
    pub shares: u32,
    /// Priority 0–10, 10 highest ([0111]).
    pub priority: u8,
    /// Guaranteed minimum in bits per second, honoured before shares and priorities
    /// when possible ([0112]).
    pub reservation_bps: u64,
    /// Optional traffic shaping ([0090]).
    pub shaping: Option<Shaping>,
}

impl Default for VnicBandwidth {
    /// 1000 shares, priority 5, no reservation, no shaping.
    fn default() -> Self {
        VnicBandwidth {
            shares: 1000,
            priority: 5,
            reservation_bps: 0,
            shaping: None,
        }
    }
}

/// What a degraded bond (one that lost a member) does when demand exceeds what is
/// left (claim 30).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DegradedMode {
    /// Serve strictly by priority and drop the frames of the lower-priority vNICs
    /// that do not fit (`drop-lower-priority`).
    #[default]
    DropLowerPriority,
    /// Ignore priority while degraded: share what is left by shares
    /// (`proportional`).
    Proportional,
}

impl fmt::Display for DegradedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DegradedMode::DropLowerPriority => "drop-lower-priority",
            DegradedMode::Proportional => "proportional",
        })
    }
}

/// The string was neither `drop-lower-priority` nor `proportional`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("degraded mode must be \"drop-lower-priority\" or \"proportional\"")]
pub struct ParseDegradedModeError;

impl FromStr for DegradedMode {
    type Err = ParseDegradedModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop-lower-priority" => Ok(DegradedMode::DropLowerPriority),
            "proportional" => Ok(DegradedMode::Proportional),
            _ => Err(ParseDegradedModeError),
        }
    }
}

/// Why an allocation is below the vNIC's demand; tells the gate what to do with
/// traffic beyond it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LimitReason {
    /// The allocation covers the demand; traffic beyond it (a sudden increase) is
    /// treated as over share.
    #[default]
    NotLimited,
    /// Limited to its proportional share: excess is queued, then dropped.
    OverShare,
    /// Shed because the bond is degraded and higher priorities need the bandwidth:
    /// excess is dropped at once.
    LowerPriorityDegraded,
}

impl LimitReason {
    /// The drop reason for traffic beyond an allocation with this reason.
    pub fn drop_reason(self) -> DropReason {
        match self {
            LimitReason::NotLimited | LimitReason::OverShare => DropReason::OverShare,
            LimitReason::LowerPriorityDegraded => DropReason::LowerPriorityDegraded,
        }
    }
}

/// Why a burst was dropped.
///
/// A burst over a limit waits in the vNIC's queue; when it is then dropped —
/// because the queue had no room for it, or it waited longer than `max_delay` — it
/// counts under the limit it was waiting for, so the counters say which limit
/// costs the vNIC its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Over the vNIC's allocated share (and the queue could not hold it or it waited
    /// too long).
    OverShare,
    /// Over the vNIC's shaping limits (and the queue could not hold it or it waited
    /// too long).
    OverShaping,
    /// Lower priority in a degraded bond (claim 30); never queued.
    LowerPriorityDegraded,
    /// The burst was within the vNIC's limits but had to wait behind bursts queued
    /// ahead of it (FIFO), and the queue was full.
    QueueFull,
}

impl DropReason {
    /// Number of reasons (size of counter arrays).
    pub const COUNT: usize = 4;
    /// All reasons, in [`index`](Self::index) order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::OverShare,
        DropReason::OverShaping,
        DropReason::LowerPriorityDegraded,
        DropReason::QueueFull,
    ];

    /// Index into counter arrays.
    pub fn index(self) -> usize {
        match self {
            DropReason::OverShare => 0,
            DropReason::OverShaping => 1,
            DropReason::LowerPriorityDegraded => 2,
            DropReason::QueueFull => 3,
        }
    }

    /// Short stable name for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OverShare => "over-share",
            DropReason::OverShaping => "over-shaping",
            DropReason::LowerPriorityDegraded => "lower-priority-degraded",
            DropReason::QueueFull => "queue-full",
        }
    }
}

/// The rate a vNIC may send at over the next interval, computed by the control side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Allocation {
    /// Allocated rate, bits per second.
    pub rate_bps: u64,
    /// Depth of the gate's share bucket, bytes.
    pub burst_bytes: u64,
    /// Why the rate is below the demand, if it is.
    pub reason_if_limited: LimitReason,
}

/// Bits of [`Allocation::to_bits`] holding the rate.
const RATE_BITS: u32 = 42;
/// Bits holding the burst, in units of [`BURST_UNIT`] bytes.
const BURST_BITS: u32 = 20;
/// Granularity of the packed burst.
const BURST_UNIT: u64 = 256;

impl Allocation {
    /// Packs into one word for a single atomic store: rate (42 bits, saturating at
    /// ~4.4 Tb/s), burst rounded up to 256-byte units (20 bits, saturating at
    /// 256 MiB), reason (2 bits).
    pub fn to_bits(self) -> u64 {
        let rate = self.rate_bps.min((1 << RATE_BITS) - 1);
        let burst = self
            .burst_bytes
            .div_ceil(BURST_UNIT)
            .min((1 << BURST_BITS) - 1);
        let reason = match self.reason_if_limited {
            LimitReason::NotLimited => 0,
            LimitReason::OverShare => 1,
            LimitReason::LowerPriorityDegraded => 2,
        };
        rate | burst << RATE_BITS | reason << (RATE_BITS + BURST_BITS)
    }

    /// Unpacks a word made by [`to_bits`](Self::to_bits).
    pub fn from_bits(w: u64) -> Self {
        let rate_bps = w & ((1 << RATE_BITS) - 1);
        let burst_bytes = ((w >> RATE_BITS) & ((1 << BURST_BITS) - 1)) * BURST_UNIT;
        let reason_if_limited = match w >> (RATE_BITS + BURST_BITS) {
            0 => LimitReason::NotLimited,
            1 => LimitReason::OverShare,
            _ => LimitReason::LowerPriorityDegraded,
        };
        Allocation {
            rate_bps,
            burst_bytes,
            reason_if_limited,
        }
    }
}

/// Control-plane errors of [`ShareAllocator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BandwidthError {
    /// A vNIC with this slot is already attached to the uplink.
    #[error("vNIC slot {0} is already attached")]
    DuplicateSlot(u32),
    /// No vNIC with this slot is attached to the uplink.
    #[error("vNIC slot {0} is not attached")]
    UnknownSlot(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_mode_round_trips() {
        for m in [DegradedMode::DropLowerPriority, DegradedMode::Proportional] {
            assert_eq!(m.to_string().parse::<DegradedMode>(), Ok(m));
        }
        assert_eq!(
            "Proportional".parse::<DegradedMode>(),
            Err(ParseDegradedModeError)
        );
        assert_eq!("".parse::<DegradedMode>(), Err(ParseDegradedModeError));
    }

    #[test]
    fn allocation_packs_into_one_word() {
        let a = Allocation {
            rate_bps: 1_234_567_891,
            burst_bytes: 250_000,
            reason_if_limited: LimitReason::LowerPriorityDegraded,
        };
        let b = Allocation::from_bits(a.to_bits());
        assert_eq!(b.rate_bps, a.rate_bps);
        assert_eq!(b.reason_if_limited, a.reason_if_limited);
        assert!(b.burst_bytes >= a.burst_bytes && b.burst_bytes < a.burst_bytes + 256);
        let big = Allocation {
            rate_bps: u64::MAX,
            burst_bytes: u64::MAX,
            reason_if_limited: LimitReason::OverShare,
        };
        let c = Allocation::from_bits(big.to_bits());
        assert_eq!(c.rate_bps, (1 << 42) - 1);
        assert_eq!(c.reason_if_limited, LimitReason::OverShare);
        assert_eq!(Allocation::from_bits(0), Allocation::default());
    }

    #[test]
    fn drop_reason_indices_match_all() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.as_str().is_empty());
        }
    }
}
