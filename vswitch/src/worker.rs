//! The polling worker: one pinned thread per configured core.
//!
//! # Ownership
//! A worker owns: its rx queue tokens (each rx queue has exactly one owner, spread
//! over workers like Open vSwitch's `pmd-rxq-assign`), its own tx queue on every
//! port (queue index = worker index, so no tx queue is ever shared), one tx buffer
//! per port, its [`WorkerStats`], and an `Arc` of the current [`Snapshot`]. It reads
//! shared state only through the snapshot generation counter, the quit flag and the
//! control thread's handoff queues (lock-free `ArrayQueue`s).
//!
//! # Life of a frame
//! `rx_burst` → parse ([`Flow::parse`], no copy) → decide by the receiving port's
//! role (vNIC: spoof check, local VM delivery or uplink member selection; NIC:
//! slow-protocol handoff, standby check, destination-MAC lookup) → push onto the
//! destination port's tx buffer (floods take extra mbuf references, no copies) →
//! buffers are flushed with `tx_burst` when full and at the end of every iteration.
//! Frames that cannot be sent are freed and counted by reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use dpdk_sys::{Burst, Mbuf, RxQueue, TxQueue};
use policy::wire::Flow;

use crate::shared::Shared;
use crate::snapshot::{PortRole, Snapshot};
use crate::stats::{bump, DropReason, WorkerStats, MAX_PORTS};
use policy::bond::SelectCtx;

/// Frames per rx burst.
pub const RX_BURST: usize = 32;
/// Frames buffered per destination port before a flush.
pub const TX_BURST: usize = 64;

/// A worker's assignment, built by the switch at start and on reconfiguration.
pub struct WorkerQueues {
    /// Rx queues this worker polls.
    pub rx: Vec<RxQueue>,
    /// This worker's tx queue on each port, by port id.
    pub tx: Vec<Option<TxQueue>>,
}

/// One polling worker.
pub struct Worker {
    index: usize,
    queues: WorkerQueues,
    txbufs: Vec<Burst<TX_BURST>>,
    pending: u64,
    stats: Arc<WorkerStats>,
    shared: Arc<Shared>,
    select: SelectCtx,
}

impl Worker {
    /// A worker with its queues; it starts with the current snapshot.
    pub fn new(
        index: usize,
        queues: WorkerQueues,
        stats: Arc<WorkerStats>,
        shared: Arc<Shared>,
    ) -> Worker {
        Worker {
            index,
            queues,
            txbufs: (0..MAX_PORTS).map(|_| Burst::new()).collect(),
            pending: 0,
            stats,
            shared,
            select: SelectCtx::default(),
        }
    }

    /// Polls until the switch's quit flag is set, then frees every buffered frame.
    pub fn run(mut self) -> WorkerQueues {
        let tsc = dpdk_sys::eal::rdtsc;
        let mut rx: Burst<RX_BURST> = Burst::new();
        let mut iterations = 0u64;
        let mut last = tsc();
        let (mut busy_cycles, mut idle_cycles, mut busy_iters) = (0u64, 0u64, 0u64);
        // The worker's own reference to the topology; replaced only at this quiescent
        // point at the top of an iteration, when the generation moved.
        let mut snap = self.shared.published.load();
        self.stats
            .generation
            .store(snap.generation, Ordering::Relaxed);
        loop {
            iterations += 1;
            if self.shared.published.generation() != snap.generation {
                snap = self.shared.published.load();
                self.stats
                    .generation
                    .store(snap.generation, Ordering::Relaxed);
            }
            let mut got = 0;
            for qi in 0..self.queues.rx.len() {
                let n = self.queues.rx[qi].rx_burst(&mut rx);
                if n > 0 {
                    got += n;
                    let port = self.queues.rx[qi].port();
                    self.process(&snap, port, &mut rx);
                }
            }
            if self.index == 0 {
                self.drain_control_tx();
            }
            self.flush_all();
            let now = tsc();
            if got > 0 {
                busy_cycles += now - last;
                busy_iters += 1;
            } else {
                idle_cycles += now - last;
            }
            last = now;
            if iterations & 0x3ff == 0 {
                let s = &self.stats;
                bump(&s.iterations, 0x400);
                s.busy_iterations.store(busy_iters, Ordering::Relaxed);
                s.busy_cycles.store(busy_cycles, Ordering::Relaxed);
                s.idle_cycles.store(idle_cycles, Ordering::Relaxed);
                if self.shared.quit.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        for b in &mut self.txbufs {
            b.free_all();
        }
        self.queues
    }

    /// Switches one received burst from `port`.
    fn process(&mut self, snap: &Snapshot, port: u16, rx: &mut Burst<RX_BURST>) {
        let counters = &self.stats.ports[port as usize];
        let mut bytes = 0u64;
        for m in rx.as_slice() {
            bytes += m.pkt_len() as u64;
        }
        bump(&counters.rx_pkts, rx.len() as u64);
        bump(&counters.rx_bytes, bytes);
        let role = match snap.ports.get(port as usize).and_then(|p| p.as_ref()) {
            Some(p) => p.role,
            None => {
                for _ in 0..rx.len() {
                    counters.drop_one(DropReason::UnknownPort);
                }
                rx.free_all();
                return;
            }
        };
        for m in rx.drain() {
            let flow = match Flow::parse(m.data()) {
                Ok(f) => f,
                Err(_) => {
                    self.stats.ports[port as usize].drop_one(DropReason::Runt);
                    continue;
                }
            };
            match role {
                PortRole::Vnic { vnic } => self.from_vnic(snap, port, vnic, &flow, m),
                PortRole::Nic { uplink, member } => {
                    self.from_nic(snap, port, uplink, member, &flow, m)
                }
            }
        }
    }

    #[inline]
    fn from_vnic(&mut self, snap: &Snapshot, port: u16, vnic: u32, flow: &Flow, m: Mbuf) {
        let v = &snap.vnics[vnic as usize];
        if v.spoof_check && flow.src_mac != v.mac {
            self.stats.ports[port as usize].drop_one(DropReason::Spoofed);
            return;
        }
        if flow.is_slow_protocol() {
            self.stats.ports[port as usize].drop_one(DropReason::SlowFromVm);
            return;
        }
        let up = &snap.uplinks[v.uplink as usize];
        if flow.dst_mac.is_multicast() {
            for &other in &up.vnics {
                if other != vnic {
                    let dst = snap.vnics[other as usize].port;
                    self.enqueue(dst, m.share());
                }
            }
        } else if let Some(dst) = snap.macs.lookup(flow.dst_mac) {
            let d = &snap.vnics[dst as usize];
            if d.uplink == v.uplink && dst != vnic {
                self.enqueue(d.port, m);
                return;
            }
        }
        match up.dist.select(flow, vnic, &mut self.select) {
            Some(member) => self.enqueue(up.members[member], m),
            None => self.stats.ports[port as usize].drop_one(DropReason::NoUsableMember),
        }
    }

    #[inline]
    fn from_nic(
        &mut self,
        snap: &Snapshot,
        port: u16,
        uplink: u16,
        member: u8,
        flow: &Flow,
        m: Mbuf,
    ) {
        if flow.is_slow_protocol() {
            if self.shared.slow_rx.push((port, m)).is_err() {
                self.stats.ports[port as usize].drop_one(DropReason::ControlQueueFull);
            }
            return;
        }
        let up = &snap.uplinks[uplink as usize];
        if !up.dist.accepts_rx_frame(member as usize, flow) {
            self.stats.ports[port as usize].drop_one(DropReason::StandbyMember);
            return;
        }
        if flow.dst_mac.is_multicast() {
            let mut last: Option<u16> = None;
            for &v in &up.vnics {
                if let Some(prev) = last.replace(snap.vnics[v as usize].port) {
                    self.enqueue(prev, m.share());
                }
            }
            match last {
                Some(p) => self.enqueue(p, m),
                None => self.stats.ports[port as usize].drop_one(DropReason::UnknownUnicast),
            }
            return;
        }
        match snap.macs.lookup(flow.dst_mac) {
            Some(v) if snap.vnics[v as usize].uplink == uplink => {
                let p = snap.vnics[v as usize].port;
                self.enqueue(p, m)
            }
            _ => self.stats.ports[port as usize].drop_one(DropReason::UnknownUnicast),
        }
    }

    /// Puts a frame on `port`'s tx buffer, flushing first when it is full.
    #[inline]
    fn enqueue(&mut self, port: u16, m: Mbuf) {
        let p = port as usize;
        if self.txbufs[p].is_full() {
            self.flush(p);
        }
        match self.txbufs[p].push(m) {
            Ok(()) => self.pending |= 1 << p,
            Err(m) => {
                drop(m);
                self.stats.ports[p].drop_one(DropReason::TxFull);
            }
        }
    }

    fn flush_all(&mut self) {
        while self.pending != 0 {
            let p = self.pending.trailing_zeros() as usize;
            self.flush(p);
        }
    }

    fn flush(&mut self, p: usize) {
        self.pending &= !(1u64 << p);
        let buf = &mut self.txbufs[p];
        if buf.is_empty() {
            return;
        }
        let c = &self.stats.ports[p];
        let Some(txq) = self.queues.tx[p].as_mut() else {
            for _ in 0..buf.len() {
                c.drop_one(DropReason::UnknownPort);
            }
            buf.free_all();
            return;
        };
        let mut bytes: u64 = buf.as_slice().iter().map(|m| m.pkt_len() as u64).sum();
        let n = txq.tx_burst(buf);
        if !buf.is_empty() {
            let unsent: u64 = buf.as_slice().iter().map(|m| m.pkt_len() as u64).sum();
            bytes -= unsent;
            bump(&c.drops[DropReason::TxFull as usize], buf.len() as u64);
            buf.free_all();
        }
        bump(&c.tx_pkts, n as u64);
        bump(&c.tx_bytes, bytes);
    }

    /// Sends what the control thread queued (LACPDUs, gratuitous RARPs) on our tx queues.
    fn drain_control_tx(&mut self) {
        while let Some((port, m)) = self.shared.ctl_tx.pop() {
            if (port as usize) < MAX_PORTS {
                self.enqueue(port, m);
            }
        }
    }
}
