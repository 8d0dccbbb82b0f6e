//! Per-bond LACP settings: `lacp`, `lacp_rate`, `lacp_fallback`, system and port
//! priorities, key. Parsed from and printed as the configuration words.

use crate::wire::MacAddr;
use core::fmt;
use core::str::FromStr;

/// `lacp = off | active | passive`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum LacpMode {
    /// No LACP: static 802.3ad aggregation, every up member distributes, no PDUs.
    Off,
    /// Send LACPDUs periodically even if the partner is passive.
    #[default]
    Active,
    /// Speak only when spoken to (an active partner is needed).
    Passive,
}

/// `lacp_rate = fast | slow`: the LACP_Timeout we advertise, i.e. how often we ask the
/// partner to send (fast: every 1 s, we time out after 3 s; slow: 30 s / 90 s).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum LacpRate {
    /// Short timeout.
    #[default]
    Fast,
    /// Long timeout.
    Slow,
}

/// `lacp_fallback = active-backup | none`: what to do when the partner speaks no LACP.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Fallback {
    /// Members with no LACP partner (defaulted) may be used active-backup, as Open
    /// vSwitch's `lacp-fallback-ab`.
    ActiveBackup,
    /// Members with no LACP partner carry no traffic.
    #[default]
    None,
}

/// A configuration word was not one of the accepted names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: expected one of {expected}")]
pub struct ParseSettingError {
    /// Which setting.
    pub what: &'static str,
    /// The refused text.
    pub value: String,
    /// The accepted words.
    pub expected: &'static str,
}

macro_rules! words {
    ($ty:ty, $what:expr, $($variant:path => $word:expr),+) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($variant => $word),+ })
            }
        }
        impl FromStr for $ty {
            type Err = ParseSettingError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim() {
                    $($word => Ok($variant),)+
                    _ => Err(ParseSettingError {
                        what: $what,
                        value: s.to_string(),
                        expected: concat!($($word, " "),+),
                    }),
                }
            }
        }
    };
}

words!(LacpMode, "lacp", LacpMode::Off => "off", LacpMode::Active => "active", LacpMode::Passive => "passive");
words!(LacpRate, "lacp_rate", LacpRate::Fast => "fast", LacpRate::Slow => "slow");
words!(Fallback, "lacp_fallback", Fallback::ActiveBackup => "active-backup", Fallback::None => "none");

/// Default system priority and port priority (802.1AX suggests the middle of the range).
pub const DEFAULT_PRIORITY: u16 = 32768;

/// Settings of one bond's LACP. The system ID is given by the bond (its MAC) and never
/// derived from a member, so it survives member failures.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LacpConfig {
    /// off / active / passive.
    pub mode: LacpMode,
    /// What we ask the partner for (our advertised LACP_Timeout).
    pub rate: LacpRate,
    /// Actor system priority (lower is better).
    pub system_priority: u16,
    /// Actor system ID: the bond's MAC.
    pub system_id: MacAddr,
    /// Actor administrative (and operational) key, the same on every member.
    pub key: u16,
    /// Behaviour when the partner speaks no LACP.
    pub fallback: Fallback,
    /// Per-member port priority; empty means [`DEFAULT_PRIORITY`] for all, otherwise one
    /// entry per member.
    pub port_priorities: Vec<u16>,
}

impl LacpConfig {
    /// Active, fast, default priorities, key 1, no fallback.
    pub fn new(system_id: MacAddr) -> Self {
        LacpConfig {
            mode: LacpMode::Active,
            rate: LacpRate::Fast,
            system_priority: DEFAULT_PRIORITY,
            system_id,
            key: 1,
            fallback: Fallback::None,
            port_priorities: Vec::new(),
        }
    }

    /// Priority of member `i`.
    pub fn port_priority(&self, i: usize) -> u16 {
        self.port_priorities
            .get(i)
            .copied()
            .unwrap_or(DEFAULT_PRIORITY)
    }
}

/// Largest number of members of one bond (port numbers are 1..=MAX_MEMBERS).
pub const MAX_MEMBERS: usize = 1024;

/// A bond's LACP configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LacpError {
    /// A bond needs at least one member.
    #[error("a bond needs at least one member")]
    NoMembers,
    /// Too many members.
    #[error("{0} members: at most {MAX_MEMBERS} are supported")]
    TooManyMembers(usize),
    /// `port_priorities` must be empty or have one entry per member.
    #[error("{got} port priorities for {members} members")]
    PortPriorityCount {
        /// Entries given.
        got: usize,
        /// Members of the bond.
        members: usize,
    },
    /// The system ID must be an individual, non-zero MAC.
    #[error("system ID {0} is not an individual non-zero MAC address")]
    BadSystemId(MacAddr),
    /// A member MAC (used as the PDUs' source) must be an individual, non-zero MAC.
    #[error("member {member} MAC {mac} is not an individual non-zero MAC address")]
    BadMemberMac {
        /// Member index.
        member: usize,
        /// Its MAC.
        mac: MacAddr,
    },
    /// `set_config` cannot change the number of members.
    #[error("member count cannot change at run time")]
    MemberCountChanged,
}

pub(crate) fn validate(cfg: &LacpConfig, members: usize) -> Result<(), LacpError> {
    if members == 0 {
        return Err(LacpError::NoMembers);
    }
    if members > MAX_MEMBERS {
        return Err(LacpError::TooManyMembers(members));
    }
    if !cfg.port_priorities.is_empty() && cfg.port_priorities.len() != members {
        return Err(LacpError::PortPriorityCount {
            got: cfg.port_priorities.len(),
            members,
        });
    }
    if !cfg.system_id.is_unicast() {
        return Err(LacpError::BadSystemId(cfg.system_id));
    }
    Ok(())
}
