//! `lacp show`: a plain-data snapshot of a bond's LACP and a text rendering in the
//! spirit of `ovs-appctl lacp/show`. Built on the control thread; not fast path.

use super::config::{Fallback, LacpMode, LacpRate};
use super::pdu::{PduError, PortInfo};
use super::port::{LagId, MemberCounters, MuxState, PeriodicState, ReceiveState, Selected};
use super::LacpBond;
use crate::wire::MacAddr;
use core::fmt;

/// The aggregator the bond uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AggregatorStatus {
    /// Its identity.
    pub id: LagId,
    /// Members selected into it.
    pub members: usize,
    /// Members of it collecting and distributing.
    pub distributing: usize,
}

/// One member's LACP state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MemberStatus {
    /// Name shown (default `member<i>`; the caller may put the port name here).
    pub name: String,
    /// Source MAC of its PDUs.
    pub mac: MacAddr,
    /// Link up.
    pub link_up: bool,
    /// Link speed.
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
    /// Receive machine state.
    pub receive: ReceiveState,
    /// Periodic Transmission machine state.
    pub periodic: PeriodicState,
    /// Mux machine state.
    pub mux: MuxState,
    /// Selection result.
    pub selected: Selected,
    /// Candidate aggregator it belongs to.
    pub lag: Option<LagId>,
    /// Whether it may carry traffic (the bond's LACP verdict).
    pub may_enable: bool,
    /// Actor operational information (what we send).
    pub actor: PortInfo,
    /// Partner operational information (what we believe about the partner).
    pub partner: PortInfo,
    /// Counters.
    pub counters: MemberCounters,
}

/// A bond's LACP state for `lacp show`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LacpStatus {
    /// Bond name shown in the header (default `bond`; the caller may set it).
    pub name: String,
    /// `lacp` setting.
    pub mode: LacpMode,
    /// `lacp_rate` setting.
    pub rate: LacpRate,
    /// `lacp_fallback` setting.
    pub fallback: Fallback,
    /// Whether fallback is in effect now.
    pub fallback_active: bool,
    /// Whether some member hears a LACP partner.
    pub negotiated: bool,
    /// Actor system priority.
    pub system_priority: u16,
    /// Actor system ID.
    pub system_id: MacAddr,
    /// Actor key.
    pub key: u16,
    /// The aggregator in use.
    pub aggregator: Option<AggregatorStatus>,
    /// Members, in member order.
    pub members: Vec<MemberStatus>,
}

pub(super) fn snapshot(bond: &LacpBond) -> LacpStatus {
    let cfg = bond.config();
    let members: Vec<MemberStatus> = bond
        .ports()
        .iter()
        .enumerate()
        .map(|(i, p)| MemberStatus {
            name: format!("member{i}"),
            mac: p.mac,
            link_up: p.link_up,
            speed_mbps: p.speed_mbps,
            full_duplex: p.full_duplex,
            receive: p.rx,
            periodic: p.periodic,
            mux: p.mux,
            selected: p.selected,
            lag: p.lag,
            may_enable: bond.is_distributing(i),
            actor: p.actor,
            partner: p.partner,
            counters: p.counters,
        })
        .collect();
    let aggregator = bond.active_aggregator().map(|id| AggregatorStatus {
        id,
        members: members
            .iter()
            .filter(|m| m.lag == Some(id) && m.selected == Selected::Selected)
            .count(),
        distributing: members
            .iter()
            .filter(|m| m.lag == Some(id) && m.may_enable)
            .count(),
    });
    LacpStatus {
        name: "bond".to_string(),
        mode: cfg.mode,
        rate: cfg.rate,
        fallback: cfg.fallback,
        fallback_active: bond.fallback_active(),
        negotiated: bond.negotiated(),
        system_priority: cfg.system_priority,
        system_id: cfg.system_id,
        key: cfg.key,
        aggregator,
        members,
    }
}

fn info(f: &mut fmt::Formatter<'_>, who: &str, i: &PortInfo) -> fmt::Result {
    writeln!(f, "  {who} sys_id: {}", i.system)?;
    writeln!(f, "  {who} sys_priority: {}", i.system_priority)?;
    writeln!(f, "  {who} port_id: {}", i.port)?;
    writeln!(f, "  {who} port_priority: {}", i.port_priority)?;
    writeln!(f, "  {who} key: {}", i.key)?;
    writeln!(f, "  {who} state: {}", i.state)
}

impl fmt::Display for LacpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "---- {} ----", self.name)?;
        if self.mode == LacpMode::Off {
            writeln!(f, "  status: off (static aggregation)")?;
        } else {
            let neg = if self.negotiated {
                "negotiated"
            } else {
                "configured"
            };
            writeln!(f, "  status: {} {}", self.mode, neg)?;
        }
        writeln!(f, "  sys_id: {}", self.system_id)?;
        writeln!(f, "  sys_priority: {}", self.system_priority)?;
        writeln!(f, "  aggregation key: {}", self.key)?;
        writeln!(f, "  lacp_time: {}", self.rate)?;
        let fb = if self.fallback_active {
            " (in effect)"
        } else {
            ""
        };
        writeln!(f, "  lacp_fallback: {}{}", self.fallback, fb)?;
        match &self.aggregator {
            Some(a) => writeln!(
                f,
                "  aggregator: partner {},{} key {}, {} selected, {} distributing",
                a.id.partner_system_priority,
                a.id.partner_system,
                a.id.partner_key,
                a.members,
                a.distributing
            )?,
            None => writeln!(f, "  aggregator: none")?,
        }
        for m in &self.members {
            writeln!(f)?;
            let status = match m.receive {
                ReceiveState::Current => "current",
                ReceiveState::Expired => "expired",
                ReceiveState::Defaulted | ReceiveState::LacpDisabled => "defaulted",
                ReceiveState::PortDisabled | ReceiveState::Initialize => "disabled",
            };
            let attached = match m.mux {
                MuxState::Attached | MuxState::CollectingDistributing => "attached",
                _ => "detached",
            };
            writeln!(f, "member: {}: {} {}", m.name, status, attached)?;
            writeln!(
                f,
                "  link: {} {} Mb/s {}",
                if m.link_up { "up" } else { "down" },
                m.speed_mbps,
                if m.full_duplex {
                    "full-duplex"
                } else {
                    "half-duplex"
                }
            )?;
            writeln!(f, "  port_id: {}", m.actor.port)?;
            writeln!(f, "  port_priority: {}", m.actor.port_priority)?;
            writeln!(f, "  may_enable: {}", m.may_enable)?;
            writeln!(
                f,
                "  machines: receive {} periodic {} mux {} selected {}",
                m.receive, m.periodic, m.mux, m.selected
            )?;
            writeln!(f)?;
            info(f, "actor", &m.actor)?;
            writeln!(f)?;
            info(f, "partner", &m.partner)?;
            writeln!(f)?;
            let c = &m.counters;
            write!(
                f,
                "  counters: rx_lacpdu {} tx_lacpdu {} rx_marker {} tx_marker_response {} \
                 rx_marker_response {} rx_ignored {} tx_rate_limited {} marker_dropped {}",
                c.rx_lacpdu,
                c.tx_lacpdu,
                c.rx_marker,
                c.tx_marker_response,
                c.rx_marker_response,
                c.rx_ignored,
                c.tx_rate_limited,
                c.marker_dropped
            )?;
            writeln!(f)?;
            write!(f, "  rx_errors: {}", c.rx_errors_total())?;
            for (k, n) in c.rx_errors.iter().enumerate() {
                if *n > 0 {
                    write!(f, " {} {}", PduError::NAMES[k], n)?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
