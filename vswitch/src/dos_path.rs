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
//! - The control thread sums a vNIC's mirrors over workers ([`DosShared::totals`]),
//!   so several workers may deliver to the same vNIC.
//!
//! # Invariants
//! - Every frame for a protected vNIC is accounted before it is matched, dropped,
//!   policed or held, so mitigation never hides an attack from the detector.
//! - Held frames are delivered in arrival order after the hold time, or at once when
//!   the mitigation no longer asks for a delay; a full delay ring drops (counted).
//! - Workers with an index ≥ [`DOS_WORKERS`] do no DoS accounting (logged once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dpdk_sys::Mbuf;
use parking_lot::Mutex;
use policy::dos::{DosCounters, Mitigation, PacketBudget, SignatureSet};
use policy::time::{Nanos, US};
use policy::wire::Flow;

use crate::delay_ring::{DelayRing, Waiting};

/// Workers that can mirror DoS counters (slots preallocated per vNIC).
pub const DOS_WORKERS: usize = 8;

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

/// What a worker applies to one protected vNIC, built from the configuration.
#[derive(Clone, Debug, Default)]
pub struct VnicDosSettings {
    /// Signature rules checked on every frame for the vNIC.
    pub signatures: Option<Arc<SignatureSet>>,
    /// Bound of the delay queue (frames).
    pub delay_frames: usize,
}

/// DoS words shared between the workers and the control thread.
pub struct DosShared {
    mirrors: Vec<Mirror>,
    mitigation: Vec<AtomicU64>,
    settings: Mutex<Vec<Option<VnicDosSettings>>>,
    generation: AtomicU64,
}

impl DosShared {
    /// Words for `vnics` vNICs, nothing protected.
    pub fn new(vnics: usize) -> DosShared {
        DosShared {
            mirrors: (0..vnics * DOS_WORKERS)
                .map(|_| Mirror::default())
                .collect(),
            mitigation: (0..vnics).map(|_| AtomicU64::new(0)).collect(),
            settings: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Control thread: installs the per-vNIC settings (by vNIC index; `None` =
    /// unprotected); workers pick them up at their next iteration.
    pub fn install(&self, settings: Vec<Option<VnicDosSettings>>) {
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
        let base = vnic as usize * DOS_WORKERS;
        for m in self
            .mirrors
            .get(base..base + DOS_WORKERS)
            .into_iter()
            .flatten()
        {
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
    word: u64,
    mit: Mitigation,
    budget: PacketBudget,
    ring: DelayRing,
    touched: bool,
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
    /// atomic load) when nothing changed; call at the top of an iteration.
    pub fn reload(&mut self, shared: &DosShared, now: Nanos) {
        let g = shared.generation.load(Ordering::Acquire);
        if g == self.generation {
            return;
        }
        self.generation = g;
        if self.worker >= DOS_WORKERS {
            tracing::warn!(
                worker = self.worker,
                "DoS accounting runs on the first {DOS_WORKERS} workers only"
            );
            return;
        }
        let settings = shared.settings.lock().clone();
        for (i, s) in settings.iter().enumerate() {
            if self.vnics.len() <= i {
                self.vnics.resize_with(i + 1, || None);
            }
            match (s, self.vnics[i].as_mut()) {
                (Some(s), Some(v)) => v.sigs = s.signatures.clone(),
                (Some(s), None) => {
                    self.vnics[i] = Some(VnicDos {
                        counters: DosCounters::default(),
                        sigs: s.signatures.clone(),
                        word: 0,
                        mit: Mitigation::NONE,
                        budget: PacketBudget::new(1, 1, now),
                        ring: DelayRing::new(s.delay_frames.max(1)),
                        touched: false,
                    });
                    self.protected.push(i as u32);
                }
                // A vNIC is never unprotected at run time (settings are installed once).
                (None, _) => {}
            }
        }
    }

    /// Accounts a frame arriving for `vnic` and applies its mitigation. *Fast path*:
    /// no allocation, no locks.
    #[inline]
    pub fn inspect(&mut self, vnic: u32, flow: &Flow, m: Mbuf) -> DosVerdict {
        let now = self.now;
        let Some(v) = self.vnics.get_mut(vnic as usize).and_then(|v| v.as_mut()) else {
            return DosVerdict::Deliver(m);
        };
        v.counters.account(flow, m.pkt_len());
        let sig = v.sigs.as_ref().and_then(|s| s.matches(flow, m.data()));
        if let Some(rule) = sig {
            v.counters.record_signature(rule);
        }
        if !v.touched {
            v.touched = true;
            self.touched.push(vnic);
        }
        let verdict = v.mit.verdict(flow, sig);
        if verdict.drop || (verdict.police && !v.budget.admit(now)) {
            return DosVerdict::Dropped;
        }
        if verdict.delay {
            return match v.ring.push(Waiting {
                mbuf: m,
                since: now,
                port: 0,
            }) {
                Ok(()) => DosVerdict::Held,
                Err(w) => {
                    drop(w);
                    DosVerdict::Dropped
                }
            };
        }
        DosVerdict::Deliver(m)
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
            let Some(m) = shared.mirrors.get(vnic as usize * DOS_WORKERS + w) else {
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
    /// longer delays), with its vNIC; oldest first per vNIC.
    #[inline]
    pub fn pop_due(&mut self) -> Option<(u32, Mbuf)> {
        while let Some(&vnic) = self.protected.get(self.cursor) {
            if let Some(v) = self.vnics[vnic as usize].as_mut() {
                let hold = v.mit.delay_hold_us as u64 * US;
                if let Some((_, since)) = v.ring.front() {
                    if hold == 0 || self.now >= since.saturating_add(hold) {
                        return v.ring.pop().map(|w| (vnic, w.mbuf));
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
