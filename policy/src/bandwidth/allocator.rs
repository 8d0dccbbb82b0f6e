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
}

impl Default for AllocatorConfig {
    /// 1 ms interval, 2 ms bursts (at least 9216 bytes), 2 intervals of lag, 2 %
    /// floors.
    fn default() -> Self {
        AllocatorConfig {
            interval: MS,
            burst_time: 2 * MS,
            min_burst_bytes: 9216,
            max_lag_intervals: 2,
            floor_permille: 20,
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
        for v in &mut self.vnics {
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
        let lag = if w_busy > 0 {
            (cfg.max_lag_intervals as u128)
                .saturating_mul(c as u128)
                .saturating_mul(interval)
                .saturating_mul(VT_SCALE)
                / w_busy
        } else {
            0
        };
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
                    && class.map_or(true, |p| v.cfg.priority.min(MAX_PRIORITY) == p);
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
                    (remaining as u128 * v.cfg.shares as u128 / w_all) as u64
                } else {
                    (remaining as u128 / n_all) as u64
                };
            }
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
