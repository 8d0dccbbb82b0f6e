//! Bringing a switch up from a [`Config`] and taking it down cleanly.
//!
//! Start-up order: EAL → mbuf pool → NIC ports (promiscuous) → vNIC ports (vhost-user
//! server or client, or any devargs) → the first snapshot → worker threads (pinned,
//! registered with DPDK) → the control thread. Shutdown reverses it: workers stop
//! and free their buffered frames, the control thread stops, handoff queues are
//! emptied, ports are stopped and closed (vhost sockets removed), and the pool's
//! in-use count is reported — it must be 0.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dpdk_sys::{Eal, Mempool, Port, PortStats, SharedTxQueue};
use parking_lot::{Mutex, RwLock};

use crate::config::{Config, UplinkRef};
use crate::control::{Control, ControlCmd, ControlView, Topology};
use crate::shared::Shared;
use crate::snapshot::{PortEntry, PortRole, UplinkEntry, VnicEntry};
use crate::stats::{port_totals, PortTotals, WorkerStats, MAX_PORTS};
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
    /// The switch's own counters.
    pub counters: PortTotals,
    /// The PMD's counters.
    #[serde(skip)]
    pub pmd: PortStats,
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
    ports: Vec<(PortEntry, String)>,
    topo: Topology,
    sockets: Vec<String>,
}

fn port_err(what: String) -> impl FnOnce(dpdk_sys::PortError) -> SwitchError {
    move |source| SwitchError::Port { what, source }
}

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
        let pool = Mempool::new(eal, "vswitch_pool", cfg.dataplane.mbufs, 256, 2048 + 128)
            .map_err(SwitchError::Other)?;
        let desc = cfg.dataplane.descriptors;

        let mut ports: Vec<(PortEntry, String)> = Vec::new();
        let mut uplinks: Vec<UplinkEntry> = Vec::new();
        let mut bond_configs = Vec::new();
        let mut member_names = Vec::new();
        let mut member_speeds = Vec::new();
        let mut nic_port: Vec<Option<u16>> = vec![None; cfg.nic.len()];

        let queue_counts: std::cell::RefCell<std::collections::HashMap<u16, (u16, u16)>> =
            Default::default();
        let open =
            |what: String, devargs: &str, nb_q: u16, vnic: bool| -> Result<Port, SwitchError> {
                let p = Port::attach(eal, devargs).map_err(port_err(what.clone()))?;
                if p.id() as usize >= MAX_PORTS {
                    return Err(SwitchError::Other(format!(
                        "{what}: port id {} exceeds {MAX_PORTS}",
                        p.id()
                    )));
                }
                let info = p.info().map_err(port_err(what.clone()))?;
                // One rx and one tx queue per worker where the device allows it (rx queues
                // are spread over the workers); a port with fewer tx queues than workers
                // (vhost-user, whose guest may enable a single queue pair; pcap) gets one
                // tx queue that the workers share behind a lock.
                let vhost = info.driver == "net_vhost";
                let mut nb_tx = if vhost || info.max_tx_queues < nb_q {
                    1
                } else {
                    nb_q
                };
                // A vNIC has a single rx queue, so exactly one worker owns its bandwidth
                // gate and counters.
                let nb_rx = if vhost || vnic {
                    1
                } else {
                    nb_q.min(info.max_rx_queues.max(1))
                };
                let mut nb_rx = nb_rx;
                if info.driver == "net_tap" {
                    // The tap PMD wants as many rx as tx queues.
                    nb_tx = if vnic { 1 } else { nb_tx };
                    nb_rx = nb_tx;
                }
                p.configure(nb_rx, nb_tx, desc, &pool)
                    .map_err(port_err(what.clone()))?;
                queue_counts.borrow_mut().insert(p.id(), (nb_rx, nb_tx));
                Ok(p)
            };

        // Uplinks: bonds, then unbonded NICs.
        let mut add_uplink = |name: &str,
                              is_bond: bool,
                              nics: Vec<usize>,
                              bc: policy::bond::BondConfig|
         -> Result<(), SwitchError> {
            let u = uplinks.len() as u16;
            let mut members = Vec::new();
            let mut names = Vec::new();
            let mut speeds = Vec::new();
            for (mi, &ni) in nics.iter().enumerate() {
                let nic = &cfg.nic[ni];
                let p = open(
                    format!("nic '{}'", nic.name),
                    &nic.devargs,
                    n_workers as u16,
                    false,
                )?;
                p.set_promiscuous(true)
                    .map_err(port_err(format!("nic '{}'", nic.name)))?;
                nic_port[ni] = Some(p.id());
                ports.push((
                    PortEntry {
                        id: p.id(),
                        name: nic.name.clone(),
                        role: PortRole::Nic {
                            uplink: u,
                            member: mi as u8,
                        },
                    },
                    nic.devargs.clone(),
                ));
                members.push(p.id());
                names.push(nic.name.clone());
                speeds.push(nic.speed_mbps);
            }
            uplinks.push(UplinkEntry {
                name: name.to_string(),
                is_bond,
                members,
                vnics: Vec::new(),
                // Replaced by the bond's own distribution before the first publication.
                dist: policy::bond::Bond::new(Default::default(), nics.len().max(1))
                    .map_err(|e| SwitchError::Other(e.to_string()))?
                    .distribution(),
            });
            bond_configs.push(bc);
            member_names.push(names);
            member_speeds.push(speeds);
            Ok(())
        };
        for b in &cfg.bond {
            let nics = b
                .members
                .iter()
                .map(|m| cfg.nic.iter().position(|n| &n.name == m).unwrap())
                .collect();
            let bc = b.policy().map_err(|e| SwitchError::Other(e.to_string()))?;
            add_uplink(&b.name, true, nics, bc)?;
        }
        for (i, n) in cfg.nic.iter().enumerate() {
            if cfg.bond_of_nic(&n.name).is_none() {
                // An unbonded NIC is an uplink with no distribution: a one-member
                // active-backup team that never announces MAC moves.
                let single = policy::bond::BondConfig {
                    notify_switches: false,
                    ..Default::default()
                };
                add_uplink(&n.name, false, vec![i], single)?;
            }
        }
        let uplink_index = |name: &str| -> u16 {
            match cfg.uplink(name) {
                Some(UplinkRef::Bond(b)) => b as u16,
                Some(UplinkRef::Nic(n)) => {
                    (cfg.bond.len()
                        + cfg.nic[..n]
                            .iter()
                            .filter(|x| cfg.bond_of_nic(&x.name).is_none())
                            .count()) as u16
                }
                None => unreachable!("validated"),
            }
        };

        // vNICs.
        let mut vnics = Vec::new();
        let mut sockets = Vec::new();
        let mut vhost_index = 0;
        for vm in &cfg.vm {
            for (j, v) in vm.vnic.iter().enumerate() {
                let name = Config::vnic_name(vm, j);
                let devargs = match (&v.socket, &v.devargs) {
                    (Some(sock), _) => {
                        let client = if v.vhost_mode == "client" {
                            ",client=1"
                        } else {
                            ""
                        };
                        if v.vhost_mode == "server" {
                            let _ = std::fs::remove_file(sock);
                            sockets.push(sock.clone());
                        }
                        let d = format!("net_vhost{vhost_index},iface={sock},queues=1{client}");
                        vhost_index += 1;
                        d
                    }
                    (None, Some(d)) => d.clone(),
                    (None, None) => unreachable!("validated"),
                };
                let p = open(
                    format!("vm '{}' vnic '{name}'", vm.name),
                    &devargs,
                    n_workers as u16,
                    true,
                )?;
                let uplink = uplink_index(&v.uplink);
                let idx = vnics.len() as u32;
                uplinks[uplink as usize].vnics.push(idx);
                vnics.push(VnicEntry {
                    name: name.clone(),
                    vm: vm.name.clone(),
                    mac: v.mac.parse().expect("validated"),
                    port: p.id(),
                    uplink,
                    spoof_check: v.spoof_check,
                    priority: v.priority.unwrap_or(vm.priority),
                    shaping: v.bandwidth(vm).shaping,
                    bandwidth: v.bandwidth(vm),
                });
                ports.push((
                    PortEntry {
                        id: p.id(),
                        name,
                        role: PortRole::Vnic { vnic: idx },
                    },
                    devargs,
                ));
            }
        }
        for (entry, _) in &ports {
            Port::from_id(entry.id)
                .start()
                .map_err(port_err(entry.name.clone()))?;
        }

        let n_uplinks = uplinks.len();
        let topo = Topology {
            ports: ports.iter().map(|(p, _)| p.clone()).collect(),
            vnics,
            uplinks,
            bond_configs,
            member_names,
            member_speeds,
            lacp: cfg
                .bond
                .iter()
                .map(|b| b.lacp_settings().ok().flatten())
                .collect(),
            degraded: {
                let mut d: Vec<policy::bandwidth::DegradedMode> = cfg
                    .bond
                    .iter()
                    .map(|b| {
                        b.degraded
                            .parse()
                            .unwrap_or(policy::bandwidth::DegradedMode::DropLowerPriority)
                    })
                    .collect();
                d.resize(
                    n_uplinks,
                    policy::bandwidth::DegradedMode::DropLowerPriority,
                );
                d
            },
            allocation_interval: if cfg.dataplane.bandwidth {
                Duration::from_micros(cfg.dataplane.allocation_interval_us.max(100))
            } else {
                Duration::ZERO
            },
        };
        // The first snapshot already reflects the links as they are, so no frame is
        // dropped for want of a member before the control thread's first poll.
        let clock = std::time::Instant::now();
        let bonds = topo.bonds(0).map_err(SwitchError::Other)?;
        let dists: Vec<policy::bond::Distribution> =
            bonds.iter().map(|b| b.distribution()).collect();
        if topo.vnics.len() > crate::shared::MAX_VNICS {
            return Err(SwitchError::Other(format!(
                "at most {} vNICs",
                crate::shared::MAX_VNICS
            )));
        }
        let shared = Arc::new(Shared::new(
            topo.snapshot(&dists),
            cfg.dataplane.control_queue,
            cfg.dataplane.bandwidth,
            cfg.dataplane.max_queue_delay_us * policy::time::US,
        ));
        let view = Arc::new(RwLock::new(ControlView::default()));

        // Queues: rx queue 0 of each port goes to worker (k mod n); every worker gets
        // tx queue w of every port.
        let mut assign: Vec<WorkerQueues> = (0..n_workers)
            .map(|_| WorkerQueues {
                rx: Vec::new(),
                tx: (0..MAX_PORTS).map(|_| None).collect(),
            })
            .collect();
        let mut next_worker = 0;
        for (entry, _) in ports.iter() {
            let p = Port::from_id(entry.id);
            let (nb_rx, nb_tx) = queue_counts
                .borrow()
                .get(&entry.id)
                .copied()
                .unwrap_or((1, 1));
            for q in 0..nb_rx {
                assign[next_worker % n_workers]
                    .rx
                    .push(p.rx_queue(q).map_err(port_err(entry.name.clone()))?);
                next_worker += 1;
            }
            if (nb_tx as usize) < n_workers {
                let shared = Arc::new(SharedTxQueue::new(
                    p.tx_queue(0).map_err(port_err(entry.name.clone()))?,
                ));
                for a in assign.iter_mut() {
                    a.tx[entry.id as usize] = Some(TxSlot::Shared(Arc::clone(&shared)));
                }
            } else {
                for (w, a) in assign.iter_mut().enumerate() {
                    a.tx[entry.id as usize] = Some(TxSlot::Own(
                        p.tx_queue(w as u16).map_err(port_err(entry.name.clone()))?,
                    ));
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
            ports,
            topo,
            sockets,
        })
    }

    /// Status of every port.
    pub fn ports(&self) -> Vec<PortStatus> {
        self.ports
            .iter()
            .map(|(p, devargs)| {
                let port = Port::from_id(p.id);
                PortStatus {
                    name: p.name.clone(),
                    id: p.id,
                    kind: match p.role {
                        PortRole::Vnic { .. } => "vnic",
                        PortRole::Nic { .. } => "nic",
                    },
                    devargs: devargs.clone(),
                    link_up: port.link().up,
                    counters: port_totals(&self.worker_stats, p.id),
                    pmd: port.stats(),
                }
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

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topo
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

    /// Sends a request to the control thread and waits (up to 2 s) for its answer.
    pub fn control_request<T>(
        &self,
        make: impl FnOnce(crossbeam::channel::Sender<T>) -> ControlCmd,
    ) -> Option<T> {
        let (tx, rx) = crossbeam::channel::bounded(1);
        self.cmds.send(make(tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok()
    }

    /// Stops workers and the control thread, frees every frame, closes ports and
    /// returns the pool's in-use count afterwards (0 when nothing leaked). Only the
    /// first call does the work.
    pub fn shutdown(&self) -> u32 {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return self.pool.in_use();
        }
        self.stop_threads();
        let queues = std::mem::take(&mut *self.parked.lock());
        while let Some((_, m)) = self.shared.slow_rx.pop() {
            drop(m);
        }
        while let Some((_, m)) = self.shared.ctl_tx.pop() {
            drop(m);
        }
        drop(queues);
        for (p, _) in &self.ports {
            let port = Port::from_id(p.id);
            if let Err(e) = port.stop() {
                tracing::warn!("{e}");
            }
        }
        for (p, _) in &self.ports {
            if let Err(e) = Port::from_id(p.id).close() {
                tracing::warn!("{e}");
            }
        }
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
        let in_use = self.pool.in_use();
        tracing::info!(mbufs_in_use = in_use, "switch stopped");
        let _ = self.eal;
        in_use
    }
}
