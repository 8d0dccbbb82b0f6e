//! When to suspend, resume, migrate or raise an alert about a VM.
//!
//! Implements specification paragraphs \[0123\]–\[0124\] (suspend a lower-priority VM
//! starved by a degraded bond, until the failure is corrected and a failback
//! occurs; claims 11, 13 and 49 as amended), \[0126\] and claim 40 (suspend
//! lower-priority VMs during a DoS attack), \[0131\]–\[0132\] and claims 14, 41 and 50
//! (request a VM's migration), and \[0133\] (raise an alert for every action).
//!
//! # Ownership
//!
//! A [`VmSupervisor`] is owned by the control thread. It never performs an action
//! itself: inputs (bond state, starvation reports from the bandwidth module, DoS
//! events, the clock via [`VmSupervisor::tick`]) update its *desired* state, and
//! [`VmSupervisor::drain_actions`] hands out [`PlannedAction`]s for the data plane to
//! execute (QMP, hook command). Their outcome comes back through
//! [`VmSupervisor::action_result`].
//!
//! # Invariants
//!
//! - At most one Suspend/Resume/RequestMigration is in flight per VM; nothing new is
//!   planned for a VM until the previous action's result arrives (or it times out
//!   after `action_timeout`, which counts as a failure).
//! - A VM is suspended only while it has at least one [`SuspendReason`], and is never
//!   suspended twice: Suspend is planned only when it is not already suspended by us.
//! - Only VMs suspended *by us* are resumed; the "suspended by us" set survives a
//!   restart through [`VmSupervisor::snapshot`] / [`VmSupervisor::restore`].
//! - A reason is valid only while its cause lasts: `Starved{bond}` until the bond is
//!   restored (not when starvation stops — a suspended VM no longer sends, so it
//!   would look unstarved and flap), `Dos{victim}` until the victim's attack ends.
//!   After a restore, reasons are re-validated once `restore_settle` has passed,
//!   giving the data plane time to report bonds that are still degraded.
//! - Failed actions are retried with exponential backoff (`retry_base` doubling up
//!   to `retry_max`); an alert is raised for the first failure only, not each retry.
//! - Migration is requested at most once per episode (degradation or attack).
//! - Priorities: a larger number is more important.
//!
//! # Policy precedence (per VM and per bond)
//!
//! Each degraded-bond setting — suspend when starved, starvation grace, migration
//! delay, alert — is resolved per (VM, bond): the VM's own setting
//! ([`VmActionPolicy`], `Some`) wins; a setting the VM leaves unset (`None`) takes the
//! bond's ([`BondActionPolicy`], set with [`VmSupervisor::set_bond_policy`]); a bond
//! without a policy has the defaults (no suspension, 1 s grace, no migration,
//! alerts on). So `suspend_starved` on a bond suspends every VM starved on it that
//! does not opt out itself, and `Some(false)` on a VM exempts it. Alerts belong to
//! the VM rather than to one bond: unset on the VM, they are raised when any of its
//! bonds wants them.

use crate::dos::{AttackClass, DosEvent, DosResponse};
use crate::time::{Nanos, SEC};
use core::fmt;
use core::str::FromStr;
use std::collections::{BTreeMap, BTreeSet};

/// An action on a VM.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum VmAction {
    /// Pause the VM (QMP `stop`, `virsh suspend`).
    Suspend,
    /// Resume a VM we paused (QMP `cont`, `virsh resume`).
    Resume,
    /// Ask the orchestrator to migrate the VM to another host.
    RequestMigration,
    /// Tell an administrator; no effect on the VM.
    Alert,
}

impl VmAction {
    /// The name passed to hooks and logs: `suspend`, `resume`, `migrate`, `alert`.
    pub fn as_str(&self) -> &'static str {
        match self {
            VmAction::Suspend => "suspend",
            VmAction::Resume => "resume",
            VmAction::RequestMigration => "migrate",
            VmAction::Alert => "alert",
        }
    }
}

impl fmt::Display for VmAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown action name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown VM action {0:?}: expected suspend, resume, migrate or alert")]
pub struct VmActionParseError(pub String);

impl FromStr for VmAction {
    type Err = VmActionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "suspend" => VmAction::Suspend,
            "resume" => VmAction::Resume,
            "migrate" => VmAction::RequestMigration,
            "alert" => VmAction::Alert,
            _ => return Err(VmActionParseError(s.to_string())),
        })
    }
}

/// How to act on one VM. `None` leaves a setting to the VM's bonds
/// ([`BondActionPolicy`]); see [`VmSupervisor`] for the precedence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmActionPolicy {
    /// Suspend the VM when it is starved by the degraded-bond rule (\[0124\]).
    pub suspend_when_starved: Option<bool>,
    /// How long starvation must last before suspending (avoids acting on blips).
    pub starve_grace: Option<Nanos>,
    /// Request migration when the VM is affected by a bond degraded for this long (\[0132\]).
    pub migrate_after: Option<Nanos>,
    /// Raise an alert for every action taken on this VM (\[0133\]).
    pub alert: Option<bool>,
    /// The VM may be suspended to protect a higher-priority VM under DoS attack (\[0126\]).
    pub suspend_for_dos: bool,
}

/// A bond's defaults for the VMs that use it, for every setting a VM leaves unset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BondActionPolicy {
    /// Suspend VMs starved on this bond by the degraded-bond rule (default false).
    pub suspend_starved: bool,
    /// How long starvation must last before suspending (default 1 s).
    pub starve_grace: Nanos,
    /// Request the migration of VMs affected by this bond's degradation once it has
    /// lasted this long (default: never).
    pub migrate_after: Option<Nanos>,
    /// Raise an alert for every action on VMs using this bond (default true).
    pub alert: bool,
}

impl Default for BondActionPolicy {
    /// Disruptive actions are opt-in; alerts are on.
    fn default() -> Self {
        BondActionPolicy {
            suspend_starved: false,
            starve_grace: SEC,
            migrate_after: None,
            alert: true,
        }
    }
}

impl VmActionPolicy {
    /// Whether to suspend the VM when starved on a bond with policy `bond`.
    pub fn suspends_on(&self, bond: &BondActionPolicy) -> bool {
        self.suspend_when_starved.unwrap_or(bond.suspend_starved)
    }

    /// The starvation grace period on a bond with policy `bond`.
    pub fn grace_on(&self, bond: &BondActionPolicy) -> Nanos {
        self.starve_grace.unwrap_or(bond.starve_grace)
    }

    /// The migration delay on a bond with policy `bond` (`None`: never).
    pub fn migrate_after_on(&self, bond: &BondActionPolicy) -> Option<Nanos> {
        self.migrate_after.or(bond.migrate_after)
    }
}

/// A VM as the supervisor knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec {
    /// Unique name (passed to hooks).
    pub name: String,
    /// Priority; larger is more important.
    pub priority: u8,
    /// Bonds (uplinks) the VM's traffic uses.
    pub bonds: Vec<String>,
    /// What may be done to it.
    pub policy: VmActionPolicy,
    /// Its DoS responses (only `SuspendLowerPriority`, `RequestMigration` and `Alert`
    /// matter here).
    pub dos_responses: Vec<DosResponse>,
}

/// Supervisor-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// First retry delay after a failed action (default 1 s).
    pub retry_base: Nanos,
    /// Longest retry delay (default 60 s).
    pub retry_max: Nanos,
    /// An action without result after this long counts as failed (default 30 s).
    pub action_timeout: Nanos,
    /// After [`VmSupervisor::restore`], how long to wait before re-validating
    /// restored reasons and resuming (default 5 s).
    pub restore_settle: Nanos,
    /// VMs with at least this priority are never suspended (default: none protected).
    pub min_priority_to_keep: Option<u8>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            retry_base: SEC,
            retry_max: 60 * SEC,
            action_timeout: 30 * SEC,
            restore_settle: 5 * SEC,
            min_priority_to_keep: None,
        }
    }
}

/// Why we want a VM suspended (or migrated).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum SuspendReason {
    /// Starved by the degraded-bond rule while `bond` is degraded.
    Starved {
        /// The degraded bond.
        bond: String,
    },
    /// Protecting higher-priority VM `victim` during a DoS attack on it (for a
    /// migration: `victim` is the VM itself).
    Dos {
        /// The attacked VM.
        victim: String,
    },
}

impl fmt::Display for SuspendReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuspendReason::Starved { bond } => write!(f, "starved while bond {bond} is degraded"),
            SuspendReason::Dos { victim } => write!(f, "DoS attack on {victim}"),
        }
    }
}

/// An action for the data plane to execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedAction {
    /// The VM.
    pub vm: String,
    /// What to do.
    pub action: VmAction,
    /// Why, in words (passed to hooks and logs).
    pub reason: String,
}

/// Counts of completed actions per VM, for display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ActionCounts {
    /// Successful suspends.
    pub suspends: u64,
    /// Successful resumes.
    pub resumes: u64,
    /// Successful migration requests.
    pub migrations: u64,
    /// Alerts planned.
    pub alerts: u64,
    /// Failed (or timed out) actions.
    pub failures: u64,
}

/// Where a VM's migration request stands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MigrationState {
    /// Nothing asked.
    Idle,
    /// Wanted because of this cause, not yet sent.
    Wanted(SuspendReason),
    /// Sent and acknowledged for this cause; not asked again until it clears.
    Requested(SuspendReason),
}

/// What the supervisor knows about one VM, for display.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VmStatus {
    /// VM name.
    pub vm: String,
    /// Its priority.
    pub priority: u8,
    /// We suspended it (confirmed).
    pub suspended_by_us: bool,
    /// Why we want it suspended (empty: running).
    pub reasons: Vec<SuspendReason>,
    /// The action in flight.
    pub pending: Option<VmAction>,
    /// Consecutive failures.
    pub failures: u32,
    /// No new action before this time (after a failure).
    pub retry_at: Option<Nanos>,
    /// Migration request state.
    pub migration: MigrationState,
    /// Completed-action counters.
    pub counts: ActionCounts,
}

/// One VM suspended by us, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SuspendedVm {
    /// VM name.
    pub vm: String,
    /// Why it was suspended.
    pub reasons: Vec<SuspendReason>,
}

/// The "suspended by us" set, persisted by the data plane (e.g. as JSON) so that a
/// restarted switch still resumes the VMs it suspended.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SupervisorSnapshot {
    /// VMs suspended by us (or whose suspension was in flight).
    pub suspended: Vec<SuspendedVm>,
}

#[derive(Clone, Debug)]
struct VmEntry {
    spec: VmSpec,
    starved_since: Option<Nanos>,
    reasons: BTreeSet<SuspendReason>,
    suspended: bool,
    inflight: Option<(VmAction, Nanos)>,
    failures: u32,
    retry_at: Nanos,
    migration: MigrationState,
    counts: ActionCounts,
}

#[derive(Clone, Debug, Default)]
struct BondEntry {
    degraded_since: Option<Nanos>,
    policy: BondActionPolicy,
}

/// Decides VM actions; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct VmSupervisor {
    cfg: SupervisorConfig,
    vms: BTreeMap<String, VmEntry>,
    bonds: BTreeMap<String, BondEntry>,
    attacked: BTreeMap<String, BTreeSet<AttackClass>>,
    actions: Vec<PlannedAction>,
    now: Nanos,
    settle_until: Nanos,
    generation: u64,
}

impl VmSupervisor {
    /// An empty supervisor.
    pub fn new(cfg: SupervisorConfig) -> VmSupervisor {
        VmSupervisor {
            cfg,
            ..VmSupervisor::default()
        }
    }

    /// Adds or replaces a VM (keeping its state when replaced).
    pub fn add_vm(&mut self, spec: VmSpec) {
        match self.vms.get_mut(&spec.name) {
            Some(e) => e.spec = spec,
            None => {
                let e = VmEntry {
                    spec: spec.clone(),
                    starved_since: None,
                    reasons: BTreeSet::new(),
                    suspended: false,
                    inflight: None,
                    failures: 0,
                    retry_at: 0,
                    migration: MigrationState::Idle,
                    counts: ActionCounts::default(),
                };
                self.vms.insert(spec.name, e);
            }
        }
    }

    /// Forgets a VM (e.g. migrated away or destroyed). Its pending actions are dropped.
    pub fn remove_vm(&mut self, vm: &str) {
        if self.vms.remove(vm).is_some_and(|e| e.suspended) {
            self.generation += 1;
        }
        self.attacked.remove(vm);
    }

    /// Sets a bond's policy.
    pub fn set_bond_policy(&mut self, bond: &str, policy: BondActionPolicy) {
        self.bonds.entry(bond.to_string()).or_default().policy = policy;
    }

    /// The bond lost capacity (a member failed). Repeated calls keep the first time.
    pub fn bond_degraded(&mut self, bond: &str, now: Nanos) {
        self.now = self.now.max(now);
        let b = self.bonds.entry(bond.to_string()).or_default();
        b.degraded_since.get_or_insert(now);
        self.evaluate();
    }

    /// The failure was corrected and failback occurred: VMs suspended because of it resume.
    pub fn bond_restored(&mut self, bond: &str, now: Nanos) {
        self.now = self.now.max(now);
        if let Some(b) = self.bonds.get_mut(bond) {
            b.degraded_since = None;
        }
        for e in self.vms.values_mut() {
            if e.spec.bonds.iter().any(|b| b == bond) {
                e.starved_since = None;
            }
        }
        self.evaluate();
    }

    /// The bandwidth module reports whether `vm` is starved by the degraded-bond rule.
    pub fn vm_starved(&mut self, vm: &str, starved: bool, now: Nanos) {
        self.now = self.now.max(now);
        if let Some(e) = self.vms.get_mut(vm) {
            if !starved {
                e.starved_since = None;
            } else if e.starved_since.is_none() {
                e.starved_since = Some(now);
            }
        }
        self.evaluate();
    }

    /// A DoS event on `vm`: applies its `SuspendLowerPriority`, `RequestMigration` and
    /// `Alert` responses.
    pub fn dos_event(&mut self, vm: &str, event: &DosEvent, now: Nanos) {
        self.now = self.now.max(now);
        let Some(victim) = self.vms.get(vm) else {
            return;
        };
        let responses = victim.spec.dos_responses.clone();
        let (vprio, vbonds) = (victim.spec.priority, victim.spec.bonds.clone());
        let cause = SuspendReason::Dos {
            victim: vm.to_string(),
        };
        match event {
            DosEvent::AttackStarted { kind, .. } => {
                self.attacked
                    .entry(vm.to_string())
                    .or_default()
                    .insert(kind.class());
                if responses.contains(&DosResponse::SuspendLowerPriority) {
                    let protect = self.cfg.min_priority_to_keep;
                    let protected = |prio: u8| protect.is_some_and(|p| prio >= p);
                    for (name, e) in self.vms.iter_mut() {
                        let shares = vbonds.is_empty()
                            || e.spec.bonds.is_empty()
                            || e.spec.bonds.iter().any(|b| vbonds.contains(b));
                        if name != vm
                            && e.spec.priority < vprio
                            && shares
                            && e.spec.policy.suspend_for_dos
                            && !protected(e.spec.priority)
                        {
                            e.reasons.insert(cause.clone());
                        }
                    }
                }
                if responses.contains(&DosResponse::RequestMigration) {
                    if let Some(e) = self.vms.get_mut(vm) {
                        if e.migration == MigrationState::Idle {
                            e.migration = MigrationState::Wanted(cause);
                        }
                    }
                }
            }
            DosEvent::AttackEnded { kind, .. } => {
                if let Some(set) = self.attacked.get_mut(vm) {
                    set.remove(&kind.class());
                    if set.is_empty() {
                        self.attacked.remove(vm);
                    }
                }
            }
        }
        if responses.contains(&DosResponse::Alert) {
            self.alert(vm, format!("{vm}: {event}"));
        }
        self.evaluate();
    }

    /// Advances time: grace periods, migration delays, retries, timeouts, restore settling.
    pub fn tick(&mut self, now: Nanos) {
        self.now = self.now.max(now);
        self.evaluate();
    }

    /// Takes the actions planned so far, in order.
    pub fn drain_actions(&mut self) -> Vec<PlannedAction> {
        std::mem::take(&mut self.actions)
    }

    /// The outcome of a drained action. Results that do not match the action in
    /// flight (late, duplicated, unknown VM) are ignored. Time is the latest `now`
    /// given to any input.
    pub fn action_result(&mut self, vm: &str, action: VmAction, result: Result<(), String>) {
        let now = self.now;
        let Some(e) = self.vms.get_mut(vm) else {
            return;
        };
        if action == VmAction::Alert {
            if result.is_err() {
                e.counts.failures += 1;
            }
            return;
        }
        if e.inflight.map(|(a, _)| a) != Some(action) {
            return;
        }
        e.inflight = None;
        let alert = alerts_for(&self.bonds, &e.spec);
        let msg = match result {
            Ok(()) => {
                e.failures = 0;
                e.retry_at = 0;
                let why = describe(&e.reasons);
                match action {
                    VmAction::Suspend => {
                        e.suspended = true;
                        e.counts.suspends += 1;
                        self.generation += 1;
                        Some(format!("{vm} suspended: {why}"))
                    }
                    VmAction::Resume => {
                        e.suspended = false;
                        e.counts.resumes += 1;
                        self.generation += 1;
                        Some(format!("{vm} resumed"))
                    }
                    VmAction::RequestMigration => {
                        e.counts.migrations += 1;
                        if let MigrationState::Wanted(c) = &e.migration {
                            e.migration = MigrationState::Requested(c.clone());
                        }
                        Some(format!("{vm}: migration requested"))
                    }
                    VmAction::Alert => None,
                }
            }
            Err(err) => Self::failed(&self.cfg, e, action, &err, now),
        };
        if let (true, Some(m)) = (alert, msg) {
            self.alert(vm, m);
        }
        self.evaluate();
    }

    fn failed(
        cfg: &SupervisorConfig,
        e: &mut VmEntry,
        action: VmAction,
        err: &str,
        now: Nanos,
    ) -> Option<String> {
        e.failures = e.failures.saturating_add(1);
        e.counts.failures += 1;
        let shift = (e.failures - 1).min(32);
        let delay = cfg
            .retry_base
            .saturating_mul(1u64 << shift)
            .min(cfg.retry_max);
        e.retry_at = now.saturating_add(delay);
        (e.failures == 1).then(|| {
            format!(
                "{}: {action} failed: {err} (retrying with backoff)",
                e.spec.name
            )
        })
    }

    /// The "suspended by us" set to persist. Includes VMs whose suspension is in
    /// flight (it may have taken effect).
    pub fn snapshot(&self) -> SupervisorSnapshot {
        SupervisorSnapshot {
            suspended: self
                .vms
                .values()
                .filter(|e| e.suspended || matches!(e.inflight, Some((VmAction::Suspend, _))))
                .map(|e| SuspendedVm {
                    vm: e.spec.name.clone(),
                    reasons: e.reasons.iter().cloned().collect(),
                })
                .collect(),
        }
    }

    /// Bumped whenever the snapshot may have changed; persist when it moves.
    pub fn snapshot_generation(&self) -> u64 {
        self.generation
    }

    /// Takes over the state of `old`, the supervisor a live reconfiguration replaces
    /// (call after [`add_vm`](Self::add_vm) for the configured VMs, instead of
    /// [`restore`](Self::restore)). VMs and bonds configured in both keep what `old`
    /// knew of them: suspension and its reasons, starvation and degradation times,
    /// failures, migration state and action counts. An action still in flight on
    /// `old` stays in flight here: its result must be passed to this supervisor's
    /// [`action_result`](Self::action_result) (the data plane hands the executor
    /// over with it), and nothing new is planned for the VM until it arrives or times
    /// out, so a live change never repeats a suspend, resume or migration request
    /// under way. A victim's attack is kept only if
    /// `keeps_detector(victim)` (its detector moved over too, so it will report the
    /// attack's end); otherwise reasons naming it lapse as after any attack.
    pub fn carry_over(&mut self, old: &VmSupervisor, keeps_detector: impl Fn(&str) -> bool) {
        self.now = self.now.max(old.now);
        self.settle_until = old.settle_until;
        for (name, e) in self.vms.iter_mut() {
            let Some(o) = old.vms.get(name) else {
                continue;
            };
            e.starved_since = o.starved_since;
            e.reasons = o.reasons.clone();
            e.suspended = o.suspended;
            e.inflight = o.inflight;
            e.failures = o.failures;
            e.retry_at = o.retry_at;
            e.migration = o.migration.clone();
            e.counts = o.counts;
        }
        for (name, o) in &old.bonds {
            let used = self.vms.values().any(|e| e.spec.bonds.contains(name));
            if used || self.bonds.contains_key(name) {
                self.bonds.entry(name.clone()).or_default().degraded_since = o.degraded_since;
            }
        }
        for (victim, kinds) in &old.attacked {
            if self.vms.contains_key(victim) && keeps_detector(victim) {
                self.attacked.insert(victim.clone(), kinds.clone());
            }
        }
        self.generation = self.generation.max(old.generation) + 1;
    }

    /// Restores a snapshot after a restart (call after [`add_vm`](Self::add_vm) for
    /// the configured VMs and before reporting bond states). Restored VMs count as
    /// suspended by us; their reasons are re-validated once `restore_settle` has
    /// passed, and they are resumed if the causes are gone. Returns the names of
    /// VMs in the snapshot that are not configured (they cannot be acted on).
    pub fn restore(&mut self, snap: &SupervisorSnapshot, now: Nanos) -> Vec<String> {
        self.now = self.now.max(now);
        self.settle_until = now.saturating_add(self.cfg.restore_settle);
        let mut unknown = Vec::new();
        for s in &snap.suspended {
            match self.vms.get_mut(&s.vm) {
                Some(e) => {
                    e.suspended = true;
                    e.reasons.extend(s.reasons.iter().cloned());
                }
                None => unknown.push(s.vm.clone()),
            }
        }
        self.generation += 1;
        unknown
    }

    /// Status of every VM, for display.
    pub fn status(&self) -> Vec<VmStatus> {
        self.vms
            .values()
            .map(|e| VmStatus {
                vm: e.spec.name.clone(),
                priority: e.spec.priority,
                suspended_by_us: e.suspended,
                reasons: e.reasons.iter().cloned().collect(),
                pending: e.inflight.map(|(a, _)| a),
                failures: e.failures,
                retry_at: (e.retry_at > self.now).then_some(e.retry_at),
                migration: e.migration.clone(),
                counts: e.counts,
            })
            .collect()
    }

    /// True when `vm` is suspended by us.
    pub fn is_suspended_by_us(&self, vm: &str) -> bool {
        self.vms.get(vm).is_some_and(|e| e.suspended)
    }

    fn alert(&mut self, vm: &str, reason: String) {
        if let Some(e) = self.vms.get_mut(vm) {
            e.counts.alerts += 1;
        }
        self.actions.push(PlannedAction {
            vm: vm.to_string(),
            action: VmAction::Alert,
            reason,
        });
    }

    fn cause_valid(&self, c: &SuspendReason) -> bool {
        match c {
            SuspendReason::Starved { bond } => self
                .bonds
                .get(bond)
                .is_some_and(|b| b.degraded_since.is_some()),
            SuspendReason::Dos { victim } => self.attacked.contains_key(victim),
        }
    }

    /// Brings desired state up to date and plans actions.
    fn evaluate(&mut self) {
        let now = self.now;
        let settled = now >= self.settle_until;
        let names: Vec<String> = self.vms.keys().cloned().collect();
        for name in names {
            // 1. Drop reasons whose cause is gone (not while restored state settles).
            if settled {
                let e = &self.vms[&name];
                let keep: BTreeSet<SuspendReason> = e
                    .reasons
                    .iter()
                    .filter(|r| self.cause_valid(r))
                    .cloned()
                    .collect();
                let mig_gone = match &e.migration {
                    MigrationState::Wanted(c) | MigrationState::Requested(c) => {
                        !self.cause_valid(c)
                    }
                    MigrationState::Idle => false,
                };
                let in_flight_mig = matches!(e.inflight, Some((VmAction::RequestMigration, _)));
                let e = self.vms.get_mut(&name).expect("name from keys");
                e.reasons = keep;
                if mig_gone && !in_flight_mig {
                    e.migration = MigrationState::Idle;
                }
            }
            // 2. Starvation on a degraded bond: suspend after the grace period, and
            //    migrate once the degradation has lasted `migrate_after`.
            let e = &self.vms[&name];
            let protected = self
                .cfg
                .min_priority_to_keep
                .is_some_and(|p| e.spec.priority >= p);
            let mut add_reason = None;
            let mut want_mig = None;
            for bond in &e.spec.bonds {
                let Some(b) = self.bonds.get(bond) else {
                    continue;
                };
                let Some(since) = b.degraded_since else {
                    continue;
                };
                let cause = SuspendReason::Starved { bond: bond.clone() };
                let grace = e.spec.policy.grace_on(&b.policy);
                let starved_long = e
                    .starved_since
                    .is_some_and(|s| now.saturating_sub(s) >= grace);
                if add_reason.is_none()
                    && starved_long
                    && e.spec.policy.suspends_on(&b.policy)
                    && !protected
                {
                    add_reason = Some(cause.clone());
                }
                let affected = e.starved_since.is_some() || e.reasons.contains(&cause);
                let after = e.spec.policy.migrate_after_on(&b.policy);
                if want_mig.is_none()
                    && affected
                    && after.is_some_and(|d| now.saturating_sub(since) >= d)
                {
                    want_mig = Some((cause, bond.clone(), now - since));
                }
            }
            let e = self.vms.get_mut(&name).expect("name from keys");
            if let Some(r) = add_reason {
                e.reasons.insert(r);
            }
            if let (Some((cause, _, _)), MigrationState::Idle) = (&want_mig, &e.migration) {
                e.migration = MigrationState::Wanted(cause.clone());
            }
            // 3. Time out a lost action.
            if let Some((a, since)) = e.inflight {
                if now.saturating_sub(since) >= self.cfg.action_timeout {
                    e.inflight = None;
                    let msg = Self::failed(&self.cfg, e, a, "no result (timed out)", now);
                    if let (true, Some(m)) = (alerts_for(&self.bonds, &e.spec), msg) {
                        self.alert(&name, m);
                    }
                }
            }
            // 4. Plan at most one action.
            let e = self.vms.get_mut(&name).expect("name from keys");
            if e.inflight.is_some() || now < e.retry_at {
                continue;
            }
            let plan = if !e.reasons.is_empty() && !e.suspended {
                Some((VmAction::Suspend, describe(&e.reasons)))
            } else if e.reasons.is_empty() && e.suspended && settled {
                Some((VmAction::Resume, "cause cleared".to_string()))
            } else if let MigrationState::Wanted(c) = &e.migration {
                Some((VmAction::RequestMigration, c.to_string()))
            } else {
                None
            };
            if let Some((action, reason)) = plan {
                e.inflight = Some((action, now));
                if action == VmAction::Suspend {
                    // The snapshot includes in-flight suspensions.
                    self.generation += 1;
                }
                self.actions.push(PlannedAction {
                    vm: name.clone(),
                    action,
                    reason,
                });
            }
        }
    }
}

/// Whether actions on `vm` raise alerts: its own `alert` if set, else whether any of
/// its bonds wants them (a bond without a policy does; so does a VM on no bond).
fn alerts_for(bonds: &BTreeMap<String, BondEntry>, vm: &VmSpec) -> bool {
    vm.policy.alert.unwrap_or_else(|| {
        vm.bonds.is_empty()
            || vm
                .bonds
                .iter()
                .any(|b| bonds.get(b).is_none_or(|e| e.policy.alert))
    })
}

fn describe(reasons: &BTreeSet<SuspendReason>) -> String {
    let v: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
    if v.is_empty() {
        "no reason".to_string()
    } else {
        v.join("; ")
    }
}

#[cfg(test)]
mod tests;
