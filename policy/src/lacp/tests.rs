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
        Partner { system: PSYS, key: 5, state: IN_SYNC }
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
        0x00, 0x07, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, // pad
        0x00, 0x00, // terminator
        0x00, 0x00,
    ];
    f[..36].copy_from_slice(&head);
    f
}

#[test]
fn decodes_real_lacpdu() {
    let SlowPdu::Lacp(l) = decode(&real_lacpdu()).unwrap() else { panic!("not LACP") };
    assert_eq!(l.version, 1);
    assert_eq!(l.actor.system_priority, 0x8000);
    assert_eq!(l.actor.system, MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]));
    assert_eq!(l.actor.key, 0x0d);
    assert_eq!(l.actor.port_priority, 0xff);
    assert_eq!(l.actor.port, 0x10);
    assert_eq!(l.actor.state, PortState(0x3d));
    assert_eq!(format!("{}", l.actor.state), "activity aggregation synchronized collecting distributing");
    assert_eq!(l.partner.system, SYS);
    assert_eq!(l.partner.port, 1);
    assert_eq!(l.partner.state, PortState(0x3f));
    assert_eq!(l.collector_max_delay, 5);
    // Re-encoding gives the same bytes (except the source MAC we choose).
    let mut out = [0u8; FRAME_LEN];
    assert_eq!(encode_lacpdu(MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x66]), &l, &mut out), 124);
    assert_eq!(out, real_lacpdu());
}

#[test]
fn decodes_real_marker_and_reencodes() {
    let SlowPdu::Marker(m) = decode(&real_marker()).unwrap() else { panic!("not marker") };
    assert_eq!(m.kind, MarkerKind::Information);
    assert_eq!(m.requester_port, 7);
    assert_eq!(m.requester_system, MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]));
    assert_eq!(m.transaction_id, 0x0102_0304);
    let mut out = [0u8; FRAME_LEN];
    encode_marker(MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x66]), &m, &mut out);
    assert_eq!(out, real_marker());
    let mut resp = real_marker();
    resp[16] = 2;
    let SlowPdu::Marker(r) = decode(&resp).unwrap() else { panic!() };
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
    assert_eq!(decode(&with(14, 10)[..20]), Err(PduError::UnknownSubtype(10)));
    assert_eq!(decode(&with(15, 0)), Err(PduError::BadVersion(0)));
    let bad = |offset, tlv_type, length| Err(PduError::BadTlv { offset, tlv_type, length });
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
    assert!(matches!(decode(&v2), Ok(SlowPdu::Lacp(Lacpdu { version: 2, .. }))));
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
        PduError::BadTlv { offset: 2, tlv_type: 0, length: 0 },
    ];
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.index(), i);
        assert_eq!(e.name(), PduError::NAMES[i]);
        assert!(!e.to_string().is_empty());
    }
}

fn arb_info() -> impl Strategy<Value = PortInfo> {
    (any::<u16>(), any::<[u8; 6]>(), any::<u16>(), any::<u16>(), any::<u16>(), any::<u8>()).prop_map(
        |(sp, s, k, pp, p, st)| PortInfo {
            system_priority: sp,
            system: MacAddr(s),
            key: k,
            port_priority: pp,
            port: p,
            state: PortState(st),
        },
    )
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
    assert_eq!("active-backup".parse::<Fallback>(), Ok(Fallback::ActiveBackup));
    assert!("on".parse::<LacpMode>().is_err());
    assert!("medium".parse::<LacpRate>().unwrap_err().to_string().contains("fast slow"));
}

#[test]
fn new_validates() {
    let cfg = LacpConfig::new(SYS);
    assert_eq!(LacpBond::new(cfg.clone(), &[], 0).unwrap_err(), LacpError::NoMembers);
    let mut c = cfg.clone();
    c.port_priorities = vec![1, 2, 3];
    assert_eq!(
        LacpBond::new(c, &macs(2), 0).unwrap_err(),
        LacpError::PortPriorityCount { got: 3, members: 2 }
    );
    let c = LacpConfig::new(MacAddr::SLOW_PROTOCOLS);
    assert!(matches!(LacpBond::new(c, &macs(2), 0), Err(LacpError::BadSystemId(_))));
    assert!(matches!(
        LacpBond::new(cfg.clone(), &[mac(1), MacAddr::BROADCAST], 0),
        Err(LacpError::BadMemberMac { member: 1, .. })
    ));
    let many = vec![mac(1); MAX_MEMBERS + 1];
    assert!(matches!(LacpBond::new(cfg, &many, 0), Err(LacpError::TooManyMembers(_))));
}
