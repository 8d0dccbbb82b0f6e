//! DoS defence on the NIC → vNIC delivery path (worker side), and the words it
//! shares with the control thread.
//!
//! Implements the data-plane half of specification paragraphs \[0125\]–\[0131\]
//! (claims 40–48 as filed); the decisions themselves are `policy::dos`.
//!
//! # Ownership
//! - A worker owns one [`DosPath`]: per destination vNIC it delivers to, the
//!   cumulative [`DosCounters`] (accounted on arrival, before mitigation), a
//!   [`PacketBudget`] for rate limiting and a bounded [`DelayRing`] of held frames.
//!   Nothing in it is touched by another thread; no locks, no allocation per frame.
//! - [`DosShared`] (inside [`crate::shared::Shared`]) holds, per (worker, vNIC), the
//!   counters mirrored once per poll iteration for vNICs that received frames
//!   (single writer: that worker); per vNIC the packed [`Mitigation`] word (single
//!   writer: the control thread); and the per-vNIC [`VnicDosSettings`] (signatures,
//!   delay-queue bound) behind a mutex that only the control thread writes, once,
//!   and workers read only when its generation moves (a quiescent point at the top
//!   of an iteration), like a snapshot reload.
//! - The mirror table is sized for the configured number of workers and every vNIC
//!   slot, and published with the first settings (an `ArcSwap`): each worker takes
//!   its own `Arc` of it at the reload, so mirroring is a plain index into memory it
//!   holds, and every worker, however many, is accounted. Worker `w`'s mirrors are
//!   contiguous (no false sharing between workers but at the block edges). Later
//!   installs (live reconfigurations) keep it: a detector carried over a
//!   reconfiguration must see its vNIC's counters go on rising, not fall to zero and
//!   jump back, which it would read as a flood.
//! - The control thread sums a vNIC's mirrors over workers ([`DosShared::totals`]),
//!   so several workers may deliver to the same vNIC.
//!
//! # Invariants
//! - Every frame for a protected vNIC is accounted before it is matched, dropped,
//!   policed or held, so mitigation never hides an attack from the detector.
//! - Held frames are delivered in arrival order after the hold time, or at once when
//!   the mitigation no longer asks for a delay; a full delay ring drops (counted).
//!   A held frame goes only to the vNIC it was held for: when the vNIC's protection
//!   is removed or its slot changes hands in a reconfiguration, or the vNIC is gone
//!   when the frame is due, the frame is dropped and counted (`dos`, on the port it
//!   was held for).
//! - Each install sets every vNIC's mitigation word (the carried-over detector's
//!   mitigation, or none), so no mitigation outlives the configuration it was
//!   decided under.
//! - Every worker is accounted; a worker whose index is beyond the table it was
//!   given (the table was installed for fewer workers than run) still applies
//!   mitigation but cannot mirror its counters, which is logged once at the reload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use dpdk_sys::Mbuf;
use parking_lot::Mutex;
use policy::dos::{DosCounters, Mitigation, PacketBudget, SignatureSet};
use policy::time::{Nanos, US};
use policy::wire::Flow;

use crate::delay_ring::{DelayRing, Waiting};

/// One worker's counters for one vNIC, as the control thread reads them.
#[derive(Default)]
struct Mirror {
    pkts: AtomicU64,
    bytes: AtomicU64,
    syn: AtomicU64,
    syn_ack_or_ack: AtomicU64,
    syn_resolved: AtomicU64,
    sig_hits: AtomicU64,
    last_sig_rule: AtomicU64,
}

/// The mirrors of every (worker, vNIC), worker-major.
struct MirrorTable {
    workers: usize,
    vnics: usize,
    slots: Box<[Mirror]>,
}

impl MirrorTable {
    fn new(workers: usize, vnics: usize) -> MirrorTable {
        MirrorTable {
            workers,
            vnics,
            slots: (0..workers.saturating_mul(vnics))
                .map(|_| Mirror::default())
                .collect(),
        }
    }

    #[inline]
    fn get(&self, worker: usize, vnic: usize) -> Option<&Mirror> {
        if worker < self.workers && vnic < self.vnics {
            self.slots.get(worker * self.vnics + vnic)
        } else {
            None
        }
    }
}

/// What a worker applies to one protected vNIC, built from the configuration.
#[derive(Clone, Debug, Default)]
pub struct VnicDosSettings {
    /// Signature rules checked on every frame for the vNIC.
    pub signatures: Option<Arc<SignatureSet>>,
    /// Bound of the delay queue (frames).
    pub delay_frames: usize,
    /// The vNIC's name: a slot whose owner changes starts afresh.
    pub owner: Arc<str>,
}

/// DoS words shared between the workers and the control thread.
pub struct DosShared {
    mirrors: ArcSwapOption<MirrorTable>,
    mitigation: Vec<AtomicU64>,
    settings: Mutex<Vec<Option<VnicDosSettings>>>,
    generation: AtomicU64,
}

impl DosShared {
    /// Words for `vnics` vNICs, nothing protected.
    pub fn new(vnics: usize) -> DosShared {
        DosShared {
            mirrors: ArcSwapOption::empty(),
            mitigation: (0..vnics).map(|_| AtomicU64::new(0)).collect(),
            settings: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Control thread: installs the per-vNIC settings (by vNIC index; `None` =
    /// unprotected) and mitigations (by vNIC index; missing = none; every other word
    /// is cleared), and the mirror table for `workers` workers (the configured worker
    /// count) unless one for as many is in place; workers pick them up at their next
    /// iteration.
    pub fn install(
        &self,
        settings: Vec<Option<VnicDosSettings>>,
        mitigations: &[Mitigation],
        workers: usize,
    ) {
        let workers = workers.max(1);
        if self
            .mirrors
            .load()
            .as_ref()
            .is_none_or(|t| t.workers != workers)
        {
            self.mirrors.store(Some(Arc::new(MirrorTable::new(
                workers,
                self.mitigation.len(),
            ))));
        }
        for (i, w) in self.mitigation.iter().enumerate() {
            let m = mitigations.get(i).copied().unwrap_or(Mitigation::NONE);
            w.store(m.pack(), Ordering::Relaxed);
        }
        *self.settings.lock() = settings;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Control thread: publishes the mitigation of `vnic`.
    pub fn set_mitigation(&self, vnic: u32, m: Mitigation) {
        if let Some(w) = self.mitigation.get(vnic as usize) {
            w.store(m.pack(), Ordering::Relaxed);
        }
    }

    /// Control thread: `vnic`'s cumulative counters summed over workers (the private
    /// SYN table stays empty; `last_sig_rule` is the largest worker's latest).
    pub fn totals(&self, vnic: u32) -> DosCounters {
        let mut c = DosCounters::default();
        let table = self.mirrors.load();
        let Some(t) = table.as_ref() else {
            return c;
        };
        for m in (0..t.workers).filter_map(|w| t.get(w, vnic as usize)) {
            c.pkts += m.pkts.load(Ordering::Relaxed);
            c.bytes += m.bytes.load(Ordering::Relaxed);
            c.syn += m.syn.load(Ordering::Relaxed);
            c.syn_ack_or_ack += m.syn_ack_or_ack.load(Ordering::Relaxed);
            c.syn_resolved += m.syn_resolved.load(Ordering::Relaxed);
            let hits = m.sig_hits.load(Ordering::Relaxed);
            if hits > 0 {
                c.last_sig_rule = m.last_sig_rule.load(Ordering::Relaxed) as u16;
            }
            c.sig_hits += hits;
        }
        c
    }
}

/// The state of one protected vNIC in one worker.
struct VnicDos {
    counters: DosCounters,
    sigs: Option<Arc<SignatureSet>>,
    owner: Arc<str>,
    delay_frames: usize,
    word: u64,
    mit: Mitigation,
    budget: PacketBudget,
    ring: DelayRing,
    touched: bool,
}

/// What a vNIC's mitigation does with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Deliver,
    Drop,
    Hold,
}

/// What to do with a frame after [`DosPath::inspect`].
pub enum DosVerdict {
    /// Deliver it now.
    Deliver(Mbuf),
    /// It was dropped (count it as a DoS drop on the vNIC's port).
    Dropped,
    /// It is held in the vNIC's delay ring.
    Held,
}

/// A worker's DoS state; see the module documentation.
#[derive(Default)]
pub struct DosPath {
    worker: usize,
    generation: u64,
    mirrors: Option<Arc<MirrorTable>>,
    vnics: Vec<Option<VnicDos>>,
    protected: Vec<u32>,
    touched: Vec<u32>,
    now: Nanos,
    cursor: usize,
}

impl DosPath {
    /// The DoS state of worker `worker`, protecting nothing until settings arrive.
    pub fn new(worker: usize) -> DosPath {
        DosPath {
            worker,
            ..DosPath::default()
        }
    }

    /// True when at least one vNIC is protected (otherwise skip all of this).
    #[inline]
    pub fn enabled(&self) -> bool {
        !self.protected.is_empty()
    }

    /// Reloads the settings when the control thread installed new ones. Cheap (one
    /// atomic load) when nothing changed; call at the top of an iteration. Frames
    /// held for a vNIC that is no longer protected, or whose slot changed owner or
    /// delay bound, are handed to `lost` (vNIC index, frame) to be freed and counted.
    pub fn reload(&mut self, shared: &DosShared, now: Nanos, mut lost: impl FnMut(u32, Waiting)) {
        let g = shared.generation.load(Ordering::Acquire);
        if g == self.generation {
            return;
        }
        self.generation = g;
        let settings = shared.settings.lock().clone();
        self.mirrors = shared.mirrors.load_full();
        if let Some(t) = self.mirrors.as_ref().filter(|t| self.worker >= t.workers) {
            tracing::warn!(
                worker = self.worker,
                workers = t.workers,
                "DoS counters installed for fewer workers than run; this worker's are not mirrored"
            );
        }
        if self.vnics.len() < settings.len() {
            self.vnics.resize_with(settings.len(), || None);
        }
        for i in 0..self.vnics.len() {
            let s = settings.get(i).and_then(|s| s.as_ref());
            let delay_frames = s.map_or(1, |s| s.delay_frames.max(1));
            match (s, self.vnics[i].as_mut()) {
                (Some(s), Some(v)) => {
                    if v.owner != s.owner || v.delay_frames != delay_frames {
                        while let Some(w) = v.ring.pop() {
                            lost(i as u32, w);
                        }
                        v.ring = DelayRing::new(delay_frames);
                        v.delay_frames = delay_frames;
                        v.owner = s.owner.clone();
                    }
                    v.sigs = s.signatures.clone();
                }
                (Some(s), None) => {
                    self.vnics[i] = Some(VnicDos {
                        counters: DosCounters::default(),
                        sigs: s.signatures.clone(),
                        owner: s.owner.clone(),
                        delay_frames,
                        word: 0,
                        mit: Mitigation::NONE,
                        budget: PacketBudget::new(1, 1, now),
                        ring: DelayRing::new(delay_frames),
                        touched: false,
                    });
                    self.protected.push(i as u32);
                }
                (None, Some(v)) => {
                    while let Some(w) = v.ring.pop() {
                        lost(i as u32, w);
                    }
                    // Its counters go with it; the mirror keeps the last value, which a
                    // detector of the slot's next protected owner takes as its start.
                    self.vnics[i] = None;
                    self.protected.retain(|&p| p != i as u32);
                }
                (None, None) => {}
            }
        }
    }

    /// Accounts a frame arriving for `vnic` (vNIC port `port`) and applies its
    /// mitigation. *Fast path*: no allocation, no locks.
    #[inline]
    pub fn inspect(&mut self, vnic: u32, port: u16, flow: &Flow, m: Mbuf) -> DosVerdict {
        match self.account(vnic, flow, m.pkt_len(), m.data()) {
            Action::Deliver => DosVerdict::Deliver(m),
            Action::Drop => DosVerdict::Dropped,
            Action::Hold => {
                let now = self.now;
                let Some(v) = self.vnics.get_mut(vnic as usize).and_then(|v| v.as_mut()) else {
                    return DosVerdict::Deliver(m);
                };
                match v.ring.push(Waiting {
                    mbuf: m,
                    since: now,
                    port,
                }) {
                    Ok(()) => DosVerdict::Held,
                    Err(w) => {
                        drop(w);
                        DosVerdict::Dropped
                    }
                }
            }
        }
    }

    /// Accounts a frame for `vnic` that arrived where the vNIC is not (its VM was
    /// failed over to another uplink, [0128]): the attack on the old connection stays
    /// visible, so the failover lasts as long as the attack. Returns true when the
    /// vNIC's mitigation is on (the caller drops the frame either way). *Fast path*.
    #[inline]
    pub fn account_elsewhere(&mut self, vnic: u32, flow: &Flow, m: &Mbuf) -> bool {
        !matches!(
            self.account(vnic, flow, m.pkt_len(), m.data()),
            Action::Deliver
        )
    }

    /// The frame-independent part of [`inspect`](Self::inspect): accounts a frame of
    /// `len` bytes (`data`: its first segment) for `vnic` and decides what its
    /// mitigation does with it. *Fast path*.
    #[inline]
    fn account(&mut self, vnic: u32, flow: &Flow, len: u32, data: &[u8]) -> Action {
        let now = self.now;
        let Some(v) = self.vnics.get_mut(vnic as usize).and_then(|v| v.as_mut()) else {
            return Action::Deliver;
        };
        v.counters.account(flow, len);
        let sig = v.sigs.as_ref().and_then(|s| s.matches(flow, data));
        if let Some(rule) = sig {
            v.counters.record_signature(rule);
        }
        if !v.touched {
            v.touched = true;
            self.touched.push(vnic);
        }
        let verdict = v.mit.verdict(flow, sig);
        if verdict.drop || (verdict.police && !v.budget.admit(now)) {
            Action::Drop
        } else if verdict.delay {
            Action::Hold
        } else {
            Action::Deliver
        }
    }

    /// Once per iteration: takes the time, mirrors the counters of vNICs that received
    /// frames and takes in new mitigation words. Then call [`pop_due`](Self::pop_due)
    /// until it returns `None`.
    pub fn poll(&mut self, shared: &DosShared, now: Nanos) {
        self.now = now;
        self.cursor = 0;
        let w = self.worker;
        for &vnic in &self.touched {
            let Some(v) = self.vnics[vnic as usize].as_mut() else {
                continue;
            };
            v.touched = false;
            let Some(m) = self.mirrors.as_ref().and_then(|t| t.get(w, vnic as usize)) else {
                continue;
            };
            let c = &v.counters;
            m.pkts.store(c.pkts, Ordering::Relaxed);
            m.bytes.store(c.bytes, Ordering::Relaxed);
            m.syn.store(c.syn, Ordering::Relaxed);
            m.syn_ack_or_ack.store(c.syn_ack_or_ack, Ordering::Relaxed);
            m.syn_resolved.store(c.syn_resolved, Ordering::Relaxed);
            m.last_sig_rule
                .store(c.last_sig_rule as u64, Ordering::Relaxed);
            m.sig_hits.store(c.sig_hits, Ordering::Relaxed);
        }
        self.touched.clear();
        for &vnic in &self.protected {
            let Some(v) = self.vnics[vnic as usize].as_mut() else {
                continue;
            };
            let word = shared
                .mitigation
                .get(vnic as usize)
                .map_or(0, |a| a.load(Ordering::Relaxed));
            if word != v.word {
                let new = Mitigation::unpack(word);
                if new.rate_limit_pps != v.mit.rate_limit_pps && new.rate_limit_pps > 0 {
                    // Room for 1 ms of frames, at least one burst.
                    let pps = new.rate_limit_pps as u64;
                    v.budget = PacketBudget::new(pps, (pps / 1000).max(32), now);
                }
                v.word = word;
                v.mit = new;
            }
        }
    }

    /// The next held frame that is due (its hold time passed, or the mitigation no
    /// longer delays), with its vNIC and the vNIC's name (deliver it only to a vNIC
    /// of that name); oldest first per vNIC. `Waiting::port` is the vNIC's port when
    /// the frame was held.
    #[inline]
    pub fn pop_due(&mut self) -> Option<(u32, &str, Waiting)> {
        while let Some(&vnic) = self.protected.get(self.cursor) {
            if let Some(v) = self.vnics[vnic as usize].as_mut() {
                let hold = v.mit.delay_hold_us as u64 * US;
                if let Some((_, since)) = v.ring.front() {
                    if hold == 0 || self.now >= since.saturating_add(hold) {
                        let v = self.vnics[vnic as usize].as_mut()?;
                        return v.ring.pop().map(|w| (vnic, &*v.owner, w));
                    }
                }
            }
            self.cursor += 1;
        }
        None
    }

    /// Frames held now (all vNICs).
    pub fn held(&self) -> usize {
        self.vnics.iter().flatten().map(|v| v.ring.len()).sum()
    }

    /// Frees every held frame (worker exit).
    pub fn free_all(&mut self) {
        for v in self.vnics.iter_mut().flatten() {
            while let Some(w) = v.ring.pop() {
                drop(w.mbuf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 60-byte UDP/IPv4 frame to `dst`.
    fn udp_frame() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&46u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f[38..40].copy_from_slice(&26u16.to_be_bytes());
        f
    }

    /// Every worker's frames reach the control thread's totals, however many workers
    /// run (the table used to stop at 8): here 12 workers deliver to the same vNIC.
    #[test]
    fn every_worker_is_accounted() {
        const WORKERS: usize = 12;
        let shared = DosShared::new(4);
        let protected = VnicDosSettings {
            signatures: None,
            delay_frames: 4,
            owner: "vm.0".into(),
        };
        shared.install(vec![None, None, Some(protected), None], &[], WORKERS);
        let frame = udp_frame();
        let flow = Flow::parse(&frame).unwrap();
        let mut paths: Vec<DosPath> = (0..WORKERS).map(DosPath::new).collect();
        for (w, p) in paths.iter_mut().enumerate() {
            p.reload(&shared, 0, |_, _| panic!("nothing is held"));
            assert!(p.enabled(), "worker {w} protects nothing");
            for _ in 0..=w {
                assert_eq!(p.account(2, &flow, 60, &frame), Action::Deliver);
            }
            // Unprotected vNICs are not accounted.
            assert_eq!(p.account(1, &flow, 60, &frame), Action::Deliver);
            p.poll(&shared, 1);
        }
        let frames: u64 = (1..=WORKERS as u64).sum();
        let t = shared.totals(2);
        assert_eq!((t.pkts, t.bytes), (frames, frames * 60));
        assert_eq!(shared.totals(1).pkts, 0);
        assert_eq!(shared.totals(99).pkts, 0, "an unknown vNIC has no counters");
        // Mirrors hold cumulative counts: a second poll without frames changes
        // nothing, more frames on the last worker add up.
        paths[WORKERS - 1].poll(&shared, 2);
        assert_eq!(shared.totals(2).pkts, frames);
        paths[WORKERS - 1].account(2, &flow, 60, &frame);
        paths[WORKERS - 1].poll(&shared, 3);
        assert_eq!(shared.totals(2).pkts, frames + 1);
    }

    /// A worker beyond the installed table still applies mitigation and does not
    /// disturb the others' counters.
    #[test]
    fn a_worker_beyond_the_table_mirrors_nothing() {
        let shared = DosShared::new(2);
        shared.install(vec![Some(VnicDosSettings::default()), None], &[], 1);
        let frame = udp_frame();
        let flow = Flow::parse(&frame).unwrap();
        let mut p = DosPath::new(3);
        p.reload(&shared, 0, |_, _| panic!("nothing is held"));
        shared.set_mitigation(
            0,
            Mitigation {
                rate_flood: true,
                delay_hold_us: 1000,
                ..Mitigation::NONE
            },
        );
        p.poll(&shared, 1);
        assert_eq!(p.account(0, &flow, 60, &frame), Action::Hold);
        p.poll(&shared, 2);
        assert_eq!(shared.totals(0).pkts, 0);
    }

    /// A reinstall (a live reconfiguration) keeps the counters: a detector carried over
    /// must see them go on rising. A fresh table used to show zero until the next
    /// frame, then the whole count at once, which the detector read as a flood.
    #[test]
    fn counters_survive_a_reinstall() {
        let shared = DosShared::new(4);
        let s = |owner: &str| VnicDosSettings {
            owner: owner.into(),
            ..VnicDosSettings::default()
        };
        shared.install(vec![Some(s("a.0")), None], &[], 1);
        let frame = udp_frame();
        let flow = Flow::parse(&frame).unwrap();
        let mut p = DosPath::new(0);
        p.reload(&shared, 0, |_, _| panic!("nothing is held"));
        for _ in 0..100 {
            p.account(0, &flow, 60, &frame);
        }
        p.poll(&shared, 1);
        assert_eq!(shared.totals(0).pkts, 100);
        // One more vNIC, the first unchanged.
        shared.install(vec![Some(s("a.0")), None, Some(s("b.0"))], &[], 1);
        assert_eq!(
            shared.totals(0).pkts,
            100,
            "the reinstall lost the counters"
        );
        p.reload(&shared, 2, |_, _| panic!("nothing is held"));
        p.account(0, &flow, 60, &frame);
        p.poll(&shared, 3);
        assert_eq!(shared.totals(0).pkts, 101);
        assert!(p.enabled());
        // Protection removed from every vNIC: nothing left to inspect.
        shared.install(vec![None, None, None], &[], 1);
        p.reload(&shared, 4, |_, _| panic!("nothing is held"));
        assert!(!p.enabled(), "a vNIC stayed protected");
        assert_eq!(p.account(0, &flow, 60, &frame), Action::Deliver);
    }

    /// Every install sets every mitigation word: what it is given, none elsewhere. A
    /// mitigation decided under settings that were replaced used to stay in force.
    #[test]
    fn an_install_replaces_every_mitigation() {
        let shared = DosShared::new(4);
        let limit = Mitigation {
            rate_flood: true,
            rate_limit_pps: 100,
            ..Mitigation::NONE
        };
        shared.install(vec![Some(VnicDosSettings::default()); 3], &[], 1);
        for v in 0..4 {
            shared.set_mitigation(v, limit);
        }
        shared.install(
            vec![Some(VnicDosSettings::default()); 3],
            &[Mitigation::NONE, limit],
            1,
        );
        let words: Vec<u64> = shared
            .mitigation
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        assert_eq!(words, [0, limit.pack(), 0, 0]);
    }
}
