//! VM actions and DoS detection on the control thread, with the actions themselves
//! executed off it.
//!
//! Implements specification paragraphs \[0123\]–\[0133\] on top of
//! `policy::vmaction` (when to suspend, resume, migrate, alert) and
//! `policy::dos` (detection, mitigation), with [`crate::vmctl`] (QMP, hooks) and
//! [`crate::dos_path`] (the worker side of the DoS defence).
//!
//! # Threads and ownership
//! - [`VmCtl`] is owned by the control thread, which calls [`VmCtl::run`] every
//!   iteration (≈ 2 ms). It feeds the [`VmSupervisor`] (bond degraded/restored from
//!   the bonds, starvation from the bandwidth allocations, DoS events), runs one
//!   [`DosDetector`] per protected VM on the sum of its vNICs' counters, publishes
//!   each vNIC's mitigation word, and drains planned actions. It never blocks: an
//!   action is a message on a channel.
//! - One `vm-actions` thread receives actions and executes them (QMP with a
//!   timeout, hook commands with a timeout, state-file writes) one at a time, and
//!   sends each result back; results are fed to the supervisor on the next
//!   iteration. A QMP peer that is gone, silent or answers garbage costs that thread
//!   at most the QMP timeout, never the control thread. A live reconfiguration
//!   builds a new [`VmCtl`], which takes this thread over with the supervisor's
//!   state ([`VmCtl::take_over`]): actions under way report to the new one.
//!
//! # Persistence
//! The supervisor's "suspended by us" set is written to a state file (JSON; temp
//! file, fsync, rename, directory fsync) whenever it may have changed, before the
//! actions that changed it are executed, so a restarted switch resumes the VMs it
//! suspended ([`VmSupervisor::restore`]).
//!
//! # Invariants
//! - Every planned action and every result is logged (VM, action, reason, outcome)
//!   and counted; alerts and migration requests go to the VM's hook when it has
//!   one, and are logged in any case.
//! - Mitigation words change only when a detector's mitigation changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use policy::dos::{DosCounters, DosDetector, DosEvent, DosResponse, Mitigation};
use policy::time::{Nanos, MS, SEC};
use policy::vmaction::{
    BondActionPolicy, SupervisorConfig, SupervisorSnapshot, VmAction, VmActionPolicy, VmSpec,
    VmSupervisor,
};

use crate::config::Config;
use crate::control::Topology;
use crate::dos_path::{DosShared, VnicDosSettings};

/// Deadline of each QMP operation.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a hook command may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the status view is rebuilt.
const VIEW_PERIOD: Nanos = 50 * MS;

/// What `vsctl show` reports about one VM's actions and DoS state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmActionView {
    /// VM name.
    pub vm: String,
    /// `running`, `suspended-by-switch`, `suspending`, `resuming`.
    pub state: String,
    /// Why the switch wants it suspended (empty: it does not).
    pub reasons: Vec<String>,
    /// The latest action and its outcome, e.g. `suspend ok (starved while bond b0 is degraded)`.
    pub last_action: String,
    /// Successful suspends.
    pub suspends: u64,
    /// Successful resumes.
    pub resumes: u64,
    /// Migration requests made.
    pub migrations: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Failed actions.
    pub failures: u64,
    /// DoS: the active attacks (empty: none).
    pub dos: String,
    /// DoS: attacks detected so far.
    pub attacks: u64,
}

/// Work for the `vm-actions` thread.
enum Work {
    Action {
        vm: String,
        action: VmAction,
        reason: String,
        qmp: Option<PathBuf>,
        hook: Option<String>,
    },
    Persist {
        path: PathBuf,
        json: String,
    },
}

/// An executed action.
struct Done {
    vm: String,
    action: VmAction,
    result: Result<(), String>,
    took: Duration,
}

/// One VM as the control thread acts on it.
struct VmRt {
    name: String,
    vnics: Vec<u32>,
    qmp: Option<PathBuf>,
    hook: Option<String>,
    starved: bool,
    detector: Option<DosDetector>,
    mitigation: Mitigation,
    failover: Option<String>,
    /// Its vNICs run on the `failover` uplink now (while an attack lasts).
    failed_over: bool,
    /// Last observation at which the VM's inbound counters had not moved.
    quiet_at: Nanos,
    last_pkts: u64,
    attacks: u64,
    last_action: String,
}

/// The control thread's VM-action and DoS state; see the module documentation.
pub struct VmCtl {
    /// Bumped whenever a VM's DoS failover starts or ends.
    failover_generation: u64,
    sup: VmSupervisor,
    vms: Vec<VmRt>,
    uplinks: Vec<String>,
    degraded: Vec<bool>,
    work: Sender<Work>,
    done: Receiver<Done>,
    state_path: Option<PathBuf>,
    restore: Option<SupervisorSnapshot>,
    /// State taken over from the VM actions this one replaced ([`VmCtl::take_over`]).
    carried: bool,
    persisted: u64,
    settings: Vec<Option<VnicDosSettings>>,
    /// Workers running (one per `[dataplane] cores` entry): the DoS mirror table is
    /// sized for them.
    workers: usize,
    view: Vec<VmActionView>,
    next_view: Nanos,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VmCtl {
    /// Builds the VM actions of `cfg` over the running topology; `state_path` is
    /// where the "suspended by us" set lives (read now, restored by [`start`](Self::start)).
    /// Spawns the `vm-actions` thread.
    pub fn new(
        cfg: &Config,
        topo: &Topology,
        state_path: Option<PathBuf>,
    ) -> Result<VmCtl, String> {
        let mut sup = VmSupervisor::new(SupervisorConfig {
            action_timeout: 30 * SEC,
            ..SupervisorConfig::default()
        });
        for b in &cfg.bond {
            sup.set_bond_policy(
                &b.name,
                BondActionPolicy {
                    suspend_starved: b.suspend_starved_vms,
                    starve_grace: b.starve_grace_ms.map_or(SEC, |ms| ms.saturating_mul(MS)),
                    migrate_after: b.migrate_after_s.map(|s| s.saturating_mul(SEC)),
                    alert: b.alert,
                },
            );
        }
        let mut vms = Vec::new();
        let mut settings: Vec<Option<VnicDosSettings>> = vec![None; topo.vnics.len()];
        for vm in &cfg.vm {
            let vnics: Vec<u32> = topo
                .vnics
                .iter()
                .enumerate()
                .filter(|(_, v)| v.vm == vm.name)
                .map(|(i, _)| i as u32)
                .collect();
            let mut bonds: Vec<String> = vnics
                .iter()
                .map(|&v| {
                    topo.uplinks[topo.vnics[v as usize].uplink as usize]
                        .name
                        .clone()
                })
                .collect();
            bonds.sort();
            bonds.dedup();
            let dos = vm
                .dos_config()
                .map_err(|e| format!("vm '{}': {e}", vm.name))?;
            sup.add_vm(VmSpec {
                name: vm.name.clone(),
                priority: vm.priority,
                bonds,
                // Unset settings fall back to the bond's (set below).
                policy: VmActionPolicy {
                    suspend_when_starved: vm.suspend_when_starved,
                    starve_grace: vm.starve_grace_ms.map(|ms| ms.saturating_mul(MS)),
                    migrate_after: vm.migrate_after_s.map(|s| s.saturating_mul(SEC)),
                    alert: vm.alert,
                    suspend_for_dos: vm.suspend_for_dos,
                },
                dos_responses: dos.responses.clone(),
            });
            let failover = dos.responses.iter().find_map(|r| match r {
                DosResponse::FailoverUplink(b) => Some(b.clone()),
                _ => None,
            });
            let detector = if vm.dos_enabled() {
                let sigs = vm
                    .dos_signature_set()
                    .map_err(|e| format!("vm '{}': {e}", vm.name))?;
                let signatures = (!sigs.is_empty()).then(|| std::sync::Arc::new(sigs));
                let delay_frames = dos
                    .delay_policy()
                    .map_or(1, |d| d.max_frames.clamp(1, 1 << 16));
                for &v in &vnics {
                    settings[v as usize] = Some(VnicDosSettings {
                        signatures: signatures.clone(),
                        delay_frames,
                        owner: topo.vnics[v as usize].name.as_str().into(),
                    });
                }
                Some(DosDetector::new(dos))
            } else {
                None
            };
            vms.push(VmRt {
                name: vm.name.clone(),
                vnics,
                qmp: vm.qmp.as_ref().map(PathBuf::from),
                hook: vm.hook.clone(),
                starved: false,
                detector,
                mitigation: Mitigation::NONE,
                failover,
                failed_over: false,
                quiet_at: 0,
                last_pkts: 0,
                attacks: 0,
                last_action: String::new(),
            });
        }
        let restore = match &state_path {
            Some(p) => read_state(p),
            None => None,
        };
        let (work, work_rx) = crossbeam::channel::unbounded();
        let (done_tx, done) = crossbeam::channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("vm-actions".into())
            .spawn(move || execute_loop(work_rx, done_tx))
            .map_err(|e| format!("spawn vm-actions: {e}"))?;
        Ok(VmCtl {
            failover_generation: 0,
            sup,
            vms,
            uplinks: topo.uplinks.iter().map(|u| u.name.clone()).collect(),
            degraded: vec![false; topo.uplinks.len()],
            work,
            done,
            state_path,
            restore,
            carried: false,
            persisted: 0,
            settings,
            workers: cfg.dataplane.cores.len(),
            view: Vec::new(),
            next_view: 0,
            thread: Some(thread),
        })
    }

    /// Control thread, before [`start`](Self::start), when a live reconfiguration
    /// replaces `old`: takes over its state instead of restoring the state file, which
    /// is written asynchronously and may lag behind `old`. VMs configured in both keep
    /// their suspension, reasons, counts and starvation; bonds their degradation. A
    /// VM's DoS detector (and with it its attack) moves over when its vNICs and DoS
    /// settings are unchanged; otherwise detection starts afresh.
    ///
    /// The executor moves over too (its queue, its results and its thread; `old` keeps
    /// this one's idle executor and ends it when dropped): an action `old` started
    /// reports here, so it is neither forgotten nor repeated, and the state file is
    /// written by one thread in the order the writes were asked for.
    pub fn take_over(&mut self, old: &mut VmCtl) {
        self.restore = None;
        self.carried = true;
        std::mem::swap(&mut self.work, &mut old.work);
        std::mem::swap(&mut self.done, &mut old.done);
        std::mem::swap(&mut self.thread, &mut old.thread);
        let mut kept = Vec::new();
        for vm in self.vms.iter_mut() {
            let Some(o) = old.vms.iter_mut().find(|o| o.name == vm.name) else {
                continue;
            };
            vm.starved = o.starved;
            vm.last_action = std::mem::take(&mut o.last_action);
            vm.attacks = o.attacks;
            let same_detector = match (&vm.detector, &o.detector) {
                (Some(n), Some(p)) => n.config() == p.config() && vm.vnics == o.vnics,
                _ => false,
            };
            if same_detector {
                vm.detector = o.detector.take();
                vm.quiet_at = o.quiet_at;
                vm.last_pkts = o.last_pkts;
                vm.failed_over = o.failed_over && vm.failover == o.failover;
                kept.push(vm.name.clone());
            }
        }
        for (u, name) in self.uplinks.iter().enumerate() {
            if let Some(p) = old.uplinks.iter().position(|o| o == name) {
                self.degraded[u] = old.degraded[p];
            }
        }
        self.sup
            .carry_over(&old.sup, |victim| kept.iter().any(|k| k == victim));
    }

    /// Control thread, once: restores the persisted state (or, after
    /// [`take_over`](Self::take_over), writes the state taken over) and hands the
    /// per-vNIC DoS settings to the workers.
    pub fn start(&mut self, now: Nanos, dos: &DosShared) {
        if let Some(snap) = self.restore.take() {
            if !snap.suspended.is_empty() {
                let names: Vec<&str> = snap.suspended.iter().map(|s| s.vm.as_str()).collect();
                tracing::warn!(vms = ?names, "restored VMs suspended by a previous run; they are resumed once their causes are gone");
            }
            for unknown in self.sup.restore(&snap, now) {
                tracing::warn!(vm = %unknown, "a VM suspended by a previous run is no longer configured; resume it by hand");
            }
        }
        // State taken over is written at the first iteration: `old` may not have
        // written its last change yet.
        self.persisted = self
            .sup
            .snapshot_generation()
            .wrapping_sub(u64::from(self.carried));
        let protected = self.settings.iter().filter(|s| s.is_some()).count();
        if protected > 0 {
            tracing::info!(vnics = protected, "DoS defence on");
        }
        // Every mitigation word is set anew: a detector carried over keeps its
        // mitigation in force without a gap; any other vNIC (a VM whose DoS settings
        // changed, a slot that changed hands) has none until its detector decides.
        let mut mitigations = vec![Mitigation::NONE; self.settings.len()];
        for vm in &mut self.vms {
            vm.mitigation = vm
                .detector
                .as_ref()
                .map_or(Mitigation::NONE, |d| d.mitigation());
            for &v in &vm.vnics {
                if let Some(m) = mitigations.get_mut(v as usize) {
                    *m = vm.mitigation;
                }
            }
        }
        dos.install(
            std::mem::take(&mut self.settings),
            &mitigations,
            self.workers,
        );
    }

    /// Control thread, every iteration. `degraded(u)` tells whether uplink `u` is
    /// degraded now, `starved(v)` whether vNIC `v` is starved by the degraded-bond rule.
    pub fn run(
        &mut self,
        now: Nanos,
        dos: &DosShared,
        degraded: impl Fn(usize) -> bool,
        starved: impl Fn(u32) -> bool,
    ) {
        while let Ok(d) = self.done.try_recv() {
            self.finished(d);
            self.next_view = now;
        }
        for u in 0..self.degraded.len() {
            let d = degraded(u);
            if d != self.degraded[u] {
                self.degraded[u] = d;
                if d {
                    tracing::warn!(bond = %self.uplinks[u], "VM actions: bond degraded");
                    self.sup.bond_degraded(&self.uplinks[u], now);
                    // A restore forgot starvation; VMs still starved start over.
                    for vm in self.vms.iter().filter(|v| v.starved) {
                        self.sup.vm_starved(&vm.name, true, now);
                    }
                } else {
                    tracing::info!(bond = %self.uplinks[u], "VM actions: bond restored");
                    self.sup.bond_restored(&self.uplinks[u], now);
                }
            }
        }
        for i in 0..self.vms.len() {
            let vm = &mut self.vms[i];
            // The allocator holds a vNIC's starved flag until it has gone unshed for
            // a while (`AllocatorConfig::starve_hold`), so it does not flicker.
            let report = vm.vnics.iter().any(|&v| starved(v));
            if report != vm.starved {
                vm.starved = report;
                tracing::info!(vm = %vm.name, starved = report, "VM actions: starvation");
                self.sup.vm_starved(&vm.name, report, now);
            }
            self.observe_dos(i, now, dos);
        }
        self.sup.tick(now);
        let actions = self.sup.drain_actions();
        if self.sup.snapshot_generation() != self.persisted {
            self.persisted = self.sup.snapshot_generation();
            self.persist();
        }
        if !actions.is_empty() {
            self.next_view = now;
        }
        for a in actions {
            let Some(vm) = self.vms.iter_mut().find(|v| v.name == a.vm) else {
                continue;
            };
            match a.action {
                VmAction::Alert => {
                    tracing::warn!(vm = %a.vm, action = "alert", reason = %a.reason, "VM alert")
                }
                _ => {
                    tracing::warn!(vm = %a.vm, action = %a.action, reason = %a.reason, "VM action")
                }
            }
            if a.action != VmAction::Alert {
                vm.last_action = format!("{} pending ({})", a.action, a.reason);
            }
            let _ = self.work.send(Work::Action {
                vm: a.vm,
                action: a.action,
                reason: a.reason,
                qmp: vm.qmp.clone(),
                hook: vm.hook.clone(),
            });
        }
        if now >= self.next_view {
            self.next_view = now + VIEW_PERIOD;
            self.rebuild_view();
        }
    }

    fn observe_dos(&mut self, i: usize, now: Nanos, dos: &DosShared) {
        let vm = &mut self.vms[i];
        let Some(det) = vm.detector.as_mut() else {
            return;
        };
        let mut total = DosCounters::default();
        for &v in &vm.vnics {
            let c = dos.totals(v);
            total.pkts += c.pkts;
            total.bytes += c.bytes;
            total.syn += c.syn;
            total.syn_ack_or_ack += c.syn_ack_or_ack;
            total.syn_resolved += c.syn_resolved;
            if c.sig_hits > 0 {
                total.last_sig_rule = c.last_sig_rule;
            }
            total.sig_hits += c.sig_hits;
        }
        if total.pkts == vm.last_pkts {
            vm.quiet_at = now;
        }
        vm.last_pkts = total.pkts;
        let events = det.observe(now, &total);
        for e in &events {
            match e {
                DosEvent::AttackStarted { kind, .. } => {
                    vm.attacks += 1;
                    // From the last observation at which no frame had arrived: an upper
                    // bound of the time from the flood's first frame to detection.
                    let detect_ms = (now - vm.quiet_at) as f64 / MS as f64;
                    tracing::warn!(vm = %vm.name, attack = %kind, detect_ms, "DoS attack started");
                }
                DosEvent::AttackEnded { kind, .. } => {
                    tracing::info!(vm = %vm.name, attack = %kind, "DoS attack ended")
                }
            }
        }
        let m = det.mitigation();
        // [0128]: while an attack lasts, the VM's traffic runs over the alternate
        // uplink (a second bond standing for a second connection); back after it.
        let fail_over = vm.failover.is_some() && m.active();
        if fail_over != vm.failed_over {
            vm.failed_over = fail_over;
            self.failover_generation += 1;
            let to = vm.failover.as_deref().unwrap_or("");
            if fail_over {
                tracing::warn!(vm = %vm.name, uplink = %to, "DoS response: the VM's traffic fails over to the alternate uplink");
            } else {
                tracing::info!(vm = %vm.name, uplink = %to, "DoS over: the VM's traffic returns from the alternate uplink");
            }
        }
        if m != vm.mitigation {
            vm.mitigation = m;
            tracing::info!(vm = %vm.name, mitigation = ?m, "DoS mitigation changed");
            for &v in &vm.vnics {
                dos.set_mitigation(v, m);
            }
        }
        if !events.is_empty() {
            // Show the change at once.
            self.next_view = now;
        }
        let name = vm.name.clone();
        for e in &events {
            self.sup.dos_event(&name, e, now);
        }
    }

    fn finished(&mut self, d: Done) {
        let outcome = match &d.result {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        match &d.result {
            Ok(()) => {
                tracing::info!(vm = %d.vm, action = %d.action, took_ms = d.took.as_millis() as u64, "VM action done")
            }
            Err(e) => {
                tracing::error!(vm = %d.vm, action = %d.action, took_ms = d.took.as_millis() as u64, error = %e, "VM action failed")
            }
        }
        if let Some(vm) = self.vms.iter_mut().find(|v| v.name == d.vm) {
            if d.action != VmAction::Alert || d.result.is_err() {
                vm.last_action = format!("{} {outcome}", d.action);
            }
        }
        self.sup.action_result(&d.vm, d.action, d.result);
    }

    fn persist(&self) {
        let Some(path) = &self.state_path else {
            return;
        };
        match serde_json::to_string_pretty(&self.sup.snapshot()) {
            Ok(json) => {
                let _ = self.work.send(Work::Persist {
                    path: path.clone(),
                    json,
                });
            }
            Err(e) => tracing::error!("cannot serialise VM state: {e}"),
        }
    }

    fn rebuild_view(&mut self) {
        let status = self.sup.status();
        self.view = self
            .vms
            .iter()
            .map(|vm| {
                let st = status.iter().find(|s| s.vm == vm.name);
                let state = match st {
                    Some(s) if s.pending == Some(VmAction::Suspend) => "suspending",
                    Some(s) if s.pending == Some(VmAction::Resume) => "resuming",
                    Some(s) if s.suspended_by_us => "suspended-by-switch",
                    _ => "running",
                };
                let mut dos = match vm.detector.as_ref().map(|d| d.state()) {
                    Some(s) if s.under_attack() => [s.rate_flood, s.syn_flood, s.signature]
                        .iter()
                        .flatten()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                    _ => String::new(),
                };
                if vm.failed_over {
                    dos.push_str(&format!(
                        "; traffic failed over to {}",
                        vm.failover.as_deref().unwrap_or("?")
                    ));
                }
                let counts = st.map(|s| s.counts).unwrap_or_default();
                VmActionView {
                    vm: vm.name.clone(),
                    state: state.into(),
                    reasons: st
                        .map(|s| s.reasons.iter().map(|r| r.to_string()).collect())
                        .unwrap_or_default(),
                    last_action: vm.last_action.clone(),
                    suspends: counts.suspends,
                    resumes: counts.resumes,
                    migrations: counts.migrations,
                    alerts: counts.alerts,
                    failures: counts.failures,
                    dos,
                    attacks: vm.attacks,
                }
            })
            .collect();
    }

    /// The status of every VM, for `vsctl show`.
    pub fn view(&self) -> &[VmActionView] {
        &self.view
    }

    /// Changes whenever [`failovers`](Self::failovers) changes.
    pub fn failover_generation(&self) -> u64 {
        self.failover_generation
    }

    /// The vNICs a DoS response has moved to an alternate uplink now: (vNIC slot,
    /// uplink name).
    pub fn failovers(&self) -> Vec<(u32, String)> {
        self.vms
            .iter()
            .filter(|vm| vm.failed_over)
            .flat_map(|vm| {
                let to = vm.failover.clone().unwrap_or_default();
                vm.vnics.iter().map(move |&v| (v, to.clone()))
            })
            .collect()
    }
}

impl Drop for VmCtl {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the work already queued.
        let (tx, _) = crossbeam::channel::unbounded();
        drop(std::mem::replace(&mut self.work, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The state file beside a configuration file: `<config>.vmstate.json`.
pub fn state_path_for(config: &Path) -> PathBuf {
    let mut s = config.as_os_str().to_owned();
    s.push(".vmstate.json");
    PathBuf::from(s)
}

fn read_state(path: &Path) -> Option<SupervisorSnapshot> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), "cannot read the VM state file: {e}");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(path = %path.display(), "ignoring a corrupt VM state file: {e}");
            None
        }
    }
}

/// Writes `text` to `path` atomically: a temporary file beside it, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn execute_loop(work: Receiver<Work>, done: Sender<Done>) {
    for w in work {
        match w {
            Work::Persist { path, json } => {
                if let Err(e) = write_atomic(&path, &json) {
                    tracing::error!(path = %path.display(), "cannot write the VM state file: {e}");
                }
            }
            Work::Action {
                vm,
                action,
                reason,
                qmp,
                hook,
            } => {
                let t = Instant::now();
                let result = execute(&vm, action, &reason, qmp.as_deref(), hook.as_deref());
                let _ = done.send(Done {
                    vm,
                    action,
                    result,
                    took: t.elapsed(),
                });
            }
        }
    }
}

/// Carries out one action: suspend/resume through QMP and/or the hook (at least one
/// must exist); migration requests and alerts through the hook when there is one.
fn execute(
    vm: &str,
    action: VmAction,
    reason: &str,
    qmp: Option<&Path>,
    hook: Option<&str>,
) -> Result<(), String> {
    let run_hook = |h: &str| {
        crate::vmctl::run_hook(h, vm, action.as_str(), reason, HOOK_TIMEOUT)
            .map_err(|e| e.to_string())
    };
    match action {
        VmAction::Suspend | VmAction::Resume => {
            if qmp.is_none() && hook.is_none() {
                return Err("no qmp socket or hook configured".into());
            }
            if let Some(p) = qmp {
                let r = if action == VmAction::Suspend {
                    crate::vmctl::qmp_suspend(p, QMP_TIMEOUT)
                } else {
                    crate::vmctl::qmp_resume(p, QMP_TIMEOUT)
                };
                r.map_err(|e| e.to_string())?;
            }
            if let Some(h) = hook {
                run_hook(h)?;
            }
            Ok(())
        }
        VmAction::RequestMigration | VmAction::Alert => match hook {
            Some(h) => run_hook(h),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_is_written_atomically_and_read_back() {
        let dir = std::env::temp_dir().join(format!("vmctl-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("vswitch.toml");
        let p = state_path_for(&cfg);
        assert_eq!(p, dir.join("vswitch.toml.vmstate.json"));
        assert!(read_state(&p).is_none());
        let snap = SupervisorSnapshot {
            suspended: vec![policy::vmaction::SuspendedVm {
                vm: "low".into(),
                reasons: vec![policy::vmaction::SuspendReason::Starved { bond: "b0".into() }],
            }],
        };
        write_atomic(&p, &serde_json::to_string(&snap).unwrap()).unwrap();
        assert_eq!(read_state(&p), Some(snap));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::write(&p, "{not json").unwrap();
        assert!(read_state(&p).is_none(), "a corrupt state file is ignored");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn actions_without_a_mechanism_fail_and_notifications_succeed() {
        assert!(execute("vm", VmAction::Suspend, "r", None, None).is_err());
        assert!(execute("vm", VmAction::Alert, "r", None, None).is_ok());
        assert!(execute("vm", VmAction::RequestMigration, "r", None, None).is_ok());
        assert!(execute("vm", VmAction::Alert, "r", None, Some("exit 3 #")).is_err());
        let gone = Path::new("/nonexistent/qmp.sock");
        let t = Instant::now();
        assert!(execute("vm", VmAction::Resume, "r", Some(gone), None).is_err());
        assert!(t.elapsed() < QMP_TIMEOUT);
    }
}
