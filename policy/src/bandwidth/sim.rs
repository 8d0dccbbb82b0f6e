//! Simulation harness: vNIC sources → [`VnicGate`]s → an uplink paced to its
//! capacity, with a [`ShareAllocator`] run every interval, over simulated time.
//!
//! Sources offer constant-rate streams of fixed-size frames (open loop, like UDP).
//! Each step (10 µs) the harness: runs the allocator when an interval is due and
//! applies the allocations to the gates; offers each vNIC's queue head(s) then its
//! new frames to its gate; puts sent frames on the uplink FIFO; drains the FIFO at
//! the uplink capacity. Throughput is measured at the uplink output.

use super::*;
use crate::time::{Nanos, MS, SEC, US};
use std::collections::VecDeque;

const STEP: Nanos = 10 * US;
const UNITS_PER_BYTE: u128 = 8 * SEC as u128;

struct Vm {
    slot: u32,
    offered_bps: u64,
    frame: u32,
    credit: u128,
    gate: VnicGate,
    queue: VecDeque<(u32, Nanos)>,
    delivered: u64,
    last_offered: u64,
    /// Bytes the gate sent, per 100 µs bin (only when recording).
    sent_bins: Vec<u64>,
}

struct Sim {
    now: Nanos,
    alloc: ShareAllocator,
    vms: Vec<Vm>,
    uplink: TokenBucket,
    uplink_q: VecDeque<(usize, u32)>,
    uplink_q_bytes: u64,
    uplink_q_limit: u64,
    uplink_drops: u64,
    next_alloc: Nanos,
    out: Vec<(u32, Allocation)>,
    demand: Vec<(u32, u64)>,
    record_bins: bool,
    rr: usize,
}

fn uplink_depth(capacity: u64) -> u64 {
    let b = capacity as u128 * 2 * STEP as u128 / UNITS_PER_BYTE;
    (b as u64).max(9000)
}

impl Sim {
    fn new(capacity: u64, mode: DegradedMode) -> Self {
        Sim {
            now: 0,
            alloc: ShareAllocator::new(capacity, mode),
            vms: Vec::new(),
            uplink: TokenBucket::new(capacity, uplink_depth(capacity)),
            uplink_q: VecDeque::new(),
            uplink_q_bytes: 0,
            uplink_q_limit: 1 << 20,
            uplink_drops: 0,
            next_alloc: 0,
            out: Vec::new(),
            demand: Vec::new(),
            record_bins: false,
            rr: 0,
        }
    }

    fn add(&mut self, bw: VnicBandwidth, offered_bps: u64) -> usize {
        let slot = self.vms.len() as u32;
        self.alloc.add_vnic(slot, bw).unwrap();
        self.vms.push(Vm {
            slot,
            offered_bps,
            frame: 1500,
            credit: 0,
            gate: VnicGate::new(GateConfig::default(), bw.shaping, Allocation::default()),
            queue: VecDeque::new(),
            delivered: 0,
            last_offered: 0,
            sent_bins: Vec::new(),
        });
        self.vms.len() - 1
    }

    fn set_offered(&mut self, vm: usize, bps: u64) {
        self.vms[vm].offered_bps = bps;
    }

    /// A member fails or returns: the uplink pacing and the allocator change at once,
    /// and the control thread reallocates immediately.
    fn set_capacity(&mut self, capacity: u64, degraded: bool) {
        self.uplink
            .set_rate_at(capacity, uplink_depth(capacity), self.now);
        self.alloc.set_capacity(capacity, degraded, self.now);
        self.reallocate();
    }

    fn reallocate(&mut self) {
        self.demand.clear();
        for vm in &mut self.vms {
            let o = vm.gate.counters().offered_bytes;
            self.demand.push((vm.slot, o - vm.last_offered));
            vm.last_offered = o;
        }
        self.alloc.allocate(self.now, &self.demand, &mut self.out);
        for &(slot, a) in &self.out {
            // The data plane would publish `a.to_bits()` through an atomic.
            let a = Allocation::from_bits(a.to_bits());
            self.vms[slot as usize].gate.set_allocation(a);
        }
    }

    fn allocation(&self, vm: usize) -> Allocation {
        self.out[vm].1
    }

    fn push_uplink(&mut self, vm: usize, bytes: u32) {
        if self.uplink_q_bytes + bytes as u64 > self.uplink_q_limit {
            self.uplink_drops += 1;
        } else {
            self.uplink_q_bytes += bytes as u64;
            self.uplink_q.push_back((vm, bytes));
        }
    }

    fn step(&mut self) {
        let now = self.now;
        if now >= self.next_alloc {
            self.reallocate();
            self.next_alloc = now + self.alloc.config().interval;
        }
        let n = self.vms.len();
        self.rr = (self.rr + 1) % n.max(1);
        for k in 0..n {
            let i = (self.rr + k) % n;
            let bin = (now / (100 * US)) as usize;
            // Queue heads first (FIFO per vNIC).
            while let Some(&(bytes, at)) = self.vms[i].queue.front() {
                match self.vms[i].gate.poll_queued(bytes, at, now) {
                    Verdict::Send => {
                        self.vms[i].queue.pop_front();
                        self.record(i, bin, bytes);
                        self.push_uplink(i, bytes);
                    }
                    Verdict::Drop(_) => {
                        self.vms[i].queue.pop_front();
                    }
                    Verdict::Queue => break,
                }
            }
            // New frames from the source.
            let vm = &mut self.vms[i];
            vm.credit += vm.offered_bps as u128 * STEP as u128;
            let frame_units = vm.frame as u128 * UNITS_PER_BYTE;
            while self.vms[i].credit >= frame_units {
                self.vms[i].credit -= frame_units;
                let bytes = self.vms[i].frame;
                match self.vms[i].gate.admit(bytes, now) {
                    Verdict::Send => {
                        self.record(i, bin, bytes);
                        self.push_uplink(i, bytes);
                    }
                    Verdict::Queue => self.vms[i].queue.push_back((bytes, now)),
                    Verdict::Drop(_) => {}
                }
            }
        }
        // The uplink transmits at its capacity.
        while let Some(&(vm, bytes)) = self.uplink_q.front() {
            if !self.uplink.try_consume(bytes as u64, now) {
                break;
            }
            self.uplink_q.pop_front();
            self.uplink_q_bytes -= bytes as u64;
            self.vms[vm].delivered += bytes as u64;
        }
        self.now += STEP;
    }

    fn record(&mut self, vm: usize, bin: usize, bytes: u32) {
        if self.record_bins {
            let bins = &mut self.vms[vm].sent_bins;
            if bins.len() <= bin {
                bins.resize(bin + 1, 0);
            }
            bins[bin] += bytes as u64;
        }
    }

    fn run(&mut self, dur: Nanos) {
        let end = self.now + dur;
        while self.now < end {
            self.step();
        }
    }

    /// Runs `dur` and returns each vNIC's delivered rate in bits per second.
    fn measure(&mut self, dur: Nanos) -> Vec<f64> {
        let before: Vec<u64> = self.vms.iter().map(|v| v.delivered).collect();
        self.run(dur);
        self.vms
            .iter()
            .zip(before)
            .map(|(v, b)| (v.delivered - b) as f64 * 8.0 * SEC as f64 / dur as f64)
            .collect()
    }

    fn drops(&self, vm: usize, r: DropReason) -> u64 {
        self.vms[vm].gate.counters().dropped_units[r.index()]
    }
}

const G: u64 = 1_000_000_000;
const M: u64 = 1_000_000;

fn bw(shares: u32) -> VnicBandwidth {
    VnicBandwidth {
        shares,
        ..VnicBandwidth::default()
    }
}

fn pct(rate: f64, capacity: u64) -> f64 {
    100.0 * rate / capacity as f64
}

fn assert_pct(rates: &[f64], capacity: u64, want: &[f64], tol: f64) {
    for (i, (&r, &w)) in rates.iter().zip(want).enumerate() {
        let p = pct(r, capacity);
        assert!(
            (p - w).abs() <= tol,
            "vNIC {i}: {p:.2} % of capacity, want {w} ± {tol} (all: {:?})",
            rates.iter().map(|&r| pct(r, capacity)).collect::<Vec<_>>()
        );
    }
}

/// Scenarios 1–3 ([0092]–[0095]).
#[test]
fn scenario_1_2_3_proportional_shares_and_work_conservation() {
    let cap = 2 * G;
    let mut sim = Sim::new(cap, DegradedMode::DropLowerPriority);
    let a = sim.add(bw(2000), 2 * G);
    sim.add(bw(2000), 2 * G);
    sim.add(bw(1000), 2 * G);
    sim.run(100 * MS);
    // 1: all three saturating: 40 / 40 / 20 %.
    let r = sim.measure(SEC);
    assert_pct(&r, cap, &[40.0, 40.0, 20.0], 2.0);
    let total: f64 = r.iter().sum();
    assert!(pct(total, cap) > 98.0, "bond not saturated: {total}");

    // 2: the first stops: 0 / 66.7 / 33.3 %.
    sim.set_offered(a, 0);
    sim.run(100 * MS);
    let r = sim.measure(SEC);
    assert_pct(&r, cap, &[0.0, 66.7, 33.3], 2.0);

    // 3: the first uses only 20 % of the bond: 20 / 53.3 / 26.7 %.
    sim.set_offered(a, 400 * M);
    sim.run(100 * MS);
    let r = sim.measure(SEC);
    assert_pct(&r, cap, &[20.0, 53.3, 26.7], 2.0);
    assert_eq!(sim.uplink_drops, 0, "allocations oversubscribed the uplink");
}

/// Scenario 4 ([0116]): entitled to 20 %, using 15 %; one NIC fails; limited to 20 %
/// of what remains, from the very next decision.
#[test]
fn scenario_4_capacity_drop_takes_effect_at_once() {
    let cap = 2 * G;
    let mut sim = Sim::new(cap, DegradedMode::DropLowerPriority);
    let a = sim.add(bw(1000), 300 * M);
    sim.add(bw(4000), 2 * G);
    sim.run(100 * MS);
    let r = sim.measure(500 * MS);
    assert_pct(&r, cap, &[15.0, 85.0], 2.0);
    assert_eq!(sim.drops(a, DropReason::OverShare), 0);

    sim.set_capacity(G, true);
    // The allocation in force right after the failure already fits the new capacity.
    let al = sim.allocation(a);
    assert!(al.rate_bps <= 210 * M, "{al:?}");
    assert_eq!(al.reason_if_limited, LimitReason::OverShare);
    let total: u64 = sim.out.iter().map(|(_, a)| a.rate_bps).sum();
    assert!(total <= G);

    sim.run(50 * MS);
    let r = sim.measure(SEC);
    assert_pct(&r, G, &[20.0, 80.0], 2.0);
    let c = sim.vms[a].gate.counters();
    assert!(c.queued_units > 0);
    assert!(
        sim.drops(a, DropReason::OverShare) + sim.drops(a, DropReason::QueueFull) > 0,
        "a 300 Mb/s source limited to 200 Mb/s must lose frames"
    );
}

fn prio(priority: u8) -> VnicBandwidth {
    VnicBandwidth {
        shares: 1000,
        priority,
        ..VnicBandwidth::default()
    }
}

/// Scenario 5 (claim 30): high and low priority both saturating; one NIC fails; the
/// low one is shed and the high one gets ≥ 95 % of what remains; on failback both
/// are served again.
#[test]
fn scenario_5_degraded_bond_drops_lower_priority() {
    let mut sim = Sim::new(2 * G, DegradedMode::DropLowerPriority);
    let hi = sim.add(prio(10), G);
    let lo = sim.add(prio(0), G);
    sim.run(100 * MS);
    let r = sim.measure(500 * MS);
    assert!(
        r[hi] >= 0.95 * G as f64 && r[lo] >= 0.95 * G as f64,
        "{r:?}"
    );

    sim.set_capacity(G, true);
    assert_eq!(
        sim.allocation(lo).reason_if_limited,
        LimitReason::LowerPriorityDegraded
    );
    sim.run(20 * MS);
    let lpd_before = sim.drops(lo, DropReason::LowerPriorityDegraded);
    let r = sim.measure(SEC);
    assert!(r[hi] >= 0.95 * G as f64, "high got {:.1} %", pct(r[hi], G));
    assert!(r[lo] <= 0.01 * G as f64, "low got {:.1} %", pct(r[lo], G));
    let shed = sim.drops(lo, DropReason::LowerPriorityDegraded) - lpd_before;
    // About 1 Gb/s of 1500-byte frames for 1 s.
    assert!(shed > 80_000, "{shed}");
    assert_eq!(sim.drops(hi, DropReason::LowerPriorityDegraded), 0);

    sim.set_capacity(2 * G, false);
    sim.run(50 * MS);
    let r = sim.measure(500 * MS);
    assert!(
        r[hi] >= 0.95 * G as f64 && r[lo] >= 0.95 * G as f64,
        "{r:?}"
    );
}

/// The same failure in `proportional` mode: nobody is shed, the halved capacity is
/// shared by shares.
#[test]
fn degraded_proportional_mode_shares_the_loss() {
    let mut sim = Sim::new(2 * G, DegradedMode::Proportional);
    let hi = sim.add(prio(10), G);
    let lo = sim.add(prio(0), G);
    sim.run(50 * MS);
    sim.set_capacity(G, true);
    sim.run(50 * MS);
    let r = sim.measure(SEC);
    assert_pct(&r, G, &[50.0, 50.0], 2.0);
    assert_eq!(sim.drops(lo, DropReason::LowerPriorityDegraded), 0);
    assert_eq!(sim.drops(hi, DropReason::LowerPriorityDegraded), 0);
}

/// Not degraded but congested: higher priority first, the lower one keeps its floor.
#[test]
fn congestion_serves_priority_first_without_starving() {
    let cap = 2 * G;
    let mut sim = Sim::new(cap, DegradedMode::DropLowerPriority);
    let hi = sim.add(prio(7), 3 * G);
    let lo = sim.add(prio(3), 3 * G);
    sim.run(50 * MS);
    let r = sim.measure(SEC);
    assert!(pct(r[hi], cap) >= 95.0, "{r:?}");
    assert!(pct(r[lo], cap) >= 0.5, "lower priority starved: {r:?}");
    assert_eq!(sim.drops(lo, DropReason::LowerPriorityDegraded), 0);
}

/// Scenario 6, shaping: average 100 Mb/s, peak 200 Mb/s, burst 1 MB, offered 1 Gb/s.
#[test]
fn scenario_6_shaping_average_peak_burst() {
    let shaping = Shaping {
        average_bps: 100 * M,
        peak_bps: 200 * M,
        burst_bytes: 1_000_000,
        peak_period: None,
    };
    let mut sim = Sim::new(2 * G, DegradedMode::DropLowerPriority);
    let v = sim.add(
        VnicBandwidth {
            shaping: Some(shaping),
            ..bw(1000)
        },
        G,
    );
    sim.record_bins = true;
    let r = sim.measure(10 * SEC);
    let rel = (r[v] - 100e6) / 100e6;
    assert!(rel.abs() <= 0.03, "long-run {:.1} Mb/s", r[v] / 1e6);

    // Sliding 10 ms windows (100 bins of 100 µs) of what the gate sent.
    let bins = &sim.vms[v].sent_bins;
    let mut window: u64 = bins[..100].iter().sum();
    let mut max = window;
    for i in 100..bins.len() {
        window = window + bins[i] - bins[i - 100];
        max = max.max(window);
    }
    let peak_window = 200 * M * 10 * MS / (8 * SEC); // 250 kB
                                                     // Bound: peak × window + peak-bucket depth (1 ms of the peak, 25 kB) + one
                                                     // frame of debt.
    assert!(
        max <= peak_window + 25_000 + 1_500,
        "max 10 ms window {max} B"
    );
    // The burst allowance is really used: some window runs at (nearly) the peak.
    assert!(max >= peak_window * 95 / 100, "max 10 ms window {max} B");
    assert!(sim.drops(v, DropReason::OverShaping) > 0);
}

/// Scenario 6, reservation: 300 Mb/s holds against vNICs with far more shares.
#[test]
fn scenario_6_reservation_holds_under_contention() {
    let cap = 2 * G;
    let mut sim = Sim::new(cap, DegradedMode::DropLowerPriority);
    let r_vm = sim.add(
        VnicBandwidth {
            reservation_bps: 300 * M,
            ..bw(100)
        },
        2 * G,
    );
    sim.add(bw(2000), 2 * G);
    sim.add(bw(2000), 2 * G);
    sim.run(50 * MS);
    let r = sim.measure(SEC);
    // Shares alone would give it 100/4100 ≈ 2.4 %.
    assert!(
        r[r_vm] >= 0.97 * 300e6,
        "reserved vNIC got {:.1} Mb/s",
        r[r_vm] / 1e6
    );
    assert!((r[1] - r[2]).abs() / r[1] < 0.02, "{r:?}");
    let total: f64 = r.iter().sum();
    assert!(pct(total, cap) > 98.0);
}
