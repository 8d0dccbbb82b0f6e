//! The control-side share allocator of one uplink.

use super::{Allocation, BandwidthError, DegradedMode, LimitReason, VnicBandwidth, MAX_PRIORITY};
use crate::time::{Nanos, MS, SEC};

/// Virtual-time units per (bit·ns / share): finer than one bit per interval so that
/// one step of the water level is far below one bit per second.
const VT_SCALE: u128 = 1 << 10;

/// Demand estimates below this are treated as idle.
const IDLE_BPS: u64 = 1000;

/// Tunables of a [`ShareAllocator`] ([0098]: set by the administrator or defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocatorConfig {
    /// How often the control thread calls [`ShareAllocator::allocate`]; rates are
    /// planned for this horizon and demand is measured over windows of at least half
    /// of it.
    pub interval: Nanos,
    /// Depth of each gate's share bucket, in time at the allocated rate.
    pub burst_time: Nanos,
    /// Minimum depth of a share bucket with a non-zero rate (one jumbo frame).
    pub min_burst_bytes: u64,
    /// Most credit a vNIC can hold, in intervals of its fair share ([0097]).
    pub max_lag_intervals: u32,
    /// Part of the capacity (‰) kept for the per-interval floors of busy vNICs under
    /// congestion ([0097]); reservations are limited to the rest.
    pub floor_permille: u32,
    /// How long a vNIC starved by the degraded-bond rule must go unshed (served, or
    /// idle) before [`ShareAllocator::is_starved`] clears, while the bond stays
    /// degraded. A shed class can be served for a few intervals whenever the higher
    /// class's demand estimate dips; this hysteresis keeps the flag (and what acts on
    /// it: logs, VM suspension) from flipping every few milliseconds.
    pub starve_hold: Nanos,
}

impl Default for AllocatorConfig {
    /// 1 ms interval, 2 ms bursts (at least 9216 bytes), 2 intervals of lag, 2 %
    /// floors, starvation held 500 ms.
    fn default() -> Self {
        AllocatorConfig {
            interval: MS,
            burst_time: 2 * MS,
            min_burst_bytes: 9216,
            max_lag_intervals: 2,
            floor_permille: 20,
            starve_hold: 500 * MS,
        }
    }
}

/// Per-vNIC state of the allocator, plus scratch used during one `allocate`.
#[derive(Clone, Debug)]
struct VnicState {
    slot: u32,
    cfg: VnicBandwidth,
    /// Local virtual time ([0096]), in bit·ns × VT_SCALE per share.
    vtime: u128,
    /// Offered bytes not yet turned into a demand estimate.
    pending_bytes: u64,
    /// Smoothed offered rate.
    demand_bps: u64,
    /// Rate granted from floors and shares last time (advances `vtime`).
    share_rate_bps: u64,
    /// Whether the last allocation was below the demand (the vNIC was backlogged).
    was_limited: bool,
    /// Starved by the degraded-bond rule (with hysteresis, see `starve_hold`).
    starved: bool,
    /// Since when a starved vNIC has not been shed.
    unshed_since: Option<Nanos>,
    // Scratch for one allocation.
    d: u64,
    res: u64,
    resid: u64,
    floor: u64,
    grant: u64,
    headroom: u64,
    base: u128,
    member: bool,
    cut: bool,
}

/// Computes, every interval, the rate each vNIC on one uplink may send at.
///
/// Owned by the control thread; see the [module documentation](super) for the
/// algorithm and its invariants. Nothing here is fast path, but `allocate` does not
/// allocate memory once `out` has grown to the number of vNICs.
#[derive(Clone, Debug)]
pub struct ShareAllocator {
    capacity_bps: u64,
    degraded: bool,
    mode: DegradedMode,
    cfg: AllocatorConfig,
    /// Sorted by slot.
    vnics: Vec<VnicState>,
    /// System virtual time: the level fair vNICs reached at the last allocation.
    vsys: u128,
    last_alloc: Option<Nanos>,
    pending_since: Option<Nanos>,
    capacity_changed_at: Option<Nanos>,
}

impl ShareAllocator {
    /// An allocator for an uplink of `capacity_bps` with default tunables.
    pub fn new(capacity_bps: u64, mode: DegradedMode) -> Self {
        Self::with_config(capacity_bps, mode, AllocatorConfig::default())
    }

    /// An allocator with explicit tunables.
    pub fn with_config(capacity_bps: u64, mode: DegradedMode, cfg: AllocatorConfig) -> Self {
        ShareAllocator {
            capacity_bps,
            degraded: false,
            mode,
            cfg,
            vnics: Vec::new(),
            vsys: 0,
            last_alloc: None,
            pending_since: None,
            capacity_changed_at: None,
        }
    }

    /// Sets the uplink capacity (sum of the link speeds of its usable members) and
    /// whether the bond is degraded (has lost a member). Call
    /// [`allocate`](Self::allocate) right after so the change takes effect at once
    /// ([0116]).
    pub fn set_capacity(&mut self, capacity_bps: u64, degraded: bool, now: Nanos) {
        if capacity_bps != self.capacity_bps || degraded != self.degraded {
            self.capacity_changed_at = Some(now);
        }
        self.capacity_bps = capacity_bps;
        self.degraded = degraded;
    }

    /// Current capacity in bits per second.
    pub fn capacity_bps(&self) -> u64 {
        self.capacity_bps
    }

    /// Whether the uplink is marked degraded.
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// When the capacity or degraded flag last changed.
    pub fn capacity_changed_at(&self) -> Option<Nanos> {
        self.capacity_changed_at
    }

    /// The degraded-bond policy.
    pub fn mode(&self) -> DegradedMode {
        self.mode
    }

    /// Changes the degraded-bond policy.
    pub fn set_mode(&mut self, mode: DegradedMode) {
        self.mode = mode;
    }

    /// The tunables.
    pub fn config(&self) -> AllocatorConfig {
        self.cfg
    }

    /// Number of attached vNICs.
    pub fn len(&self) -> usize {
        self.vnics.len()
    }

    /// Whether no vNIC is attached.
    pub fn is_empty(&self) -> bool {
        self.vnics.is_empty()
    }

    /// Attaches a vNIC. It joins at the current system virtual time (no credit).
    pub fn add_vnic(&mut self, slot: u32, bw: VnicBandwidth) -> Result<(), BandwidthError> {
        match self.find(slot) {
            Ok(_) => Err(BandwidthError::DuplicateSlot(slot)),
            Err(i) => {
                self.vnics.insert(
                    i,
                    VnicState {
                        slot,
                        cfg: bw,
                        vtime: self.vsys,
                        pending_bytes: 0,
                        demand_bps: 0,
                        share_rate_bps: 0,
                        was_limited: false,
                        starved: false,
                        unshed_since: None,
                        d: 0,
                        res: 0,
                        resid: 0,
                        floor: 0,
                        grant: 0,
                        headroom: 0,
                        base: 0,
                        member: false,
                        cut: false,
                    },
                );
                Ok(())
            }
        }
    }

    /// Detaches a vNIC.
    pub fn remove_vnic(&mut self, slot: u32) -> Result<VnicBandwidth, BandwidthError> {
        let i = self
            .find(slot)
            .map_err(|_| BandwidthError::UnknownSlot(slot))?;
        Ok(self.vnics.remove(i).cfg)
    }

    /// Changes a vNIC's settings (its virtual time and demand history are kept).
    pub fn set_vnic(&mut self, slot: u32, bw: VnicBandwidth) -> Result<(), BandwidthError> {
        let i = self
            .find(slot)
            .map_err(|_| BandwidthError::UnknownSlot(slot))?;
        self.vnics[i].cfg = bw;
        Ok(())
    }

    /// A vNIC's settings.
    pub fn vnic(&self, slot: u32) -> Option<&VnicBandwidth> {
        self.find(slot).ok().map(|i| &self.vnics[i].cfg)
    }

    /// A vNIC's smoothed demand estimate, bits per second.
    pub fn demand_bps(&self, slot: u32) -> Option<u64> {
        self.find(slot).ok().map(|i| self.vnics[i].demand_bps)
    }

    /// Whether a vNIC is starved by the degraded-bond rule (claim 30): it has demand
    /// and its priority class was shed. Set at the first allocation that sheds it;
    /// cleared at once when the uplink is no longer degraded (or degrades
    /// proportionally), otherwise only after it has gone
    /// [`starve_hold`](AllocatorConfig::starve_hold) without being shed.
    pub fn is_starved(&self, slot: u32) -> bool {
        self.find(slot).is_ok_and(|i| self.vnics[i].starved)
    }

    fn find(&self, slot: u32) -> Result<usize, usize> {
        self.vnics.binary_search_by_key(&slot, |v| v.slot)
    }

    /// Computes every attached vNIC's [`Allocation`] for the next interval, into
    /// `out` (cleared first, sorted by slot).
    ///
    /// `demand` lists, per slot, the bytes the vNIC offered since the previous call
    /// (sent, queued or dropped alike); unknown slots are ignored and missing ones
    /// count as 0. Offered bytes are folded into the demand estimate once at least
    /// half an interval has passed, so an extra call right after
    /// [`set_capacity`](Self::set_capacity) reuses the last estimate.
    pub fn allocate(
        &mut self,
        now: Nanos,
        demand: &[(u32, u64)],
        out: &mut Vec<(u32, Allocation)>,
    ) {
        out.clear();
        self.account(now);
        self.update_demand(now, demand);
        self.compute();
        let shedding = self.degraded && self.mode == DegradedMode::DropLowerPriority;
        let hold = self.cfg.starve_hold;
        for v in &mut self.vnics {
            update_starved(v, shedding, hold, now);
            let rate = v.res + v.floor + v.grant + v.headroom;
            v.share_rate_bps = v.floor + v.grant;
            v.was_limited = rate < v.d;
            let burst = if rate == 0 {
                0
            } else {
                let b = rate as u128 * self.cfg.burst_time as u128 / (8 * SEC as u128);
                u64::try_from(b)
                    .unwrap_or(u64::MAX)
                    .max(self.cfg.min_burst_bytes)
            };
            let reason = if v.cut {
                LimitReason::LowerPriorityDegraded
            } else if rate < v.d {
                LimitReason::OverShare
            } else {
                LimitReason::NotLimited
            };
            out.push((
                v.slot,
                Allocation {
                    rate_bps: rate,
                    burst_bytes: burst,
                    reason_if_limited: reason,
                },
            ));
        }
    }

    /// Advances each vNIC's virtual time by what it was granted since the last call.
    fn account(&mut self, now: Nanos) {
        let dt = match self.last_alloc {
            Some(last) => now.saturating_sub(last),
            None => 0,
        };
        self.last_alloc = Some(self.last_alloc.map_or(now, |l| l.max(now)));
        if dt == 0 {
            return;
        }
        for v in &mut self.vnics {
            if v.cfg.shares > 0 {
                let adv = (v.share_rate_bps as u128)
                    .saturating_mul(dt as u128)
                    .saturating_mul(VT_SCALE)
                    / v.cfg.shares as u128;
                v.vtime = v.vtime.saturating_add(adv);
            }
        }
    }

    /// Folds offered bytes into the demand estimates: up at once, down by 3/4 per
    /// window (so a stopped vNIC releases its bandwidth within a few intervals).
    fn update_demand(&mut self, now: Nanos, demand: &[(u32, u64)]) {
        for &(slot, bytes) in demand {
            if let Ok(i) = self.find(slot) {
                let v = &mut self.vnics[i];
                v.pending_bytes = v.pending_bytes.saturating_add(bytes);
            }
        }
        let window = match self.pending_since {
            None => self.cfg.interval.max(1),
            Some(since) => {
                let w = now.saturating_sub(since);
                if w == 0 || w < self.cfg.interval / 2 {
                    return;
                }
                w
            }
        };
        self.pending_since = Some(now);
        for v in &mut self.vnics {
            let inst = v.pending_bytes as u128 * 8 * SEC as u128 / window as u128;
            let inst = u64::try_from(inst).unwrap_or(u64::MAX);
            v.pending_bytes = 0;
            v.demand_bps = if inst >= v.demand_bps {
                inst
            } else {
                ((v.demand_bps as u128 + 3 * inst as u128) / 4) as u64
            };
            if v.demand_bps < IDLE_BPS {
                v.demand_bps = 0;
            }
        }
    }

    fn compute(&mut self) {
        let c = self.capacity_bps;
        let cfg = self.cfg;
        let fp = cfg.floor_permille.min(1000) as u64;
        let drop_mode = self.degraded && self.mode == DegradedMode::DropLowerPriority;
        let by_priority = !(self.degraded && self.mode == DegradedMode::Proportional);
        let interval = cfg.interval.max(1) as u128;

        // Demand per vNIC: the estimate, capped at what its shaper could ever pass.
        for v in &mut self.vnics {
            v.d = match v.cfg.shaping {
                Some(s) => v.demand_bps.min(s.peak_bps.max(s.average_bps)),
                None => v.demand_bps,
            };
            v.res = v.cfg.reservation_bps.min(v.d);
            v.floor = 0;
            v.grant = 0;
            v.headroom = 0;
            v.member = false;
            v.cut = false;
        }

        // 1. Reservations, scaled down together if they do not fit.
        let res_pool = (c as u128 * (1000 - fp) as u128 / 1000) as u64;
        let sum_res: u128 = self.vnics.iter().map(|v| v.res as u128).sum();
        if sum_res > res_pool as u128 {
            for v in &mut self.vnics {
                v.res = (v.res as u128 * res_pool as u128 / sum_res) as u64;
            }
        }
        let used: u64 = self.vnics.iter().map(|v| v.res).sum();
        let mut remaining = c - used;
        for v in &mut self.vnics {
            v.resid = v.d - v.res;
        }

        // Lag bound ([0097]): a vNIC that was idle, or was served all it asked for
        // (not backlogged, as in start-time fair queueing), rejoins at the system
        // virtual time: under-use earns no credit. A vNIC that was held back keeps at
        // most `max_lag_intervals` of its fair share as credit.
        let w_busy: u128 = self
            .vnics
            .iter()
            .filter(|v| v.d > 0)
            .map(|v| v.cfg.shares as u128)
            .sum();
        let lag = (cfg.max_lag_intervals as u128)
            .saturating_mul(c as u128)
            .saturating_mul(interval)
            .saturating_mul(VT_SCALE)
            .checked_div(w_busy)
            .unwrap_or(0);
        for v in &mut self.vnics {
            let min_vt = if v.d == 0 || !v.was_limited {
                self.vsys
            } else {
                self.vsys.saturating_sub(lag)
            };
            v.vtime = v.vtime.max(min_vt);
        }

        let total_resid: u128 = self.vnics.iter().map(|v| v.resid as u128).sum();
        let congested = total_resid > remaining as u128;

        // 2. Floors under congestion, except when shedding lower priorities.
        if congested && !drop_mode && remaining > 0 {
            let w: u128 = self
                .vnics
                .iter()
                .filter(|v| v.resid > 0)
                .map(|v| v.cfg.shares as u128)
                .sum();
            let pool = remaining as u128 * fp as u128 / 1000;
            for v in &mut self.vnics {
                if v.resid == 0 || v.cfg.shares == 0 || w == 0 {
                    continue;
                }
                let f = (pool * v.cfg.shares as u128 / w).max(1) as u64;
                let f = f.min(v.resid).min(remaining);
                v.floor = f;
                v.resid -= f;
                remaining -= f;
            }
        }
        for v in &mut self.vnics {
            v.base = if v.cfg.shares > 0 {
                v.vtime.saturating_add(
                    (v.floor as u128)
                        .saturating_mul(interval)
                        .saturating_mul(VT_SCALE)
                        / v.cfg.shares as u128,
                )
            } else {
                v.vtime
            };
        }

        // 3–4. Priority classes, shares within each class.
        let mut exhausted = false;
        let mut level: Option<u128> = None;
        let classes: &[Option<u8>] = if by_priority { &CLASSES } else { &[None] };
        for &class in classes {
            let mut n = 0usize;
            let mut sum: u128 = 0;
            for v in &mut self.vnics {
                v.member = v.cfg.shares > 0
                    && v.resid > 0
                    && match class {
                        Some(p) => v.cfg.priority.min(MAX_PRIORITY) == p,
                        None => true,
                    };
                if v.member {
                    n += 1;
                    sum += v.resid as u128;
                }
            }
            if n == 0 {
                continue;
            }
            // In a degraded bond shedding lower priorities, a class is also cut when
            // only dust (≤ floor_permille of capacity) is left: serving it would only
            // build queues for it while the higher class is at its limit.
            let dust = (c as u128 * fp as u128 / 1000) as u64;
            if exhausted || remaining == 0 || (drop_mode && congested && remaining <= dust) {
                if drop_mode {
                    for v in self.vnics.iter_mut().filter(|v| v.member) {
                        v.cut = true;
                    }
                    exhausted = true;
                }
                continue;
            }
            if sum <= remaining as u128 {
                for v in self.vnics.iter_mut().filter(|v| v.member) {
                    v.grant = v.resid;
                }
                remaining -= sum as u64;
                continue;
            }
            let l = water_level(&self.vnics, remaining, interval);
            let mut granted = 0u64;
            for v in self.vnics.iter_mut().filter(|v| v.member) {
                v.grant = grant_at(v, l, interval);
                granted += v.grant;
            }
            remaining -= granted.min(remaining);
            level = Some(level.map_or(l, |x: u128| x.max(l)));
            exhausted = true;
        }

        // 5. Shares = 0: what is left, equally (max-min), if nothing was exhausted.
        if !exhausted {
            loop {
                let n = self
                    .vnics
                    .iter()
                    .filter(|v| v.cfg.shares == 0 && v.resid > v.grant)
                    .count() as u64;
                if n == 0 || remaining == 0 {
                    break;
                }
                let each = (remaining / n).max(1);
                let mut given = 0;
                for v in self
                    .vnics
                    .iter_mut()
                    .filter(|v| v.cfg.shares == 0 && v.resid > v.grant)
                {
                    let g = each.min(v.resid - v.grant).min(remaining - given);
                    v.grant += g;
                    given += g;
                }
                remaining -= given;
                if given == 0 {
                    break;
                }
            }
        } else if drop_mode {
            for v in self.vnics.iter_mut() {
                if v.cfg.shares == 0 && v.resid > 0 {
                    v.cut = true;
                }
            }
        }

        // System virtual time: the level of the congested class, or, with no
        // congestion, the furthest busy vNIC (nothing to catch up on).
        let next_vsys = match level {
            Some(l) => l,
            None => self
                .vnics
                .iter()
                .filter(|v| v.d > 0 && v.cfg.shares > 0)
                .map(|v| {
                    v.base.saturating_add(
                        (v.grant as u128)
                            .saturating_mul(interval)
                            .saturating_mul(VT_SCALE)
                            / v.cfg.shares as u128,
                    )
                })
                .max()
                .unwrap_or(self.vsys),
        };
        self.vsys = self.vsys.max(next_vsys);

        // 6. Headroom: the rest, by shares, to every vNIC not being shed.
        if remaining > 0 {
            let w_all: u128 = self
                .vnics
                .iter()
                .filter(|v| !v.cut)
                .map(|v| v.cfg.shares as u128)
                .sum();
            let n_all = self.vnics.iter().filter(|v| !v.cut).count() as u128;
            for v in self.vnics.iter_mut().filter(|v| !v.cut) {
                v.headroom = if w_all > 0 {
                    (remaining as u128 * v.cfg.shares as u128)
                        .checked_div(w_all)
                        .unwrap_or(0) as u64
                } else {
                    (remaining as u128).checked_div(n_all).unwrap_or(0) as u64
                };
            }
        }
    }
}

/// Starvation with hysteresis: set when the vNIC is shed with demand, cleared when
/// shedding is off, or after `hold` without being shed.
fn update_starved(v: &mut VnicState, shedding: bool, hold: Nanos, now: Nanos) {
    if !shedding {
        v.starved = false;
        v.unshed_since = None;
    } else if v.cut && v.demand_bps > 0 {
        v.starved = true;
        v.unshed_since = None;
    } else if v.starved {
        let since = *v.unshed_since.get_or_insert(now);
        if now.saturating_sub(since) >= hold {
            v.starved = false;
            v.unshed_since = None;
        }
    }
}

/// Priority classes, highest first.
const CLASSES: [Option<u8>; MAX_PRIORITY as usize + 1] = {
    let mut c = [None; MAX_PRIORITY as usize + 1];
    let mut i = 0;
    while i <= MAX_PRIORITY as usize {
        c[i] = Some(MAX_PRIORITY - i as u8);
        i += 1;
    }
    c
};

/// What a member is granted if the class's water level is `l`: enough to bring its
/// virtual time from `base` up to `l`, capped at its residual demand.
fn grant_at(v: &VnicState, l: u128, interval: u128) -> u64 {
    let dv = l.saturating_sub(v.base);
    let g = dv.saturating_mul(v.cfg.shares as u128) / (interval * VT_SCALE);
    g.min(v.resid as u128) as u64
}

/// The highest virtual-time level whose grants to the current members fit in
/// `budget` (bisection; the grant sum is monotone in the level).
fn water_level(vnics: &[VnicState], budget: u64, interval: u128) -> u128 {
    let members = || vnics.iter().filter(|v| v.member);
    let lo0 = members().map(|v| v.base).min().unwrap_or(0);
    let min_w = members().map(|v| v.cfg.shares).min().unwrap_or(1).max(1) as u128;
    let span = (budget as u128)
        .saturating_mul(interval)
        .saturating_mul(VT_SCALE)
        / min_w;
    let hi0 = members()
        .map(|v| v.base)
        .max()
        .unwrap_or(0)
        .saturating_add(span)
        .saturating_add(1);
    let fits = |l: u128| {
        let mut s: u128 = 0;
        for v in members() {
            s += grant_at(v, l, interval) as u128;
            if s > budget as u128 {
                return false;
            }
        }
        true
    };
    let (mut lo, mut hi) = (lo0, hi0);
    if fits(hi) {
        return hi;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandwidth::Shaping;
    use proptest::prelude::*;

    const G: u64 = 1_000_000_000;
    const M: u64 = 1_000_000;

    fn bw(shares: u32, priority: u8, reservation_bps: u64) -> VnicBandwidth {
        VnicBandwidth {
            shares,
            priority,
            reservation_bps,
            shaping: None,
        }
    }

    /// Bytes offered in one 1 ms interval at `bps`.
    fn per_ms(bps: u64) -> u64 {
        bps / 8 / 1000
    }

    fn rate(out: &[(u32, Allocation)], slot: u32) -> u64 {
        out.iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, a)| a.rate_bps)
            .unwrap()
    }

    #[test]
    fn control_plane_errors() {
        let mut a = ShareAllocator::new(G, DegradedMode::default());
        assert_eq!(a.add_vnic(1, VnicBandwidth::default()), Ok(()));
        assert_eq!(
            a.add_vnic(1, VnicBandwidth::default()),
            Err(BandwidthError::DuplicateSlot(1))
        );
        assert_eq!(
            a.set_vnic(2, VnicBandwidth::default()),
            Err(BandwidthError::UnknownSlot(2))
        );
        assert_eq!(a.remove_vnic(2), Err(BandwidthError::UnknownSlot(2)));
        assert_eq!(a.remove_vnic(1), Ok(VnicBandwidth::default()));
        assert!(a.is_empty());
    }

    #[test]
    fn output_is_sorted_and_idle_vnics_get_headroom() {
        let mut a = ShareAllocator::new(G, DegradedMode::default());
        for slot in [7, 3, 5] {
            a.add_vnic(slot, bw(1000, 5, 0)).unwrap();
        }
        let mut out = Vec::new();
        a.allocate(0, &[(5, per_ms(100 * M)), (99, 12345)], &mut out);
        let slots: Vec<u32> = out.iter().map(|(s, _)| *s).collect();
        assert_eq!(slots, [3, 5, 7]);
        // Slot 5 gets its 100 Mb/s plus a third of the 900 left; the idle ones a
        // third each, so they can start sending at once.
        assert_eq!(rate(&out, 5), 100 * M + 300 * M);
        assert_eq!(rate(&out, 3), 300 * M);
        assert!(out
            .iter()
            .all(|(_, a)| a.reason_if_limited == LimitReason::NotLimited));
    }

    #[test]
    fn zero_shares_get_only_leftovers() {
        let mut a = ShareAllocator::new(G, DegradedMode::default());
        a.add_vnic(0, bw(0, 5, 0)).unwrap();
        a.add_vnic(1, bw(1000, 5, 0)).unwrap();
        let mut out = Vec::new();
        // Both want 800 Mb/s: the shares-0 vNIC gets what is left after slot 1.
        a.allocate(0, &[(0, per_ms(800 * M)), (1, per_ms(800 * M))], &mut out);
        assert_eq!(rate(&out, 1), 800 * M);
        assert_eq!(rate(&out, 0), 200 * M);
        assert_eq!(out[0].1.reason_if_limited, LimitReason::OverShare);
        // Alone, it gets everything it asks for.
        a.allocate(MS, &[(0, per_ms(800 * M))], &mut out);
        let mut t = 2 * MS;
        for _ in 0..20 {
            a.allocate(t, &[(0, per_ms(800 * M))], &mut out);
            t += MS;
        }
        assert!(rate(&out, 0) >= 800 * M, "{out:?}");
    }

    #[test]
    fn shaping_caps_demand_so_others_get_the_rest() {
        let mut a = ShareAllocator::new(G, DegradedMode::default());
        a.add_vnic(
            0,
            VnicBandwidth {
                shaping: Some(Shaping {
                    average_bps: 50 * M,
                    peak_bps: 100 * M,
                    burst_bytes: 0,
                    peak_period: None,
                }),
                ..bw(1000, 5, 0)
            },
        )
        .unwrap();
        a.add_vnic(1, bw(1000, 5, 0)).unwrap();
        let mut out = Vec::new();
        a.allocate(0, &[(0, per_ms(G)), (1, per_ms(G))], &mut out);
        // Slot 0 can never pass more than its 100 Mb/s peak.
        assert_eq!(rate(&out, 0), 100 * M);
        assert_eq!(rate(&out, 1), 900 * M);
    }

    #[test]
    fn idle_vnic_rejoins_without_old_credit() {
        let mut a = ShareAllocator::new(G, DegradedMode::default());
        a.add_vnic(0, bw(1000, 5, 0)).unwrap();
        a.add_vnic(1, bw(1000, 5, 0)).unwrap();
        let mut out = Vec::new();
        let mut t = 0;
        // Slot 1 alone saturates for a second.
        for _ in 0..1000 {
            a.allocate(t, &[(1, per_ms(2 * G))], &mut out);
            t += MS;
        }
        assert!(rate(&out, 1) >= 990 * M);
        // Slot 0 wakes up saturating: it gets its half from the first interval, not
        // the whole link for the second it was idle.
        for i in 0..10 {
            a.allocate(t, &[(0, per_ms(2 * G)), (1, per_ms(2 * G))], &mut out);
            t += MS;
            let r0 = rate(&out, 0);
            assert!(r0 <= 501 * M, "interval {i}: {r0}");
            assert!(r0 >= 499 * M, "interval {i}: {r0}");
        }
    }

    /// [0097]: a backlogged vNIC holding old credit (here: a virtual time far behind,
    /// as after a long period at its floor) may catch up only by a bounded amount.
    #[test]
    fn credit_of_a_held_back_vnic_is_bounded() {
        let run = |max_lag_intervals: u32| -> Vec<u64> {
            let cfg = AllocatorConfig {
                max_lag_intervals,
                ..AllocatorConfig::default()
            };
            let mut a = ShareAllocator::with_config(G, DegradedMode::default(), cfg);
            a.add_vnic(0, bw(1000, 5, 0)).unwrap();
            a.add_vnic(1, bw(1000, 5, 0)).unwrap();
            let mut out = Vec::new();
            let mut t = 0;
            let d = [(0, per_ms(2 * G)), (1, per_ms(2 * G))];
            for _ in 0..100 {
                a.allocate(t, &d, &mut out);
                t += MS;
            }
            // Slot 0 was held back for a long while: its virtual time lags by what
            // 500 ms at half the link would have earned.
            let behind = 500 * MS as u128 * 500 * M as u128 * VT_SCALE / 1000;
            a.vnics[0].vtime = a.vnics[0].vtime.saturating_sub(behind);
            a.vnics[0].was_limited = true;
            let mut r0 = Vec::new();
            for _ in 0..20 {
                a.allocate(t, &d, &mut out);
                t += MS;
                r0.push(rate(&out, 0));
                // The other one is never locked out.
                assert!(rate(&out, 1) > 0);
            }
            r0
        };
        let bounded = run(2);
        // Extra over the fair 500 Mb/s, summed over intervals, is at most
        // `max_lag_intervals` × fair share (plus rounding).
        let extra: u64 = bounded.iter().map(|r| r.saturating_sub(500 * M)).sum();
        assert!(extra <= 2 * 500 * M + 10 * M, "{bounded:?}");
        assert!(extra >= 500 * M, "credit not used at all: {bounded:?}");
        assert!(
            bounded[10..].iter().all(|&r| r.abs_diff(500 * M) <= M),
            "{bounded:?}"
        );
        // Without the bound the same history monopolises the link for much longer.
        let unbounded = run(u32::MAX);
        assert!(
            unbounded.iter().filter(|&&r| r > 900 * M).count() >= 15,
            "{unbounded:?}"
        );
    }

    #[test]
    fn reservations_scale_down_when_infeasible() {
        let mut a = ShareAllocator::new(G, DegradedMode::default());
        a.add_vnic(0, bw(1000, 5, 800 * M)).unwrap();
        a.add_vnic(1, bw(1000, 5, 800 * M)).unwrap();
        let mut out = Vec::new();
        a.allocate(0, &[(0, per_ms(G)), (1, per_ms(G))], &mut out);
        let (r0, r1) = (rate(&out, 0), rate(&out, 1));
        assert!(r0 + r1 <= G);
        assert!(r0.abs_diff(r1) <= 1, "{r0} {r1}");
        assert!(r0 >= 490 * M);
    }

    #[test]
    fn degraded_drop_mode_keeps_reservation_of_shed_vnic() {
        let mut a = ShareAllocator::new(2 * G, DegradedMode::DropLowerPriority);
        a.add_vnic(0, bw(1000, 9, 0)).unwrap();
        a.add_vnic(1, bw(1000, 1, 100 * M)).unwrap();
        a.set_capacity(G, true, 0);
        let mut out = Vec::new();
        a.allocate(0, &[(0, per_ms(2 * G)), (1, per_ms(2 * G))], &mut out);
        assert_eq!(rate(&out, 1), 100 * M);
        assert_eq!(
            out[1].1.reason_if_limited,
            LimitReason::LowerPriorityDegraded
        );
        assert_eq!(rate(&out, 0), 900 * M);
        // Enough room for both: nobody is shed even though degraded.
        // (The demand estimates fall by 3/4 per interval.)
        for i in 1..=10 {
            a.allocate(
                i * MS,
                &[(0, per_ms(300 * M)), (1, per_ms(300 * M))],
                &mut out,
            );
        }
        assert!(out
            .iter()
            .all(|(_, a)| a.reason_if_limited == LimitReason::NotLimited));
    }

    /// The starved flag of a shed vNIC must not follow the higher class's demand
    /// wobbling around the remaining capacity: it stays set while the bond is
    /// degraded and the vNIC keeps being shed now and then, clears at once on
    /// failback, and clears `starve_hold` after the shedding really stopped.
    #[test]
    fn starved_flag_has_hysteresis() {
        let mut a = ShareAllocator::new(2 * G, DegradedMode::DropLowerPriority);
        a.add_vnic(0, bw(1000, 9, 0)).unwrap();
        a.add_vnic(1, bw(1000, 1, 0)).unwrap();
        let mut out = Vec::new();
        let mut t = 0;
        let mut step = |a: &mut ShareAllocator, hi: u64, lo: u64, t: &mut Nanos| {
            *t += MS;
            a.allocate(*t, &[(0, per_ms(hi)), (1, per_ms(lo))], &mut out);
            out.iter()
                .find(|(s, _)| *s == 1)
                .map(|(_, x)| x.reason_if_limited)
                .unwrap()
        };
        for _ in 0..10 {
            step(&mut a, 900 * M, 900 * M, &mut t);
        }
        assert!(!a.is_starved(1), "not degraded: never starved");
        a.set_capacity(G, true, t);
        // The high class asks for the whole remaining capacity, then every fourth
        // interval for a little less (its estimate dips): the low class is served
        // in those intervals, shed in the others.
        let (mut shed, mut served, mut flips, mut last) = (0, 0, 0, None);
        for i in 0..399 {
            let hi = if i % 4 == 3 { 600 * M } else { 1100 * M };
            match step(&mut a, hi, 900 * M, &mut t) {
                LimitReason::LowerPriorityDegraded => shed += 1,
                _ => served += 1,
            }
            let s = a.is_starved(1);
            if last.is_some_and(|l| l != s) {
                flips += 1;
            }
            last = Some(s);
        }
        assert!(shed > 100 && served > 50, "shed {shed}, served {served}");
        assert_eq!(flips, 0, "the starved flag flipped");
        assert_eq!(last, Some(true));
        // The high class's demand drops for good: starved until `starve_hold` has
        // passed without shedding.
        let hold = a.config().starve_hold;
        // (Its estimate falls by 3/4 per interval: a few more intervals are shed.)
        let mut n = 0;
        while step(&mut a, 100 * M, 900 * M, &mut t) == LimitReason::LowerPriorityDegraded {
            n += 1;
            assert!(n < 10);
        }
        let since = t;
        while t + MS < since + hold {
            step(&mut a, 100 * M, 900 * M, &mut t);
            assert!(
                a.is_starved(1),
                "cleared {} ms early",
                (since + hold - t) / MS
            );
        }
        step(&mut a, 100 * M, 900 * M, &mut t);
        assert!(!a.is_starved(1));
        // Shed again, then failback: cleared at once.
        step(&mut a, 1100 * M, 900 * M, &mut t);
        assert!(a.is_starved(1));
        a.set_capacity(2 * G, false, t);
        step(&mut a, 1100 * M, 900 * M, &mut t);
        assert!(!a.is_starved(1));
    }

    #[test]
    fn short_interval_after_capacity_change_reuses_demand() {
        let mut a = ShareAllocator::new(2 * G, DegradedMode::default());
        a.add_vnic(0, bw(1000, 5, 0)).unwrap();
        let mut out = Vec::new();
        a.allocate(0, &[(0, per_ms(G))], &mut out);
        a.allocate(MS, &[(0, per_ms(G))], &mut out);
        assert_eq!(a.demand_bps(0), Some(G));
        // 10 µs later, after a failure: the few bytes seen meanwhile do not count as
        // a 10 µs demand window.
        a.set_capacity(G / 2, true, MS + 10_000);
        a.allocate(MS + 10_000, &[(0, 3000)], &mut out);
        assert_eq!(a.demand_bps(0), Some(G));
        assert_eq!(rate(&out, 0), G / 2);
        assert_eq!(out[0].1.reason_if_limited, LimitReason::OverShare);
    }

    #[derive(Debug, Clone)]
    struct Case {
        capacity: u64,
        degraded: bool,
        mode: DegradedMode,
        vnics: Vec<(VnicBandwidth, Vec<u64>)>,
    }

    fn case() -> impl Strategy<Value = Case> {
        let shaping = proptest::option::of((1u64..5 * G, 1u64..10 * G, 0u64..10_000_000).prop_map(
            |(average_bps, peak_bps, burst_bytes)| Shaping {
                average_bps,
                peak_bps,
                burst_bytes,
                peak_period: None,
            },
        ));
        let vnic = (
            prop_oneof![Just(0u32), 1u32..10_000, Just(u32::MAX)],
            0u8..=12,
            prop_oneof![Just(0u64), 0u64..2 * G],
            shaping,
            proptest::collection::vec(prop_oneof![Just(0u64), 0u64..2_000_000], 4),
        )
            .prop_map(|(shares, priority, reservation_bps, shaping, demand)| {
                (
                    VnicBandwidth {
                        shares,
                        priority,
                        reservation_bps,
                        shaping,
                    },
                    demand,
                )
            });
        (
            prop_oneof![M..100 * G, Just(M)],
            any::<bool>(),
            prop_oneof![
                Just(DegradedMode::DropLowerPriority),
                Just(DegradedMode::Proportional)
            ],
            proptest::collection::vec(vnic, 1..12),
        )
            .prop_map(|(capacity, degraded, mode, vnics)| Case {
                capacity,
                degraded,
                mode,
                vnics,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Sum ≤ capacity; reservations met when feasible; no starvation.
        #[test]
        fn allocation_invariants(c in case()) {
            let mut a = ShareAllocator::new(c.capacity, c.mode);
            a.set_capacity(c.capacity, c.degraded, 0);
            for (i, (bw, _)) in c.vnics.iter().enumerate() {
                a.add_vnic(i as u32, *bw).unwrap();
            }
            let mut out = Vec::new();
            let mut demand = Vec::new();
            for round in 0..4 {
                demand.clear();
                for (i, (_, d)) in c.vnics.iter().enumerate() {
                    demand.push((i as u32, d[round]));
                }
                a.allocate(round as u64 * MS, &demand, &mut out);
                prop_assert_eq!(out.len(), c.vnics.len());

                let total: u128 = out.iter().map(|(_, x)| x.rate_bps as u128).sum();
                prop_assert!(total <= c.capacity as u128, "{} > {}", total, c.capacity);

                // The demand the allocator works with (estimate, capped by shaping).
                let d = |i: usize| {
                    let e = a.demand_bps(i as u32).unwrap();
                    match c.vnics[i].0.shaping {
                        Some(s) => e.min(s.peak_bps.max(s.average_bps)),
                        None => e,
                    }
                };
                let want_res: u128 = (0..c.vnics.len())
                    .map(|i| c.vnics[i].0.reservation_bps.min(d(i)) as u128)
                    .sum();
                let feasible = want_res * 1000 <= c.capacity as u128 * 980;
                let shedding = c.degraded && c.mode == DegradedMode::DropLowerPriority;
                for (i, (slot, x)) in out.iter().enumerate() {
                    prop_assert_eq!(*slot, i as u32);
                    let (bw, _) = &c.vnics[i];
                    if feasible {
                        prop_assert!(x.rate_bps >= bw.reservation_bps.min(d(i)),
                            "reservation of {} not met: {:?}", i, x);
                    }
                    if bw.shares > 0 && d(i) > 0 && !shedding {
                        prop_assert!(x.rate_bps > 0, "vNIC {} starved", i);
                    }
                    if x.reason_if_limited == LimitReason::LowerPriorityDegraded {
                        prop_assert!(shedding);
                    }
                    if x.rate_bps > 0 {
                        prop_assert!(x.burst_bytes > 0);
                    }
                }
            }
        }

        /// Shares only (one class, no reservations, all saturating): rates are
        /// proportional to shares within rounding and the floors' smoothing.
        #[test]
        fn saturating_vnics_split_by_shares(
            shares in proptest::collection::vec(1u32..10_000, 1..8),
            capacity in 100 * M..40 * G,
        ) {
            let mut a = ShareAllocator::new(capacity, DegradedMode::default());
            for (i, &s) in shares.iter().enumerate() {
                a.add_vnic(i as u32, bw(s, 5, 0)).unwrap();
            }
            let demand: Vec<(u32, u64)> =
                (0..shares.len() as u32).map(|i| (i, per_ms(2 * capacity))).collect();
            let mut out = Vec::new();
            for r in 0..3 {
                a.allocate(r * MS, &demand, &mut out);
            }
            let w: u64 = shares.iter().map(|&s| s as u64).sum();
            for (i, &s) in shares.iter().enumerate() {
                let fair = capacity as u128 * s as u128 / w as u128;
                let got = out[i].1.rate_bps as u128;
                prop_assert!(got.abs_diff(fair) * 1000 <= capacity as u128,
                    "vNIC {} got {} want {}", i, got, fair);
            }
        }
    }
}
