//! Bringing a switch up from a [`Config`], changing its ports and topology while it
//! runs, and taking it down cleanly.
//!
//! Start-up order: EAL → mbuf pool → NIC ports (promiscuous) → vNIC ports (vhost-user
//! server or client, or any devargs) → the first snapshot → worker threads (pinned,
//! registered with DPDK) → the control thread. Shutdown reverses it: workers stop
//! and free their buffered frames, the control thread stops, handoff queues are
//! emptied, ports are stopped and closed (vhost sockets removed), and the pool's
//! in-use count is reported — it must be 0.
//!
//! # Reconfiguration at run time ([`Switch::reconfigure`])
//! The new configuration's ports are compared with the open ones by name and
//! backend. Then, in this order, so that no worker ever touches a closed port and
//! no other port's traffic stops:
//! 1. new ports are attached (DPDK hot-plug), configured and started;
//! 2. their queue tokens are handed to the workers through per-worker mailboxes
//!    (rx queue to the worker polling the fewest, a tx slot to every worker), and
//!    the switch waits until each worker has taken them;
//! 3. the control thread adopts the new [`Topology`] (keeping the state of every
//!    uplink whose members did not change) and publishes a snapshot; the switch
//!    waits until every worker runs it;
//! 4. removed ports: every worker is told to flush and release their queues, and
//!    once all have, the ports are stopped, closed and detached.
//!
//! vNICs keep their slot (index) for life, so per-vNIC state in workers, bonds,
//! allocators and DoS words survives reconfiguration; a removed vNIC's slot is left
//! vacant and reused by a later reconfiguration.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dpdk_sys::{Eal, Mempool, Port, PortInfo, PortSetup, PortStats, SharedTxQueue};
use parking_lot::{Mutex, RwLock};

use crate::config::Config;
use crate::control::{Control, ControlCmd, ControlView, LacpQueue, Topology};
use crate::ctl::server::{clear_stale_socket, SocketPathError};
use crate::shared::Shared;
use crate::snapshot::{PortEntry, PortRole, UplinkEntry, VnicEntry};
use crate::stats::{port_totals, PortTotals, WorkerStats, MAX_PORTS};
use crate::worker::WorkerMsg;
use crate::worker::{TxSlot, Worker, WorkerQueues};

/// Why the switch could not start.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// EAL failed.
    #[error(transparent)]
    Eal(#[from] dpdk_sys::EalError),
    /// A port failed.
    #[error("{what}: {source}")]
    Port {
        /// Which configured object.
        what: String,
        /// DPDK's reason.
        source: dpdk_sys::PortError,
    },
    /// Something else.
    #[error("{0}")]
    Other(String),
}

/// A port as status output shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortStatus {
    /// Configured name.
    pub name: String,
    /// DPDK port id.
    pub id: u16,
    /// "vnic" or "nic".
    pub kind: &'static str,
    /// Devargs it was attached with.
    pub devargs: String,
    /// Link up.
    pub link_up: bool,
    /// The device's MTU (`rte_eth_dev_get_mtu`).
    pub mtu: Option<u16>,
    /// The switch's own counters.
    pub counters: PortTotals,
    /// The PMD's counters.
    #[serde(skip)]
    pub pmd: PortStats,
}

/// A port the switch has open.
#[derive(Debug, Clone)]
struct OpenPort {
    id: u16,
    /// What it was attached with (compared on reconfiguration).
    backend: String,
    devargs: String,
    nb_rx: u16,
    nb_tx: u16,
    /// A vhost-user socket the switch created (server mode), removed with the port.
    socket: Option<String>,
    /// The switch's counters of this port id when the port was opened (a reused id
    /// carries its previous holder's counts; status output subtracts them).
    baseline: PortTotals,
    /// The same for each worker's received frames (`pmd-rxq-show`).
    rx_baseline: Vec<u64>,
    /// LACP's dedicated (rx, tx) queue, beyond the data queues, when the PMD steers
    /// slow-protocol frames to it with rte_flow; the control thread owns both.
    lacp_queue: Option<(u16, u16)>,
    /// How LACP frames reach the control thread on this port (for `lacp/show`).
    steering: String,
    /// A NIC's MTU, as last set on the device.
    mtu: Option<u16>,
    /// Whether rx scatter was turned on when the port was configured (a NIC whose MTU
    /// makes frames longer than one mbuf, on a device that has it).
    scatter: bool,
}

/// What a configured port needs: its key (`nic:NAME` / `vnic:NAME`), a description
/// for errors, how to attach it, and whether it is a NIC.
struct WantedPort {
    key: String,
    what: String,
    backend: String,
    nic: bool,
    server_socket: Option<String>,
    /// A member of a bond that runs LACP.
    lacp: bool,
    /// A NIC's MTU ([`crate::config::NicConfig::mtu`]); `None` for a vNIC.
    mtu: Option<u16>,
}

/// The ports the configuration asks for, in start-up order: NICs (bond members
/// first, in bond order, then unbonded NICs), then vNICs.
fn wanted_ports(cfg: &Config) -> Vec<WantedPort> {
    let mut out = Vec::new();
    let mut nics: Vec<usize> = Vec::new();
    for b in &cfg.bond {
        for m in &b.members {
            if let Some(i) = cfg.nic.iter().position(|n| &n.name == m) {
                nics.push(i);
            }
        }
    }
    for (i, n) in cfg.nic.iter().enumerate() {
        if cfg.bond_of_nic(&n.name).is_none() {
            nics.push(i);
        }
    }
    for i in nics {
        let n = &cfg.nic[i];
        let lacp = cfg.bond_of_nic(&n.name).is_some_and(|b| b.lacp != "off");
        out.push(WantedPort {
            key: format!("nic:{}", n.name),
            what: format!("nic '{}'", n.name),
            // LACP's dedicated queue is laid out when the port opens; switching LACP
            // on or off later keeps the port (and its layout) as it is.
            backend: n.devargs.clone(),
            nic: true,
            server_socket: None,
            lacp,
            mtu: Some(n.mtu()),
        });
    }
    for vm in &cfg.vm {
        for (j, v) in vm.vnic.iter().enumerate() {
            let name = Config::vnic_name(vm, j);
            let (backend, server_socket) = match (&v.socket, &v.devargs) {
                (Some(sock), _) => (
                    format!("vhost-user:{}:{}", v.vhost_mode, sock),
                    (v.vhost_mode != "client").then(|| sock.clone()),
                ),
                (None, Some(d)) => (d.clone(), None),
                (None, None) => (String::new(), None),
            };
            out.push(WantedPort {
                key: format!("vnic:{name}"),
                what: format!("vm '{}' vnic '{name}'", vm.name),
                backend,
                nic: false,
                server_socket,
                lacp: false,
                mtu: None,
            });
        }
    }
    out
}

/// The switch's port bookkeeping, changed only under [`Switch::reconfigure`]'s lock.
struct PortSet {
    eal: &'static Eal,
    pool: Mempool,
    n_workers: usize,
    desc: u16,
    /// Open ports by key (`nic:NAME`, `vnic:NAME`).
    open: BTreeMap<String, OpenPort>,
    /// vNIC name by slot; `None`: vacant.
    slots: Vec<Option<String>>,
    /// Slots vacated by the reconfiguration in progress: not reusable before it ends.
    just_vacated: Vec<usize>,
    /// Next `net_vhostN` device number (device names must be unique for the
    /// process's life).
    vhost_index: usize,
    /// The worker polling each rx queue, by port id (new rx queues go to the least
    /// loaded worker).
    rx_owners: BTreeMap<u16, Vec<usize>>,
}

impl PortSet {
    /// Attaches, configures and starts the port `w` asks for; `stats` gives the
    /// counters its id starts from.
    fn open(
        &mut self,
        w: &WantedPort,
        stats: &[Arc<WorkerStats>],
    ) -> Result<OpenPort, SwitchError> {
        let what = w.what.clone();
        let devargs = if let Some(rest) = w.backend.strip_prefix("vhost-user:") {
            let (mode, sock) = rest.split_once(':').unwrap_or(("server", rest));
            if mode != "client" {
                // A stale socket of an earlier run is replaced; a file or a live socket
                // there is refused (removing whatever the path named let a vNIC socket
                // delete any file the daemon could).
                clear_stale_socket(std::path::Path::new(sock)).map_err(|e| {
                    SwitchError::Other(match e {
                        SocketPathError::NotASocket => format!(
                            "{what}: {sock} exists and is not a socket; remove it or choose another vhost-user socket path"
                        ),
                        SocketPathError::InUse => format!(
                            "{what}: {sock} is a socket in use by a running program; choose another path"
                        ),
                        SocketPathError::Io(m) => format!("{what}: {m}"),
                    })
                })?;
            }
            let client = if mode == "client" { ",client=1" } else { "" };
            let d = format!(
                "net_vhost{},iface={sock},queues=1{client}",
                self.vhost_index
            );
            self.vhost_index += 1;
            d
        } else {
            w.backend.clone()
        };
        let p = Port::attach(self.eal, &devargs).map_err(port_err(what.clone()))?;
        let fail = |e: SwitchError| {
            let _ = p.detach();
            e
        };
        if p.id() as usize >= MAX_PORTS {
            return Err(fail(SwitchError::Other(format!(
                "{what}: port id {} exceeds {MAX_PORTS}",
                p.id()
            ))));
        }
        let info = p.info().map_err(port_err(what.clone())).map_err(fail)?;
        if let Some(mtu) = w.mtu {
            device_takes_mtu(&info, &what, mtu).map_err(fail)?;
        }
        let setup = PortSetup {
            lsc: false,
            mtu: w.mtu,
        };
        let scatter = w.mtu.is_some_and(|m| info.rx_scatter_for(m, &self.pool));
        // One rx and one tx queue per worker where the device allows it (rx queues are
        // spread over the workers); a port with fewer tx queues than workers
        // (vhost-user, whose guest may enable a single queue pair; pcap) gets one tx
        // queue that the workers share behind a lock.
        let nb_q = self.n_workers as u16;
        let vhost = info.driver == "net_vhost";
        let mut nb_tx = if vhost || info.max_tx_queues < nb_q {
            1
        } else {
            nb_q
        };
        // A vNIC has a single rx queue, so exactly one worker owns its bandwidth gate
        // and counters.
        let mut nb_rx = if vhost || !w.nic {
            1
        } else {
            nb_q.min(info.max_rx_queues.max(1))
        };
        if info.driver == "net_tap" {
            // The tap PMD wants as many rx as tx queues.
            nb_tx = if w.nic { nb_tx } else { 1 };
            nb_rx = nb_tx;
        }
        // LACP on a bond member: where the PMD can steer slow-protocol frames to a
        // queue of their own (rte_flow) and has a spare rx and tx queue, LACP gets
        // them, polled and fed by the control thread, so no load on the data queues
        // can delay a LACPDU (as DPDK's mode-4 dedicated queues, OVS's LACP steering).
        let mut lacp_queue = None;
        let mut steering = String::new();
        if w.lacp {
            if info.max_rx_queues > nb_rx && info.max_tx_queues > nb_tx {
                let dedicated = p
                    .configure_with(nb_rx + 1, nb_tx + 1, self.desc, &self.pool, setup)
                    .and_then(|_| p.rss_spread_over(nb_rx))
                    .and_then(|_| p.steer_ethertype(policy::wire::ethertype::SLOW, nb_rx));
                match dedicated {
                    Ok(()) => {
                        lacp_queue = Some((nb_rx, nb_tx));
                        steering = format!(
                            "rte_flow: LACP to rx queue {nb_rx}, sent on tx queue {nb_tx}, both the control thread's"
                        );
                    }
                    Err(e) => {
                        steering = format!(
                            "workers pick LACP out of the data queues (no rte_flow steering: {e})"
                        )
                    }
                }
            } else {
                steering =
                    "workers pick LACP out of the data queues (no spare queue for steering)".into();
            }
            tracing::info!(port = %what, "LACP steering: {steering}");
        }
        if lacp_queue.is_none() {
            p.configure_with(nb_rx, nb_tx, self.desc, &self.pool, setup)
                .map_err(port_err(what.clone()))
                .map_err(fail)?;
        }
        if w.nic {
            p.set_promiscuous(true)
                .map_err(port_err(what.clone()))
                .map_err(fail)?;
        }
        p.start().map_err(port_err(what.clone())).map_err(fail)?;
        Ok(OpenPort {
            lacp_queue,
            steering,
            baseline: port_totals(stats, p.id()),
            rx_baseline: stats
                .iter()
                .map(|w| w.ports[p.id() as usize].rx_pkts.load(Ordering::Relaxed))
                .collect(),
            id: p.id(),
            backend: w.backend.clone(),
            devargs,
            nb_rx,
            nb_tx,
            socket: w.server_socket.clone(),
            mtu: w.mtu,
            scatter,
        })
    }

    /// The kept NICs of `wanted` whose MTU changes: (key, what, new MTU).
    fn mtu_changes<'a>(&self, wanted: &'a [WantedPort]) -> Vec<(&'a str, &'a str, u16)> {
        wanted
            .iter()
            .filter_map(|w| {
                let o = self.open.get(&w.key)?;
                let mtu = w.mtu?;
                (o.backend == w.backend && o.mtu != Some(mtu)).then_some((
                    w.key.as_str(),
                    w.what.as_str(),
                    mtu,
                ))
            })
            .collect()
    }

    /// Whether the running device of open port `key` can take `mtu`: within the
    /// device's range, and needing no rx scatter the port was opened without (such a
    /// change needs the port opened anew).
    fn check_mtu(&self, key: &str, what: &str, mtu: u16) -> Result<(), SwitchError> {
        let Some(o) = self.open.get(key) else {
            return Ok(());
        };
        let info = Port::from_id(o.id)
            .info()
            .map_err(port_err(what.to_string()))?;
        device_takes_mtu(&info, what, mtu)?;
        if info.rx_scatter_for(mtu, &self.pool) && !o.scatter && o.lacp_queue.is_some() {
            return Err(lacp_reopen(what, mtu));
        }
        Ok(())
    }

    /// The queue tokens of port `o`, as mailbox messages by worker: its rx queues to
    /// the least loaded workers, a tx slot to every worker.
    fn hand_out(
        &mut self,
        o: &OpenPort,
        what: &str,
    ) -> Result<Vec<(usize, WorkerMsg)>, SwitchError> {
        let p = Port::from_id(o.id);
        let mut rx: Vec<Vec<dpdk_sys::RxQueue>> = (0..self.n_workers).map(|_| Vec::new()).collect();
        let mut load = vec![0usize; self.n_workers];
        for owners in self.rx_owners.values() {
            for &w in owners {
                load[w] += 1;
            }
        }
        let mut owners = Vec::new();
        for q in 0..o.nb_rx {
            let w = (0..self.n_workers)
                .min_by_key(|&w| (load[w], w))
                .unwrap_or(0);
            rx[w].push(p.rx_queue(q).map_err(port_err(what.to_string()))?);
            load[w] += 1;
            owners.push(w);
        }
        let shared = if (o.nb_tx as usize) < self.n_workers {
            Some(Arc::new(SharedTxQueue::new(
                p.tx_queue(0).map_err(port_err(what.to_string()))?,
            )))
        } else {
            None
        };
        let mut out = Vec::new();
        for (w, rx) in rx.into_iter().enumerate() {
            let tx = match &shared {
                Some(s) => TxSlot::Shared(Arc::clone(s)),
                None => TxSlot::Own(p.tx_queue(w as u16).map_err(port_err(what.to_string()))?),
            };
            out.push((w, WorkerMsg::Attach { port: o.id, rx, tx }));
        }
        self.rx_owners.insert(o.id, owners);
        Ok(out)
    }

    /// The control thread's tokens for port `o`'s dedicated LACP queues, if it has them.
    fn lacp_tokens(&self, o: &OpenPort, what: &str) -> Result<Option<LacpQueue>, SwitchError> {
        let Some((rx, tx)) = o.lacp_queue else {
            return Ok(None);
        };
        let p = Port::from_id(o.id);
        Ok(Some(LacpQueue {
            port: o.id,
            rx: p.rx_queue(rx).map_err(port_err(what.to_string()))?,
            tx: p.tx_queue(tx).map_err(port_err(what.to_string()))?,
        }))
    }

    /// Gives every vNIC of `cfg` a slot: existing vNICs keep theirs, removed ones are
    /// vacated, new ones take a vacant slot (not one vacated by this change) or a new one.
    fn assign_slots(&mut self, cfg: &Config) -> Result<(), SwitchError> {
        let names: Vec<String> = cfg
            .vm
            .iter()
            .flat_map(|vm| (0..vm.vnic.len()).map(move |j| Config::vnic_name(vm, j)))
            .collect();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.as_ref().is_some_and(|n| !names.contains(n)) {
                *s = None;
                self.just_vacated.push(i);
            }
        }
        for n in names {
            if self.slots.iter().any(|s| s.as_ref() == Some(&n)) {
                continue;
            }
            let free = (0..self.slots.len())
                .find(|&i| self.slots[i].is_none() && !self.just_vacated.contains(&i));
            match free {
                Some(i) => self.slots[i] = Some(n),
                None if self.slots.len() < crate::shared::MAX_VNICS => self.slots.push(Some(n)),
                None => {
                    return Err(SwitchError::Other(format!(
                        "at most {} vNICs",
                        crate::shared::MAX_VNICS
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The advice given with an MTU change a running device cannot take.
const REOPEN: &str = "the port must be opened anew: put the mtu in the nic's [[nic]] table of the configuration file and restart vswitchd (an unbonded nic no vnic uses can also be deleted and added again with the mtu)";

/// Refuses an MTU outside the range `info`'s device takes.
fn device_takes_mtu(info: &PortInfo, what: &str, mtu: u16) -> Result<(), SwitchError> {
    if (info.min_mtu..=info.max_mtu).contains(&mtu) {
        return Ok(());
    }
    Err(SwitchError::Other(format!(
        "{what}: mtu {mtu} is outside what its device ({}) takes, {}..={}",
        info.driver, info.min_mtu, info.max_mtu
    )))
}

/// Why the MTU of a port whose LACP queues the control thread holds cannot change by
/// opening the port anew.
fn lacp_reopen(what: &str, mtu: u16) -> SwitchError {
    SwitchError::Other(format!(
        "{what}: mtu {mtu} takes opening the port anew, which cannot be done under LACP's dedicated queues; {REOPEN}"
    ))
}

/// Builds the control-plane topology of `cfg` over the open ports and vNIC slots.
fn build_topology(cfg: &Config, ports: &PortSet) -> Result<Topology, SwitchError> {
    let port_of = |key: &str| -> Result<u16, SwitchError> {
        ports
            .open
            .get(key)
            .map(|o| o.id)
            .ok_or_else(|| SwitchError::Other(format!("{key} is not open")))
    };
    let mut entries: Vec<PortEntry> = Vec::new();
    let mut uplinks: Vec<UplinkEntry> = Vec::new();
    let mut bond_configs = Vec::new();
    let mut member_names = Vec::new();
    let mut member_speeds = Vec::new();
    let mut lacp = Vec::new();
    let mut degraded = Vec::new();
    let mut add_uplink = |name: &str,
                          is_bond: bool,
                          nics: &[String],
                          bc: policy::bond::BondConfig,
                          l: Option<crate::lacp_ctl::LacpSettings>,
                          d: policy::bandwidth::DegradedMode|
     -> Result<(), SwitchError> {
        let u = uplinks.len() as u16;
        let mut members = Vec::new();
        let mut speeds = Vec::new();
        for (mi, nic) in nics.iter().enumerate() {
            let id = port_of(&format!("nic:{nic}"))?;
            let nc = cfg.nic.iter().find(|n| &n.name == nic);
            entries.push(PortEntry {
                id,
                name: nic.clone(),
                role: PortRole::Nic {
                    uplink: u,
                    member: mi as u8,
                },
                frame_max: nc.map_or(u32::MAX, |n| n.frame_max()),
            });
            members.push(id);
            speeds.push(nc.and_then(|n| n.speed_mbps));
        }
        uplinks.push(UplinkEntry {
            name: name.to_string(),
            is_bond,
            members,
            vnics: Vec::new(),
            // Replaced by the bond's own distribution before every publication.
            dist: policy::bond::Bond::new(Default::default(), nics.len().max(1))
                .map_err(|e| SwitchError::Other(e.to_string()))?
                .distribution(),
            ports: Default::default(),
        });
        bond_configs.push(bc);
        member_names.push(nics.to_vec());
        member_speeds.push(speeds);
        lacp.push(l);
        degraded.push(d);
        Ok(())
    };
    for b in &cfg.bond {
        let bc = b.policy().map_err(|e| SwitchError::Other(e.to_string()))?;
        let l = b
            .lacp_settings()
            .map_err(|e| SwitchError::Other(e.to_string()))?;
        let d = b
            .degraded
            .parse()
            .unwrap_or(policy::bandwidth::DegradedMode::DropLowerPriority);
        add_uplink(&b.name, true, &b.members, bc, l, d)?;
    }
    for n in &cfg.nic {
        if cfg.bond_of_nic(&n.name).is_none() {
            // An unbonded NIC is an uplink with no distribution: a one-member
            // active-backup team that never announces MAC moves.
            let single = policy::bond::BondConfig {
                notify_switches: false,
                ..Default::default()
            };
            add_uplink(
                &n.name,
                false,
                std::slice::from_ref(&n.name),
                single,
                None,
                policy::bandwidth::DegradedMode::DropLowerPriority,
            )?;
        }
    }
    let mut vnics: Vec<VnicEntry> = ports.slots.iter().map(|_| VnicEntry::vacant()).collect();
    for vm in &cfg.vm {
        for (j, v) in vm.vnic.iter().enumerate() {
            let name = Config::vnic_name(vm, j);
            let slot = ports
                .slots
                .iter()
                .position(|s| s.as_ref() == Some(&name))
                .ok_or_else(|| SwitchError::Other(format!("vNIC '{name}' has no slot")))?;
            let id = port_of(&format!("vnic:{name}"))?;
            let uplink = uplinks
                .iter()
                .position(|u| u.name == v.uplink)
                .ok_or_else(|| {
                    SwitchError::Other(format!("vNIC '{name}': no uplink '{}'", v.uplink))
                })?;
            uplinks[uplink].vnics.push(slot as u32);
            vnics[slot] = VnicEntry {
                live: true,
                name: name.clone(),
                vm: vm.name.clone(),
                mac: v
                    .mac
                    .parse()
                    .map_err(|_| SwitchError::Other(format!("vNIC '{name}': bad MAC {}", v.mac)))?,
                port: id,
                uplink: uplink as u16,
                spoof_check: v.spoof_check,
                priority: v.priority.unwrap_or(vm.priority),
                shaping: v.bandwidth(vm).shaping,
                bandwidth: v.bandwidth(vm),
            };
            entries.push(PortEntry {
                id,
                name,
                role: PortRole::Vnic { vnic: slot as u32 },
                frame_max: v.frame_max(),
            });
        }
    }
    let steering = ports
        .open
        .values()
        .filter(|o| !o.steering.is_empty())
        .map(|o| (o.id, o.steering.clone()))
        .collect();
    Ok(Topology {
        steering,
        ports: entries,
        vnics,
        uplinks,
        bond_configs,
        member_names,
        member_speeds,
        lacp,
        degraded,
        allocation_interval: if cfg.dataplane.bandwidth {
            Duration::from_micros(cfg.dataplane.allocation_interval_us.max(100))
        } else {
            Duration::ZERO
        },
    })
}

/// What [`Switch::reconfigure`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconfigured {
    /// Ports attached (names).
    pub added: Vec<String>,
    /// Ports detached (names).
    pub removed: Vec<String>,
    /// The snapshot generation that carries the change.
    pub generation: u64,
}

/// A running switch.
pub struct Switch {
    eal: &'static Eal,
    pool: Mempool,
    shared: Arc<Shared>,
    view: Arc<RwLock<ControlView>>,
    workers: Mutex<Vec<JoinHandle<WorkerQueues>>>,
    worker_stats: Vec<Arc<WorkerStats>>,
    cores: Vec<usize>,
    control: Mutex<Option<JoinHandle<()>>>,
    cmds: crossbeam::channel::Sender<ControlCmd>,
    stopped: std::sync::atomic::AtomicBool,
    /// Queue tokens handed back by stopped workers, released at shutdown.
    parked: Mutex<Vec<WorkerQueues>>,
    /// Open ports and vNIC slots; held for the whole of a reconfiguration.
    portset: Mutex<PortSet>,
    /// Ports as status output lists them.
    ports: RwLock<Vec<StatusPort>>,
    /// The topology the control thread runs (a copy, for status output).
    topo: RwLock<Topology>,
}

fn port_err(what: String) -> impl FnOnce(dpdk_sys::PortError) -> SwitchError {
    move |source| SwitchError::Port { what, source }
}

/// How long reconfiguration waits for the workers to take a hand-over or a snapshot.
const WORKER_WAIT: Duration = Duration::from_secs(2);

impl Switch {
    /// Starts a switch from a validated configuration.
    pub fn start(cfg: &Config) -> Result<Switch, SwitchError> {
        let n_workers = cfg.dataplane.cores.len();
        let main_core = cfg
            .dataplane
            .control_core
            .or_else(|| {
                let ncpu = std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1);
                (0..ncpu).find(|c| !cfg.dataplane.cores.contains(c))
            })
            .unwrap_or(0);
        let mut args = cfg.eal.args.clone();
        if !args
            .iter()
            .any(|a| a == "-l" || a.starts_with("--lcores") || a == "-c")
        {
            args.push("-l".into());
            args.push(main_core.to_string());
        }
        if !args.iter().any(|a| a.starts_with("--file-prefix")) {
            args.push(format!("--file-prefix={}", cfg.eal.file_prefix));
        }
        if !args.iter().any(|a| a.starts_with("--log-level")) {
            args.push("--log-level=lib.vhost.config:error".into());
        }
        let eal = Eal::init(&args)?;
        // RTE_PKTMBUF_HEADROOM (128) + one segment's data (see `ONE_SEGMENT_MAX`).
        let data_room = crate::worker::ONE_SEGMENT_MAX as u16 + 128;
        let pool = Mempool::new(eal, "vswitch_pool", cfg.dataplane.mbufs, 256, data_room)
            .map_err(SwitchError::Other)?;
        let mut ps = PortSet {
            eal,
            pool,
            n_workers,
            desc: cfg.dataplane.descriptors,
            open: BTreeMap::new(),
            slots: Vec::new(),
            just_vacated: Vec::new(),
            vhost_index: 0,
            rx_owners: BTreeMap::new(),
        };
        let wanted = wanted_ports(cfg);
        for w in &wanted {
            let o = ps.open(w, &[])?;
            ps.open.insert(w.key.clone(), o);
        }
        ps.assign_slots(cfg)?;
        ps.just_vacated.clear();
        let topo = build_topology(cfg, &ps)?;

        // The first snapshot already reflects the links as they are, so no frame is
        // dropped for want of a member before the control thread's first poll.
        let clock = std::time::Instant::now();
        let bonds = topo.bonds(0).map_err(SwitchError::Other)?;
        let dists: Vec<policy::bond::Distribution> =
            bonds.iter().map(|b| b.distribution()).collect();
        let shared = Arc::new(Shared::new(
            topo.snapshot(&dists),
            n_workers,
            cfg.dataplane.control_queue,
            cfg.dataplane.bandwidth,
            cfg.dataplane.max_queue_delay_us * policy::time::US,
        ));
        shared.set_pmd_sleep_max_us(cfg.dataplane.pmd_sleep_max_us);
        let view = Arc::new(RwLock::new(ControlView::default()));

        // Queues: each port's rx queues to the least loaded workers; every worker gets
        // a tx slot on every port. The same hand-out a running switch sends through
        // the mailboxes, applied before the workers start.
        let mut assign: Vec<WorkerQueues> = (0..n_workers).map(|_| WorkerQueues::empty()).collect();
        let mut lacp_queues = Vec::new();
        for w in &wanted {
            let o = ps.open[&w.key].clone();
            lacp_queues.extend(ps.lacp_tokens(&o, &w.what)?);
            for (wi, msg) in ps.hand_out(&o, &w.what)? {
                if let WorkerMsg::Attach { port, rx, tx } = msg {
                    assign[wi].attach(port, rx, tx);
                }
            }
        }
        let mut workers = Vec::new();
        let mut worker_stats = Vec::new();
        for (w, q) in assign.into_iter().enumerate() {
            let stats = Arc::new(WorkerStats::default());
            worker_stats.push(Arc::clone(&stats));
            let sh = Arc::clone(&shared);
            let core = cfg.dataplane.cores[w];
            let h = std::thread::Builder::new()
                .name(format!("pmd{w}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!(worker = w, core, "could not pin worker to its core");
                    }
                    if let Err(e) = dpdk_sys::eal::register_thread() {
                        tracing::warn!(worker = w, "rte_thread_register failed: {e}");
                    }
                    Worker::new(w, q, stats, sh).run()
                })
                .map_err(|e| SwitchError::Other(format!("spawn worker: {e}")))?;
            workers.push(h);
        }
        let (cmds, cmd_rx) = crossbeam::channel::unbounded();
        let control = Control::new(
            topo.clone(),
            bonds,
            Arc::clone(&shared),
            Arc::clone(&view),
            worker_stats.clone(),
            pool,
            Duration::from_millis(cfg.dataplane.link_poll_ms.max(1)),
            clock,
            cmd_rx,
            lacp_queues,
        );
        let control_core = cfg.dataplane.control_core;
        let control = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                if let Some(c) = control_core {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                let _ = dpdk_sys::eal::register_thread();
                control.run()
            })
            .map_err(|e| SwitchError::Other(format!("spawn control: {e}")))?;
        let ports = status_ports(&topo, &ps);
        tracing::info!(workers = n_workers, ports = ports.len(), "switch started");
        Ok(Switch {
            eal,
            pool,
            shared,
            view,
            workers: Mutex::new(workers),
            worker_stats,
            cores: cfg.dataplane.cores.clone(),
            control: Mutex::new(Some(control)),
            cmds,
            stopped: std::sync::atomic::AtomicBool::new(false),
            parked: Mutex::new(Vec::new()),
            portset: Mutex::new(ps),
            ports: RwLock::new(ports),
            topo: RwLock::new(topo),
        })
    }

    /// Brings the running switch to `cfg` (already validated): attaches new ports,
    /// detaches removed ones, re-assigns vNICs, and hands the control thread the new
    /// topology — without stopping the workers or touching the other ports' traffic
    /// (see the module documentation for the order). `vm` builds the VM-actions state
    /// for the new topology when the VM side changed (else returns `None`). On error nothing of the running
    /// switch has changed, except when a removed port fails to close (logged).
    pub fn reconfigure(
        &self,
        cfg: &Config,
        vm: impl FnOnce(&Topology) -> Option<Box<crate::vm_ctl::VmCtl>>,
    ) -> Result<Reconfigured, SwitchError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(SwitchError::Other("the switch is stopping".into()));
        }
        let mut ps = self.portset.lock();
        let wanted = wanted_ports(cfg);

        // 1. Which ports go, which come (a changed backend is both).
        let going: Vec<(String, OpenPort)> = ps
            .open
            .iter()
            .filter(|(k, o)| {
                !wanted
                    .iter()
                    .any(|w| &w.key == *k && w.backend == o.backend)
            })
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        let coming: Vec<&WantedPort> = wanted
            .iter()
            .filter(|w| ps.open.get(&w.key).is_none_or(|o| o.backend != w.backend))
            .collect();

        // A NIC kept with a new MTU changes it on the running device (step 4); what
        // the device is known to refuse is refused here, before anything changed.
        let mtu_changes = ps.mtu_changes(&wanted);
        for &(key, what, mtu) in &mtu_changes {
            ps.check_mtu(key, what, mtu)?;
        }

        // A new backend under a device name that is still attached would find the
        // old device instead of probing a new one.
        for w in &coming {
            if w.backend.starts_with("vhost-user:") {
                continue;
            }
            let dev = w.backend.split(',').next().unwrap_or("").trim();
            if let Some(p) = Port::by_name(dev) {
                if ps.open.values().any(|o| o.id == p.id()) {
                    return Err(SwitchError::Other(format!(
                        "{}: device {dev} is still attached; give the new backend another device name (e.g. {dev}1)",
                        w.what
                    )));
                }
            }
        }

        // 2. Attach and start the new ports; undo them all if one fails.
        let mut opened: Vec<(&WantedPort, OpenPort)> = Vec::new();
        for w in &coming {
            match ps.open(w, &self.worker_stats) {
                Ok(o) => opened.push((w, o)),
                Err(e) => {
                    for (_, o) in &opened {
                        close_port(o);
                    }
                    return Err(e);
                }
            }
        }

        // 3. Hand their queues to the workers and wait until each has them.
        let mut msgs: Vec<(usize, WorkerMsg)> = Vec::new();
        let mut handed = Vec::new();
        let mut failed = None;
        let mut lacp_queues = Vec::new();
        for (w, o) in &opened {
            match ps
                .lacp_tokens(o, &w.what)
                .and_then(|l| Ok((l, ps.hand_out(o, &w.what)?)))
            {
                Ok((l, m)) => {
                    lacp_queues.extend(l);
                    msgs.extend(m);
                    handed.push(o.clone());
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let sent = self.send_to_workers(msgs);
        let new_ports: Vec<OpenPort> = opened.iter().map(|(_, o)| o.clone()).collect();
        if let Some(e) = failed.or(sent.err()) {
            drop(lacp_queues);
            self.release_ports(&mut ps, &handed);
            for o in new_ports
                .iter()
                .filter(|o| !handed.iter().any(|h| h.id == o.id))
            {
                close_port(o);
            }
            return Err(e);
        }

        // 4. The new topology to the control thread, published to the workers.
        let before = (ps.open.clone(), ps.slots.clone());
        for (k, _) in &going {
            ps.open.remove(k);
        }
        for (w, o) in &opened {
            ps.open.insert(w.key.clone(), o.clone());
        }
        let built = ps.assign_slots(cfg).and_then(|_| build_topology(cfg, &ps));
        let mtus = match &built {
            Ok(_) => self.apply_mtus(&mut ps, &mtu_changes),
            Err(_) => Ok(Vec::new()),
        };
        let (topo, mtus) = match built.and_then(|t| Ok((t, mtus?))) {
            Ok(t) => t,
            Err(e) => {
                (ps.open, ps.slots) = before;
                ps.just_vacated.clear();
                drop(lacp_queues);
                self.release_ports(&mut ps, &new_ports);
                return Err(e);
            }
        };
        let vm = vm(&topo);
        let generation = match self.control_request(|reply| ControlCmd::Reconfigure {
            topo: Box::new(topo.clone()),
            vm,
            lacp_queues,
            reply,
        }) {
            Some(g) => g,
            None => {
                self.set_mtus_back(&mut ps, &mtus);
                (ps.open, ps.slots) = before;
                ps.just_vacated.clear();
                self.release_ports(&mut ps, &new_ports);
                return Err(SwitchError::Other(
                    "the control thread did not take the new topology within 2 s; it was withdrawn"
                        .into(),
                ));
            }
        };
        // From here the change is running; waiting only decides when the removed
        // ports may close.
        let published = self.wait_workers(|w| {
            self.worker_stats[w].generation.load(Ordering::Acquire) >= generation
        });
        *self.ports.write() = status_ports(&topo, &ps);
        *self.topo.write() = topo;
        ps.just_vacated.clear();

        // 5. The removed ports: released by every worker, then closed.
        let removed: Vec<OpenPort> = going.iter().map(|(_, o)| o.clone()).collect();
        match published {
            Ok(()) => self.release_ports(&mut ps, &removed),
            Err(e) => tracing::error!(ports = removed.len(), "removed ports left open: {e}"),
        }
        let report = Reconfigured {
            added: opened.iter().map(|(w, _)| w.what.clone()).collect(),
            removed: going.iter().map(|(k, _)| k.clone()).collect(),
            generation,
        };
        tracing::info!(added = ?report.added, removed = ?report.removed, generation, "switch reconfigured");
        Ok(report)
    }

    /// Gives each kept NIC of `changes` (key, description, MTU) its new MTU
    /// ([`Switch::change_mtu`]). Returns (key, description, old MTU) of those changed,
    /// for [`Switch::set_mtus_back`]; on an error, those already changed are set back.
    fn apply_mtus(
        &self,
        ps: &mut PortSet,
        changes: &[(&str, &str, u16)],
    ) -> Result<Vec<(String, String, u16)>, SwitchError> {
        let mut done = Vec::new();
        for &(key, what, mtu) in changes {
            let Some(old) = ps
                .open
                .get(key)
                .map(|o| o.mtu.unwrap_or(crate::config::DEFAULT_MTU))
            else {
                continue;
            };
            if let Err(e) = self.change_mtu(ps, key, what, mtu) {
                self.set_mtus_back(ps, &done);
                return Err(e);
            }
            done.push((key.to_string(), what.to_string(), old));
        }
        Ok(done)
    }

    /// Undoes [`Switch::apply_mtus`], as far as the devices let it (failures logged).
    fn set_mtus_back(&self, ps: &mut PortSet, done: &[(String, String, u16)]) {
        for (key, what, mtu) in done {
            if let Err(e) = self.change_mtu(ps, key, what, *mtu) {
                tracing::error!(port = %what, mtu, "could not set the MTU back: {e}");
            }
        }
    }

    /// Gives open NIC `key` the MTU `mtu`: on the running device when that needs no rx
    /// scatter the port lacks and the device takes it (tap: its kernel interface's
    /// MTU; PMDs without an MTU operation: nothing to do), else by opening the port
    /// anew in place, as Open vSwitch reconfigures a netdev for a new `mtu_request`
    /// ([`Switch::reopen_with_mtu`]; its link drops briefly).
    fn change_mtu(
        &self,
        ps: &mut PortSet,
        key: &str,
        what: &str,
        mtu: u16,
    ) -> Result<(), SwitchError> {
        let Some(o) = ps.open.get(key).cloned() else {
            return Ok(());
        };
        let p = Port::from_id(o.id);
        let info = p.info().map_err(port_err(what.to_string()))?;
        let scatter = info.rx_scatter_for(mtu, &ps.pool);
        let live = if scatter && !o.scatter {
            Err("it needs rx scatter, off since the port opened".to_string())
        } else {
            p.set_mtu(mtu).map_err(|e| e.to_string())
        };
        match live {
            Ok(()) => {
                if let Some(o) = ps.open.get_mut(key) {
                    o.mtu = Some(mtu);
                }
                Ok(())
            }
            Err(why) => {
                if o.lacp_queue.is_some() {
                    return Err(lacp_reopen(what, mtu));
                }
                tracing::info!(port = %what, mtu, "opening the port anew for its MTU: {why}");
                self.reopen_with_mtu(ps, key, what, o, mtu, scatter)
            }
        }
    }

    /// Opens NIC `o` (key `key`) anew with MTU `mtu` and rx scatter as `scatter` says,
    /// keeping its port id and counters: every worker lets go of its queues (what
    /// they had buffered for it is sent), the device is stopped, configured with the
    /// MTU and started, and the queues are handed back. Frames switched to the port
    /// in between are counted as `unknown_port` drops. If the device does not take
    /// the MTU, it is opened with its old one again and the error returned.
    fn reopen_with_mtu(
        &self,
        ps: &mut PortSet,
        key: &str,
        what: &str,
        o: OpenPort,
        mtu: u16,
        scatter: bool,
    ) -> Result<(), SwitchError> {
        let n = self.worker_stats.len();
        self.send_to_workers(
            (0..n)
                .map(|w| (w, WorkerMsg::Detach { port: o.id }))
                .collect(),
        )?;
        ps.rx_owners.remove(&o.id);
        let p = Port::from_id(o.id);
        let (desc, pool) = (ps.desc, ps.pool);
        let restart = |m: u16| -> Result<(), dpdk_sys::PortError> {
            p.stop()?;
            let setup = PortSetup {
                lsc: false,
                mtu: Some(m),
            };
            p.configure_with(o.nb_rx, o.nb_tx, desc, &pool, setup)?;
            p.set_promiscuous(true)?;
            p.start()
        };
        let mut now = o.clone();
        let result = restart(mtu);
        match &result {
            Ok(()) => {
                now.mtu = Some(mtu);
                now.scatter = scatter;
            }
            Err(e) => {
                tracing::error!(port = %what, mtu, "the device did not take the MTU: {e}");
                let old = o.mtu.unwrap_or(crate::config::DEFAULT_MTU);
                if let Err(e) = restart(old) {
                    tracing::error!(port = %what, mtu = old, "could not open the port again with its old MTU: {e}");
                }
            }
        }
        let msgs = ps.hand_out(&now, what)?;
        self.send_to_workers(msgs)?;
        ps.open.insert(key.to_string(), now);
        result.map_err(|e| {
            SwitchError::Other(format!(
                "{what}: the device does not take mtu {mtu} ({e}); it runs with its old MTU"
            ))
        })
    }

    /// Pushes hand-over messages to the workers' mailboxes and waits until every
    /// worker has carried out its share.
    fn send_to_workers(&self, msgs: Vec<(usize, WorkerMsg)>) -> Result<(), SwitchError> {
        let n = self.worker_stats.len();
        let mut target: Vec<u64> = (0..n).map(|w| self.shared.done(w)).collect();
        for (w, msg) in msgs {
            let mut msg = msg;
            loop {
                match self.shared.mailbox[w].push(msg) {
                    Ok(()) => break,
                    Err(back) => {
                        msg = back;
                        crate::nap::nap(Duration::from_micros(100));
                    }
                }
            }
            target[w] += 1;
        }
        self.wait_workers(|w| self.shared.done(w) >= target[w])
    }

    /// Waits (up to [`WORKER_WAIT`]) until `ok(w)` holds for every worker.
    fn wait_workers(&self, ok: impl Fn(usize) -> bool) -> Result<(), SwitchError> {
        let deadline = std::time::Instant::now() + WORKER_WAIT;
        loop {
            if (0..self.worker_stats.len()).all(&ok) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(SwitchError::Other(
                    "a worker did not take the change within 2 s (is it stuck?)".into(),
                ));
            }
            crate::nap::nap(Duration::from_micros(200));
        }
    }

    /// Ports no snapshot names (any more, or yet): every worker releases their
    /// queues, then they are stopped, closed and detached. A port the workers did
    /// not release in time is left open (logged) rather than closed under them.
    fn release_ports(&self, ps: &mut PortSet, ports: &[OpenPort]) {
        if ports.is_empty() {
            return;
        }
        let msgs: Vec<(usize, WorkerMsg)> = ports
            .iter()
            .flat_map(|o| {
                (0..self.worker_stats.len()).map(move |w| (w, WorkerMsg::Detach { port: o.id }))
            })
            .collect();
        if let Err(e) = self.send_to_workers(msgs) {
            tracing::error!(ports = ports.len(), "ports left open: {e}");
            return;
        }
        for o in ports {
            ps.rx_owners.remove(&o.id);
            close_port(o);
        }
    }
}

/// Stops, closes and detaches a port no worker uses, and removes the vhost-user
/// socket the switch created for it.
fn close_port(o: &OpenPort) {
    let p = Port::from_id(o.id);
    if let Err(e) = p.stop() {
        tracing::warn!("{e}");
    }
    if let Err(e) = p.detach() {
        tracing::warn!("{e}");
    }
    if let Some(s) = &o.socket {
        let _ = std::fs::remove_file(s);
    }
}

/// The ports as status output lists them: the topology's ports with their devargs
/// and counter baselines.
fn status_ports(topo: &Topology, ps: &PortSet) -> Vec<StatusPort> {
    topo.ports
        .iter()
        .map(|p| {
            let o = ps.open.values().find(|o| o.id == p.id);
            StatusPort {
                entry: p.clone(),
                devargs: o.map(|o| o.devargs.clone()).unwrap_or_default(),
                baseline: o.map(|o| o.baseline).unwrap_or_default(),
                rx_baseline: o.map(|o| o.rx_baseline.clone()).unwrap_or_default(),
                rx_owners: ps.rx_owners.get(&p.id).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// A port as status output lists it.
struct StatusPort {
    entry: PortEntry,
    devargs: String,
    baseline: PortTotals,
    rx_baseline: Vec<u64>,
    /// The worker polling each of its rx queues (index: queue id).
    rx_owners: Vec<usize>,
}

/// The rx queues of one port that one worker polls (`vsctl pmd-rxq-show`).
#[derive(Debug, Clone, PartialEq)]
pub struct RxqStatus {
    /// Configured port name.
    pub port: String,
    /// "vnic" or "nic".
    pub kind: &'static str,
    /// The worker.
    pub worker: usize,
    /// Its queue ids on this port.
    pub queues: Vec<u16>,
    /// Frames the worker received from them since the port was opened (or the
    /// clear passed to [`Switch::rx_queues`]).
    pub rx_pkts: u64,
}

impl Switch {
    /// Status of every port.
    pub fn ports(&self) -> Vec<PortStatus> {
        self.ports
            .read()
            .iter()
            .map(|sp| {
                let p = &sp.entry;
                let port = Port::from_id(p.id);
                PortStatus {
                    name: p.name.clone(),
                    id: p.id,
                    kind: p.role.kind(),
                    devargs: sp.devargs.clone(),
                    link_up: port.link().up,
                    mtu: port.mtu(),
                    counters: port_totals(&self.worker_stats, p.id).since(&sp.baseline),
                    pmd: port.stats(),
                }
            })
            .collect()
    }

    /// Which worker polls which rx queue, with the frames each worker received from
    /// each port: one entry per (port, worker), in port order. Counted since the
    /// port opened or, when later, since `since` (each worker's per-port-id rx
    /// counters as [`rx_counters`](Self::rx_counters) read them at a
    /// `pmd-stats-clear`): both are readings of the same ever-growing counter, so
    /// the larger one is the later.
    pub fn rx_queues(&self, since: &[Vec<u64>]) -> Vec<RxqStatus> {
        let mut out = Vec::new();
        for sp in self.ports.read().iter() {
            let p = &sp.entry;
            let kind = p.role.kind();
            for (w, stats) in self.worker_stats.iter().enumerate() {
                let queues: Vec<u16> = (0..sp.rx_owners.len())
                    .filter(|&q| sp.rx_owners[q] == w)
                    .map(|q| q as u16)
                    .collect();
                if queues.is_empty() {
                    continue;
                }
                let now = stats.ports[p.id as usize].rx_pkts.load(Ordering::Relaxed);
                let opened = sp.rx_baseline.get(w).copied().unwrap_or(0);
                let cleared = since
                    .get(w)
                    .and_then(|c| c.get(p.id as usize))
                    .copied()
                    .unwrap_or(0);
                let base = opened.max(cleared);
                out.push(RxqStatus {
                    port: p.name.clone(),
                    kind,
                    worker: w,
                    queues,
                    rx_pkts: now.saturating_sub(base),
                });
            }
        }
        out
    }

    /// Each worker's rx counter of every port id, now (for `pmd-stats-clear`).
    pub fn rx_counters(&self) -> Vec<Vec<u64>> {
        self.worker_stats
            .iter()
            .map(|w| {
                w.ports
                    .iter()
                    .map(|c| c.rx_pkts.load(Ordering::Relaxed))
                    .collect()
            })
            .collect()
    }

    /// The control plane's view.
    pub fn control_view(&self) -> ControlView {
        self.view.read().clone()
    }

    /// Per-worker statistics.
    pub fn worker_stats(&self) -> &[Arc<WorkerStats>] {
        &self.worker_stats
    }

    /// The topology the control thread runs now (a copy).
    pub fn topology(&self) -> Topology {
        self.topo.read().clone()
    }

    /// Sets the workers' longest load-based sleep (`[dataplane] pmd_sleep_max_us`);
    /// each worker reads it at its next poll pass.
    pub fn set_pmd_sleep_max(&self, us: u64) {
        self.shared.set_pmd_sleep_max_us(us);
    }

    /// The workers' longest load-based sleep now, µs (0: they busy-poll).
    pub fn pmd_sleep_max_us(&self) -> u64 {
        self.shared.pmd_sleep_max_us()
    }

    /// Mbufs currently out of the pool.
    pub fn mbufs_in_use(&self) -> u32 {
        self.pool.in_use()
    }

    /// Stops the workers and the control thread (idempotent); the counters are final
    /// afterwards and the ports still open, so a last status can be read before
    /// [`Switch::shutdown`] closes them.
    pub fn stop_threads(&self) {
        self.shared.quit.store(true, Ordering::Relaxed);
        for h in self.workers.lock().drain(..) {
            match h.join() {
                Ok(q) => self.parked.lock().push(q),
                Err(_) => tracing::error!("a worker panicked"),
            }
        }
        if let Some(c) = self.control.lock().take() {
            let _ = c.join();
        }
    }

    /// Worker cores, by worker index.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// Sends a request to the control thread and waits for its answer: `None` when the
    /// control thread did not take it up within 2 s (it is then withdrawn and never
    /// carried out; [`crate::reply`]), the answer otherwise.
    pub fn control_request<T>(
        &self,
        make: impl FnOnce(crate::reply::Reply<T>) -> ControlCmd,
    ) -> Option<T> {
        crate::reply::request(
            |reply| self.cmds.send(make(reply)).is_ok(),
            Duration::from_secs(2),
        )
    }

    /// Stops workers and the control thread, frees every frame, closes ports and
    /// returns the pool's in-use count afterwards (0 when nothing leaked). Only the
    /// first call does the work.
    pub fn shutdown(&self) -> u32 {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return self.pool.in_use();
        }
        self.stop_threads();
        // A reconfiguration in progress gives up once the workers are gone.
        let mut ps = self.portset.lock();
        let queues = std::mem::take(&mut *self.parked.lock());
        for mb in &self.shared.mailbox {
            while let Some(msg) = mb.pop() {
                drop(msg);
            }
        }
        while let Some((_, m)) = self.shared.slow_rx.pop() {
            drop(m);
        }
        while let Some((_, m)) = self.shared.ctl_tx.pop() {
            drop(m);
        }
        drop(queues);
        let open: Vec<OpenPort> = std::mem::take(&mut ps.open).into_values().collect();
        for o in &open {
            if let Err(e) = Port::from_id(o.id).stop() {
                tracing::warn!("{e}");
            }
        }
        for o in &open {
            if let Err(e) = Port::from_id(o.id).close() {
                tracing::warn!("{e}");
            }
            if let Some(s) = &o.socket {
                let _ = std::fs::remove_file(s);
            }
        }
        let in_use = self.pool.in_use();
        tracing::info!(mbufs_in_use = in_use, "switch stopped");
        let _ = self.eal;
        in_use
    }
}
