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
//! `rx_burst` → view ([`FrameView`]: Ethernet header and VLAN tags decoded, the IP and
//! L4 headers read only if the uplink's hash needs them, no copy) → decide by the receiving port's
//! role (vNIC: spoof check, local VM delivery or uplink member selection; NIC:
//! slow-protocol handoff, standby check, destination-MAC lookup) → push onto the
//! destination port's tx buffer (floods take extra mbuf references, no copies) →
//! buffers are flushed with `tx_burst` when full and at the end of every iteration.
//! Frames that cannot be sent are freed and counted by reason. Frames from a NIC to a
//! vNIC protected against DoS pass through the worker's [`DosPath`] first (counted,
//! then dropped, policed or held per the control thread's mitigation word; see
//! [`crate::dos_path`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use dpdk_sys::{Burst, Drain, Mbuf, RxQueue, SharedTxQueue, TxQueue};
use policy::wire::{ethertype, EthHeaderKey, Flow, FrameView, MacAddr, V4_RUN_MIN_LEN};

use crate::shared::Shared;
use crate::snapshot::{PortRole, Snapshot, UplinkEntry, VnicEntry, NO_PORT};
use crate::stats::{bump, DropReason, WorkerStats, MAX_PORTS};
use policy::bandwidth::{Allocation, GateConfig, Verdict, VnicGate};
use policy::bond::{bucket_of, hash_flow, hash_l3l4_words, BurstPick, HashFields, SelectCtx};
use policy::time::Nanos;

use crate::delay_ring::{DelayRing, Waiting};
use crate::dos_path::{DosPath, DosVerdict};

/// Frames per rx burst. 64, where testpmd and OVS read 32: the per-iteration work
/// (polling every queue, the bandwidth refresh, flushing each port) is shared by
/// twice the frames. Measured (`perf/callgrind.sh`): 7 switch instructions a frame
/// less in case 1, 13 in case 4; `perf/bench.sh --with-burst64` shows testpmd
/// itself is not faster at 64.
///
/// Except for large frames: after a burst whose first frame is longer than
/// [`LARGE_FRAME`] bytes, a port is asked for [`RX_BURST_LARGE`] frames. A burst of 64
/// such frames is more than 32 kB of frame data, twice the L1 data cache, which the
/// PMD's copies in and the switch's header reads then go through; at 1518 bytes the
/// switch forwarded about 8 % more at 32 a burst (AB12 in docs/BENCHMARKS.md), and
/// testpmd itself is 4–10 % slower at 64 than at 32 there (session 5).
pub const RX_BURST: usize = 64;
/// Frames per rx burst on a port whose last burst started with a frame longer than
/// [`LARGE_FRAME`]; see [`RX_BURST`].
pub const RX_BURST_LARGE: usize = 32;
/// Frame length (bytes) above which a port's next burst is [`RX_BURST_LARGE`]: 64
/// frames of this length fill 32 kB.
pub const LARGE_FRAME: u32 = 512;

/// How many frames to ask a port for, given the length of its last burst's first
/// frame: one compare per burst. The first frame stands for the burst: its mbuf was
/// just written by the PMD, and mixed sizes only move the choice between two burst
/// sizes that both work.
#[inline]
pub fn rx_burst_for(first_len: u32) -> u8 {
    if first_len > LARGE_FRAME {
        RX_BURST_LARGE as u8
    } else {
        RX_BURST as u8
    }
}

/// A poll pass in which some rx queue brought this many frames or more ends a
/// worker's load-based sleep (`[dataplane] pmd_sleep_max_us`); a pass in which none
/// did lengthens it. Half of a 32-frame burst, Open vSwitch's threshold.
pub const SLEEP_THRESHOLD: usize = 16;
/// How much a worker's load-based sleep grows after each lightly loaded pass, ns.
pub const SLEEP_STEP_NS: u64 = 1_000;

/// The load-based sleep after a poll pass: how long to sleep now (ns, 0 for not at
/// all) and the sleep the next lightly loaded pass will take. `busy` is whether some
/// queue brought [`SLEEP_THRESHOLD`] frames or more; `max_ns` 0 turns sleeping off.
#[inline]
pub fn next_sleep(current_ns: u64, busy: bool, max_ns: u64) -> (u64, u64) {
    if busy || max_ns == 0 {
        return (0, 0);
    }
    let now = current_ns.min(max_ns);
    (now, (now + SLEEP_STEP_NS).min(max_ns))
}

/// Frames buffered per destination port before a flush.
pub const TX_BURST: usize = 64;

/// A worker's assignment, built by the switch at start and on reconfiguration.
pub struct WorkerQueues {
    /// Rx queues this worker polls.
    pub rx: Vec<RxQueue>,
    /// This worker's tx queue on each port, by port id.
    pub tx: Vec<Option<TxSlot>>,
}

/// A queue hand-over to a running worker (port hot-plug), carried out at the top of
/// an iteration, the worker's quiescent point; see [`crate::switch::Switch::reconfigure`].
pub enum WorkerMsg {
    /// Start polling `rx` (when given) and transmitting through `tx` on port `port`.
    /// Sent before the snapshot that names the port is published.
    Attach {
        /// DPDK port id.
        port: u16,
        /// The rx queues of the port this worker now owns (often one, maybe none).
        rx: Vec<RxQueue>,
        /// How this worker transmits on the port.
        tx: TxSlot,
    },
    /// Stop using port `port`: flush what is buffered for it, then release its queue
    /// tokens and the state of the vNIC it carried. Sent once every worker runs a
    /// snapshot that no longer names the port, so no new frame is switched to it.
    Detach {
        /// DPDK port id.
        port: u16,
    },
}

impl WorkerQueues {
    /// No queues, room for every port.
    pub fn empty() -> WorkerQueues {
        WorkerQueues {
            rx: Vec::new(),
            tx: (0..MAX_PORTS).map(|_| None).collect(),
        }
    }

    /// Takes the queues of an [`WorkerMsg::Attach`].
    pub fn attach(&mut self, port: u16, rx: Vec<RxQueue>, tx: TxSlot) {
        self.rx.extend(rx);
        if let Some(slot) = self.tx.get_mut(port as usize) {
            *slot = Some(tx);
        }
    }
}

/// How a worker transmits on a port.
pub enum TxSlot {
    /// Its own queue (queue index = worker index): no synchronisation.
    Own(TxQueue),
    /// Queue 0 shared by all workers behind a spin lock: vhost-user ports when there
    /// are several workers, since a guest may enable a single queue pair.
    Shared(Arc<SharedTxQueue>),
}

impl TxSlot {
    /// Whether the queue takes chained mbufs ([`TxQueue::multi_seg`]).
    fn multi_seg(&self) -> bool {
        match self {
            TxSlot::Own(q) => q.multi_seg(),
            TxSlot::Shared(q) => q.multi_seg(),
        }
    }

    #[inline]
    fn tx_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        match self {
            TxSlot::Own(q) => q.tx_burst(burst),
            TxSlot::Shared(q) => q.tx_burst(burst),
        }
    }
}

/// An iteration gap above this is a stall (the worker was off the CPU), not work.
const STALL_MIN: Nanos = 500 * policy::time::US;

/// Frames a vNIC may have waiting for its allocation.
pub const DELAY_RING: usize = 256;

/// The longest worker stall a backlogged vNIC is credited for (see [`VnicBw::stall`]).
pub const MAX_STALL_CREDIT: Nanos = 20 * policy::time::MS;

/// The bandwidth state of one vNIC this worker polls.
struct VnicBw {
    gate: VnicGate,
    /// The shaping the gate was built or last updated with.
    shaping: Option<policy::bandwidth::Shaping>,
    ring: DelayRing,
    alloc_bits: u64,
    port: u16,
    /// Extra bucket depth, in ns of the allocated rate (and of the shaper's average
    /// and peak rates, `VnicGate::set_stall`), granted after this worker was off the
    /// CPU while the vNIC had frames waiting (0: none).
    ///
    /// The gate's bucket is only `burst_time` (2 ms) deep, so a worker descheduled for
    /// longer (4–8 ms time slices on a shared host) forfeited the excess of the
    /// vNIC's allocation although the vNIC was backlogged all along: measured, a vNIC
    /// allocated 2 Gb/s sent 1.6 Gb/s. Credit earned while *backlogged* is not the
    /// vNIC's to lose; the depth is deepened by the stall (at most
    /// [`MAX_STALL_CREDIT`]) until the credit is spent or the stall's length has
    /// passed again, then the allocation's own depth is restored.
    stall: Nanos,
    /// When the stall credit expires.
    stall_until: Nanos,
}

impl VnicBw {
    /// Frees the frames still waiting (their vNIC or its worker changed), counted as
    /// `unknown_port` drops of the vNIC's port.
    fn free_ring(&mut self, stats: &WorkerStats) {
        while let Some(w) = self.ring.pop() {
            drop(w.mbuf);
            if let Some(c) = stats.ports.get(self.port as usize) {
                c.drop_one(DropReason::UnknownPort);
            }
        }
    }

    /// Sets the gate's rate and depth from the current allocation plus stall credit.
    fn apply(&mut self) {
        let a = Allocation::from_bits(self.alloc_bits);
        let extra = (a.rate_bps as u128 * self.stall as u128 / 8_000_000_000) as u64;
        self.gate.set_allocation(Allocation {
            burst_bytes: a.burst_bytes.saturating_add(extra),
            ..a
        });
        self.gate.set_stall(self.stall);
    }
}

/// One polling worker.
pub struct Worker {
    index: usize,
    /// Rx queues this worker polls.
    rx: Vec<RxQueue>,
    /// Tx queues and buffers: a field of its own, so that a frame loop can hold a
    /// vNIC's bandwidth state (`bw`) and buffer frames at the same time.
    out: TxPath,
    stats: Arc<WorkerStats>,
    shared: Arc<Shared>,
    select: SelectCtx,
    /// Bandwidth state of the vNICs this worker polls, by vNIC index (None for others).
    bw: Vec<Option<VnicBw>>,
    /// vNIC indices with a `bw` entry.
    owned: Vec<u32>,
    /// TSC → ns: ns = tsc * mult >> 32.
    tsc_mult: u128,
    now: Nanos,
    /// DoS accounting and mitigation on NIC → vNIC delivery.
    dos: DosPath,
    /// By vNIC index: the Ethernet header of the last frame of the vNIC that passed
    /// the checks, and its local destination port if any (`VnicRx::seen`), kept from
    /// one burst to the next. Cleared whenever the snapshot changes, since what the
    /// checks and the destination depend on (the vNIC's MAC and spoof check, the MAC
    /// table, the uplink) all come from it.
    seen: Vec<Option<(EthHeaderKey, Option<u16>)>>,
    /// By NIC port id: the Ethernet header of the last frame delivered from it and its
    /// vNIC port (`NicRx::seen`), kept from one burst to the next and cleared with
    /// `seen`. Not used while the DoS path is on (it inspects every frame).
    nic_seen: [Option<(EthHeaderKey, u16)>; MAX_PORTS],
    /// By port id: how many frames the next poll of the port asks for
    /// ([`rx_burst_for`] of its last burst).
    rx_want: [u8; MAX_PORTS],
}

impl Worker {
    /// A worker with its queues; it starts with the current snapshot.
    pub fn new(
        index: usize,
        queues: WorkerQueues,
        stats: Arc<WorkerStats>,
        shared: Arc<Shared>,
    ) -> Worker {
        let hz = dpdk_sys::Eal::get()
            .map(|e| e.tsc_hz())
            .unwrap_or(1_000_000_000)
            .max(1);
        let snap = shared.published.load();
        let mut w = Worker {
            bw: Vec::new(),
            owned: Vec::new(),
            tsc_mult: ((1_000_000_000u128) << 32) / hz as u128,
            now: 0,
            dos: DosPath::new(index),
            index,
            rx: queues.rx,
            out: TxPath {
                single_seg: 0,
                frame_max: [u32::MAX; MAX_PORTS],
                short_max: ONE_SEGMENT_MAX,
                queues: queues.tx,
                bufs: std::array::from_fn(|_| TxBuf::default()),
                pending: 0,
                stats: stats.clone(),
            },
            stats,
            shared,
            select: SelectCtx::default(),
            seen: Vec::new(),
            nic_seen: [None; MAX_PORTS],
            rx_want: [RX_BURST as u8; MAX_PORTS],
        };
        w.out.refresh_limits(&snap);
        w.sync_vnics(&snap);
        w
    }

    /// Makes the per-vNIC bandwidth state match the vNICs whose rx queue this worker
    /// owns in `snap`: creates it for new ones, updates changed shaping, frees the
    /// delay ring of vNICs it no longer polls; forgets the headers carried from burst
    /// to burst (`seen`, `nic_seen`). Runs at start, on every snapshot reload and after
    /// a queue hand-over — never per frame.
    fn sync_vnics(&mut self, snap: &Snapshot) {
        self.nic_seen = [None; MAX_PORTS];
        self.seen.clear();
        self.seen.resize(snap.vnics.len(), None);
        if self.bw.len() < snap.vnics.len() {
            self.bw.resize_with(snap.vnics.len(), || None);
        }
        let gate_cfg = GateConfig {
            queue_limit_bytes: 256 * 1024,
            max_delay: self.shared.max_queue_delay,
        };
        let mut owned = Vec::new();
        for q in &self.rx {
            let Some(Some(p)) = snap.ports.get(q.port() as usize) else {
                continue;
            };
            let PortRole::Vnic { vnic } = p.role else {
                continue;
            };
            let v = &snap.vnics[vnic as usize];
            match &mut self.bw[vnic as usize] {
                Some(b) if b.port == v.port => {
                    if b.shaping != v.shaping {
                        b.gate.set_shaping(v.shaping);
                        b.shaping = v.shaping;
                    }
                }
                slot => {
                    if let Some(mut old) = slot.take() {
                        old.free_ring(&self.stats);
                    }
                    *slot = Some(VnicBw {
                        gate: VnicGate::new(
                            gate_cfg,
                            v.shaping,
                            Allocation {
                                rate_bps: u64::MAX >> 24,
                                burst_bytes: 1 << 20,
                                ..Default::default()
                            },
                        ),
                        shaping: v.shaping,
                        ring: DelayRing::new(DELAY_RING),
                        alloc_bits: 0,
                        port: v.port,
                        stall: 0,
                        stall_until: 0,
                    });
                }
            }
            owned.push(vnic);
        }
        for (i, b) in self.bw.iter_mut().enumerate() {
            if b.is_some() && !owned.contains(&(i as u32)) {
                if let Some(mut old) = b.take() {
                    old.free_ring(&self.stats);
                }
            }
        }
        self.owned = owned;
    }

    /// Carries out the queue hand-overs in this worker's mailbox.
    fn read_mail(&mut self, snap: &Snapshot) {
        let mut n = 0;
        while let Some(msg) = self.shared.mailbox[self.index].pop() {
            n += 1;
            match msg {
                WorkerMsg::Attach { port, rx, tx } => {
                    self.rx.extend(rx);
                    if let Some(slot) = self.out.queues.get_mut(port as usize) {
                        *slot = Some(tx);
                    }
                    self.out.refresh_limits(snap);
                }
                WorkerMsg::Detach { port } => {
                    let p = port as usize;
                    if p < MAX_PORTS {
                        // Sends what is buffered; what the port refuses is freed.
                        self.out.flush(p);
                        self.out.queues[p] = None;
                        self.out.refresh_limits(snap);
                    }
                    self.rx.retain(|q| q.port() != port);
                }
            }
        }
        self.sync_vnics(snap);
        let done = &self.shared.done[self.index];
        done.store(done.load(Ordering::Relaxed) + n, Ordering::Release);
    }

    /// Polls until the switch's quit flag is set, then frees every buffered frame.
    pub fn run(mut self) -> WorkerQueues {
        let tsc = dpdk_sys::eal::rdtsc;
        let mut rx: Burst<RX_BURST> = Burst::new();
        let mut iterations = 0u64;
        let mut last = tsc();
        let (mut busy_cycles, mut idle_cycles, mut busy_iters) = (0u64, 0u64, 0u64);
        let (mut sleep_cycles, mut sleep_iters, mut sleep_ns) = (0u64, 0u64, 0u64);
        let mut published_iters = 0u64;
        if let Err(e) = crate::nap::fine_timer_slack() {
            tracing::warn!(worker = self.index, "load-based sleeps will be coarse: {e}");
        }
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
                self.out.refresh_limits(&snap);
                self.sync_vnics(&snap);
                self.stats
                    .generation
                    .store(snap.generation, Ordering::Release);
            }
            if !self.shared.mailbox[self.index].is_empty() {
                self.read_mail(&snap);
            }
            let stats = &self.stats;
            self.dos.reload(&self.shared.dos, self.now, |_, w| {
                drop(w.mbuf);
                held_frame_lost(stats, w.port);
            });
            if self.dos.enabled() {
                self.dos_poll(&snap);
            }
            // Frames in a vNIC's bandwidth queue keep the worker from sleeping.
            let mut queued = false;
            if self.shared.bandwidth && !self.owned.is_empty() {
                let prev = self.now;
                self.now = ((tsc() as u128 * self.tsc_mult) >> 32) as Nanos;
                self.refresh_allocations(self.now.saturating_sub(prev));
                queued = self.service_queues(&snap);
            }
            let mut got = 0;
            let mut busy = false;
            for qi in 0..self.rx.len() {
                let q = &mut self.rx[qi];
                let port = q.port();
                let want = self
                    .rx_want
                    .get(port as usize)
                    .copied()
                    .unwrap_or(RX_BURST as u8);
                let n = q.rx_burst_max(&mut rx, want as usize);
                if n > 0 {
                    got += n;
                    busy |= n >= SLEEP_THRESHOLD;
                    if let (Some(w), Some(first)) =
                        (self.rx_want.get_mut(port as usize), rx.as_slice().first())
                    {
                        *w = rx_burst_for(first.pkt_len());
                    }
                    self.process(&snap, port, &mut rx);
                }
            }
            if self.index == 0 {
                self.drain_control_tx();
            }
            self.out.flush_all();
            let now = tsc();
            // Saturating: an unpinned worker moved to a CPU whose TSC is behind would
            // otherwise add about 2^64 cycles.
            if got > 0 {
                busy_cycles += now.saturating_sub(last);
                busy_iters += 1;
            } else {
                idle_cycles += now.saturating_sub(last);
            }
            last = now;
            // Load-based sleep: one relaxed load a pass while it is off. Frames held
            // for later (a bandwidth queue, a DoS delay) count as load: a nap would
            // send them late.
            let max_ns = self.shared.pmd_sleep_max_ns.load(Ordering::Relaxed);
            let (nap_ns, next) = if max_ns == 0 {
                (0, 0)
            } else {
                let held = queued || (self.dos.enabled() && self.dos.held() > 0);
                next_sleep(sleep_ns, busy || held, max_ns)
            };
            sleep_ns = next;
            if nap_ns > 0 {
                crate::nap::nap(std::time::Duration::from_nanos(nap_ns));
                let after = tsc();
                idle_cycles += after.saturating_sub(last);
                sleep_cycles += after.saturating_sub(last);
                sleep_iters += 1;
                last = after;
            }
            // Counters out and the quit flag every 1024 passes, and after every sleep
            // (1024 sleeps could take seconds).
            if iterations & 0x3ff == 0 || nap_ns > 0 {
                let s = &self.stats;
                bump(&s.iterations, iterations - published_iters);
                published_iters = iterations;
                s.busy_iterations.store(busy_iters, Ordering::Relaxed);
                s.busy_cycles.store(busy_cycles, Ordering::Relaxed);
                s.idle_cycles.store(idle_cycles, Ordering::Relaxed);
                s.sleep_iterations.store(sleep_iters, Ordering::Relaxed);
                s.sleep_cycles.store(sleep_cycles, Ordering::Relaxed);
                if self.shared.quit.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        for b in self.out.bufs.iter_mut() {
            b.frames.free_all();
        }
        for v in self.bw.iter_mut().flatten() {
            while let Some(w) = v.ring.pop() {
                drop(w.mbuf);
            }
        }
        self.dos.free_all();
        WorkerQueues {
            rx: self.rx,
            tx: self.out.queues,
        }
    }

    /// Switches one received burst from `port`.
    fn process(&mut self, snap: &Snapshot, port: u16, rx: &mut Burst<RX_BURST>) {
        // Received bytes are counted by the per-frame loops (and `drop_burst`), while
        // they read each mbuf anyway: a pass of its own here touched every mbuf once
        // more.
        bump(&self.stats.ports[port as usize].rx_pkts, rx.len() as u64);
        let role = match snap.ports.get(port as usize).and_then(|p| p.as_ref()) {
            Some(p) => p.role,
            None => return self.drop_burst(port, DropReason::UnknownPort, rx),
        };
        // The role is decided once per burst, not per frame.
        match role {
            PortRole::Vnic { vnic } => self.rx_from_vnic(snap, port, vnic, rx),
            PortRole::Nic { uplink, member } => self.rx_from_nic(snap, port, uplink, member, rx),
        }
    }

    /// Drops a whole burst, counted as `why` against `port`.
    #[cold]
    fn drop_burst(&mut self, port: u16, why: DropReason, rx: &mut Burst<RX_BURST>) {
        let c = &self.stats.ports[port as usize];
        let bytes: u64 = rx.as_slice().iter().map(|m| m.pkt_len() as u64).sum();
        bump(&c.rx_bytes, bytes);
        for _ in 0..rx.len() {
            c.drop_one(why);
        }
        rx.free_all();
    }

    /// Switches a burst received from vNIC `vnic` (on `port`): spoof check, local VM
    /// delivery, or member selection on the vNIC's uplink.
    ///
    /// What is the same for every frame of the burst is decided once: the vNIC's
    /// entry, its uplink and MAC, and how the uplink picks members
    /// ([`Distribution::burst_pick`]), which selects a loop compiled for that pick.
    #[inline(never)]
    fn rx_from_vnic(&mut self, snap: &Snapshot, port: u16, vnic: u32, rx: &mut Burst<RX_BURST>) {
        let Some(v) = snap.vnics.get(vnic as usize) else {
            return self.drop_burst(port, DropReason::UnknownPort, rx);
        };
        let Some(up) = snap.uplinks.get(v.uplink as usize) else {
            return self.drop_burst(port, DropReason::UnknownPort, rx);
        };
        // One loop per pick, the pick inlined into it. A pick gives the member's port,
        // or NO_PORT when no member is usable.
        macro_rules! burst {
            ($pick:expr) => {
                self.vnic_burst(snap, port, vnic, v, up, rx, $pick)
            };
        }
        match up.dist.burst_pick() {
            BurstPick::Member(m) => {
                burst!(FixedPick(up.members.get(m).copied().unwrap_or(NO_PORT)))
            }
            // The common bond hash gets a loop of its own, with the fields a constant,
            // so the hash's match on them is compiled away.
            BurstPick::Hash(HashFields::L3L4) => burst!(L3L4Pick),
            BurstPick::Hash(fields) => burst!(HashPick(fields)),
            BurstPick::PerFrame => burst!(SelectPick(vnic)),
        }
    }

    /// The per-frame loop of [`rx_from_vnic`](Self::rx_from_vnic), with `pick` choosing the
    /// member of frames bound for the uplink.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn vnic_burst<P>(
        &mut self,
        snap: &Snapshot,
        port: u16,
        vnic: u32,
        v: &VnicEntry,
        up: &UplinkEntry,
        rx: &mut Burst<RX_BURST>,
        pick: P,
    ) where
        P: Pick,
    {
        // The vNIC's bandwidth state, looked up once: None when the policy is off (or
        // the vNIC has none), and frames go straight to the tx buffers.
        let mut bw = if self.shared.bandwidth {
            self.bw.get_mut(vnic as usize).and_then(|b| b.as_mut())
        } else {
            None
        };
        let mut st = VnicRx {
            snap,
            up,
            v,
            vnic,
            port,
            now: self.now,
            last_dst: u64::MAX,
            local: None,
            seen: self.seen.get(vnic as usize).copied().flatten(),
        };
        // A frame whose Ethernet header does not repeat the last checked one goes
        // through `vnic_frame`, out of line, for the reason given at `rx_from_nic`.
        // The frames after it that do repeat it are a run, switched by an inner loop
        // with the key and the destination in locals: one loop per destination kind,
        // and for the uplink one per bandwidth state, so none of them is re-decided
        // per frame. The key carries over from the vNIC's previous burst, so a burst
        // may start with a run.
        let mut bytes = 0u64;
        let mut frames = rx.drain();
        let mut next = None;
        loop {
            match st.seen {
                Some((key, Some(p))) => {
                    for m in frames.by_ref() {
                        if key.view(m.data()).is_none() {
                            next = Some(m);
                            break;
                        }
                        let len = m.pkt_len();
                        bytes += len as u64;
                        self.out.enqueue_len(p, m, len);
                    }
                }
                Some((key, None)) => {
                    // Every member is marked pending once here, not by each frame.
                    self.out.pending |= up.ports.mask;
                    // IPv4 keys get a loop of their own with the ethertype and the
                    // length needed for the one-step L3+L4 read constants, so the
                    // hash's ethertype and length checks are compiled away; shorter
                    // frames leave the run for `vnic_frame`.
                    macro_rules! run {
                        ($et:expr, $min_len:expr) => {
                            uplink_run(
                                &mut frames,
                                key,
                                $et,
                                $min_len,
                                &mut st,
                                &mut self.out,
                                &mut self.select,
                                &mut bw,
                                &pick,
                                &mut bytes,
                            )
                        };
                    }
                    next = if key.ethertype() == ethertype::IPV4 {
                        run!(ethertype::IPV4, V4_RUN_MIN_LEN)
                    } else {
                        run!(key.ethertype(), 0)
                    };
                }
                None => {}
            }
            let Some(m) = next.take().or_else(|| frames.next()) else {
                break;
            };
            bytes += m.pkt_len() as u64;
            vnic_frame(&mut st, &mut self.out, &mut self.select, &mut bw, &pick, m);
        }
        if let Some(s) = self.seen.get_mut(vnic as usize) {
            *s = st.seen;
        }
        bump(&self.stats.ports[port as usize].rx_bytes, bytes);
    }

    /// Takes in the control thread's latest allocations for the vNICs we poll, grants
    /// or ends stall credit (`gap`: time since the previous iteration), and publishes
    /// their offered/sent byte counts.
    fn refresh_allocations(&mut self, gap: Nanos) {
        let now = self.now;
        for &v in &self.owned {
            let sh = &self.shared.vnic_bw[v as usize];
            let Some(bw) = self.bw[v as usize].as_mut() else {
                continue;
            };
            let bits = sh.allocation.load(Ordering::Relaxed);
            let mut changed = false;
            if bits != 0 && bits != bw.alloc_bits {
                bw.alloc_bits = bits;
                changed = true;
            }
            if bw.alloc_bits != 0 {
                let normal = Allocation::from_bits(bw.alloc_bits).burst_bytes;
                if !bw.ring.is_empty() && gap > STALL_MIN {
                    // Off the CPU with frames waiting: keep what the stall earned.
                    bw.stall = (bw.stall + gap).min(MAX_STALL_CREDIT);
                    bw.stall_until = now + gap;
                    changed = true;
                } else if bw.stall > 0
                    && (now > bw.stall_until
                        || bw.gate.time_until(normal.min(u32::MAX as u64) as u32, now) != Some(0))
                {
                    // Credit spent (below the normal depth: restoring loses nothing) or expired.
                    bw.stall = 0;
                    changed = true;
                }
            }
            if changed {
                bw.apply();
            }
            let c = bw.gate.counters();
            sh.offered_bytes.store(c.offered_bytes, Ordering::Relaxed);
            sh.sent_bytes.store(c.sent_bytes, Ordering::Relaxed);
        }
    }

    /// Offers queued frames to their gates, oldest first.
    ///
    /// Returns whether frames are still waiting (the load-based sleep waits for them).
    /// A frame leaves on the member it was given when it was queued while that member
    /// is still live in `snap`, else on a live member of the vNIC's uplink now
    /// ([`crate::snapshot::UplinkPorts::still_live`]): a failover while it waited does not send it to
    /// the failed member.
    fn service_queues(&mut self, snap: &Snapshot) -> bool {
        let now = self.now;
        let mut waiting = false;
        for i in 0..self.owned.len() {
            let v = self.owned[i] as usize;
            let up = snap
                .vnics
                .get(v)
                .and_then(|e| snap.uplinks.get(e.uplink as usize));
            while let Some(bw) = self.bw[v].as_mut() {
                let Some((len, since)) = bw.ring.front() else {
                    break;
                };
                let verdict = bw.gate.poll_queued(len, since, now);
                let vport = bw.port;
                match verdict {
                    Verdict::Queue => {
                        waiting = true;
                        break;
                    }
                    Verdict::Send => {
                        let w = bw.ring.pop().expect("front was Some");
                        match up.map_or(NO_PORT, |u| u.ports.still_live(w.port)) {
                            NO_PORT => {
                                drop(w.mbuf);
                                no_member(&self.out, vport);
                            }
                            p => self.out.enqueue(p, w.mbuf),
                        }
                    }
                    Verdict::Drop(r) => {
                        drop(bw.ring.pop());
                        self.stats.ports[vport as usize].drop_one(bw_reason(r));
                    }
                }
            }
        }
        waiting
    }

    /// Switches a burst received on member `member` of uplink `uplink` (on `port`):
    /// slow protocols to the control thread, the standby check, destination-MAC
    /// lookup (remembered while the destination repeats), DoS defence.
    ///
    /// The loop here only delivers frames whose Ethernet header repeats the last one
    /// delivered; every other frame goes through [`nic_frame`](Self::nic_frame), out
    /// of line, with the burst's lookup state in memory ([`NicRx`]). Inlined together,
    /// the loop-carried lookup state was shuffled between registers and the stack on
    /// every frame (24 instructions a frame, `perf/callgrind.sh` case 3a).
    #[inline(never)]
    fn rx_from_nic(
        &mut self,
        snap: &Snapshot,
        port: u16,
        uplink: u16,
        member: u8,
        rx: &mut Burst<RX_BURST>,
    ) {
        let Some(up) = snap.uplinks.get(uplink as usize) else {
            return self.drop_burst(port, DropReason::UnknownPort, rx);
        };
        let dos_on = self.dos.enabled();
        let mut st = NicRx {
            port,
            uplink,
            member,
            accepts: up.dist.accepts_rx(member as usize),
            dos_on,
            last_dst: u64::MAX,
            found: None,
            here: None,
            // The header carried from the port's previous burst; what it skips (the
            // member's acceptance, the MAC table, the vNIC's uplink) comes from the
            // snapshot, and a new snapshot clears it.
            seen: if dos_on {
                None
            } else {
                self.nic_seen.get(port as usize).copied().flatten()
            },
        };
        let mut bytes = 0u64;
        for m in rx.drain() {
            bytes += m.pkt_len() as u64;
            if let Some((key, p)) = st.seen {
                if key.view(m.data()).is_some() {
                    self.out.enqueue(p, m);
                    continue;
                }
            }
            self.nic_frame(snap, up, &mut st, m);
        }
        if let Some(s) = self.nic_seen.get_mut(port as usize) {
            *s = st.seen;
        }
        bump(&self.stats.ports[port as usize].rx_bytes, bytes);
    }

    /// One frame of [`rx_from_nic`](Self::rx_from_nic) whose header did not repeat.
    #[inline(never)]
    fn nic_frame(&mut self, snap: &Snapshot, up: &UplinkEntry, st: &mut NicRx, m: Mbuf) {
        let port = st.port;
        let Ok(frame) = FrameView::new_checked(m.data()) else {
            let why = DropReason::short(m.data().len(), m.pkt_len());
            self.stats.ports[port as usize].drop_one(why);
            return;
        };
        if frame.is_slow_protocol() {
            if self.shared.slow_rx.push((port, m)).is_err() {
                self.stats.ports[port as usize].drop_one(DropReason::ControlQueueFull);
            }
            return;
        }
        let dst = frame.dst_key();
        let multicast = MacAddr::key_is_multicast(dst);
        if !st.accepts || (multicast && !up.dist.accepts_rx_frame(st.member as usize, &frame)) {
            self.stats.ports[port as usize].drop_one(DropReason::StandbyMember);
            return;
        }
        if multicast {
            // Link-local control frames (STP, LLDP, PAUSE) end at the bridge.
            if MacAddr::key_is_link_local_reserved(dst) {
                self.stats.ports[port as usize].drop_one(DropReason::ReservedMulticast);
                return;
            }
            // A local VM's own broadcast, flooded back by the physical switch through
            // another member (switch-independent teaming): its uplink's VMs had it
            // already, and the sender must not see itself (IPv6 duplicate address
            // detection would fail).
            if let Some(v) = snap.macs.lookup_key(frame.src_key()) {
                if snap
                    .vnics
                    .get(v as usize)
                    .is_some_and(|e| e.uplink == st.uplink)
                {
                    self.stats.ports[port as usize].drop_one(DropReason::LoopedBack);
                    return;
                }
            }
            let flow = if st.dos_on { Some(frame.flow()) } else { None };
            let flow = flow.as_ref();
            let mut last: Option<u32> = None;
            for &v in &up.vnics {
                if let Some(prev) = last.replace(v) {
                    self.deliver(snap, prev, flow, m.share());
                }
            }
            match last {
                Some(v) => self.deliver(snap, v, flow, m),
                None => self.stats.ports[port as usize].drop_one(DropReason::UnknownUnicast),
            }
            return;
        }
        if dst != st.last_dst {
            st.last_dst = dst;
            st.found = snap.macs.lookup_key(dst);
            st.here = st.found.and_then(|v| {
                let e = &snap.vnics[v as usize];
                (e.uplink == st.uplink).then_some((v, e.port))
            });
        }
        if !st.dos_on {
            match st.here {
                Some((_, p)) => {
                    st.seen = frame.header_key().map(|k| (k, p));
                    self.out.enqueue(p, m)
                }
                None => self.stats.ports[port as usize].drop_one(DropReason::UnknownUnicast),
            }
            return;
        }
        let flow = frame.flow();
        match (st.here, st.found) {
            (Some((v, _)), _) => self.deliver(snap, v, Some(&flow), m),
            // A VM moved off this uplink by a DoS failover: its attack is still counted.
            (None, Some(v)) if self.dos.account_elsewhere(v, &flow, &m) => {
                self.stats.ports[port as usize].drop_one(DropReason::DosDrop)
            }
            _ => self.stats.ports[port as usize].drop_one(DropReason::UnknownUnicast),
        }
    }

    /// Delivers a frame from a NIC to vNIC `vnic`, through its DoS defence (`flow`:
    /// the parsed frame while the DoS path is enabled, else `None`).
    #[inline(always)]
    fn deliver(&mut self, snap: &Snapshot, vnic: u32, flow: Option<&Flow>, m: Mbuf) {
        let port = snap.vnics[vnic as usize].port;
        let Some(flow) = flow else {
            return self.out.enqueue(port, m);
        };
        match self.dos.inspect(vnic, port, flow, m) {
            DosVerdict::Deliver(m) => self.out.enqueue(port, m),
            DosVerdict::Dropped => self.stats.ports[port as usize].drop_one(DropReason::DosDrop),
            DosVerdict::Held => {}
        }
    }

    /// Once per iteration while a vNIC is protected: DoS counters out, mitigation
    /// words in, held frames that are due delivered.
    fn dos_poll(&mut self, snap: &Snapshot) {
        let now = ((dpdk_sys::eal::rdtsc() as u128 * self.tsc_mult) >> 32) as Nanos;
        self.dos.poll(&self.shared.dos, now);
        while let Some((v, owner, w)) = self.dos.pop_due() {
            match snap.vnics.get(v as usize) {
                Some(e) if e.live && e.name == owner => self.out.enqueue(e.port, w.mbuf),
                // Its vNIC is gone, or the slot is another vNIC's now.
                _ => {
                    drop(w.mbuf);
                    held_frame_lost(&self.stats, w.port);
                }
            }
        }
    }

    /// Sends what the control thread queued (LACPDUs, gratuitous RARPs) on our tx queues.
    fn drain_control_tx(&mut self) {
        // is_empty is two plain loads; pop on an empty queue also issues a full fence,
        // every poll iteration.
        if self.shared.ctl_tx.is_empty() {
            return;
        }
        while let Some((port, m)) = self.shared.ctl_tx.pop() {
            if (port as usize) < MAX_PORTS {
                self.out.enqueue(port, m);
            }
        }
    }
}

/// The state of one burst in [`Worker::rx_from_vnic`]: what holds for the whole burst,
/// and what the frames so far found out.
struct VnicRx<'s> {
    snap: &'s Snapshot,
    up: &'s UplinkEntry,
    v: &'s VnicEntry,
    vnic: u32,
    port: u16,
    now: Nanos,
    /// The last unicast destination looked up (u64::MAX: none; no MAC key has the
    /// upper 16 bits set) and the local vNIC port it is delivered to, if any.
    last_dst: u64,
    local: Option<u16>,
    /// The Ethernet header of the last frame that passed the checks (untagged,
    /// unicast, not spoofed, not a slow protocol) and where its destination is: a
    /// frame with the same 14 bytes skips straight to delivery.
    seen: Option<(EthHeaderKey, Option<u16>)>,
}

/// A frame of a vNIC burst whose Ethernet header did not repeat the last checked one:
/// the spoof and slow-protocol checks, flooding of group addresses, the destination
/// lookup, then delivery.
#[inline(never)]
fn vnic_frame<P>(
    st: &mut VnicRx,
    out: &mut TxPath,
    select: &mut SelectCtx,
    bw: &mut Option<&mut VnicBw>,
    pick: &P,
    m: Mbuf,
) where
    P: Pick,
{
    let port = st.port;
    let Ok(frame) = FrameView::new_checked(m.data()) else {
        let why = DropReason::short(m.data().len(), m.pkt_len());
        out.stats.ports[port as usize].drop_one(why);
        return;
    };
    if st.v.spoof_check && frame.src_key() != st.v.mac.to_u64() {
        out.stats.ports[port as usize].drop_one(DropReason::Spoofed);
        return;
    }
    if frame.is_slow_protocol() {
        out.stats.ports[port as usize].drop_one(DropReason::SlowFromVm);
        return;
    }
    let dst = frame.dst_key();
    if MacAddr::key_is_multicast(dst) {
        // A PAUSE frame would stop the physical switch's port, a BPDU could make it
        // shut the port down: link-local control frames stay with the VM.
        if MacAddr::key_is_link_local_reserved(dst) {
            out.stats.ports[port as usize].drop_one(DropReason::ReservedMulticast);
            return;
        }
        // To every other vNIC of the uplink (extra references), then out.
        for &other in &st.up.vnics {
            if other != st.vnic {
                out.enqueue(st.snap.vnics[other as usize].port, m.share());
            }
        }
        let o = pick.pick(st.up, &frame, select);
        return send_uplink(out, bw, st.now, port, o, m);
    }
    if dst != st.last_dst {
        st.last_dst = dst;
        let snap = st.snap;
        st.local = match snap.macs.lookup_key(dst) {
            Some(d) if d != st.vnic && snap.vnics[d as usize].uplink == st.v.uplink => {
                Some(snap.vnics[d as usize].port)
            }
            _ => None,
        };
    }
    st.seen = frame.header_key().map(|k| (k, st.local));
    match st.local {
        Some(p) => out.enqueue(p, m),
        None => {
            let o = pick.pick(st.up, &frame, select);
            send_uplink(out, bw, st.now, port, o, m);
        }
    }
}

/// A run of frames bound for the uplink whose Ethernet header is `key`'s (its
/// ethertype `et`) and that are at least `min_len` bytes long: sent to the member
/// `pick` chooses, through the vNIC's bandwidth gate `bw` when it has one. Returns
/// the first frame of burst `st` that is not part of the run. The members' tx
/// buffers must already be marked pending.
///
/// Called with constants for `et` and `min_len` ([`V4_RUN_MIN_LEN`] for IPv4), so
/// that the compiler drops the view's ethertype and length checks.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn uplink_run<P>(
    frames: &mut Drain<'_, RX_BURST>,
    key: EthHeaderKey,
    et: u16,
    min_len: usize,
    st: &mut VnicRx,
    out: &mut TxPath,
    select: &mut SelectCtx,
    bw: &mut Option<&mut VnicBw>,
    pick: &P,
    bytes: &mut u64,
) -> Option<Mbuf>
where
    P: Pick,
{
    let (up, port, now) = (st.up, st.port, st.now);
    let Some(b) = bw.as_deref_mut() else {
        let (rest, b) = if et == ethertype::IPV4 && min_len == V4_RUN_MIN_LEN && key.is_v4_plain() {
            direct_run::<P, { ethertype::IPV4 }, V4_RUN_MIN_LEN>(
                frames, key, up, port, out, select, pick,
            )
        } else {
            direct_run::<P, 0, 0>(frames, key, up, port, out, select, pick)
        };
        *bytes += b;
        return rest;
    };
    // Frames within the gate's credit are sent at once and accounted together
    // (`VnicGate::credit_run`); any other frame goes through the full admission.
    let mut run = b.gate.credit_run(now);
    let mut rest = None;
    for m in frames.by_ref() {
        let data = m.data();
        if data.len() < min_len {
            rest = Some(m);
            break;
        }
        let Some(frame) = key.view_as(data, et) else {
            rest = Some(m);
            break;
        };
        let len = m.pkt_len();
        *bytes += len as u64;
        let o = pick.pick(up, &frame, select);
        if o == NO_PORT {
            drop(m);
            no_member(out, port);
            continue;
        }
        if run.take(len as u64) {
            out.push_marked(o, m, len);
        } else {
            b.gate.spend(run);
            admit_uplink(out, b, now, o, m);
            run = b.gate.credit_run(now);
        }
    }
    b.gate.spend(run);
    rest
}

/// [`uplink_run`] without a bandwidth gate: each frame straight to its member's tx
/// buffer. Returns the first frame that is not part of the run and the bytes of the
/// run's frames.
///
/// Out of line, and its loop makes no call: a frame bound for a full tx buffer
/// leaves the loop and is dealt with here before the loop goes on. A value live
/// across a call must sit in one of the six callee-saved registers or on the stack,
/// so with calls in the loop (even on branches never taken) the loop's own values
/// were reloaded from the stack every frame. Nor does it test for a missing
/// member: such frames ([`NO_PORT`]) go to the sink buffer ([`SINK`]), emptied
/// and counted as `no_usable_member` drops when the run ends.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn direct_run<P, const ET: u16, const MIN_LEN: usize>(
    frames: &mut Drain<'_, RX_BURST>,
    key: EthHeaderKey,
    up: &UplinkEntry,
    port: u16,
    out: &mut TxPath,
    select: &mut SelectCtx,
    pick: &P,
) -> (Option<Mbuf>, u64)
where
    P: Pick,
{
    let mut bytes = 0u64;
    // The frames the loop takes: first segments of MIN_LEN bytes or more, frames no
    // longer than every member sends (its MTU) nor than one mbuf (a longer one may be
    // a chain); the rest leave the run for the checks of `enqueue`.
    let max = out.run_max(up.ports.mask);
    loop {
        let stop =
            direct_loop::<P, ET, MIN_LEN>(frames, &key, up, out, select, pick, max, &mut bytes);
        let rest = match stop {
            Stop::End => None,
            Stop::Other(m) => Some(m),
            Stop::Full(m, i) => {
                if i == SINK {
                    out.empty_sink(port);
                    drop(m);
                    no_member(out, port);
                } else {
                    out.enqueue_full(i, m);
                }
                continue;
            }
            Stop::Slow(m) => {
                // The loop's view of it held, so this one does.
                let Some(f) = key.view_as(m.data(), key.ethertype()) else {
                    return (Some(m), bytes);
                };
                let o = pick.pick(up, &f, select);
                bytes += m.pkt_len() as u64;
                send_uplink(out, &mut None, 0, port, o, m);
                continue;
            }
        };
        if !out.bufs[SINK].frames.is_empty() {
            out.empty_sink(port);
        }
        return (rest, bytes);
    }
}

/// Why [`direct_loop`] stopped.
enum Stop {
    /// At the end of the burst.
    End,
    /// At a frame that is not part of the run.
    Other(Mbuf),
    /// At a frame whose tx buffer (index `usize` of [`TxPath::bufs`]) is full.
    Full(Mbuf, usize),

    /// At a frame of the run whose member the loop does not pick
    /// ([`Pick::pick_in_loop`]).
    Slow(Mbuf),
}

/// The loop of [`direct_run`], in a function of its own: with no call inside, its
/// values stay in registers from its arguments on. Inlined, they were live across
/// `direct_run`'s calls, and the compiler kept them on the stack, reloading four a
/// frame. Adds the bytes of the frames it buffers to `bytes`.
/// A frame whose first segment is shorter than `MIN_LEN`, or longer than `max` in all,
/// is not part of the run.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn direct_loop<P, const ET: u16, const MIN_LEN: usize>(
    frames: &mut Drain<'_, RX_BURST>,
    key: &EthHeaderKey,
    up: &UplinkEntry,
    out: &mut TxPath,
    select: &mut SelectCtx,
    pick: &P,
    max: u32,
    bytes: &mut u64,
) -> Stop
where
    P: Pick,
{
    let key = *key;
    let et = if ET == 0 { key.ethertype() } else { ET };
    let mut b = 0u64;
    let stop = 'run: {
        for m in frames.by_ref() {
            let data = m.data();
            if data.len() < MIN_LEN {
                break 'run Stop::Other(m);
            }
            // An IPv4 loop is for a key whose IP header has no options: its frames'
            // views know that.
            let view = if ET == ethertype::IPV4 {
                key.view_v4(data)
            } else {
                key.view_as(data, et)
            };
            let Some(frame) = view else {
                break 'run Stop::Other(m);
            };
            // Only the IPv4 loop leaves the general read out (its frames nearly all
            // take the one-step read); a loop for other keys (IPv6, say) would
            // otherwise send every frame out of it.
            let o = if ET == ethertype::IPV4 {
                match pick.pick_in_loop(up, &frame, select) {
                    Some(o) => o,
                    None => break 'run Stop::Slow(m),
                }
            } else {
                pick.pick(up, &frame, select)
            };
            // Longer than a member sends, or maybe a chain: for the general path.
            let len = m.pkt_len();
            if len > max {
                break 'run Stop::Other(m);
            }
            b += len as u64;
            let i = o as usize % TX_BUFS;
            if let Err(m) = out.push_short(i, m, len) {
                break 'run Stop::Full(m, i);
            }
        }
        Stop::End
    };
    *bytes += b;
    stop
}

/// How a burst's frames bound for the uplink find their member port
/// ([`Distribution::burst_pick`], decided once per burst): each loop over a burst is
/// compiled for one.
trait Pick {
    /// The member port of `f` on `up` ([`NO_PORT`]: no usable member).
    fn pick(&self, up: &UplinkEntry, f: &FrameView, ctx: &mut SelectCtx) -> u16;

    /// [`pick`](Self::pick) in [`direct_loop`]'s IPv4 loop, which has the fast path
    /// only: `None` sends the frame out of the loop to `pick`.
    #[inline(always)]
    fn pick_in_loop(&self, up: &UplinkEntry, f: &FrameView, ctx: &mut SelectCtx) -> Option<u16> {
        Some(self.pick(up, f, ctx))
    }
}

/// Every frame on one port (active-backup's active member).
struct FixedPick(u16);

impl Pick for FixedPick {
    #[inline(always)]
    fn pick(&self, _: &UplinkEntry, _: &FrameView, _: &mut SelectCtx) -> u16 {
        self.0
    }
}

/// By the hash of the given fields over the bucket table.
struct HashPick(HashFields);

impl Pick for HashPick {
    #[inline(always)]
    fn pick(&self, up: &UplinkEntry, f: &FrameView, _: &mut SelectCtx) -> u16 {
        hashed_port(up, hash_flow(self.0, f))
    }
}

/// [`HashPick`] of [`HashFields::L3L4`], the fields a constant. In a loop, IPv4 UDP
/// and TCP frames without options or fragments are hashed from the one-step read;
/// any other frame leaves the loop, so the general read is not compiled into it.
struct L3L4Pick;

impl Pick for L3L4Pick {
    #[inline(always)]
    fn pick(&self, up: &UplinkEntry, f: &FrameView, _: &mut SelectCtx) -> u16 {
        hashed_port(up, hash_flow(HashFields::L3L4, f))
    }

    #[inline(always)]
    fn pick_in_loop(&self, up: &UplinkEntry, f: &FrameView, _: &mut SelectCtx) -> Option<u16> {
        let (pair, ports) = f.udp_tcp_v4_words()?;
        Some(hashed_port(up, hash_l3l4_words(pair, ports)))
    }
}

/// Frame by frame through [`Distribution::select`] (round-robin, least-pending,
/// per-vNIC modes) for the vNIC given.
struct SelectPick(u32);

impl Pick for SelectPick {
    #[inline(always)]
    fn pick(&self, up: &UplinkEntry, f: &FrameView, ctx: &mut SelectCtx) -> u16 {
        up.dist
            .select(f, self.0, ctx)
            .and_then(|i| up.members.get(i).copied())
            .unwrap_or(NO_PORT)
    }
}

/// The member port of flow hash `h` on `up` under [`BurstPick::Hash`] ([`NO_PORT`]:
/// no usable member). *Fast path*: one load.
#[inline(always)]
fn hashed_port(up: &UplinkEntry, h: u64) -> u16 {
    up.ports.by_bucket[bucket_of(h)]
}

/// Sends a frame of vNIC port `port` out of uplink member port `member`: through the
/// vNIC's bandwidth gate `bw` when the policy is on, else straight to the member's
/// tx buffer. Without a member ([`NO_PORT`]), counted as a `no_usable_member` drop.
#[inline(always)]
fn send_uplink(
    out: &mut TxPath,
    bw: &mut Option<&mut VnicBw>,
    now: Nanos,
    port: u16,
    member: u16,
    m: Mbuf,
) {
    if member == NO_PORT {
        drop(m);
        return no_member(out, port);
    }
    match bw {
        Some(b) => admit_uplink(out, b, now, member, m),
        None => out.enqueue(member, m),
    }
}

/// A frame of vNIC port `port` that found no usable uplink member: counted as a drop.
#[cold]
#[inline(never)]
fn no_member(out: &TxPath, port: u16) {
    out.stats.ports[port as usize].drop_one(DropReason::NoUsableMember);
}

/// The state of one burst in [`Worker::rx_from_nic`]: what holds for the whole burst,
/// and what the last frames' destination lookup found.
struct NicRx {
    port: u16,
    uplink: u16,
    member: u8,
    /// Whether this member delivers at all; group-addressed frames are checked per
    /// frame.
    accepts: bool,
    /// The DoS path inspects whole flows; without it no IP/L4 header is read. It is
    /// switched on and off between iterations, never within a burst.
    dos_on: bool,
    /// The last unicast destination looked up (u64::MAX: none; no MAC key has the
    /// upper 16 bits set), the vNIC it belongs to, and that vNIC with its port when it
    /// is on this uplink (frames are delivered only to those).
    last_dst: u64,
    found: Option<u32>,
    here: Option<(u32, u16)>,
    /// Without the DoS path: the Ethernet header of the last frame delivered (an
    /// untagged unicast to a vNIC of this uplink) and its vNIC port. A frame with the
    /// same 14 bytes goes to the same port, with no checks repeated.
    seen: Option<(EthHeaderKey, u16)>,
}

/// What a worker transmits through: its tx queue on each port, a tx buffer per port,
/// and which buffers hold frames (a bit per port).
struct TxPath {
    /// The worker's tx queue on each port, by port id.
    queues: Vec<Option<TxSlot>>,
    /// A bit per port id whose queue must not be given chained mbufs
    /// ([`single_seg_ports`]).
    single_seg: u64,
    /// The longest frame each port (by id) may send: a NIC's MTU with an Ethernet
    /// header and a VLAN tag, a vNIC's likewise or `u32::MAX` when it sets no MTU
    /// ([`TxPath::refresh_limits`]).
    frame_max: [u32; MAX_PORTS],
    /// No frame this long or shorter is refused by any port: the least of
    /// `frame_max` over the ports this worker sends to, and [`ONE_SEGMENT_MAX`] (a
    /// longer frame may be a chain).
    short_max: u32,
    /// A buffer per port id (below [`MAX_PORTS`]), and [`SINK`].
    bufs: [TxBuf; TX_BUFS],
    pending: u64,
    stats: Arc<WorkerStats>,
}

/// The most bytes one of the switch's mbufs holds (its pool's data room less the
/// headroom). A longer frame is a chain of segments; a frame this long or shorter is
/// never one, since the PMDs the switch receives from (vhost-user, pcap; NICs run
/// without rx scatter) fill a segment before they chain another.
pub const ONE_SEGMENT_MAX: u32 = 2048;

/// Tx buffers of a worker: one per port id, and above them the sink.
const TX_BUFS: usize = 2 * MAX_PORTS;
/// The buffer a member pick of [`NO_PORT`] lands in ([`TxPath::try_push`] indexes the
/// buffers by port id modulo [`TX_BUFS`]): frames for no usable member, which
/// [`direct_run`] counts as drops and frees instead of testing every frame's pick.
const SINK: usize = NO_PORT as usize % TX_BUFS;
const _: () = assert!(SINK >= MAX_PORTS && TX_BUFS.is_power_of_two());

/// Frames buffered for one port, and their bytes.
///
/// `bytes` comes first so that it is not next to `frames`' count: adjacent, the
/// compiler added the two in one vector operation, six instructions for two adds.
#[derive(Default)]
#[repr(C)]
struct TxBuf {
    /// The bytes of `frames`, added up as they are buffered (while the frame's mbuf is
    /// being read anyway), so a flush does not read every mbuf once more.
    bytes: u64,
    frames: Burst<TX_BURST>,
}

impl TxPath {
    /// Puts a frame on `port`'s tx buffer, flushing first when it is full.
    #[inline(always)]
    fn enqueue(&mut self, port: u16, m: Mbuf) {
        let len = m.pkt_len();
        self.enqueue_len(port, m, len);
    }

    /// [`enqueue`](Self::enqueue) of a frame whose length the caller has read already.
    #[inline(always)]
    fn enqueue_len(&mut self, port: u16, m: Mbuf, len: u32) {
        let p = port as usize % TX_BUFS;
        // Marked pending by its first frame only.
        if self.bufs[p].frames.is_empty() {
            self.pending |= 1 << p;
        }
        self.push_marked(port, m, len);
    }

    /// [`enqueue_len`](Self::enqueue_len) onto a buffer the caller has marked pending
    /// already (a bit of `pending` set with no frame buffered is harmless: its flush
    /// finds nothing to send).
    #[inline(always)]
    fn push_marked(&mut self, port: u16, m: Mbuf, len: u32) {
        // Port ids are below MAX_PORTS (checked when a port is added), so the mask
        // changes none of them; it replaces a bounds check.
        let p = port as usize % TX_BUFS;
        debug_assert!(self.pending & (1 << p) != 0);
        if let Err(m) = self.try_push(p, m, len) {
            self.enqueue_full(p, m);
        }
    }

    /// [`push_marked`](Self::push_marked) onto buffer `i` (a port id, or [`SINK`] for
    /// [`NO_PORT`], modulo [`TX_BUFS`]) without the call when the buffer is full: the
    /// frame is given back, for [`enqueue_full`](Self::enqueue_full). So is a frame
    /// longer than one mbuf ([`ONE_SEGMENT_MAX`]), which may be a chain: a branch
    /// here, the check out of line there, and no call in the loops that buffer.
    #[inline(always)]
    fn try_push(&mut self, i: usize, m: Mbuf, len: u32) -> Result<(), Mbuf> {
        if len > self.short_max {
            return Err(m);
        }
        self.push_short(i, m, len)
    }

    /// The longest frame [`direct_loop`] may buffer for an uplink whose member ports
    /// are the bits of `mask`: within every member's `frame_max` and one mbuf (a
    /// longer frame may be a chain). Once a run.
    #[inline(always)]
    fn run_max(&self, mask: u64) -> u32 {
        let mut max = ONE_SEGMENT_MAX;
        let mut bits = mask;
        while bits != 0 {
            let p = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            max = max.min(self.frame_max.get(p).copied().unwrap_or(u32::MAX));
        }
        max
    }

    /// Takes each port's limits from the worker's tx queues (which take chains) and
    /// from `snap` (each port's longest frame).
    fn refresh_limits(&mut self, snap: &Snapshot) {
        self.single_seg = single_seg_ports(&self.queues);
        let mut short = ONE_SEGMENT_MAX;
        for (p, max) in self.frame_max.iter_mut().enumerate() {
            *max = snap
                .ports
                .get(p)
                .and_then(|e| e.as_ref())
                .map_or(u32::MAX, |e| e.frame_max);
            if self.queues.get(p).is_some_and(|q| q.is_some()) {
                short = short.min(*max);
            }
        }
        self.short_max = short;
    }

    /// [`try_push`](Self::try_push) without the length check, for a loop that made it
    /// ([`TxPath::run_max`]).
    #[inline(always)]
    fn push_short(&mut self, i: usize, m: Mbuf, len: u32) -> Result<(), Mbuf> {
        let buf = &mut self.bufs[i];
        buf.frames.push(m)?;
        buf.bytes += len as u64;
        Ok(())
    }

    /// Frees the frames of the [`SINK`], counting them as drops of vNIC port `port`
    /// for want of a usable member.
    #[cold]
    #[inline(never)]
    fn empty_sink(&mut self, port: u16) {
        let sink = &mut self.bufs[SINK];
        sink.bytes = 0;
        let n = sink.frames.len() as u64;
        sink.frames.free_all();
        bump(
            &self.stats.ports[port as usize].drops[DropReason::NoUsableMember as usize],
            n,
        );
    }

    /// A frame [`try_push`](Self::try_push) gave back for buffer `p`: one longer than
    /// `short_max`, or any frame for a full buffer. A frame longer than port `p`'s
    /// `frame_max` (its MTU) is freed and counted as [`DropReason::MtuExceeded`] of
    /// that port; a chain of segments for a port whose device does not transmit chains
    /// as [`DropReason::ChainUnsupported`] (without the offload, a PMD may send the
    /// first segment and never free the rest). Otherwise a full buffer is flushed and
    /// the frame buffered.
    #[cold]
    #[inline(never)]
    fn enqueue_full(&mut self, p: usize, m: Mbuf) {
        if p < MAX_PORTS {
            let refused = if m.pkt_len() > self.frame_max[p] {
                Some(DropReason::MtuExceeded)
            } else if m.nb_segs() > 1 && self.single_seg & (1u64 << p) != 0 {
                Some(DropReason::ChainUnsupported)
            } else {
                None
            };
            if let Some(why) = refused {
                drop(m);
                self.stats.ports[p].drop_one(why);
                return;
            }
        }
        if self.bufs[p].frames.is_full() {
            self.flush(p);
        }
        let len = m.pkt_len();
        let buf = &mut self.bufs[p];
        match buf.frames.push(m) {
            Ok(()) => {
                buf.bytes += len as u64;
                self.pending |= 1 << p;
            }
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
        let buf = &mut self.bufs[p];
        let mut bytes = std::mem::take(&mut buf.bytes);
        let frames = &mut buf.frames;
        if frames.is_empty() {
            return;
        }
        let c = &self.stats.ports[p];
        let Some(txq) = self.queues[p].as_mut() else {
            for _ in 0..frames.len() {
                c.drop_one(DropReason::UnknownPort);
            }
            frames.free_all();
            return;
        };
        let n = txq.tx_burst(frames);
        if !frames.is_empty() {
            let unsent: u64 = frames.as_slice().iter().map(|m| m.pkt_len() as u64).sum();
            bytes -= unsent;
            bump(&c.drops[DropReason::TxFull as usize], frames.len() as u64);
            frames.free_all();
        }
        bump(&c.tx_pkts, n as u64);
        bump(&c.tx_bytes, bytes);
    }
}

/// Counts a frame the DoS defence held for the vNIC on port `port` and then could not
/// deliver to it (the vNIC is gone, lost its protection or its slot changed hands):
/// a `dos` drop of that port.
#[cold]
fn held_frame_lost(stats: &WorkerStats, port: u16) {
    if let Some(c) = stats.ports.get(port as usize) {
        c.drop_one(DropReason::DosDrop);
    }
}

/// The ports (a bit per port id) whose tx queue in `queues` does not take chained
/// mbufs.
fn single_seg_ports(queues: &[Option<TxSlot>]) -> u64 {
    queues
        .iter()
        .enumerate()
        .take(MAX_PORTS)
        .filter(|(_, q)| q.as_ref().is_some_and(|q| !q.multi_seg()))
        .fold(0, |bits, (p, _)| bits | 1 << p)
}

/// Applies a vNIC's allocation and shaping (`bw`) to a frame bound for the uplink
/// member `out_port`: send now, queue (bounded ring, bounded delay) or drop with a
/// reason.
#[inline(always)]
fn admit_uplink(out: &mut TxPath, bw: &mut VnicBw, now: Nanos, out_port: u16, m: Mbuf) {
    let len = m.pkt_len();
    match bw.gate.admit(len, now) {
        Verdict::Send => out.enqueue(out_port, m),
        Verdict::Queue => {
            if let Err(w) = bw.ring.push(Waiting {
                mbuf: m,
                since: now,
                port: out_port,
            }) {
                // The delay ring is full: dropped for the reason it had to wait.
                let why = bw.gate.drop_unqueued(len, now);
                drop(w);
                out.stats.ports[bw.port as usize].drop_one(bw_reason(why));
            }
        }
        Verdict::Drop(r) => out.stats.ports[bw.port as usize].drop_one(bw_reason(r)),
    }
}

/// The switch's drop counter for a bandwidth drop reason.
#[inline]
fn bw_reason(r: policy::bandwidth::DropReason) -> DropReason {
    use policy::bandwidth::DropReason as B;
    match r {
        B::OverShare => DropReason::OverShare,
        B::OverShaping => DropReason::OverShaping,
        B::LowerPriorityDegraded => DropReason::LowerPriorityDegraded,
        B::QueueFull => DropReason::QueueFull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_frames_get_the_smaller_burst() {
        assert_eq!(rx_burst_for(0) as usize, RX_BURST);
        assert_eq!(rx_burst_for(60) as usize, RX_BURST);
        assert_eq!(rx_burst_for(LARGE_FRAME) as usize, RX_BURST);
        assert_eq!(rx_burst_for(LARGE_FRAME + 1) as usize, RX_BURST_LARGE);
        assert_eq!(rx_burst_for(1518) as usize, RX_BURST_LARGE);
        assert_eq!(rx_burst_for(9000) as usize, RX_BURST_LARGE);
        assert_eq!(rx_burst_for(u32::MAX) as usize, RX_BURST_LARGE);
        // Both sizes fit the one burst buffer and a u8.
        assert!(RX_BURST_LARGE <= RX_BURST && RX_BURST <= u8::MAX as usize);
    }

    #[test]
    fn sleep_grows_by_a_step_per_light_pass_up_to_the_max_and_a_busy_pass_ends_it() {
        let max = 5 * SLEEP_STEP_NS;
        let mut cur = 0;
        let mut naps = Vec::new();
        for _ in 0..8 {
            let (nap, next) = next_sleep(cur, false, max);
            naps.push(nap / SLEEP_STEP_NS);
            cur = next;
        }
        // The first light pass does not sleep; each later one sleeps a step longer.
        assert_eq!(naps, [0, 1, 2, 3, 4, 5, 5, 5]);
        assert_eq!(next_sleep(cur, true, max), (0, 0));
        // Off: never sleeps, whatever was under way.
        assert_eq!(next_sleep(cur, false, 0), (0, 0));
        // A lowered maximum applies at once.
        assert_eq!(
            next_sleep(cur, false, 2 * SLEEP_STEP_NS),
            (2 * SLEEP_STEP_NS, 2 * SLEEP_STEP_NS)
        );
    }
}
