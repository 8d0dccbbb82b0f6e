//! Per-port counters kept by the poll loop: packet/byte counts, a bounded table of
//! receive counts per source MAC and per ethertype, the rx timeline, and the latency
//! tracker.
//!
//! Ownership: every structure here belongs to the single poll thread; nothing is
//! shared or atomic. Fast-path methods (`record`, `count`) never allocate: the
//! tables are fixed-size open-addressing arrays sized at start-up, and a key that
//! finds no free slot within a few probes is counted in `other` instead of growing
//! the table. The timeline allocates only when a sample interval ends (once per
//! `--timeline-ms`), never per packet.

use hdrhistogram::Histogram;

/// Packet and byte counters of one port, as the harness saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received.
    pub rx_pkts: u64,
    /// Bytes received (frame lengths).
    pub rx_bytes: u64,
    /// Frames accepted by the PMD for transmission.
    pub tx_pkts: u64,
    /// Bytes accepted by the PMD.
    pub tx_bytes: u64,
    /// Frames the PMD refused (tx ring full); they were freed.
    pub tx_dropped: u64,
    /// Frames not generated because the mempool was empty.
    pub alloc_failed: u64,
}

/// A bounded count table keyed by u64 (a MAC in the low 48 bits, or an ethertype).
#[derive(Debug, Clone)]
pub struct CountTable {
    keys: Box<[u64]>,
    counts: Box<[u64]>,
    mask: usize,
    /// Counts of keys that found no slot.
    pub other: u64,
}

const EMPTY: u64 = u64::MAX;
const PROBES: usize = 8;

impl CountTable {
    /// A table with `slots` slots (rounded up to a power of two).
    pub fn new(slots: usize) -> CountTable {
        let n = slots.max(8).next_power_of_two();
        CountTable {
            keys: vec![EMPTY; n].into(),
            counts: vec![0; n].into(),
            mask: n - 1,
            other: 0,
        }
    }

    /// Adds `n` to `key`'s count. *Fast path*: no allocation.
    #[inline]
    pub fn add(&mut self, key: u64, n: u64) {
        let mut i = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & self.mask;
        for _ in 0..PROBES {
            let k = self.keys[i];
            if k == key {
                self.counts[i] += n;
                return;
            }
            if k == EMPTY {
                self.keys[i] = key;
                self.counts[i] = n;
                return;
            }
            i = (i + 1) & self.mask;
        }
        self.other += n;
    }

    /// The `k` largest entries, largest first (ties by key).
    pub fn top(&self, k: usize) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .keys
            .iter()
            .zip(self.counts.iter())
            .filter(|(k, _)| **k != EMPTY)
            .map(|(k, c)| (*k, *c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }

    /// Sum of counts not in the top `k` (including `other`).
    pub fn rest(&self, k: usize) -> u64 {
        let total: u64 = self.counts.iter().sum::<u64>() + self.other;
        total - self.top(k).iter().map(|e| e.1).sum::<u64>()
    }
}

/// The 48-bit key of a MAC.
#[inline]
pub fn mac_key(b: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    k[2..8].copy_from_slice(&b[..6]);
    u64::from_be_bytes(k)
}

/// Formats a MAC key as `02:00:00:00:00:01`.
pub fn mac_string(k: u64) -> String {
    let b = k.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// What the receive side of a port classifies per frame.
#[derive(Debug, Clone)]
pub struct RxClass {
    /// Frames per source MAC.
    pub by_src_mac: CountTable,
    /// Frames per outer ethertype (the first one after the MACs, so tagged frames
    /// count as 0x8100).
    pub by_ethertype: CountTable,
    /// Frames shorter than an Ethernet header.
    pub runts: u64,
}

impl Default for RxClass {
    fn default() -> Self {
        RxClass {
            by_src_mac: CountTable::new(1024),
            by_ethertype: CountTable::new(64),
            runts: 0,
        }
    }
}

impl RxClass {
    /// Classifies one frame. *Fast path*.
    #[inline]
    pub fn count(&mut self, frame: &[u8]) {
        if frame.len() < 14 {
            self.runts += 1;
            return;
        }
        self.by_src_mac.add(mac_key(&frame[6..12]), 1);
        self.by_ethertype
            .add(u16::from_be_bytes([frame[12], frame[13]]) as u64, 1);
    }
}

/// Receive counts per interval: `[t_ms, rx_pkts_in_interval]`.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Samples so far.
    pub samples: Vec<[u64; 2]>,
    last_rx: u64,
}

impl Timeline {
    /// Records the interval ending at `t_ms` (from the run's start) given the port's
    /// cumulative rx count.
    pub fn sample(&mut self, t_ms: u64, rx_total: u64) {
        self.samples.push([t_ms, rx_total - self.last_rx]);
        self.last_rx = rx_total;
    }
}

/// Round-trip latency, loss and reordering of one latency stream.
///
/// Sequence numbers are assigned at generation, 0, 1, 2, ...; a received stamp
/// whose sequence number is not above the highest seen so far counts as reordered
/// (a duplicate counts too). Loss is `sent - samples` at the end, so it is only
/// meaningful after the in-flight frames were drained.
#[derive(Debug, Clone)]
pub struct LatencyTracker {
    hist: Histogram<u64>,
    hz: u64,
    /// Stamped frames received back.
    pub samples: u64,
    /// Frames received out of order (or twice).
    pub reordered: u64,
    /// Frames whose stamp is in the future (clock trouble); not in the histogram.
    pub bad_stamps: u64,
    next_seq: u64,
}

impl LatencyTracker {
    /// A tracker for a TSC of `hz` ticks per second.
    pub fn new(hz: u64) -> LatencyTracker {
        LatencyTracker {
            // 1 ns .. 100 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("static histogram bounds"),
            hz: hz.max(1),
            samples: 0,
            reordered: 0,
            bad_stamps: 0,
            next_seq: 0,
        }
    }

    /// Records a stamp `(seq, tsc_sent)` received at `tsc_now`. *Fast path*.
    #[inline]
    pub fn record(&mut self, seq: u64, tsc_sent: u64, tsc_now: u64) {
        self.samples += 1;
        if seq < self.next_seq {
            self.reordered += 1;
        } else {
            self.next_seq = seq.saturating_add(1);
        }
        let Some(d) = tsc_now.checked_sub(tsc_sent) else {
            self.bad_stamps += 1;
            return;
        };
        let ns = (d as u128 * 1_000_000_000 / self.hz as u128).min(u64::MAX as u128) as u64;
        self.hist.saturating_record(ns.max(1));
    }

    /// Quantile `q` in microseconds (0 when empty).
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Largest sample in microseconds.
    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }

    /// Smallest sample in microseconds.
    pub fn min_us(&self) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.min() as f64 / 1000.0
        }
    }

    /// Mean in microseconds.
    pub fn mean_us(&self) -> f64 {
        self.hist.mean() / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_table_tops_and_overflows_without_growing() {
        let mut t = CountTable::new(8);
        for k in 0..100u64 {
            t.add(k, k + 1);
        }
        // 8 slots: at most 8 keys held, the rest in other, nothing lost.
        let total: u64 = (1..=100).sum();
        let held: u64 = t.top(100).iter().map(|e| e.1).sum();
        assert!(t.top(100).len() <= 8);
        assert_eq!(held + t.other, total);
        assert_eq!(t.top(3).len(), 3);
        assert!(t.top(3).windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(t.rest(3) + t.top(3).iter().map(|e| e.1).sum::<u64>(), total);
    }

    #[test]
    fn rx_class_counts_macs_and_ethertypes() {
        let mut c = RxClass::default();
        let mut f = [0u8; 60];
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 7]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        for _ in 0..5 {
            c.count(&f);
        }
        c.count(&f[..10]);
        assert_eq!(c.runts, 1);
        let top = c.by_src_mac.top(64);
        assert_eq!(top, vec![(mac_key(&[2, 0, 0, 0, 0, 7]), 5)]);
        assert_eq!(mac_string(top[0].0), "02:00:00:00:00:07");
        assert_eq!(c.by_ethertype.top(16), vec![(0x0806, 5)]);
    }

    #[test]
    fn timeline_records_deltas() {
        let mut t = Timeline::default();
        t.sample(100, 10);
        t.sample(200, 25);
        t.sample(300, 25);
        assert_eq!(t.samples, vec![[100, 10], [200, 15], [300, 0]]);
    }

    #[test]
    fn latency_quantiles_reorder_and_clock_trouble() {
        let hz = 2_000_000_000; // 2 GHz: 2000 ticks = 1 µs
        let mut l = LatencyTracker::new(hz);
        for seq in 0..1000u64 {
            l.record(seq, 0, (seq % 100 + 1) * 2000);
        }
        assert_eq!(l.samples, 1000);
        assert_eq!(l.reordered, 0);
        assert!(
            (l.quantile_us(0.5) - 50.0).abs() < 0.1,
            "{}",
            l.quantile_us(0.5)
        );
        assert!((l.max_us() - 100.0).abs() < 0.1);
        l.record(5, 0, 2000);
        assert_eq!(l.reordered, 1);
        l.record(2000, 10, 5);
        assert_eq!(l.bad_stamps, 1);
        assert_eq!(l.samples, 1002);
    }
}
