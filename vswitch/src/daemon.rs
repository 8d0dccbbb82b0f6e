//! The running daemon's side of the control channel: [`SwitchApi`] implements
//! [`ControlApi`] over a [`Switch`] and the desired configuration.
//!
//! # Changes
//! Every mutating request is applied to a copy of the desired [`Config`]
//! ([`apply_to_config`], which runs the same validator as the config file), then
//! reconciled with the running switch, then written to the config file atomically
//! ([`persist::write_atomic`]), then stored. A change the running switch cannot take
//! live is refused before anything is written, so the file never holds a change the
//! switch does not run. Every command of the protocol is live: bond teaming
//! settings go straight to the bond ([`ControlCmd::SetBond`]); everything else
//! (NICs, bonds and their members, VMs and vNICs added or removed — DPDK hot-plug —,
//! vNICs moved to another uplink, bandwidth, priority, LACP and DoS settings) goes
//! through [`Switch::reconfigure`], which attaches and detaches ports and hands the
//! control thread the new topology without stopping the workers. Only the
//! `[eal]`, `[dataplane]` and `[control]` sections need a restart.
//!
//! # Threads
//! Called from control-server client threads; the desired config is behind a mutex
//! (control plane only); requests that touch teaming state go to the control thread
//! through [`Switch::control_request`].

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{Config, UplinkRef};
use crate::control::ControlCmd;
use crate::ctl::{
    apply_to_config, persist, ConfigChange, ControlApi, CtlError, LacpMemberShow, LacpShow,
    MemberShow, PmdCounts, PmdRxqShow, PmdStats, PortStatsShow, RxqShow, ShapingShow, ShowTree,
    StatsShow, UplinkShow, VmShow, VnicShow,
};
use crate::snapshot::PortRole;
use crate::switch::Switch;

/// A configuration save slower than this is logged as a warning: vsctl's reply waits
/// for it, and an operator whose command took seconds should find out why.
const SLOW_SAVE: std::time::Duration = std::time::Duration::from_secs(1);

/// The daemon's control API.
pub struct SwitchApi {
    switch: Arc<Switch>,
    desired: Mutex<Config>,
    path: PathBuf,
    /// What the workers had counted at the last `pmd-stats-clear`.
    pmd_baseline: Mutex<PmdBaseline>,
}

/// The workers' counters at a `pmd-stats-clear` (empty vectors: never cleared).
#[derive(Default)]
struct PmdBaseline {
    /// Each worker's poll-loop counts (`pmd-stats-show`).
    pmd: Vec<PmdCounts>,
    /// Each worker's rx counter of every port id (`pmd-rxq-show`).
    rx: Vec<Vec<u64>>,
}

impl SwitchApi {
    /// An API over `switch`, whose desired configuration `cfg` lives in `path`.
    pub fn new(switch: Arc<Switch>, cfg: Config, path: PathBuf) -> SwitchApi {
        // VM actions and DoS detection run on the control thread; their state file
        // lives beside the configuration.
        let state = crate::vm_ctl::state_path_for(&path);
        match crate::vm_ctl::VmCtl::new(&cfg, &switch.topology(), Some(state)) {
            Ok(ctl) => {
                let ctl = Box::new(ctl);
                if switch
                    .control_request(|reply| ControlCmd::VmActions { ctl, reply })
                    .is_none()
                {
                    tracing::error!("the control thread did not take the VM actions");
                }
            }
            Err(e) => tracing::error!("VM actions not started: {e}"),
        }
        SwitchApi {
            switch,
            desired: Mutex::new(cfg),
            path,
            pmd_baseline: Mutex::new(PmdBaseline::default()),
        }
    }

    fn uplink_index(&self, name: &str) -> Option<usize> {
        self.switch
            .topology()
            .uplinks
            .iter()
            .position(|u| u.name == name)
    }

    fn uplinks(&self) -> Vec<UplinkShow> {
        let view = self.switch.control_view();
        let cfg = self.desired.lock().clone();
        let ports = self.switch.ports();
        let topo = self.switch.topology();
        view.uplinks
            .iter()
            .map(|up| {
                let bond_cfg = cfg.bond.iter().find(|b| b.name == up.name);
                UplinkShow {
                    name: up.name.clone(),
                    is_bond: up.is_bond,
                    mode: up.mode.clone(),
                    failback: up.failback.clone(),
                    lacp: bond_cfg
                        .map(|b| b.lacp.clone())
                        .unwrap_or_else(|| "off".into()),
                    degraded: up.degraded,
                    active_member: up.active_member.clone(),
                    members: up
                        .members
                        .iter()
                        .map(|m| {
                            let c = ports
                                .iter()
                                .find(|p| p.id == m.port)
                                .map(|p| p.counters)
                                .unwrap_or_default();
                            MemberShow {
                                name: m.name.clone(),
                                state: m.state.clone(),
                                reason: m.reason.clone(),
                                link_up: m.link_up,
                                usable: m.usable,
                                speed_mbps: m.speed_mbps,
                                mtu: cfg
                                    .nic
                                    .iter()
                                    .find(|n| n.name == m.name)
                                    .map_or(0, |n| n.mtu()),
                                tx_pkts: c.tx_pkts,
                                tx_bytes: c.tx_bytes,
                                rx_pkts: c.rx_pkts,
                                rx_bytes: c.rx_bytes,
                                pinned_vnics: m.pinned_vnics.clone(),
                            }
                        })
                        .collect(),
                    // The view and the topology are read one after the other: a
                    // reconfiguration between them may have changed the uplinks.
                    vnics: topo
                        .uplinks
                        .iter()
                        .find(|t| t.name == up.name)
                        .map(|t| {
                            t.vnics
                                .iter()
                                .filter_map(|&v| topo.vnics.get(v as usize))
                                .map(|v| v.name.clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    fn vnics(&self) -> Vec<VnicShow> {
        let view = self.switch.control_view();
        let cfg = self.desired.lock().clone();
        let topo = self.switch.topology();
        let mut out = Vec::new();
        for vm in &cfg.vm {
            for (j, v) in vm.vnic.iter().enumerate() {
                let name = Config::vnic_name(vm, j);
                let idx = topo.vnics.iter().position(|x| x.name == name);
                let alloc = idx.and_then(|i| view.vnic_allocation.get(i).copied().flatten());
                out.push(VnicShow {
                    name: name.clone(),
                    vm: vm.name.clone(),
                    mac: v.mac.clone(),
                    backend: match (&v.socket, &v.devargs) {
                        (Some(s), _) => format!("vhost-user {} ({})", s, v.vhost_mode),
                        (None, Some(d)) => d.clone(),
                        _ => String::new(),
                    },
                    link_up: idx
                        .and_then(|i| view.vnic_link.get(i).copied())
                        .unwrap_or(false),
                    mtu: v.mtu,
                    uplink: v.uplink.clone(),
                    member: idx.and_then(|i| view.vnic_member.get(i).cloned().flatten()),
                    shares: v.shares.unwrap_or(vm.shares),
                    priority: v.priority.unwrap_or(vm.priority),
                    reservation_mbps: v.reservation_mbps.or(vm.reservation_mbps),
                    shaping: v.average_bps.map(|avg| ShapingShow {
                        average_bps: avg,
                        peak_bps: v.peak_bps.unwrap_or(avg),
                        burst_bytes: v.burst_bytes.unwrap_or(0),
                        peak_period_ms: v.peak_period_ms.unwrap_or(0),
                    }),
                    entitled_bps: alloc.map(|a| a.rate_bps).unwrap_or(0),
                    used_bps: idx
                        .and_then(|i| view.vnic_tx_bps.get(i).copied())
                        .unwrap_or(0),
                    limit: match alloc {
                        Some(a) if a.starved => "starved (lower priority, degraded uplink)".into(),
                        Some(a) => a.limit.to_string(),
                        None => "bandwidth policy off".into(),
                    },
                });
            }
        }
        out
    }

    /// Reconciles the running switch with `new` (the validated desired config after
    /// `change`), or refuses the change when it cannot be applied live.
    fn reconcile(&self, old: &Config, new: &Config, change: &ConfigChange) -> Result<(), CtlError> {
        // [dataplane] keys a running switch takes (DATAPLANE_LIVE) are compared apart.
        let live = |d: &crate::config::DataplaneSection| crate::config::DataplaneSection {
            pmd_sleep_max_us: 0,
            ..d.clone()
        };
        if (&old.eal, live(&old.dataplane), &old.control)
            != (&new.eal, live(&new.dataplane), &new.control)
        {
            return Err(CtlError::Unsupported(format!(
                "changing [eal], [dataplane] (except {}) or [control] on a running switch; edit {} and restart vswitchd",
                crate::ctl::DATAPLANE_LIVE.join(", "),
                self.path.display()
            )));
        }
        if let ConfigChange::SetDataplane { .. } = change {
            self.switch
                .set_pmd_sleep_max(new.dataplane.pmd_sleep_max_us);
            tracing::info!(
                pmd_sleep_max_us = new.dataplane.pmd_sleep_max_us,
                "workers' load-based sleep set"
            );
            return Ok(());
        }
        if let ConfigChange::SetBond { bond, .. } = change {
            // Teaming settings alone: straight to the bond, no topology change.
            let (Some(o), Some(n)) = (
                old.bond.iter().find(|b| &b.name == bond),
                new.bond.iter().find(|b| &b.name == bond),
            ) else {
                return Err(CtlError::NotFound {
                    kind: "bond",
                    name: bond.clone(),
                });
            };
            // Teaming keys only (not LACP, degraded mode or VM-action policy): straight
            // to the bond.
            let teaming_only = n.policy().ok() != o.policy().ok() && {
                let mut o2 = o.clone();
                o2.mode = n.mode.clone();
                o2.failback = n.failback.clone();
                o2.failback_delay_ms = n.failback_delay_ms;
                o2.updelay_ms = n.updelay_ms;
                o2.downdelay_ms = n.downdelay_ms;
                o2.active_order = n.active_order.clone();
                o2.notify_switches = n.notify_switches;
                o2.isolate_priority_max = n.isolate_priority_max;
                o2.isolated_member = n.isolated_member.clone();
                o2.rebalance_threshold_pct = n.rebalance_threshold_pct;
                o2.rebalance_window_s = n.rebalance_window_s;
                &o2 == n
            };
            if teaming_only {
                let cfg = n.policy().map_err(CtlError::from)?;
                let u = self.uplink_index(bond).ok_or(CtlError::NotFound {
                    kind: "bond",
                    name: bond.clone(),
                })?;
                return match self.switch.control_request(|reply| ControlCmd::SetBond {
                    uplink: u,
                    cfg,
                    reply,
                }) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => Err(CtlError::Invalid(format!("bond '{bond}': {e}"))),
                    None => Err(CtlError::Internal(
                        "the control thread did not take the change within 2 s; it was not made"
                            .into(),
                    )),
                };
            }
        }
        // VM actions and DoS detection are rebuilt over the new topology when a VM's
        // settings or the uplinks (whose indices they use) changed.
        let settings_changed = old.vm != new.vm || old.bond != new.bond;
        let uplinks_before: Vec<String> = self
            .switch
            .topology()
            .uplinks
            .into_iter()
            .map(|u| u.name)
            .collect();
        let state = crate::vm_ctl::state_path_for(&self.path);
        self.switch
            .reconfigure(new, |topo| {
                let uplinks_moved = topo.uplinks.iter().map(|u| &u.name).ne(uplinks_before.iter());
                if !settings_changed && !uplinks_moved {
                    return None;
                }
                match crate::vm_ctl::VmCtl::new(new, topo, Some(state)) {
                    Ok(c) => Some(Box::new(c)),
                    Err(e) => {
                        tracing::error!("VM actions not rebuilt: {e}");
                        None
                    }
                }
            })
            .map(|r| {
                tracing::info!(change = %change.name(), added = ?r.added, removed = ?r.removed, generation = r.generation, "live reconfiguration");
            })
            .map_err(|e| CtlError::Invalid(format!("the running switch refused the change: {e}")))
    }
}

impl ControlApi for SwitchApi {
    fn show(&self) -> Result<ShowTree, CtlError> {
        let cfg = self.desired.lock().clone();
        let vnics = self.vnics();
        let view = self.switch.control_view();
        let vms = cfg
            .vm
            .iter()
            .map(|vm| VmShow {
                name: vm.name.clone(),
                priority: vm.priority,
                shares: vm.shares,
                vnics: vnics.iter().filter(|v| v.vm == vm.name).cloned().collect(),
                actions: view.vm_actions.iter().find(|a| a.vm == vm.name).cloned(),
            })
            .collect();
        Ok(ShowTree {
            uplinks: self.uplinks(),
            vms,
            generation: self.switch.control_view().generation,
        })
    }

    fn config(&self) -> Result<Config, CtlError> {
        Ok(self.desired.lock().clone())
    }

    fn stats(&self, port: Option<&str>) -> Result<StatsShow, CtlError> {
        let topo = self.switch.topology();
        let ports: Vec<PortStatsShow> = self
            .switch
            .ports()
            .iter()
            .filter(|p| port.is_none_or(|n| n == p.name))
            .map(|p| {
                let uplink = match topo.role_of(p.id) {
                    Some(PortRole::Nic { uplink, .. }) => {
                        Some(topo.uplinks[uplink as usize].name.as_str())
                    }
                    Some(PortRole::Vnic { vnic }) => Some(
                        topo.uplinks[topo.vnics[vnic as usize].uplink as usize]
                            .name
                            .as_str(),
                    ),
                    None => None,
                };
                let mut s =
                    PortStatsShow::from_totals(&p.name, p.kind, uplink, p.link_up, &p.counters);
                s.mtu = p.mtu;
                s
            })
            .collect();
        if let Some(n) = port {
            if ports.is_empty() {
                return Err(CtlError::NotFound {
                    kind: "port",
                    name: n.to_string(),
                });
            }
        }
        Ok(StatsShow { ports })
    }

    fn pmd_stats(&self) -> Result<Vec<PmdStats>, CtlError> {
        let hz = dpdk_sys::Eal::get().map_or(0, |e| e.tsc_hz());
        let sleep_max = self.switch.pmd_sleep_max_us();
        let base = self.pmd_baseline.lock();
        Ok(self
            .switch
            .worker_stats()
            .iter()
            .enumerate()
            .map(|(w, s)| {
                let now = PmdCounts::read(s);
                let c = base.pmd.get(w).map_or(now, |b| now.since(b));
                PmdStats::from_counts(w, self.switch.cores()[w], &c, hz, sleep_max)
            })
            .collect())
    }

    fn pmd_stats_clear(&self) -> Result<usize, CtlError> {
        let pmd: Vec<PmdCounts> = self
            .switch
            .worker_stats()
            .iter()
            .map(|s| PmdCounts::read(s))
            .collect();
        let n = pmd.len();
        *self.pmd_baseline.lock() = PmdBaseline {
            pmd,
            rx: self.switch.rx_counters(),
        };
        tracing::info!(workers = n, "pmd statistics cleared");
        Ok(n)
    }

    fn pmd_rxq(&self) -> Result<Vec<PmdRxqShow>, CtlError> {
        let entries = self
            .switch
            .rx_queues(&self.pmd_baseline.lock().rx)
            .into_iter()
            .map(|q| {
                (
                    q.worker,
                    RxqShow {
                        port: q.port,
                        kind: q.kind.to_string(),
                        queues: q.queues,
                        rx_pkts: q.rx_pkts,
                        rx_share_pct: 0.0,
                    },
                )
            })
            .collect();
        Ok(PmdRxqShow::group(self.switch.cores(), entries))
    }

    fn bond_show(&self, bond: Option<&str>) -> Result<Vec<UplinkShow>, CtlError> {
        let all = self.uplinks();
        match bond {
            None => Ok(all),
            Some(b) => {
                let v: Vec<UplinkShow> = all.into_iter().filter(|u| u.name == b).collect();
                if v.is_empty() {
                    Err(CtlError::NotFound {
                        kind: "bond",
                        name: b.to_string(),
                    })
                } else {
                    Ok(v)
                }
            }
        }
    }

    fn lacp_show(&self, bond: Option<&str>) -> Result<Vec<LacpShow>, CtlError> {
        let view = self.switch.control_view();
        let cfg = self.desired.lock().clone();
        if let Some(b) = bond {
            if !cfg.bond.iter().any(|x| x.name == b) {
                return Err(CtlError::NotFound {
                    kind: "bond",
                    name: b.to_string(),
                });
            }
        }
        Ok(view
            .lacp
            .iter()
            .filter(|l| bond.is_none_or(|b| b == l.bond))
            .map(|l| LacpShow {
                bond: l.bond.clone(),
                lacp: cfg
                    .bond
                    .iter()
                    .find(|b| b.name == l.bond)
                    .map(|b| b.lacp.clone())
                    .unwrap_or_default(),
                negotiated: l.negotiated,
                fallback_active: l.fallback_active,
                members: l
                    .members
                    .iter()
                    .map(|m| LacpMemberShow {
                        name: m.name.clone(),
                        may_enable: m.distributing,
                        mux: m.mux.clone(),
                        partner: m.partner.clone(),
                    })
                    .collect(),
                text: l.status.clone(),
            })
            .collect())
    }

    fn bond_failback(&self, bond: &str) -> Result<u64, CtlError> {
        let cfg = self.desired.lock().clone();
        if !matches!(cfg.uplink(bond), Some(UplinkRef::Bond(_))) {
            return Err(CtlError::NotFound {
                kind: "bond",
                name: bond.to_string(),
            });
        }
        let u = self.uplink_index(bond).ok_or(CtlError::NotFound {
            kind: "bond",
            name: bond.to_string(),
        })?;
        self.switch
            .control_request(|reply| ControlCmd::Failback { uplink: u, reply })
            .ok_or_else(|| {
                CtlError::Internal(
                    "the control thread did not take the failback within 2 s; it was not made"
                        .into(),
                )
            })
    }

    fn vnic_bandwidth(&self, vnic: Option<&str>) -> Result<Vec<VnicShow>, CtlError> {
        let all = self.vnics();
        match vnic {
            None => Ok(all),
            Some(n) => {
                let v: Vec<VnicShow> = all.into_iter().filter(|x| x.name == n).collect();
                if v.is_empty() {
                    Err(CtlError::NotFound {
                        kind: "vnic",
                        name: n.to_string(),
                    })
                } else {
                    Ok(v)
                }
            }
        }
    }

    fn apply_change(&self, change: ConfigChange) -> Result<(), CtlError> {
        let mut desired = self.desired.lock();
        let new = apply_to_config(&desired, &change)?;
        // Saved before it is applied, and put back when it cannot be applied: a change
        // the switch runs but the file lacks (a value TOML cannot hold, such as an
        // integer above 2^63 - 1; a full disk) was lost on restart, and the next
        // change, made from the file's version, silently undid it.
        let earlier = std::fs::read_to_string(&self.path).ok();
        let t = std::time::Instant::now();
        persist::write_atomic(&self.path, &new).map_err(|e| match e {
            CtlError::Internal(m) => CtlError::Invalid(format!("the change cannot be saved: {m}")),
            e => e,
        })?;
        let took = t.elapsed();
        if let Err(e) = self.reconcile(&desired, &new, &change) {
            // The file as it was, byte for byte (a hand-written one keeps its comments).
            let put_back = match &earlier {
                Some(text) => persist::write_text_atomic(&self.path, text),
                None => persist::write_atomic(&self.path, &desired),
            };
            if let Err(w) = put_back {
                tracing::error!(path = %self.path.display(), "a refused change stays in the configuration file: {w}");
            }
            return Err(e);
        }
        if took >= SLOW_SAVE {
            // The reply waits for the file to be on disk (fsync); say why it was late.
            tracing::warn!(
                change = %change.name(),
                ms = took.as_millis() as u64,
                path = %self.path.display(),
                "saving the configuration took long (fsync on a busy disk?)"
            );
        }
        tracing::info!(change = %change.name(), "configuration change applied and saved");
        *desired = new;
        Ok(())
    }
}
