//! The switch's configuration file (TOML) and its validation.
//!
//! Parsing is strict: unknown keys are errors (a typo must not silently become a
//! default), and every error names the file, the line where the TOML parser knows
//! it, and the offending entry. [`Config::validate`] applies the specification's
//! assignment rules ([0060]): a NIC belongs to at most one bond or stays unbonded; a
//! vNIC is assigned to exactly one bond or one unbonded NIC, never to a bonded NIC
//! directly; a VM may have several vNICs.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use policy::wire::MacAddr;
use serde::{Deserialize, Serialize};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// TOML syntax or schema error.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// File path.
        path: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A rule of the topology is broken.
    #[error("{0}")]
    Invalid(String),
}

fn default_eal_args() -> Vec<String> {
    [
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        "--no-telemetry",
        "--iova-mode=va",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `[eal]`: extra EAL arguments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EalSection {
    /// Arguments passed to rte_eal_init (the defaults work without hugepages).
    #[serde(default = "default_eal_args")]
    pub args: Vec<String>,
    /// `--file-prefix`, unique per DPDK process on a host.
    #[serde(default = "default_prefix")]
    pub file_prefix: String,
}

fn default_prefix() -> String {
    "vswitch".into()
}

impl Default for EalSection {
    fn default() -> Self {
        EalSection {
            args: default_eal_args(),
            file_prefix: default_prefix(),
        }
    }
}

/// `[dataplane]`: worker threads and buffers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSection {
    /// Worker cores, one pinned polling thread each.
    #[serde(default = "default_cores")]
    pub cores: Vec<usize>,
    /// Core for the control thread (unpinned when absent).
    #[serde(default)]
    pub control_core: Option<usize>,
    /// Mbufs in the packet pool.
    #[serde(default = "default_mbufs")]
    pub mbufs: u32,
    /// Rx/tx descriptors per queue.
    #[serde(default = "default_desc")]
    pub descriptors: u16,
    /// Link-state polling period of the control thread, ms.
    #[serde(default = "default_link_poll")]
    pub link_poll_ms: u64,
    /// Capacity of the slow-protocol (LACP) handoff queue to the control thread.
    #[serde(default = "default_ctl_queue")]
    pub control_queue: usize,
    /// Per-vNIC shares, reservations, priority and shaping on uplink traffic, and each
    /// uplink paced to its capacity. Off: frames go out as fast as the NICs take them.
    #[serde(default = "yes")]
    pub bandwidth: bool,
    /// How often the control thread recomputes every vNIC's allocation, µs.
    #[serde(default = "default_alloc_us")]
    pub allocation_interval_us: u64,
    /// Longest a frame over its allocation may wait in its vNIC's queue, µs.
    #[serde(default = "default_max_delay_us")]
    pub max_queue_delay_us: u64,
    /// Load-based sleep of the workers (Open vSwitch's `pmd-sleep-max`): after a poll
    /// pass in which no rx queue brought [`crate::worker::SLEEP_THRESHOLD`] frames or
    /// more, a worker sleeps, 1 µs longer after each such pass, up to this many µs;
    /// a busier pass ends it. 0 (the default): workers busy-poll. Up to
    /// [`PMD_SLEEP_MAX_US`]; the one `[dataplane]` key `vsctl set-dataplane` changes
    /// on a running switch.
    #[serde(default)]
    pub pmd_sleep_max_us: u64,
}

/// Longest `link_poll_ms`: 10 s (failover waits for the poll; the default is 10 ms).
pub const MAX_LINK_POLL_MS: u64 = 10_000;
/// Longest `allocation_interval_us` and `max_queue_delay_us`: 10 s.
pub const MAX_INTERVAL_US: u64 = 10_000_000;

/// Highest `pmd_sleep_max_us` (10 ms, as Open vSwitch).
pub const PMD_SLEEP_MAX_US: u64 = 10_000;

fn default_alloc_us() -> u64 {
    2000
}
fn default_max_delay_us() -> u64 {
    2000
}

fn default_cores() -> Vec<usize> {
    vec![1]
}
fn default_mbufs() -> u32 {
    16383
}
fn default_desc() -> u16 {
    1024
}
fn default_link_poll() -> u64 {
    10
}
fn default_ctl_queue() -> usize {
    1024
}

impl Default for DataplaneSection {
    fn default() -> Self {
        DataplaneSection {
            cores: default_cores(),
            control_core: None,
            mbufs: default_mbufs(),
            descriptors: default_desc(),
            link_poll_ms: default_link_poll(),
            control_queue: default_ctl_queue(),
            bandwidth: true,
            allocation_interval_us: default_alloc_us(),
            max_queue_delay_us: default_max_delay_us(),
            pmd_sleep_max_us: 0,
        }
    }
}

/// `[control]`: how operators reach the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// Unix socket `vsctl` talks to.
    #[serde(default = "default_socket")]
    pub socket: String,
    /// Group allowed to use the socket (mode 0660); root only when absent.
    #[serde(default)]
    pub group: Option<String>,
    /// Prometheus exposition address, e.g. "127.0.0.1:9469"; off when absent.
    #[serde(default)]
    pub metrics: Option<String>,
}

fn default_socket() -> String {
    "/run/vswitch/vswitchd.ctl".into()
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            socket: default_socket(),
            group: None,
            metrics: None,
        }
    }
}

/// `[[nic]]`: a physical (or virtual stand-in) NIC driven by a DPDK PMD.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NicConfig {
    /// Unique name.
    pub name: String,
    /// DPDK devargs or PCI address.
    pub devargs: String,
    /// The NIC's speed, Mb/s, as the bandwidth policy and load-based teaming count it
    /// (it overrides the PMD's); LACP takes it only when the PMD reports none. Without
    /// it, a NIC whose PMD reports no speed (virtio-net, unless told) counts as 10 Gb/s.
    #[serde(default)]
    pub speed_mbps: Option<u32>,
    /// The MTU (bytes of IP packet; Open vSwitch's `mtu_request`), default 1500. The
    /// device is set to it, and a frame longer than the MTU plus an Ethernet header
    /// and one VLAN tag ([`NicConfig::frame_max`]) is not sent out of this NIC but
    /// counted as an `mtu_exceeded` drop. A change is made on the running device
    /// where it takes it, else by opening the port anew (its link drops briefly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

/// The MTU of a NIC that sets none.
pub const DEFAULT_MTU: u16 = 1500;
/// The smallest MTU a NIC takes (IPv4's minimum, RFC 791; DPDK's `RTE_ETHER_MIN_MTU`).
pub const MIN_MTU: u16 = 68;
/// The largest MTU a NIC takes: a 9728-byte frame, Open vSwitch's limit.
pub const MAX_MTU: u16 = 9710;
/// What a frame adds to its MTU at most and still leaves: the Ethernet header and one
/// VLAN tag (mbuf lengths exclude the FCS). Open vSwitch's `MTU_TO_FRAME_LEN` allows
/// the same.
pub const MTU_FRAME_OVERHEAD: u32 = 14 + 4;

impl NicConfig {
    /// The MTU in force: the configured one, else [`DEFAULT_MTU`].
    pub fn mtu(&self) -> u16 {
        self.mtu.unwrap_or(DEFAULT_MTU)
    }

    /// The longest frame (mbuf `pkt_len`) this NIC sends.
    pub fn frame_max(&self) -> u32 {
        frame_max(self.mtu())
    }
}

/// The longest frame (mbuf `pkt_len`) a port with MTU `mtu` sends: the MTU plus
/// [`MTU_FRAME_OVERHEAD`].
fn frame_max(mtu: u16) -> u32 {
    u32::from(mtu) + MTU_FRAME_OVERHEAD
}

/// Refuses a configured MTU (of `what`, e.g. `nic 'nic0'`) outside
/// [`MIN_MTU`]..=[`MAX_MTU`].
fn check_mtu(what: &str, mtu: Option<u16>) -> Result<(), ConfigError> {
    match mtu {
        Some(m) if !(MIN_MTU..=MAX_MTU).contains(&m) => Err(ConfigError::Invalid(format!(
            "{what}: mtu {m} is outside {MIN_MTU}..={MAX_MTU}"
        ))),
        _ => Ok(()),
    }
}

/// `[[bond]]`: a team of NICs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BondConfigFile {
    /// Unique name.
    pub name: String,
    /// Member NIC names, in order.
    pub members: Vec<String>,
    /// Distribution policy (e.g. `active-backup`, `hash-l3l4`, `vm-pinned`).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Failback policy: `immediate`, `delayed`, `manual`.
    #[serde(default = "default_failback")]
    pub failback: String,
    /// Delay before failing back under `delayed`, ms.
    #[serde(default)]
    pub failback_delay_ms: u64,
    /// Time a member must stay up before it is used, ms.
    #[serde(default)]
    pub updelay_ms: u64,
    /// Time a member must stay down before it is dropped, ms.
    #[serde(default)]
    pub downdelay_ms: u64,
    /// Active-backup failover order (member names); default: `members` order.
    #[serde(default)]
    pub active_order: Vec<String>,
    /// Send gratuitous RARPs for moved MACs on failover.
    #[serde(default = "yes")]
    pub notify_switches: bool,
    /// LACP: `off`, `active`, `passive`.
    #[serde(default = "default_lacp")]
    pub lacp: String,
    /// LACP rate asked of the partner: `fast` or `slow`.
    #[serde(default = "default_lacp_rate")]
    pub lacp_rate: String,
    /// LACP fallback when the partner is silent: `active-backup` or `none`.
    #[serde(default = "default_lacp_fallback")]
    pub lacp_fallback: String,
    /// LACP actor system priority (lower wins the aggregation decisions); default 32768.
    #[serde(default)]
    pub lacp_system_priority: Option<u16>,
    /// LACP actor key, the same on every member; default 1.
    #[serde(default)]
    pub lacp_key: Option<u16>,
    /// LACP port priority per member, in `members` order; empty = 32768 for all.
    #[serde(default)]
    pub lacp_port_priorities: Vec<u16>,
    /// LACP actor system ID (a unicast MAC); default: the first member's MAC, read once
    /// at start-up and kept for the bond's life.
    #[serde(default)]
    pub lacp_system_id: Option<String>,
    /// Degraded-bond policy: `drop-lower-priority` or `proportional`.
    #[serde(default = "default_degraded")]
    pub degraded: String,
    /// priority-aware: vNICs at or below this priority are isolated.
    #[serde(default)]
    pub isolate_priority_max: Option<u8>,
    /// priority-aware: the member (name) they are isolated to.
    #[serde(default)]
    pub isolated_member: Option<String>,
    /// load-based: utilisation threshold, percent.
    #[serde(default)]
    pub rebalance_threshold_pct: Option<u8>,
    /// load-based: window, seconds.
    #[serde(default)]
    pub rebalance_window_s: Option<u64>,
    /// VM actions ([0124]): suspend the VMs starved on this bond by the degraded-bond
    /// rule (they need `qmp` or `hook`), resumed on failback. The default for every VM
    /// on the bond that sets no `suspend_when_starved` of its own; a VM's own setting
    /// wins either way.
    #[serde(default)]
    pub suspend_starved_vms: bool,
    /// VM actions: how long starvation must last before a VM on this bond is
    /// suspended, ms (default 1000), for VMs without their own `starve_grace_ms`.
    #[serde(default)]
    pub starve_grace_ms: Option<u64>,
    /// VM actions ([0132]): request the migration (hook) of VMs starved on this bond
    /// once it has been degraded this long, s, for VMs without their own
    /// `migrate_after_s`.
    #[serde(default)]
    pub migrate_after_s: Option<u64>,
    /// VM actions ([0133]): raise an alert for every action on VMs using this bond
    /// that set no `alert` of their own (default true).
    #[serde(default = "yes")]
    pub alert: bool,
}

fn yes() -> bool {
    true
}
fn default_mode() -> String {
    "active-backup".into()
}
fn default_failback() -> String {
    "immediate".into()
}
fn default_lacp() -> String {
    "off".into()
}
fn default_lacp_rate() -> String {
    "fast".into()
}
fn default_lacp_fallback() -> String {
    "none".into()
}
fn default_degraded() -> String {
    "drop-lower-priority".into()
}

/// `[[vm]]`: a virtual machine and its vNICs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Unique name.
    pub name: String,
    /// Priority 0–10 (default for its vNICs).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Shares (default for its vNICs).
    #[serde(default = "default_shares")]
    pub shares: u32,
    /// Reservation in Mb/s (default for its vNICs).
    #[serde(default)]
    pub reservation_mbps: Option<u64>,
    /// QEMU QMP socket for VM actions.
    #[serde(default)]
    pub qmp: Option<String>,
    /// Hook command for VM actions.
    #[serde(default)]
    pub hook: Option<String>,
    /// Suspend the VM (QMP `stop`, or the hook) while it is starved by a degraded
    /// bond, until the bond is restored ([0124]); needs `qmp` or `hook`. Unset: its
    /// bond's `suspend_starved_vms` decides (the VM's own setting always wins).
    #[serde(default)]
    pub suspend_when_starved: Option<bool>,
    /// How long starvation must last before the VM is suspended, ms. Unset: its
    /// bond's `starve_grace_ms` (default 1000).
    #[serde(default)]
    pub starve_grace_ms: Option<u64>,
    /// Request the VM's migration (hook) once a bond it uses and is starved on has
    /// been degraded this long, s ([0132]). Unset: its bond's `migrate_after_s`.
    #[serde(default)]
    pub migrate_after_s: Option<u64>,
    /// Raise an alert (log, and the hook when configured) for every action ([0133]).
    /// Unset: on, unless every bond the VM uses sets `alert = false`.
    #[serde(default)]
    pub alert: Option<bool>,
    /// The VM may be suspended to protect a higher-priority VM under DoS attack
    /// (`dos_responses = ["suspend-lower-priority"]` on the victim, [0126]).
    #[serde(default)]
    pub suspend_for_dos: bool,
    /// DoS: frames per second arriving for the VM that declare a rate flood.
    #[serde(default)]
    pub dos_max_pps: Option<u64>,
    /// DoS: bits per second arriving for the VM that declare a rate flood.
    #[serde(default)]
    pub dos_max_bps: Option<u64>,
    /// DoS: half-open TCP handshakes per second that declare a SYN flood.
    #[serde(default)]
    pub dos_max_half_open_per_sec: Option<u64>,
    /// DoS: sliding measurement window, ms (default 50).
    #[serde(default)]
    pub dos_window_ms: Option<u64>,
    /// DoS: quiet time before an attack is declared over, ms (default 1000).
    #[serde(default)]
    pub dos_clear_after_ms: Option<u64>,
    /// DoS responses: `drop`, `rate-limit:PPS`, `delay:50ms[:FRAMES]`,
    /// `failover:BOND`, `suspend-lower-priority`, `migrate`, `alert`.
    #[serde(default)]
    pub dos_responses: Vec<String>,
    /// DoS signatures: `NAME [proto=tcp|udp|icmp|N] [dport=P[-Q]] [payload@OFF=HEX]`.
    #[serde(default)]
    pub dos_signatures: Vec<String>,
    /// The VM's virtual NICs.
    #[serde(default)]
    pub vnic: Vec<VnicConfig>,
}

impl VmConfig {
    /// True when any DoS detector or signature is configured.
    pub fn dos_enabled(&self) -> bool {
        self.dos_max_pps.is_some()
            || self.dos_max_bps.is_some()
            || self.dos_max_half_open_per_sec.is_some()
            || !self.dos_signatures.is_empty()
    }

    /// The parsed DoS configuration (detector thresholds and responses).
    pub fn dos_config(&self) -> Result<policy::dos::DosConfig, String> {
        use policy::dos::{DosConfig, DosResponse};
        use policy::time::MS;
        let mut c = DosConfig {
            max_pps: self.dos_max_pps,
            max_bps: self.dos_max_bps,
            max_half_open_per_sec: self.dos_max_half_open_per_sec,
            ..DosConfig::default()
        };
        if let Some(w) = self.dos_window_ms {
            c.window = w.max(1).saturating_mul(MS);
        }
        if let Some(w) = self.dos_clear_after_ms {
            c.clear_after = w.saturating_mul(MS);
        }
        c.responses = self
            .dos_responses
            .iter()
            .map(|r| r.parse::<DosResponse>().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(c)
    }

    /// The compiled DoS signature set (empty when none is configured).
    pub fn dos_signature_set(&self) -> Result<policy::dos::SignatureSet, String> {
        use policy::dos::{SignatureRule, SignatureSet};
        let rules = self
            .dos_signatures
            .iter()
            .map(|r| r.parse::<SignatureRule>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        SignatureSet::new(rules).map_err(|e| e.to_string())
    }
}

fn default_priority() -> u8 {
    5
}
fn default_shares() -> u32 {
    1000
}

/// `[[vm.vnic]]`: one virtual NIC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VnicConfig {
    /// Name; default `<vm>.<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// vhost-user socket path.
    #[serde(default)]
    pub socket: Option<String>,
    /// `server` (the switch creates the socket) or `client` (QEMU serves it).
    #[serde(default = "default_vhost_mode")]
    pub vhost_mode: String,
    /// Any DPDK port instead of vhost-user (benchmarks, tests).
    #[serde(default)]
    pub devargs: Option<String>,
    /// The vNIC's MAC.
    pub mac: String,
    /// A bond or an unbonded NIC.
    pub uplink: String,
    /// Drop frames whose source MAC is not `mac` ("forged transmits: reject").
    #[serde(default = "yes")]
    pub spoof_check: bool,
    /// Shares override.
    #[serde(default)]
    pub shares: Option<u32>,
    /// Priority override.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Guaranteed minimum, Mb/s ([0112]).
    #[serde(default)]
    pub reservation_mbps: Option<u64>,
    /// Traffic shaping: long-run average rate, b/s ([0090]).
    #[serde(default)]
    pub average_bps: Option<u64>,
    /// Traffic shaping: peak rate, b/s.
    #[serde(default)]
    pub peak_bps: Option<u64>,
    /// Traffic shaping: burst size, bytes.
    #[serde(default)]
    pub burst_bytes: Option<u64>,
    /// Traffic shaping: window over which the peak is enforced, ms.
    #[serde(default)]
    pub peak_period_ms: Option<u64>,
    /// The vNIC's MTU (Open vSwitch's `mtu_request` on a vhost-user port): a frame
    /// longer than it plus an Ethernet header and a VLAN tag
    /// ([`VnicConfig::frame_max`]) is not delivered to the VM but counted at the vNIC
    /// as an `mtu_exceeded` drop. Unset, the switch delivers frames of any length (as
    /// before this setting existed; Open vSwitch's default is 1500). The guest learns
    /// its MTU from QEMU (`host_mtu=` on the virtio-net device, `VIRTIO_NET_F_MTU`),
    /// not from the switch: give both the same value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

impl VnicConfig {
    /// The longest frame (mbuf `pkt_len`) delivered to this vNIC: its MTU plus
    /// [`MTU_FRAME_OVERHEAD`], or no limit when it sets none.
    pub fn frame_max(&self) -> u32 {
        self.mtu.map_or(u32::MAX, frame_max)
    }

    /// The bandwidth settings of this vNIC, with `vm`'s defaults filled in.
    pub fn bandwidth(&self, vm: &VmConfig) -> policy::bandwidth::VnicBandwidth {
        use policy::bandwidth::{Shaping, VnicBandwidth};
        let shaping = self.average_bps.map(|avg| Shaping {
            average_bps: avg,
            peak_bps: self.peak_bps.unwrap_or(avg).max(avg),
            burst_bytes: self.burst_bytes.unwrap_or(0),
            peak_period: self
                .peak_period_ms
                .map(|ms| ms.saturating_mul(policy::time::MS)),
        });
        VnicBandwidth {
            shares: self.shares.unwrap_or(vm.shares),
            priority: self.priority.unwrap_or(vm.priority),
            reservation_bps: self
                .reservation_mbps
                .or(vm.reservation_mbps)
                .unwrap_or(0)
                .saturating_mul(1_000_000),
            shaping,
        }
    }
}

fn default_vhost_mode() -> String {
    "server".into()
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// EAL settings.
    #[serde(default)]
    pub eal: EalSection,
    /// Data plane settings.
    #[serde(default)]
    pub dataplane: DataplaneSection,
    /// Control socket and metrics.
    #[serde(default)]
    pub control: ControlSection,
    /// NICs.
    #[serde(default)]
    pub nic: Vec<NicConfig>,
    /// Bonds.
    #[serde(default)]
    pub bond: Vec<BondConfigFile>,
    /// VMs.
    #[serde(default)]
    pub vm: Vec<VmConfig>,
}

/// The 1-based line of a parse error. For an unknown key, serde's span covers the
/// whole table, so the key itself is looked up inside that span.
fn error_line(text: &str, span_start: usize, message: &str) -> usize {
    let start = span_start.min(text.len());
    let line_of = |pos: usize| text[..pos].matches('\n').count() + 1;
    if let Some(key) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
    {
        if text[start..].starts_with(key) {
            return line_of(start);
        }
        let mut pos = start;
        for l in text[start..].split_inclusive('\n') {
            let t = l.trim_start();
            if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
                return line_of(pos);
            }
            pos += l.len();
        }
    }
    line_of(start)
}

/// What a vNIC's uplink name resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkRef {
    /// Index into `Config::bond`.
    Bond(usize),
    /// Index into `Config::nic` (an unbonded NIC).
    Nic(usize),
}

impl BondConfigFile {
    /// The bond's LACP settings, or `None` with `lacp = "off"`. The system ID stays
    /// `None` unless `lacp_system_id` is given: the control thread then uses the first
    /// member's MAC.
    pub fn lacp_settings(&self) -> Result<Option<crate::lacp_ctl::LacpSettings>, ConfigError> {
        use policy::lacp::{Fallback, LacpMode, LacpRate};
        let what = |e: String| ConfigError::Invalid(format!("bond '{}': {e}", self.name));
        let mode: LacpMode = self
            .lacp
            .parse()
            .map_err(|e: policy::lacp::ParseSettingError| what(e.to_string()))?;
        if mode == LacpMode::Off {
            return Ok(None);
        }
        let rate: LacpRate = self
            .lacp_rate
            .parse()
            .map_err(|e: policy::lacp::ParseSettingError| what(e.to_string()))?;
        let fallback: Fallback = self
            .lacp_fallback
            .parse()
            .map_err(|e: policy::lacp::ParseSettingError| what(e.to_string()))?;
        if !self.lacp_port_priorities.is_empty()
            && self.lacp_port_priorities.len() != self.members.len()
        {
            return Err(what(format!(
                "lacp_port_priorities has {} entries for {} members",
                self.lacp_port_priorities.len(),
                self.members.len()
            )));
        }
        let system_id = match &self.lacp_system_id {
            None => None,
            Some(s) => {
                let mac: MacAddr = s
                    .parse()
                    .map_err(|e| what(format!("lacp_system_id: {e}")))?;
                if !mac.is_unicast() {
                    return Err(what(format!(
                        "lacp_system_id {mac} is not a unicast address"
                    )));
                }
                Some(mac)
            }
        };
        Ok(Some(crate::lacp_ctl::LacpSettings {
            mode,
            rate,
            fallback,
            system_priority: self
                .lacp_system_priority
                .unwrap_or(policy::lacp::DEFAULT_PRIORITY),
            key: self.lacp_key.unwrap_or(1),
            port_priorities: self.lacp_port_priorities.clone(),
            system_id,
        }))
    }

    /// The teaming logic's configuration for this bond (names resolved to member
    /// indices, strings parsed), or the reason it is invalid.
    pub fn policy(&self) -> Result<policy::bond::BondConfig, ConfigError> {
        use policy::time::MS;
        let what = |e: String| ConfigError::Invalid(format!("bond '{}': {e}", self.name));
        let idx = |n: &str| self.members.iter().position(|m| m == n);
        let mut c = policy::bond::BondConfig {
            mode: self
                .mode
                .parse()
                .map_err(|e: policy::bond::ParseNameError| what(e.to_string()))?,
            failback: self
                .failback
                .parse()
                .map_err(|e: policy::bond::ParseNameError| what(e.to_string()))?,
            updelay: self.updelay_ms.saturating_mul(MS),
            downdelay: self.downdelay_ms.saturating_mul(MS),
            notify_switches: self.notify_switches,
            active_order: self.active_order.iter().filter_map(|n| idx(n)).collect(),
            lacp: self.lacp != "off",
            ..Default::default()
        };
        if self.failback_delay_ms > 0 {
            c.failback_delay = self.failback_delay_ms.saturating_mul(MS);
        }
        if let Some(p) = self.isolate_priority_max {
            c.isolate_priority_max = p;
        }
        if let Some(m) = &self.isolated_member {
            c.isolated_member =
                idx(m).ok_or_else(|| what(format!("isolated_member '{m}' is not a member")))?;
        }
        if let Some(t) = self.rebalance_threshold_pct {
            c.rebalance_threshold_pct = t;
        }
        if let Some(w) = self.rebalance_window_s {
            c.rebalance_window = w.saturating_mul(policy::time::SEC);
        }
        c.validate(self.members.len())
            .map_err(|e| what(e.to_string()))?;
        for (key, val, ok) in [
            ("lacp", &self.lacp, ["off", "active", "passive"].as_slice()),
            ("lacp_rate", &self.lacp_rate, &["fast", "slow"]),
            (
                "lacp_fallback",
                &self.lacp_fallback,
                &["active-backup", "none"],
            ),
            (
                "degraded",
                &self.degraded,
                &["drop-lower-priority", "proportional"],
            ),
        ] {
            if !ok.contains(&val.as_str()) {
                return Err(what(format!(
                    "{key} = '{val}' must be one of {}",
                    ok.join(", ")
                )));
            }
        }
        Ok(c)
    }
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| error_line(text, s.start, e.message()))
                .unwrap_or(0);
            ConfigError::Parse {
                path: origin.to_string(),
                line,
                message: e.message().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The name of vNIC `j` of `vm`.
    pub fn vnic_name(vm: &VmConfig, j: usize) -> String {
        vm.vnic[j]
            .name
            .clone()
            .unwrap_or_else(|| format!("{}.{}", vm.name, j))
    }

    /// Resolves an uplink name.
    pub fn uplink(&self, name: &str) -> Option<UplinkRef> {
        if let Some(i) = self.bond.iter().position(|b| b.name == name) {
            return Some(UplinkRef::Bond(i));
        }
        self.nic
            .iter()
            .position(|n| n.name == name)
            .map(UplinkRef::Nic)
    }

    /// The bond a NIC belongs to, if any.
    pub fn bond_of_nic(&self, nic: &str) -> Option<&BondConfigFile> {
        self.bond
            .iter()
            .find(|b| b.members.iter().any(|m| m == nic))
    }

    /// Checks every rule; the message names the offending entry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.dataplane.cores.is_empty() {
            return bad(
                "[dataplane] cores is empty: give at least one worker core, e.g. cores = [1]"
                    .into(),
            );
        }
        let mut seen_cores = HashSet::new();
        for c in &self.dataplane.cores {
            if !seen_cores.insert(c) {
                return bad(format!("[dataplane] core {c} is listed twice"));
            }
        }
        if self.dataplane.mbufs < 1024 {
            return bad(format!(
                "[dataplane] mbufs = {} is too small (at least 1024)",
                self.dataplane.mbufs
            ));
        }
        if self.dataplane.pmd_sleep_max_us > PMD_SLEEP_MAX_US {
            return bad(format!(
                "[dataplane] pmd_sleep_max_us = {} is too long (at most {PMD_SLEEP_MAX_US}; 0 busy-polls)",
                self.dataplane.pmd_sleep_max_us
            ));
        }
        let d = &self.dataplane;
        for (key, value, max) in [
            ("link_poll_ms", d.link_poll_ms, MAX_LINK_POLL_MS),
            (
                "allocation_interval_us",
                d.allocation_interval_us,
                MAX_INTERVAL_US,
            ),
            ("max_queue_delay_us", d.max_queue_delay_us, MAX_INTERVAL_US),
        ] {
            if value > max {
                return bad(format!(
                    "[dataplane] {key} = {value} is too long (at most {max})"
                ));
            }
        }
        if let Some(m) = &self.control.metrics {
            if m.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!(
                    "[control] metrics = '{m}' is not an address like 127.0.0.1:9469"
                ));
            }
        }
        let mut names: HashMap<&str, &str> = HashMap::new();
        for n in &self.nic {
            if n.name.is_empty() {
                return bad("a [[nic]] has an empty name".into());
            }
            if let Some(prev) = names.insert(&n.name, "nic") {
                return bad(format!(
                    "nic '{}': the name is already used by a {prev}",
                    n.name
                ));
            }
            if n.devargs.trim().is_empty() {
                return bad(format!("nic '{}': devargs is empty", n.name));
            }
            if n.speed_mbps == Some(0) {
                return bad(format!(
                    "nic '{}': speed_mbps = 0 would give it no capacity; leave it out to use the PMD's speed",
                    n.name
                ));
            }
            check_mtu(&format!("nic '{}'", n.name), n.mtu)?;
        }
        let mut bonded: HashMap<&str, &str> = HashMap::new();
        for b in &self.bond {
            if let Some(prev) = names.insert(&b.name, "bond") {
                return bad(format!(
                    "bond '{}': the name is already used by a {prev}",
                    b.name
                ));
            }
            if b.members.is_empty() {
                return bad(format!("bond '{}': it has no members", b.name));
            }
            for m in &b.members {
                if !self.nic.iter().any(|n| &n.name == m) {
                    return bad(format!(
                        "bond '{}': member '{m}' is not a configured [[nic]]",
                        b.name
                    ));
                }
                if let Some(other) = bonded.insert(m, &b.name) {
                    return bad(format!(
                        "bond '{}': nic '{m}' is already a member of bond '{other}'; a NIC belongs to at most one bond ([0060])",
                        b.name
                    ));
                }
            }
            for m in &b.active_order {
                if !b.members.contains(m) {
                    return bad(format!(
                        "bond '{}': active_order names '{m}', which is not a member",
                        b.name
                    ));
                }
            }
            if let Some(m) = &b.isolated_member {
                if !b.members.contains(m) {
                    return bad(format!(
                        "bond '{}': isolated_member '{m}' is not a member",
                        b.name
                    ));
                }
            }
            if b.members.len() > policy::bond::MAX_MEMBERS {
                return bad(format!(
                    "bond '{}': at most {} members",
                    b.name,
                    policy::bond::MAX_MEMBERS
                ));
            }
            b.policy()?;
            b.lacp_settings()?;
            let acts_on_starved = if b.suspend_starved_vms {
                Some("suspend_starved_vms")
            } else if b.migrate_after_s.is_some() {
                Some("migrate_after_s")
            } else {
                None
            };
            if let (Some(key), "proportional") = (acts_on_starved, b.degraded.as_str()) {
                return bad(format!(
                    "bond '{}': {key} acts on VMs starved by the degraded-bond rule, which \
                     degraded = \"proportional\" never starves; use degraded = \"drop-lower-priority\" \
                     or remove {key}",
                    b.name
                ));
            }
        }
        let mut macs: HashMap<MacAddr, String> = HashMap::new();
        let mut sockets: HashSet<&str> = HashSet::new();
        // vNIC names (given, or `<vm>.<index>`) name ports in status, counters and
        // vsctl, and key the switch's per-vNIC slots: one name, one vNIC.
        let mut vnic_names: HashSet<String> = HashSet::new();
        for vm in &self.vm {
            if let Some(prev) = names.insert(&vm.name, "vm") {
                return bad(format!(
                    "vm '{}': the name is already used by a {prev}",
                    vm.name
                ));
            }
            if vm.priority > 10 {
                return bad(format!(
                    "vm '{}': priority {} is out of range 0-10",
                    vm.name, vm.priority
                ));
            }
            if vm.suspend_when_starved == Some(true) && vm.qmp.is_none() && vm.hook.is_none() {
                return bad(format!(
                    "vm '{}': suspend_when_starved needs a qmp socket or a hook to suspend with",
                    vm.name
                ));
            }
            if vm.suspend_when_starved.is_none() && vm.qmp.is_none() && vm.hook.is_none() {
                let inherits = vm.vnic.iter().find_map(|v| {
                    self.bond
                        .iter()
                        .find(|b| b.name == v.uplink && b.suspend_starved_vms)
                });
                if let Some(b) = inherits {
                    return bad(format!(
                        "vm '{}': bond '{}' has suspend_starved_vms = true, which applies to this VM \
                         (it sets no suspend_when_starved of its own), but the VM has no qmp socket \
                         or hook to suspend with; give it one, or set suspend_when_starved = false",
                        vm.name, b.name
                    ));
                }
            }
            if vm.dos_window_ms == Some(0) {
                return bad(format!(
                    "vm '{}': dos_window_ms must be at least 1",
                    vm.name
                ));
            }
            let dos = vm
                .dos_config()
                .map_err(|e| ConfigError::Invalid(format!("vm '{}': {e}", vm.name)))?;
            vm.dos_signature_set()
                .map_err(|e| ConfigError::Invalid(format!("vm '{}': {e}", vm.name)))?;
            for r in &dos.responses {
                if let policy::dos::DosResponse::FailoverUplink(b) = r {
                    if self.uplink(b).is_none() {
                        return bad(format!(
                            "vm '{}': dos response failover:{b} names no bond or nic",
                            vm.name
                        ));
                    }
                    if let Some(bond) = bonded.get(b.as_str()) {
                        return bad(format!(
                            "vm '{}': dos response failover:{b} names a member of bond '{bond}'; a failover goes to a bond or an unbonded nic",
                            vm.name
                        ));
                    }
                }
            }
            for (j, v) in vm.vnic.iter().enumerate() {
                let vname = Config::vnic_name(vm, j);
                let what = format!("vm '{}' vnic '{vname}'", vm.name);
                if !vnic_names.insert(vname.clone()) {
                    return bad(format!("{what}: another vnic has this name"));
                }
                let mac: MacAddr = v
                    .mac
                    .parse()
                    .map_err(|e| ConfigError::Invalid(format!("{what}: {e}")))?;
                if !mac.is_unicast() {
                    return bad(format!("{what}: mac {mac} is not a unicast address"));
                }
                if let Some(other) = macs.insert(mac, vname.clone()) {
                    return bad(format!(
                        "{what}: mac {mac} is already used by vnic '{other}'"
                    ));
                }
                match (&v.socket, &v.devargs) {
                    (Some(_), Some(_)) => {
                        return bad(format!("{what}: give either socket or devargs, not both"))
                    }
                    (None, None) => {
                        return bad(format!("{what}: give a vhost-user socket or a devargs"))
                    }
                    _ => {}
                }
                if let Some(s) = &v.socket {
                    if !sockets.insert(s) {
                        return bad(format!("{what}: socket {s} is used by another vnic"));
                    }
                }
                if v.vhost_mode != "server" && v.vhost_mode != "client" {
                    return bad(format!(
                        "{what}: vhost_mode '{}' must be 'server' or 'client'",
                        v.vhost_mode
                    ));
                }
                if v.priority.is_some_and(|p| p > 10) {
                    return bad(format!("{what}: priority out of range 0-10"));
                }
                check_mtu(&what, v.mtu)?;
                if v.average_bps.is_none()
                    && (v.peak_bps.is_some()
                        || v.burst_bytes.is_some()
                        || v.peak_period_ms.is_some())
                {
                    return bad(format!(
                        "{what}: peak_bps, burst_bytes and peak_period_ms need average_bps"
                    ));
                }
                if v.average_bps == Some(0) {
                    return bad(format!("{what}: average_bps must be greater than 0"));
                }
                if let (Some(a), Some(p)) = (v.average_bps, v.peak_bps) {
                    if p < a {
                        return bad(format!("{what}: peak_bps {p} is below average_bps {a}"));
                    }
                }
                match self.uplink(&v.uplink) {
                    None => {
                        return bad(format!(
                            "{what}: uplink '{}' is neither a bond nor a nic",
                            v.uplink
                        ))
                    }
                    Some(UplinkRef::Nic(_)) => {
                        if let Some(b) = self.bond_of_nic(&v.uplink) {
                            return bad(format!(
                                "{what}: uplink '{}' is a member of bond '{}'; assign the vNIC to the bond instead ([0060])",
                                v.uplink, b.name
                            ));
                        }
                    }
                    Some(UplinkRef::Bond(_)) => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[dataplane]
cores = [1]
[[nic]]
name = "nic0"
devargs = "net_null0"
[[nic]]
name = "nic1"
devargs = "net_null1"
[[nic]]
name = "nic2"
devargs = "net_null2"
[[bond]]
name = "bond0"
members = ["nic0", "nic1"]
[[vm]]
name = "vm1"
priority = 5
  [[vm.vnic]]
  socket = "/tmp/vm1.sock"
  mac = "02:00:00:00:00:01"
  uplink = "bond0"
  [[vm.vnic]]
  socket = "/tmp/vm1b.sock"
  mac = "02:00:00:00:00:03"
  uplink = "nic2"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.eal.args, default_eal_args());
        assert_eq!(c.bond[0].mode, "active-backup");
        assert_eq!(c.vm[0].vnic.len(), 2);
        assert_eq!(Config::vnic_name(&c.vm[0], 1), "vm1.1");
        assert_eq!(c.uplink("nic2"), Some(UplinkRef::Nic(2)));
    }

    #[test]
    fn vm_action_and_dos_keys_parse_and_validate() {
        let with =
            |extra: &str| GOOD.replace("priority = 5\n", &format!("priority = 5\n{extra}\n"));
        let c = Config::parse(
            &with(
                r#"qmp = "/run/vm1.qmp"
suspend_when_starved = true
starve_grace_ms = 200
migrate_after_s = 30
dos_max_pps = 10000
dos_max_half_open_per_sec = 500
dos_window_ms = 20
dos_responses = ["drop", "rate-limit:1000", "delay:50ms", "alert", "failover:nic2"]
dos_signatures = ["dns proto=udp dport=53 payload@0=abcd"]"#,
            ),
            "t.toml",
        )
        .unwrap();
        c.validate().unwrap();
        let vm = &c.vm[0];
        assert!(vm.dos_enabled() && vm.alert.is_none() && !vm.suspend_for_dos);
        assert_eq!(vm.suspend_when_starved, Some(true));
        let d = vm.dos_config().unwrap();
        assert_eq!((d.max_pps, d.window), (Some(10000), 20 * policy::time::MS));
        assert_eq!(d.responses.len(), 5);
        assert_eq!(d.delay_policy().unwrap().hold, 50 * policy::time::MS);
        assert_eq!(vm.dos_signature_set().unwrap().len(), 1);
        assert!(!Config::parse(GOOD, "t.toml").unwrap().vm[0].dos_enabled());

        let invalid = |extra: &str| err(&with(extra));
        assert!(invalid("suspend_when_starved = true").contains("needs a qmp socket or a hook"));
        assert!(invalid(r#"dos_responses = ["explode"]"#).contains("invalid DoS response"));
        assert!(invalid(r#"dos_responses = ["failover:nope"]"#).contains("names no bond or nic"));
        assert!(invalid(r#"dos_signatures = ["x dport=9-1"]"#).contains("port range"));
        assert!(invalid(r#"dos_signatures = ["x payload@0=zz"]"#).contains("invalid signature"));
        assert!(invalid("dos_window_ms = 0").contains("dos_window_ms"));
        assert!(invalid(r#"dos_responses = ["failover:nic0"]"#).contains("member of bond 'bond0'"));
        let zero_speed = GOOD.replacen(
            "devargs = \"net_null0\"",
            "devargs = \"net_null0\"\nspeed_mbps = 0",
            1,
        );
        assert!(err(&zero_speed).contains("speed_mbps = 0"));
        for key in [
            "link_poll_ms = 10001",
            "allocation_interval_us = 10000001",
            "max_queue_delay_us = 18446744073709552",
        ] {
            let c = GOOD.replacen("cores = [1]", &format!("cores = [1]\n{key}"), 1);
            assert!(err(&c).contains("is too long"), "{key}: {}", err(&c));
        }
        assert!(err(&with("dos_max_ppps = 3")).contains("unknown field `dos_max_ppps`"));
    }

    /// Durations in ms or s as large as TOML allows become the longest delay there is,
    /// not a short one: in 64-bit nanoseconds they overflow, and once wrapped.
    #[test]
    fn huge_durations_saturate_instead_of_wrapping() {
        let max = i64::MAX;
        let bond = "members = [\"nic0\", \"nic1\"]";
        let cfg = Config::parse(
            &GOOD.replace(
                bond,
                &format!(
                    "{bond}\nupdelay_ms = {max}\ndowndelay_ms = {max}\nfailback_delay_ms = {max}\nrebalance_window_s = {max}"
                ),
            ),
            "t.toml",
        )
        .unwrap();
        let b = cfg.bond[0].policy().unwrap();
        assert_eq!(
            (b.updelay, b.downdelay, b.failback_delay, b.rebalance_window),
            (u64::MAX, u64::MAX, u64::MAX, u64::MAX)
        );
        let vm = "name = \"vm1\"";
        let cfg = Config::parse(
            &GOOD.replacen(
                vm,
                &format!("{vm}\ndos_window_ms = {max}\ndos_clear_after_ms = {max}"),
                1,
            ),
            "t.toml",
        )
        .unwrap();
        let d = cfg.vm[0].dos_config().unwrap();
        assert_eq!((d.window, d.clear_after), (u64::MAX, u64::MAX));
    }

    #[test]
    fn bond_vm_action_keys_parse_and_validate() {
        let bond = "members = [\"nic0\", \"nic1\"]";
        let with_bond = |extra: &str| GOOD.replace(bond, &format!("{bond}\n{extra}"));
        let with_both = |b: &str, vm: &str| {
            with_bond(b).replace("priority = 5\n", &format!("priority = 5\n{vm}\n"))
        };
        let d = Config::parse(GOOD, "t.toml").unwrap();
        let b = &d.bond[0];
        assert!(!b.suspend_starved_vms && b.alert && b.migrate_after_s.is_none());
        assert_eq!(d.vm[0].suspend_when_starved, None, "unset on the VM");

        let keys = "suspend_starved_vms = true\nstarve_grace_ms = 300\nmigrate_after_s = 60\nalert = false";
        let c = Config::parse(&with_both(keys, "hook = \"true\""), "t.toml").unwrap();
        let b = &c.bond[0];
        assert!(b.suspend_starved_vms && !b.alert);
        assert_eq!(
            (b.starve_grace_ms, b.migrate_after_s),
            (Some(300), Some(60))
        );

        // vm1 uses bond0 and would inherit suspension without a way to suspend.
        let e = err(&with_bond("suspend_starved_vms = true"));
        assert!(
            e.contains("vm 'vm1'")
                && e.contains("bond 'bond0' has suspend_starved_vms = true")
                && e.contains("suspend_when_starved = false"),
            "{e}"
        );
        // Opting out on the VM, or giving it a QMP socket, makes it valid.
        Config::parse(
            &with_both("suspend_starved_vms = true", "suspend_when_starved = false"),
            "t.toml",
        )
        .unwrap();
        Config::parse(
            &with_both("suspend_starved_vms = true", "qmp = \"/run/vm1.qmp\""),
            "t.toml",
        )
        .unwrap();
        // Proportional bonds never starve anyone.
        for key in ["suspend_starved_vms = true", "migrate_after_s = 5"] {
            let e = err(&with_both(
                &format!("{key}\ndegraded = \"proportional\""),
                "hook = \"true\"",
            ));
            assert!(
                e.contains("bond 'bond0'") && e.contains("never starves"),
                "{e}"
            );
        }
        assert!(err(&with_bond("suspend_starved = true")).contains("unknown field"));
    }

    #[test]
    fn lacp_settings_parse_and_validate() {
        let bond = "members = [\"nic0\", \"nic1\"]";
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.bond[0].lacp_settings().unwrap(), None, "lacp = off");
        let t = GOOD.replace(
            bond,
            &format!("{bond}\nlacp = \"passive\"\nlacp_rate = \"slow\"\nlacp_fallback = \"active-backup\"\nlacp_key = 7\nlacp_system_priority = 100\nlacp_port_priorities = [1, 2]\nlacp_system_id = \"02:00:00:00:00:aa\""),
        );
        let s = Config::parse(&t, "t.toml").unwrap().bond[0]
            .lacp_settings()
            .unwrap()
            .unwrap();
        assert_eq!(s.mode, policy::lacp::LacpMode::Passive);
        assert_eq!(s.rate, policy::lacp::LacpRate::Slow);
        assert_eq!(s.fallback, policy::lacp::Fallback::ActiveBackup);
        assert_eq!((s.key, s.system_priority), (7, 100));
        assert_eq!(s.port_priorities, vec![1, 2]);
        let cfg = s.config(MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            cfg.system_id,
            MacAddr([2, 0, 0, 0, 0, 0xaa]),
            "configured ID wins"
        );
        let e = err(&GOOD.replace(
            bond,
            &format!("{bond}\nlacp = \"active\"\nlacp_port_priorities = [1]"),
        ));
        assert!(
            e.contains("lacp_port_priorities has 1 entries for 2 members"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            bond,
            &format!("{bond}\nlacp = \"active\"\nlacp_system_id = \"01:00:00:00:00:01\""),
        ));
        assert!(e.contains("not a unicast"), "{e}");
    }

    #[test]
    fn vnic_on_bonded_nic_is_refused() {
        let e = err(&GOOD.replace("uplink = \"nic2\"", "uplink = \"nic1\""));
        assert!(
            e.contains("vnic 'vm1.1'") && e.contains("member of bond 'bond0'"),
            "{e}"
        );
    }

    #[test]
    fn nic_in_two_bonds_is_refused() {
        let t = format!("{GOOD}\n[[bond]]\nname = \"bond1\"\nmembers = [\"nic1\"]\n");
        let e = err(&t);
        assert!(
            e.contains("bond 'bond1'") && e.contains("already a member of bond 'bond0'"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_reports_line() {
        let t = GOOD.replace("priority = 5", "priorty = 5");
        match Config::parse(&t, "t.toml").unwrap_err() {
            ConfigError::Parse { line, message, .. } => {
                assert!(message.contains("priorty"), "{message}");
                let expect = t.lines().position(|l| l.contains("priorty")).unwrap() + 1;
                assert_eq!(line, expect);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn bad_mac_and_duplicates() {
        // A given name equal to another vNIC's positional one.
        let e = err(&GOOD.replace(
            "socket = \"/tmp/vm1b.sock\"",
            "socket = \"/tmp/vm1b.sock\"\n  name = \"vm1.0\"",
        ));
        assert!(
            e.contains("vnic 'vm1.0': another vnic has this name"),
            "{e}"
        );
        assert!(err(&GOOD.replace("02:00:00:00:00:03", "02:00:00:00:00")).contains("invalid MAC"));
        assert!(err(&GOOD.replace("02:00:00:00:00:03", "02:00:00:00:00:01"))
            .contains("already used by vnic 'vm1.0'"));
        assert!(
            err(&GOOD.replace("02:00:00:00:00:03", "01:00:5e:00:00:01")).contains("not a unicast")
        );
        assert!(err(&GOOD.replace("uplink = \"nic2\"", "uplink = \"nope\""))
            .contains("neither a bond nor a nic"));
        assert!(err(&GOOD.replace(
            "members = [\"nic0\", \"nic1\"]",
            "members = [\"nic0\", \"nicX\"]"
        ))
        .contains("'nicX' is not a configured"));
        assert!(err(&GOOD.replace("cores = [1]", "cores = []")).contains("cores is empty"));
        let e = err(&GOOD.replace(
            "members = [\"nic0\", \"nic1\"]",
            "members = [\"nic0\", \"nic1\"]\nmode = \"fastest\"",
        ));
        assert!(
            e.contains("bond 'bond0'") && e.contains("unknown bond mode"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "members = [\"nic0\", \"nic1\"]",
            "members = [\"nic0\", \"nic1\"]\nlacp = \"on\"",
        ));
        assert!(
            e.contains("lacp = 'on' must be one of off, active, passive"),
            "{e}"
        );
        assert!(err(&GOOD.replace("name = \"nic2\"", "name = \"nic1\""))
            .contains("already used by a nic"));
    }
}
