//! Unit and property tests for `policy::dos`, driven by a simulated clock.

use super::*;
use crate::wire::ethertype;
use proptest::prelude::*;

/// An IPv4 frame to 10.0.0.2 from `src`, with a TCP or UDP header and `payload`.
fn frame4(proto: u8, src: u32, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let l4 = if proto == ipproto::TCP { 20 } else { 8 };
    let mut f = vec![0u8; 14 + 20 + l4];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    f[14] = 0x45;
    f[23] = proto;
    f[26..30].copy_from_slice(&src.to_be_bytes());
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    if proto == ipproto::TCP {
        f[46] = 5 << 4;
        f[47] = flags;
    }
    f.extend_from_slice(payload);
    f
}

fn tcp(src: u32, sport: u16, dport: u16, flags: u8) -> Flow {
    Flow::parse(&frame4(ipproto::TCP, src, sport, dport, flags, &[])).unwrap()
}

const SYN: u8 = tcpflags::SYN;
const ACK: u8 = tcpflags::ACK;

// ----------------------------------------------------------------- signatures

#[test]
fn signature_rules_match_proto_ports_and_payload_pattern() {
    let rules = vec![
        "ntp-monlist proto=udp dport=123 payload@3=2a"
            .parse::<SignatureRule>()
            .unwrap(),
        "old-backdoor proto=tcp dport=31335-31340".parse().unwrap(),
        "worm payload@0=dead".parse().unwrap(),
    ];
    assert_eq!(rules[0].pattern, Some((3, vec![0x2a])));
    assert_eq!(rules[1].dst_ports, Some((31335, 31340)));
    let set = SignatureSet::new(rules).unwrap();
    assert_eq!(set.len(), 3);
    let check = |f: Vec<u8>| set.matches(&Flow::parse(&f).unwrap(), &f);

    assert_eq!(
        check(frame4(ipproto::UDP, 1, 9, 123, 0, &[0x17, 0, 3, 0x2a])),
        Some(0)
    );
    assert_eq!(
        check(frame4(ipproto::UDP, 1, 9, 123, 0, &[0x17, 0, 3, 0x2b])),
        None,
        "wrong byte"
    );
    assert_eq!(
        check(frame4(ipproto::UDP, 1, 9, 123, 0, &[0x17, 0, 3])),
        None,
        "payload too short"
    );
    assert_eq!(
        check(frame4(ipproto::UDP, 1, 9, 124, 0, &[0x17, 0, 3, 0x2a])),
        None,
        "other port"
    );
    assert_eq!(check(frame4(ipproto::TCP, 1, 9, 31337, SYN, &[])), Some(1));
    assert_eq!(check(frame4(ipproto::TCP, 1, 9, 31341, SYN, &[])), None);
    assert_eq!(
        check(frame4(ipproto::UDP, 1, 9, 31337, 0, &[])),
        None,
        "udp not tcp"
    );
    // Pattern anchored at the L4 payload, any protocol with ports.
    assert_eq!(
        check(frame4(ipproto::TCP, 1, 9, 80, ACK, &[0xde, 0xad, 0])),
        Some(2)
    );
    assert_eq!(
        check(frame4(ipproto::TCP, 1, 9, 80, ACK, &[0, 0xde, 0xad])),
        None
    );
    assert_eq!(set.name(2), Some("worm"));
    assert_eq!(set.name(3), None);
}

#[test]
fn first_matching_rule_wins_and_empty_set_never_matches() {
    let set = SignatureSet::new(vec![
        "a proto=tcp".parse().unwrap(),
        "b proto=tcp dport=80".parse().unwrap(),
    ])
    .unwrap();
    let f = frame4(ipproto::TCP, 1, 9, 80, ACK, &[]);
    assert_eq!(set.matches(&Flow::parse(&f).unwrap(), &f), Some(0));
    let empty = SignatureSet::new(vec![]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.matches(&Flow::parse(&f).unwrap(), &f), None);
}

#[test]
fn bad_signatures_are_refused() {
    let rule = |s: &str| s.parse::<SignatureRule>();
    assert!(matches!(
        SignatureSet::new(vec![rule("x").unwrap()]),
        Err(SignatureError::Empty(_))
    ));
    assert!(matches!(
        SignatureSet::new(vec![rule("x dport=9-3").unwrap()]),
        Err(SignatureError::BadPortRange(_))
    ));
    let huge = SignatureRule {
        name: "h".into(),
        proto: None,
        dst_ports: None,
        pattern: Some((0, vec![])),
    };
    assert!(matches!(
        SignatureSet::new(vec![huge]),
        Err(SignatureError::BadPattern(_))
    ));
    for bad in [
        "",
        "proto=tcp",
        "x proto=xyz",
        "x dport=70000",
        "x payload@1=abc",
        "x payload@z=ab",
        "x color=red",
    ] {
        assert!(rule(bad).is_err(), "{bad:?} accepted");
    }
}

// ----------------------------------------------------------------- counters

#[test]
fn account_classifies_tcp_handshakes() {
    let mut c = DosCounters::default();
    c.account(&tcp(7, 1000, 80, SYN), 60);
    c.account(&tcp(7, 1000, 80, SYN | ACK), 60); // SYN-ACK: acked, not a SYN
    assert_eq!(
        (c.pkts, c.bytes, c.syn, c.syn_ack_or_ack, c.syn_resolved),
        (2, 120, 1, 1, 0)
    );
    // An ACK of an unrelated established connection resolves nothing.
    c.account(&tcp(8, 2000, 80, ACK), 60);
    assert_eq!(c.syn_resolved, 0);
    // The handshake's third segment resolves it, once.
    c.account(&tcp(7, 1000, 80, ACK), 60);
    c.account(&tcp(7, 1000, 80, ACK), 60);
    assert_eq!((c.syn_ack_or_ack, c.syn_resolved), (4, 1));
    // A RST also resolves a pending SYN.
    c.account(&tcp(9, 3000, 80, SYN), 60);
    c.account(&tcp(9, 3000, 80, tcpflags::RST), 60);
    assert_eq!((c.syn, c.syn_resolved), (2, 2));
    // UDP and non-IP frames count only as packets and bytes.
    c.account(
        &Flow::parse(&frame4(ipproto::UDP, 1, 2, 3, 0, &[])).unwrap(),
        100,
    );
    c.account(&Flow::parse(&[0u8; 60]).unwrap(), 60);
    assert_eq!((c.pkts, c.syn, c.syn_ack_or_ack), (9, 2, 4));
    c.record_signature(4);
    assert_eq!((c.sig_hits, c.last_sig_rule), (1, 4));
}

#[test]
fn stale_syns_age_out_of_the_table() {
    let y = tcp(0x0b00_0001, 5, 80, SYN);
    // A tuple whose slot differs from y's and lies beyond the first 16 sweep steps.
    let x_src = (1..).find(|&s| {
        let slot = syn_slot(&tcp(s, 1000, 80, SYN));
        slot != syn_slot(&y) && slot > 16
    });
    let x = |flags| tcp(x_src.unwrap(), 1000, 80, flags);
    // Control: after a few other SYNs the pending SYN still resolves.
    let mut c = DosCounters::default();
    c.account(&x(SYN), 60);
    for _ in 0..10 {
        c.account(&y, 60);
    }
    c.account(&x(ACK), 60);
    assert_eq!(c.syn_resolved, 1);
    // After a full turn of the sweep it has aged out.
    let mut c = DosCounters::default();
    c.account(&x(SYN), 60);
    for _ in 0..SYN_TABLE_SLOTS {
        c.account(&y, 60);
    }
    c.account(&x(ACK), 60);
    assert_eq!(c.syn_resolved, 0);
}

// ----------------------------------------------------------------- detector

/// A simulated VM receiving `pps` frames of `len` bytes: advances counters to `now`.
struct Traffic {
    c: DosCounters,
    t: Nanos,
    carry: u128,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            c: DosCounters::default(),
            t: 0,
            carry: 0,
        }
    }
    fn run(&mut self, until: Nanos, pps: u64, len: u64) {
        let x = (until - self.t) as u128 * pps as u128 + self.carry;
        let n = (x / SEC as u128) as u64;
        self.carry = x % SEC as u128;
        self.c.pkts += n;
        self.c.bytes += n * len;
        self.t = until;
    }
}

fn cfg(max_pps: u64) -> DosConfig {
    DosConfig {
        max_pps: Some(max_pps),
        ..DosConfig::default()
    }
}

#[test]
fn flood_is_detected_within_100ms_and_ends_after_clear_after() {
    // Every start phase within the 10 ms observe period, and floods from just above
    // the threshold to far above it.
    for phase in [0, 1, 3 * MS, 7 * MS + 1, 9 * MS + 999_999] {
        for flood_pps in [11_000, 20_000, 1_000_000] {
            let mut d = DosDetector::new(cfg(10_000));
            let mut tr = Traffic::new();
            let start = 2 * SEC + phase;
            let stop = start + 3 * SEC;
            let mut started = None;
            let mut ended = None;
            let mut now = 0;
            while now <= 8 * SEC {
                // Background of 1000 pps, the flood on top between start and stop.
                let a = start.clamp(tr.t, now);
                let b = stop.clamp(a, now);
                tr.run(a, 1_000, 100);
                tr.run(b, 1_000 + flood_pps, 100);
                tr.run(now, 1_000, 100);
                for e in d.observe(now, &tr.c) {
                    match e {
                        DosEvent::AttackStarted {
                            kind: AttackKind::RateFlood { pps, .. },
                            at,
                        } => {
                            assert!(started.is_none(), "started twice");
                            assert!(pps > 10_000);
                            started = Some(at)
                        }
                        DosEvent::AttackEnded {
                            kind: AttackKind::RateFlood { .. },
                            at,
                        } => {
                            assert!(ended.is_none(), "ended twice");
                            ended = Some(at)
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                if started.is_some() && ended.is_none() {
                    assert!(d.state().rate_flood.is_some());
                }
                now += 10 * MS;
            }
            let s = started.expect("flood not detected");
            assert!(
                s >= start && s <= start + 50 * MS + 10 * MS,
                "phase {phase} pps {flood_pps}: detected at +{}",
                s - start
            );
            assert!(s <= start + 100 * MS);
            let e = ended.expect("end not reported");
            assert!(
                e >= stop + SEC,
                "ended {} ns before clear_after",
                stop + SEC - e
            );
            assert!(
                e <= stop + SEC + 50 * MS + 10 * MS,
                "ended late: +{}",
                e - stop - SEC
            );
            assert!(!d.state().under_attack());
            assert_eq!(d.mitigation(), Mitigation::NONE);
        }
    }
}

#[test]
fn no_flapping_at_the_threshold() {
    let mut d = DosDetector::new(DosConfig {
        max_bps: Some(80_000_000),
        ..DosConfig::default()
    });
    let mut tr = Traffic::new();
    let mut events = Vec::new();
    let mut now = 0;
    // 10 Mbyte/s = 80 Mbit/s ± 10 %, alternating every 30 ms, for 5 s.
    while now < 5 * SEC {
        now += 10 * MS;
        let pps = if (now / (30 * MS)) % 2 == 0 {
            11_000
        } else {
            9_000
        };
        tr.run(now, pps, 1000);
        events.extend(d.observe(now, &tr.c));
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        events[0],
        DosEvent::AttackStarted {
            kind: AttackKind::RateFlood { .. },
            ..
        }
    ));
    // Falling to 60 % of the threshold is not quiet yet (low water is 50 %).
    let t_low = now;
    while now < t_low + 3 * SEC {
        now += 10 * MS;
        tr.run(now, 6_000, 1000);
        assert!(d.observe(now, &tr.c).is_empty());
    }
    while now < t_low + 5 * SEC {
        now += 10 * MS;
        tr.run(now, 100, 1000);
        events.extend(d.observe(now, &tr.c));
    }
    assert_eq!(events.len(), 2);
    assert!(matches!(events[1], DosEvent::AttackEnded { .. }));
}

#[test]
fn below_threshold_traffic_is_never_an_attack() {
    let mut d = DosDetector::new(DosConfig {
        max_pps: Some(10_000),
        max_bps: Some(100_000_000),
        max_half_open_per_sec: Some(500),
        ..DosConfig::default()
    });
    let mut tr = Traffic::new();
    let mut now = 0;
    while now < 3 * SEC {
        now += 7 * MS; // an irregular observe period
        tr.run(now, 9_900, 1200);
        assert!(d.observe(now, &tr.c).is_empty());
    }
}

#[test]
fn syn_flood_is_detected_despite_established_traffic_and_legit_handshakes_are_not() {
    let conf = DosConfig {
        max_half_open_per_sec: Some(2_000),
        ..DosConfig::default()
    };
    // Legit: 1000 handshakes/s completing, plus heavy established ACK traffic.
    let mut d = DosDetector::new(conf.clone());
    let mut c = DosCounters::default();
    let mut flood = DosDetector::new(conf);
    let mut fc = DosCounters::default();
    let mut conn = 0u32;
    let mut attacker = 0u32;
    for step in 1..=300u64 {
        let now = step * 10 * MS;
        for _ in 0..10 {
            conn += 1;
            let (src, sport) = (0x0a01_0000 + conn, (conn % 60_000) as u16 + 1024);
            for counters in [&mut c, &mut fc] {
                counters.account(&tcp(src, sport, 443, SYN), 60);
                counters.account(&tcp(src, sport, 443, ACK), 60);
                for _ in 0..20 {
                    counters.account(&tcp(0x0a02_0000, 5555, 443, ACK), 1500);
                }
            }
        }
        if step > 100 {
            // 20 000 spoofed SYNs/s never answered, on top of the same legit traffic.
            for _ in 0..200 {
                attacker = attacker.wrapping_mul(1_103_515_245).wrapping_add(12345);
                fc.account(&tcp(attacker, (attacker >> 16) as u16, 443, SYN), 60);
            }
        }
        assert!(d.observe(now, &c).is_empty(), "false positive at {now}");
        for e in flood.observe(now, &fc) {
            let DosEvent::AttackStarted {
                kind: AttackKind::SynFlood { half_open },
                at,
            } = e
            else {
                panic!("unexpected {e:?}");
            };
            assert!(half_open > 2_000);
            assert!(at > SEC && at <= SEC + 100 * MS, "detected at {at}");
        }
    }
    assert!(flood.state().syn_flood.is_some());
    assert!(
        c.syn_resolved >= c.syn * 9 / 10,
        "legit handshakes resolved"
    );
}

#[test]
fn signature_hits_start_an_attack_at_the_next_observe() {
    let mut d = DosDetector::new(DosConfig {
        min_signature_hits: 3,
        clear_after: 200 * MS,
        responses: vec![DosResponse::Drop],
        ..DosConfig::default()
    });
    let mut c = DosCounters::default();
    let mut now = 0;
    for _ in 0..10 {
        now += 10 * MS;
        assert!(d.observe(now, &c).is_empty());
    }
    c.record_signature(2);
    c.record_signature(2);
    now += 10 * MS;
    assert!(
        d.observe(now, &c).is_empty(),
        "2 hits are below min_signature_hits"
    );
    c.record_signature(5);
    now += 10 * MS;
    assert_eq!(
        d.observe(now, &c),
        vec![DosEvent::AttackStarted {
            kind: AttackKind::Signature { rule: 5 },
            at: now
        }]
    );
    let m = d.mitigation();
    assert!(m.signature && m.drop && !m.rate_flood);
    // Quiet from here: the hits leave the window after 50 ms, then 200 ms of quiet.
    let quiet_from = now + 50 * MS;
    let mut ended = None;
    for _ in 0..40 {
        now += 10 * MS;
        if let Some(DosEvent::AttackEnded { at, .. }) = d.observe(now, &c).first() {
            ended = Some(*at);
        }
    }
    let e = ended.expect("signature attack did not end");
    assert!(
        e >= quiet_from + 200 * MS - 10 * MS && e <= quiet_from + 200 * MS + 10 * MS,
        "{e}"
    );
}

#[test]
fn counter_reset_restarts_measurement_without_events() {
    let mut d = DosDetector::new(cfg(10_000));
    let mut tr = Traffic::new();
    let mut now = 0;
    while now < SEC {
        now += 10 * MS;
        tr.run(now, 5_000, 100);
        assert!(d.observe(now, &tr.c).is_empty());
    }
    // The worker restarted: counters start over from zero.
    let mut tr2 = Traffic::new();
    tr2.t = now;
    while now < 2 * SEC {
        now += 10 * MS;
        tr2.run(now, 5_000, 100);
        assert!(d.observe(now, &tr2.c).is_empty());
    }
    // An earlier `now` is ignored.
    assert!(d.observe(now - 5 * MS, &tr2.c).is_empty());
}

#[test]
fn state_combines_configured_responses_only_while_attacked() {
    let responses: Vec<DosResponse> = [
        "rate-limit:5000",
        "rate-limit:2000",
        "delay:20ms",
        "failover:bond1",
        "suspend-lower-priority",
        "migrate",
        "alert",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let mut d = DosDetector::new(DosConfig {
        responses,
        ..cfg(1_000)
    });
    assert_eq!(d.state(), DosState::default());
    let mut tr = Traffic::new();
    let mut now = 0;
    while d.state().rate_flood.is_none() {
        now += 10 * MS;
        tr.run(now, 50_000, 64);
        d.observe(now, &tr.c);
        assert!(now < SEC);
    }
    let st = d.state();
    assert_eq!(st.failover_uplink.as_deref(), Some("bond1"));
    assert!(st.suspend_lower_priority && st.request_migration && st.alert);
    assert_eq!(st.mitigation.rate_limit_pps, 2000, "the tighter limit wins");
    assert_eq!(st.mitigation.delay_hold_us, 20_000);
    assert!(!st.mitigation.drop);
    assert_eq!(st.since, Some(now));
    assert_eq!(d.mitigation(), st.mitigation);
    assert_eq!(
        d.config().delay_policy(),
        Some(DelayPolicy {
            hold: 20 * MS,
            max_frames: DEFAULT_DELAY_FRAMES
        })
    );
}

// ----------------------------------------------------------------- mitigation

#[test]
fn verdicts_follow_the_mitigation_word() {
    let syn = tcp(1, 2, 80, SYN);
    let ack = tcp(1, 2, 80, ACK);
    assert_eq!(Mitigation::NONE.verdict(&syn, Some(0)), FrameVerdict::PASS);
    assert_eq!(Mitigation::NONE.pack(), 0);

    let m = Mitigation {
        syn_flood: true,
        drop: true,
        rate_limit_pps: 100,
        ..Mitigation::NONE
    };
    assert_eq!(
        m.verdict(&syn, None),
        FrameVerdict {
            drop: true,
            police: false,
            delay: false
        }
    );
    assert_eq!(
        m.verdict(&ack, None),
        FrameVerdict {
            drop: false,
            police: true,
            delay: false
        }
    );
    assert!(
        m.verdict(&ack, Some(1)).drop,
        "signature matches are dropped"
    );

    let m = Mitigation {
        rate_flood: true,
        delay_hold_us: 5_000,
        ..Mitigation::NONE
    };
    assert_eq!(
        m.verdict(&ack, None),
        FrameVerdict {
            drop: false,
            police: false,
            delay: true
        }
    );
    let m = Mitigation {
        syn_flood: true,
        delay_hold_us: 5_000,
        ..Mitigation::NONE
    };
    assert!(m.verdict(&syn, None).delay && !m.verdict(&ack, None).delay);
}

#[test]
fn packet_budget_polices_to_the_rate() {
    let mut b = PacketBudget::new(1_000, 10, 0);
    let mut admitted = 0;
    // Offer 10 000 pps for one second.
    for i in 0..10_000u64 {
        if b.admit(i * 100 * US) {
            admitted += 1;
        }
    }
    assert!((1_000..=1_011).contains(&admitted), "{admitted}");
    // Idle refills at most the burst.
    assert_eq!((0..100).filter(|_| b.admit(100 * SEC)).count(), 10);
    b.set_rate(0);
    assert!(!b.admit(200 * SEC));
}

#[test]
fn delay_policy_releases_after_hold_and_bounds_the_queue() {
    let p = DelayPolicy {
        hold: 50 * MS,
        max_frames: 2,
    };
    assert_eq!(p.release_at(SEC), SEC + 50 * MS);
    assert_eq!(p.release_at(u64::MAX - 1), u64::MAX);
    assert!(p.admit(0) && p.admit(1) && !p.admit(2));
}

#[test]
fn responses_parse_and_reject() {
    assert_eq!(
        "delay:50ms".parse(),
        Ok(DosResponse::Delay {
            hold: 50 * MS,
            max_frames: DEFAULT_DELAY_FRAMES
        })
    );
    assert_eq!(
        "delay:1s:16".parse(),
        Ok(DosResponse::Delay {
            hold: SEC,
            max_frames: 16
        })
    );
    assert_eq!(
        "failover:bond1".parse(),
        Ok(DosResponse::FailoverUplink("bond1".into()))
    );
    for bad in [
        "",
        "rate-limit",
        "rate-limit:0",
        "rate-limit:x",
        "delay:50",
        "delay:0ms",
        "delay:2h",
        "drop:1",
        "failover:",
        "migrate:now",
    ] {
        assert!(bad.parse::<DosResponse>().is_err(), "{bad:?} accepted");
    }
    assert_eq!(parse_duration("750ns"), Some(750));
    assert_eq!(parse_duration("99999999999999999999s"), None);
    assert_eq!(format_duration(1500 * US), "1500us");
}

fn response() -> impl Strategy<Value = DosResponse> {
    prop_oneof![
        (1u64..=u32::MAX as u64).prop_map(|pps| DosResponse::RateLimit { pps }),
        Just(DosResponse::Drop),
        (1u64..=MAX_DELAY_HOLD, 1usize..100_000)
            .prop_map(|(hold, max_frames)| DosResponse::Delay { hold, max_frames }),
        "[a-z0-9]{1,8}".prop_map(DosResponse::FailoverUplink),
        Just(DosResponse::SuspendLowerPriority),
        Just(DosResponse::RequestMigration),
        Just(DosResponse::Alert),
    ]
}

proptest! {
    #[test]
    fn response_display_round_trips(r in response()) {
        prop_assert_eq!(r.to_string().parse::<DosResponse>(), Ok(r));
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,40}") {
        let _ = s.parse::<DosResponse>();
        let _ = s.parse::<SignatureRule>();
        let _ = parse_duration(&s);
    }

    #[test]
    fn mitigation_word_round_trips(bits in 0u8..16, hold in 0u32..0x1000_0000, pps: u32) {
        let m = Mitigation {
            rate_flood: bits & 1 != 0,
            syn_flood: bits & 2 != 0,
            signature: bits & 4 != 0,
            drop: bits & 8 != 0,
            delay_hold_us: hold,
            rate_limit_pps: pps,
        };
        prop_assert_eq!(Mitigation::unpack(m.pack()), m);
    }

    #[test]
    fn matching_and_accounting_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 14..200),
        off in 0usize..300,
        pat in proptest::collection::vec(any::<u8>(), 1..8),
        lo: u16, span in 0u16..100,
    ) {
        let set = SignatureSet::new(vec![
            SignatureRule { name: "p".into(), proto: None, dst_ports: None, pattern: Some((off, pat.clone())) },
            SignatureRule { name: "q".into(), proto: Some(6), dst_ports: Some((lo, lo.saturating_add(span))), pattern: None },
        ]).unwrap();
        let flow = Flow::parse(&bytes).unwrap();
        let hit = set.matches(&flow, &bytes);
        if hit == Some(0) {
            let at = flow.payload_offset as usize + off;
            prop_assert_eq!(&bytes[at..at + pat.len()], &pat[..]);
        }
        // A flow inconsistent with the frame (e.g. parsed from another one) is harmless.
        let mut lying = flow;
        lying.payload_offset = u16::MAX;
        lying.has_l4 = true;
        let _ = set.matches(&lying, &bytes);
        let mut c = DosCounters::default();
        c.account(&flow, bytes.len() as u32);
        prop_assert_eq!(c.pkts, 1);
    }
}
