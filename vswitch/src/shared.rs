//! State shared between the control thread and the workers, all lock-free.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;
use dpdk_sys::Mbuf;

use crate::snapshot::{Published, Snapshot};

/// The most vNICs a switch carries (per-vNIC shared words are preallocated).
pub const MAX_VNICS: usize = 1024;

/// Room in each worker's mailbox: a port's worth of hand-over messages per worker
/// (one reconfiguration sends at most one message per port per worker).
pub const MAILBOX: usize = 2 * crate::stats::MAX_PORTS;

/// Numbers about one vNIC's bandwidth that cross threads. Each word has one writer.
#[derive(Default)]
pub struct VnicShared {
    /// Bytes the vNIC offered to its uplink (written by the owning worker).
    pub offered_bytes: AtomicU64,
    /// Bytes sent to its uplink (written by the owning worker).
    pub sent_bytes: AtomicU64,
    /// The current [`policy::bandwidth::Allocation`], packed with `to_bits` (written
    /// by the control thread; 0 = not yet allocated, unlimited).
    pub allocation: AtomicU64,
}

/// What the control thread and the workers share.
pub struct Shared {
    /// The current topology (control writes, workers read).
    pub published: Published,
    /// Set once to stop the workers.
    pub quit: AtomicBool,
    /// Slow-protocol frames (LACP, Marker) received on NICs, for the control thread:
    /// (port id, frame). Workers push, the control thread pops.
    pub slow_rx: ArrayQueue<(u16, Mbuf)>,
    /// Frames the control thread wants sent (LACPDUs, gratuitous RARPs): (port id,
    /// frame). The control thread pushes, worker 0 pops and sends them on its own tx
    /// queue, so no tx queue is ever shared.
    pub ctl_tx: ArrayQueue<(u16, Mbuf)>,
    /// Per-vNIC bandwidth words, by vNIC index.
    pub vnic_bw: Vec<VnicShared>,
    /// Bandwidth policy on (`[dataplane] bandwidth`).
    pub bandwidth: bool,
    /// Longest a frame may wait in a vNIC's delay queue, ns.
    pub max_queue_delay: u64,
    /// DoS defence words (counters per worker and vNIC, mitigation per vNIC, the
    /// per-vNIC settings workers reload); see [`crate::dos_path`].
    pub dos: crate::dos_path::DosShared,
    /// One mailbox per worker for queue hand-over at run time (port hot-plug): the
    /// switch pushes, the worker pops at the top of an iteration.
    pub mailbox: Vec<ArrayQueue<crate::worker::WorkerMsg>>,
    /// Messages each worker has carried out (written by the worker only).
    pub done: Vec<AtomicU64>,
    /// Longest load-based sleep a worker may take, ns (`[dataplane]
    /// pmd_sleep_max_us`); 0: workers busy-poll. Read by each worker once per poll
    /// pass, so a change takes effect at once.
    pub pmd_sleep_max_ns: AtomicU64,
}

impl Shared {
    /// New shared state around the first snapshot.
    pub fn new(
        first: Snapshot,
        workers: usize,
        queue_len: usize,
        bandwidth: bool,
        max_queue_delay: u64,
    ) -> Shared {
        Shared {
            published: Published::new(first),
            quit: AtomicBool::new(false),
            slow_rx: ArrayQueue::new(queue_len.max(16)),
            ctl_tx: ArrayQueue::new(queue_len.max(16)),
            vnic_bw: (0..MAX_VNICS).map(|_| VnicShared::default()).collect(),
            bandwidth,
            max_queue_delay,
            dos: crate::dos_path::DosShared::new(MAX_VNICS),
            mailbox: (0..workers).map(|_| ArrayQueue::new(MAILBOX)).collect(),
            done: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            pmd_sleep_max_ns: AtomicU64::new(0),
        }
    }

    /// Sets the workers' longest load-based sleep, µs (`[dataplane]
    /// pmd_sleep_max_us`); each worker reads it at its next poll pass.
    pub fn set_pmd_sleep_max_us(&self, us: u64) {
        self.pmd_sleep_max_ns
            .store(us.saturating_mul(policy::time::US), Ordering::Relaxed);
    }

    /// The workers' longest load-based sleep now, µs (0: they busy-poll).
    pub fn pmd_sleep_max_us(&self) -> u64 {
        self.pmd_sleep_max_ns.load(Ordering::Relaxed) / policy::time::US
    }

    /// Messages worker `w` has carried out so far.
    pub fn done(&self, w: usize) -> u64 {
        self.done[w].load(Ordering::Acquire)
    }
}
