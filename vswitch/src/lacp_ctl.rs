//! LACP on the control thread: one [`LacpCtl`] per bond with `lacp != off`, wrapping
//! `policy::lacp::LacpBond` and wiring it to NIC link state, received slow-protocol
//! frames, the transmit handoff and the bond's teaming logic.
//!
//! Implements specification paragraphs [0071] (802.3ad dynamic aggregation as a teaming
//! function), [0086] (detect whether the switch speaks 802.3ad, form a partnership, or
//! keep teaming — `lacp_fallback`) and [0087] (ports facing one switch aggregate
//! together), by driving the state machines of `policy::lacp`.
//!
//! # What the control thread does each iteration (every `link_poll_ms`)
//! 1. Link state of every member, as polled for the bond, goes to
//!    [`LacpCtl::set_link`] (forwarded to LACP only when up/speed/duplex changed). A PMD
//!    that reports no speed (virtual NICs) counts as the configured `speed_mbps`, else
//!    10 Gb/s, full duplex — LACP refuses half-duplex links.
//! 2. Slow-protocol frames the workers handed over (`Shared::slow_rx`) are routed by
//!    port id to [`LacpCtl::on_frame`]; frames from ports that are not members of a LACP
//!    bond are counted (`ControlView::slow_rx_dropped`) and dropped. Malformed PDUs are
//!    counted by `LacpBond` per error kind (visible in `lacp show`) and logged at debug.
//! 3. [`LacpCtl::run`] runs the timers and drains due frames into mbufs pushed on
//!    `Shared::ctl_tx` with the member's port id (worker 0 sends them). A full queue or
//!    an empty pool drops the frame (counted in `tx_dropped`); it is never retried here
//!    because LACP retransmits on its own schedule. Nothing here blocks on a worker.
//! 4. [`LacpCtl::apply`] copies the verdicts into the bond (`Bond::set_lacp`), so
//!    teaming follows LACP: a partner that goes silent or a member leaving the
//!    aggregator is a member failure, and failover, failback and the VM policies react
//!    exactly as to a link failure.
//! 5. [`LacpCtl::observe`] logs every member transition at info and refreshes the
//!    rendered `lacp show` text.
//!
//! # Invariants and choices
//! - The actor system ID is the bond's MAC: `lacp_system_id` if configured, else the
//!   MAC of the bond's **first member, read once when the switch starts** and kept for
//!   the bond's life, even while that member is down or after it fails (DPDK's mode 4
//!   changes it; a partner would see a new system and re-form the aggregate). Each
//!   member's own MAC is the source of its PDUs. A PMD that reports a non-unicast MAC
//!   gets a locally administered stand-in `02:4c:41:00:<port id>` (logged).
//! - Fallback (`lacp_fallback = active-backup` and no member hears a LACP partner): the
//!   members that are `fallback_eligible` (link up) are reported distributing to the
//!   bond, and the bond's mode is switched to `active-backup` with `Bond::set_mode`, so
//!   exactly one member carries (and receives) traffic, chosen by the bond's failover
//!   order — the switch on the other side has no LAG, so it must see each MAC on one
//!   port only. The mode in force when fallback began is restored as soon as a partner
//!   is heard (the members then wait for LACP to reach collecting+distributing). With
//!   `lacp_fallback = none` a silent partner means no member is usable.
//! - `LacpCtl` is owned by the control thread; nothing here is fast path. `observe`
//!   builds a `LacpStatus` (a few small allocations) once per control iteration.

use policy::bond::{Bond, Mode};
use policy::lacp::{
    Fallback, LacpBond, LacpConfig, LacpError, LacpMode, LacpRate, LacpStatus, MuxState, PduError,
    PortState, ReceiveState,
};
use policy::time::Nanos;
use policy::wire::MacAddr;

/// A bond's LACP settings from the configuration file (everything but the system ID
/// may be given; see `BondConfigFile::lacp_settings`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LacpSettings {
    /// `active` or `passive` (`off` bonds have no settings).
    pub mode: LacpMode,
    /// `lacp_rate`.
    pub rate: LacpRate,
    /// `lacp_fallback`.
    pub fallback: Fallback,
    /// `lacp_system_priority`.
    pub system_priority: u16,
    /// `lacp_key`.
    pub key: u16,
    /// `lacp_port_priorities` (empty or one per member).
    pub port_priorities: Vec<u16>,
    /// `lacp_system_id`; `None` = the first member's MAC.
    pub system_id: Option<MacAddr>,
}

impl LacpSettings {
    /// The `policy::lacp` configuration, with `default_system_id` used unless a system
    /// ID was configured.
    pub fn config(&self, default_system_id: MacAddr) -> LacpConfig {
        LacpConfig {
            mode: self.mode,
            rate: self.rate,
            system_priority: self.system_priority,
            system_id: self.system_id.unwrap_or(default_system_id),
            key: self.key,
            fallback: self.fallback,
            port_priorities: self.port_priorities.clone(),
        }
    }
}

/// Speed assumed for a link whose PMD reports none and that has no configured speed.
pub const UNKNOWN_SPEED_MBPS: u32 = 10_000;

/// What LACP is told about a link: (up, speed in Mb/s, full duplex). An unknown speed
/// (0) means a virtual NIC: `configured` or [`UNKNOWN_SPEED_MBPS`], full duplex.
pub fn effective_link(link: dpdk_sys::Link, configured: Option<u32>) -> (bool, u32, bool) {
    if link.speed_mbps == 0 {
        (link.up, configured.unwrap_or(UNKNOWN_SPEED_MBPS), true)
    } else {
        (link.up, link.speed_mbps, link.full_duplex)
    }
}

/// A MAC usable as an LACP source/system ID: `mac` if unicast, else a locally
/// administered stand-in derived from the DPDK port id (unique within the process).
fn usable_mac(mac: [u8; 6], port: u16) -> MacAddr {
    let m = MacAddr(mac);
    if m.is_unicast() {
        m
    } else {
        let [hi, lo] = port.to_be_bytes();
        MacAddr([0x02, 0x4c, 0x41, 0x00, hi, lo])
    }
}

/// Partner identity as far as transitions are concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct PartnerId {
    system_priority: u16,
    system: MacAddr,
    key: u16,
    port: u16,
}

/// Last logged state of a member.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Trace {
    distributing: bool,
    receive: ReceiveState,
    partner: Option<PartnerId>,
}

/// One member in the control view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LacpMemberView {
    /// NIC name.
    pub name: String,
    /// Collecting and distributing (LACP's verdict).
    pub distributing: bool,
    /// Receive machine state (`CURRENT`, `EXPIRED`, `DEFAULTED`, ...).
    pub receive: String,
    /// Mux machine state.
    pub mux: String,
    /// Actor state bits as sent.
    pub actor_state: String,
    /// Partner state bits as last heard.
    pub partner_state: String,
    /// Partner system (priority,MAC) and key, empty while defaulted.
    pub partner: String,
    /// LACPDUs received.
    pub rx_lacpdu: u64,
    /// LACPDUs sent.
    pub tx_lacpdu: u64,
    /// Malformed slow-protocol frames received.
    pub rx_errors: u64,
}

/// One LACP bond in the control view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LacpView {
    /// Bond name.
    pub bond: String,
    /// Some member hears a LACP partner.
    pub negotiated: bool,
    /// `lacp_fallback = active-backup` is in effect now.
    pub fallback_active: bool,
    /// LACP frames that could not be queued for transmission (pool or queue full).
    pub tx_dropped: u64,
    /// Members.
    pub members: Vec<LacpMemberView>,
    /// `lacp show` text (like `ovs-appctl lacp/show`).
    pub status: String,
}

/// One bond's LACP, owned by the control thread.
pub struct LacpCtl {
    name: String,
    member_names: Vec<String>,
    member_ports: Vec<u16>,
    member_speeds: Vec<Option<u32>>,
    lacp: LacpBond,
    links: Vec<Option<(bool, u32, bool)>>,
    trace: Vec<Trace>,
    /// `Some(mode to restore)` while fallback is in effect.
    fallback: Option<Mode>,
    status: LacpStatus,
    rendered: String,
    tx_dropped: u64,
}

impl LacpCtl {
    /// Creates the bond's LACP. `member_macs[i]` is member `i`'s MAC as the PMD reports
    /// it; `member_speeds[i]` its configured speed (for PMDs that report none).
    pub fn new(
        name: &str,
        member_names: &[String],
        member_ports: &[u16],
        member_macs: &[[u8; 6]],
        member_speeds: &[Option<u32>],
        settings: &LacpSettings,
        now: Nanos,
    ) -> Result<LacpCtl, LacpError> {
        let macs: Vec<MacAddr> = member_macs
            .iter()
            .zip(member_ports)
            .map(|(&m, &p)| {
                let u = usable_mac(m, p);
                if u.0 != m {
                    tracing::warn!(bond = %name, port = p, mac = %MacAddr(m), stand_in = %u,
                        "member MAC is not unicast: LACP uses a stand-in");
                }
                u
            })
            .collect();
        let system_id = macs
            .first()
            .copied()
            .unwrap_or(MacAddr([0x02, 0x4c, 0x41, 0, 0, 0]));
        let cfg = settings.config(system_id);
        let lacp = LacpBond::new(cfg, &macs, now)?;
        let n = macs.len();
        let mut status = lacp.status();
        name_status(&mut status, name, member_names);
        let rendered = status.to_string();
        tracing::info!(bond = %name, system_id = %status.system_id, mode = %status.mode,
            rate = %status.rate, fallback = %status.fallback, "LACP enabled");
        let trace = status
            .members
            .iter()
            .map(|m| Trace {
                distributing: m.may_enable,
                receive: m.receive,
                partner: partner_of(m),
            })
            .collect();
        Ok(LacpCtl {
            name: name.to_string(),
            member_names: member_names.to_vec(),
            member_ports: member_ports.to_vec(),
            member_speeds: member_speeds.to_vec(),
            lacp,
            links: vec![None; n],
            trace,
            fallback: None,
            status,
            rendered,
            tx_dropped: 0,
        })
    }

    /// The bond's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The member index of DPDK port `port`, if it is a member of this bond.
    pub fn member_of(&self, port: u16) -> Option<usize> {
        self.member_ports.iter().position(|&p| p == port)
    }

    /// Reports member `m`'s polled link; LACP hears about it only when it changed.
    pub fn set_link(&mut self, m: usize, link: dpdk_sys::Link, now: Nanos) {
        let Some(cfg_speed) = self.member_speeds.get(m) else {
            return;
        };
        let l = effective_link(link, *cfg_speed);
        if self.links[m] != Some(l) {
            self.links[m] = Some(l);
            self.lacp.set_link(m, l.0, l.1, l.2, now);
        }
    }

    /// Takes a slow-protocol frame received on member `m`. Malformed frames are counted
    /// by LACP (per kind, in `lacp show`) and returned.
    pub fn on_frame(&mut self, m: usize, frame: &[u8], now: Nanos) -> Result<(), PduError> {
        let r = self.lacp.on_frame(m, frame, now);
        if let Err(e) = r {
            tracing::debug!(bond = %self.name, member = %self.member_names[m], len = frame.len(),
                error = %e, "malformed slow-protocol frame dropped");
        }
        r
    }

    /// Runs LACP's timers to `now` and hands every due frame to `send(port, frame)`,
    /// which returns false when it could not queue it (counted, not retried).
    pub fn run(&mut self, now: Nanos, send: &mut dyn FnMut(u16, &[u8]) -> bool) {
        self.lacp.tick(now);
        let ports = &self.member_ports;
        let mut dropped = 0;
        self.lacp.poll_tx(now, &mut |m, frame| {
            if !send(ports[m], frame) {
                dropped += 1;
            }
        });
        if dropped > 0 {
            tracing::debug!(bond = %self.name, dropped, "LACP frames dropped: no mbuf or tx handoff full");
        }
        self.tx_dropped += dropped;
    }

    /// Copies LACP's verdicts into the bond (only changed ones) and runs the fallback:
    /// see the module doc.
    pub fn apply(&mut self, bond: &mut Bond, now: Nanos) {
        let fallback = self.lacp.fallback_active();
        if fallback && self.fallback.is_none() {
            let mode = bond.config().mode;
            self.fallback = Some(mode);
            if mode != Mode::ActiveBackup {
                bond.set_mode(Mode::ActiveBackup, now);
            }
            tracing::warn!(bond = %self.name, configured_mode = %mode,
                "no LACP partner heard: falling back to active-backup");
        }
        for m in 0..self.member_ports.len() {
            let d = if fallback {
                self.lacp.fallback_eligible(m)
            } else {
                self.lacp.is_distributing(m)
            };
            if bond.member_status(m).map(|s| s.lacp_distributing) != Some(d) {
                let _ = bond.set_lacp(m, d, now);
            }
        }
        if !fallback {
            if let Some(mode) = self.fallback.take() {
                if bond.config().mode != mode {
                    bond.set_mode(mode, now);
                }
                tracing::info!(bond = %self.name, mode = %mode,
                    "LACP partner heard: fallback ended, configured mode restored");
            }
        }
    }

    /// Logs member transitions (collecting/distributing gained or lost, partner changed,
    /// expired, defaulted, current again) and refreshes the `lacp show` text.
    pub fn observe(&mut self) {
        let mut st = self.lacp.status();
        name_status(&mut st, &self.name, &self.member_names);
        if st == self.status {
            return;
        }
        for (i, m) in st.members.iter().enumerate() {
            let now = Trace {
                distributing: m.may_enable,
                receive: m.receive,
                partner: partner_of(m),
            };
            let before = self.trace[i];
            if now == before {
                continue;
            }
            let (bond, member) = (&self.name, &m.name);
            if now.partner != before.partner {
                if let Some(p) = now.partner {
                    tracing::info!(%bond, %member, partner_system = %p.system,
                        partner_priority = p.system_priority, partner_key = p.key,
                        partner_port = p.port, "LACP partner changed");
                }
            }
            if now.receive != before.receive {
                match now.receive {
                    ReceiveState::Expired if before.receive == ReceiveState::Current => {
                        tracing::warn!(%bond, %member, "LACP partner expired (no LACPDU within the timeout)")
                    }
                    ReceiveState::Expired => {
                        tracing::debug!(%bond, %member, "LACP port enabled, probing for a partner")
                    }
                    ReceiveState::Defaulted => {
                        tracing::warn!(%bond, %member, "LACP partner defaulted (no partner)")
                    }
                    ReceiveState::Current => tracing::info!(%bond, %member, "LACP partner current"),
                    ReceiveState::PortDisabled => {
                        tracing::info!(%bond, %member, "LACP port disabled (link down)")
                    }
                    ReceiveState::LacpDisabled => {
                        tracing::warn!(%bond, %member, "LACP disabled on the port (half duplex)")
                    }
                    ReceiveState::Initialize => {}
                }
            }
            if now.distributing != before.distributing {
                if now.distributing {
                    tracing::info!(%bond, %member, "LACP member collecting and distributing");
                } else {
                    tracing::warn!(%bond, %member, mux = %m.mux, selected = %m.selected,
                        "LACP member stopped collecting and distributing");
                }
            }
            self.trace[i] = now;
        }
        self.rendered = st.to_string();
        self.status = st;
    }

    /// The last `lacp show` text.
    pub fn rendered(&self) -> &str {
        &self.rendered
    }

    /// True if member `m` is collecting and distributing.
    pub fn is_distributing(&self, m: usize) -> bool {
        self.lacp.is_distributing(m)
    }

    /// True while `lacp_fallback = active-backup` is in effect.
    pub fn fallback_in_effect(&self) -> bool {
        self.fallback.is_some()
    }

    /// The underlying state machines (read-only).
    pub fn lacp(&self) -> &LacpBond {
        &self.lacp
    }

    /// The bond's entry of the control view.
    pub fn view(&self) -> LacpView {
        let st = &self.status;
        LacpView {
            bond: self.name.clone(),
            negotiated: st.negotiated,
            fallback_active: st.fallback_active,
            tx_dropped: self.tx_dropped,
            members: st
                .members
                .iter()
                .map(|m| LacpMemberView {
                    name: m.name.clone(),
                    distributing: m.may_enable,
                    receive: m.receive.to_string(),
                    mux: if m.mux == MuxState::CollectingDistributing {
                        "COLLECTING_DISTRIBUTING".into()
                    } else {
                        m.mux.to_string()
                    },
                    actor_state: m.actor.state.to_string(),
                    partner_state: m.partner.state.to_string(),
                    partner: match partner_of(m) {
                        Some(p) => format!("{},{} key {}", p.system_priority, p.system, p.key),
                        None => String::new(),
                    },
                    rx_lacpdu: m.counters.rx_lacpdu,
                    tx_lacpdu: m.counters.tx_lacpdu,
                    rx_errors: m.counters.rx_errors_total(),
                })
                .collect(),
            status: self.rendered.clone(),
        }
    }
}

fn name_status(st: &mut LacpStatus, name: &str, member_names: &[String]) {
    st.name = name.to_string();
    for (m, n) in st.members.iter_mut().zip(member_names) {
        m.name = n.clone();
    }
}

fn partner_of(m: &policy::lacp::MemberStatus) -> Option<PartnerId> {
    // A defaulted actor holds the administrative partner values, not a heard partner.
    if m.actor.state.has(PortState::DEFAULTED) {
        return None;
    }
    match m.receive {
        ReceiveState::Current | ReceiveState::Expired => Some(PartnerId {
            system_priority: m.partner.system_priority,
            system: m.partner.system,
            key: m.partner.key,
            port: m.partner.port,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_speed_is_full_duplex_ten_gig_or_configured() {
        let l = dpdk_sys::Link {
            up: true,
            speed_mbps: 0,
            full_duplex: false,
        };
        assert_eq!(effective_link(l, None), (true, 10_000, true));
        assert_eq!(effective_link(l, Some(25_000)), (true, 25_000, true));
        let half = dpdk_sys::Link {
            up: true,
            speed_mbps: 100,
            full_duplex: false,
        };
        assert_eq!(effective_link(half, Some(1)), (true, 100, false));
    }

    #[test]
    fn non_unicast_macs_get_distinct_stand_ins() {
        assert_eq!(
            usable_mac([2, 0, 0, 0, 0, 1], 7),
            MacAddr([2, 0, 0, 0, 0, 1])
        );
        let a = usable_mac([0; 6], 1);
        let b = usable_mac([0xff; 6], 2);
        assert!(a.is_unicast() && b.is_unicast() && a != b);
    }
}
