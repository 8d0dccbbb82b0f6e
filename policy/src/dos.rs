//! Denial-of-service detection and mitigation decisions for traffic arriving for VMs.
//!
//! Implements specification paragraphs \[0125\]–\[0131\] and claims 40–48 as filed: the
//! NIC manager sees every frame before the VM does (\[0129\]), so it can count, match
//! and hold suspicious traffic, and decide responses quickly.
//!
//! # Split between threads
//!
//! - **Worker side (fast path, owned by one worker, no locks, no allocation):**
//!   [`SignatureSet::matches`] checks a parsed frame against the configured
//!   [`SignatureRule`]s; [`DosCounters::account`] classifies every frame arriving
//!   for a VM (packets, bytes, pure SYNs, ACK-bearing segments, SYNs resolved by a
//!   matching ACK/RST) and [`DosCounters::record_signature`] counts signature hits.
//!   [`Mitigation::verdict`] turns the current mitigation word into a per-frame
//!   decision, [`PacketBudget`] polices a packet rate, [`DelayPolicy`] says when a
//!   held frame may be released. The data plane mirrors the counters into atomics.
//! - **Control side (one control thread):** a [`DosDetector`] per VM is fed the
//!   *cumulative* counters by [`DosDetector::observe`] every few milliseconds. It
//!   keeps a sliding window of samples, computes rates itself and emits
//!   [`DosEvent`]s; [`DosDetector::state`] / [`DosDetector::mitigation`] say which
//!   responses are active so the data plane can publish the per-VM mitigation word
//!   ([`Mitigation::pack`]).
//!
//! # Invariants
//!
//! - Counters must be accounted on **arrival, before mitigation** (dropping or
//!   delaying frames must not hide the attack, or mitigation would end it and flap).
//! - Detection latency: with a sliding window of `window` and `observe` every `dt`,
//!   a flood exceeding a threshold is reported at most `window + dt` after it starts
//!   (tested: within 100 ms for 50 ms windows observed every 10 ms).
//! - Hysteresis: an attack starts when a rate exceeds its threshold and ends only
//!   after the rate stayed at or below `clear_ratio_pct` % of the threshold (for
//!   signatures: no hit at all) for `clear_after`. A rate hovering around the
//!   threshold therefore produces one start and no flapping.
//! - Nothing here panics on any frame bytes or configuration string.
//!
//! # SYN flood measure
//!
//! "SYNs without matching ACKs": each pure SYN (SYN without ACK) increments a slot of
//! a small counting table indexed by a hash of its 4-tuple; an ACK (or RST) without
//! SYN for the same 4-tuple decrements it and counts as `syn_resolved`. Half-open
//! rate = (SYNs − resolved) per second. Unlike "SYNs minus all ACKs", established
//! connections' ACKs cannot mask a flood. A sweeping cursor clears one slot per SYN
//! so stale entries from lost handshakes age out (the table turns over every
//! [`SYN_TABLE_SLOTS`] SYNs); hash collisions can only make the estimate lower.

// The workspace MSRV (1.80) predates `is_multiple_of` and `Option::is_none_or`.
#![allow(clippy::manual_is_multiple_of, clippy::unnecessary_map_or)]

use crate::time::{Nanos, MS, SEC, US};
use crate::wire::{ipproto, tcpflags, Flow};
use core::fmt;
use core::str::FromStr;
use std::collections::VecDeque;

// ---------------------------------------------------------------------------
// Signatures (worker side)
// ---------------------------------------------------------------------------

/// One intrusion-detection signature (\[0129\]: a port used in a prior attack, or a
/// byte pattern found in a known attack). All present criteria must match.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignatureRule {
    /// Name reported in events and logs.
    pub name: String,
    /// IP protocol (6 = TCP, 17 = UDP, ...); `None` matches any.
    pub proto: Option<u8>,
    /// Inclusive L4 destination port range; only frames with parsed L4 ports match.
    pub dst_ports: Option<(u16, u16)>,
    /// `(offset, bytes)`: `bytes` must appear at `offset` counted from the **start of
    /// the L4 payload** (after the TCP/UDP header, `Flow::payload_offset`). Only
    /// TCP/UDP frames carrying enough payload match.
    pub pattern: Option<(usize, Vec<u8>)>,
}

/// Why a signature rule or set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The rule has no criterion at all and would match every frame.
    #[error("signature {0:?} has no criterion (proto, dport or pattern)")]
    Empty(String),
    /// The port range is reversed.
    #[error("signature {0:?}: port range start is above its end")]
    BadPortRange(String),
    /// The pattern has no bytes, or an offset beyond any frame.
    #[error("signature {0:?}: pattern must be 1..=256 bytes at an offset below 9000")]
    BadPattern(String),
    /// More rules than a `u16` index can name.
    #[error("too many signature rules (at most 65535)")]
    TooMany,
    /// The textual form could not be parsed.
    #[error("invalid signature {0:?}: expected `NAME [proto=tcp|udp|icmp|N] [dport=P[-Q]] [payload@OFF=HEX]`")]
    Syntax(String),
}

/// Maximum pattern length accepted.
pub const MAX_PATTERN_LEN: usize = 256;
/// Maximum pattern offset accepted (a jumbo frame's size).
pub const MAX_PATTERN_OFFSET: usize = 9000;

#[derive(Clone, Debug)]
struct CompiledRule {
    proto: Option<u8>,
    ports: Option<(u16, u16)>,
    /// (offset from L4 payload, start in `SignatureSet::bytes`, length)
    pattern: Option<(usize, usize, usize)>,
}

/// The compiled signature rules a worker checks every frame against.
///
/// Built on the control thread ([`SignatureSet::new`]); the worker owns its copy
/// and [`matches`](SignatureSet::matches) neither allocates nor locks. Patterns are
/// stored back to back in one buffer. Rules are tried in order; the first match wins.
#[derive(Clone, Debug, Default)]
pub struct SignatureSet {
    rules: Vec<CompiledRule>,
    names: Vec<String>,
    bytes: Vec<u8>,
}

impl SignatureSet {
    /// Validates and compiles `rules`.
    pub fn new(rules: Vec<SignatureRule>) -> Result<SignatureSet, SignatureError> {
        if rules.len() > u16::MAX as usize {
            return Err(SignatureError::TooMany);
        }
        let mut set = SignatureSet::default();
        for r in rules {
            if r.proto.is_none() && r.dst_ports.is_none() && r.pattern.is_none() {
                return Err(SignatureError::Empty(r.name));
            }
            if let Some((a, b)) = r.dst_ports {
                if a > b {
                    return Err(SignatureError::BadPortRange(r.name));
                }
            }
            let pattern = match &r.pattern {
                None => None,
                Some((off, pat)) => {
                    if pat.is_empty() || pat.len() > MAX_PATTERN_LEN || *off > MAX_PATTERN_OFFSET {
                        return Err(SignatureError::BadPattern(r.name));
                    }
                    let start = set.bytes.len();
                    set.bytes.extend_from_slice(pat);
                    Some((*off, start, pat.len()))
                }
            };
            set.rules.push(CompiledRule {
                proto: r.proto,
                ports: r.dst_ports,
                pattern,
            });
            set.names.push(r.name);
        }
        Ok(set)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules (then `matches` is a single branch).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name of rule `index`, for events and logs.
    pub fn name(&self, index: u16) -> Option<&str> {
        self.names.get(index as usize).map(String::as_str)
    }

    /// The index of the first rule matching `frame` (parsed as `flow`).
    ///
    /// *Fast path*: no allocation, no panics on any input (a `flow` inconsistent with
    /// `frame` simply fails to match).
    #[inline]
    pub fn matches(&self, flow: &Flow, frame: &[u8]) -> Option<u16> {
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(p) = r.proto {
                if flow.l3.is_none() || flow.proto != p {
                    continue;
                }
            }
            if let Some((lo, hi)) = r.ports {
                if !flow.has_l4 || flow.dport < lo || flow.dport > hi {
                    continue;
                }
            }
            if let Some((off, start, len)) = r.pattern {
                if !flow.has_l4 {
                    continue;
                }
                let at = flow.payload_offset as usize + off;
                let (Some(got), Some(want)) =
                    (frame.get(at..at + len), self.bytes.get(start..start + len))
                else {
                    continue;
                };
                if got != want {
                    continue;
                }
            }
            return Some(i as u16);
        }
        None
    }
}

impl FromStr for SignatureRule {
    type Err = SignatureError;
    /// Parses `NAME [proto=tcp|udp|icmp|N] [dport=P|P-Q] [payload@OFF=HEX]`, e.g.
    /// `ntp-monlist proto=udp dport=123 payload@3=2a`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SignatureError::Syntax(s.to_string());
        let mut it = s.split_whitespace();
        let name = it.next().filter(|n| !n.contains('=')).ok_or_else(err)?;
        let mut rule = SignatureRule {
            name: name.to_string(),
            proto: None,
            dst_ports: None,
            pattern: None,
        };
        for tok in it {
            let (key, val) = tok.split_once('=').ok_or_else(err)?;
            if key == "proto" {
                rule.proto = Some(match val {
                    "tcp" => ipproto::TCP,
                    "udp" => ipproto::UDP,
                    "icmp" => ipproto::ICMP,
                    n => n.parse().map_err(|_| err())?,
                });
            } else if key == "dport" {
                let (a, b) = val.split_once('-').unwrap_or((val, val));
                rule.dst_ports =
                    Some((a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?));
            } else if let Some(off) = key.strip_prefix("payload@") {
                let off: usize = off.parse().map_err(|_| err())?;
                if val.len() % 2 != 0 || !val.is_ascii() {
                    return Err(err());
                }
                let bytes = (0..val.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&val[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| err())?;
                rule.pattern = Some((off, bytes));
            } else {
                return Err(err());
            }
        }
        Ok(rule)
    }
}

// ---------------------------------------------------------------------------
// Counters (worker side)
// ---------------------------------------------------------------------------

/// Slots of the SYN matching table in [`DosCounters`] (a power of two).
pub const SYN_TABLE_SLOTS: usize = 1024;

/// Cumulative per-VM traffic counters kept by the worker that receives the VM's
/// inbound traffic. Plain numbers (the data plane mirrors the `pub` fields into
/// atomics for the control thread) plus a private SYN matching table.
#[derive(Clone)]
pub struct DosCounters {
    /// Frames arriving for the VM.
    pub pkts: u64,
    /// Bytes arriving for the VM.
    pub bytes: u64,
    /// TCP segments with SYN and without ACK (connection attempts).
    pub syn: u64,
    /// TCP segments carrying ACK (SYN-ACKs included).
    pub syn_ack_or_ack: u64,
    /// ACKs or RSTs (without SYN) whose 4-tuple matched a pending SYN: resolved handshakes.
    pub syn_resolved: u64,
    /// Frames that matched a signature rule.
    pub sig_hits: u64,
    /// Index of the rule of the latest signature hit.
    pub last_sig_rule: u16,
    syn_table: [u8; SYN_TABLE_SLOTS],
    sweep: u16,
}

impl Default for DosCounters {
    fn default() -> Self {
        DosCounters {
            pkts: 0,
            bytes: 0,
            syn: 0,
            syn_ack_or_ack: 0,
            syn_resolved: 0,
            sig_hits: 0,
            last_sig_rule: 0,
            syn_table: [0; SYN_TABLE_SLOTS],
            sweep: 0,
        }
    }
}

impl fmt::Debug for DosCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DosCounters")
            .field("pkts", &self.pkts)
            .field("bytes", &self.bytes)
            .field("syn", &self.syn)
            .field("syn_ack_or_ack", &self.syn_ack_or_ack)
            .field("syn_resolved", &self.syn_resolved)
            .field("sig_hits", &self.sig_hits)
            .field("last_sig_rule", &self.last_sig_rule)
            .finish()
    }
}

#[inline]
fn syn_slot(flow: &Flow) -> usize {
    let a = flow.l3.unwrap_or_default();
    let fold = |x: u128| (x as u64) ^ ((x >> 64) as u64);
    let mut h = fold(a.src) ^ fold(a.dst).rotate_left(17);
    h ^= ((flow.sport as u64) << 16 | flow.dport as u64) << 32;
    h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - SYN_TABLE_SLOTS.trailing_zeros())) as usize
}

impl DosCounters {
    /// Accounts one frame of `len` bytes arriving for the VM, **before** any
    /// mitigation is applied. *Fast path*: no allocation, a few branches.
    #[inline]
    pub fn account(&mut self, flow: &Flow, len: u32) {
        self.pkts += 1;
        self.bytes += len as u64;
        if flow.proto != ipproto::TCP || !flow.has_l4 || flow.l3.is_none() {
            return;
        }
        let f = flow.tcp_flags;
        let syn = f & tcpflags::SYN != 0;
        let ack = f & tcpflags::ACK != 0;
        if ack {
            self.syn_ack_or_ack += 1;
        }
        if syn && !ack {
            self.syn += 1;
            // Age one slot per SYN so entries of lost handshakes do not pile up.
            self.syn_table[self.sweep as usize % SYN_TABLE_SLOTS] = 0;
            self.sweep = self.sweep.wrapping_add(1);
            let s = &mut self.syn_table[syn_slot(flow)];
            *s = s.saturating_add(1);
        } else if !syn && (ack || f & tcpflags::RST != 0) {
            let s = &mut self.syn_table[syn_slot(flow)];
            if *s > 0 {
                *s -= 1;
                self.syn_resolved += 1;
            }
        }
    }

    /// Counts a hit of signature rule `rule` (as returned by [`SignatureSet::matches`]).
    #[inline]
    pub fn record_signature(&mut self, rule: u16) {
        self.sig_hits += 1;
        self.last_sig_rule = rule;
    }
}

// ---------------------------------------------------------------------------
// Configuration (control side)
// ---------------------------------------------------------------------------

/// A response to an attack (\[0126\]–\[0131\]); several can be combined per VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DosResponse {
    /// Police all traffic to the VM to at most `pps` frames per second.
    RateLimit {
        /// Packets per second allowed while the attack lasts.
        pps: u64,
    },
    /// Drop frames positively identified as attack traffic (signature matches, and
    /// pure SYNs during a SYN flood).
    Drop,
    /// Hold suspicious frames for `hold` before delivering them (\[0130\], claim 44),
    /// at most `max_frames` at once (a full queue drops).
    Delay {
        /// How long a frame is held.
        hold: Nanos,
        /// Bound of the delay queue.
        max_frames: usize,
    },
    /// Move the VM's traffic to the named alternate uplink (bond) (\[0128\], claim 48).
    FailoverUplink(String),
    /// Suspend VMs of lower priority sharing the VM's uplinks (\[0126\], claim 40).
    SuspendLowerPriority,
    /// Ask the orchestrator to migrate the VM (\[0131\], claim 41).
    RequestMigration,
    /// Raise an alert on start and end (\[0133\]).
    Alert,
}

/// Default bound of the delay queue when `delay:` gives none.
pub const DEFAULT_DELAY_FRAMES: usize = 1024;

/// Why a response or duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DoS response {0:?}: expected rate-limit:PPS, drop, delay:DURATION[:FRAMES], failover:BOND, suspend-lower-priority, migrate or alert")]
pub struct DosResponseError(pub String);

/// Parses a duration like `50ms`, `1s`, `200us`, `750ns` into [`Nanos`].
pub fn parse_duration(s: &str) -> Option<Nanos> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul = match unit {
        "ns" => 1,
        "us" => US,
        "ms" => MS,
        "s" => SEC,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Formats [`Nanos`] with the largest exact unit (`50ms`, `1s`, `7ns`).
pub fn format_duration(n: Nanos) -> String {
    if n != 0 && n % SEC == 0 {
        format!("{}s", n / SEC)
    } else if n != 0 && n % MS == 0 {
        format!("{}ms", n / MS)
    } else if n != 0 && n % US == 0 {
        format!("{}us", n / US)
    } else {
        format!("{n}ns")
    }
}

impl FromStr for DosResponse {
    type Err = DosResponseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DosResponseError(s.to_string());
        let (head, arg) = match s.trim().split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s.trim(), None),
        };
        Ok(match (head, arg) {
            ("rate-limit", Some(a)) => {
                let pps: u64 = a.parse().map_err(|_| err())?;
                if pps == 0 || pps > u32::MAX as u64 {
                    return Err(err());
                }
                DosResponse::RateLimit { pps }
            }
            ("drop", None) => DosResponse::Drop,
            ("delay", Some(a)) => {
                let (d, frames) = match a.split_once(':') {
                    Some((d, f)) => (d, f.parse().map_err(|_| err())?),
                    None => (a, DEFAULT_DELAY_FRAMES),
                };
                let hold = parse_duration(d).ok_or_else(err)?;
                if hold == 0 || hold > MAX_DELAY_HOLD || frames == 0 {
                    return Err(err());
                }
                DosResponse::Delay {
                    hold,
                    max_frames: frames,
                }
            }
            ("failover", Some(b)) if !b.is_empty() && !b.contains(char::is_whitespace) => {
                DosResponse::FailoverUplink(b.to_string())
            }
            ("suspend-lower-priority", None) => DosResponse::SuspendLowerPriority,
            ("migrate", None) => DosResponse::RequestMigration,
            ("alert", None) => DosResponse::Alert,
            _ => return Err(err()),
        })
    }
}

impl fmt::Display for DosResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DosResponse::RateLimit { pps } => write!(f, "rate-limit:{pps}"),
            DosResponse::Drop => f.write_str("drop"),
            DosResponse::Delay { hold, max_frames } => {
                write!(f, "delay:{}:{max_frames}", format_duration(*hold))
            }
            DosResponse::FailoverUplink(b) => write!(f, "failover:{b}"),
            DosResponse::SuspendLowerPriority => f.write_str("suspend-lower-priority"),
            DosResponse::RequestMigration => f.write_str("migrate"),
            DosResponse::Alert => f.write_str("alert"),
        }
    }
}

/// Longest accepted delay hold (it must fit the mitigation word in microseconds).
pub const MAX_DELAY_HOLD: Nanos = 60 * SEC;

/// Per-VM detection thresholds and responses. `None` disables a detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DosConfig {
    /// Frames per second arriving for the VM above which a rate flood is declared.
    pub max_pps: Option<u64>,
    /// Bits per second arriving for the VM above which a rate flood is declared.
    pub max_bps: Option<u64>,
    /// Half-open handshakes per second ((SYNs − resolved) normalized to one second)
    /// above which a SYN flood is declared.
    pub max_half_open_per_sec: Option<u64>,
    /// Signature hits within one window that declare a signature attack (≥ 1).
    pub min_signature_hits: u64,
    /// Length of the sliding measurement window (default 50 ms).
    pub window: Nanos,
    /// Quiet time before an attack is declared over (default 1 s).
    pub clear_after: Nanos,
    /// Low-water mark, in percent of a threshold, that counts as quiet (default 50).
    pub clear_ratio_pct: u8,
    /// Responses applied while any attack on the VM is active.
    pub responses: Vec<DosResponse>,
}

impl Default for DosConfig {
    fn default() -> Self {
        DosConfig {
            max_pps: None,
            max_bps: None,
            max_half_open_per_sec: None,
            min_signature_hits: 1,
            window: 50 * MS,
            clear_after: SEC,
            clear_ratio_pct: 50,
            responses: Vec::new(),
        }
    }
}

impl DosConfig {
    /// The delay policy, when a `Delay` response is configured.
    pub fn delay_policy(&self) -> Option<DelayPolicy> {
        self.responses.iter().find_map(|r| match r {
            DosResponse::Delay { hold, max_frames } => Some(DelayPolicy {
                hold: *hold,
                max_frames: *max_frames,
            }),
            _ => None,
        })
    }
}

// ---------------------------------------------------------------------------
// Events and state (control side)
// ---------------------------------------------------------------------------

/// What kind of attack was seen, with the measurement that triggered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackKind {
    /// Frame or bit rate above `max_pps` / `max_bps`.
    RateFlood {
        /// Measured frames per second.
        pps: u64,
        /// Measured bits per second.
        bps: u64,
    },
    /// Half-open handshakes per second above `max_half_open_per_sec`.
    SynFlood {
        /// Measured half-open handshakes per second.
        half_open: u64,
    },
    /// Signature hits; `rule` is the index of the latest rule hit.
    Signature {
        /// Rule index in the VM's [`SignatureSet`].
        rule: u16,
    },
}

/// The three independent detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackClass {
    /// [`AttackKind::RateFlood`].
    Rate,
    /// [`AttackKind::SynFlood`].
    Syn,
    /// [`AttackKind::Signature`].
    Signature,
}

impl AttackKind {
    /// Which detector this kind comes from.
    pub fn class(&self) -> AttackClass {
        match self {
            AttackKind::RateFlood { .. } => AttackClass::Rate,
            AttackKind::SynFlood { .. } => AttackClass::Syn,
            AttackKind::Signature { .. } => AttackClass::Signature,
        }
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttackKind::RateFlood { pps, bps } => write!(f, "rate flood ({pps} pps, {bps} bps)"),
            AttackKind::SynFlood { half_open } => write!(f, "SYN flood ({half_open} half-open/s)"),
            AttackKind::Signature { rule } => write!(f, "signature #{rule}"),
        }
    }
}

/// A change of a VM's attack status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DosEvent {
    /// An attack was detected at `at`.
    AttackStarted {
        /// What was detected.
        kind: AttackKind,
        /// When (the `observe` time that detected it).
        at: Nanos,
    },
    /// An attack reported earlier ended at `at` (`kind` is the one reported at start).
    AttackEnded {
        /// What ended.
        kind: AttackKind,
        /// When.
        at: Nanos,
    },
}

impl fmt::Display for DosEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DosEvent::AttackStarted { kind, .. } => write!(f, "{kind} detected"),
            DosEvent::AttackEnded { kind, .. } => write!(f, "{kind} ended"),
        }
    }
}

/// The per-VM mitigation the worker applies, small enough to publish as one
/// `AtomicU64` ([`pack`](Mitigation::pack)); all-zero means "no attack, pass".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Mitigation {
    /// A rate flood is active: all traffic to the VM is suspicious.
    pub rate_flood: bool,
    /// A SYN flood is active: pure SYNs are attack traffic.
    pub syn_flood: bool,
    /// A signature attack is active.
    pub signature: bool,
    /// Drop frames identified as attack traffic.
    pub drop: bool,
    /// Police the VM's traffic to this many frames per second (0 = no policing).
    pub rate_limit_pps: u32,
    /// Hold suspicious frames this many microseconds (0 = no delay).
    pub delay_hold_us: u32,
}

/// What the worker does with one frame, from [`Mitigation::verdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameVerdict {
    /// Drop the frame.
    pub drop: bool,
    /// Pass the frame through the VM's [`PacketBudget`]; drop it when over.
    pub police: bool,
    /// Put the frame in the delay queue ([`DelayPolicy`]).
    pub delay: bool,
}

impl FrameVerdict {
    /// Deliver normally.
    pub const PASS: FrameVerdict = FrameVerdict {
        drop: false,
        police: false,
        delay: false,
    };
}

impl Mitigation {
    /// No attack.
    pub const NONE: Mitigation = Mitigation {
        rate_flood: false,
        syn_flood: false,
        signature: false,
        drop: false,
        rate_limit_pps: 0,
        delay_hold_us: 0,
    };

    /// True when any attack is active.
    #[inline]
    pub fn active(&self) -> bool {
        self.rate_flood || self.syn_flood || self.signature
    }

    /// Packs into a word: bits 0–3 rate/syn/signature/drop, bits 4–31 delay hold in
    /// µs (28 bits), bits 32–63 rate limit pps.
    #[inline]
    pub fn pack(&self) -> u64 {
        (self.rate_flood as u64)
            | (self.syn_flood as u64) << 1
            | (self.signature as u64) << 2
            | (self.drop as u64) << 3
            | ((self.delay_hold_us.min(0x0fff_ffff) as u64) << 4)
            | (self.rate_limit_pps as u64) << 32
    }

    /// Inverse of [`pack`](Mitigation::pack).
    #[inline]
    pub fn unpack(w: u64) -> Mitigation {
        Mitigation {
            rate_flood: w & 1 != 0,
            syn_flood: w & 2 != 0,
            signature: w & 4 != 0,
            drop: w & 8 != 0,
            delay_hold_us: ((w >> 4) & 0x0fff_ffff) as u32,
            rate_limit_pps: (w >> 32) as u32,
        }
    }

    /// Decides what to do with one frame arriving for the VM. `sig` is the result of
    /// [`SignatureSet::matches`] for it. *Fast path.*
    ///
    /// Frames are *identified* attack traffic when they match a signature or are pure
    /// SYNs during a SYN flood; *suspicious* when identified or during a rate flood.
    /// `drop` applies to identified frames, `delay` to suspicious ones, policing to
    /// every frame while an attack is active. Identified frames are never policed
    /// through the shared budget when they are dropped anyway.
    #[inline]
    pub fn verdict(&self, flow: &Flow, sig: Option<u16>) -> FrameVerdict {
        if !self.active() {
            return FrameVerdict::PASS;
        }
        let pure_syn = flow.proto == ipproto::TCP
            && flow.has_l4
            && flow.tcp_flags & (tcpflags::SYN | tcpflags::ACK) == tcpflags::SYN;
        let identified = sig.is_some() || (self.syn_flood && pure_syn);
        let suspicious = identified || self.rate_flood;
        let drop = self.drop && identified;
        FrameVerdict {
            drop,
            police: !drop && self.rate_limit_pps > 0,
            delay: !drop && suspicious && self.delay_hold_us > 0,
        }
    }
}

/// When a held frame may be delivered (\[0130\]: delay processing by the VM of
/// suspicious frames to give the NIC manager time to act).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayPolicy {
    /// How long each frame is held.
    pub hold: Nanos,
    /// Bound of the queue.
    pub max_frames: usize,
}

impl DelayPolicy {
    /// The release time of a frame enqueued at `enqueued`.
    #[inline]
    pub fn release_at(&self, enqueued: Nanos) -> Nanos {
        enqueued.saturating_add(self.hold)
    }
    /// Whether one more frame fits a queue holding `queued` frames (else drop it).
    #[inline]
    pub fn admit(&self, queued: usize) -> bool {
        queued < self.max_frames
    }
}

/// A packets-per-second token bucket for the `RateLimit` response, owned by the
/// worker. Time is passed in. *Fast path*: no allocation, integer arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketBudget {
    pps: u64,
    /// Credit in packet·nanoseconds·pps units: one packet costs `SEC`.
    credit: u128,
    cap: u128,
    last: Nanos,
}

impl PacketBudget {
    /// A bucket of `pps` frames per second with room for `burst` frames (≥ 1), full.
    pub fn new(pps: u64, burst: u64, now: Nanos) -> PacketBudget {
        let cap = burst.max(1) as u128 * SEC as u128;
        PacketBudget {
            pps,
            credit: cap,
            cap,
            last: now,
        }
    }
    /// Changes the rate, keeping the current credit.
    pub fn set_rate(&mut self, pps: u64) {
        self.pps = pps;
    }
    /// Takes one frame's worth of credit; false when the frame must be dropped.
    #[inline]
    pub fn admit(&mut self, now: Nanos) -> bool {
        if now > self.last {
            let gained = (now - self.last) as u128 * self.pps as u128;
            self.credit = (self.credit + gained).min(self.cap);
            self.last = now;
        }
        if self.credit >= SEC as u128 {
            self.credit -= SEC as u128;
            true
        } else {
            false
        }
    }
}

/// Which attacks are active on a VM and which responses apply now.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DosState {
    /// The active rate flood, as reported at its start.
    pub rate_flood: Option<AttackKind>,
    /// The active SYN flood.
    pub syn_flood: Option<AttackKind>,
    /// The active signature attack.
    pub signature: Option<AttackKind>,
    /// When the earliest active attack started.
    pub since: Option<Nanos>,
    /// The worker-side mitigation word to publish.
    pub mitigation: Mitigation,
    /// Alternate uplink the VM's traffic should use now.
    pub failover_uplink: Option<String>,
    /// Lower-priority VMs should be suspended now.
    pub suspend_lower_priority: bool,
    /// The VM's migration should be requested.
    pub request_migration: bool,
    /// Alerts are configured.
    pub alert: bool,
}

impl DosState {
    /// True when any attack is active.
    pub fn under_attack(&self) -> bool {
        self.rate_flood.is_some() || self.syn_flood.is_some() || self.signature.is_some()
    }
}

// ---------------------------------------------------------------------------
// Detector (control side)
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Sample {
    t: Nanos,
    pkts: u64,
    bytes: u64,
    syn: u64,
    resolved: u64,
    sig: u64,
}

impl Sample {
    fn of(t: Nanos, c: &DosCounters) -> Sample {
        Sample {
            t,
            pkts: c.pkts,
            bytes: c.bytes,
            syn: c.syn,
            resolved: c.syn_resolved,
            sig: c.sig_hits,
        }
    }
    fn regressed(&self, c: &DosCounters) -> bool {
        c.pkts < self.pkts
            || c.bytes < self.bytes
            || c.syn < self.syn
            || c.syn_resolved < self.resolved
            || c.sig_hits < self.sig
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Track {
    active: Option<(AttackKind, Nanos)>,
    quiet_since: Option<Nanos>,
}

/// Upper bound on kept samples (observe calls within one window).
const MAX_SAMPLES: usize = 4096;

/// Per-VM DoS detector, owned by the control thread.
#[derive(Clone, Debug)]
pub struct DosDetector {
    cfg: DosConfig,
    samples: VecDeque<Sample>,
    tracks: [Track; 3],
}

fn rate(delta: u64, span: Nanos) -> u64 {
    (delta as u128 * SEC as u128 / span.max(1) as u128).min(u64::MAX as u128) as u64
}

fn low_water(threshold: u64, pct: u8) -> u64 {
    (threshold as u128 * pct.min(100) as u128 / 100) as u64
}

impl DosDetector {
    /// A detector with `cfg`. Windows of 0 are raised to 1 ms.
    pub fn new(mut cfg: DosConfig) -> DosDetector {
        cfg.window = cfg.window.max(MS);
        cfg.min_signature_hits = cfg.min_signature_hits.max(1);
        DosDetector {
            cfg,
            samples: VecDeque::new(),
            tracks: [Track::default(); 3],
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DosConfig {
        &self.cfg
    }

    /// Feeds the VM's cumulative counters at `now` (call every few ms; 10 ms is
    /// typical) and returns the events this observation produced (usually none; an
    /// empty `Vec` does not allocate). Counters going backwards (a worker restart)
    /// restart the measurement; a `now` earlier than the previous one is ignored.
    pub fn observe(&mut self, now: Nanos, totals: &DosCounters) -> Vec<DosEvent> {
        let mut events = Vec::new();
        if let Some(last) = self.samples.back() {
            if now < last.t {
                return events;
            }
            if last.regressed(totals) {
                self.samples.clear();
            }
        }
        self.samples.push_back(Sample::of(now, totals));
        // Keep the newest sample at or before `now - window`, and everything after it.
        let horizon = now.saturating_sub(self.cfg.window);
        while self.samples.len() > MAX_SAMPLES
            || (self.samples.len() >= 2 && self.samples[1].t <= horizon)
        {
            self.samples.pop_front();
        }
        let (Some(base), Some(cur)) = (self.samples.front().copied(), self.samples.back().copied())
        else {
            return events;
        };
        let span = cur.t - base.t;
        if span < self.cfg.window / 2 || span == 0 {
            return events;
        }
        let pps = rate(cur.pkts - base.pkts, span);
        let bps = rate((cur.bytes - base.bytes).saturating_mul(8), span);
        let half_open = rate(
            (cur.syn - base.syn).saturating_sub(cur.resolved - base.resolved),
            span,
        );
        let hits = cur.sig - base.sig;
        let pct = self.cfg.clear_ratio_pct;

        // Rate flood.
        let over =
            self.cfg.max_pps.is_some_and(|m| pps > m) || self.cfg.max_bps.is_some_and(|m| bps > m);
        let quiet = self.cfg.max_pps.map_or(true, |m| pps <= low_water(m, pct))
            && self.cfg.max_bps.map_or(true, |m| bps <= low_water(m, pct));
        self.step(
            0,
            now,
            over,
            quiet,
            AttackKind::RateFlood { pps, bps },
            &mut events,
        );
        // SYN flood.
        let over = self
            .cfg
            .max_half_open_per_sec
            .is_some_and(|m| half_open > m);
        let quiet = self
            .cfg
            .max_half_open_per_sec
            .map_or(true, |m| half_open <= low_water(m, pct));
        self.step(
            1,
            now,
            over,
            quiet,
            AttackKind::SynFlood { half_open },
            &mut events,
        );
        // Signatures.
        let over = hits >= self.cfg.min_signature_hits;
        let kind = AttackKind::Signature {
            rule: totals.last_sig_rule,
        };
        self.step(2, now, over, hits == 0, kind, &mut events);
        events
    }

    fn step(
        &mut self,
        i: usize,
        now: Nanos,
        over: bool,
        quiet: bool,
        kind: AttackKind,
        ev: &mut Vec<DosEvent>,
    ) {
        let clear_after = self.cfg.clear_after;
        let t = &mut self.tracks[i];
        match t.active {
            None => {
                if over {
                    t.active = Some((kind, now));
                    t.quiet_since = None;
                    ev.push(DosEvent::AttackStarted { kind, at: now });
                }
            }
            Some((started, _)) => {
                if quiet {
                    let since = *t.quiet_since.get_or_insert(now);
                    if now - since >= clear_after {
                        t.active = None;
                        t.quiet_since = None;
                        ev.push(DosEvent::AttackEnded {
                            kind: started,
                            at: now,
                        });
                    }
                } else {
                    t.quiet_since = None;
                }
            }
        }
    }

    /// Which attacks are active and which responses apply now.
    pub fn state(&self) -> DosState {
        let [r, s, g] = self.tracks.map(|t| t.active);
        let mut st = DosState {
            rate_flood: r.map(|a| a.0),
            syn_flood: s.map(|a| a.0),
            signature: g.map(|a| a.0),
            since: [r, s, g].iter().flatten().map(|a| a.1).min(),
            ..DosState::default()
        };
        if !st.under_attack() {
            return st;
        }
        st.mitigation = self.mitigation();
        for resp in &self.cfg.responses {
            match resp {
                DosResponse::FailoverUplink(b) => st.failover_uplink = Some(b.clone()),
                DosResponse::SuspendLowerPriority => st.suspend_lower_priority = true,
                DosResponse::RequestMigration => st.request_migration = true,
                DosResponse::Alert => st.alert = true,
                _ => {}
            }
        }
        st
    }

    /// The mitigation word's contents (same as `state().mitigation`). Does not allocate.
    pub fn mitigation(&self) -> Mitigation {
        let [r, s, g] = self.tracks.map(|t| t.active.is_some());
        if !(r || s || g) {
            return Mitigation::NONE;
        }
        let mut m = Mitigation {
            rate_flood: r,
            syn_flood: s,
            signature: g,
            ..Mitigation::NONE
        };
        for resp in &self.cfg.responses {
            match resp {
                DosResponse::RateLimit { pps } => {
                    let pps = (*pps).clamp(1, u32::MAX as u64) as u32;
                    m.rate_limit_pps = if m.rate_limit_pps == 0 {
                        pps
                    } else {
                        m.rate_limit_pps.min(pps)
                    };
                }
                DosResponse::Drop => m.drop = true,
                DosResponse::Delay { hold, .. } => {
                    m.delay_hold_us = (hold / US).clamp(1, 0x0fff_ffff) as u32;
                }
                _ => {}
            }
        }
        m
    }
}

#[cfg(test)]
mod tests;
