//! NIC teaming: member states, failure detection, failover/failback and load distribution.
//!
//! A *bond* teams up to [`MAX_MEMBERS`] physical NICs ("members", identified by their
//! index in configuration order) behind the vNICs of the VMs assigned to it
//! (\[0059\]–\[0061\]). This module decides, without touching a NIC or a clock:
//!
//! - **whether each member may carry traffic** (\[0065\], \[0085\], \[0101\]–\[0104\]): link state
//!   (polled about every 10 ms by the control thread and/or delivered as events) damped
//!   by `updelay`/`downdelay` as Linux bonding and Open vSwitch do; temporary
//!   unavailability for lack of tx resources (a member whose tx keeps returning short is
//!   taken out for [`BondConfig::tx_stall_holddown`] and then simply retried, with the
//!   hold-down doubling — up to 8× — while it keeps stalling); the LACP module's verdict
//!   ([`Bond::set_lacp`]); and the administrator ([`Bond::set_admin`]). A link failure is
//!   re-checked on its own slower schedule ([`BondConfig::link_recheck_interval`], reported
//!   by [`Bond::tick`]), a tx-resource shortage after every hold-down, as \[0103\] suggests
//!   (frequent re-checks for temporary limitations, rarer ones for hard failures);
//! - **failover and failback** (\[0065\], \[0102\]–\[0104\], claims 10, 38): a member that
//!   recovers from a link or LACP failure is readmitted according to the [`Failback`]
//!   policy — at once, after it has been up for [`BondConfig::failback_delay`], or on
//!   [`Bond::manual_failback`]. Until then it is [`MemberState::AwaitingFailback`]; it is
//!   readmitted anyway as soon as another member fails (link, LACP or admin — a
//!   tx-resource stall does not count) or no other member is usable (as
//!   vSphere's "failback: no" keeps a recovered NIC in reserve until it is needed).
//!   Recovery from a tx-resource stall, from admin-down or a first link-up never waits for
//!   failback. With `notify_switches`, every vNIC MAC whose transmitting member changed in
//!   a mode that pins MACs to members is reported as [`BondEvent::MacMoved`], so the data
//!   plane sends a gratuitous RARP through the new member;
//! - **which member each outgoing frame takes** (\[0066\]–\[0069\], \[0082\], \[0109\], \[0121\],
//!   claims 5–9, 30–39): see the table below.
//!
//! | [`Mode`] (name) | Specification | Open vSwitch | vSphere teaming policy | Linux bonding |
//! |---|---|---|---|---|
//! | `active-backup` | \[0065\], claim 38 | `bond_mode=active-backup` | "Use explicit failover order" | `mode=active-backup` (1) |
//! | `round-robin` | \[0066\], claim 33 | — | — | `mode=balance-rr` (0) |
//! | `least-pending` | \[0066\], \[0109\], \[0121\], claims 6, 34 | — | — | — (nearest: `balance-tlb`) |
//! | `hash-l2-dst` … `hash-l3l4` | \[0067\], \[0069\] | `balance-slb` ≈ `hash-l2-src`, `balance-tcp` = `hash-l3l4` | "Route based on IP hash" ≈ `hash-l3-src-dst` | `balance-xor`/`802.3ad` with `xmit_hash_policy=layer2` ≈ `hash-l2-src-dst`, `layer3+4` ≈ `hash-l3l4` |
//! | `ip-hash-else-round-robin` | \[0068\] | — | — | — |
//! | `vm-pinned` | \[0082\], claims 8, 9, 30 | — (nearest: `balance-slb` without rebalancing) | "Route based on originating virtual port" | — |
//! | `priority-aware` | \[0121\], claim 26 | — | — | — |
//! | `load-based` | \[0082\] + \[0066\] | `balance-slb` with `bond-rebalance-interval` | "Route based on physical NIC load" (75 % over 30 s) | — (nearest: `balance-tlb`) |
//!
//! Notes on the modes:
//! - *round-robin* sends consecutive frames on consecutive usable members: it reorders
//!   frames **within** a flow (TCP sees this as loss signals) and makes one MAC appear on
//!   several members, so it needs a static LAG or LACP on the switch;
//! - *hash* modes keep every frame of a flow on one member (\[0069\]): the hash selects one
//!   of 256 buckets, each bucket belongs to one member; when a member leaves, only its
//!   buckets are redistributed (evenly) over the survivors and flows on surviving members
//!   do not move. Non-IP frames under an L3 hash use the matching L2 hash. Hash modes,
//!   like least-pending and priority-aware, spread one MAC over several members and so
//!   need a LAG (static or LACP) on the switch; no `MacMoved` is reported for them;
//! - *vm-pinned* gives each vNIC a *home* member, homes spread evenly over the bond's
//!   members (fewest homes first, lowest index on ties). Frames leave on the home while it
//!   is usable; while it is not, the vNIC moves to the usable member carrying the fewest
//!   vNICs (crosswise failover, claim 8) and stays there until its home is readmitted;
//! - *priority-aware*: vNICs with priority `<= isolate_priority_max` leave on
//!   `isolated_member` (or, while it is unusable, on the next usable member after it);
//!   higher-priority vNICs use the usable member with the least pending bytes;
//! - *load-based* is vm-pinned plus a rebalancer: [`Bond::report_load`] receives measured
//!   per-member rates; when a member's utilisation stays above
//!   `rebalance_threshold_pct` for `rebalance_window`, homes are moved off it to the member
//!   with the most headroom, choosing the vNICs so that as few as possible move (the
//!   smallest single vNIC that removes the excess, else the largest that fits, repeated).
//!
//! # Threads and invariants
//! - [`Bond`] is owned by the control thread; every method takes `&mut self` and the
//!   current time. After every change it rebuilds a [`Distribution`] — an immutable
//!   value (`Clone + Send + Sync`) that the control thread publishes to the workers (e.g.
//!   behind an `ArcSwap` or with a sequence number, as OVS's PMD threads reload). Workers
//!   call [`Distribution::select`] and [`Distribution::accepts_rx`] with their own
//!   [`SelectCtx`]; these never allocate, never panic and never return a member outside
//!   [`Distribution::usable_mask`].
//! - A member is *usable* exactly when its [`MemberState`] is `Up` or `DownDelay`.
//!   `select` returns `None` exactly when no member is usable.
//! - Events ([`BondEvent`]) are queued in order and drained by the control thread.
//! - Nothing here reads a clock: deadlines are compared with the `now` passed in, and
//!   [`Bond::tick`] says when the next deadline falls.

mod distribution;
#[cfg(test)]
mod tests;

pub use distribution::{
    bucket_of, hash_flow, hash_l3l4_words, l3l4_words, BurstPick, Distribution, FlowFields,
    SelectCtx, HASH_BUCKETS,
};
use distribution::{SLOT_FLOAT, SLOT_UNKNOWN};

use crate::time::{Nanos, MS, SEC};
use crate::wire::MacAddr;
use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

/// Most members a bond may have (the usable set is a `u16` bit mask).
pub const MAX_MEMBERS: usize = 16;
/// Highest vNIC priority (priorities are 0..=10, higher is more important).
pub const MAX_PRIORITY: u8 = 10;
/// vNIC slots must be below this (slots index a dense table in every [`Distribution`]).
pub const MAX_VNIC_SLOTS: u32 = 1 << 16;
/// A member that keeps stalling has its hold-down doubled up to `2^MAX_STALL_BACKOFF` times.
pub const MAX_STALL_BACKOFF: u8 = 3;

/// Which header fields a hash distribution hashes (\[0067\], \[0069\]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HashFields {
    /// Destination MAC (and VLAN).
    L2Dst,
    /// Source MAC (and VLAN) — Open vSwitch `balance-slb`.
    L2Src,
    /// Source and destination MAC (and VLAN) — Linux `xmit_hash_policy=layer2`.
    L2SrcDst,
    /// Destination IP address; L2 destination for non-IP frames.
    L3Dst,
    /// Source IP address; L2 source for non-IP frames.
    L3Src,
    /// Source and destination IP; L2 source+destination for non-IP frames.
    L3SrcDst,
    /// IP addresses, protocol and L4 ports, so a TCP session stays on one NIC (\[0069\]) —
    /// Open vSwitch `balance-tcp`, Linux `layer3+4`.
    L3L4,
}

impl HashFields {
    /// Every variant, for iteration in tests and help texts.
    pub const ALL: [HashFields; 7] = [
        HashFields::L2Dst,
        HashFields::L2Src,
        HashFields::L2SrcDst,
        HashFields::L3Dst,
        HashFields::L3Src,
        HashFields::L3SrcDst,
        HashFields::L3L4,
    ];

    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            HashFields::L2Dst => "l2-dst",
            HashFields::L2Src => "l2-src",
            HashFields::L2SrcDst => "l2-src-dst",
            HashFields::L3Dst => "l3-dst",
            HashFields::L3Src => "l3-src",
            HashFields::L3SrcDst => "l3-src-dst",
            HashFields::L3L4 => "l3l4",
        }
    }
}

/// How a bond distributes outgoing frames over its usable members. See the module
/// documentation for the table of specification paragraphs and operator names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Mode {
    /// One active member (first usable in failover order); the others stand by.
    ActiveBackup,
    /// Consecutive frames on consecutive usable members; reorders within a flow.
    RoundRobin,
    /// The usable member with the least data pending for transmission.
    LeastPending,
    /// A hash of the given fields picks the member; stable per flow.
    Hash(HashFields),
    /// IP frames by L3 destination hash, other frames round-robin (\[0068\]).
    IpHashElseRoundRobin,
    /// Each vNIC leaves on its home member while it is usable (\[0082\]).
    VmPinned,
    /// Low-priority vNICs isolated to one member, others least-pending (\[0121\]).
    PriorityAware,
    /// vm-pinned plus utilisation-driven rebalancing of homes.
    LoadBased,
}

impl Mode {
    /// True for modes where each vNIC MAC is transmitted on one member at a time, so a
    /// change of that member is announced with [`BondEvent::MacMoved`].
    pub fn pins_macs(self) -> bool {
        matches!(
            self,
            Mode::ActiveBackup | Mode::VmPinned | Mode::LoadBased | Mode::PriorityAware
        )
    }
}

/// When a member that recovered from a failure carries traffic again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Failback {
    /// As soon as it is up (after `updelay`).
    #[default]
    Immediate,
    /// After it has stayed up for [`BondConfig::failback_delay`].
    Delayed,
    /// Only on [`Bond::manual_failback`] (or when another member fails).
    Manual,
}

/// A mode, hash or failback name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}; expected one of: {expected}")]
pub struct ParseNameError {
    /// What was being parsed ("bond mode", "hash fields", "failback policy").
    pub kind: &'static str,
    /// The refused input.
    pub name: String,
    /// The accepted names.
    pub expected: &'static str,
}

fn normalize(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('_', "-")
}

impl fmt::Display for HashFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashFields {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = normalize(s);
        let n = n.as_str();
        if let Some(h) = HashFields::ALL.iter().find(|h| h.name() == n) {
            return Ok(*h);
        }
        match n {
            "l2-dst-src" | "layer2" => Ok(HashFields::L2SrcDst),
            "l3-dst-src" => Ok(HashFields::L3SrcDst),
            "l3-l4" | "l34" | "layer3+4" | "5-tuple" => Ok(HashFields::L3L4),
            _ => Err(ParseNameError {
                kind: "hash fields",
                name: s.to_string(),
                expected: "l2-dst, l2-src, l2-src-dst, l3-dst, l3-src, l3-src-dst, l3l4",
            }),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::ActiveBackup => f.write_str("active-backup"),
            Mode::RoundRobin => f.write_str("round-robin"),
            Mode::LeastPending => f.write_str("least-pending"),
            Mode::Hash(h) => write!(f, "hash-{h}"),
            Mode::IpHashElseRoundRobin => f.write_str("ip-hash-else-round-robin"),
            Mode::VmPinned => f.write_str("vm-pinned"),
            Mode::PriorityAware => f.write_str("priority-aware"),
            Mode::LoadBased => f.write_str("load-based"),
        }
    }
}

impl FromStr for Mode {
    type Err = ParseNameError;
    /// Accepts the names [`Display`](fmt::Display) prints plus the aliases operators know:
    /// `balance-rr`, `balance-tcp` (= `hash-l3l4`), `balance-slb` (= `hash-l2-src`),
    /// `balance-xor` (= `hash-l2-src-dst`), `ip-hash` (= `hash-l3-src-dst`),
    /// `explicit-failover`, `originating-port`, `physical-nic-load`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = normalize(s);
        let err = || ParseNameError {
            kind: "bond mode",
            name: s.to_string(),
            expected: "active-backup, round-robin, least-pending, hash-l2-dst, hash-l2-src, \
                       hash-l2-src-dst, hash-l3-dst, hash-l3-src, hash-l3-src-dst, hash-l3l4, \
                       ip-hash-else-round-robin, vm-pinned, priority-aware, load-based \
                       (aliases: balance-rr, balance-tcp, balance-slb, balance-xor, ip-hash, \
                       explicit-failover, originating-port, physical-nic-load)",
        };
        Ok(match n.as_str() {
            "active-backup" | "explicit-failover" | "failover-order" => Mode::ActiveBackup,
            "round-robin" | "balance-rr" => Mode::RoundRobin,
            "least-pending" | "least-loaded" => Mode::LeastPending,
            "balance-tcp" => Mode::Hash(HashFields::L3L4),
            "balance-slb" => Mode::Hash(HashFields::L2Src),
            "balance-xor" => Mode::Hash(HashFields::L2SrcDst),
            "ip-hash" => Mode::Hash(HashFields::L3SrcDst),
            "ip-hash-else-round-robin" => Mode::IpHashElseRoundRobin,
            "vm-pinned" | "originating-port" | "port-id" => Mode::VmPinned,
            "priority-aware" => Mode::PriorityAware,
            "load-based" | "physical-nic-load" => Mode::LoadBased,
            other => match other.strip_prefix("hash-") {
                Some(h) => Mode::Hash(h.parse().map_err(|_| err())?),
                None => return Err(err()),
            },
        })
    }
}

impl fmt::Display for Failback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failback::Immediate => "immediate",
            Failback::Delayed => "delayed",
            Failback::Manual => "manual",
        })
    }
}

impl FromStr for Failback {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match normalize(s).as_str() {
            "immediate" | "yes" => Ok(Failback::Immediate),
            "delayed" => Ok(Failback::Delayed),
            "manual" | "no" => Ok(Failback::Manual),
            _ => Err(ParseNameError {
                kind: "failback policy",
                name: s.to_string(),
                expected: "immediate, delayed, manual",
            }),
        }
    }
}

macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = ParseNameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    )*};
}
string_serde!(HashFields, Mode, Failback);

/// Configuration of one bond. Changeable at run time with [`Bond::set_config`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BondConfig {
    /// Load distribution mode.
    pub mode: Mode,
    /// Failback policy for members recovering from a link or LACP failure.
    pub failback: Failback,
    /// With [`Failback::Delayed`]: how long a recovered member must stay up. Default 5 s.
    pub failback_delay: Nanos,
    /// A link-up must persist this long before the member is used (damps flapping).
    /// Ignored while no member is usable, as in Linux bonding. Default 0.
    pub updelay: Nanos,
    /// A link-down must persist this long before the member is dropped; meanwhile it
    /// keeps carrying traffic ([`MemberState::DownDelay`]). Default 0.
    pub downdelay: Nanos,
    /// How long a member whose tx keeps returning short stays out of distribution before
    /// it is retried (\[0065\], \[0103\]). Default 20 ms.
    pub tx_stall_holddown: Nanos,
    /// How often a member that is down for link failure should have its link re-checked
    /// (reported by [`Bond::tick`]). Default 500 ms.
    pub link_recheck_interval: Nanos,
    /// Report [`BondEvent::MacMoved`] so the data plane sends gratuitous RARPs. Default on.
    pub notify_switches: bool,
    /// Active-backup failover order: the first usable member listed is active. Members
    /// not listed follow in configuration order. Empty (default) = configuration order.
    pub active_order: Vec<usize>,
    /// Priority-aware: vNICs with priority `<=` this are isolated. Default 3.
    pub isolate_priority_max: u8,
    /// Priority-aware: the member low-priority vNICs are isolated to. Default 0.
    pub isolated_member: usize,
    /// Load-based: utilisation (percent of capacity) above which a member is overloaded.
    /// Default 75.
    pub rebalance_threshold_pct: u8,
    /// Load-based: how long a member must stay overloaded before vNICs are moved off it.
    /// Default 30 s.
    pub rebalance_window: Nanos,
    /// The bond runs LACP: members carry traffic only while the LACP module reports them
    /// distributing ([`Bond::set_lacp`]). When off, members count as distributing.
    pub lacp: bool,
}

impl Default for BondConfig {
    fn default() -> Self {
        BondConfig {
            mode: Mode::ActiveBackup,
            failback: Failback::Immediate,
            failback_delay: 5 * SEC,
            updelay: 0,
            downdelay: 0,
            tx_stall_holddown: 20 * MS,
            link_recheck_interval: 500 * MS,
            notify_switches: true,
            active_order: Vec::new(),
            isolate_priority_max: 3,
            isolated_member: 0,
            rebalance_threshold_pct: 75,
            rebalance_window: 30 * SEC,
            lacp: false,
        }
    }
}

impl BondConfig {
    /// Checks the configuration against a bond of `n_members` members.
    pub fn validate(&self, n_members: usize) -> Result<(), BondError> {
        if n_members == 0 {
            return Err(BondError::EmptyBond);
        }
        if n_members > MAX_MEMBERS {
            return Err(BondError::TooManyMembers(n_members));
        }
        let mut seen = 0u16;
        for &m in &self.active_order {
            if m >= n_members {
                return Err(BondError::ActiveOrderOutOfRange {
                    member: m,
                    n_members,
                });
            }
            if seen & (1 << m) != 0 {
                return Err(BondError::DuplicateInActiveOrder(m));
            }
            seen |= 1 << m;
        }
        if self.isolated_member >= n_members {
            return Err(BondError::IsolatedMemberOutOfRange {
                member: self.isolated_member,
                n_members,
            });
        }
        if self.isolate_priority_max > MAX_PRIORITY {
            return Err(BondError::PriorityOutOfRange(self.isolate_priority_max));
        }
        if self.rebalance_threshold_pct == 0 || self.rebalance_threshold_pct > 100 {
            return Err(BondError::ThresholdOutOfRange(self.rebalance_threshold_pct));
        }
        Ok(())
    }
}

/// Errors of the bond's control operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BondError {
    /// A bond needs at least one member.
    #[error("a bond needs at least one member")]
    EmptyBond,
    /// More members than [`MAX_MEMBERS`].
    #[error("a bond has at most 16 members, {0} were configured")]
    TooManyMembers(usize),
    /// A member index beyond the bond's members.
    #[error("member {member} is out of range: the bond has {n_members} members")]
    MemberOutOfRange {
        /// The refused index.
        member: usize,
        /// Members in the bond.
        n_members: usize,
    },
    /// `active_order` names a member beyond the bond's members.
    #[error("active_order names member {member}, but the bond has {n_members} members")]
    ActiveOrderOutOfRange {
        /// The refused index.
        member: usize,
        /// Members in the bond.
        n_members: usize,
    },
    /// `active_order` lists a member twice.
    #[error("active_order lists member {0} twice")]
    DuplicateInActiveOrder(usize),
    /// `isolated_member` is beyond the bond's members.
    #[error("isolated_member {member} is out of range: the bond has {n_members} members")]
    IsolatedMemberOutOfRange {
        /// The refused index.
        member: usize,
        /// Members in the bond.
        n_members: usize,
    },
    /// A priority above [`MAX_PRIORITY`].
    #[error("priority {0} is out of range: priorities are 0 to 10")]
    PriorityOutOfRange(u8),
    /// `rebalance_threshold_pct` outside 1..=100.
    #[error("rebalance_threshold_pct {0} is out of range: it must be 1 to 100")]
    ThresholdOutOfRange(u8),
    /// A vNIC slot at or above [`MAX_VNIC_SLOTS`].
    #[error("vNIC slot {0} is out of range: slots must be below 65536")]
    SlotOutOfRange(u32),
    /// `add_vnic` on a slot already in use.
    #[error("vNIC slot {0} is already in use on this bond")]
    SlotInUse(u32),
    /// A slot with no vNIC.
    #[error("no vNIC in slot {0} on this bond")]
    UnknownVnic(u32),
}

/// Why a member does not carry traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DownReason {
    /// Not down (the member is up, in down-delay, or awaiting failback).
    None,
    /// The link is down (or waiting out `updelay`).
    Link,
    /// Tx kept returning short: temporarily out for lack of tx resources (\[0065\]).
    NoTxResources,
    /// The LACP module does not let the member distribute.
    Lacp,
    /// Administratively down.
    Admin,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DownReason::None => "none",
            DownReason::Link => "link",
            DownReason::NoTxResources => "no tx resources",
            DownReason::Lacp => "lacp",
            DownReason::Admin => "admin",
        })
    }
}

/// A member's state. Usable (carrying traffic) exactly in `Up` and `DownDelay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberState {
    /// Carrying traffic.
    Up,
    /// Link lost, still carrying traffic while `downdelay` runs.
    DownDelay,
    /// Link back, not yet carrying traffic while `updelay` runs.
    UpDelay,
    /// Recovered from a failure, held back by the failback policy.
    AwaitingFailback,
    /// Not carrying traffic; see [`DownReason`].
    Down,
}

impl MemberState {
    /// True when a member in this state carries traffic.
    pub fn is_usable(self) -> bool {
        matches!(self, MemberState::Up | MemberState::DownDelay)
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberState::Up => "up",
            MemberState::DownDelay => "down-delay",
            MemberState::UpDelay => "up-delay",
            MemberState::AwaitingFailback => "awaiting-failback",
            MemberState::Down => "down",
        })
    }
}

/// What [`Bond::member_status`] reports about one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Current state.
    pub state: MemberState,
    /// Why it is down (`None` unless `state` is `Down` or `UpDelay`).
    pub reason: DownReason,
    /// When `state`/`reason` last changed.
    pub since: Nanos,
    /// Whether it carries traffic now.
    pub usable: bool,
    /// The last link state reported (before damping).
    pub link_up: bool,
    /// Administrative state.
    pub admin_up: bool,
    /// The LACP module's last verdict (ignored unless the bond runs LACP).
    pub lacp_distributing: bool,
    /// While out for lack of tx resources: when it will be retried.
    pub stalled_until: Option<Nanos>,
}

/// Something the control thread should know or act upon, in the order it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BondEvent {
    /// The member started carrying traffic.
    MemberUp {
        /// Member index.
        member: usize,
    },
    /// The member stopped carrying traffic.
    MemberDown {
        /// Member index.
        member: usize,
        /// Why.
        reason: DownReason,
    },
    /// Active-backup: the active member left service; `to` took over (`None`: no member left).
    Failover {
        /// The former active member.
        from: usize,
        /// The new active member.
        to: Option<usize>,
    },
    /// Active-backup: the active member changed while the old one is still usable (failback
    /// to a preferred member, a configuration change) or the bond came back from down.
    ActiveChanged {
        /// The former active member.
        from: Option<usize>,
        /// The new active member.
        to: Option<usize>,
    },
    /// A member that had failed was readmitted by the failback policy.
    Failback {
        /// Member index.
        member: usize,
    },
    /// A vNIC MAC now leaves on another member: send a gratuitous RARP for `mac` through
    /// `to_member` (only when `notify_switches`).
    MacMoved {
        /// The vNIC's MAC.
        mac: MacAddr,
        /// The vNIC's slot.
        slot: u32,
        /// The member it now leaves on.
        to_member: usize,
    },
    /// Load-based: a vNIC's home was moved by the rebalancer.
    Rebalanced {
        /// The vNIC's slot.
        slot: u32,
        /// The old home.
        from: usize,
        /// The new home.
        to: usize,
    },
    /// No member is usable any more.
    BondDown,
    /// At least one member is usable again.
    BondUp,
}

/// What [`Bond::tick`] asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tick {
    /// Members down for link failure whose link should be re-checked now (bit per member):
    /// query the NIC and call [`Bond::link_changed`].
    pub recheck_links: u16,
    /// The earliest pending deadline (updelay, downdelay, tx hold-down, failback delay,
    /// link re-check): calling `tick` again then is enough.
    pub next_deadline: Option<Nanos>,
}

#[derive(Clone, Debug)]
struct Member {
    admin_up: bool,
    link_raw: bool,
    /// Link state after updelay/downdelay damping.
    link_ok: bool,
    up_at: Option<Nanos>,
    down_at: Option<Nanos>,
    lacp_distributing: bool,
    stall_until: Option<Nanos>,
    stall_streak: u8,
    last_stall_end: Option<Nanos>,
    needs_failback: bool,
    failback_at: Option<Nanos>,
    next_recheck: Option<Nanos>,
    state: MemberState,
    reason: DownReason,
    since: Nanos,
}

impl Member {
    fn new() -> Member {
        Member {
            admin_up: true,
            link_raw: false,
            link_ok: false,
            up_at: None,
            down_at: None,
            lacp_distributing: false,
            stall_until: None,
            stall_streak: 0,
            last_stall_end: None,
            needs_failback: false,
            failback_at: None,
            next_recheck: None,
            state: MemberState::Down,
            reason: DownReason::Link,
            since: 0,
        }
    }

    fn derive(&self, lacp: bool) -> (MemberState, DownReason) {
        if !self.admin_up {
            (MemberState::Down, DownReason::Admin)
        } else if !self.link_ok {
            if self.up_at.is_some() {
                (MemberState::UpDelay, DownReason::Link)
            } else {
                (MemberState::Down, DownReason::Link)
            }
        } else if lacp && !self.lacp_distributing {
            (MemberState::Down, DownReason::Lacp)
        } else if self.stall_until.is_some() {
            (MemberState::Down, DownReason::NoTxResources)
        } else if self.needs_failback {
            (MemberState::AwaitingFailback, DownReason::None)
        } else if self.down_at.is_some() {
            (MemberState::DownDelay, DownReason::None)
        } else {
            (MemberState::Up, DownReason::None)
        }
    }
}

#[derive(Clone, Debug)]
struct Vnic {
    mac: MacAddr,
    priority: u8,
    home: u8,
    /// The member it leaves on in vm-pinned/load-based modes.
    effective: Option<u8>,
    /// The member its MAC was last announced on (or would have been).
    announced: Option<u8>,
}

/// A bond's control-side state. Owned by the control thread; see the module docs.
#[derive(Clone, Debug)]
pub struct Bond {
    cfg: BondConfig,
    members: Vec<Member>,
    vnics: Vec<Option<Vnic>>,
    usable: u16,
    dist: Distribution,
    events: Vec<BondEvent>,
    over_since: [Option<Nanos>; MAX_MEMBERS],
}

impl Bond {
    /// A bond of `n_members` members (all administratively up, links down until reported).
    pub fn new(cfg: BondConfig, n_members: usize) -> Result<Bond, BondError> {
        cfg.validate(n_members)?;
        let mut bond = Bond {
            dist: Distribution {
                generation: 0,
                mode: cfg.mode,
                n_members: n_members as u8,
                usable: 0,
                rx: 0,
                usable_list: [0; MAX_MEMBERS],
                n_usable: 0,
                active: None,
                mcast_rx: None,
                degraded: true,
                buckets: [0; HASH_BUCKETS],
                slots: Vec::new(),
            },
            cfg,
            members: vec![Member::new(); n_members],
            vnics: Vec::new(),
            usable: 0,
            events: Vec::new(),
            over_since: [None; MAX_MEMBERS],
        };
        bond.rebuild(None);
        Ok(bond)
    }

    /// The current configuration.
    pub fn config(&self) -> &BondConfig {
        &self.cfg
    }

    /// Number of members.
    pub fn n_members(&self) -> usize {
        self.members.len()
    }

    /// Replaces the configuration (mode, timers, orders…) at run time. Member states and
    /// vNIC homes are kept; switching the failback policy to `Immediate` readmits members
    /// awaiting failback.
    pub fn set_config(&mut self, cfg: BondConfig, now: Nanos) -> Result<(), BondError> {
        cfg.validate(self.members.len())?;
        if cfg.failback == Failback::Immediate {
            for m in &mut self.members {
                m.needs_failback = false;
            }
        }
        if cfg.mode != Mode::LoadBased {
            self.over_since = [None; MAX_MEMBERS];
        }
        self.cfg = cfg;
        self.advance(now);
        self.refresh(now);
        Ok(())
    }

    /// Changes the distribution mode at run time.
    pub fn set_mode(&mut self, mode: Mode, now: Nanos) {
        let mut cfg = self.cfg.clone();
        cfg.mode = mode;
        // A valid config with another mode is still valid.
        let _ = self.set_config(cfg, now);
    }

    fn check_member(&self, member: usize) -> Result<(), BondError> {
        if member < self.members.len() {
            Ok(())
        } else {
            Err(BondError::MemberOutOfRange {
                member,
                n_members: self.members.len(),
            })
        }
    }

    /// Reports the member's link state (from polling or an event). Repeating the same
    /// state is harmless. Applies `updelay`/`downdelay`.
    pub fn link_changed(&mut self, member: usize, up: bool, now: Nanos) -> Result<(), BondError> {
        self.check_member(member)?;
        self.advance(now);
        let no_usable = self.usable == 0;
        let (updelay, downdelay) = (self.cfg.updelay, self.cfg.downdelay);
        let m = &mut self.members[member];
        if m.link_raw != up {
            m.link_raw = up;
            if up {
                if m.down_at.take().is_none() && !m.link_ok {
                    if updelay == 0 || no_usable {
                        m.link_ok = true;
                    } else {
                        m.up_at = Some(now.saturating_add(updelay));
                    }
                }
            } else if m.up_at.take().is_none() && m.link_ok {
                if downdelay == 0 {
                    m.link_ok = false;
                } else {
                    m.down_at = Some(now.saturating_add(downdelay));
                }
            }
        }
        self.refresh(now);
        Ok(())
    }

    /// Reports that the member's tx keeps returning short (no descriptors/buffers): it is
    /// taken out of distribution for `tx_stall_holddown` (doubled, up to 8×, when it
    /// stalls again within one hold-down of its return), then retried. Ignored for a member
    /// that is not carrying traffic or is already held down.
    pub fn tx_stalled(&mut self, member: usize, now: Nanos) -> Result<(), BondError> {
        self.check_member(member)?;
        self.advance(now);
        let base = self.cfg.tx_stall_holddown;
        let m = &mut self.members[member];
        if m.stall_until.is_none() && m.state.is_usable() {
            let relapse = m
                .last_stall_end
                .is_some_and(|end| now.saturating_sub(end) <= base);
            m.stall_streak = if relapse {
                (m.stall_streak + 1).min(MAX_STALL_BACKOFF)
            } else {
                0
            };
            let hold = base.saturating_mul(1 << m.stall_streak);
            m.stall_until = Some(now.saturating_add(hold));
        }
        self.refresh(now);
        Ok(())
    }

    /// Sets the member's administrative state. Bringing a member up never waits for
    /// failback.
    pub fn set_admin(&mut self, member: usize, up: bool, now: Nanos) -> Result<(), BondError> {
        self.check_member(member)?;
        self.advance(now);
        let m = &mut self.members[member];
        m.admin_up = up;
        if !up {
            m.needs_failback = false;
        }
        self.refresh(now);
        Ok(())
    }

    /// The LACP module's verdict: whether the member may distribute. Only consulted when
    /// the bond runs LACP ([`BondConfig::lacp`]).
    pub fn set_lacp(
        &mut self,
        member: usize,
        distributing: bool,
        now: Nanos,
    ) -> Result<(), BondError> {
        self.check_member(member)?;
        self.advance(now);
        self.members[member].lacp_distributing = distributing;
        self.refresh(now);
        Ok(())
    }

    /// Readmits every member awaiting failback (the administrator's "fail back now").
    /// Returns how many were readmitted.
    pub fn manual_failback(&mut self, now: Nanos) -> usize {
        self.advance(now);
        let mut n = 0;
        for m in &mut self.members {
            if m.state == MemberState::AwaitingFailback {
                m.needs_failback = false;
                n += 1;
            }
        }
        self.refresh(now);
        n
    }

    /// Adds a vNIC (a dense slot chosen by the caller, its MAC and priority 0..=10). Its
    /// home is the member with the fewest homes (lowest index on ties).
    pub fn add_vnic(&mut self, slot: u32, mac: MacAddr, priority: u8) -> Result<(), BondError> {
        if slot >= MAX_VNIC_SLOTS {
            return Err(BondError::SlotOutOfRange(slot));
        }
        if priority > MAX_PRIORITY {
            return Err(BondError::PriorityOutOfRange(priority));
        }
        let i = slot as usize;
        if self.vnics.get(i).is_some_and(|v| v.is_some()) {
            return Err(BondError::SlotInUse(slot));
        }
        let mut homes = [0u32; MAX_MEMBERS];
        for v in self.vnics.iter().flatten() {
            homes[v.home as usize] += 1;
        }
        let home = (0..self.members.len())
            .min_by_key(|&m| (homes[m], m))
            .unwrap_or(0) as u8;
        if self.vnics.len() <= i {
            self.vnics.resize(i + 1, None);
        }
        self.vnics[i] = Some(Vnic {
            mac,
            priority,
            home,
            effective: None,
            announced: None,
        });
        self.rebuild(Some(slot));
        Ok(())
    }

    /// Removes a vNIC.
    pub fn remove_vnic(&mut self, slot: u32) -> Result<(), BondError> {
        match self.vnics.get_mut(slot as usize) {
            Some(v @ Some(_)) => *v = None,
            _ => return Err(BondError::UnknownVnic(slot)),
        }
        while matches!(self.vnics.last(), Some(None)) {
            self.vnics.pop();
        }
        self.rebuild(None);
        Ok(())
    }

    /// Changes a vNIC's priority (priority-aware mode).
    pub fn set_vnic_priority(&mut self, slot: u32, priority: u8) -> Result<(), BondError> {
        if priority > MAX_PRIORITY {
            return Err(BondError::PriorityOutOfRange(priority));
        }
        self.vnic_mut(slot)?.priority = priority;
        self.rebuild(None);
        Ok(())
    }

    /// Pins a vNIC's home to `member` (the operator's explicit choice; vm-pinned and
    /// load-based modes).
    pub fn set_home(&mut self, slot: u32, member: usize) -> Result<(), BondError> {
        self.check_member(member)?;
        self.vnic_mut(slot)?.home = member as u8;
        self.rebuild(None);
        Ok(())
    }

    fn vnic_mut(&mut self, slot: u32) -> Result<&mut Vnic, BondError> {
        self.vnics
            .get_mut(slot as usize)
            .and_then(|v| v.as_mut())
            .ok_or(BondError::UnknownVnic(slot))
    }

    fn vnic(&self, slot: u32) -> Option<&Vnic> {
        self.vnics.get(slot as usize).and_then(|v| v.as_ref())
    }

    /// The vNIC's home member (vm-pinned and load-based modes).
    pub fn home_of(&self, slot: u32) -> Option<usize> {
        self.vnic(slot).map(|v| v.home as usize)
    }

    /// The member the vNIC leaves on in vm-pinned/load-based modes (its home, or the
    /// member it failed over to); `None` when no member is usable.
    pub fn effective_member_of(&self, slot: u32) -> Option<usize> {
        self.vnic(slot)
            .and_then(|v| v.effective)
            .map(|m| m as usize)
    }

    /// The slot of the vNIC with MAC `mac` (claim 9: VMs told apart by source address).
    pub fn slot_of_mac(&self, mac: MacAddr) -> Option<u32> {
        self.vnics
            .iter()
            .position(|v| v.as_ref().is_some_and(|v| v.mac == mac))
            .map(|i| i as u32)
    }

    /// Feeds measured rates to the load-based rebalancer (control thread, e.g. once a
    /// second): `member_bps[i]` and `member_capacity_bps[i]` per member, `vnic_bps` recent
    /// tx rates per vNIC slot. Returns how many vNICs were moved. Other modes ignore it.
    /// Missing entries count as zero; members with zero capacity are never overloaded nor
    /// chosen as targets.
    pub fn report_load(
        &mut self,
        now: Nanos,
        member_bps: &[u64],
        member_capacity_bps: &[u64],
        vnic_bps: &[(u32, u64)],
    ) -> usize {
        self.advance(now);
        self.refresh(now);
        if self.cfg.mode != Mode::LoadBased {
            return 0;
        }
        let n = self.members.len();
        let thr = self.cfg.rebalance_threshold_pct as u128;
        let mut load = [0u128; MAX_MEMBERS];
        let mut cap = [0u128; MAX_MEMBERS];
        for i in 0..n {
            load[i] = member_bps.get(i).copied().unwrap_or(0) as u128;
            cap[i] = member_capacity_bps.get(i).copied().unwrap_or(0) as u128;
        }
        let limit = |i: usize| cap[i] * thr / 100;
        let mut due = Vec::new();
        for i in 0..n {
            let usable = self.usable & (1 << i) != 0;
            if usable && cap[i] > 0 && load[i] > limit(i) {
                let since = *self.over_since[i].get_or_insert(now);
                if now.saturating_sub(since) >= self.cfg.rebalance_window {
                    due.push(i);
                }
            } else {
                self.over_since[i] = None;
            }
        }
        // Most utilised first.
        due.sort_by(|&a, &b| (load[b] * cap[a]).cmp(&(load[a] * cap[b])).then(a.cmp(&b)));
        let rate_of = |slot: u32| -> u128 {
            vnic_bps
                .iter()
                .filter(|(s, _)| *s == slot)
                .map(|&(_, r)| r as u128)
                .sum()
        };
        let mut moved = 0;
        for src in due {
            let mut cands: Vec<(u32, u128)> = self
                .vnics
                .iter()
                .enumerate()
                .filter_map(|(s, v)| v.as_ref().map(|v| (s as u32, v)))
                .filter(|(_, v)| v.home as usize == src && v.effective == Some(src as u8))
                .map(|(s, _)| (s, rate_of(s)))
                .filter(|&(_, r)| r > 0)
                .collect();
            let mut moved_here = false;
            while load[src] > limit(src) && !cands.is_empty() {
                let excess = load[src] - limit(src);
                // Target: the usable member with the most headroom below its threshold.
                let target = (0..n)
                    .filter(|&t| t != src && self.usable & (1 << t) != 0 && cap[t] > 0)
                    .filter(|&t| limit(t) > load[t])
                    .max_by_key(|&t| (limit(t) - load[t], core::cmp::Reverse(t)));
                let Some(t) = target else { break };
                let headroom = limit(t) - load[t];
                let fits = cands.iter().enumerate().filter(|(_, c)| c.1 <= headroom);
                // Fewest moves: the smallest vNIC that removes the whole excess, else
                // the largest that fits.
                let pick = fits
                    .clone()
                    .filter(|(_, c)| c.1 >= excess)
                    .min_by_key(|(_, c)| (c.1, c.0))
                    .or_else(|| fits.max_by_key(|(_, c)| (c.1, core::cmp::Reverse(c.0))))
                    .map(|(i, _)| i);
                let Some(i) = pick else { break };
                let (slot, rate) = cands.swap_remove(i);
                load[src] = load[src].saturating_sub(rate);
                load[t] += rate;
                if let Some(v) = self.vnics.get_mut(slot as usize).and_then(|v| v.as_mut()) {
                    v.home = t as u8;
                }
                self.events.push(BondEvent::Rebalanced {
                    slot,
                    from: src,
                    to: t,
                });
                moved += 1;
                moved_here = true;
            }
            if moved_here {
                // Restart the window: the member must stay overloaded again before more moves.
                self.over_since[src] = Some(now);
            }
        }
        if moved > 0 {
            self.rebuild(None);
        }
        moved
    }

    /// Advances timers (updelay, downdelay, tx hold-downs, failback delay) to `now` and
    /// says which links to re-check and when the next deadline falls. Call it from the
    /// control loop (e.g. every 10 ms, or at `next_deadline`).
    pub fn tick(&mut self, now: Nanos) -> Tick {
        self.advance(now);
        self.refresh(now);
        let interval = self.cfg.link_recheck_interval.max(1);
        let mut out = Tick::default();
        let mut next: Option<Nanos> = None;
        let mut consider = |t: Option<Nanos>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Nanos| n.min(t)));
            }
        };
        for (i, m) in self.members.iter_mut().enumerate() {
            if let Some(t) = m.next_recheck {
                if now >= t {
                    out.recheck_links |= 1 << i;
                    m.next_recheck = Some(now.saturating_add(interval));
                }
            }
            consider(m.up_at);
            consider(m.down_at);
            consider(m.stall_until);
            consider(m.failback_at);
            consider(m.next_recheck);
        }
        out.next_deadline = next;
        out
    }

    /// Drains the queued events, oldest first.
    pub fn drain_events(&mut self) -> impl Iterator<Item = BondEvent> + '_ {
        self.events.drain(..)
    }

    /// The member's state and reason, or `None` for an index out of range.
    pub fn member_status(&self, member: usize) -> Option<MemberStatus> {
        let m = self.members.get(member)?;
        Some(MemberStatus {
            state: m.state,
            reason: m.reason,
            since: m.since,
            usable: self.usable & (1 << member) != 0,
            link_up: m.link_raw,
            admin_up: m.admin_up,
            lacp_distributing: m.lacp_distributing,
            stalled_until: m.stall_until,
        })
    }

    /// Bit `i` set when member `i` carries traffic.
    pub fn usable_mask(&self) -> u16 {
        self.usable
    }

    /// True when fewer members are usable than are administratively up.
    pub fn is_degraded(&self) -> bool {
        let admin_up = self.members.iter().filter(|m| m.admin_up).count() as u32;
        self.usable.count_ones() < admin_up
    }

    /// Active-backup's active member (first usable member in failover order).
    pub fn active_member(&self) -> Option<usize> {
        self.dist.active()
    }

    /// A copy of the current distribution, to publish to the workers.
    pub fn distribution(&self) -> Distribution {
        self.dist.clone()
    }

    /// The current distribution, borrowed.
    pub fn distribution_ref(&self) -> &Distribution {
        &self.dist
    }

    /// Bumped each time the distribution changes: republish when it differs from the
    /// generation last published.
    pub fn generation(&self) -> u64 {
        self.dist.generation
    }

    /// Fires expired deadlines.
    fn advance(&mut self, now: Nanos) {
        for m in &mut self.members {
            if m.up_at.is_some_and(|t| now >= t) {
                m.up_at = None;
                m.link_ok = true;
            }
            if m.down_at.is_some_and(|t| now >= t) {
                m.down_at = None;
                m.link_ok = false;
            }
            if let Some(t) = m.stall_until.filter(|&t| now >= t) {
                m.stall_until = None;
                m.last_stall_end = Some(t);
            }
            if m.failback_at.is_some_and(|t| now >= t) {
                m.failback_at = None;
                m.needs_failback = false;
            }
        }
    }

    /// Re-derives one member's state; returns true when it left service for a reason
    /// other than a tx-resource stall.
    fn update_member(&mut self, i: usize, now: Nanos) -> bool {
        let fb = self.cfg.failback;
        let delay = self.cfg.failback_delay;
        let interval = self.cfg.link_recheck_interval.max(1);
        let lacp = self.cfg.lacp;
        let m = &mut self.members[i];
        let (s, r) = m.derive(lacp);
        if (s, r) == (m.state, m.reason) {
            return false;
        }
        let was_usable = m.state.is_usable();
        if s == MemberState::Down
            && matches!(r, DownReason::Link | DownReason::Lacp)
            && was_usable
            && fb != Failback::Immediate
        {
            m.needs_failback = true;
        }
        m.failback_at = if s == MemberState::AwaitingFailback {
            if m.state == MemberState::AwaitingFailback {
                m.failback_at
            } else if fb == Failback::Delayed {
                Some(now.saturating_add(delay))
            } else {
                None
            }
        } else {
            None
        };
        let down_link =
            |s: MemberState, r: DownReason| s == MemberState::Down && r == DownReason::Link;
        if !down_link(s, r) {
            m.next_recheck = None;
        } else if !down_link(m.state, m.reason) {
            m.next_recheck = Some(now.saturating_add(interval));
        }
        let failed_back = m.state == MemberState::AwaitingFailback && s.is_usable();
        m.state = s;
        m.reason = r;
        m.since = now;
        if failed_back {
            self.events.push(BondEvent::Failback { member: i });
        }
        // A tx-resource stall is temporary: it does not count as lost capacity that
        // would pull members out of failback hold.
        was_usable && !s.is_usable() && r != DownReason::NoTxResources
    }

    fn in_service(&self) -> u16 {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.state.is_usable())
            .fold(0, |acc, (i, _)| acc | 1 << i)
    }

    /// Re-derives all member states, applies the failback and no-usable-member rules,
    /// emits member events and rebuilds the distribution.
    fn refresh(&mut self, now: Nanos) {
        let n = self.members.len();
        let mut lost = false;
        for i in 0..n {
            lost |= self.update_member(i, now);
        }
        if self.in_service() == 0 {
            // Nothing carries traffic: a link in updelay is better than none (Linux does
            // the same).
            let mut any = false;
            for m in &mut self.members {
                if m.up_at.take().is_some() {
                    m.link_ok = true;
                    any = true;
                }
            }
            if any {
                for i in 0..n {
                    lost |= self.update_member(i, now);
                }
            }
        }
        if lost || self.in_service() == 0 {
            // Capacity was lost: members held back by the failback policy are needed now.
            let mut any = false;
            for m in &mut self.members {
                if m.state == MemberState::AwaitingFailback {
                    m.needs_failback = false;
                    any = true;
                }
            }
            if any {
                for i in 0..n {
                    self.update_member(i, now);
                }
            }
        }
        let usable = self.in_service();
        let prev = self.usable;
        for i in 0..n {
            let bit = 1u16 << i;
            if usable & bit != 0 && prev & bit == 0 {
                self.events.push(BondEvent::MemberUp { member: i });
            } else if usable & bit == 0 && prev & bit != 0 {
                self.events.push(BondEvent::MemberDown {
                    member: i,
                    reason: self.members[i].reason,
                });
            }
        }
        if prev != 0 && usable == 0 {
            self.events.push(BondEvent::BondDown);
        } else if prev == 0 && usable != 0 {
            self.events.push(BondEvent::BondUp);
        }
        self.usable = usable;
        self.rebuild(None);
    }

    /// Members in active-backup failover order.
    fn failover_order(&self) -> impl Iterator<Item = usize> + '_ {
        let listed: u16 = self.cfg.active_order.iter().fold(0, |a, &m| a | 1 << m);
        self.cfg
            .active_order
            .iter()
            .copied()
            .chain((0..self.members.len()).filter(move |m| listed & (1 << m) == 0))
    }

    /// Rebuilds the distribution from member states and vNICs; emits active-backup and
    /// MAC-move events. `quiet` is a just-added slot whose MAC needs no announcement.
    fn rebuild(&mut self, quiet: Option<u32>) {
        let n = self.members.len();
        let usable = self.usable;
        let is_usable = |m: usize| m < MAX_MEMBERS && usable & (1 << m) != 0;
        let mut usable_list = [0u8; MAX_MEMBERS];
        let mut n_usable = 0usize;
        for m in (0..n).filter(|&m| is_usable(m)) {
            usable_list[n_usable] = m as u8;
            n_usable += 1;
        }
        let active = self
            .failover_order()
            .find(|&m| is_usable(m))
            .map(|m| m as u8);

        // Hash buckets: bucket b belongs to member b % n; buckets of unusable members are
        // dealt round-robin to the usable ones, so surviving members keep their buckets.
        let mut buckets = [0u8; HASH_BUCKETS];
        if n_usable > 0 {
            let mut k = 0;
            for (b, slot) in buckets.iter_mut().enumerate() {
                let ideal = b % n;
                *slot = if is_usable(ideal) {
                    ideal as u8
                } else {
                    k += 1;
                    usable_list[(k - 1) % n_usable]
                };
            }
        }

        // vm-pinned: home if usable, else stay where it failed over to, else the usable
        // member with the fewest vNICs.
        let mut count = [0u32; MAX_MEMBERS];
        for v in self.vnics.iter_mut().flatten() {
            v.effective = if is_usable(v.home as usize) {
                Some(v.home)
            } else {
                v.effective.filter(|&e| is_usable(e as usize))
            };
            if let Some(e) = v.effective {
                count[e as usize] += 1;
            }
        }
        if n_usable > 0 {
            for v in self
                .vnics
                .iter_mut()
                .flatten()
                .filter(|v| v.effective.is_none())
            {
                let e = usable_list[..n_usable]
                    .iter()
                    .copied()
                    .min_by_key(|&m| (count[m as usize], m))
                    .unwrap_or(0);
                count[e as usize] += 1;
                v.effective = Some(e);
            }
        }

        // priority-aware: isolated member, or the next usable one after it.
        let iso = self.cfg.isolated_member;
        let isolated = (0..n)
            .map(|k| (iso + k) % n)
            .find(|&m| is_usable(m))
            .map(|m| m as u8);

        let mode = self.cfg.mode;
        let prio_max = self.cfg.isolate_priority_max;
        let slots: Vec<u8> = match mode {
            Mode::VmPinned | Mode::LoadBased | Mode::PriorityAware => self
                .vnics
                .iter()
                .map(|v| match v {
                    None => SLOT_UNKNOWN,
                    Some(v) if mode == Mode::PriorityAware => {
                        if v.priority <= prio_max {
                            isolated.unwrap_or(SLOT_UNKNOWN)
                        } else {
                            SLOT_FLOAT
                        }
                    }
                    Some(v) => v.effective.unwrap_or(SLOT_UNKNOWN),
                })
                .collect(),
            _ => Vec::new(),
        };

        let rx = match mode {
            Mode::ActiveBackup => active.map_or(0, |a| 1u16 << a),
            _ => self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.admin_up && (!self.cfg.lacp || m.lacp_distributing))
                .fold(0u16, |acc, (i, _)| acc | 1 << i),
        };
        let mcast_rx = match mode {
            Mode::VmPinned | Mode::LoadBased if !self.cfg.lacp => {
                usable_list[..n_usable].first().copied()
            }
            _ => None,
        };
        let admin_up = self.members.iter().filter(|m| m.admin_up).count() as u32;

        let mut dist = Distribution {
            generation: self.dist.generation,
            mode,
            n_members: n as u8,
            usable,
            rx,
            usable_list,
            n_usable: n_usable as u8,
            active,
            mcast_rx,
            degraded: usable.count_ones() < admin_up,
            buckets,
            slots,
        };

        // Active-backup events.
        let old_active = self.dist.active;
        if mode == Mode::ActiveBackup && old_active != active {
            let to = active.map(|a| a as usize);
            match old_active {
                Some(o) if !is_usable(o as usize) => self.events.push(BondEvent::Failover {
                    from: o as usize,
                    to,
                }),
                _ => self.events.push(BondEvent::ActiveChanged {
                    from: old_active.map(|a| a as usize),
                    to,
                }),
            }
        }

        // MAC announcements.
        let notify = self.cfg.notify_switches && mode.pins_macs();
        for (slot, v) in self.vnics.iter_mut().enumerate() {
            let Some(v) = v else { continue };
            let now_on = match mode {
                Mode::ActiveBackup => active,
                Mode::VmPinned | Mode::LoadBased => v.effective,
                Mode::PriorityAware if v.priority <= prio_max => isolated,
                _ => None,
            };
            if now_on != v.announced {
                if let Some(to) = now_on {
                    if notify && quiet != Some(slot as u32) {
                        self.events.push(BondEvent::MacMoved {
                            mac: v.mac,
                            slot: slot as u32,
                            to_member: to as usize,
                        });
                    }
                }
                v.announced = now_on;
            }
        }

        if dist != self.dist {
            dist.generation = self.dist.generation.wrapping_add(1);
            self.dist = dist;
        }
    }
}
