//! State shared between the control thread and the workers, all lock-free.

use std::sync::atomic::AtomicBool;

use crossbeam::queue::ArrayQueue;
use dpdk_sys::Mbuf;

use crate::snapshot::{Published, Snapshot};

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
}

impl Shared {
    /// New shared state around the first snapshot.
    pub fn new(first: Snapshot, queue_len: usize) -> Shared {
        Shared {
            published: Published::new(first),
            quit: AtomicBool::new(false),
            slow_rx: ArrayQueue::new(queue_len.max(16)),
            ctl_tx: ArrayQueue::new(queue_len.max(16)),
        }
    }
}
