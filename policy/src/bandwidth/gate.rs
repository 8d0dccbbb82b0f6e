//! The worker-side admission gate of one vNIC (fast path).

use super::{Allocation, DropReason, LimitReason, Shaper, Shaping, TokenBucket};
use crate::time::Nanos;

/// What to do with a burst (or frame) a vNIC wants to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Transmit now (it has been charged to the vNIC's allocation and shaper).
    Send,
    /// Keep it in the vNIC's queue and offer it again later with
    /// [`VnicGate::poll_queued`].
    Queue,
    /// Discard it, for the given reason.
    Drop(DropReason),
}

/// Queueing limits of a gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GateConfig {
    /// Most bytes the vNIC may have waiting; 0 disables queueing (over-limit traffic
    /// is dropped at once).
    pub queue_limit_bytes: u64,
    /// Longest a queued burst may wait before it is dropped.
    pub max_delay: Nanos,
}

impl Default for GateConfig {
    /// 256 KiB and 2 ms.
    fn default() -> Self {
        GateConfig {
            queue_limit_bytes: 256 * 1024,
            max_delay: 2 * crate::time::MS,
        }
    }
}

/// Counters kept by the owning worker; the data plane copies them into atomics for
/// the control side. All are monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateCounters {
    /// Bytes offered by the vNIC (each burst counted once, at [`VnicGate::admit`]).
    /// This is the demand the allocator consumes.
    pub offered_bytes: u64,
    /// Bytes that got [`Verdict::Send`].
    pub sent_bytes: u64,
    /// Bursts that got [`Verdict::Send`].
    pub sent_units: u64,
    /// Bursts that were queued at least once.
    pub queued_units: u64,
    /// Bursts dropped, indexed by [`DropReason::index`].
    pub dropped_units: [u64; DropReason::COUNT],
    /// Bytes dropped, indexed by [`DropReason::index`].
    pub dropped_bytes: [u64; DropReason::COUNT],
}

/// Frames sent on a gate's credit at one time, not yet accounted
/// ([`VnicGate::credit_run`], [`VnicGate::spend`]).
#[derive(Clone, Copy, Debug)]
#[must_use = "a credit run must be given back to VnicGate::spend"]
pub struct CreditRun {
    /// Credit left.
    credit: u64,
    /// Bytes and frames taken.
    bytes: u64,
    units: u64,
}

impl CreditRun {
    /// Takes a frame of `bytes` when it fits the credit left (and is not empty, which
    /// `admit` would check in full): `true` means it is sent. *Fast path*.
    #[inline(always)]
    pub fn take(&mut self, bytes: u64) -> bool {
        if (1..=self.credit).contains(&bytes) {
            self.credit -= bytes;
            self.bytes += bytes;
            self.units += 1;
            true
        } else {
            false
        }
    }
}

/// Admission control for one vNIC, owned by the worker that polls it.
///
/// Holds the share bucket (refilled at the rate the control thread allocated) and
/// the vNIC's own [`Shaper`]. A burst is sent only if *both* admit it; otherwise it
/// is queued (bounded in bytes and in delay) or dropped, with a reason.
///
/// FIFO per vNIC: while anything is queued, new bursts go behind it. The data plane
/// offers its queue heads with [`poll_queued`](Self::poll_queued) before admitting
/// new bursts with [`admit`](Self::admit) in each poll iteration.
///
/// No allocation, no floating point; every method is fast path except `new`.
///
/// The common case costs a comparison and a subtraction: after a full check at time
/// `t`, the gate remembers how many bytes *every* bucket could still give at `t`
/// (`credit`). Further bursts at the same `t` within that credit are sent at once and
/// their charge is summed in `uncharged`, which is applied to the buckets before
/// anything else reads them (`settle`). Because no refill happens at an unchanged
/// `t`, deferring the subtraction gives the buckets exactly the state and the
/// verdicts exactly the values of charging each burst in turn.
#[derive(Clone, Debug)]
pub struct VnicGate {
    share: TokenBucket,
    shaper: Option<Shaper>,
    limit: LimitReason,
    config: GateConfig,
    queued_bytes: u64,
    counters: GateCounters,
    /// Bytes every bucket can still give at `credit_at` (after `uncharged`).
    credit: u64,
    /// The time `credit` was computed at; it is only valid at that time.
    credit_at: Nanos,
    /// Bytes sent on credit, not yet subtracted from the buckets.
    uncharged: u64,
}

impl VnicGate {
    /// A gate starting at `initial`, shaping with `shaping` if any.
    pub fn new(config: GateConfig, shaping: Option<Shaping>, initial: Allocation) -> Self {
        VnicGate {
            share: TokenBucket::new(initial.rate_bps, initial.burst_bytes),
            shaper: shaping.map(Shaper::new),
            limit: initial.reason_if_limited,
            config,
            queued_bytes: 0,
            counters: GateCounters::default(),
            credit: 0,
            credit_at: 0,
            uncharged: 0,
        }
    }

    /// Charges the bytes sent on credit to the buckets and drops the credit: called
    /// before anything reads or changes a bucket.
    #[inline]
    fn settle(&mut self) {
        self.credit = 0;
        if self.uncharged > 0 {
            self.share.consume(self.uncharged);
            if let Some(s) = &mut self.shaper {
                s.charge(self.uncharged);
            }
            self.uncharged = 0;
        }
    }

    /// After a full check at `now` (buckets refilled to `now`): the bytes every
    /// bucket can still give at `now`.
    #[inline]
    fn grant_credit(&mut self, now: Nanos) {
        let shaper = match &self.shaper {
            Some(s) => s.credit_bytes(),
            None => u64::MAX,
        };
        self.credit = self.share.credit_bytes().min(shaper);
        self.credit_at = now;
    }

    /// Sets the allocated rate and depth of the share bucket (see
    /// [`TokenBucket::set_rate`] for how the switch-over is credited).
    pub fn set_rate(&mut self, rate_bps: u64, burst_bytes: u64) {
        self.settle();
        self.share.set_rate(rate_bps, burst_bytes);
    }

    /// Applies a whole allocation published by the control thread.
    pub fn set_allocation(&mut self, a: Allocation) {
        self.set_rate(a.rate_bps, a.burst_bytes);
        self.limit = a.reason_if_limited;
    }

    /// Stall credit for the shaper ([`Shaper::set_stall`]); the share bucket's comes
    /// with its allocation's depth.
    pub fn set_stall(&mut self, stall: Nanos) {
        self.settle();
        if let Some(s) = &mut self.shaper {
            s.set_stall(stall);
        }
    }

    /// Replaces the shaping configuration (buckets restart full).
    pub fn set_shaping(&mut self, shaping: Option<Shaping>) {
        self.settle();
        self.shaper = shaping.map(Shaper::new);
    }

    /// Replaces the queueing limits.
    pub fn set_config(&mut self, config: GateConfig) {
        self.config = config;
    }

    /// The counters so far.
    pub fn counters(&self) -> &GateCounters {
        &self.counters
    }

    /// Bytes currently waiting in the vNIC's queue, as far as the gate knows.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// The allocated rate in force.
    pub fn rate_bps(&self) -> u64 {
        self.share.rate_bps()
    }

    /// Decides a new burst of `bytes` from the vNIC. Fast path.
    ///
    /// `Queue` means the caller must keep the burst (it is now accounted in
    /// [`queued_bytes`](Self::queued_bytes)) and offer it later with
    /// [`poll_queued`](Self::poll_queued).
    #[inline]
    pub fn admit(&mut self, bytes: u32, now: Nanos) -> Verdict {
        let b = bytes as u64;
        // The per-frame byte and unit counters wrap rather than saturate (a cmov each
        // less on the fast path): a u64 of bytes lasts 46 years at 100 Gb/s.
        self.counters.offered_bytes = self.counters.offered_bytes.wrapping_add(b);
        // Nothing queued, same time as the last full check, within what every bucket
        // still had then: a full check would send it too.
        if self.credit != 0 && b <= self.credit && now == self.credit_at && self.queued_bytes == 0 {
            self.credit -= b;
            self.uncharged += b;
            return self.send(b);
        }
        self.admit_checked(b, now)
    }

    /// A run of frames at `now` sent on the credit left from the last full check:
    /// the credit when that check was at `now` and nothing is queued, else none.
    /// *Fast path*, once per run of frames.
    ///
    /// Each frame the run [`take`](CreditRun::take)s is sent at once; a frame it
    /// refuses goes to [`admit`](Self::admit) after the run so far is accounted with
    /// [`spend`](Self::spend). The verdicts, counters and buckets are those of calling
    /// `admit` frame by frame (property-tested).
    #[inline]
    pub fn credit_run(&self, now: Nanos) -> CreditRun {
        let credit = if now == self.credit_at && self.queued_bytes == 0 {
            self.credit
        } else {
            0
        };
        CreditRun {
            credit,
            bytes: 0,
            units: 0,
        }
    }

    /// Accounts the frames `run` took: what that many [`admit`](Self::admit)s sending
    /// on credit record.
    #[inline]
    pub fn spend(&mut self, run: CreditRun) {
        debug_assert!(run.bytes <= self.credit);
        self.credit -= run.bytes;
        self.uncharged += run.bytes;
        self.counters.offered_bytes = self.counters.offered_bytes.wrapping_add(run.bytes);
        self.counters.sent_bytes = self.counters.sent_bytes.wrapping_add(run.bytes);
        self.counters.sent_units = self.counters.sent_units.wrapping_add(run.units);
    }

    /// [`admit`](Self::admit) without credit: the full check.
    #[inline(never)]
    fn admit_checked(&mut self, b: u64, now: Nanos) -> Verdict {
        if self.queued_bytes > 0 {
            // Keep FIFO order behind what is already waiting.
            if self.limit == LimitReason::LowerPriorityDegraded {
                return self.reject(b, DropReason::LowerPriorityDegraded);
            }
            let reason = self.blocking_reason(b, now);
            return self.enqueue(b, reason);
        }
        match self.check(b, now) {
            None => {
                self.grant_credit(now);
                self.send(b)
            }
            Some(DropReason::LowerPriorityDegraded) => {
                self.reject(b, DropReason::LowerPriorityDegraded)
            }
            Some(reason) => self.enqueue(b, reason),
        }
    }

    /// Decides the burst at the head of the vNIC's queue, enqueued at `enqueued_at`.
    /// Fast path.
    ///
    /// `Send` and `Drop` remove it from the gate's queue accounting; `Queue` means it
    /// stays at the head (try again later).
    pub fn poll_queued(&mut self, bytes: u32, enqueued_at: Nanos, now: Nanos) -> Verdict {
        let b = bytes as u64;
        let verdict = match self.check(b, now) {
            None => {
                self.counters.sent_bytes = self.counters.sent_bytes.saturating_add(b);
                self.counters.sent_units = self.counters.sent_units.saturating_add(1);
                Verdict::Send
            }
            Some(DropReason::LowerPriorityDegraded) => {
                self.count_drop(b, DropReason::LowerPriorityDegraded)
            }
            Some(reason) if self.should_drop_queued(enqueued_at, now) => self.count_drop(b, reason),
            Some(_) => return Verdict::Queue,
        };
        self.queued_bytes = self.queued_bytes.saturating_sub(b);
        verdict
    }

    /// Whether a burst queued at `enqueued_at` has waited longer than the
    /// configured `max_delay`. Fast path.
    pub fn should_drop_queued(&self, enqueued_at: Nanos, now: Nanos) -> bool {
        now.saturating_sub(enqueued_at) > self.config.max_delay
    }

    /// Tells the gate that the caller discarded `bytes` of queued traffic on its own
    /// (for example on vNIC teardown), so that its queue accounting stays right.
    pub fn forget_queued(&mut self, bytes: u64) {
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
    }

    /// Nanoseconds until a burst of `bytes` could pass both buckets, `None` if never
    /// at the current rates. Lets the data plane sleep its queue until then.
    pub fn time_until(&mut self, bytes: u32, now: Nanos) -> Option<Nanos> {
        self.settle();
        let s = self.share.time_until(bytes as u64, now)?;
        match &mut self.shaper {
            Some(sh) => Some(s.max(sh.time_until(bytes as u64, now)?)),
            None => Some(s),
        }
    }

    /// `None` if both buckets admit `bytes` now (and charges them), else why not.
    fn check(&mut self, b: u64, now: Nanos) -> Option<DropReason> {
        self.settle();
        let share_ok = self.share.can_consume(b, now);
        let shape_ok = match &mut self.shaper {
            Some(s) => s.can_send(b, now),
            None => true,
        };
        if share_ok && shape_ok {
            self.share.consume(b);
            if let Some(s) = &mut self.shaper {
                s.charge(b);
            }
            return None;
        }
        Some(if !shape_ok {
            DropReason::OverShaping
        } else {
            self.limit.drop_reason()
        })
    }

    /// The caller could not keep a burst [`admit`](Self::admit) answered
    /// [`Verdict::Queue`] for (its own queue of frames is full): releases the gate's
    /// queue accounting and counts the drop under the reason the burst had to wait
    /// ([`OverShaping`](DropReason::OverShaping) if the shaper held it, the
    /// allocation's reason if the share bucket did, [`QueueFull`](DropReason::QueueFull)
    /// if it waited only behind earlier bursts). Fast path.
    pub fn drop_unqueued(&mut self, bytes: u32, now: Nanos) -> DropReason {
        let b = bytes as u64;
        self.queued_bytes = self.queued_bytes.saturating_sub(b);
        self.counters.queued_units = self.counters.queued_units.saturating_sub(1);
        let reason = self.blocking_reason(b, now);
        self.count_drop(b, reason);
        reason
    }

    /// Why a burst would wait now, without charging anything: the shaper, the share
    /// bucket, or (neither) only the bursts queued ahead of it.
    fn blocking_reason(&mut self, b: u64, now: Nanos) -> DropReason {
        self.settle();
        let shape_ok = match &mut self.shaper {
            Some(s) => s.can_send(b, now),
            None => true,
        };
        if !shape_ok {
            DropReason::OverShaping
        } else if !self.share.can_consume(b, now) {
            self.limit.drop_reason()
        } else {
            DropReason::QueueFull
        }
    }

    #[inline]
    fn send(&mut self, b: u64) -> Verdict {
        self.counters.sent_bytes = self.counters.sent_bytes.wrapping_add(b);
        self.counters.sent_units = self.counters.sent_units.wrapping_add(1);
        Verdict::Send
    }

    fn enqueue(&mut self, b: u64, reason: DropReason) -> Verdict {
        if self.config.queue_limit_bytes == 0 {
            return self.reject(b, reason);
        }
        if self.queued_bytes.saturating_add(b) > self.config.queue_limit_bytes {
            // No room: dropped for the reason it had to wait.
            return self.reject(b, reason);
        }
        self.queued_bytes += b;
        self.counters.queued_units = self.counters.queued_units.saturating_add(1);
        Verdict::Queue
    }

    fn reject(&mut self, b: u64, reason: DropReason) -> Verdict {
        self.count_drop(b, reason)
    }

    fn count_drop(&mut self, b: u64, reason: DropReason) -> Verdict {
        let i = reason.index();
        self.counters.dropped_units[i] = self.counters.dropped_units[i].saturating_add(1);
        self.counters.dropped_bytes[i] = self.counters.dropped_bytes[i].saturating_add(b);
        Verdict::Drop(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MS, US};

    fn alloc(rate: u64, burst: u64, reason: LimitReason) -> Allocation {
        Allocation {
            rate_bps: rate,
            burst_bytes: burst,
            reason_if_limited: reason,
        }
    }

    #[test]
    fn sends_within_allocation_then_queues_then_drops_when_the_queue_is_full() {
        // 8 Mb/s = 1 byte/µs, burst 3000.
        let cfg = GateConfig {
            queue_limit_bytes: 3000,
            max_delay: 10 * MS,
        };
        let mut g = VnicGate::new(cfg, None, alloc(8_000_000, 3000, LimitReason::OverShare));
        assert_eq!(g.admit(1500, 0), Verdict::Send);
        assert_eq!(g.admit(1500, 0), Verdict::Send);
        assert_eq!(g.admit(1500, 0), Verdict::Queue);
        assert_eq!(g.admit(1500, 0), Verdict::Queue);
        // No room left: dropped for what it waited for, its share.
        assert_eq!(g.admit(1500, 0), Verdict::Drop(DropReason::OverShare));
        assert_eq!(g.queued_bytes(), 3000);
        // Head waits until 1500 bytes have been earned.
        assert_eq!(g.poll_queued(1500, 0, 1499 * US), Verdict::Queue);
        assert_eq!(g.poll_queued(1500, 0, 1500 * US), Verdict::Send);
        // FIFO: a new burst goes behind the remaining queued one even if tokens allow.
        assert_eq!(g.admit(10, 5000 * US), Verdict::Queue);
        let c = g.counters();
        assert_eq!(c.offered_bytes, 5 * 1500 + 10);
        assert_eq!(c.sent_bytes, 3 * 1500);
        assert_eq!(c.dropped_units[DropReason::OverShare.index()], 1);
    }

    /// When the caller's own frame queue is full, the burst the gate wanted queued is
    /// dropped for the reason it had to wait: shaping, share, or only the FIFO.
    #[test]
    fn drop_unqueued_names_why_the_burst_had_to_wait() {
        let cfg = GateConfig {
            queue_limit_bytes: 1 << 20,
            max_delay: 10 * MS,
        };
        // Plenty of share, 8 Mb/s average with no burst: the shaper holds frames.
        let shaping = Shaping {
            average_bps: 8_000_000,
            peak_bps: 8_000_000,
            burst_bytes: 0,
            peak_period: None,
        };
        let mut g = VnicGate::new(
            cfg,
            Some(shaping),
            alloc(1_000_000_000, 1 << 20, LimitReason::NotLimited),
        );
        assert_eq!(g.admit(1000, 0), Verdict::Send);
        assert_eq!(g.admit(1000, 0), Verdict::Queue);
        assert_eq!(g.drop_unqueued(1000, 0), DropReason::OverShaping);
        assert_eq!(g.queued_bytes(), 0);

        // No shaping, share exhausted: over share.
        let mut g = VnicGate::new(cfg, None, alloc(8_000_000, 1000, LimitReason::OverShare));
        assert_eq!(g.admit(1000, 0), Verdict::Send);
        assert_eq!(g.admit(1000, 0), Verdict::Queue);
        assert_eq!(g.drop_unqueued(1000, 0), DropReason::OverShare);
        // A big burst waits for tokens; a small one that the bucket could cover
        // waits only behind it (FIFO): that is a full queue, not a limit.
        assert_eq!(g.admit(1000, 500 * US), Verdict::Queue);
        assert_eq!(g.admit(100, 500 * US), Verdict::Queue);
        assert_eq!(g.drop_unqueued(100, 500 * US), DropReason::QueueFull);
        let c = g.counters();
        assert_eq!(c.dropped_units[DropReason::OverShare.index()], 1);
        assert_eq!(c.dropped_units[DropReason::QueueFull.index()], 1);
        assert_eq!(g.queued_bytes(), 1000);
        assert_eq!(
            c.offered_bytes,
            c.sent_bytes + 1000 + 100 + g.queued_bytes()
        );
    }

    #[test]
    fn queued_bursts_expire_after_max_delay() {
        let cfg = GateConfig {
            queue_limit_bytes: 1 << 20,
            max_delay: MS,
        };
        let mut g = VnicGate::new(cfg, None, alloc(0, 0, LimitReason::OverShare));
        assert_eq!(g.admit(100, 0), Verdict::Queue);
        assert!(!g.should_drop_queued(0, MS));
        assert_eq!(g.poll_queued(100, 0, MS), Verdict::Queue);
        assert!(g.should_drop_queued(0, MS + 1));
        assert_eq!(
            g.poll_queued(100, 0, MS + 1),
            Verdict::Drop(DropReason::OverShare)
        );
        assert_eq!(g.queued_bytes(), 0);
    }

    #[test]
    fn no_queue_means_drop_with_the_limiting_reason() {
        let cfg = GateConfig {
            queue_limit_bytes: 0,
            max_delay: MS,
        };
        let shaping = Shaping {
            average_bps: 8_000_000,
            peak_bps: 8_000_000,
            burst_bytes: 0,
            peak_period: None,
        };
        let mut g = VnicGate::new(
            cfg,
            Some(shaping),
            alloc(80_000_000, 100_000, LimitReason::OverShare),
        );
        assert_eq!(g.admit(1000, 0), Verdict::Send);
        // Share bucket has plenty; the shaper is in debt.
        assert_eq!(g.admit(1000, 0), Verdict::Drop(DropReason::OverShaping));
        g.set_shaping(None);
        g.set_rate(0, 1000);
        assert_eq!(g.admit(1000, 0), Verdict::Send);
        assert_eq!(g.admit(1000, 0), Verdict::Drop(DropReason::OverShare));
    }

    #[test]
    fn lower_priority_degraded_drops_without_queueing() {
        let mut g = VnicGate::new(
            GateConfig::default(),
            None,
            alloc(8_000_000, 1500, LimitReason::OverShare),
        );
        assert_eq!(g.admit(1500, 0), Verdict::Send);
        assert_eq!(g.admit(1500, 0), Verdict::Queue);
        g.set_allocation(alloc(0, 0, LimitReason::LowerPriorityDegraded));
        // The queued burst is shed at once, and so is new traffic.
        assert_eq!(
            g.poll_queued(1500, 0, 10 * US),
            Verdict::Drop(DropReason::LowerPriorityDegraded)
        );
        assert_eq!(
            g.admit(1500, 20 * US),
            Verdict::Drop(DropReason::LowerPriorityDegraded)
        );
        assert_eq!(g.queued_bytes(), 0);
        assert_eq!(
            g.counters().dropped_units[DropReason::LowerPriorityDegraded.index()],
            2
        );
    }

    #[test]
    fn reservation_rate_still_passes_when_degraded() {
        // A lower-priority vNIC keeps its reservation: frames within it are sent.
        let mut g = VnicGate::new(
            GateConfig::default(),
            None,
            alloc(8_000_000, 1000, LimitReason::LowerPriorityDegraded),
        );
        assert_eq!(g.admit(1000, 0), Verdict::Send);
        assert_eq!(
            g.admit(1000, 0),
            Verdict::Drop(DropReason::LowerPriorityDegraded)
        );
        assert_eq!(g.admit(1000, 1000 * US), Verdict::Send);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit(u32),
        PollHead,
        SetAlloc(u64, u64, u8),
        Advance(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u32..70_000).prop_map(Op::Admit),
            Just(Op::PollHead),
            (0u64..20_000_000_000, 0u64..1_000_000, 0u8..3)
                .prop_map(|(r, b, k)| Op::SetAlloc(r, b, k)),
            (0u64..5_000_000).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        /// Every offered byte is accounted exactly once: sent, dropped, or still
        /// queued; and the gate's queue accounting matches the caller's queue.
        #[test]
        fn bytes_are_conserved(
            ops in proptest::collection::vec(op(), 1..400),
            limit in 0u64..200_000,
            shaped in proptest::bool::ANY,
        ) {
            let cfg = GateConfig { queue_limit_bytes: limit, max_delay: MS };
            let shaping = shaped.then_some(Shaping {
                average_bps: 50_000_000,
                peak_bps: 100_000_000,
                burst_bytes: 20_000,
                peak_period: None,
            });
            let mut g = VnicGate::new(cfg, shaping, alloc(100_000_000, 10_000, LimitReason::OverShare));
            let mut q: std::collections::VecDeque<(u32, Nanos)> = Default::default();
            let mut now = 0;
            for op in ops {
                match op {
                    Op::Admit(b) => {
                        if g.admit(b, now) == Verdict::Queue {
                            q.push_back((b, now));
                        }
                    }
                    Op::PollHead => {
                        if let Some(&(b, at)) = q.front() {
                            if g.poll_queued(b, at, now) != Verdict::Queue {
                                q.pop_front();
                            }
                        }
                    }
                    Op::SetAlloc(r, b, k) => {
                        let reason = [LimitReason::NotLimited, LimitReason::OverShare,
                            LimitReason::LowerPriorityDegraded][k as usize];
                        g.set_allocation(alloc(r, b, reason));
                    }
                    Op::Advance(dt) => now += dt,
                }
                let c = g.counters();
                let queued: u64 = q.iter().map(|&(b, _)| b as u64).sum();
                proptest::prop_assert_eq!(g.queued_bytes(), queued);
                proptest::prop_assert!(queued <= limit);
                let dropped: u64 = c.dropped_bytes.iter().sum();
                proptest::prop_assert_eq!(c.offered_bytes, c.sent_bytes + dropped + queued);
            }
        }
    }

    mod credit {
        use super::*;
        use crate::bandwidth::Shaping;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Admit(u32),
            /// Frames at one time through `credit_run`/`spend`, falling back to
            /// `admit` as the worker's run loop does.
            Run(Vec<u32>),
            Advance(u64),
            Poll,
            SetAllocation(u64, u64, bool),
            TimeUntil(u32),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0u32..3000).prop_map(Op::Admit),
                3 => proptest::collection::vec(0u32..3000, 1..20).prop_map(Op::Run),
                2 => (0u64..50 * US).prop_map(Op::Advance),
                1 => Just(Op::Poll),
                1 => (1u64..2_000_000_000, 0u64..20_000, any::<bool>())
                    .prop_map(|(r, b, d)| Op::SetAllocation(r, b, d)),
                1 => (0u32..3000).prop_map(Op::TimeUntil),
            ]
        }

        proptest! {
            /// Sending on credit (deferred charging) gives exactly the verdicts, counters
            /// and bucket states of checking every burst in full.
            #[test]
            fn credit_matches_full_checks(
                ops in proptest::collection::vec(op(), 1..200),
                shaped in any::<bool>(),
                rate in 1u64..2_000_000_000,
                burst in 0u64..20_000,
            ) {
                let shaping = shaped.then_some(Shaping {
                    average_bps: rate / 2 + 1,
                    peak_bps: rate,
                    burst_bytes: burst / 2,
                    peak_period: None,
                });
                let cfg = GateConfig { queue_limit_bytes: 8000, max_delay: 100 * US };
                let mut fast = VnicGate::new(cfg, shaping, alloc(rate, burst, LimitReason::OverShare));
                let mut full = fast.clone();
                let mut queue: std::collections::VecDeque<(u32, Nanos)> = Default::default();
                let mut now: Nanos = 0;
                for o in ops {
                    match o {
                        Op::Admit(b) => {
                            full.credit = 0;
                            let v = fast.admit(b, now);
                            prop_assert_eq!(v, full.admit(b, now));
                            if v == Verdict::Queue {
                                queue.push_back((b, now));
                            }
                        }
                        Op::Run(frames) => {
                            let mut run = fast.credit_run(now);
                            for b in frames {
                                full.credit = 0;
                                let want = full.admit(b, now);
                                if run.take(b as u64) {
                                    prop_assert_eq!(want, Verdict::Send);
                                } else {
                                    fast.spend(run);
                                    let v = fast.admit(b, now);
                                    prop_assert_eq!(v, want);
                                    if v == Verdict::Queue {
                                        queue.push_back((b, now));
                                    }
                                    run = fast.credit_run(now);
                                }
                            }
                            fast.spend(run);
                        }
                        Op::Advance(d) => now += d,
                        Op::Poll => {
                            if let Some(&(b, at)) = queue.front() {
                                let v = fast.poll_queued(b, at, now);
                                prop_assert_eq!(v, full.poll_queued(b, at, now));
                                if v != Verdict::Queue {
                                    queue.pop_front();
                                }
                            }
                        }
                        Op::SetAllocation(r, b, d) => {
                            let reason = if d { LimitReason::LowerPriorityDegraded } else { LimitReason::OverShare };
                            fast.set_allocation(alloc(r, b, reason));
                            full.set_allocation(alloc(r, b, reason));
                        }
                        Op::TimeUntil(b) => {
                            prop_assert_eq!(fast.time_until(b, now), full.time_until(b, now));
                        }
                    }
                    prop_assert_eq!(fast.counters(), full.counters());
                    prop_assert_eq!(fast.queued_bytes(), full.queued_bytes());
                }
                fast.settle();
                full.settle();
                prop_assert_eq!(&fast.share, &full.share);
                prop_assert_eq!(&fast.shaper, &full.shaper);
            }
        }
    }
}
