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

use crate::interim_dist::Distribution;
use crate::shared::Shared;
use crate::snapshot::{PortEntry, PortRole, Snapshot, UplinkEntry, VnicEntry};

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
    /// Why it is not usable (empty when usable).
    pub reason: String,
    /// Link speed in Mb/s (configured speed for virtual NICs).
    pub speed_mbps: u32,
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
    /// Slow-protocol frames received.
    pub slow_rx: u64,
    /// Snapshot generation last published.
    pub generation: u64,
}

/// The static part of the topology the control thread builds snapshots from.
#[derive(Debug, Clone)]
pub struct Topology {
    /// All ports.
    pub ports: Vec<PortEntry>,
    /// vNICs.
    pub vnics: Vec<VnicEntry>,
    /// Uplinks (their `dist` is rebuilt on every publication).
    pub uplinks: Vec<UplinkEntry>,
    /// Uplink distribution mode names, by uplink.
    pub modes: Vec<String>,
    /// Member NIC names, by uplink.
    pub member_names: Vec<Vec<String>>,
    /// Configured speeds (Mb/s), by uplink and member.
    pub member_speeds: Vec<Vec<Option<u32>>>,
}

impl Topology {
    /// A snapshot where uplink `u`'s usable members are `masks[u]`.
    pub fn snapshot(&self, masks: &[u16]) -> Snapshot {
        let mut uplinks = self.uplinks.clone();
        for (u, up) in uplinks.iter_mut().enumerate() {
            up.dist = Distribution::from_mask(masks[u]);
        }
        Snapshot::new(self.ports.clone(), self.vnics.clone(), uplinks)
    }
}

/// The control thread's state.
pub struct Control {
    topo: Topology,
    shared: Arc<Shared>,
    view: Arc<RwLock<ControlView>>,
    poll: Duration,
    link: Vec<Vec<bool>>,
    vnic_link: Vec<bool>,
    slow_rx: u64,
}

impl Control {
    /// Builds the control state; initial link states are read now.
    pub fn new(topo: Topology, shared: Arc<Shared>, view: Arc<RwLock<ControlView>>, poll: Duration) -> Control {
        let link = topo.uplinks.iter().map(|u| u.members.iter().map(|&p| Port::from_id(p).link().up).collect()).collect();
        let vnic_link = vec![false; topo.vnics.len()];
        Control { topo, shared, view, poll, link, vnic_link, slow_rx: 0 }
    }

    /// Runs until the quit flag is set.
    pub fn run(mut self) {
        let start = Instant::now();
        let mut first = true;
        while !self.shared.quit.load(Ordering::Relaxed) {
            let changed = self.poll_links(first);
            if changed && !first {
                self.publish();
            }
            while let Some((port, m)) = self.shared.slow_rx.pop() {
                self.slow_rx += 1;
                tracing::debug!(port, len = m.data().len(), "slow-protocol frame received");
                drop(m);
            }
            first = false;
            self.update_view();
            let elapsed = start.elapsed();
            let next = self.poll.saturating_sub(Duration::from_nanos(elapsed.as_nanos() as u64 % self.poll.as_nanos().max(1) as u64));
            std::thread::sleep(next.max(Duration::from_micros(200)));
        }
    }

    fn poll_links(&mut self, first: bool) -> bool {
        let mut changed = false;
        for (u, up) in self.topo.uplinks.iter().enumerate() {
            for (m, &port) in up.members.iter().enumerate() {
                let l = Port::from_id(port).link();
                if l.up != self.link[u][m] || first {
                    if !first || !l.up {
                        tracing::info!(
                            uplink = %up.name,
                            member = %self.topo.member_names[u][m],
                            link = if l.up { "up" } else { "down" },
                            "link state changed"
                        );
                    }
                    changed |= l.up != self.link[u][m];
                    self.link[u][m] = l.up;
                }
            }
        }
        for (i, v) in self.topo.vnics.iter().enumerate() {
            let up = Port::from_id(v.port).link().up;
            if up != self.vnic_link[i] {
                tracing::info!(vnic = %v.name, vm = %v.vm, link = if up { "up" } else { "down" }, "vNIC link changed");
                self.vnic_link[i] = up;
            }
        }
        changed
    }

    fn masks(&self) -> Vec<u16> {
        self.link
            .iter()
            .map(|ms| ms.iter().enumerate().filter(|(_, up)| **up).fold(0u16, |a, (i, _)| a | (1 << i)))
            .collect()
    }

    fn publish(&mut self) {
        let snap = self.topo.snapshot(&self.masks());
        let g = self.shared.published.publish(snap);
        tracing::debug!(generation = g, "published snapshot");
    }

    fn update_view(&self) {
        let mut v = self.view.write();
        let masks = self.masks();
        v.uplinks = self
            .topo
            .uplinks
            .iter()
            .enumerate()
            .map(|(u, up)| UplinkView {
                name: up.name.clone(),
                is_bond: up.is_bond,
                mode: self.topo.modes[u].clone(),
                members: up
                    .members
                    .iter()
                    .enumerate()
                    .map(|(m, &port)| {
                        let usable = masks[u] & (1 << m) != 0;
                        MemberView {
                            name: self.topo.member_names[u][m].clone(),
                            port,
                            link_up: self.link[u][m],
                            usable,
                            reason: if usable { String::new() } else { "down: link".into() },
                            speed_mbps: self.topo.member_speeds[u][m]
                                .unwrap_or_else(|| Port::from_id(port).link().speed_mbps),
                        }
                    })
                    .collect(),
            })
            .collect();
        v.vnic_link = self.vnic_link.clone();
        v.slow_rx = self.slow_rx;
        v.generation = self.shared.published.generation();
    }
}

impl Topology {
    /// The role of a port, for tests and status.
    pub fn role_of(&self, port: u16) -> Option<PortRole> {
        self.ports.iter().find(|p| p.id == port).map(|p| p.role)
    }
}
