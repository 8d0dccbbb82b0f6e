//! The control thread: link polling, member state, slow-protocol frames, and
//! publication of new snapshots to the workers.
//!
//! # Ownership
//! The control thread owns the mutable control-plane model ([`Topology`] plus the
//! per-uplink member states). It never writes worker state: when something changes
//! (a link goes down, a member comes back) it builds a complete new [`Snapshot`] and
//! publishes it ([`crate::snapshot::Published`]). It reads the NICs' link state with
//! `rte_eth_link_get_nowait` every `link_poll_ms`, and pops slow-protocol frames the
//! workers handed over. What it wants to transmit goes through `Shared::ctl_tx`,
//! which worker 0 drains onto its own tx queues.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk_sys::Port;
use parking_lot::RwLock;

use dpdk_sys::{Burst, Mbuf, Mempool};
use policy::bandwidth::{Allocation, AllocatorConfig, DegradedMode, LimitReason, ShareAllocator};
use policy::bond::{Bond, BondConfig, BondEvent, Distribution, MemberState, Mode};
use policy::time::{bits_per_sec, Nanos, SEC};
use policy::wire::ethertype;
use policy::wire::{build_rarp, RARP_FRAME_LEN};

use crate::lacp_ctl::{LacpCtl, LacpSettings, LacpView, UNKNOWN_SPEED_MBPS};
use crate::shared::Shared;
use crate::snapshot::{PortEntry, PortRole, Snapshot, UplinkEntry, VnicEntry};
use crate::stats::{port_totals, DropReason, WorkerStats};

/// A request from the daemon's API to the control thread, answered on `reply`. The
/// control thread claims it before acting ([`crate::reply::Reply::claim`]): a request
/// its requester gave up on is dropped, never carried out.
pub enum ControlCmd {
    /// Manual failback of uplink `uplink`; replies with the number of members readmitted.
    Failback {
        /// Uplink index.
        uplink: usize,
        /// Where the answer goes.
        reply: crate::reply::Reply<u64>,
    },
    /// New teaming settings for uplink `uplink`.
    SetBond {
        /// Uplink index.
        uplink: usize,
        /// The new configuration.
        cfg: BondConfig,
        /// Where the answer goes.
        reply: crate::reply::Reply<Result<(), String>>,
    },
    /// A new topology (ports added or removed, vNICs moved, settings changed): the
    /// control thread keeps the state of every uplink whose members are unchanged,
    /// builds the rest, publishes, and replies with the snapshot generation.
    Reconfigure {
        /// The topology to run.
        topo: Box<Topology>,
        /// VM actions rebuilt for the new configuration, when the VM side changed.
        vm: Option<Box<crate::vm_ctl::VmCtl>>,
        /// Dedicated LACP queues of the ports this change added.
        lacp_queues: Vec<LacpQueue>,
        /// Where the generation goes.
        reply: crate::reply::Reply<u64>,
    },
    /// Hands the control thread its VM actions and DoS detection (once, at start).
    VmActions {
        /// Built from the configuration by the daemon.
        ctl: Box<crate::vm_ctl::VmCtl>,
        /// Answered when installed.
        reply: crate::reply::Reply<()>,
    },
}

/// LACP's dedicated queues on one member port (rte_flow steers slow-protocol frames
/// to the rx queue), owned by the control thread, which polls the rx queue and sends
/// LACPDUs on the tx queue itself — so worker load never delays LACP.
pub struct LacpQueue {
    /// DPDK port id.
    pub port: u16,
    /// The steered rx queue.
    pub rx: dpdk_sys::RxQueue,
    /// A tx queue no worker uses.
    pub tx: dpdk_sys::TxQueue,
}

/// State and reason of one uplink member, for status output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberView {
    /// NIC name.
    pub name: String,
    /// DPDK port id.
    pub port: u16,
    /// Carrier as last polled.
    pub link_up: bool,
    /// Used for distribution now.
    pub usable: bool,
    /// The teaming state (up, down, up-delay, ...).
    pub state: String,
    /// Why it is not usable (empty when usable).
    pub reason: String,
    /// Link speed in Mb/s (configured speed for virtual NICs).
    pub speed_mbps: u32,
    /// vNICs whose frames leave on this member (modes that pin MACs).
    pub pinned_vnics: Vec<String>,
}

/// An uplink as the control thread sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UplinkView {
    /// Bond or NIC name.
    pub name: String,
    /// True for a bond.
    pub is_bond: bool,
    /// Distribution mode.
    pub mode: String,
    /// Fewer usable members than configured.
    pub degraded: bool,
    /// Failback policy.
    pub failback: String,
    /// Active-backup: the active member.
    pub active_member: Option<String>,
    /// Members.
    pub members: Vec<MemberView>,
}

/// What status readers (vswitchd's printer, later vsctl) see of the control plane.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ControlView {
    /// Uplinks.
    pub uplinks: Vec<UplinkView>,
    /// vNIC link (vhost connected) by vNIC index.
    pub vnic_link: Vec<bool>,
    /// The member each vNIC's frames leave on now (modes that pin MACs), by vNIC index.
    pub vnic_member: Vec<Option<String>>,
    /// Each vNIC's transmit rate (frames it sent into the switch) over the last second, b/s.
    pub vnic_tx_bps: Vec<u64>,
    /// Each vNIC's current allocation on its uplink (bandwidth policy on), by vNIC index.
    pub vnic_allocation: Vec<Option<AllocationView>>,
    /// Each uplink's capacity now (sum of its usable members' speeds), b/s.
    pub uplink_capacity_bps: Vec<u64>,
    /// Slow-protocol frames received.
    pub slow_rx: u64,
    /// Gratuitous RARPs queued for transmission.
    pub rarps_sent: u64,
    /// Snapshot generation last published.
    pub generation: u64,
    /// LACP bonds (`lacp != off`), in uplink order.
    pub lacp: Vec<LacpView>,
    /// Slow-protocol frames from ports that are not members of a LACP bond (dropped).
    pub slow_rx_dropped: u64,
    /// VM actions and DoS state, by VM (empty until VM actions are installed).
    pub vm_actions: Vec<crate::vm_ctl::VmActionView>,
}

impl ControlView {
    /// `lacp show BOND`: the rendered LACP status of a bond, or `None` when there is no
    /// such bond or it runs no LACP.
    pub fn lacp_show(&self, bond: &str) -> Option<&str> {
        self.lacp
            .iter()
            .find(|l| l.bond == bond)
            .map(|l| l.status.as_str())
    }
}

/// A vNIC's allocation as status output shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AllocationView {
    /// Rate it may send at, b/s.
    pub rate_bps: u64,
    /// Its demand as the allocator estimates it, b/s.
    pub demand_bps: u64,
    /// Why it gets less than its demand: "none", "over-share", "lower-priority-degraded".
    pub limit: &'static str,
    /// Starved by the degraded-bond rule (claim 30): demand but shed.
    pub starved: bool,
}

/// Bandwidth state of one uplink, owned by the control thread.
struct UplinkBw {
    alloc: ShareAllocator,
    capacity: u64,
    degraded: bool,
}

/// The static part of the topology the control thread builds snapshots from.
#[derive(Debug, Clone)]
pub struct Topology {
    /// All ports.
    pub ports: Vec<PortEntry>,
    /// vNICs.
    pub vnics: Vec<VnicEntry>,
    /// Uplinks (their `dist` is replaced on every publication).
    pub uplinks: Vec<UplinkEntry>,
    /// Teaming configuration, by uplink (an unbonded NIC is a one-member active-backup).
    pub bond_configs: Vec<BondConfig>,
    /// Member NIC names, by uplink.
    pub member_names: Vec<Vec<String>>,
    /// Configured speeds (Mb/s), by uplink and member.
    pub member_speeds: Vec<Vec<Option<u32>>>,
    /// LACP settings by uplink (`None`, or no entry: LACP off).
    pub lacp: Vec<Option<LacpSettings>>,
    /// What a degraded uplink does to lower-priority vNICs, by uplink.
    pub degraded: Vec<DegradedMode>,
    /// How often allocations are recomputed (0: bandwidth policy off).
    pub allocation_interval: Duration,
    /// How LACP frames reach the control thread, by member port id (LACP bonds only).
    pub steering: Vec<(u16, String)>,
}

impl Topology {
    /// The speed member `m` of uplink `u` counts with: its configured `speed_mbps`, else
    /// what its PMD reports in `link` (0 when it reports none; see
    /// [`UplinkCtl::capacity_bps`]).
    fn member_speed(&self, u: usize, m: usize, link: &dpdk_sys::Link) -> u32 {
        self.member_speeds[u][m].unwrap_or(link.speed_mbps)
    }

    /// A snapshot with the given distributions, one per uplink.
    pub fn snapshot(&self, dists: &[Distribution]) -> Snapshot {
        let mut uplinks = self.uplinks.clone();
        for (up, d) in uplinks.iter_mut().zip(dists) {
            up.dist = d.clone();
        }
        Snapshot::new(self.ports.clone(), self.vnics.clone(), uplinks)
    }

    /// One `Bond` per uplink, with its vNICs added; the first distributions.
    pub fn bonds(&self, now: Nanos) -> Result<Vec<Bond>, String> {
        (0..self.uplinks.len())
            .map(|u| self.bond_for(u, now))
            .collect()
    }

    /// The `Bond` of uplink `u`, with its vNICs added and its links as they are now.
    pub fn bond_for(&self, u: usize, now: Nanos) -> Result<Bond, String> {
        let up = &self.uplinks[u];
        let mut b = Bond::new(self.bond_configs[u].clone(), up.members.len())
            .map_err(|e| format!("uplink {}: {e}", up.name))?;
        for &v in &up.vnics {
            let ve = &self.vnics[v as usize];
            b.add_vnic(v, ve.mac, ve.priority)
                .map_err(|e| format!("vnic {}: {e}", ve.name))?;
        }
        for (m, &port) in up.members.iter().enumerate() {
            let _ = b.link_changed(m, Port::from_id(port).link().up, now);
        }
        b.tick(now);
        b.drain_events().for_each(drop);
        Ok(b)
    }

    /// The role of a port, for tests and status.
    pub fn role_of(&self, port: u16) -> Option<PortRole> {
        self.ports.iter().find(|p| p.id == port).map(|p| p.role)
    }
}

/// Frames a member's tx must drop within one poll period to count as a stall.
const TX_STALL_DROPS: u64 = 32;

/// Per-uplink state owned by the control thread.
struct UplinkCtl {
    bond: Bond,
    published: u64,
    link: Vec<bool>,
    /// Each member's speed, Mb/s: the configured `speed_mbps`, else the PMD's as of
    /// the last link poll.
    speed_mbps: Vec<u32>,
    tx_full: Vec<u64>,
    tx_bytes: Vec<u64>,
    /// The bond's LACP, when it runs LACP.
    lacp: Option<LacpCtl>,
}

impl UplinkCtl {
    /// Member `m`'s speed as the bandwidth policy and load-based teaming count it, b/s:
    /// its speed, or [`UNKNOWN_SPEED_MBPS`] when neither the configuration nor the PMD
    /// gives one (virtio-net reports none unless told), as LACP assumes
    /// ([`crate::lacp_ctl::effective_link`]). Counted as 0, such a member gave its
    /// uplink no capacity and every vNIC on it an allocation of 0.
    fn capacity_bps(&self, m: usize) -> u64 {
        let mbps = match self.speed_mbps[m] {
            0 => UNKNOWN_SPEED_MBPS,
            s => s,
        };
        mbps as u64 * 1_000_000
    }
}

/// Says, when member `member` of `uplink` is up without a speed from its PMD or the
/// configuration, what the bandwidth policy assumes for it.
fn note_unknown_speed(uplink: &str, member: &str, link: dpdk_sys::Link, configured: Option<u32>) {
    if link.up && link.speed_mbps == 0 && configured.is_none() {
        tracing::warn!(uplink, member, assumed_mbps = UNKNOWN_SPEED_MBPS, "link up without a speed from its PMD: the bandwidth policy counts it at the assumed speed; set speed_mbps on the [[nic]] to its real one");
    }
}

/// The control thread's state.
pub struct Control {
    /// The topology it runs: `base` with the DoS failovers applied.
    topo: Topology,
    /// The topology as configured (the last `Reconfigure`, or the start).
    base: Topology,
    /// vNICs moved to another uplink by a DoS response ([0128]): (slot, uplink index).
    overrides: Vec<(u32, u16)>,
    /// The VM actions' failover generation these overrides reflect.
    failover_seen: Option<u64>,
    shared: Arc<Shared>,
    view: Arc<RwLock<ControlView>>,
    workers: Vec<Arc<WorkerStats>>,
    pool: Mempool,
    poll: Duration,
    start: Instant,
    uplinks: Vec<UplinkCtl>,
    vnic_link: Vec<bool>,
    vnic_rx_bytes: Vec<u64>,
    last_load: Nanos,
    vnic_bps: Vec<u64>,
    bw: Vec<Option<UplinkBw>>,
    last_offered: Vec<u64>,
    allocations: Vec<Option<AllocationView>>,
    alloc_out: Vec<(u32, Allocation)>,
    next_link_poll: Nanos,
    cmds: crossbeam::channel::Receiver<ControlCmd>,
    slow_rx: u64,
    rarps_sent: u64,
    slow_rx_dropped: u64,
    /// VM actions and DoS detection ([`crate::vm_ctl`]), once installed.
    vm: Option<Box<crate::vm_ctl::VmCtl>>,
    /// Dedicated LACP queues (ports where rte_flow steering works).
    lacp_queues: Vec<LacpQueue>,
    /// Frames on a dedicated LACP queue that were not slow-protocol frames (dropped).
    steered_other: u64,
}

impl Control {
    /// Builds the control state around bonds already created by [`Topology::bonds`].
    // Called once, from Switch::start, which has each of these in hand.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topo: Topology,
        bonds: Vec<Bond>,
        shared: Arc<Shared>,
        view: Arc<RwLock<ControlView>>,
        workers: Vec<Arc<WorkerStats>>,
        pool: Mempool,
        poll: Duration,
        start: Instant,
        cmds: crossbeam::channel::Receiver<ControlCmd>,
        lacp_queues: Vec<LacpQueue>,
    ) -> Control {
        let now = start.elapsed().as_nanos() as Nanos;
        let uplinks = bonds
            .into_iter()
            .enumerate()
            .map(|(u, bond)| Self::uplink_ctl(&topo, &workers, u, bond, now))
            .collect();
        let vnic_link = vec![false; topo.vnics.len()];
        let vnic_rx_bytes = vec![0; topo.vnics.len()];
        let n_vnics = topo.vnics.len();
        Control {
            base: topo.clone(),
            overrides: Vec::new(),
            failover_seen: None,
            topo,
            shared,
            view,
            workers,
            pool,
            poll,
            start,
            uplinks,
            vnic_link,
            vnic_rx_bytes,
            last_load: 0,
            vnic_bps: vec![0; n_vnics],
            bw: Vec::new(),
            last_offered: vec![0; n_vnics],
            allocations: vec![None; n_vnics],
            alloc_out: Vec::with_capacity(n_vnics),
            next_link_poll: 0,
            cmds,
            slow_rx: 0,
            rarps_sent: 0,
            slow_rx_dropped: 0,
            vm: None,
            lacp_queues,
            steered_other: 0,
        }
    }

    /// The control state of uplink `u` around its bond; links and speeds as they are now.
    fn uplink_ctl(
        topo: &Topology,
        workers: &[Arc<WorkerStats>],
        u: usize,
        bond: Bond,
        now: Nanos,
    ) -> UplinkCtl {
        let up = &topo.uplinks[u];
        let totals: Vec<_> = up
            .members
            .iter()
            .map(|&p| port_totals(workers, p))
            .collect();
        let links: Vec<_> = up
            .members
            .iter()
            .map(|&p| Port::from_id(p).link())
            .collect();
        for (m, &l) in links.iter().enumerate() {
            note_unknown_speed(
                &up.name,
                &topo.member_names[u][m],
                l,
                topo.member_speeds[u][m],
            );
        }
        UplinkCtl {
            lacp: Self::lacp_for(topo, u, now),
            published: bond.generation(),
            link: links.iter().map(|l| l.up).collect(),
            speed_mbps: links
                .iter()
                .enumerate()
                .map(|(m, l)| topo.member_speed(u, m, l))
                .collect(),
            tx_full: totals
                .iter()
                .map(|t| t.drops_of(DropReason::TxFull))
                .collect(),
            tx_bytes: totals.iter().map(|t| t.tx_bytes).collect(),
            bond,
        }
    }

    /// The LACP of uplink `u`, if it is a bond with LACP on; its links as they are now.
    fn lacp_for(topo: &Topology, u: usize, now: Nanos) -> Option<LacpCtl> {
        let up = &topo.uplinks[u];
        let settings = topo.lacp.get(u)?.as_ref().filter(|_| up.is_bond)?;
        let macs: Vec<[u8; 6]> = up.members.iter().map(|&p| Port::from_id(p).mac()).collect();
        match LacpCtl::new(
            &up.name,
            &topo.member_names[u],
            &up.members,
            &macs,
            &topo.member_speeds[u],
            settings,
            now,
        ) {
            Ok(mut l) => {
                for (m, &p) in up.members.iter().enumerate() {
                    l.set_link(m, Port::from_id(p).link(), now);
                }
                Some(l)
            }
            Err(e) => {
                tracing::error!(bond = %up.name, "LACP not started: {e}");
                None
            }
        }
    }

    /// LACP: received frames, timers, transmission, verdicts into the bonds, logging.
    fn run_lacp(&mut self, now: Nanos) {
        // Steered frames first: the dedicated queues, polled here.
        let mut burst: Burst<32> = Burst::new();
        for i in 0..self.lacp_queues.len() {
            let port = self.lacp_queues[i].port;
            for _ in 0..4 {
                if self.lacp_queues[i].rx.rx_burst(&mut burst) == 0 {
                    break;
                }
                for m in burst.drain() {
                    let d = m.data();
                    if d.len() >= 14 && u16::from_be_bytes([d[12], d[13]]) == ethertype::SLOW {
                        self.lacp_frame(port, m, now);
                    } else {
                        self.steered_other += 1;
                    }
                }
            }
        }
        // Bounded so a flood of slow frames cannot hold the control loop.
        for _ in 0..self.shared.slow_rx.capacity() {
            let Some((port, m)) = self.shared.slow_rx.pop() else {
                break;
            };
            self.lacp_frame(port, m, now);
        }
        let (pool, shared, queues) = (&self.pool, &self.shared, &mut self.lacp_queues);
        let mut send = |port: u16, frame: &[u8]| {
            let Some(m) = Mbuf::from_bytes(pool, frame) else {
                return false;
            };
            match queues.iter_mut().find(|q| q.port == port) {
                Some(q) => {
                    let mut b: Burst<1> = Burst::new();
                    let _ = b.push(m);
                    q.tx.tx_burst(&mut b) == 1
                }
                None => shared.ctl_tx.push((port, m)).is_ok(),
            }
        };
        for c in &mut self.uplinks {
            if let Some(l) = c.lacp.as_mut() {
                l.run(now, &mut send);
                l.apply(&mut c.bond, now);
                l.observe();
            }
        }
    }

    /// One received slow-protocol frame to the LACP of the bond its port belongs to.
    fn lacp_frame(&mut self, port: u16, m: Mbuf, now: Nanos) {
        self.slow_rx += 1;
        let owner = self.uplinks.iter_mut().find_map(|c| {
            let l = c.lacp.as_mut()?;
            l.member_of(port).map(|i| (l, i))
        });
        match owner {
            Some((l, i)) => {
                let _ = l.on_frame(i, m.data(), now);
            }
            None => {
                self.slow_rx_dropped += 1;
                tracing::debug!(
                    port,
                    len = m.data().len(),
                    "slow-protocol frame on a port without LACP dropped"
                );
            }
        }
    }

    fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    /// Runs until the quit flag is set.
    pub fn run(mut self) {
        self.bw = self.init_bandwidth();
        let period = if self.topo.allocation_interval.is_zero() {
            self.poll
        } else {
            self.poll.min(self.topo.allocation_interval)
        };
        let mut next = Instant::now();
        while !self.shared.quit.load(Ordering::Relaxed) {
            let now = self.now();
            if now >= self.next_link_poll {
                self.next_link_poll = now + self.poll.as_nanos() as Nanos;
                self.poll_links(now);
                self.poll_tx_stalls(now);
                self.report_load(now);
            }
            self.run_lacp(now);
            while let Ok(cmd) = self.cmds.try_recv() {
                self.handle_cmd(cmd, now);
            }
            let mut publish = false;
            for u in 0..self.uplinks.len() {
                self.uplinks[u].bond.tick(now);
                self.handle_events(u);
                publish |= self.uplinks[u].bond.generation() != self.uplinks[u].published;
            }
            if publish {
                self.publish();
            }
            self.allocate(now);
            self.run_vm_actions(now);
            self.apply_failovers(now);
            self.update_view();
            next += period;
            let now = Instant::now();
            if next > now {
                crate::nap::nap(next - now);
            } else {
                next = now;
            }
        }
    }

    /// Capacity of uplink `u` now: the sum of its usable members' speeds, b/s.
    fn capacity(&self, u: usize) -> u64 {
        let up = &self.topo.uplinks[u];
        let bond = &self.uplinks[u].bond;
        up.members
            .iter()
            .enumerate()
            .filter(|(m, _)| bond.member_status(*m).is_some_and(|s| s.usable))
            .map(|(m, _)| self.uplinks[u].capacity_bps(m))
            .sum()
    }

    fn init_bandwidth(&mut self) -> Vec<Option<UplinkBw>> {
        let now = self.now();
        (0..self.topo.uplinks.len())
            .map(|u| self.uplink_bw(u, now))
            .collect()
    }

    /// A fresh allocator for uplink `u` with its vNICs (None: bandwidth policy off).
    fn uplink_bw(&self, u: usize, now: Nanos) -> Option<UplinkBw> {
        if self.topo.allocation_interval.is_zero() {
            return None;
        }
        let cfg = AllocatorConfig {
            interval: self.topo.allocation_interval.as_nanos() as Nanos,
            ..AllocatorConfig::default()
        };
        let capacity = self.capacity(u);
        let mut alloc = ShareAllocator::with_config(capacity, self.topo.degraded[u], cfg);
        for &v in &self.topo.uplinks[u].vnics {
            if let Err(e) = alloc.add_vnic(v, self.topo.vnics[v as usize].bandwidth) {
                tracing::error!(vnic = %self.topo.vnics[v as usize].name, "bandwidth settings refused: {e}");
            }
        }
        let degraded = self.uplinks[u].bond.is_degraded();
        alloc.set_capacity(capacity, degraded, now);
        Some(UplinkBw {
            alloc,
            capacity,
            degraded,
        })
    }

    /// Runs `new` from now on (see [`ControlCmd::Reconfigure`]); returns the
    /// generation of the snapshot that carries it.
    fn adopt(
        &mut self,
        new: Topology,
        vm: Option<Box<crate::vm_ctl::VmCtl>>,
        lacp_queues: Vec<LacpQueue>,
        now: Nanos,
    ) -> u64 {
        let old = std::mem::replace(&mut self.topo, new);
        // Dedicated LACP queues of ports that are gone are released before the switch
        // closes those ports (it waits for this command's answer).
        let ports: Vec<u16> = self.topo.ports.iter().map(|p| p.id).collect();
        self.lacp_queues.retain(|q| ports.contains(&q.port));
        self.lacp_queues.extend(lacp_queues);
        let mut old_ctl: Vec<Option<UplinkCtl>> = std::mem::take(&mut self.uplinks)
            .into_iter()
            .map(Some)
            .collect();
        let mut old_bw: Vec<Option<UplinkBw>> = std::mem::take(&mut self.bw);

        // Per-vNIC state: a slot whose occupant changed starts afresh.
        let n = self.topo.vnics.len();
        self.vnic_link.resize(n, false);
        self.vnic_rx_bytes.resize(n, 0);
        self.vnic_bps.resize(n, 0);
        self.last_offered.resize(n, 0);
        self.allocations.resize(n, None);
        let same_vnic =
            |a: &VnicEntry, b: &VnicEntry| a.live == b.live && a.port == b.port && a.mac == b.mac;
        for (v, ve) in self.topo.vnics.iter().enumerate() {
            if old.vnics.get(v).is_some_and(|o| same_vnic(o, ve)) {
                continue;
            }
            self.vnic_link[v] = false;
            self.vnic_rx_bytes[v] = if ve.live {
                port_totals(&self.workers, ve.port).rx_bytes
            } else {
                0
            };
            self.vnic_bps[v] = 0;
            self.last_offered[v] = 0;
            self.allocations[v] = None;
            let w = &self.shared.vnic_bw[v];
            w.offered_bytes.store(0, Ordering::Relaxed);
            w.sent_bytes.store(0, Ordering::Relaxed);
            w.allocation.store(0, Ordering::Relaxed);
        }

        // Uplinks: keep the state (member states, LACP, allocator) of every uplink
        // whose members are the same ports; build the others. `prev[u]`: the old index
        // of new uplink `u`, when it is kept.
        let prev: Vec<Option<usize>> = self
            .topo
            .uplinks
            .iter()
            .map(|up| {
                old.uplinks.iter().position(|o| {
                    o.name == up.name && o.members == up.members && o.is_bond == up.is_bond
                })
            })
            .collect();
        // Indexed: `u` addresses the new topology's uplinks, `prev`, and bond_configs,
        // while `self.uplinks` grows.
        #[allow(clippy::needless_range_loop)]
        for u in 0..self.topo.uplinks.len() {
            let up = &self.topo.uplinks[u];
            let kept = prev[u].and_then(|p| old_ctl[p].take().map(|c| (p, c)));
            let ctl = match kept {
                Some((p, mut c)) => {
                    if old.bond_configs[p] != self.topo.bond_configs[u] {
                        if let Err(e) = c.bond.set_config(self.topo.bond_configs[u].clone(), now) {
                            tracing::error!(uplink = %up.name, "bond settings refused: {e}");
                        }
                    }
                    let before = &old.uplinks[p].vnics;
                    for &v in before {
                        let stays = up.vnics.contains(&v)
                            && same_vnic(&old.vnics[v as usize], &self.topo.vnics[v as usize]);
                        if !stays {
                            let _ = c.bond.remove_vnic(v);
                        } else if old.vnics[v as usize].priority
                            != self.topo.vnics[v as usize].priority
                        {
                            let _ = c
                                .bond
                                .set_vnic_priority(v, self.topo.vnics[v as usize].priority);
                        }
                    }
                    for &v in &up.vnics {
                        let ve = &self.topo.vnics[v as usize];
                        let was = before.contains(&v) && same_vnic(&old.vnics[v as usize], ve);
                        if !was {
                            if let Err(e) = c.bond.add_vnic(v, ve.mac, ve.priority) {
                                tracing::error!(vnic = %ve.name, uplink = %up.name, "vNIC not added to its uplink: {e}");
                            }
                        }
                    }
                    if old.lacp.get(p) != self.topo.lacp.get(u) {
                        tracing::info!(uplink = %up.name, "LACP settings changed: LACP restarts on this bond");
                        c.lacp = Self::lacp_for(&self.topo, u, now);
                    }
                    for (m, &port) in up.members.iter().enumerate() {
                        c.speed_mbps[m] = self.topo.member_speed(u, m, &Port::from_id(port).link());
                    }
                    c
                }
                None => {
                    let bond = match self.topo.bond_for(u, now) {
                        Ok(b) => b,
                        Err(e) => {
                            // Validated before; a bond that still fails runs with defaults.
                            tracing::error!(uplink = %up.name, "{e}; using default teaming");
                            let mut t = self.topo.clone();
                            t.bond_configs[u] = BondConfig::default();
                            t.bond_for(u, now).expect("default bond config is valid")
                        }
                    };
                    tracing::info!(uplink = %up.name, members = ?self.topo.member_names[u], "uplink built");
                    Self::uplink_ctl(&self.topo, &self.workers, u, bond, now)
                }
            };
            self.uplinks.push(ctl);
        }
        let mut bw = Vec::with_capacity(self.topo.uplinks.len());
        #[allow(clippy::needless_range_loop)] // as above
        for u in 0..self.topo.uplinks.len() {
            let up = &self.topo.uplinks[u];
            let kept =
                prev[u].and_then(|p| old_bw.get_mut(p).and_then(Option::take).map(|b| (p, b)));
            bw.push(match kept {
                Some((p, mut b)) if !self.topo.allocation_interval.is_zero() => {
                    let before = &old.uplinks[p].vnics;
                    for &v in before {
                        if !up.vnics.contains(&v)
                            || !same_vnic(&old.vnics[v as usize], &self.topo.vnics[v as usize])
                        {
                            let _ = b.alloc.remove_vnic(v);
                        }
                    }
                    for &v in &up.vnics {
                        let ve = &self.topo.vnics[v as usize];
                        let r = if b.alloc.vnic(v).is_some() {
                            if b.alloc.vnic(v) != Some(&ve.bandwidth) {
                                b.alloc.set_vnic(v, ve.bandwidth)
                            } else {
                                Ok(())
                            }
                        } else {
                            b.alloc.add_vnic(v, ve.bandwidth)
                        };
                        if let Err(e) = r {
                            tracing::error!(vnic = %ve.name, "bandwidth settings refused: {e}");
                        }
                    }
                    if b.alloc.mode() != self.topo.degraded[u] {
                        b.alloc.set_mode(self.topo.degraded[u]);
                    }
                    Some(b)
                }
                _ => self.uplink_bw(u, now),
            });
        }
        self.bw = bw;
        if let Some(vm) = vm {
            self.install_vm_actions(vm, now);
        }
        self.publish()
    }

    /// Recomputes every vNIC's allocation from the offered bytes the workers published
    /// and the uplinks' current capacity ([0116]), and publishes them.
    fn allocate(&mut self, now: Nanos) {
        let mut demand: Vec<(u32, u64)> = Vec::new();
        for u in 0..self.bw.len() {
            let capacity = self.capacity(u);
            let degraded = self.uplinks[u].bond.is_degraded();
            let Some(bw) = self.bw[u].as_mut() else {
                continue;
            };
            if capacity != bw.capacity || degraded != bw.degraded {
                tracing::info!(uplink = %self.topo.uplinks[u].name, capacity_mbps = capacity / 1_000_000, degraded, "uplink capacity changed");
                bw.capacity = capacity;
                bw.degraded = degraded;
                bw.alloc.set_capacity(capacity, degraded, now);
            }
            demand.clear();
            for &v in &self.topo.uplinks[u].vnics {
                let offered = self.shared.vnic_bw[v as usize]
                    .offered_bytes
                    .load(Ordering::Relaxed);
                demand.push((v, offered.saturating_sub(self.last_offered[v as usize])));
                self.last_offered[v as usize] = offered;
            }
            self.alloc_out.clear();
            bw.alloc.allocate(now, &demand, &mut self.alloc_out);
            for &(v, a) in &self.alloc_out {
                self.shared.vnic_bw[v as usize]
                    .allocation
                    .store(a.to_bits().max(1), Ordering::Relaxed);
                let demand_bps = bw.alloc.demand_bps(v).unwrap_or(0);
                let limit = match a.reason_if_limited {
                    LimitReason::NotLimited => "none",
                    LimitReason::OverShare => "over-share",
                    LimitReason::LowerPriorityDegraded => "lower-priority-degraded",
                };
                // Held by the allocator until the vNIC has gone unshed for a while,
                // so this flag and its log line do not flicker.
                let starved = bw.alloc.is_starved(v);
                let prev = self.allocations[v as usize]
                    .map(|p| p.starved)
                    .unwrap_or(false);
                if starved != prev {
                    let ve = &self.topo.vnics[v as usize];
                    if starved {
                        tracing::warn!(vnic = %ve.name, vm = %ve.vm, uplink = %self.topo.uplinks[u].name, "vNIC starved: lower priority on a degraded uplink");
                    } else {
                        tracing::info!(vnic = %ve.name, vm = %ve.vm, "vNIC no longer starved");
                    }
                }
                self.allocations[v as usize] = Some(AllocationView {
                    rate_bps: a.rate_bps,
                    demand_bps,
                    limit,
                    starved,
                });
            }
        }
    }

    /// The configured topology with the DoS failovers applied: each overridden vNIC
    /// moved from its uplink's flood list to the alternate uplink's.
    fn effective(&self) -> Topology {
        let mut t = self.base.clone();
        for &(v, u) in &self.overrides {
            let (vi, ui) = (v as usize, u as usize);
            if vi >= t.vnics.len() || !t.vnics[vi].live || ui >= t.uplinks.len() {
                continue;
            }
            let from = t.vnics[vi].uplink as usize;
            if from == ui {
                continue;
            }
            t.uplinks[from].vnics.retain(|&x| x != v);
            t.uplinks[ui].vnics.push(v);
            t.vnics[vi].uplink = u;
        }
        t
    }

    /// Follows the VM actions' DoS failovers: a changed set moves the vNICs (a new
    /// topology, adopted and published like a configuration change).
    fn apply_failovers(&mut self, now: Nanos) {
        let Some(vm) = self.vm.as_ref() else { return };
        let g = vm.failover_generation();
        if self.failover_seen == Some(g) {
            return;
        }
        self.failover_seen = Some(g);
        let overrides: Vec<(u32, u16)> = vm
            .failovers()
            .into_iter()
            .filter_map(|(v, name)| {
                let u = self.base.uplinks.iter().position(|u| u.name == name)?;
                Some((v, u as u16))
            })
            .collect();
        if overrides == self.overrides {
            return;
        }
        self.overrides = overrides;
        let t = self.effective();
        let g = self.adopt(t, None, Vec::new(), now);
        tracing::info!(
            moved = self.overrides.len(),
            generation = g,
            "DoS failover: vNIC uplinks changed"
        );
    }

    /// VM actions and DoS detection: bond and starvation state in, actions out (to
    /// the `vm-actions` thread), mitigation words published.
    fn run_vm_actions(&mut self, now: Nanos) {
        let Some(vm) = self.vm.as_mut() else { return };
        let (uplinks, allocations) = (&self.uplinks, &self.allocations);
        vm.run(
            now,
            &self.shared.dos,
            |u| uplinks[u].bond.is_degraded(),
            |v| {
                allocations
                    .get(v as usize)
                    .copied()
                    .flatten()
                    .is_some_and(|a| a.starved)
            },
        );
    }

    /// Runs `ctl` from now on: it takes over the running VM actions' state (if any),
    /// starts, and replaces them.
    fn install_vm_actions(&mut self, mut ctl: Box<crate::vm_ctl::VmCtl>, now: Nanos) {
        if let Some(old) = self.vm.as_deref_mut() {
            ctl.take_over(old);
        }
        ctl.start(now, &self.shared.dos);
        // `old` now holds the new one's idle executor (see `take_over`): dropping it
        // ends a thread with nothing queued.
        drop(self.vm.replace(ctl));
    }

    fn handle_cmd(&mut self, cmd: ControlCmd, now: Nanos) {
        let (claimed, what) = match &cmd {
            ControlCmd::Reconfigure { reply, .. } => (reply.claim(), "reconfigure"),
            ControlCmd::VmActions { reply, .. } => (reply.claim(), "VM actions"),
            ControlCmd::Failback { reply, .. } => (reply.claim(), "failback"),
            ControlCmd::SetBond { reply, .. } => (reply.claim(), "set-bond"),
        };
        if !claimed {
            tracing::warn!(request = what, "a request its requester gave up on (the control thread was late) is dropped, not carried out");
            return;
        }
        match cmd {
            ControlCmd::Reconfigure {
                topo,
                vm,
                lacp_queues,
                reply,
            } => {
                self.base = *topo;
                if vm.is_some() {
                    // New VM actions: their failovers are read afresh.
                    self.overrides.clear();
                    self.failover_seen = None;
                }
                let t = self.effective();
                let g = self.adopt(t, vm, lacp_queues, now);
                reply.send(g);
            }
            ControlCmd::VmActions { ctl, reply } => {
                self.failover_seen = None;
                self.install_vm_actions(ctl, now);
                reply.send(());
            }
            ControlCmd::Failback { uplink, reply } => {
                let n = self
                    .uplinks
                    .get_mut(uplink)
                    .map(|u| u.bond.manual_failback(now) as u64)
                    .unwrap_or(0);
                tracing::info!(uplink = %self.topo.uplinks.get(uplink).map(|u| u.name.as_str()).unwrap_or("?"), readmitted = n, "manual failback");
                reply.send(n);
            }
            ControlCmd::SetBond { uplink, cfg, reply } => {
                let r = match self.uplinks.get_mut(uplink) {
                    Some(u) => u
                        .bond
                        .set_config(cfg.clone(), now)
                        .map_err(|e| e.to_string()),
                    None => Err(format!("no uplink {uplink}")),
                };
                if r.is_ok() {
                    // The configured topology too: a DoS failover rebuilds `topo`
                    // from `base`, which would otherwise put the old settings back.
                    if let Some(b) = self.base.bond_configs.get_mut(uplink) {
                        *b = cfg.clone();
                    }
                    self.topo.bond_configs[uplink] = cfg;
                    tracing::info!(uplink = %self.topo.uplinks[uplink].name, mode = %self.topo.bond_configs[uplink].mode, "bond reconfigured");
                }
                reply.send(r);
            }
        }
    }

    fn poll_links(&mut self, now: Nanos) {
        for (u, up) in self.topo.uplinks.iter().enumerate() {
            let ctl = &mut self.uplinks[u];
            for (m, &port) in up.members.iter().enumerate() {
                let l = Port::from_id(port).link();
                if let Some(lacp) = ctl.lacp.as_mut() {
                    lacp.set_link(m, l, now);
                }
                ctl.speed_mbps[m] = self.topo.member_speed(u, m, &l);
                if l.up != ctl.link[m] {
                    note_unknown_speed(
                        &up.name,
                        &self.topo.member_names[u][m],
                        l,
                        self.topo.member_speeds[u][m],
                    );
                    tracing::info!(
                        uplink = %up.name,
                        member = %self.topo.member_names[u][m],
                        link = if l.up { "up" } else { "down" },
                        "link state changed"
                    );
                    ctl.link[m] = l.up;
                    let _ = ctl.bond.link_changed(m, l.up, now);
                }
            }
        }
        for (i, v) in self.topo.vnics.iter().enumerate().filter(|(_, v)| v.live) {
            let up = Port::from_id(v.port).link().up;
            if up != self.vnic_link[i] {
                tracing::info!(vnic = %v.name, vm = %v.vm, link = if up { "up" } else { "down" }, "vNIC link changed");
                self.vnic_link[i] = up;
            }
        }
    }

    /// A member whose tx ring keeps overflowing is out of distribution for a short
    /// hold-down ([0065], [0103]); the bond retries it on its own schedule.
    fn poll_tx_stalls(&mut self, now: Nanos) {
        for (u, up) in self.topo.uplinks.iter().enumerate() {
            if up.members.len() < 2 {
                continue;
            }
            let ctl = &mut self.uplinks[u];
            for (m, &port) in up.members.iter().enumerate() {
                let full = port_totals(&self.workers, port).drops_of(DropReason::TxFull);
                if full.saturating_sub(ctl.tx_full[m]) >= TX_STALL_DROPS && ctl.link[m] {
                    tracing::warn!(uplink = %up.name, member = %self.topo.member_names[u][m], dropped = full - ctl.tx_full[m], "tx stalled: member out for lack of tx resources");
                    let _ = ctl.bond.tx_stalled(m, now);
                }
                ctl.tx_full[m] = full;
            }
        }
    }

    /// Feeds measured rates to load-based bonds once per second.
    fn report_load(&mut self, now: Nanos) {
        let dt = now.saturating_sub(self.last_load);
        if dt < SEC {
            return;
        }
        self.last_load = now;
        let vnic_bytes: Vec<u64> = self
            .topo
            .vnics
            .iter()
            .map(|v| {
                if v.live {
                    port_totals(&self.workers, v.port).rx_bytes
                } else {
                    0
                }
            })
            .collect();
        for (u, up) in self.topo.uplinks.iter().enumerate() {
            let ctl = &mut self.uplinks[u];
            let mut member_bps = Vec::with_capacity(up.members.len());
            let mut cap = Vec::with_capacity(up.members.len());
            for (m, &port) in up.members.iter().enumerate() {
                let b = port_totals(&self.workers, port).tx_bytes;
                member_bps.push(bits_per_sec(b.saturating_sub(ctl.tx_bytes[m]), dt));
                ctl.tx_bytes[m] = b;
                cap.push(ctl.capacity_bps(m));
            }
            if ctl.bond.config().mode != Mode::LoadBased {
                continue;
            }
            let vnic_bps: Vec<(u32, u64)> = up
                .vnics
                .iter()
                .map(|&v| {
                    (
                        v,
                        bits_per_sec(
                            vnic_bytes[v as usize].saturating_sub(self.vnic_rx_bytes[v as usize]),
                            dt,
                        ),
                    )
                })
                .collect();
            let moved = ctl.bond.report_load(now, &member_bps, &cap, &vnic_bps);
            if moved > 0 {
                tracing::info!(uplink = %up.name, moved, "load-based rebalance");
            }
        }
        self.vnic_bps = vnic_bytes
            .iter()
            .zip(&self.vnic_rx_bytes)
            .map(|(b, prev)| bits_per_sec(b.saturating_sub(*prev), dt))
            .collect();
        self.vnic_rx_bytes = vnic_bytes;
    }

    fn handle_events(&mut self, u: usize) {
        let up = &self.topo.uplinks[u];
        let names = &self.topo.member_names[u];
        let events: Vec<BondEvent> = self.uplinks[u].bond.drain_events().collect();
        for e in events {
            match e {
                BondEvent::MemberUp { member } => {
                    tracing::info!(uplink = %up.name, member = %names[member], "member up")
                }
                BondEvent::MemberDown { member, reason } => {
                    tracing::warn!(uplink = %up.name, member = %names[member], %reason, "member down")
                }
                BondEvent::Failover { from, to } => tracing::warn!(
                    uplink = %up.name,
                    from = %names[from],
                    to = %to.map(|t| names[t].as_str()).unwrap_or("none"),
                    "failover"
                ),
                BondEvent::ActiveChanged { from, to } => tracing::info!(
                    uplink = %up.name,
                    from = %from.map(|t| names[t].as_str()).unwrap_or("none"),
                    to = %to.map(|t| names[t].as_str()).unwrap_or("none"),
                    "active member changed"
                ),
                BondEvent::Failback { member } => {
                    tracing::info!(uplink = %up.name, member = %names[member], "failback")
                }
                BondEvent::MacMoved {
                    mac,
                    slot,
                    to_member,
                } => {
                    let port = up.members[to_member];
                    let mut frame = [0u8; RARP_FRAME_LEN];
                    build_rarp(mac, &mut frame);
                    match Mbuf::from_bytes(&self.pool, &frame) {
                        Some(m) => {
                            if self.shared.ctl_tx.push((port, m)).is_ok() {
                                self.rarps_sent += 1;
                            }
                        }
                        None => tracing::warn!("no mbuf for a gratuitous RARP"),
                    }
                    let vnic = self
                        .topo
                        .vnics
                        .get(slot as usize)
                        .map(|v| v.name.as_str())
                        .unwrap_or("?");
                    tracing::info!(uplink = %up.name, %vnic, %mac, member = %names[to_member], "MAC moved: gratuitous RARP sent");
                }
                BondEvent::Rebalanced { slot, from, to } => tracing::info!(
                    uplink = %up.name,
                    vnic = %self.topo.vnics.get(slot as usize).map(|v| v.name.as_str()).unwrap_or("?"),
                    from = %names[from],
                    to = %names[to],
                    "rebalanced"
                ),
                BondEvent::BondDown => {
                    tracing::error!(uplink = %up.name, "no usable member: uplink down")
                }
                BondEvent::BondUp => tracing::info!(uplink = %up.name, "uplink up"),
            }
        }
    }

    fn publish(&mut self) -> u64 {
        let dists: Vec<Distribution> = self.uplinks.iter().map(|u| u.bond.distribution()).collect();
        for u in &mut self.uplinks {
            u.published = u.bond.generation();
        }
        let g = self.shared.published.publish(self.topo.snapshot(&dists));
        tracing::debug!(generation = g, "published snapshot");
        g
    }

    fn update_view(&self) {
        let mut v = self.view.write();
        v.uplinks = self
            .topo
            .uplinks
            .iter()
            .enumerate()
            .map(|(u, up)| {
                let bond = &self.uplinks[u].bond;
                UplinkView {
                    name: up.name.clone(),
                    is_bond: up.is_bond,
                    mode: if up.is_bond {
                        bond.config().mode.to_string()
                    } else {
                        "single".into()
                    },
                    degraded: bond.is_degraded(),
                    failback: bond.config().failback.to_string(),
                    active_member: if bond.config().mode == Mode::ActiveBackup && up.is_bond {
                        bond.active_member()
                            .map(|m| self.topo.member_names[u][m].clone())
                    } else {
                        None
                    },
                    members: up
                        .members
                        .iter()
                        .enumerate()
                        .map(|(m, &port)| {
                            let st = bond.member_status(m);
                            let usable = st.is_some_and(|s| s.usable);
                            let reason = match st {
                                Some(s) if s.state == MemberState::Down => {
                                    format!("down: {}", s.reason)
                                }
                                Some(s) if !s.usable => s.state.to_string(),
                                _ => String::new(),
                            };
                            MemberView {
                                name: self.topo.member_names[u][m].clone(),
                                port,
                                link_up: self.uplinks[u].link[m],
                                usable,
                                state: st.map(|s| s.state.to_string()).unwrap_or_default(),
                                reason,
                                speed_mbps: self.uplinks[u].speed_mbps[m],
                                pinned_vnics: if bond.config().mode.pins_macs() {
                                    up.vnics
                                        .iter()
                                        .filter(|&&v| bond.effective_member_of(v) == Some(m))
                                        .map(|&v| self.topo.vnics[v as usize].name.clone())
                                        .collect()
                                } else {
                                    Vec::new()
                                },
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        v.vnic_link = self.vnic_link.clone();
        v.vnic_member = self
            .topo
            .vnics
            .iter()
            .enumerate()
            .map(|(i, ve)| {
                if !ve.live {
                    return None;
                }
                let b = &self.uplinks[ve.uplink as usize].bond;
                if b.config().mode.pins_macs() {
                    b.effective_member_of(i as u32)
                        .map(|m| self.topo.member_names[ve.uplink as usize][m].clone())
                } else {
                    None
                }
            })
            .collect();
        v.vnic_tx_bps = self.vnic_bps.clone();
        v.vnic_allocation = self.allocations.clone();
        v.uplink_capacity_bps = (0..self.topo.uplinks.len())
            .map(|u| self.capacity(u))
            .collect();
        v.slow_rx = self.slow_rx;
        v.rarps_sent = self.rarps_sent;
        v.lacp = self
            .uplinks
            .iter()
            .enumerate()
            .filter_map(|(u, c)| {
                let mut l = c.lacp.as_ref().map(LacpCtl::view)?;
                for (m, port) in self.topo.uplinks[u].members.iter().enumerate() {
                    if let Some((_, how)) = self.topo.steering.iter().find(|(p, _)| p == port) {
                        l.status.push_str(&format!(
                            "\n  steering {}: {how}",
                            self.topo.member_names[u][m]
                        ));
                    }
                }
                Some(l)
            })
            .collect();
        v.slow_rx_dropped = self.slow_rx_dropped;
        if let Some(vm) = &self.vm {
            if v.vm_actions.as_slice() != vm.view() {
                v.vm_actions = vm.view().to_vec();
            }
        }
        v.generation = self.shared.published.generation();
    }
}
