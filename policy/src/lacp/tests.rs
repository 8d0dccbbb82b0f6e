//! Deterministic tests of the LACP codec and machines with a simulated clock and
//! scripted or simulated partners.

use super::*;
use crate::time::{MS, SEC};
use proptest::prelude::*;

const SYS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xaa]);
const PSYS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xbb]);
const OTHER_SYS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xcc]);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 1, n])
}

fn macs(n: usize) -> Vec<MacAddr> {
    (0..n).map(|i| mac(i as u8 + 1)).collect()
}

/// A bond of `n` members, all links up (10G full duplex) at t = 0.
fn bond_with(n: usize, f: impl FnOnce(&mut LacpConfig)) -> LacpBond {
    let mut cfg = LacpConfig::new(SYS);
    f(&mut cfg);
    let mut b = LacpBond::new(cfg, &macs(n), 0).unwrap();
    for i in 0..n {
        b.set_link(i, true, 10_000, true, 0);
    }
    b
}

fn bond(n: usize) -> LacpBond {
    bond_with(n, |_| {})
}

fn drain(b: &mut LacpBond, now: Nanos) -> Vec<(usize, Vec<u8>)> {
    let mut v = Vec::new();
    b.poll_tx(now, &mut |m, f| v.push((m, f.to_vec())));
    v
}

fn lacpdus(frames: &[(usize, Vec<u8>)]) -> Vec<(usize, Lacpdu)> {
    frames
        .iter()
        .filter_map(|(m, f)| match decode(f) {
            Ok(SlowPdu::Lacp(l)) => Some((*m, l)),
            _ => None,
        })
        .collect()
}

fn actor_of(b: &LacpBond, m: usize) -> PortInfo {
    b.status().members[m].actor
}

/// A scripted partner switch.
#[derive(Clone, Copy)]
struct Partner {
    system: MacAddr,
    key: u16,
    state: u8,
}

const IN_SYNC: u8 = PortState::ACTIVITY
    | PortState::TIMEOUT
    | PortState::AGGREGATION
    | PortState::SYNCHRONIZATION
    | PortState::COLLECTING
    | PortState::DISTRIBUTING;

impl Partner {
    fn new() -> Self {
        Partner {
            system: PSYS,
            key: 5,
            state: IN_SYNC,
        }
    }
    /// A LACPDU from partner port `port` that echoes what `b` says on member `m`.
    fn pdu_for(&self, b: &LacpBond, m: usize, port: u16) -> Vec<u8> {
        let pdu = Lacpdu {
            version: 1,
            actor: PortInfo {
                system_priority: 100,
                system: self.system,
                key: self.key,
                port_priority: 1,
                port,
                state: PortState(self.state),
            },
            partner: actor_of(b, m),
            collector_max_delay: 0,
        };
        let mut buf = [0u8; FRAME_LEN];
        let n = encode_lacpdu(MacAddr([0x02, 0, 0, 0, 9, port as u8]), &pdu, &mut buf);
        buf[..n].to_vec()
    }
    fn send(&self, b: &mut LacpBond, m: usize, now: Nanos) {
        let f = self.pdu_for(b, m, m as u16 + 1);
        b.on_frame(m, &f, now).unwrap();
    }
}

fn rx(b: &LacpBond, m: usize) -> ReceiveState {
    b.status().members[m].receive
}
fn mux(b: &LacpBond, m: usize) -> MuxState {
    b.status().members[m].mux
}
fn periodic(b: &LacpBond, m: usize) -> PeriodicState {
    b.status().members[m].periodic
}
fn selected(b: &LacpBond, m: usize) -> Selected {
    b.status().members[m].selected
}

/// Brings all members of `b` to COLLECTING_DISTRIBUTING with partner `p`; returns now.
fn bring_up(b: &mut LacpBond, p: &Partner, mut now: Nanos) -> Nanos {
    for m in 0..b.members() {
        p.send(b, m, now);
    }
    now += AGGREGATE_WAIT;
    b.tick(now);
    for m in 0..b.members() {
        p.send(b, m, now);
        assert!(b.is_distributing(m), "member {m}: {:?}", mux(b, m));
    }
    now
}

// ---------------------------------------------------------------- codec

/// A LACPDU as a switch sends it, byte by byte: actor 0x8000/00:11:22:33:44:55 key 0x0d
/// port prio 0xff port 0x10 state 0x3d; partner 0x8000/02:00:00:00:00:aa key 1 prio
/// 0x8000 port 1 state 0x3f; CollectorMaxDelay 0x0005.
fn real_lacpdu() -> [u8; 124] {
    let mut f = [0u8; 124];
    let head: [u8; 74] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x02, // dst
        0x00, 0x11, 0x22, 0x33, 0x44, 0x66, // src (the switch port)
        0x88, 0x09, // ethertype
        0x01, 0x01, // subtype LACP, version 1
        0x01, 0x14, // actor TLV
        0x80, 0x00, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x00, 0x0d, 0x00, 0xff, 0x00, 0x10, 0x3d,
        0x00, 0x00, 0x00, // reserved
        0x02, 0x14, // partner TLV
        0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0xaa, 0x00, 0x01, 0x80, 0x00, 0x00, 0x01, 0x3f,
        0x00, 0x00, 0x00, // reserved
        0x03, 0x10, 0x00, 0x05, // collector TLV, max delay
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0x00, 0x00, // terminator
    ];
    f[..74].copy_from_slice(&head);
    f
}

/// A Marker Information PDU: requester port 7, system 00:11:22:33:44:55, transaction 0x01020304.
fn real_marker() -> [u8; 124] {
    let mut f = [0u8; 124];
    let head: [u8; 36] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x02, 0x00, 0x11, 0x22, 0x33, 0x44, 0x66, 0x88, 0x09, //
        0x02, 0x01, // subtype Marker, version 1
        0x01, 0x10, // Marker Information TLV
        0x00, 0x07, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x01, 0x02, 0x03, 0x04, 0x00,
        0x00, // pad
        0x00, 0x00, // terminator
        0x00, 0x00,
    ];
    f[..36].copy_from_slice(&head);
    f
}

#[test]
fn decodes_real_lacpdu() {
    let SlowPdu::Lacp(l) = decode(&real_lacpdu()).unwrap() else {
        panic!("not LACP")
    };
    assert_eq!(l.version, 1);
    assert_eq!(l.actor.system_priority, 0x8000);
    assert_eq!(
        l.actor.system,
        MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55])
    );
    assert_eq!(l.actor.key, 0x0d);
    assert_eq!(l.actor.port_priority, 0xff);
    assert_eq!(l.actor.port, 0x10);
    assert_eq!(l.actor.state, PortState(0x3d));
    assert_eq!(
        format!("{}", l.actor.state),
        "activity aggregation synchronized collecting distributing"
    );
    assert_eq!(l.partner.system, SYS);
    assert_eq!(l.partner.port, 1);
    assert_eq!(l.partner.state, PortState(0x3f));
    assert_eq!(l.collector_max_delay, 5);
    // Re-encoding gives the same bytes (except the source MAC we choose).
    let mut out = [0u8; FRAME_LEN];
    assert_eq!(
        encode_lacpdu(MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x66]), &l, &mut out),
        124
    );
    assert_eq!(out, real_lacpdu());
}

#[test]
fn decodes_real_marker_and_reencodes() {
    let SlowPdu::Marker(m) = decode(&real_marker()).unwrap() else {
        panic!("not marker")
    };
    assert_eq!(m.kind, MarkerKind::Information);
    assert_eq!(m.requester_port, 7);
    assert_eq!(
        m.requester_system,
        MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55])
    );
    assert_eq!(m.transaction_id, 0x0102_0304);
    let mut out = [0u8; FRAME_LEN];
    encode_marker(MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x66]), &m, &mut out);
    assert_eq!(out, real_marker());
    let mut resp = real_marker();
    resp[16] = 2;
    let SlowPdu::Marker(r) = decode(&resp).unwrap() else {
        panic!()
    };
    assert_eq!(r.kind, MarkerKind::Response);
}

#[test]
fn malformed_vectors() {
    let good = real_lacpdu();
    let with = |at: usize, v: u8| {
        let mut f = good;
        f[at] = v;
        f
    };
    // Truncated at every length short of a full PDU.
    for len in 0..124 {
        assert_eq!(decode(&good[..len]), Err(PduError::Truncated), "len {len}");
    }
    // Trailing bytes (padding, FCS left on) are ignored.
    let mut long = good.to_vec();
    long.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    assert!(decode(&long).is_ok());
    assert_eq!(decode(&with(12, 0x08)), Err(PduError::NotSlowProtocol));
    let mut tagged = vec![0u8; 128];
    tagged[..12].copy_from_slice(&good[..12]);
    tagged[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged[16..].copy_from_slice(&good[12..]);
    assert_eq!(decode(&tagged), Err(PduError::NotSlowProtocol));
    assert_eq!(decode(&with(5, 0x03)), Err(PduError::BadDestination));
    assert_eq!(decode(&with(6, 0x01)), Err(PduError::BadSource));
    let mut zero_src = good;
    zero_src[6..12].fill(0);
    assert_eq!(decode(&zero_src), Err(PduError::BadSource));
    assert_eq!(decode(&with(14, 3)), Err(PduError::UnknownSubtype(3)));
    assert_eq!(
        decode(&with(14, 10)[..20]),
        Err(PduError::UnknownSubtype(10))
    );
    assert_eq!(decode(&with(15, 0)), Err(PduError::BadVersion(0)));
    let bad = |offset, tlv_type, length| {
        Err(PduError::BadTlv {
            offset,
            tlv_type,
            length,
        })
    };
    assert_eq!(decode(&with(16, 2)), bad(2, 2, 20));
    assert_eq!(decode(&with(17, 19)), bad(2, 1, 19));
    assert_eq!(decode(&with(36, 1)), bad(22, 1, 20));
    assert_eq!(decode(&with(37, 21)), bad(22, 2, 21));
    assert_eq!(decode(&with(56, 4)), bad(42, 4, 16));
    assert_eq!(decode(&with(57, 15)), bad(42, 3, 15));
    assert_eq!(decode(&with(72, 1)), bad(58, 1, 0));
    assert_eq!(decode(&with(73, 2)), bad(58, 0, 2));
    // Version 2: the part after the Collector TLV is not checked.
    let mut v2 = with(15, 2);
    v2[72] = 0x05;
    v2[73] = 0x06;
    assert!(matches!(
        decode(&v2),
        Ok(SlowPdu::Lacp(Lacpdu { version: 2, .. }))
    ));
    // Marker.
    let mk = real_marker();
    let mwith = |at: usize, v: u8| {
        let mut f = mk;
        f[at] = v;
        f
    };
    assert_eq!(decode(&mk[..123]), Err(PduError::Truncated));
    assert_eq!(decode(&mwith(16, 3)), bad(2, 3, 16));
    assert_eq!(decode(&mwith(17, 20)), bad(2, 1, 20));
    assert_eq!(decode(&mwith(34, 1)), bad(20, 1, 0));
    assert_eq!(decode(&mwith(15, 0)), Err(PduError::BadVersion(0)));
}

#[test]
fn error_names_are_distinct_and_indexed() {
    let all = [
        PduError::Truncated,
        PduError::NotSlowProtocol,
        PduError::BadDestination,
        PduError::BadSource,
        PduError::UnknownSubtype(3),
        PduError::BadVersion(0),
        PduError::BadTlv {
            offset: 2,
            tlv_type: 0,
            length: 0,
        },
    ];
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.index(), i);
        assert_eq!(e.name(), PduError::NAMES[i]);
        assert!(!e.to_string().is_empty());
    }
}

fn arb_info() -> impl Strategy<Value = PortInfo> {
    (
        any::<u16>(),
        any::<[u8; 6]>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
    )
        .prop_map(|(sp, s, k, pp, p, st)| PortInfo {
            system_priority: sp,
            system: MacAddr(s),
            key: k,
            port_priority: pp,
            port: p,
            state: PortState(st),
        })
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_of_mutated_pdu_never_panics(
        which in any::<bool>(),
        edits in proptest::collection::vec((0usize..130, any::<u8>()), 0..8),
        len in 0usize..130,
    ) {
        let mut f = if which { real_lacpdu().to_vec() } else { real_marker().to_vec() };
        f.resize(130, 0);
        for (at, v) in edits { f[at] = v; }
        f.truncate(len);
        if let Ok(pdu) = decode(&f) {
            // Anything accepted re-encodes to a frame that decodes to the same PDU.
            let mut out = [0u8; FRAME_LEN];
            let again = match pdu {
                SlowPdu::Lacp(l) => { encode_lacpdu(mac(1), &l, &mut out); decode(&out) }
                SlowPdu::Marker(m) => { encode_marker(mac(1), &m, &mut out); decode(&out) }
            };
            match (pdu, again) {
                (SlowPdu::Lacp(a), Ok(SlowPdu::Lacp(b))) => {
                    prop_assert_eq!(Lacpdu { version: 1, ..a }, b)
                }
                (a, b) => prop_assert_eq!(Ok(a), b),
            }
        }
    }

    #[test]
    fn lacpdu_roundtrip(actor in arb_info(), partner in arb_info(), d in any::<u16>()) {
        let pdu = Lacpdu { version: 1, actor, partner, collector_max_delay: d };
        let mut out = [0u8; FRAME_LEN];
        prop_assert_eq!(encode_lacpdu(mac(3), &pdu, &mut out), FRAME_LEN);
        prop_assert_eq!(decode(&out), Ok(SlowPdu::Lacp(pdu)));
    }

    #[test]
    fn marker_roundtrip(port in any::<u16>(), sys in any::<[u8; 6]>(), tid in any::<u32>(), resp in any::<bool>()) {
        let kind = if resp { MarkerKind::Response } else { MarkerKind::Information };
        let m = MarkerPdu { kind, requester_port: port, requester_system: MacAddr(sys), transaction_id: tid };
        let mut out = [0u8; FRAME_LEN];
        encode_marker(mac(3), &m, &mut out);
        prop_assert_eq!(decode(&out), Ok(SlowPdu::Marker(m)));
    }
}

// ---------------------------------------------------------------- config

#[test]
fn setting_words_roundtrip() {
    for m in [LacpMode::Off, LacpMode::Active, LacpMode::Passive] {
        assert_eq!(m.to_string().parse::<LacpMode>(), Ok(m));
    }
    for r in [LacpRate::Fast, LacpRate::Slow] {
        assert_eq!(r.to_string().parse::<LacpRate>(), Ok(r));
    }
    for f in [Fallback::ActiveBackup, Fallback::None] {
        assert_eq!(f.to_string().parse::<Fallback>(), Ok(f));
    }
    assert_eq!(
        "active-backup".parse::<Fallback>(),
        Ok(Fallback::ActiveBackup)
    );
    assert!("on".parse::<LacpMode>().is_err());
    assert!("medium"
        .parse::<LacpRate>()
        .unwrap_err()
        .to_string()
        .contains("fast slow"));
}

#[test]
fn new_validates() {
    let cfg = LacpConfig::new(SYS);
    assert_eq!(
        LacpBond::new(cfg.clone(), &[], 0).unwrap_err(),
        LacpError::NoMembers
    );
    let mut c = cfg.clone();
    c.port_priorities = vec![1, 2, 3];
    assert_eq!(
        LacpBond::new(c, &macs(2), 0).unwrap_err(),
        LacpError::PortPriorityCount { got: 3, members: 2 }
    );
    let c = LacpConfig::new(MacAddr::SLOW_PROTOCOLS);
    assert!(matches!(
        LacpBond::new(c, &macs(2), 0),
        Err(LacpError::BadSystemId(_))
    ));
    assert!(matches!(
        LacpBond::new(cfg.clone(), &[mac(1), MacAddr::BROADCAST], 0),
        Err(LacpError::BadMemberMac { member: 1, .. })
    ));
    let many = vec![mac(1); MAX_MEMBERS + 1];
    assert!(matches!(
        LacpBond::new(cfg, &many, 0),
        Err(LacpError::TooManyMembers(_))
    ));
}

// ---------------------------------------------------------------- machines

#[test]
fn bring_up_time_to_collecting_distributing() {
    let mut b = bond(2);
    let p = Partner::new();
    // t = 0: links up, both members transmit at once (NO_PERIODIC -> FAST_PERIODIC).
    let tx = lacpdus(&drain(&mut b, 0));
    assert_eq!(tx.iter().map(|(m, _)| *m).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(tx[0].1.actor.system, SYS);
    assert!(tx[0]
        .1
        .actor
        .state
        .has(PortState::DEFAULTED | PortState::EXPIRED));
    let reply_at = 10 * MS;
    for m in 0..2 {
        p.send(&mut b, m, reply_at);
        assert_eq!(rx(&b, m), ReceiveState::Current);
        assert_eq!(selected(&b, m), Selected::Selected);
        assert_eq!(mux(&b, m), MuxState::Waiting);
    }
    // Simulate in 1 ms steps with the partner answering every 1 s, record the time.
    let mut now = reply_at;
    let mut up_at = None;
    while now < 5 * SEC && up_at.is_none() {
        now += MS;
        b.tick(now);
        if (now - reply_at).is_multiple_of(SEC) {
            p.send(&mut b, 0, now);
            p.send(&mut b, 1, now);
        }
        if b.is_distributing(0) && b.is_distributing(1) {
            up_at = Some(now);
        }
    }
    // Exactly the wait_while after the partner was heard: no extra gap.
    assert_eq!(
        up_at,
        Some(reply_at + AGGREGATE_WAIT),
        "time to collecting+distributing"
    );
    let st = actor_of(&b, 0).state;
    assert!(st.has(PortState::SYNCHRONIZATION | PortState::COLLECTING | PortState::DISTRIBUTING));
    assert!(!st.has(PortState::DEFAULTED) && !st.has(PortState::EXPIRED));
    let status = b.status();
    assert_eq!(status.aggregator.unwrap().distributing, 2);
}

#[test]
fn receive_port_disabled_to_expired_to_defaulted() {
    let mut b = LacpBond::new(LacpConfig::new(SYS), &macs(1), 0).unwrap();
    assert_eq!(rx(&b, 0), ReceiveState::PortDisabled); // BEGIN -> INITIALIZE -> PORT_DISABLED
    assert_eq!(periodic(&b, 0), PeriodicState::NoPeriodic);
    assert!(drain(&mut b, 0).is_empty());
    b.set_link(0, true, 1000, true, SEC);
    assert_eq!(rx(&b, 0), ReceiveState::Expired);
    assert!(actor_of(&b, 0).state.has(PortState::EXPIRED));
    b.tick(SEC + SHORT_TIMEOUT - 1);
    assert_eq!(rx(&b, 0), ReceiveState::Expired);
    b.tick(SEC + SHORT_TIMEOUT);
    assert_eq!(rx(&b, 0), ReceiveState::Defaulted);
    let a = actor_of(&b, 0).state;
    assert!(a.has(PortState::DEFAULTED) && !a.has(PortState::EXPIRED));
    assert_eq!(b.status().members[0].partner, PARTNER_ADMIN);
    assert!(!b.is_distributing(0));
    assert_eq!(selected(&b, 0), Selected::Unselected);
}

#[test]
fn receive_lacp_disabled_on_half_duplex() {
    let mut b = LacpBond::new(LacpConfig::new(SYS), &macs(1), 0).unwrap();
    b.set_link(0, true, 100, false, 0);
    assert_eq!(rx(&b, 0), ReceiveState::LacpDisabled);
    assert_eq!(periodic(&b, 0), PeriodicState::NoPeriodic);
    assert!(drain(&mut b, 0).is_empty());
    // PDUs are ignored; the port never aggregates.
    Partner::new().send(&mut b, 0, MS);
    assert_eq!(b.status().members[0].counters.rx_ignored, 1);
    assert!(!b.is_distributing(0));
    // Duplex becomes full: the machine restarts through PORT_DISABLED into EXPIRED.
    b.set_link(0, true, 100, true, 2 * MS);
    assert_eq!(rx(&b, 0), ReceiveState::Expired);
    // Link down from LACP_DISABLED goes to PORT_DISABLED.
    b.set_link(0, true, 100, false, 3 * MS);
    b.set_link(0, false, 0, false, 4 * MS);
    assert_eq!(rx(&b, 0), ReceiveState::PortDisabled);
}

#[test]
fn receive_defaulted_to_current_and_current_restarts_timer() {
    let mut b = bond(1);
    b.tick(SHORT_TIMEOUT);
    assert_eq!(rx(&b, 0), ReceiveState::Defaulted);
    let p = Partner::new();
    let t = SHORT_TIMEOUT + 500 * MS;
    p.send(&mut b, 0, t);
    assert_eq!(rx(&b, 0), ReceiveState::Current);
    assert!(!actor_of(&b, 0).state.has(PortState::DEFAULTED));
    // CURRENT -> CURRENT: each PDU restarts current_while (short: 3 s).
    p.send(&mut b, 0, t + 2 * SEC);
    b.tick(t + 2 * SEC + SHORT_TIMEOUT - 1);
    assert_eq!(rx(&b, 0), ReceiveState::Current);
    b.tick(t + 2 * SEC + SHORT_TIMEOUT);
    assert_eq!(rx(&b, 0), ReceiveState::Expired);
}

#[test]
fn timeout_expired_then_defaulted_leaves_distribution() {
    let mut b = bond(1);
    let p = Partner::new();
    let now = bring_up(&mut b, &p, 0);
    // Partner goes silent.
    b.tick(now + SHORT_TIMEOUT - 1);
    assert!(b.is_distributing(0));
    b.tick(now + SHORT_TIMEOUT);
    assert_eq!(rx(&b, 0), ReceiveState::Expired);
    // EXPIRED clears the partner's sync: the port leaves distribution at once.
    assert!(!b.is_distributing(0));
    assert_eq!(mux(&b, 0), MuxState::Attached);
    let tx = lacpdus(&drain(&mut b, now + SHORT_TIMEOUT));
    assert!(tx[0].1.actor.state.has(PortState::EXPIRED));
    assert!(!tx[0].1.actor.state.has(PortState::COLLECTING));
    b.tick(now + 2 * SHORT_TIMEOUT);
    assert_eq!(rx(&b, 0), ReceiveState::Defaulted);
    assert_eq!(mux(&b, 0), MuxState::Detached);
    assert!(!b.negotiated());
}

#[test]
fn slow_rate_uses_long_timeout() {
    let mut b = bond_with(1, |c| c.rate = LacpRate::Slow);
    assert!(!actor_of(&b, 0).state.has(PortState::TIMEOUT));
    let p = Partner::new();
    let now = bring_up(&mut b, &p, 0);
    b.tick(now + LONG_TIMEOUT - 1);
    assert_eq!(rx(&b, 0), ReceiveState::Current);
    assert!(b.is_distributing(0));
    b.tick(now + LONG_TIMEOUT);
    assert_eq!(rx(&b, 0), ReceiveState::Expired);
}

#[test]
fn link_down_goes_port_disabled_and_back() {
    let mut b = bond(2);
    let p = Partner::new();
    let now = bring_up(&mut b, &p, 0);
    b.set_link(1, false, 0, true, now + MS);
    assert_eq!(rx(&b, 1), ReceiveState::PortDisabled);
    assert_eq!(periodic(&b, 1), PeriodicState::NoPeriodic);
    assert!(!b.is_distributing(1));
    assert!(b.is_distributing(0));
    // Nothing is sent on a down member.
    assert!(drain(&mut b, now + 2 * MS).iter().all(|(m, _)| *m == 0));
    // Back up: EXPIRED with the old partner, reselected, rejoins after wait_while.
    let t = now + SEC;
    b.set_link(1, true, 10_000, true, t);
    assert_eq!(rx(&b, 1), ReceiveState::Expired);
    p.send(&mut b, 1, t + MS);
    assert_eq!(mux(&b, 1), MuxState::Waiting);
    b.tick(t + MS + AGGREGATE_WAIT);
    p.send(&mut b, 1, t + MS + AGGREGATE_WAIT);
    assert!(b.is_distributing(1));
}

#[test]
fn port_moved_reinitialises_disabled_port() {
    let mut b = bond(2);
    let p = Partner::new();
    let now = bring_up(&mut b, &p, 0);
    b.set_link(1, false, 0, true, now);
    assert_eq!(b.status().members[1].partner.port, 2);
    // The partner's port 2 now answers on member 0 (cables swapped).
    let f = p.pdu_for(&b, 0, 2);
    b.on_frame(0, &f, now + MS).unwrap();
    let m1 = &b.status().members[1];
    assert_eq!(m1.receive, ReceiveState::PortDisabled);
    assert_eq!(m1.partner, PARTNER_ADMIN, "INITIALIZE ran recordDefault");
}

#[test]
fn periodic_follows_partner_timeout_bit() {
    let mut b = bond(1);
    let mut p = Partner::new();
    let mut now = bring_up(&mut b, &p, 0);
    drain(&mut b, now);
    assert_eq!(periodic(&b, 0), PeriodicState::FastPeriodic);
    // Fast: one LACPDU per second.
    let mut times = vec![];
    for _ in 0..3000 {
        now += MS;
        if !drain(&mut b, now).is_empty() {
            times.push(now);
        }
        if now.is_multiple_of(SEC) {
            p.send(&mut b, 0, now);
        }
    }
    assert_eq!(times.len(), 3);
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == FAST_PERIODIC),
        "{times:?}"
    );
    // Partner asks for slow (long timeout): FAST_PERIODIC -> SLOW_PERIODIC.
    p.state &= !PortState::TIMEOUT;
    p.send(&mut b, 0, now);
    assert_eq!(periodic(&b, 0), PeriodicState::SlowPeriodic);
    drain(&mut b, now);
    let start = now;
    let mut times = vec![];
    while now < start + 65 * SEC {
        now += 100 * MS;
        if !drain(&mut b, now).is_empty() {
            times.push(now - start);
        }
        // We asked for fast: the partner keeps sending every second.
        if now.is_multiple_of(SEC) {
            p.send(&mut b, 0, now);
        }
    }
    // SLOW_PERIODIC -> PERIODIC_TX on expiry, every 30 s.
    assert_eq!(times, vec![SLOW_PERIODIC, 2 * SLOW_PERIODIC]);
    // Partner asks for fast again: SLOW_PERIODIC -> PERIODIC_TX at once -> FAST_PERIODIC.
    p.state |= PortState::TIMEOUT;
    p.send(&mut b, 0, now);
    assert_eq!(periodic(&b, 0), PeriodicState::FastPeriodic);
    assert_eq!(lacpdus(&drain(&mut b, now)).len(), 1);
    assert_eq!(b.next_deadline(), Some(now + FAST_PERIODIC));
}

#[test]
fn tx_rate_limit_three_per_fast_period() {
    let mut b = bond(1);
    let mut p = Partner::new();
    drain(&mut b, 0);
    let mut sent = vec![];
    // A partner flapping its sync bit makes every PDU need an answer (update_NTT).
    for i in 1..=20u64 {
        let now = i * 50 * MS;
        p.state ^= PortState::SYNCHRONIZATION;
        let f = p.pdu_for(&b, 0, 1);
        let mut f2 = f.clone();
        // Make our info look stale in the partner's view so NTT is set.
        f2[14 + 22 + 2 + 8] ^= 0xff;
        b.on_frame(0, &f2, now).unwrap();
        for _ in drain(&mut b, now) {
            sent.push(now);
        }
    }
    // Including the bring-up PDU at t = 0, no 1 s window holds more than 3.
    let mut all = vec![0];
    all.extend(sent);
    for w in all.windows(4) {
        assert!(w[3] - w[0] >= FAST_PERIODIC, "{all:?}");
    }
    assert!(b.status().members[0].counters.tx_rate_limited > 0);
    // The held-back PDU goes out when the window opens.
    let deadline = b.next_deadline().unwrap();
    assert_eq!(lacpdus(&drain(&mut b, deadline)).len(), 1);
}

#[test]
fn marker_responder() {
    let mut b = bond(2);
    drain(&mut b, 0);
    b.on_frame(1, &real_marker(), MS).unwrap();
    let out = drain(&mut b, MS);
    assert_eq!(out.len(), 1);
    let (m, f) = &out[0];
    assert_eq!(*m, 1);
    assert_eq!(&f[0..6], &MacAddr::SLOW_PROTOCOLS.0);
    assert_eq!(&f[6..12], &mac(2).0);
    let SlowPdu::Marker(r) = decode(f).unwrap() else {
        panic!()
    };
    assert_eq!(r.kind, MarkerKind::Response);
    assert_eq!(r.requester_port, 7);
    assert_eq!(
        r.requester_system,
        MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55])
    );
    assert_eq!(r.transaction_id, 0x0102_0304);
    // A response is counted, not answered.
    let mut resp = real_marker();
    resp[16] = 2;
    b.on_frame(1, &resp, 2 * MS).unwrap();
    assert!(drain(&mut b, 2 * MS).is_empty());
    // Queue overflow is counted.
    for _ in 0..MARKER_QUEUE + 2 {
        b.on_frame(0, &real_marker(), 3 * MS).unwrap();
    }
    assert_eq!(drain(&mut b, 3 * MS).len(), MARKER_QUEUE);
    let c = b.status().members;
    assert_eq!(c[0].counters.marker_dropped, 2);
    assert_eq!(c[1].counters.rx_marker, 1);
    assert_eq!(c[1].counters.tx_marker_response, 1);
    assert_eq!(c[1].counters.rx_marker_response, 1);
}

#[test]
fn malformed_frames_are_counted_by_kind() {
    let mut b = bond(1);
    assert_eq!(
        b.on_frame(0, &real_lacpdu()[..60], 0),
        Err(PduError::Truncated)
    );
    let mut f = real_lacpdu();
    f[17] = 0;
    assert!(matches!(b.on_frame(0, &f, 0), Err(PduError::BadTlv { .. })));
    let c = b.status().members[0].counters;
    assert_eq!(c.rx_errors[PduError::Truncated.index()], 1);
    assert_eq!(c.rx_errors[6], 1);
    assert_eq!(c.rx_errors_total(), 2);
    assert_eq!(c.rx_lacpdu, 0);
}

#[test]
fn mux_waiting_to_detached_when_partner_changes() {
    let mut b = bond(1);
    let mut p = Partner::new();
    p.send(&mut b, 0, 0);
    assert_eq!(mux(&b, 0), MuxState::Waiting);
    // Partner changes key while we wait: update_Selected -> UNSELECTED -> DETACHED,
    // then reselected into the new aggregator with a fresh wait_while.
    p.key = 6;
    p.send(&mut b, 0, SEC);
    assert_eq!(mux(&b, 0), MuxState::Waiting);
    assert_eq!(b.active_aggregator().unwrap().partner_key, 6);
    b.tick(SEC + AGGREGATE_WAIT - 1);
    assert_eq!(mux(&b, 0), MuxState::Waiting);
    b.tick(SEC + AGGREGATE_WAIT);
    assert_eq!(mux(&b, 0), MuxState::CollectingDistributing);
}

#[test]
fn mux_attached_waits_for_partner_sync_and_leaves_on_loss() {
    let mut b = bond(1);
    let mut p = Partner::new();
    p.state &= !(PortState::SYNCHRONIZATION | PortState::COLLECTING | PortState::DISTRIBUTING);
    p.send(&mut b, 0, 0);
    b.tick(AGGREGATE_WAIT);
    assert_eq!(mux(&b, 0), MuxState::Attached);
    assert!(actor_of(&b, 0).state.has(PortState::SYNCHRONIZATION));
    assert!(!b.is_distributing(0));
    // ATTACHED -> COLLECTING_DISTRIBUTING in the same call that delivers sync.
    p.state = IN_SYNC;
    p.send(&mut b, 0, AGGREGATE_WAIT + MS);
    assert!(b.is_distributing(0) && b.is_collecting(0));
    // A partner that sees us wrongly (not in sync with our info) is not in sync.
    let mut f = p.pdu_for(&b, 0, 1);
    f[14 + 22 + 2 + 8 + 1] ^= 1; // partner's idea of our key
    b.on_frame(0, &f, AGGREGATE_WAIT + 2 * MS).unwrap();
    assert_eq!(mux(&b, 0), MuxState::Attached);
    // Back in sync, then the partner drops sync: C/D -> ATTACHED.
    p.send(&mut b, 0, AGGREGATE_WAIT + 3 * MS);
    assert!(b.is_distributing(0));
    p.state &= !PortState::SYNCHRONIZATION;
    p.send(&mut b, 0, AGGREGATE_WAIT + 4 * MS);
    assert_eq!(mux(&b, 0), MuxState::Attached);
}

#[test]
fn partner_key_change_leaves_and_rejoins() {
    let mut b = bond(3);
    let mut p = Partner::new();
    let now = bring_up(&mut b, &p, 0);
    let agg = b.active_aggregator().unwrap();
    // Member 2's partner port moves to key 6: it leaves (its aggregator has 1 port,
    // the bond keeps the 2-port one), the others keep distributing.
    p.key = 6;
    p.send(&mut b, 2, now + MS);
    assert!(!b.is_distributing(2));
    assert_eq!(selected(&b, 2), Selected::Standby);
    assert_eq!(b.active_aggregator(), Some(agg));
    assert!(b.is_distributing(0) && b.is_distributing(1));
    // Key back to 5: rejoins the right aggregator after wait_while.
    p.key = 5;
    p.send(&mut b, 2, now + SEC);
    assert_eq!(selected(&b, 2), Selected::Selected);
    assert_eq!(b.status().members[2].lag, Some(agg));
    b.tick(now + SEC + AGGREGATE_WAIT);
    p.send(&mut b, 2, now + SEC + AGGREGATE_WAIT);
    assert!(b.is_distributing(2));
}

#[test]
fn different_partner_system_is_not_aggregated() {
    let mut b = bond(3);
    let p = Partner::new();
    let q = Partner {
        system: OTHER_SYS,
        ..Partner::new()
    };
    p.send(&mut b, 0, 0);
    p.send(&mut b, 1, 0);
    q.send(&mut b, 2, 0);
    b.tick(AGGREGATE_WAIT);
    p.send(&mut b, 0, AGGREGATE_WAIT);
    p.send(&mut b, 1, AGGREGATE_WAIT);
    q.send(&mut b, 2, AGGREGATE_WAIT);
    assert!(b.is_distributing(0) && b.is_distributing(1));
    assert!(!b.is_distributing(2));
    assert_eq!(selected(&b, 2), Selected::Standby);
    // A STANDBY port advertises no sync, so the other switch does not use it either.
    assert!(!actor_of(&b, 2).state.has(PortState::SYNCHRONIZATION));
    assert_eq!(b.active_aggregator().unwrap().partner_system, PSYS);
}

#[test]
fn aggregator_choice_most_ports_then_stable_then_best_id() {
    // Equal sizes from scratch: the better (lower) partner system ID wins.
    let mut b = bond(2);
    let p = Partner::new(); // ...bb
    let q = Partner {
        system: MacAddr([0x02, 0, 0, 0, 0, 0x01]),
        ..Partner::new()
    };
    p.send(&mut b, 0, 0);
    q.send(&mut b, 1, 0);
    assert_eq!(b.active_aggregator().unwrap().partner_system, q.system);
    // Deterministic: same result whichever port speaks first.
    let mut b2 = bond(2);
    q.send(&mut b2, 1, 0);
    p.send(&mut b2, 0, 0);
    assert_eq!(b2.active_aggregator(), b.active_aggregator());

    // Stability: a running aggregator is not abandoned for an equal-sized one.
    let mut b = bond(2);
    p.send(&mut b, 0, 0);
    b.tick(AGGREGATE_WAIT);
    p.send(&mut b, 0, AGGREGATE_WAIT);
    assert!(b.is_distributing(0));
    q.send(&mut b, 1, AGGREGATE_WAIT + MS);
    assert_eq!(b.active_aggregator().unwrap().partner_system, PSYS);
    assert!(b.is_distributing(0));

    // More ports win: ATTACHED/C-D ports of the smaller one go STANDBY -> DETACHED.
    let mut b = bond(3);
    p.send(&mut b, 0, 0);
    b.tick(AGGREGATE_WAIT);
    p.send(&mut b, 0, AGGREGATE_WAIT);
    assert!(b.is_distributing(0));
    q.send(&mut b, 1, AGGREGATE_WAIT + MS);
    q.send(&mut b, 2, AGGREGATE_WAIT + MS);
    assert_eq!(b.active_aggregator().unwrap().partner_system, q.system);
    assert_eq!(selected(&b, 0), Selected::Standby);
    assert_eq!(mux(&b, 0), MuxState::Waiting);
    assert!(!b.is_distributing(0));
}

#[test]
fn mode_off_is_static_aggregation() {
    let mut b = bond_with(3, |c| c.mode = LacpMode::Off);
    b.set_link(2, false, 0, true, 0);
    assert!(b.is_distributing(0) && b.is_distributing(1) && !b.is_distributing(2));
    assert!(drain(&mut b, 0).is_empty());
    Partner::new().send(&mut b, 0, MS);
    b.on_frame(0, &real_marker(), MS).unwrap();
    assert!(drain(&mut b, 10 * SEC).is_empty());
    assert_eq!(b.next_deadline(), None);
    assert!(!b.fallback_active());
    assert!(b.status().to_string().contains("status: off"));
}

#[test]
fn fallback_active_backup_when_partner_silent() {
    let mut b = bond_with(2, |c| c.fallback = Fallback::ActiveBackup);
    assert!(b.fallback_active());
    b.tick(2 * SHORT_TIMEOUT);
    assert!(b.fallback_active() && b.fallback_eligible(0) && b.fallback_eligible(1));
    assert!(!b.is_distributing(0));
    b.set_link(1, false, 0, true, 2 * SHORT_TIMEOUT);
    assert!(!b.fallback_eligible(1));
    // A LACP partner appears: fallback ends.
    Partner::new().send(&mut b, 0, 7 * SEC);
    assert!(!b.fallback_active() && !b.fallback_eligible(0));
    // Without fallback configured it never activates.
    let b = bond(2);
    assert!(!b.fallback_active() && !b.fallback_eligible(0));
}

#[test]
fn system_id_unchanged_after_member_fails() {
    let mut b = bond(2);
    let p = Partner::new();
    let now = bring_up(&mut b, &p, 0);
    b.set_link(0, false, 0, true, now + MS);
    let tx = lacpdus(&drain(&mut b, now + SEC));
    assert!(!tx.is_empty());
    for (m, l) in &tx {
        assert_eq!(*m, 1);
        assert_eq!(l.actor.system, SYS);
        assert_eq!(l.actor.system_priority, DEFAULT_PRIORITY);
    }
    assert_eq!(b.status().system_id, SYS);
    p.send(&mut b, 1, now + SEC);
    assert!(b.is_distributing(1));
}

#[test]
fn set_config_rate_and_key_changes() {
    let mut b = bond(1);
    let p = Partner::new();
    let now = bring_up(&mut b, &p, 0);
    drain(&mut b, now);
    let mut cfg = b.config().clone();
    cfg.rate = LacpRate::Slow;
    b.set_config(cfg.clone(), now + MS).unwrap();
    let tx = lacpdus(&drain(&mut b, now + MS));
    assert_eq!(tx.len(), 1, "rate change is sent at once");
    assert!(!tx[0].1.actor.state.has(PortState::TIMEOUT));
    assert!(b.is_distributing(0));
    // Key change: our info no longer matches what the partner echoes -> out of sync.
    cfg.key = 9;
    b.set_config(cfg.clone(), now + 2 * MS).unwrap();
    assert!(!b.is_distributing(0));
    assert_eq!(lacpdus(&drain(&mut b, now + 2 * MS))[0].1.actor.key, 9);
    p.send(&mut b, 0, now + 3 * MS);
    b.tick(now + 3 * MS + AGGREGATE_WAIT);
    p.send(&mut b, 0, now + 3 * MS + AGGREGATE_WAIT);
    assert!(b.is_distributing(0));
    // Turning LACP off and on restarts the machines.
    cfg.mode = LacpMode::Off;
    b.set_config(cfg.clone(), now + 5 * SEC).unwrap();
    assert!(b.is_distributing(0));
    cfg.mode = LacpMode::Active;
    b.set_config(cfg.clone(), now + 6 * SEC).unwrap();
    assert!(!b.is_distributing(0));
    assert_eq!(rx(&b, 0), ReceiveState::Expired);
    cfg.port_priorities = vec![1, 2];
    assert!(b.set_config(cfg, now + 7 * SEC).is_err());
}

#[test]
fn status_renders_like_ovs() {
    let mut b = bond(2);
    let p = Partner::new();
    bring_up(&mut b, &p, 0);
    let mut st = b.status();
    st.name = "bond0".into();
    st.members[0].name = "eth0".into();
    let text = st.to_string();
    for needle in [
        "---- bond0 ----",
        "status: active negotiated",
        "sys_id: 02:00:00:00:00:aa",
        "lacp_time: fast",
        "member: eth0: current attached",
        "may_enable: true",
        "actor state: activity timeout aggregation synchronized collecting distributing",
        "partner sys_id: 02:00:00:00:00:bb",
        "partner key: 5",
        "2 selected, 2 distributing",
        "rx_errors: 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

// ---------------------------------------------------------------- passive / back-to-back

/// Two bonds wired member i <-> member i; frames are delivered within the same step.
struct Net {
    a: LacpBond,
    b: LacpBond,
    up: Vec<bool>,
    now: Nanos,
    frames: usize,
}

impl Net {
    fn new(n: usize, fa: impl FnOnce(&mut LacpConfig), fb: impl FnOnce(&mut LacpConfig)) -> Net {
        let mut ca = LacpConfig::new(SYS);
        fa(&mut ca);
        let mut cb = LacpConfig::new(PSYS);
        cb.key = 7;
        fb(&mut cb);
        let b_macs: Vec<MacAddr> = (0..n)
            .map(|i| MacAddr([0x02, 0, 0, 0, 2, i as u8 + 1]))
            .collect();
        let mut a = LacpBond::new(ca, &macs(n), 0).unwrap();
        let mut b = LacpBond::new(cb, &b_macs, 0).unwrap();
        for i in 0..n {
            a.set_link(i, true, 25_000, true, 0);
            b.set_link(i, true, 25_000, true, 0);
        }
        Net {
            a,
            b,
            up: vec![true; n],
            now: 0,
            frames: 0,
        }
    }

    fn step(&mut self, dt: Nanos) {
        self.now += dt;
        let now = self.now;
        self.a.tick(now);
        self.b.tick(now);
        for _ in 0..4 {
            let fa = drain(&mut self.a, now);
            let fb = drain(&mut self.b, now);
            if fa.is_empty() && fb.is_empty() {
                break;
            }
            for (m, f) in fa {
                self.frames += 1;
                if self.up[m] {
                    self.b.on_frame(m, &f, now).unwrap();
                }
            }
            for (m, f) in fb {
                self.frames += 1;
                if self.up[m] {
                    self.a.on_frame(m, &f, now).unwrap();
                }
            }
        }
    }

    fn both(&self, m: usize) -> bool {
        self.a.is_distributing(m) && self.b.is_distributing(m)
    }
}

#[test]
fn back_to_back_bring_up_and_link_loss() {
    let mut net = Net::new(2, |_| {}, |_| {});
    let mut up_at = None;
    while net.now < 10 * SEC {
        net.step(MS);
        if up_at.is_none() && net.both(0) && net.both(1) {
            up_at = Some(net.now);
        }
    }
    let up_at = up_at.expect("never reached collecting+distributing");
    println!(
        "back-to-back: both links collecting+distributing at {} ms",
        up_at / MS
    );
    // Recorded bring-up time: both sides hear each other at t = 1 ms (first step), so
    // wait_while ends at 2.001 s and the sync exchange completes in the same step.
    assert_eq!(
        up_at,
        MS + AGGREGATE_WAIT,
        "simulated time to collecting+distributing"
    );
    assert!(up_at <= AGGREGATE_WAIT + 2 * FAST_PERIODIC);
    assert_eq!(net.a.active_aggregator().unwrap().partner_system, PSYS);
    assert_eq!(net.b.active_aggregator().unwrap().partner_key, 1);
    // Link 1 drops (carrier lost on both ends).
    net.up[1] = false;
    let t = net.now;
    net.a.set_link(1, false, 0, true, t);
    net.b.set_link(1, false, 0, true, t);
    for _ in 0..10_000 {
        net.step(MS);
        assert!(net.both(0), "link 0 must keep distributing at {}", net.now);
        assert!(!net.a.is_distributing(1) && !net.b.is_distributing(1));
    }
}

#[test]
fn back_to_back_silent_link_failure_times_out() {
    // Carrier stays up but frames are lost on link 1: the short timeout removes it.
    let mut net = Net::new(2, |_| {}, |_| {});
    while net.now < 5 * SEC {
        net.step(MS);
    }
    assert!(net.both(0) && net.both(1));
    net.up[1] = false;
    let t = net.now;
    while net.now < t + SHORT_TIMEOUT + 10 * MS {
        net.step(MS);
        assert!(net.both(0));
    }
    assert!(!net.a.is_distributing(1) && !net.b.is_distributing(1));
    // Frames flow again: it rejoins within wait_while plus a fast period.
    net.up[1] = true;
    let t = net.now;
    while net.now < t + AGGREGATE_WAIT + 2 * FAST_PERIODIC && !net.both(1) {
        net.step(MS);
    }
    assert!(net.both(1));
}

#[test]
fn passive_passive_never_starts() {
    let mut net = Net::new(
        2,
        |c| c.mode = LacpMode::Passive,
        |c| c.mode = LacpMode::Passive,
    );
    while net.now < 100 * SEC {
        net.step(10 * MS);
    }
    assert_eq!(net.frames, 0);
    assert!(!net.both(0) && !net.both(1));
    assert_eq!(periodic(&net.a, 0), PeriodicState::NoPeriodic);
}

#[test]
fn active_passive_starts() {
    let mut net = Net::new(2, |_| {}, |c| c.mode = LacpMode::Passive);
    while net.now < AGGREGATE_WAIT + 2 * FAST_PERIODIC {
        net.step(MS);
    }
    assert!(net.both(0) && net.both(1));
    assert!(!actor_of(&net.b, 0).state.has(PortState::ACTIVITY));
    // The passive side transmits because its partner is active.
    assert!(net.b.status().members[0].counters.tx_lacpdu > 0);
}

#[test]
fn back_to_back_slow_rate() {
    let mut net = Net::new(1, |c| c.rate = LacpRate::Slow, |c| c.rate = LacpRate::Slow);
    while net.now < 10 * SEC {
        net.step(10 * MS);
    }
    assert!(net.both(0));
    assert_eq!(periodic(&net.a, 0), PeriodicState::SlowPeriodic);
    let before = net.a.status().members[0].counters.tx_lacpdu;
    while net.now < 130 * SEC {
        net.step(10 * MS);
        assert!(net.both(0), "slow link must stay up at {}", net.now);
    }
    assert_eq!(net.a.status().members[0].counters.tx_lacpdu - before, 4);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Any mix of garbage, mutated PDUs, link events and time never panics, never
    /// sends more than 3 LACPDUs per second on a member, and never distributes on a
    /// down link.
    #[test]
    fn bond_survives_arbitrary_input(
        ops in proptest::collection::vec(
            (0u8..5, 0usize..3, any::<u16>(), proptest::collection::vec((0usize..124, any::<u8>()), 0..4)),
            1..200)
    ) {
        let mut b = bond(3);
        let p = Partner::new();
        let mut now: Nanos = 0;
        let mut tx: Vec<Vec<Nanos>> = vec![vec![]; 3];
        for (op, m, x, edits) in ops {
            match op {
                0 => now += x as Nanos * MS / 16,
                1 => b.set_link(m, x % 3 != 0, 1000, x % 5 != 0, now),
                2 => {
                    let mut f = p.pdu_for(&b, m, x % 4);
                    for (at, v) in edits { f[at] = v; }
                    let _ = b.on_frame(m, &f, now);
                }
                3 => { let _ = b.on_frame(m, &real_marker(), now); }
                _ => b.tick(now),
            }
            b.poll_tx(now, &mut |mm, f| {
                if let Ok(SlowPdu::Lacp(_)) = decode(f) { tx[mm].push(now) }
            });
            for i in 0..3 {
                let up = b.status().members[i].link_up;
                prop_assert!(up || !b.is_distributing(i));
            }
        }
        for t in &tx {
            for w in t.windows(4) {
                prop_assert!(w[3] - w[0] >= FAST_PERIODIC);
            }
        }
    }
}

#[test]
fn print_status_example() {
    let mut b = bond_with(2, |c| c.fallback = Fallback::ActiveBackup);
    let p = Partner::new();
    bring_up(&mut b, &p, 0);
    b.set_link(1, false, 0, true, 3 * SEC);
    let _ = b.on_frame(0, &real_lacpdu()[..50], 3 * SEC);
    let text = b.status().to_string();
    println!("{text}");
    assert!(
        text.contains("member: member1: disabled detached"),
        "{text}"
    );
    assert!(text.contains("rx_errors: 1 truncated 1"), "{text}");
}
