//! IEEE 802.3ad / 802.1AX link aggregation control (LACP), as pure logic.
//!
//! Implements specification paragraphs [0071] (static and dynamic 802.3ad aggregation
//! as a NIC teaming function), [0086] (find out whether the switch speaks 802.3ad and,
//! if so, form a partnership; otherwise keep teaming outgoing traffic — here the
//! `lacp_fallback` setting) and [0087] (ports facing the same switch aggregate
//! together, a port facing another switch forms a separate partnership).
//!
//! # Design
//! - [`pdu`]: strict, allocation-free LACPDU / Marker PDU codec over whole Ethernet
//!   frames.
//! - [`LacpBond`]: one bond's LACP: per member the standard's Receive, Periodic
//!   Transmission and Mux (coupled control) machines, plus the bond-wide Selection
//!   logic, Transmit machine with its rate limit, and the Marker responder.
//! - [`LacpStatus`]: a snapshot for `lacp show`, rendered like `ovs-appctl lacp/show`.
//!
//! # Invariants
//! - LACP runs only on time passed in (`now`) and frames passed to
//!   [`LacpBond::on_frame`]; it never looks at data traffic and never reads a clock.
//! - The actor system ID is [`LacpConfig::system_id`] (the bond's MAC) on every member,
//!   always; a member failing never changes it (DPDK's mode 4 does).
//! - At most [`TX_LIMIT`] LACPDUs leave a member per [`FAST_PERIODIC`]; nothing leaves
//!   a member whose Periodic machine is in NO_PERIODIC (so passive–passive stays silent).
//! - Selection is deterministic: all eligible ports with equal [`LagId`] (partner
//!   system priority + system + key, actor key) form one candidate aggregator; the bond
//!   uses exactly one, the one with the most ports (ties: keep the current one if it
//!   has a port attached, then the best partner system priority/ID, then the lowest
//!   key). Ports of other
//!   candidates are STANDBY, ports with no partner (defaulted), a partner marked
//!   individual, our own system (loopback) or a half-duplex link are UNSELECTED.
//! - A member distributes ([`LacpBond::is_distributing`]) only while its link is up
//!   and its Mux is COLLECTING_DISTRIBUTING. The machines run to a fixed point on
//!   every input, so a member enters distribution in the same call that delivers the
//!   partner's Synchronization — the only delay is the standard's 2 s wait_while.
//! - No input panics; malformed frames are counted per [`PduError`] kind and returned.
//!
//! # Ownership
//! A `LacpBond` is owned by the data plane's control thread, which feeds it link
//! events, received slow-protocol frames and `tick`s, then drains `poll_tx`. Workers
//! only consume the verdicts (`is_distributing`) that the control thread publishes.
//!
//! # Deviations and choices
//! - When periodic transmission starts (link up, or a passive port hears an active
//!   partner) a LACPDU is sent at once instead of one fast period later.
//! - Partner_Admin defaults ([`PARTNER_ADMIN`]) ask for short timeouts, so an active
//!   port with no partner probes every second.
//! - Churn detection machines are not implemented; `lacp show` exposes the states.
//! - A link that goes down is UNSELECTED at once (the port leaves its aggregator),
//!   rather than waiting for the partner information to expire.

pub mod config;
pub mod pdu;
mod port;
mod status;
#[cfg(test)]
mod tests;

pub use config::{
    Fallback, LacpConfig, LacpError, LacpMode, LacpRate, ParseSettingError, DEFAULT_PRIORITY,
    MAX_MEMBERS,
};
pub use pdu::{
    decode, encode_lacpdu, encode_marker, Lacpdu, MarkerKind, MarkerPdu, PduError, PortInfo,
    PortState, SlowPdu, FRAME_LEN,
};
pub use port::{
    LagId, MemberCounters, MuxState, PeriodicState, ReceiveState, Selected, AGGREGATE_WAIT,
    FAST_PERIODIC, LONG_TIMEOUT, MARKER_QUEUE, PARTNER_ADMIN, SHORT_TIMEOUT, SLOW_PERIODIC,
    TX_LIMIT,
};
pub use status::{AggregatorStatus, LacpStatus, MemberStatus};

use crate::time::Nanos;
use crate::wire::MacAddr;
use port::Port;

/// Upper bound on machine passes per input; the machines settle in far fewer.
const MAX_PASSES: usize = 16;

/// One bond's LACP: configuration, members and the aggregator in use.
#[derive(Clone, Debug)]
pub struct LacpBond {
    cfg: LacpConfig,
    ports: Vec<Port>,
    active: Option<LagId>,
}

impl LacpBond {
    /// Creates the bond's LACP with all members' links down. `member_macs[i]` is the
    /// source MAC of member `i`'s PDUs; member `i` is LACP port number `i + 1`.
    pub fn new(cfg: LacpConfig, member_macs: &[MacAddr], now: Nanos) -> Result<Self, LacpError> {
        config::validate(&cfg, member_macs.len())?;
        if let Some((member, &mac)) = member_macs
            .iter()
            .enumerate()
            .find(|(_, m)| !m.is_unicast())
        {
            return Err(LacpError::BadMemberMac { member, mac });
        }
        let ports = member_macs
            .iter()
            .enumerate()
            .map(|(i, &mac)| Port::new(mac, (i + 1) as u16, &cfg, i))
            .collect();
        let mut bond = LacpBond {
            cfg,
            ports,
            active: None,
        };
        bond.run(now);
        Ok(bond)
    }

    /// The configuration in force.
    pub fn config(&self) -> &LacpConfig {
        &self.cfg
    }

    /// Number of members.
    pub fn members(&self) -> usize {
        self.ports.len()
    }

    /// Replaces the configuration at run time. Switching LACP on or off restarts every
    /// member's machines; other changes update the actor information, transmit it at
    /// once and, when system, priority or key change, re-run selection.
    pub fn set_config(&mut self, cfg: LacpConfig, now: Nanos) -> Result<(), LacpError> {
        config::validate(&cfg, self.ports.len())?;
        let restart = (cfg.mode == LacpMode::Off) != (self.cfg.mode == LacpMode::Off);
        let reselect = cfg.system_id != self.cfg.system_id
            || cfg.system_priority != self.cfg.system_priority
            || cfg.key != self.cfg.key;
        self.cfg = cfg;
        for (i, p) in self.ports.iter_mut().enumerate() {
            let changed = p.apply_config(&self.cfg, i);
            if restart {
                p.begin();
            } else {
                if reselect {
                    p.selected = Selected::Unselected;
                }
                p.ntt |= changed;
            }
        }
        if restart {
            self.active = None;
        }
        self.run(now);
        Ok(())
    }

    /// Reports member `member`'s link state. A change of duplex on an up link restarts
    /// its Receive machine (LACP needs full duplex). Out-of-range members are ignored.
    pub fn set_link(
        &mut self,
        member: usize,
        up: bool,
        speed_mbps: u32,
        full_duplex: bool,
        now: Nanos,
    ) {
        let Some(p) = self.ports.get_mut(member) else {
            return;
        };
        if p.link_up && up && p.full_duplex != full_duplex {
            // Bounce through PORT_DISABLED so LACP_Enabled is re-evaluated.
            p.link_up = false;
            self.run(now);
        }
        let p = &mut self.ports[member];
        p.link_up = up;
        p.speed_mbps = speed_mbps;
        p.full_duplex = full_duplex;
        if !up {
            p.clear_markers();
        }
        self.run(now);
    }

    /// Takes one received slow-protocol frame (whole Ethernet frame) on `member`.
    /// Malformed frames are counted in the member's counters and returned as the error.
    /// Valid PDUs are ignored (and counted) with LACP off, on a down link or on a
    /// half-duplex link. Out-of-range members are ignored.
    pub fn on_frame(&mut self, member: usize, frame: &[u8], now: Nanos) -> Result<(), PduError> {
        let off = self.cfg.mode == LacpMode::Off;
        let Some(p) = self.ports.get_mut(member) else {
            return Ok(());
        };
        let pdu = match pdu::decode(frame) {
            Ok(pdu) => pdu,
            Err(e) => {
                p.counters.rx_errors[e.index()] += 1;
                return Err(e);
            }
        };
        match pdu {
            SlowPdu::Lacp(l) => {
                p.counters.rx_lacpdu += 1;
                if off {
                    p.counters.rx_ignored += 1;
                    return Ok(());
                }
                self.run(now);
                let p = &mut self.ports[member];
                if !p.takes_pdus() {
                    p.counters.rx_ignored += 1;
                    return Ok(());
                }
                p.enter_current(&l, now);
                // port_moved: a disabled port whose partner (system, port) now shows
                // up on this port must forget it.
                for (i, q) in self.ports.iter_mut().enumerate() {
                    if i != member
                        && q.rx == ReceiveState::PortDisabled
                        && q.partner.system == l.actor.system
                        && q.partner.system_priority == l.actor.system_priority
                        && q.partner.port == l.actor.port
                    {
                        q.port_moved = true;
                    }
                }
                self.run(now);
            }
            SlowPdu::Marker(m) => match m.kind {
                MarkerKind::Information => {
                    p.counters.rx_marker += 1;
                    if off || !p.link_up {
                        p.counters.rx_ignored += 1;
                    } else {
                        p.push_marker(m);
                    }
                }
                MarkerKind::Response => p.counters.rx_marker_response += 1,
            },
        }
        Ok(())
    }

    /// Runs all timers up to `now`.
    pub fn tick(&mut self, now: Nanos) {
        self.run(now);
    }

    /// Emits due frames: Marker Responses, then LACPDUs where NTT is set and the rate
    /// limit allows. `out` gets the member index and a complete Ethernet frame.
    pub fn poll_tx(&mut self, now: Nanos, out: &mut dyn FnMut(usize, &[u8])) {
        if self.cfg.mode == LacpMode::Off {
            return;
        }
        self.run(now);
        let mut buf = [0u8; FRAME_LEN];
        for (i, p) in self.ports.iter_mut().enumerate() {
            if !p.link_up {
                continue;
            }
            while let Some(m) = p.pop_marker() {
                let reply = MarkerPdu {
                    kind: MarkerKind::Response,
                    ..m
                };
                let n = pdu::encode_marker(p.mac, &reply, &mut buf);
                out(i, &buf[..n]);
                p.counters.tx_marker_response += 1;
            }
            if p.ntt && p.periodic != PeriodicState::NoPeriodic {
                if p.tx_allowed(now) {
                    let n = pdu::encode_lacpdu(p.mac, &p.lacpdu(), &mut buf);
                    out(i, &buf[..n]);
                    p.record_tx(now);
                } else {
                    p.counters.tx_rate_limited += 1;
                }
            }
        }
    }

    /// The member's LACP verdict: true if it may carry traffic (collecting and
    /// distributing). With LACP off: true for every member whose link is up.
    pub fn is_distributing(&self, member: usize) -> bool {
        match self.ports.get(member) {
            Some(p) if self.cfg.mode == LacpMode::Off => p.link_up,
            Some(p) => p.link_up && p.mux == MuxState::CollectingDistributing,
            None => false,
        }
    }

    /// True if the member collects (coupled control: the same as distributing).
    pub fn is_collecting(&self, member: usize) -> bool {
        self.is_distributing(member)
    }

    /// True when `lacp_fallback = active-backup`, LACP is on and no member hears a LACP
    /// partner (all are defaulted or down): the bond should then run active-backup over
    /// its up members (see [`Self::fallback_eligible`]).
    pub fn fallback_active(&self) -> bool {
        self.cfg.fallback == Fallback::ActiveBackup
            && self.cfg.mode != LacpMode::Off
            && !self
                .ports
                .iter()
                .any(|p| p.link_up && !p.actor.state.has(PortState::DEFAULTED))
    }

    /// True if fallback is active and this member's link is up, so the bond may pick
    /// it as the active-backup member.
    pub fn fallback_eligible(&self, member: usize) -> bool {
        self.fallback_active() && self.ports.get(member).is_some_and(|p| p.link_up)
    }

    /// True if at least one member hears a LACP partner.
    pub fn negotiated(&self) -> bool {
        self.cfg.mode != LacpMode::Off
            && self
                .ports
                .iter()
                .any(|p| p.link_up && !p.actor.state.has(PortState::DEFAULTED))
    }

    /// The aggregator the bond uses, if any.
    pub fn active_aggregator(&self) -> Option<LagId> {
        self.active
    }

    /// When `tick` next has work to do (a timer expiry or rate-limit release).
    pub fn next_deadline(&self) -> Option<Nanos> {
        if self.cfg.mode == LacpMode::Off {
            return None;
        }
        self.ports.iter().filter_map(|p| p.next_deadline()).min()
    }

    /// Snapshot for `lacp show`.
    pub fn status(&self) -> LacpStatus {
        status::snapshot(self)
    }

    /// The candidate aggregator member `i` belongs to, if it may aggregate at all.
    fn eligible_lag(&self, i: usize) -> Option<LagId> {
        let p = &self.ports[i];
        let has_partner = matches!(p.rx, ReceiveState::Current | ReceiveState::Expired)
            && !p.actor.state.has(PortState::DEFAULTED);
        let loopback = p.partner.system == p.actor.system
            && p.partner.system_priority == p.actor.system_priority;
        if !p.link_up
            || !p.lacp_enabled()
            || !has_partner
            || !p.partner.state.has(PortState::AGGREGATION)
            || loopback
        {
            return None;
        }
        Some(LagId {
            partner_system_priority: p.partner.system_priority,
            partner_system: p.partner.system,
            partner_key: p.partner.key,
            actor_key: p.actor.key,
        })
    }

    /// Selection logic: picks the active aggregator and sets each port's Selected.
    fn select(&mut self) -> bool {
        let n = self.ports.len();
        // The current aggregator earns the tie-break only once it carries a port past
        // WAITING, so the choice among fresh candidates does not depend on which
        // partner spoke first.
        let in_use = self.active.filter(|&id| {
            self.ports.iter().any(|p| {
                p.lag == Some(id)
                    && matches!(p.mux, MuxState::Attached | MuxState::CollectingDistributing)
            })
        });
        // Choose the active candidate (no allocation: O(n²) over a handful of ports).
        let mut best: Option<(usize, LagId)> = None;
        for i in 0..n {
            let Some(id) = self.eligible_lag(i) else {
                continue;
            };
            let count = (0..n).filter(|&j| self.eligible_lag(j) == Some(id)).count();
            let better = match best {
                None => true,
                Some((bc, bid)) => {
                    let rank = |c: usize, l: LagId| {
                        (
                            core::cmp::Reverse(c),
                            Some(l) != in_use,
                            l.partner_system_priority,
                            l.partner_system,
                            l.partner_key,
                            l.actor_key,
                        )
                    };
                    rank(count, id) < rank(bc, bid)
                }
            };
            if better {
                best = Some((count, id));
            }
        }
        let active = best.map(|(_, id)| id);
        let mut changed = active != self.active;
        self.active = active;
        for i in 0..n {
            let desired = self.eligible_lag(i);
            let p = &mut self.ports[i];
            let before = (p.selected, p.lag);
            if p.selected != Selected::Unselected && p.lag != desired {
                p.selected = Selected::Unselected;
            } else if p.selected == Selected::Selected && desired != active {
                p.selected = Selected::Standby;
            } else if p.selected == Selected::Standby && desired == active {
                p.selected = Selected::Selected;
            }
            if p.selected == Selected::Unselected && p.mux == MuxState::Detached {
                p.lag = desired;
                if desired.is_some() {
                    p.selected = if desired == active {
                        Selected::Selected
                    } else {
                        Selected::Standby
                    };
                }
            }
            changed |= before != (p.selected, p.lag);
        }
        changed
    }

    /// Runs every machine until nothing changes.
    fn run(&mut self, now: Nanos) {
        if self.cfg.mode == LacpMode::Off {
            return;
        }
        for _ in 0..MAX_PASSES {
            let mut changed = false;
            for p in self.ports.iter_mut() {
                changed |= p.step_rx(now);
                changed |= p.step_periodic(now);
            }
            changed |= self.select();
            // Ready: every SELECTED port still WAITING has its wait_while expired.
            let ready = self
                .ports
                .iter()
                .filter(|p| p.selected == Selected::Selected && p.mux == MuxState::Waiting)
                .all(|p| p.ready_n(now));
            for p in self.ports.iter_mut() {
                changed |= p.step_mux(now, ready);
            }
            if !changed {
                break;
            }
        }
    }

    pub(crate) fn ports(&self) -> &[Port] {
        &self.ports
    }
}
