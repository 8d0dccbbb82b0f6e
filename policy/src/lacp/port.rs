//! One member port's LACP state: the standard's per-port variables, timers and the
//! Receive, Periodic Transmission and Mux (coupled control) machines of IEEE
//! 802.1AX-2008 §5.4.12–5.4.15. Selection (§5.4.14) and Transmit (§5.4.16) span ports
//! and live in the parent module. Each `step_*` function evaluates one machine once
//! and reports whether it changed state; the bond repeats them until nothing changes.

use super::config::{LacpConfig, LacpMode, LacpRate};
use super::pdu::{Lacpdu, MarkerPdu, PduError, PortInfo, PortState};
use crate::time::{Nanos, SEC};
use crate::wire::MacAddr;
use core::fmt;

/// Fast_Periodic_Time: 1 s.
pub const FAST_PERIODIC: Nanos = SEC;
/// Slow_Periodic_Time: 30 s.
pub const SLOW_PERIODIC: Nanos = 30 * SEC;
/// Short_Timeout_Time: 3 s.
pub const SHORT_TIMEOUT: Nanos = 3 * SEC;
/// Long_Timeout_Time: 90 s.
pub const LONG_TIMEOUT: Nanos = 90 * SEC;
/// Aggregate_Wait_Time: 2 s.
pub const AGGREGATE_WAIT: Nanos = 2 * SEC;
/// At most this many LACPDUs per [`FAST_PERIODIC`] on one port (§5.4.16).
pub const TX_LIMIT: usize = 3;
/// Marker Information requests queued per port before further ones are dropped.
pub const MARKER_QUEUE: usize = 4;

/// Receive machine states (§5.4.12).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReceiveState {
    /// Port (re)initialised: partner defaulted, unselected.
    Initialize,
    /// Link down (or never up).
    PortDisabled,
    /// Link up but not full duplex: LACP cannot run, the port is individual.
    LacpDisabled,
    /// Partner information is aging: short timeout running, partner asked to be fast.
    Expired,
    /// No partner heard: administrative defaults in use.
    Defaulted,
    /// Partner information is current.
    Current,
}

/// Periodic Transmission machine states (§5.4.13).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeriodicState {
    /// No periodic transmission (and no transmission at all).
    NoPeriodic,
    /// Every 1 s (the partner asked for short timeouts).
    FastPeriodic,
    /// Every 30 s.
    SlowPeriodic,
    /// Transient: a periodic transmission is due.
    PeriodicTx,
}

/// Mux machine states, coupled control (§5.4.15, Figure 5-15).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MuxState {
    /// Not attached to an aggregator.
    Detached,
    /// Selected, waiting for wait_while so that other ports can join.
    Waiting,
    /// Attached; waiting for the partner's Synchronization.
    Attached,
    /// Collecting and distributing.
    CollectingDistributing,
}

/// The Selected variable (§5.4.8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Selected {
    /// No aggregator chosen.
    Unselected,
    /// Chosen for the bond's active aggregator.
    Selected,
    /// Belongs to an aggregator the bond does not use now.
    Standby,
}

macro_rules! upper_names {
    ($ty:ty, $($v:path => $s:expr),+) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($v => $s),+ })
            }
        }
    };
}
upper_names!(ReceiveState, ReceiveState::Initialize => "INITIALIZE", ReceiveState::PortDisabled => "PORT_DISABLED",
    ReceiveState::LacpDisabled => "LACP_DISABLED", ReceiveState::Expired => "EXPIRED",
    ReceiveState::Defaulted => "DEFAULTED", ReceiveState::Current => "CURRENT");
upper_names!(PeriodicState, PeriodicState::NoPeriodic => "NO_PERIODIC", PeriodicState::FastPeriodic => "FAST_PERIODIC",
    PeriodicState::SlowPeriodic => "SLOW_PERIODIC", PeriodicState::PeriodicTx => "PERIODIC_TX");
upper_names!(MuxState, MuxState::Detached => "DETACHED", MuxState::Waiting => "WAITING",
    MuxState::Attached => "ATTACHED", MuxState::CollectingDistributing => "COLLECTING_DISTRIBUTING");
upper_names!(Selected, Selected::Unselected => "UNSELECTED", Selected::Selected => "SELECTED",
    Selected::Standby => "STANDBY");

/// Per-member counters, written only by the owning control thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MemberCounters {
    /// LACPDUs accepted by the decoder.
    pub rx_lacpdu: u64,
    /// LACPDUs sent.
    pub tx_lacpdu: u64,
    /// Marker Information PDUs received.
    pub rx_marker: u64,
    /// Marker Response PDUs received (we never send requests; counted and ignored).
    pub rx_marker_response: u64,
    /// Marker Response PDUs sent.
    pub tx_marker_response: u64,
    /// Marker requests dropped because the per-port queue was full.
    pub marker_dropped: u64,
    /// Valid PDUs not processed (LACP off, link down, or half duplex).
    pub rx_ignored: u64,
    /// Times NTT was pending but the 3-per-second limit held the LACPDU back.
    pub tx_rate_limited: u64,
    /// Malformed frames, indexed by [`PduError::index`].
    pub rx_errors: [u64; PduError::KINDS],
}

impl MemberCounters {
    /// Sum of all malformed-frame counters.
    pub fn rx_errors_total(&self) -> u64 {
        self.rx_errors.iter().sum()
    }
}

/// Identity of a candidate aggregator: ports with equal `LagId` aggregate together.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct LagId {
    /// Partner system priority.
    pub partner_system_priority: u16,
    /// Partner system ID.
    pub partner_system: MacAddr,
    /// Partner operational key.
    pub partner_key: u16,
    /// Actor operational key.
    pub actor_key: u16,
}

/// Partner_Admin values used while no partner is heard (recordDefault): no system, key
/// 0, passive, *short* timeout (so an active actor probes every second for a partner
/// that may appear), individual, out of sync.
pub const PARTNER_ADMIN: PortInfo = PortInfo {
    system_priority: 0,
    system: MacAddr([0; 6]),
    key: 0,
    port_priority: 0,
    port: 0,
    state: PortState(PortState::TIMEOUT),
};

#[inline]
fn expired(timer: Option<Nanos>, now: Nanos) -> bool {
    matches!(timer, Some(t) if now >= t)
}

/// One member port.
#[derive(Clone, Debug)]
pub(crate) struct Port {
    pub mac: MacAddr,
    pub link_up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
    pub actor: PortInfo,
    pub partner: PortInfo,
    pub rx: ReceiveState,
    pub periodic: PeriodicState,
    pub mux: MuxState,
    pub selected: Selected,
    pub lag: Option<LagId>,
    pub ntt: bool,
    pub port_moved: bool,
    pub current_while: Option<Nanos>,
    pub periodic_timer: Option<Nanos>,
    pub wait_while: Option<Nanos>,
    /// Send times of the last TX_LIMIT LACPDUs, oldest at `tx_next`.
    tx_times: [Option<Nanos>; TX_LIMIT],
    tx_next: usize,
    markers: [Option<MarkerPdu>; MARKER_QUEUE],
    pub counters: MemberCounters,
}

impl Port {
    pub fn new(mac: MacAddr, number: u16, cfg: &LacpConfig, index: usize) -> Port {
        let mut p = Port {
            mac,
            link_up: false,
            speed_mbps: 0,
            full_duplex: false,
            actor: PortInfo::default(),
            partner: PARTNER_ADMIN,
            rx: ReceiveState::Initialize,
            periodic: PeriodicState::NoPeriodic,
            mux: MuxState::Detached,
            selected: Selected::Unselected,
            lag: None,
            ntt: false,
            port_moved: false,
            current_while: None,
            periodic_timer: None,
            wait_while: None,
            tx_times: [None; TX_LIMIT],
            tx_next: 0,
            markers: [None; MARKER_QUEUE],
            counters: MemberCounters::default(),
        };
        p.actor.port = number;
        p.apply_config(cfg, index);
        p.begin();
        p
    }

    /// Copies the actor's administrative values from `cfg` into the operational
    /// ones; returns true if anything the partner sees changed.
    pub fn apply_config(&mut self, cfg: &LacpConfig, index: usize) -> bool {
        let before = self.actor;
        self.actor.system_priority = cfg.system_priority;
        self.actor.system = cfg.system_id;
        self.actor.key = cfg.key;
        self.actor.port_priority = cfg.port_priority(index);
        let s = &mut self.actor.state;
        s.set(PortState::ACTIVITY, cfg.mode == LacpMode::Active);
        s.set(PortState::TIMEOUT, cfg.rate == LacpRate::Fast);
        s.set(PortState::AGGREGATION, true);
        before != self.actor
    }

    /// BEGIN: every machine to its initial state.
    pub fn begin(&mut self) {
        self.rx = ReceiveState::Initialize;
        self.enter_initialize();
        self.rx = ReceiveState::PortDisabled;
        self.enter_port_disabled();
        self.periodic = PeriodicState::NoPeriodic;
        self.periodic_timer = None;
        self.enter_detached();
        self.ntt = false;
        self.lag = None;
        self.wait_while = None;
        self.markers = [None; MARKER_QUEUE];
    }

    /// port_enabled: the MAC is operational.
    pub fn enabled(&self) -> bool {
        self.link_up
    }

    /// LACP_Enabled: LACP runs only on full-duplex point-to-point links.
    pub fn lacp_enabled(&self) -> bool {
        self.full_duplex
    }

    fn record_default(&mut self) {
        self.partner = PARTNER_ADMIN;
        self.actor.state.set(PortState::DEFAULTED, true);
    }

    fn enter_initialize(&mut self) {
        self.selected = Selected::Unselected;
        self.record_default();
        self.actor.state.set(PortState::EXPIRED, false);
        self.port_moved = false;
    }

    fn enter_port_disabled(&mut self) {
        self.partner.state.set(PortState::SYNCHRONIZATION, false);
        self.current_while = None;
    }

    fn enter_expired(&mut self, now: Nanos) {
        self.partner.state.set(PortState::SYNCHRONIZATION, false);
        self.partner.state.set(PortState::TIMEOUT, true);
        self.current_while = Some(now.saturating_add(SHORT_TIMEOUT));
        self.actor.state.set(PortState::EXPIRED, true);
    }

    fn enter_lacp_disabled(&mut self) {
        self.selected = Selected::Unselected;
        self.record_default();
        self.partner.state.set(PortState::AGGREGATION, false);
        self.actor.state.set(PortState::EXPIRED, false);
    }

    fn enter_defaulted(&mut self) {
        // update_Default_Selected, then recordDefault.
        if !PARTNER_ADMIN.same_identity(&self.partner) {
            self.selected = Selected::Unselected;
        }
        self.record_default();
        self.current_while = None;
        self.actor.state.set(PortState::EXPIRED, false);
    }

    /// CURRENT entry on a received LACPDU: update_Selected, update_NTT, recordPDU,
    /// start current_while. Only called when the Receive machine may take a PDU.
    pub fn enter_current(&mut self, pdu: &Lacpdu, now: Nanos) {
        if !pdu.actor.same_identity(&self.partner) {
            self.selected = Selected::Unselected;
        }
        const NTT_BITS: u8 = PortState::ACTIVITY
            | PortState::TIMEOUT
            | PortState::SYNCHRONIZATION
            | PortState::AGGREGATION;
        if !pdu.partner.same_identity(&self.actor)
            || pdu.partner.state.0 & NTT_BITS != self.actor.state.0 & NTT_BITS
        {
            self.ntt = true;
        }
        // recordPDU.
        let in_sync = pdu.actor.state.has(PortState::SYNCHRONIZATION);
        let individual = !pdu.actor.state.has(PortState::AGGREGATION);
        let sees_us = pdu.partner.same_identity(&self.actor);
        self.partner = pdu.actor;
        self.partner.state.set(
            PortState::SYNCHRONIZATION,
            in_sync && (sees_us || individual),
        );
        self.actor.state.set(PortState::DEFAULTED, false);
        let timeout = if self.actor.state.has(PortState::TIMEOUT) {
            SHORT_TIMEOUT
        } else {
            LONG_TIMEOUT
        };
        self.current_while = Some(now.saturating_add(timeout));
        self.actor.state.set(PortState::EXPIRED, false);
        self.rx = ReceiveState::Current;
    }

    /// Whether the Receive machine is in a state that processes LACPDUs.
    pub fn takes_pdus(&self) -> bool {
        self.enabled()
            && matches!(
                self.rx,
                ReceiveState::Expired | ReceiveState::Defaulted | ReceiveState::Current
            )
    }

    /// One evaluation of the Receive machine.
    pub fn step_rx(&mut self, now: Nanos) -> bool {
        use ReceiveState::*;
        if !self.enabled() && !self.port_moved && !matches!(self.rx, PortDisabled) {
            self.rx = PortDisabled;
            self.enter_port_disabled();
            return true;
        }
        match self.rx {
            Initialize => {
                self.rx = PortDisabled;
                self.enter_port_disabled();
                true
            }
            PortDisabled => {
                if self.port_moved {
                    self.rx = Initialize;
                    self.enter_initialize();
                    true
                } else if self.enabled() && self.lacp_enabled() {
                    self.rx = Expired;
                    self.enter_expired(now);
                    true
                } else if self.enabled() {
                    self.rx = LacpDisabled;
                    self.enter_lacp_disabled();
                    true
                } else {
                    false
                }
            }
            Expired if expired(self.current_while, now) => {
                self.rx = Defaulted;
                self.enter_defaulted();
                true
            }
            Current if expired(self.current_while, now) => {
                self.rx = Expired;
                self.enter_expired(now);
                true
            }
            _ => false,
        }
    }

    fn enter_fast_periodic(&mut self, now: Nanos) {
        self.periodic = PeriodicState::FastPeriodic;
        self.periodic_timer = Some(now.saturating_add(FAST_PERIODIC));
    }

    fn enter_slow_periodic(&mut self, now: Nanos) {
        self.periodic = PeriodicState::SlowPeriodic;
        self.periodic_timer = Some(now.saturating_add(SLOW_PERIODIC));
    }

    /// One evaluation of the Periodic Transmission machine.
    pub fn step_periodic(&mut self, now: Nanos) -> bool {
        use PeriodicState::*;
        let both_passive = !self.actor.state.has(PortState::ACTIVITY)
            && !self.partner.state.has(PortState::ACTIVITY);
        if !self.enabled() || !self.lacp_enabled() || both_passive {
            // Also the Transmit machine's rule: nothing is sent in NO_PERIODIC.
            self.ntt = false;
            if self.periodic != NoPeriodic {
                self.periodic = NoPeriodic;
                self.periodic_timer = None;
                return true;
            }
            return false;
        }
        let partner_short = self.partner.state.has(PortState::TIMEOUT);
        match self.periodic {
            NoPeriodic => {
                // Deviation: transmit at once when periodic transmission starts
                // instead of one fast period later (saves up to 1 s at bring-up).
                self.ntt = true;
                self.enter_fast_periodic(now);
                true
            }
            FastPeriodic if !partner_short => {
                self.enter_slow_periodic(now);
                true
            }
            FastPeriodic if expired(self.periodic_timer, now) => {
                self.periodic = PeriodicTx;
                true
            }
            SlowPeriodic if partner_short || expired(self.periodic_timer, now) => {
                self.periodic = PeriodicTx;
                true
            }
            PeriodicTx => {
                self.ntt = true;
                if partner_short {
                    self.enter_fast_periodic(now);
                } else {
                    self.enter_slow_periodic(now);
                }
                true
            }
            _ => false,
        }
    }

    fn enter_detached(&mut self) {
        self.mux = MuxState::Detached;
        let s = &mut self.actor.state;
        s.set(PortState::SYNCHRONIZATION, false);
        s.set(PortState::COLLECTING, false);
        s.set(PortState::DISTRIBUTING, false);
        self.wait_while = None;
        self.ntt = true;
    }

    fn enter_attached(&mut self) {
        self.mux = MuxState::Attached;
        let s = &mut self.actor.state;
        s.set(PortState::SYNCHRONIZATION, true);
        s.set(PortState::COLLECTING, false);
        s.set(PortState::DISTRIBUTING, false);
        self.wait_while = None;
        self.ntt = true;
    }

    /// Ready_N: this port's wait_while has run out.
    pub fn ready_n(&self, now: Nanos) -> bool {
        self.mux == MuxState::Waiting && expired(self.wait_while, now)
    }

    /// One evaluation of the Mux machine; `ready` is the aggregator's Ready.
    pub fn step_mux(&mut self, now: Nanos, ready: bool) -> bool {
        use MuxState::*;
        let sel = self.selected;
        let partner_sync = self.partner.state.has(PortState::SYNCHRONIZATION);
        match self.mux {
            Detached if sel != Selected::Unselected => {
                self.mux = Waiting;
                self.wait_while = Some(now.saturating_add(AGGREGATE_WAIT));
                true
            }
            Waiting if sel == Selected::Unselected => {
                self.enter_detached();
                true
            }
            Waiting if sel == Selected::Selected && ready => {
                self.enter_attached();
                true
            }
            Attached if sel != Selected::Selected => {
                self.enter_detached();
                true
            }
            Attached if partner_sync => {
                self.mux = CollectingDistributing;
                self.actor.state.set(PortState::COLLECTING, true);
                self.actor.state.set(PortState::DISTRIBUTING, true);
                self.ntt = true;
                true
            }
            CollectingDistributing if sel != Selected::Selected || !partner_sync => {
                self.enter_attached();
                true
            }
            _ => false,
        }
    }

    /// When the Transmit machine may send next (None: now).
    pub fn tx_allowed_at(&self) -> Option<Nanos> {
        self.tx_times[self.tx_next].map(|t| t.saturating_add(FAST_PERIODIC))
    }

    /// Whether a LACPDU may go out at `now` under the rate limit.
    pub fn tx_allowed(&self, now: Nanos) -> bool {
        match self.tx_allowed_at() {
            Some(t) => now >= t,
            None => true,
        }
    }

    pub fn record_tx(&mut self, now: Nanos) {
        self.tx_times[self.tx_next] = Some(now);
        self.tx_next = (self.tx_next + 1) % TX_LIMIT;
        self.ntt = false;
        self.counters.tx_lacpdu += 1;
    }

    /// The LACPDU this port would send now.
    pub fn lacpdu(&self) -> Lacpdu {
        Lacpdu {
            version: 1,
            actor: self.actor,
            partner: self.partner,
            collector_max_delay: 0,
        }
    }

    pub fn push_marker(&mut self, m: MarkerPdu) {
        match self.markers.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(m),
            None => self.counters.marker_dropped += 1,
        }
    }

    pub fn pop_marker(&mut self) -> Option<MarkerPdu> {
        let m = self.markers[0].take();
        self.markers.rotate_left(1);
        m
    }

    pub fn clear_markers(&mut self) {
        self.markers = [None; MARKER_QUEUE];
    }

    /// Earliest running timer or rate-limit release.
    pub fn next_deadline(&self) -> Option<Nanos> {
        let mut d = [self.current_while, self.periodic_timer, self.wait_while];
        if self.ntt && self.periodic != PeriodicState::NoPeriodic {
            d[0] = min_opt(d[0], self.tx_allowed_at());
        }
        d.into_iter().flatten().min()
    }
}

fn min_opt(a: Option<Nanos>, b: Option<Nanos>) -> Option<Nanos> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
