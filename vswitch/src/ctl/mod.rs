//! The control channel of `vswitchd`: what `vsctl` talks to (issue 7).
//!
//! # Design
//!
//! The control channel is decoupled from the data plane by one trait,
//! [`ControlApi`], which the daemon implements on its running switch. Everything in
//! this module is on the slow path: it allocates, it takes locks, it may block.
//!
//! - [`protocol`]: the wire format — JSON lines, one [`protocol::Request`] per line,
//!   one [`protocol::Response`] per request, versioned.
//! - [`server`]: the Unix-socket server (a thread per client, capped; read timeouts;
//!   no request, however malformed, can panic it or stop it serving other clients).
//!   It decodes requests and calls the [`ControlApi`].
//! - [`persist`]: atomic rewrite of the configuration file after every accepted change.
//! - [`prometheus`]: the Prometheus text exposition over a tiny HTTP/1.1 server.
//! - this module: the data shapes read commands return ([`ShowTree`], [`StatsShow`],
//!   [`PmdStats`], [`LacpShow`], …), the mutating commands ([`ConfigChange`]) and the
//!   pure function [`apply_to_config`] that applies one to a copy of the desired
//!   [`Config`] and validates the result with [`Config::validate`].
//!
//! # How a change flows (the implementor's contract)
//!
//! `ControlApi::apply_change(change)` is the single entry for every mutating command.
//! An implementation is expected to:
//! 1. take its configuration lock (changes are serialised);
//! 2. `let new = apply_to_config(&current, &change)?` — refused changes leave
//!    everything untouched and return the validator's message;
//! 3. reconcile the running switch with `new`;
//! 4. `persist::write_atomic(path, &new)?`, then make `new` the current config.
//!
//! # Invariants
//!
//! - [`apply_to_config`] never mutates its input and only returns configurations for
//!   which [`Config::validate`] succeeded, so the specification's assignment rules
//!   (\[0060\]: a NIC is in at most one bond or unbonded; a vNIC is assigned to exactly
//!   one bond or unbonded NIC, never to a bonded NIC; \[0061\]: a NIC cannot join a bond
//!   while it is the unbonded uplink of a vNIC) hold for every configuration the
//!   daemon ever runs or persists.
//! - Default vNIC names (`<vm>.<index>`) are positional; changes that would renumber
//!   a vNIC (adding or deleting one) first pin the existing names explicitly, so a
//!   vNIC's name never changes behind an operator's back.
//! - The data shapes are plain data (serde); the daemon produces data only, and
//!   `vsctl` renders text from the JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{BondConfigFile, Config, ConfigError, NicConfig, VmConfig, VnicConfig};
use crate::stats::{DropReason, PortTotals, WorkerStats};

pub mod persist;
pub mod prometheus;
pub mod protocol;
pub mod server;
#[doc(hidden)]
pub mod testing;

/// Why a control request failed. The `Display` text is what `vsctl` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    /// The change breaks a configuration rule; the text is the validator's.
    #[error("{0}")]
    Invalid(String),
    /// No such object.
    #[error("no {kind} named '{name}'")]
    NotFound {
        /// "nic", "bond", "vm", "vnic", "port", "uplink".
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The request's arguments are malformed.
    #[error("bad arguments: {0}")]
    BadArgs(String),
    /// The daemon does not implement this (yet).
    #[error("not supported by this vswitchd: {0}")]
    Unsupported(String),
    /// Another `vswitchd` already serves the socket.
    #[error("{0} is in use: another vswitchd is listening on it; stop it or choose another control socket path")]
    InUse(String),
    /// An operating-system error (socket, file), with context.
    #[error("{0}")]
    Io(String),
    /// The command is not known.
    #[error("unknown command '{0}'; known commands: {known}", known = protocol::COMMANDS.join(", "))]
    UnknownCommand(String),
    /// A bug or an unexpected internal state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ConfigError> for CtlError {
    fn from(e: ConfigError) -> Self {
        CtlError::Invalid(e.to_string())
    }
}

/// The interface the control server needs from the running switch.
///
/// Implemented by the daemon (and by [`testing::FakeApi`] in tests). Every method is
/// called from a control-server client thread, possibly concurrently with others:
/// implementations synchronise internally. None is on the fast path.
pub trait ControlApi: Send + Sync {
    /// The whole switch as a tree (`vsctl show`).
    fn show(&self) -> Result<ShowTree, CtlError>;
    /// The desired configuration as accepted so far (`vsctl dump-config`).
    fn config(&self) -> Result<Config, CtlError>;
    /// Counters of every port, or of the named one (`vsctl stats [--port P]`).
    /// Unknown port: [`CtlError::NotFound`].
    fn stats(&self, port: Option<&str>) -> Result<StatsShow, CtlError>;
    /// Per-worker poll-loop statistics (`vsctl pmd-stats-show`), since the last
    /// [`pmd_stats_clear`](Self::pmd_stats_clear).
    fn pmd_stats(&self) -> Result<Vec<PmdStats>, CtlError>;
    /// Starts `pmd-stats-show`'s and `pmd-rxq-show`'s counts afresh (`vsctl
    /// pmd-stats-clear`, as `ovs-appctl dpif-netdev/pmd-stats-clear`); returns the
    /// number of workers. Port statistics and the Prometheus exporter's counters are
    /// not touched.
    fn pmd_stats_clear(&self) -> Result<usize, CtlError>;
    /// Which worker polls which rx queue, and how the worker's frames split between
    /// them (`vsctl pmd-rxq-show`).
    fn pmd_rxq(&self) -> Result<Vec<PmdRxqShow>, CtlError>;
    /// Bonds (all, or the named one) with members, states, traffic and pinned vNICs
    /// (`vsctl bond/show`). Unknown bond: [`CtlError::NotFound`].
    fn bond_show(&self, bond: Option<&str>) -> Result<Vec<UplinkShow>, CtlError>;
    /// LACP state of bonds (all bonds with LACP, or the named one) (`vsctl lacp/show`).
    fn lacp_show(&self, bond: Option<&str>) -> Result<Vec<LacpShow>, CtlError>;
    /// Manual failback of a bond (`vsctl bond/failback`): returns how many vNICs
    /// moved back to their home member.
    fn bond_failback(&self, bond: &str) -> Result<u64, CtlError>;
    /// Entitled and used bandwidth of every vNIC, or of the named one
    /// (`vsctl vnic/bandwidth`).
    fn vnic_bandwidth(&self, vnic: Option<&str>) -> Result<Vec<VnicShow>, CtlError>;
    /// Every mutating command. See the module documentation for the contract.
    fn apply_change(&self, change: ConfigChange) -> Result<(), CtlError>;
}

/// `vsctl show`: the whole switch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShowTree {
    /// Bonds, then unbonded NICs.
    pub uplinks: Vec<UplinkShow>,
    /// VMs with their vNICs.
    pub vms: Vec<VmShow>,
    /// Snapshot generation the workers run with.
    #[serde(default)]
    pub generation: u64,
}

/// A bond or an unbonded NIC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UplinkShow {
    /// Bond or NIC name.
    pub name: String,
    /// True for a bond.
    pub is_bond: bool,
    /// Distribution mode (`single` for an unbonded NIC).
    pub mode: String,
    /// Failback policy (bonds).
    #[serde(default)]
    pub failback: String,
    /// LACP setting: `off`, `active`, `passive`.
    #[serde(default)]
    pub lacp: String,
    /// True when fewer members are usable than configured.
    #[serde(default)]
    pub degraded: bool,
    /// The active member (active-backup), if any.
    #[serde(default)]
    pub active_member: Option<String>,
    /// Members in configured order (one for an unbonded NIC).
    pub members: Vec<MemberShow>,
    /// Names of the vNICs assigned to this uplink.
    #[serde(default)]
    pub vnics: Vec<String>,
}

/// One member NIC of an uplink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberShow {
    /// NIC name.
    pub name: String,
    /// State, e.g. `active`, `standby`, `down`, `updelay`, `failback-hold`.
    pub state: String,
    /// Why it is in that state (empty when there is nothing to say).
    #[serde(default)]
    pub reason: String,
    /// Carrier.
    pub link_up: bool,
    /// Used for distribution now.
    pub usable: bool,
    /// Link speed in Mb/s.
    #[serde(default)]
    pub speed_mbps: u32,
    /// The NIC's MTU.
    #[serde(default)]
    pub mtu: u16,
    /// Frames transmitted.
    #[serde(default)]
    pub tx_pkts: u64,
    /// Bytes transmitted.
    #[serde(default)]
    pub tx_bytes: u64,
    /// Frames received.
    #[serde(default)]
    pub rx_pkts: u64,
    /// Bytes received.
    #[serde(default)]
    pub rx_bytes: u64,
    /// vNICs whose traffic currently leaves on this member (pinned modes).
    #[serde(default)]
    pub pinned_vnics: Vec<String>,
}

/// A VM and its vNICs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmShow {
    /// VM name.
    pub name: String,
    /// Default priority of its vNICs.
    pub priority: u8,
    /// Default shares of its vNICs.
    pub shares: u32,
    /// Its vNICs.
    pub vnics: Vec<VnicShow>,
    /// What the switch did to it (suspend/resume/migrate/alert) and its DoS state.
    #[serde(default)]
    pub actions: Option<crate::vm_ctl::VmActionView>,
}

/// Traffic shaping of a vNIC (\[0090\]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapingShow {
    /// Long-run average, bit/s.
    pub average_bps: u64,
    /// Peak, bit/s.
    pub peak_bps: u64,
    /// Burst above the average, bytes.
    pub burst_bytes: u64,
    /// Window over which the peak is enforced, ms.
    #[serde(default)]
    pub peak_period_ms: u64,
}

/// One vNIC with its policy settings and bandwidth.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VnicShow {
    /// vNIC name.
    pub name: String,
    /// Owning VM.
    pub vm: String,
    /// MAC address.
    #[serde(default)]
    pub mac: String,
    /// `vhost-user server PATH`, `vhost-user client PATH` or `devargs D`.
    #[serde(default)]
    pub backend: String,
    /// Link (vhost connected).
    #[serde(default)]
    pub link_up: bool,
    /// Its MTU, when it sets one ([`VnicConfig::mtu`]).
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Its uplink (bond or unbonded NIC).
    pub uplink: String,
    /// The member its traffic currently leaves on, when one is pinned.
    #[serde(default)]
    pub member: Option<String>,
    /// Effective shares.
    pub shares: u32,
    /// Effective priority (0–10).
    pub priority: u8,
    /// Guaranteed minimum, Mb/s.
    #[serde(default)]
    pub reservation_mbps: Option<u64>,
    /// Traffic shaping, if configured.
    #[serde(default)]
    pub shaping: Option<ShapingShow>,
    /// Rate the allocator currently entitles it to, bit/s.
    #[serde(default)]
    pub entitled_bps: u64,
    /// Rate it actually sends at (recent average), bit/s.
    #[serde(default)]
    pub used_bps: u64,
    /// What limits it now (e.g. `shares`, `shaping`, `lower-priority-degraded`; empty
    /// when unlimited).
    #[serde(default)]
    pub limit: String,
}

/// `vsctl stats`: counters of every port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsShow {
    /// Ports: NICs (bond members and unbonded) and vNICs.
    pub ports: Vec<PortStatsShow>,
}

/// Counters of one port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatsShow {
    /// Port name.
    pub name: String,
    /// `nic` or `vnic`.
    pub kind: String,
    /// The bond a NIC belongs to, or a vNIC's uplink.
    #[serde(default)]
    pub uplink: Option<String>,
    /// Link state.
    #[serde(default)]
    pub link_up: bool,
    /// The device's MTU, where it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Frames received.
    pub rx_pkts: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_pkts: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Drops by reason ([`DropReason::name`]); every reason is present.
    pub drops: BTreeMap<String, u64>,
}

impl PortStatsShow {
    /// Builds the shape from the switch's summed counters.
    pub fn from_totals(
        name: &str,
        kind: &str,
        uplink: Option<&str>,
        link_up: bool,
        t: &PortTotals,
    ) -> Self {
        PortStatsShow {
            name: name.to_string(),
            kind: kind.to_string(),
            uplink: uplink.map(str::to_string),
            link_up,
            mtu: None,
            rx_pkts: t.rx_pkts,
            rx_bytes: t.rx_bytes,
            tx_pkts: t.tx_pkts,
            tx_bytes: t.tx_bytes,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), t.drops_of(*r)))
                .collect(),
        }
    }

    /// Sum of all drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// `vsctl pmd-rxq-show`: one worker and the rx queues it polls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PmdRxqShow {
    /// Worker index.
    pub worker: usize,
    /// The core it is pinned to.
    pub core: usize,
    /// Its rx queues, by port.
    pub ports: Vec<RxqShow>,
}

/// One port's rx queues on one worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RxqShow {
    /// Configured port name.
    pub port: String,
    /// "vnic" or "nic".
    pub kind: String,
    /// Queue ids.
    pub queues: Vec<u16>,
    /// Frames the worker received from them since the port was opened or the last
    /// `pmd-stats-clear`, whichever is later.
    pub rx_pkts: u64,
    /// Their share of the frames the worker received from all its queues, %. A share
    /// of frames, not of cycles (Open vSwitch's "pmd usage" is cycles).
    pub rx_share_pct: f64,
}

impl PmdRxqShow {
    /// Groups `(worker, RxqShow)` entries by worker (every worker in `cores`, also
    /// one that polls nothing) and fills in the shares.
    pub fn group(cores: &[usize], entries: Vec<(usize, RxqShow)>) -> Vec<PmdRxqShow> {
        let mut out: Vec<PmdRxqShow> = cores
            .iter()
            .enumerate()
            .map(|(worker, &core)| PmdRxqShow {
                worker,
                core,
                ports: Vec::new(),
            })
            .collect();
        for (w, e) in entries {
            if let Some(p) = out.get_mut(w) {
                p.ports.push(e);
            }
        }
        for p in &mut out {
            let total: u64 = p.ports.iter().map(|e| e.rx_pkts).sum();
            for e in &mut p.ports {
                e.rx_share_pct = if total == 0 {
                    0.0
                } else {
                    e.rx_pkts as f64 * 100.0 / total as f64
                };
            }
        }
        out
    }
}

/// `vsctl pmd-stats-show`: one worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PmdStats {
    /// Worker index.
    pub worker: usize,
    /// The core it is pinned to.
    pub core: usize,
    /// Poll-loop iterations.
    pub iterations: u64,
    /// Iterations that received at least one frame.
    pub busy_iterations: u64,
    /// Frames received by this worker.
    #[serde(default)]
    pub rx_pkts: u64,
    /// Busy cycles as a percentage of all cycles.
    pub busy_pct: f64,
    /// Busy cycles per received frame.
    pub cycles_per_pkt: f64,
    /// Iterations that ended in a load-based sleep (`pmd_sleep_max_us`).
    #[serde(default)]
    pub sleep_iterations: u64,
    /// Share of all cycles spent in those sleeps, %.
    #[serde(default)]
    pub sleep_pct: f64,
    /// Time spent in those sleeps, µs.
    #[serde(default)]
    pub sleep_us: u64,
    /// Average sleep of those iterations, µs.
    #[serde(default)]
    pub sleep_us_per_iteration: f64,
    /// The longest load-based sleep now allowed, µs (0: the worker busy-polls).
    #[serde(default)]
    pub sleep_max_us: u64,
}

/// A worker's poll-loop counters at one moment; `pmd-stats-clear` keeps one per
/// worker as the baseline `pmd-stats-show` counts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PmdCounts {
    /// Poll-loop iterations.
    pub iterations: u64,
    /// Iterations that received at least one frame.
    pub busy_iterations: u64,
    /// TSC cycles of busy iterations.
    pub busy_cycles: u64,
    /// TSC cycles of idle iterations, sleeps included.
    pub idle_cycles: u64,
    /// Frames received, all ports.
    pub rx_pkts: u64,
    /// Iterations that ended in a load-based sleep.
    pub sleep_iterations: u64,
    /// TSC cycles of those sleeps.
    pub sleep_cycles: u64,
}

impl PmdCounts {
    /// Reads a worker's counters (relaxed: each is exact, together they are a few
    /// iterations apart at most).
    pub fn read(w: &WorkerStats) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        PmdCounts {
            iterations: w.iterations.load(Relaxed),
            busy_iterations: w.busy_iterations.load(Relaxed),
            busy_cycles: w.busy_cycles.load(Relaxed),
            idle_cycles: w.idle_cycles.load(Relaxed),
            rx_pkts: w.ports.iter().map(|p| p.rx_pkts.load(Relaxed)).sum(),
            sleep_iterations: w.sleep_iterations.load(Relaxed),
            sleep_cycles: w.sleep_cycles.load(Relaxed),
        }
    }

    /// The counts since `base` (0 where a counter is below it).
    pub fn since(&self, base: &PmdCounts) -> Self {
        PmdCounts {
            iterations: self.iterations.saturating_sub(base.iterations),
            busy_iterations: self.busy_iterations.saturating_sub(base.busy_iterations),
            busy_cycles: self.busy_cycles.saturating_sub(base.busy_cycles),
            idle_cycles: self.idle_cycles.saturating_sub(base.idle_cycles),
            rx_pkts: self.rx_pkts.saturating_sub(base.rx_pkts),
            sleep_iterations: self.sleep_iterations.saturating_sub(base.sleep_iterations),
            sleep_cycles: self.sleep_cycles.saturating_sub(base.sleep_cycles),
        }
    }
}

impl PmdStats {
    /// Builds the shape from a worker's counts ([`PmdCounts::read`], perhaps made
    /// relative to a `pmd-stats-clear` baseline); `core` is the configured core,
    /// `tsc_hz` converts cycles to time, `sleep_max_us` is the current setting.
    pub fn from_counts(
        worker: usize,
        core: usize,
        c: &PmdCounts,
        tsc_hz: u64,
        sleep_max_us: u64,
    ) -> Self {
        let busy = c.busy_cycles;
        let idle = c.idle_cycles;
        let rx = c.rx_pkts;
        let sleeps = c.sleep_iterations;
        let slept = c.sleep_cycles;
        // a / b, or 0 when b is 0 (nothing counted yet).
        let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        let all = (busy + idle) as f64;
        let slept_us = ratio(slept as f64 * 1e6, tsc_hz as f64);
        PmdStats {
            worker,
            core,
            iterations: c.iterations,
            busy_iterations: c.busy_iterations,
            rx_pkts: rx,
            busy_pct: 100.0 * ratio(busy as f64, all),
            cycles_per_pkt: ratio(busy as f64, rx as f64),
            sleep_iterations: sleeps,
            sleep_pct: 100.0 * ratio(slept as f64, all),
            sleep_us: slept_us as u64,
            sleep_us_per_iteration: ratio(slept_us, sleeps as f64),
            sleep_max_us,
        }
    }
}

/// `vsctl lacp/show`: one bond's LACP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LacpShow {
    /// Bond name.
    pub bond: String,
    /// `off`, `active`, `passive`.
    pub lacp: String,
    /// Some member hears a partner.
    pub negotiated: bool,
    /// Fallback is in effect.
    #[serde(default)]
    pub fallback_active: bool,
    /// Members.
    pub members: Vec<LacpMemberShow>,
    /// The full text rendering (`policy::lacp::LacpStatus`'s `Display`).
    #[serde(default)]
    pub text: String,
}

/// One member's LACP state, for metrics and JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LacpMemberShow {
    /// NIC name.
    pub name: String,
    /// The bond's LACP lets it carry traffic.
    pub may_enable: bool,
    /// Mux machine state, e.g. `collecting_distributing`.
    #[serde(default)]
    pub mux: String,
    /// Partner system id (MAC), empty when none is heard.
    #[serde(default)]
    pub partner: String,
}

/// Every mutating command. On the wire it is `{"cmd": "<kebab-name>", "args": {...}}`
/// (the request's `cmd` and `args`); `settings` are `[["key","value"], ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "cmd",
    content = "args",
    rename_all = "kebab-case",
    deny_unknown_fields
)]
pub enum ConfigChange {
    /// `add-nic NAME DEVARGS [--speed-mbps N] [--mtu N]`
    AddNic {
        /// NIC name.
        name: String,
        /// DPDK devargs or PCI address.
        devargs: String,
        /// Assumed speed when the PMD reports none.
        #[serde(default)]
        speed_mbps: Option<u32>,
        /// MTU (default 1500).
        #[serde(default)]
        mtu: Option<u16>,
    },
    /// `set-nic NIC key=value...`
    SetNic {
        /// NIC name.
        nic: String,
        /// Keys of the `[[nic]]` table and their new values.
        settings: Vec<(String, String)>,
    },
    /// `del-nic NAME`
    DelNic {
        /// NIC name.
        name: String,
    },
    /// `add-vm NAME [--priority P] [--shares S]`
    AddVm {
        /// VM name.
        name: String,
        /// Priority 0–10.
        #[serde(default)]
        priority: Option<u8>,
        /// Shares.
        #[serde(default)]
        shares: Option<u32>,
    },
    /// `del-vm NAME` (with its vNICs)
    DelVm {
        /// VM name.
        name: String,
    },
    /// `add-vnic VM --mac M (--socket PATH [--vhost-mode client] | --devargs D) --uplink U [--name N]`
    AddVnic {
        /// Owning VM.
        vm: String,
        /// vNIC name (default `<vm>.<first free index>`).
        #[serde(default)]
        name: Option<String>,
        /// MAC address.
        mac: String,
        /// vhost-user socket path.
        #[serde(default)]
        socket: Option<String>,
        /// `server` (default) or `client`.
        #[serde(default)]
        vhost_mode: Option<String>,
        /// Any DPDK port instead of vhost-user.
        #[serde(default)]
        devargs: Option<String>,
        /// Bond or unbonded NIC.
        uplink: String,
        /// The vNIC's MTU ([`VnicConfig::mtu`]; none: no limit).
        #[serde(default)]
        mtu: Option<u16>,
    },
    /// `del-vnic NAME`
    DelVnic {
        /// vNIC name.
        name: String,
    },
    /// `set-vnic-uplink VNIC UPLINK`
    SetVnicUplink {
        /// vNIC name.
        vnic: String,
        /// New bond or unbonded NIC.
        uplink: String,
    },
    /// `add-bond NAME MEMBER... [key=value...]`
    AddBond {
        /// Bond name.
        name: String,
        /// Member NICs in order.
        members: Vec<String>,
        /// Initial settings, as for `set-bond`.
        #[serde(default)]
        settings: Vec<(String, String)>,
    },
    /// `del-bond NAME`
    DelBond {
        /// Bond name.
        name: String,
    },
    /// `add-bond-member BOND NIC`
    AddBondMember {
        /// Bond name.
        bond: String,
        /// NIC to add.
        nic: String,
    },
    /// `del-bond-member BOND NIC`
    DelBondMember {
        /// Bond name.
        bond: String,
        /// NIC to remove.
        nic: String,
    },
    /// `set-bond BOND key=value...`
    SetBond {
        /// Bond name.
        bond: String,
        /// Keys of the `[[bond]]` table and their new values.
        settings: Vec<(String, String)>,
    },
    /// `set-vm VM key=value...`
    SetVm {
        /// VM name.
        vm: String,
        /// Keys of the `[[vm]]` table and their new values.
        settings: Vec<(String, String)>,
    },
    /// `set-vnic VNIC key=value...`
    SetVnic {
        /// vNIC name.
        vnic: String,
        /// Keys of the `[[vm.vnic]]` table and their new values.
        settings: Vec<(String, String)>,
    },
    /// `set-dataplane key=value...`: keys of `[dataplane]`; a running switch takes
    /// only [`DATAPLANE_LIVE`] (the others need a restart).
    SetDataplane {
        /// Keys of the `[dataplane]` table and their new values.
        settings: Vec<(String, String)>,
    },
}

/// The `[dataplane]` keys a running switch changes (`set-dataplane`).
pub const DATAPLANE_LIVE: &[&str] = &["pmd_sleep_max_us"];

impl ConfigChange {
    /// The wire names (`cmd`) of every variant.
    pub const NAMES: [&'static str; 16] = [
        "add-nic",
        "set-nic",
        "del-nic",
        "add-vm",
        "del-vm",
        "add-vnic",
        "del-vnic",
        "set-vnic-uplink",
        "add-bond",
        "del-bond",
        "add-bond-member",
        "del-bond-member",
        "set-bond",
        "set-vm",
        "set-vnic",
        "set-dataplane",
    ];

    /// Decodes a request's `cmd` and `args`. `None` when `cmd` is not a change.
    pub fn from_request(cmd: &str, args: &Value) -> Option<Result<ConfigChange, CtlError>> {
        if !Self::NAMES.contains(&cmd) {
            return None;
        }
        let args = if args.is_null() {
            json!({})
        } else {
            args.clone()
        };
        Some(
            serde_json::from_value(json!({ "cmd": cmd, "args": args }))
                .map_err(|e| CtlError::BadArgs(format!("{cmd}: {e}"))),
        )
    }

    /// The wire name of this change.
    pub fn name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m
                .get("cmd")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        }
    }

    /// The request `args` of this change.
    pub fn args(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => m.remove("args").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

impl fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name(), self.args())
    }
}

/// Keys `set-nic` may not change.
const NIC_FIXED: &[&str] = &["name"];
/// Keys `set-bond` may not change (they have their own commands).
const BOND_FIXED: &[&str] = &["name", "members"];
/// Keys `set-vm` may not change.
const VM_FIXED: &[&str] = &["name", "vnic"];
/// Keys `set-vnic` may not change.
const VNIC_FIXED: &[&str] = &["name", "uplink"];

/// Applies `change` to a copy of `cfg` and validates the result.
///
/// Returns the new configuration, or the reason it was refused: the validator's
/// message ([`Config::validate`]) for rule violations, [`CtlError::NotFound`] for
/// unknown objects, [`CtlError::BadArgs`] for unknown keys or unparsable values.
/// Pure: reads no state but its arguments and never changes `cfg`.
pub fn apply_to_config(cfg: &Config, change: &ConfigChange) -> Result<Config, CtlError> {
    let mut c = cfg.clone();
    match change {
        ConfigChange::AddNic {
            name,
            devargs,
            speed_mbps,
            mtu,
        } => {
            let mut v = json!({ "name": name, "devargs": devargs });
            if let Some(s) = speed_mbps {
                v["speed_mbps"] = json!(s);
            }
            if let Some(m) = mtu {
                v["mtu"] = json!(m);
            }
            let nic: NicConfig = from_json("nic", v)?;
            c.nic.push(nic);
        }
        ConfigChange::SetNic { nic, settings } => {
            let i = c
                .nic
                .iter()
                .position(|n| &n.name == nic)
                .ok_or_else(|| not_found("nic", nic))?;
            check_fixed("set-nic", settings, NIC_FIXED)?;
            c.nic[i] = set_keys("nic", &c.nic[i], settings)?;
        }
        ConfigChange::DelNic { name } => {
            let i = c
                .nic
                .iter()
                .position(|n| &n.name == name)
                .ok_or_else(|| not_found("nic", name))?;
            if let Some(b) = c.bond_of_nic(name) {
                return Err(CtlError::Invalid(format!(
                    "nic '{name}' is a member of bond '{}'; remove it with del-bond-member first",
                    b.name
                )));
            }
            if let Some(v) = vnics_on(&c, name).first() {
                return Err(CtlError::Invalid(format!(
                    "nic '{name}' is the uplink of vnic '{v}'; move it with set-vnic-uplink or delete it first"
                )));
            }
            c.nic.remove(i);
        }
        ConfigChange::AddVm {
            name,
            priority,
            shares,
        } => {
            let mut v = json!({ "name": name });
            if let Some(p) = priority {
                v["priority"] = json!(p);
            }
            if let Some(s) = shares {
                v["shares"] = json!(s);
            }
            let vm: VmConfig = from_json("vm", v)?;
            c.vm.push(vm);
        }
        ConfigChange::DelVm { name } => {
            let i =
                c.vm.iter()
                    .position(|v| &v.name == name)
                    .ok_or_else(|| not_found("vm", name))?;
            c.vm.remove(i);
        }
        ConfigChange::AddVnic {
            vm,
            name,
            mac,
            socket,
            vhost_mode,
            devargs,
            uplink,
            mtu,
        } => {
            let vi =
                c.vm.iter()
                    .position(|v| &v.name == vm)
                    .ok_or_else(|| not_found("vm", vm))?;
            pin_vnic_names(&mut c.vm[vi]);
            let name = match name {
                Some(n) => n.clone(),
                None => {
                    let taken: Vec<String> = all_vnic_names(&c);
                    (0..)
                        .map(|j| format!("{vm}.{j}"))
                        .find(|n| !taken.contains(n))
                        .unwrap_or_default()
                }
            };
            if all_vnic_names(&c).contains(&name) {
                return Err(CtlError::Invalid(format!(
                    "vnic '{name}': the name is already used by another vnic"
                )));
            }
            let mut v = json!({ "name": name, "mac": mac, "uplink": uplink });
            if let Some(s) = socket {
                v["socket"] = json!(s);
            }
            if let Some(m) = vhost_mode {
                v["vhost_mode"] = json!(m);
            }
            if let Some(d) = devargs {
                v["devargs"] = json!(d);
            }
            if let Some(m) = mtu {
                v["mtu"] = json!(m);
            }
            let vnic: VnicConfig = from_json("vnic", v)?;
            c.vm[vi].vnic.push(vnic);
        }
        ConfigChange::DelVnic { name } => {
            let (vi, j) = find_vnic(&c, name)?;
            pin_vnic_names(&mut c.vm[vi]);
            c.vm[vi].vnic.remove(j);
        }
        ConfigChange::SetVnicUplink { vnic, uplink } => {
            let (vi, j) = find_vnic(&c, vnic)?;
            if c.uplink(uplink).is_none() {
                return Err(not_found("uplink (bond or nic)", uplink));
            }
            c.vm[vi].vnic[j].uplink = uplink.clone();
        }
        ConfigChange::AddBond {
            name,
            members,
            settings,
        } => {
            let mut bond: BondConfigFile =
                from_json("bond", json!({ "name": name, "members": members }))?;
            check_fixed("set-bond", settings, BOND_FIXED)?;
            bond = set_keys("bond", &bond, settings)?;
            c.bond.push(bond);
        }
        ConfigChange::DelBond { name } => {
            let i = c
                .bond
                .iter()
                .position(|b| &b.name == name)
                .ok_or_else(|| not_found("bond", name))?;
            if let Some(v) = vnics_on(&c, name).first() {
                return Err(CtlError::Invalid(format!(
                    "bond '{name}' is the uplink of vnic '{v}'; move it with set-vnic-uplink or delete it first"
                )));
            }
            c.bond.remove(i);
        }
        ConfigChange::AddBondMember { bond, nic } => {
            let i = c
                .bond
                .iter()
                .position(|b| &b.name == bond)
                .ok_or_else(|| not_found("bond", bond))?;
            if !c.nic.iter().any(|n| &n.name == nic) {
                return Err(not_found("nic", nic));
            }
            if c.bond[i].members.contains(nic) {
                return Err(CtlError::Invalid(format!(
                    "nic '{nic}' is already a member of bond '{bond}'"
                )));
            }
            c.bond[i].members.push(nic.clone());
        }
        ConfigChange::DelBondMember { bond, nic } => {
            let b = c
                .bond
                .iter_mut()
                .find(|b| &b.name == bond)
                .ok_or_else(|| not_found("bond", bond))?;
            let m = b.members.iter().position(|m| m == nic).ok_or_else(|| {
                CtlError::Invalid(format!("nic '{nic}' is not a member of bond '{bond}'"))
            })?;
            b.members.remove(m);
            b.active_order.retain(|m| m != nic);
        }
        ConfigChange::SetBond { bond, settings } => {
            let i = c
                .bond
                .iter()
                .position(|b| &b.name == bond)
                .ok_or_else(|| not_found("bond", bond))?;
            check_fixed("set-bond", settings, BOND_FIXED)?;
            c.bond[i] = set_keys("bond", &c.bond[i], settings)?;
        }
        ConfigChange::SetVm { vm, settings } => {
            let i =
                c.vm.iter()
                    .position(|v| &v.name == vm)
                    .ok_or_else(|| not_found("vm", vm))?;
            check_fixed("set-vm", settings, VM_FIXED)?;
            c.vm[i] = set_keys("vm", &c.vm[i], settings)?;
        }
        ConfigChange::SetVnic { vnic, settings } => {
            let (vi, j) = find_vnic(&c, vnic)?;
            check_fixed("set-vnic", settings, VNIC_FIXED)?;
            c.vm[vi].vnic[j] = set_keys("vnic", &c.vm[vi].vnic[j], settings)?;
        }
        ConfigChange::SetDataplane { settings } => {
            // Every key is typed and checked against the table (so a typo gets the
            // list of keys); which of them a running switch takes is the daemon's
            // call (`reconcile`), with the file's path in its answer.
            c.dataplane = set_keys("dataplane", &c.dataplane, settings)?;
        }
    }
    c.validate()?;
    for b in &c.bond {
        check_bond_names(b)?;
    }
    Ok(c)
}

/// Checks the bond's enumerated settings by the names the teaming logic accepts, so
/// a typo is refused when it is typed rather than when the switch applies it.
fn check_bond_names(b: &BondConfigFile) -> Result<(), CtlError> {
    let what = |e: String| CtlError::Invalid(format!("bond '{}': {e}", b.name));
    b.mode
        .parse::<policy::bond::Mode>()
        .map_err(|e| what(e.to_string()))?;
    b.failback
        .parse::<policy::bond::Failback>()
        .map_err(|e| what(e.to_string()))?;
    let one_of = |key: &str, v: &str, ok: &[&str]| -> Result<(), CtlError> {
        if ok.contains(&v) {
            Ok(())
        } else {
            Err(what(format!(
                "{key} '{v}' must be one of: {}",
                ok.join(", ")
            )))
        }
    };
    one_of("lacp", &b.lacp, &["off", "active", "passive"])?;
    one_of("lacp_rate", &b.lacp_rate, &["fast", "slow"])?;
    one_of(
        "lacp_fallback",
        &b.lacp_fallback,
        &["active-backup", "none"],
    )?;
    one_of(
        "degraded",
        &b.degraded,
        &["drop-lower-priority", "proportional"],
    )
}

fn not_found(kind: &'static str, name: &str) -> CtlError {
    CtlError::NotFound {
        kind,
        name: name.to_string(),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, CtlError> {
    serde_json::from_value(v).map_err(|e| CtlError::BadArgs(format!("{what}: {e}")))
}

fn all_vnic_names(c: &Config) -> Vec<String> {
    c.vm.iter()
        .flat_map(|vm| (0..vm.vnic.len()).map(move |j| Config::vnic_name(vm, j)))
        .collect()
}

fn vnics_on(c: &Config, uplink: &str) -> Vec<String> {
    c.vm.iter()
        .flat_map(|vm| {
            vm.vnic
                .iter()
                .enumerate()
                .filter(|(_, v)| v.uplink == uplink)
                .map(move |(j, _)| Config::vnic_name(vm, j))
        })
        .collect()
}

fn find_vnic(c: &Config, name: &str) -> Result<(usize, usize), CtlError> {
    for (vi, vm) in c.vm.iter().enumerate() {
        for j in 0..vm.vnic.len() {
            if Config::vnic_name(vm, j) == name {
                return Ok((vi, j));
            }
        }
    }
    Err(not_found("vnic", name))
}

/// Gives every vNIC of `vm` its current (possibly positional) name explicitly.
fn pin_vnic_names(vm: &mut VmConfig) {
    for j in 0..vm.vnic.len() {
        if vm.vnic[j].name.is_none() {
            vm.vnic[j].name = Some(Config::vnic_name(vm, j));
        }
    }
}

fn check_fixed(cmd: &str, settings: &[(String, String)], fixed: &[&str]) -> Result<(), CtlError> {
    for (k, _) in settings {
        if fixed.contains(&k.as_str()) {
            let hint = match k.as_str() {
                "members" => "use add-bond-member / del-bond-member",
                "uplink" => "use set-vnic-uplink",
                "vnic" => "use add-vnic / del-vnic",
                _ => "delete and re-create the object",
            };
            return Err(CtlError::BadArgs(format!(
                "{cmd}: '{k}' cannot be set this way; {hint}"
            )));
        }
    }
    Ok(())
}

/// Sets `key=value` pairs on a configuration table through its serde form, so every
/// key of the table (including ones added later) is settable with the file's names,
/// unknown keys are refused with the list of known ones, and values are typed by the
/// field they replace.
fn set_keys<T: Serialize + serde::de::DeserializeOwned>(
    what: &str,
    table: &T,
    settings: &[(String, String)],
) -> Result<T, CtlError> {
    let v = serde_json::to_value(table).map_err(|e| CtlError::Internal(e.to_string()))?;
    let Value::Object(old) = v else {
        return Err(CtlError::Internal(format!("{what} is not a table")));
    };
    // Two readings of the values: the likely one (typed like the field's current
    // value; an empty value unsets an optional field; a value for an unset optional
    // field is guessed as number, boolean or string), and a fallback that reads
    // those ambiguous values as plain strings.
    let (mut likely, mut fallback) = (old.clone(), old.clone());
    for (k, raw) in settings {
        if k.is_empty() {
            return Err(CtlError::BadArgs(format!("{what}: empty key in '={raw}'")));
        }
        let (a, b) = match old.get(k) {
            Some(cur) if !cur.is_null() && !raw.trim().is_empty() => {
                let t = typed_like(cur, raw)
                    .map_err(|e| CtlError::BadArgs(format!("{what} {k}: {e}")))?;
                // An empty list gives no element type: its items were guessed, and
                // read as strings in the fallback.
                let f = match cur {
                    Value::Array(items) if items.is_empty() => {
                        list_items(raw, |p| Ok::<_, String>(Value::String(p.to_string())))
                            .map_err(|e| CtlError::BadArgs(format!("{what} {k}: {e}")))?
                    }
                    _ => t.clone(),
                };
                (t, f)
            }
            Some(cur) if !cur.is_null() => (
                Value::Null,
                typed_like(cur, raw).unwrap_or(Value::String(raw.clone())),
            ),
            _ => (guess_value(raw), Value::String(raw.clone())),
        };
        likely.insert(k.clone(), a);
        fallback.insert(k.clone(), b);
    }
    serde_json::from_value::<T>(Value::Object(likely)).or_else(|first| {
        // serde names the field only for some errors (not for a value out of its
        // type's range): name the keys given.
        let keys: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
        serde_json::from_value::<T>(Value::Object(fallback))
            .map_err(|_| CtlError::BadArgs(format!("{what} {}: {first}", keys.join(", "))))
    })
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_number(raw: &str) -> Option<Value> {
    let t = raw.trim();
    if let Ok(u) = t.parse::<u64>() {
        return Some(json!(u));
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(json!(i));
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(|f| json!(f))
}

/// Types `raw` like the field's current value `old`.
fn typed_like(old: &Value, raw: &str) -> Result<Value, String> {
    Ok(match old {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Bool(_) => {
            Value::Bool(parse_bool(raw).ok_or_else(|| format!("'{raw}' is not true or false"))?)
        }
        Value::Number(_) => parse_number(raw).ok_or_else(|| format!("'{raw}' is not a number"))?,
        // Items typed like the list's first; an empty list's are guessed (number,
        // boolean or string), as for an unset optional field.
        Value::Array(items) => match items.first() {
            Some(Value::Number(_)) => list_items(raw, |p| {
                parse_number(p).ok_or_else(|| format!("'{p}' is not a number"))
            })?,
            Some(_) => list_items(raw, |p| Ok(Value::String(p.to_string())))?,
            None => list_items(raw, |p| Ok(guess_value(p)))?,
        },
        Value::Null => guess_value(raw),
        Value::Object(_) => {
            return Err("this key is a table; set its fields in the config file".into())
        }
    })
}

/// The comma-separated items of `raw` (empty ones skipped), each typed by `item`.
fn list_items(raw: &str, item: impl Fn(&str) -> Result<Value, String>) -> Result<Value, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(item)
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Types a value for an optional field that is unset: empty unsets it; then a
/// boolean, a number, or a string.
fn guess_value(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Null;
    }
    if let Some(n) = parse_number(raw) {
        return n;
    }
    match raw.trim() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests;
