//! Deterministic tests of the bond with a simulated clock, and property tests.

use super::*;
use crate::time::{MS, SEC};
use crate::wire::tests::frame_strategy;
use crate::wire::{ethertype, ipproto, Flow, FrameView, L3Addrs, MacAddr};
use proptest::prelude::*;

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([2, 0, b[0], b[1], b[2], b[3]])
}

fn ipv4(a: u32) -> u128 {
    0xffff_0000_0000u128 | a as u128
}

/// Flow `i` of a set where every field varies with `i` (sequential MACs, IPs, ports —
/// the realistic, hash-unfriendly case).
fn flow(i: u32) -> Flow {
    Flow {
        src_mac: mac(i),
        dst_mac: mac(i.wrapping_mul(7).wrapping_add(0x10000)),
        ethertype: ethertype::IPV4,
        l3: Some(L3Addrs {
            src: ipv4(i.wrapping_add(0x0a00_0000)),
            dst: ipv4(i.wrapping_mul(3).wrapping_add(0x0a01_0000)),
        }),
        proto: ipproto::TCP,
        sport: (i as u16).wrapping_add(1024),
        dport: 80,
        has_l4: true,
        ..Flow::default()
    }
}

fn non_ip(i: u32) -> Flow {
    Flow {
        src_mac: mac(i),
        dst_mac: mac(i.wrapping_add(0x20000)),
        ethertype: ethertype::ARP,
        ..Flow::default()
    }
}

fn cfg(mode: Mode) -> BondConfig {
    BondConfig {
        mode,
        ..BondConfig::default()
    }
}

/// A bond with all links up at t=0 and events drained.
fn bond_up(c: BondConfig, n: usize) -> Bond {
    let mut b = Bond::new(c, n).unwrap();
    for m in 0..n {
        b.link_changed(m, true, 0).unwrap();
    }
    b.drain_events().for_each(drop);
    b
}

fn events(b: &mut Bond) -> Vec<BondEvent> {
    b.drain_events().collect()
}

fn sel(b: &Bond, f: &Flow, slot: u32) -> Option<usize> {
    b.distribution().select(f, slot, &mut SelectCtx::default())
}

fn moved_to(ev: &[BondEvent]) -> Vec<(u32, usize)> {
    ev.iter()
        .filter_map(|e| match e {
            BondEvent::MacMoved {
                slot, to_member, ..
            } => Some((*slot, *to_member)),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- names and config

/// Every mode, every hash once.
fn all_modes() -> Vec<Mode> {
    let mut modes = vec![
        Mode::ActiveBackup,
        Mode::RoundRobin,
        Mode::LeastPending,
        Mode::IpHashElseRoundRobin,
        Mode::VmPinned,
        Mode::PriorityAware,
        Mode::LoadBased,
    ];
    modes.extend(HashFields::ALL.iter().map(|&h| Mode::Hash(h)));
    modes
}

#[test]
fn mode_names_round_trip() {
    for m in all_modes() {
        let s = m.to_string();
        assert_eq!(s.parse::<Mode>().unwrap(), m, "{s}");
        assert_eq!(
            s.to_uppercase().replace('-', "_").parse::<Mode>().unwrap(),
            m
        );
    }
    assert_eq!(Mode::Hash(HashFields::L3L4).to_string(), "hash-l3l4");
    assert_eq!(
        "balance-tcp".parse::<Mode>().unwrap(),
        Mode::Hash(HashFields::L3L4)
    );
    assert_eq!(
        "balance-slb".parse::<Mode>().unwrap(),
        Mode::Hash(HashFields::L2Src)
    );
    assert_eq!("balance-rr".parse::<Mode>().unwrap(), Mode::RoundRobin);
    for bad in ["", "hash", "hash-l4", "active", "vm-pinned2"] {
        let e = bad.parse::<Mode>().unwrap_err();
        assert!(e.to_string().contains("active-backup"), "{e}");
    }
    for f in [Failback::Immediate, Failback::Delayed, Failback::Manual] {
        assert_eq!(f.to_string().parse::<Failback>().unwrap(), f);
    }
    assert!("sometimes".parse::<Failback>().is_err());
    for h in HashFields::ALL {
        assert_eq!(h.to_string().parse::<HashFields>().unwrap(), h);
    }
}

#[test]
fn config_validation() {
    assert_eq!(
        Bond::new(BondConfig::default(), 0).unwrap_err(),
        BondError::EmptyBond
    );
    assert_eq!(
        Bond::new(BondConfig::default(), 17).unwrap_err(),
        BondError::TooManyMembers(17)
    );
    assert!(Bond::new(BondConfig::default(), 16).is_ok());
    let c = BondConfig {
        active_order: vec![1, 2],
        ..BondConfig::default()
    };
    assert_eq!(
        Bond::new(c, 2).unwrap_err(),
        BondError::ActiveOrderOutOfRange {
            member: 2,
            n_members: 2
        }
    );
    let c = BondConfig {
        active_order: vec![1, 1],
        ..BondConfig::default()
    };
    assert_eq!(
        Bond::new(c, 2).unwrap_err(),
        BondError::DuplicateInActiveOrder(1)
    );
    let c = BondConfig {
        isolated_member: 3,
        ..BondConfig::default()
    };
    assert_eq!(
        Bond::new(c, 3).unwrap_err(),
        BondError::IsolatedMemberOutOfRange {
            member: 3,
            n_members: 3
        }
    );
    let c = BondConfig {
        rebalance_threshold_pct: 0,
        ..BondConfig::default()
    };
    assert_eq!(
        Bond::new(c, 2).unwrap_err(),
        BondError::ThresholdOutOfRange(0)
    );
    let c = BondConfig {
        isolate_priority_max: 11,
        ..BondConfig::default()
    };
    assert_eq!(
        Bond::new(c, 2).unwrap_err(),
        BondError::PriorityOutOfRange(11)
    );

    let mut b = Bond::new(BondConfig::default(), 2).unwrap();
    assert_eq!(
        b.link_changed(2, true, 0).unwrap_err(),
        BondError::MemberOutOfRange {
            member: 2,
            n_members: 2
        }
    );
    assert!(b.member_status(2).is_none());
    assert_eq!(
        b.add_vnic(MAX_VNIC_SLOTS, mac(1), 0).unwrap_err(),
        BondError::SlotOutOfRange(MAX_VNIC_SLOTS)
    );
    assert_eq!(
        b.add_vnic(0, mac(1), 11).unwrap_err(),
        BondError::PriorityOutOfRange(11)
    );
    b.add_vnic(0, mac(1), 5).unwrap();
    assert_eq!(
        b.add_vnic(0, mac(2), 5).unwrap_err(),
        BondError::SlotInUse(0)
    );
    assert_eq!(b.remove_vnic(7).unwrap_err(), BondError::UnknownVnic(7));
    // Messages read as sentences.
    assert_eq!(
        BondError::MemberOutOfRange {
            member: 4,
            n_members: 2
        }
        .to_string(),
        "member 4 is out of range: the bond has 2 members"
    );
}

#[test]
fn config_serde_uses_names_and_defaults() {
    let c = BondConfig {
        mode: Mode::Hash(HashFields::L3L4),
        failback: Failback::Manual,
        active_order: vec![1, 0],
        ..BondConfig::default()
    };
    let j = serde_json::to_string(&c).unwrap();
    assert!(
        j.contains("\"mode\":\"hash-l3l4\"") && j.contains("\"failback\":\"manual\""),
        "{j}"
    );
    assert_eq!(serde_json::from_str::<BondConfig>(&j).unwrap(), c);
    // Missing fields take their defaults; aliases are accepted; unknown names refused.
    let c: BondConfig = serde_json::from_str(r#"{"mode":"balance-slb","updelay":5}"#).unwrap();
    assert_eq!(c.mode, Mode::Hash(HashFields::L2Src));
    assert_eq!(c.updelay, 5);
    assert_eq!(c.tx_stall_holddown, BondConfig::default().tx_stall_holddown);
    let e = serde_json::from_str::<BondConfig>(r#"{"mode":"balance-foo"}"#).unwrap_err();
    assert!(e.to_string().contains("unknown bond mode"), "{e}");
}

// ---------------------------------------------------------------- states and damping

#[test]
fn new_bond_is_down_until_links_report() {
    let mut b = Bond::new(BondConfig::default(), 2).unwrap();
    assert_eq!(b.usable_mask(), 0);
    assert_eq!(sel(&b, &flow(1), 0), None);
    let s = b.member_status(0).unwrap();
    assert_eq!((s.state, s.reason), (MemberState::Down, DownReason::Link));
    b.link_changed(1, true, 5).unwrap();
    assert_eq!(b.usable_mask(), 0b10);
    assert_eq!(
        events(&mut b),
        vec![
            BondEvent::MemberUp { member: 1 },
            BondEvent::BondUp,
            BondEvent::ActiveChanged {
                from: None,
                to: Some(1)
            },
        ]
    );
    assert!(b.is_degraded());
    b.link_changed(0, true, 6).unwrap();
    assert!(!b.is_degraded());
    assert_eq!(b.member_status(0).unwrap().since, 6);
}

#[test]
fn downdelay_absorbs_a_short_blip_and_drops_a_long_one() {
    let c = BondConfig {
        mode: Mode::RoundRobin,
        downdelay: 100 * MS,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    b.link_changed(0, false, 10 * MS).unwrap();
    assert_eq!(b.member_status(0).unwrap().state, MemberState::DownDelay);
    assert_eq!(b.usable_mask(), 0b11, "still usable during downdelay");
    assert_eq!(b.tick(50 * MS).next_deadline, Some(110 * MS));
    b.link_changed(0, true, 60 * MS).unwrap();
    b.tick(200 * MS);
    assert_eq!(b.member_status(0).unwrap().state, MemberState::Up);
    assert!(
        events(&mut b).is_empty(),
        "a blip shorter than downdelay is invisible"
    );

    b.link_changed(0, false, 300 * MS).unwrap();
    b.tick(399 * MS);
    assert_eq!(b.usable_mask(), 0b11);
    b.tick(400 * MS);
    assert_eq!(b.usable_mask(), 0b10);
    assert_eq!(
        events(&mut b),
        vec![BondEvent::MemberDown {
            member: 0,
            reason: DownReason::Link
        }]
    );
    let s = b.member_status(0).unwrap();
    assert_eq!(
        (s.state, s.reason, s.since, s.link_up),
        (MemberState::Down, DownReason::Link, 400 * MS, false)
    );
}

#[test]
fn updelay_waits_and_flaps_restart_it() {
    let c = BondConfig {
        mode: Mode::RoundRobin,
        updelay: 200 * MS,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2); // first link skips updelay (nothing usable), second waits
    assert_eq!(b.usable_mask(), 0b01);
    b.tick(200 * MS);
    assert_eq!(b.usable_mask(), 0b11);

    b.link_changed(1, false, SEC).unwrap();
    b.link_changed(1, true, SEC + 10 * MS).unwrap();
    assert_eq!(b.member_status(1).unwrap().state, MemberState::UpDelay);
    b.link_changed(1, false, SEC + 100 * MS).unwrap(); // flap: updelay cancelled
    b.link_changed(1, true, SEC + 150 * MS).unwrap();
    b.tick(SEC + 300 * MS);
    assert_eq!(
        b.usable_mask(),
        0b01,
        "updelay restarted at the last link-up"
    );
    b.tick(SEC + 350 * MS);
    assert_eq!(b.usable_mask(), 0b11);
}

#[test]
fn updelay_is_skipped_when_nothing_else_is_usable() {
    let c = BondConfig {
        updelay: SEC,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    b.link_changed(0, false, 0).unwrap();
    b.link_changed(0, true, 10 * MS).unwrap(); // member 1 still usable: wait
    assert_eq!(b.member_status(0).unwrap().state, MemberState::UpDelay);
    b.link_changed(1, false, 20 * MS).unwrap(); // now nothing else: take member 0 at once
    assert_eq!(b.usable_mask(), 0b01);
    assert_eq!(b.active_member(), Some(0));
}

#[test]
fn tx_stall_holds_down_then_retries_with_backoff() {
    let mut b = bond_up(cfg(Mode::RoundRobin), 2);
    b.tx_stalled(1, 100 * MS).unwrap();
    let s = b.member_status(1).unwrap();
    assert_eq!(
        (s.state, s.reason, s.stalled_until),
        (MemberState::Down, DownReason::NoTxResources, Some(120 * MS))
    );
    assert_eq!(b.usable_mask(), 0b01);
    assert_eq!(
        events(&mut b),
        vec![BondEvent::MemberDown {
            member: 1,
            reason: DownReason::NoTxResources
        }]
    );
    b.tx_stalled(1, 110 * MS).unwrap(); // repeated report while held: no extension
    assert_eq!(b.member_status(1).unwrap().stalled_until, Some(120 * MS));
    b.tick(120 * MS);
    assert_eq!(b.usable_mask(), 0b11);
    assert_eq!(events(&mut b), vec![BondEvent::MemberUp { member: 1 }]);
    // Stalls again right after its return: hold-down doubles, up to 8x.
    let mut t = 125 * MS;
    for expect in [40, 80, 160, 160] {
        b.tx_stalled(1, t).unwrap();
        assert_eq!(
            b.member_status(1).unwrap().stalled_until,
            Some(t + expect * MS)
        );
        t += expect * MS;
        b.tick(t);
        assert!(b.usable_mask() & 0b10 != 0);
        t += MS;
    }
    // A stall long after the last one starts again from the base hold-down.
    t += SEC;
    b.tx_stalled(1, t).unwrap();
    assert_eq!(b.member_status(1).unwrap().stalled_until, Some(t + 20 * MS));
}

#[test]
fn tx_stall_recovery_ignores_failback_policy() {
    let c = BondConfig {
        failback: Failback::Manual,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    b.tx_stalled(0, 0).unwrap();
    assert_eq!(b.active_member(), Some(1));
    b.tick(20 * MS);
    assert_eq!(b.member_status(0).unwrap().state, MemberState::Up);
    assert_eq!(b.active_member(), Some(0));
}

#[test]
fn admin_and_lacp_reasons() {
    let c = BondConfig {
        mode: Mode::RoundRobin,
        lacp: true,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    assert_eq!(
        b.usable_mask(),
        0,
        "LACP bond: nothing distributes before LACP says so"
    );
    assert_eq!(b.member_status(0).unwrap().reason, DownReason::Lacp);
    b.set_lacp(0, true, 1).unwrap();
    b.set_lacp(1, true, 1).unwrap();
    assert_eq!(b.usable_mask(), 0b11);
    assert!(b.distribution().accepts_rx(1));
    b.set_lacp(1, false, 2).unwrap();
    assert_eq!(b.member_status(1).unwrap().reason, DownReason::Lacp);
    assert!(!b.distribution().accepts_rx(1));
    b.set_admin(0, false, 3).unwrap();
    let s = b.member_status(0).unwrap();
    assert_eq!(
        (s.state, s.reason, s.admin_up),
        (MemberState::Down, DownReason::Admin, false)
    );
    // Admin outranks link.
    b.link_changed(0, false, 4).unwrap();
    assert_eq!(b.member_status(0).unwrap().reason, DownReason::Admin);
    assert_eq!(b.usable_mask(), 0);
    assert!(b.is_degraded(), "member 1 is admin-up but not distributing");

    // Without LACP, set_lacp is recorded but ignored.
    let mut b = bond_up(cfg(Mode::RoundRobin), 2);
    b.set_lacp(0, false, 1).unwrap();
    assert_eq!(b.usable_mask(), 0b11);
    assert!(!b.member_status(0).unwrap().lacp_distributing);
}

#[test]
fn link_failure_is_rechecked_on_its_own_schedule() {
    let mut b = bond_up(cfg(Mode::RoundRobin), 3);
    b.link_changed(2, false, SEC).unwrap();
    let t = b.tick(SEC + 100 * MS);
    assert_eq!(t.recheck_links, 0);
    assert_eq!(t.next_deadline, Some(SEC + 500 * MS));
    assert_eq!(b.tick(SEC + 500 * MS).recheck_links, 0b100);
    assert_eq!(b.tick(SEC + 600 * MS).recheck_links, 0);
    assert_eq!(b.tick(SEC + 1000 * MS).recheck_links, 0b100);
    b.link_changed(2, true, SEC + 1100 * MS).unwrap();
    let t = b.tick(3 * SEC);
    assert_eq!((t.recheck_links, t.next_deadline), (0, None));
}

// ---------------------------------------------------------------- active-backup

fn ab_with_vnics(failback: Failback, order: Vec<usize>, n: usize) -> Bond {
    let c = BondConfig {
        failback,
        active_order: order,
        failback_delay: 2 * SEC,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, n);
    for s in 0..3 {
        b.add_vnic(s, mac(100 + s), 5).unwrap();
    }
    assert!(events(&mut b).is_empty(), "adding vNICs announces nothing");
    b
}

#[test]
fn active_backup_follows_failover_order_and_announces_macs() {
    let mut b = ab_with_vnics(Failback::Immediate, vec![2, 0], 3);
    assert_eq!(b.active_member(), Some(2));
    let d = b.distribution();
    for i in 0..50 {
        assert_eq!(
            d.select(&flow(i), i % 3, &mut SelectCtx::default()),
            Some(2)
        );
    }
    assert!(
        d.accepts_rx(2) && !d.accepts_rx(0) && !d.accepts_rx(1),
        "standbys drop rx"
    );

    b.link_changed(2, false, SEC).unwrap();
    let ev = events(&mut b);
    assert_eq!(
        ev[0],
        BondEvent::MemberDown {
            member: 2,
            reason: DownReason::Link
        }
    );
    assert!(ev.contains(&BondEvent::Failover {
        from: 2,
        to: Some(0)
    }));
    assert_eq!(moved_to(&ev), vec![(0, 0), (1, 0), (2, 0)]);
    assert!(ev.contains(&BondEvent::MacMoved {
        mac: mac(101),
        slot: 1,
        to_member: 0
    }));
    assert!(b.distribution().accepts_rx(0) && !b.distribution().accepts_rx(2));

    b.link_changed(0, false, 2 * SEC).unwrap(); // member 1 (unlisted) is last
    assert_eq!(b.active_member(), Some(1));
    b.link_changed(1, false, 3 * SEC).unwrap();
    let ev = events(&mut b);
    assert!(ev.contains(&BondEvent::Failover { from: 1, to: None }));
    assert!(ev.contains(&BondEvent::BondDown));
    assert_eq!(sel(&b, &flow(1), 0), None);
    assert!(!b.distribution().accepts_rx(1));

    // Immediate failback: the preferred member takes over again as soon as it is up.
    b.link_changed(0, true, 4 * SEC).unwrap();
    b.link_changed(2, true, 5 * SEC).unwrap();
    assert_eq!(b.active_member(), Some(2));
    let ev = events(&mut b);
    assert!(ev.contains(&BondEvent::ActiveChanged {
        from: Some(0),
        to: Some(2)
    }));
    assert_eq!(moved_to(&ev).last(), Some(&(2, 2)));
}

#[test]
fn notify_switches_off_reports_no_mac_moves() {
    let c = BondConfig {
        notify_switches: false,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    b.add_vnic(0, mac(1), 5).unwrap();
    b.link_changed(0, false, SEC).unwrap();
    let ev = events(&mut b);
    assert!(ev.contains(&BondEvent::Failover {
        from: 0,
        to: Some(1)
    }));
    assert!(moved_to(&ev).is_empty());
}

#[test]
fn delayed_failback_waits_for_stable_uptime() {
    let mut b = ab_with_vnics(Failback::Delayed, vec![], 2);
    b.link_changed(0, false, SEC).unwrap();
    assert_eq!(b.active_member(), Some(1));
    b.link_changed(0, true, 2 * SEC).unwrap();
    let s = b.member_status(0).unwrap();
    assert_eq!((s.state, s.usable), (MemberState::AwaitingFailback, false));
    assert_eq!(b.tick(3 * SEC).next_deadline, Some(4 * SEC));
    // Flaps during the delay restart it.
    b.link_changed(0, false, 3 * SEC).unwrap();
    b.link_changed(0, true, 3 * SEC + 500 * MS).unwrap();
    b.tick(4 * SEC);
    assert_eq!(b.active_member(), Some(1), "delay restarted by the flap");
    events(&mut b);
    b.tick(5 * SEC + 499 * MS);
    assert_eq!(b.active_member(), Some(1));
    b.tick(5 * SEC + 500 * MS);
    assert_eq!(b.active_member(), Some(0));
    let ev = events(&mut b);
    assert_eq!(ev[0], BondEvent::Failback { member: 0 });
    assert!(ev.contains(&BondEvent::MemberUp { member: 0 }));
    assert!(ev.contains(&BondEvent::ActiveChanged {
        from: Some(1),
        to: Some(0)
    }));
    assert_eq!(moved_to(&ev).len(), 3);
}

#[test]
fn manual_failback_waits_for_the_operator() {
    let mut b = ab_with_vnics(Failback::Manual, vec![], 2);
    b.link_changed(0, false, SEC).unwrap();
    b.link_changed(0, true, 2 * SEC).unwrap();
    b.tick(100 * SEC);
    assert_eq!(b.active_member(), Some(1));
    assert_eq!(
        b.member_status(0).unwrap().state,
        MemberState::AwaitingFailback
    );
    assert!(b.is_degraded());
    events(&mut b);
    assert_eq!(b.manual_failback(101 * SEC), 1);
    assert_eq!(b.active_member(), Some(0));
    let ev = events(&mut b);
    assert!(ev.contains(&BondEvent::Failback { member: 0 }));
    assert_eq!(b.manual_failback(102 * SEC), 0);
}

#[test]
fn member_awaiting_failback_is_readmitted_when_another_fails() {
    let mut b = ab_with_vnics(Failback::Manual, vec![], 3);
    b.link_changed(0, false, SEC).unwrap();
    b.link_changed(0, true, 2 * SEC).unwrap();
    assert_eq!(b.active_member(), Some(1));
    b.link_changed(2, false, 3 * SEC).unwrap(); // a standby fails: capacity lost
    assert_eq!(b.member_status(0).unwrap().state, MemberState::Up);
    assert_eq!(b.active_member(), Some(0));

    // A transient tx stall of the active member is not a failure that readmits it...
    let mut b = ab_with_vnics(Failback::Manual, vec![], 3);
    b.link_changed(0, false, SEC).unwrap();
    b.link_changed(0, true, 2 * SEC).unwrap();
    b.tx_stalled(1, 3 * SEC).unwrap();
    assert_eq!(
        b.member_status(0).unwrap().state,
        MemberState::AwaitingFailback
    );
    assert_eq!(b.active_member(), Some(2));
    b.tick(3 * SEC + 20 * MS);
    assert_eq!(b.active_member(), Some(1));

    // ...but it is readmitted when it is the only member left with a working link.
    let mut b = ab_with_vnics(Failback::Manual, vec![], 2);
    b.link_changed(0, false, SEC).unwrap();
    b.link_changed(1, false, SEC).unwrap();
    b.link_changed(0, true, 2 * SEC).unwrap();
    assert_eq!(b.active_member(), Some(0));
}

#[test]
fn switching_failback_to_immediate_readmits() {
    let mut b = ab_with_vnics(Failback::Manual, vec![], 2);
    b.link_changed(0, false, SEC).unwrap();
    b.link_changed(0, true, 2 * SEC).unwrap();
    let c = BondConfig {
        failback: Failback::Immediate,
        ..b.config().clone()
    };
    b.set_config(c, 3 * SEC).unwrap();
    assert_eq!(b.active_member(), Some(0));
}

// ---------------------------------------------------------------- load sharing modes

#[test]
fn round_robin_rotates_over_usable_members_only() {
    let mut b = bond_up(cfg(Mode::RoundRobin), 3);
    let mut ctx = SelectCtx::default();
    let d = b.distribution();
    let got: Vec<_> = (0..6)
        .map(|_| d.select(&flow(1), 0, &mut ctx).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![0, 1, 2, 0, 1, 2],
        "reorders within one flow, by design"
    );
    b.link_changed(1, false, 1).unwrap();
    let d = b.distribution();
    let got: Vec<_> = (0..4)
        .map(|_| d.select(&flow(1), 0, &mut ctx).unwrap())
        .collect();
    assert!(got.iter().all(|&m| m != 1));
    assert!(got.contains(&0) && got.contains(&2));
    assert!(d.accepts_rx(0) && d.accepts_rx(2));
}

#[test]
fn least_pending_picks_the_lightest_member() {
    let mut b = bond_up(cfg(Mode::LeastPending), 3);
    let d = b.distribution();
    let mut ctx = SelectCtx::default();
    ctx.pending[0] = 9000;
    ctx.pending[1] = 100;
    ctx.pending[2] = 5000;
    for _ in 0..5 {
        assert_eq!(d.select(&flow(1), 0, &mut ctx), Some(1));
    }
    // Idle members share the load instead of all frames going to member 0.
    ctx.pending = [0; MAX_MEMBERS];
    let mut seen = [0; 3];
    for _ in 0..30 {
        seen[d.select(&flow(1), 0, &mut ctx).unwrap()] += 1;
    }
    assert_eq!(seen, [10, 10, 10]);
    // The lightest member is skipped when unusable.
    ctx.pending[1] = 0;
    ctx.pending[0] = 10;
    ctx.pending[2] = 20;
    b.link_changed(1, false, 1).unwrap();
    assert_eq!(b.distribution().select(&flow(1), 0, &mut ctx), Some(0));
}

fn share_on_member0(mode: Mode, fl: impl Fn(u32) -> Flow) -> usize {
    let b = bond_up(cfg(mode), 2);
    let d = b.distribution();
    (0..1024)
        .filter(|&i| d.select(&fl(i), 0, &mut SelectCtx::default()) == Some(0))
        .count()
}

#[test]
fn each_hash_spreads_1024_flows_evenly_over_two_members() {
    for h in HashFields::ALL {
        let on0 = share_on_member0(Mode::Hash(h), flow);
        assert!((410..=614).contains(&on0), "{h}: {on0} of 1024 on member 0");
        // Non-IP frames (L2 fallback) too.
        let on0 = share_on_member0(Mode::Hash(h), non_ip);
        assert!(
            (410..=614).contains(&on0),
            "{h} non-IP: {on0} of 1024 on member 0"
        );
    }
    let on0 = share_on_member0(Mode::IpHashElseRoundRobin, flow);
    assert!((410..=614).contains(&on0), "ip-hash: {on0}");
    // Only the varying field matters: flows differing in the source port only.
    let only_port = |i: u32| Flow {
        sport: i as u16,
        ..flow(0)
    };
    let on0 = share_on_member0(Mode::Hash(HashFields::L3L4), only_port);
    assert!((410..=614).contains(&on0), "ports only: {on0}");
}

/// Every one of the 256 buckets gets its share when only one field varies (the
/// finaliser must carry every input bit into the top byte): 8192 flows, 32 a bucket
/// on average, none below 12 or above 56 (about ±4 standard deviations).
#[test]
fn hash_fills_every_bucket_when_one_field_varies() {
    type Vary = (&'static str, HashFields, fn(u32) -> Flow);
    let vary: [Vary; 10] = [
        ("source port", HashFields::L3L4, |i| Flow {
            sport: i as u16,
            ..flow(0)
        }),
        ("destination address", HashFields::L3Dst, |i| Flow {
            l3: Some(L3Addrs {
                src: ipv4(1),
                dst: ipv4(0x0a00_0000 + i),
            }),
            ..flow(0)
        }),
        ("source address", HashFields::L3SrcDst, |i| Flow {
            l3: Some(L3Addrs {
                src: ipv4(0x0a00_0000 + i),
                dst: ipv4(1),
            }),
            ..flow(0)
        }),
        ("destination MAC", HashFields::L2Dst, |i| Flow {
            dst_mac: mac(i),
            ..flow(0)
        }),
        ("source MAC", HashFields::L2Src, non_ip),
        ("destination port", HashFields::L3L4, |i| Flow {
            dport: i as u16,
            ..flow(0)
        }),
        // Fields varying together must not cancel out (an xor of unmixed fields
        // would): both ports, and a source address with its source port.
        ("source and destination port", HashFields::L3L4, |i| Flow {
            sport: i as u16,
            dport: i as u16,
            ..flow(0)
        }),
        ("source address and port", HashFields::L3L4, |i| Flow {
            l3: Some(L3Addrs {
                src: ipv4(0x0a00_0000 + i),
                dst: ipv4(1),
            }),
            sport: i as u16,
            ..flow(0)
        }),
        // IPv4 addresses are hashed as the header's bytes load little-endian: the
        // varying low octets of the destination are the word's top bits.
        ("destination address", HashFields::L3L4, |i| Flow {
            l3: Some(L3Addrs {
                src: ipv4(1),
                dst: ipv4(0x0a00_0000 + i),
            }),
            ..flow(0)
        }),
        ("both addresses", HashFields::L3L4, |i| Flow {
            l3: Some(L3Addrs {
                src: ipv4(0x0a00_0000 + i),
                dst: ipv4(0x0a00_0000 + i),
            }),
            ..flow(0)
        }),
    ];
    for (what, fields, f) in vary {
        let mut n = [0u32; HASH_BUCKETS];
        for i in 0..8192 {
            n[bucket_of(hash_flow(fields, &f(i)))] += 1;
        }
        let (lo, hi) = (n.iter().min().unwrap(), n.iter().max().unwrap());
        assert!(
            *lo >= 12 && *hi <= 56,
            "{fields} varying the {what}: buckets hold {lo}..{hi} of 8192 flows"
        );
    }
}

#[test]
fn hash_uses_only_the_selected_fields() {
    let f = flow(5);
    for (h, g) in [
        (
            HashFields::L2Dst,
            Flow {
                src_mac: mac(999),
                l3: None,
                ..f
            },
        ),
        (
            HashFields::L2Src,
            Flow {
                dst_mac: mac(999),
                sport: 1,
                ..f
            },
        ),
        (
            HashFields::L3Dst,
            Flow {
                src_mac: mac(999),
                dst_mac: mac(998),
                sport: 1,
                ..f
            },
        ),
        (
            HashFields::L3SrcDst,
            Flow {
                src_mac: mac(999),
                sport: 9,
                dport: 9,
                ..f
            },
        ),
        (
            HashFields::L3L4,
            Flow {
                src_mac: mac(999),
                tcp_flags: 0x12,
                payload_offset: 66,
                ..f
            },
        ),
    ] {
        assert_eq!(hash_flow(h, &f), hash_flow(h, &g), "{h}");
    }
    assert_ne!(
        hash_flow(HashFields::L3L4, &f),
        hash_flow(HashFields::L3L4, &Flow { sport: 2, ..f })
    );
    assert_ne!(
        hash_flow(HashFields::L2Src, &f),
        hash_flow(HashFields::L2Src, &Flow { vlan: 7, ..f })
    );
}

#[test]
fn non_ip_under_l3_hash_falls_back_to_l2() {
    let b3 = bond_up(cfg(Mode::Hash(HashFields::L3Dst)), 4);
    let b2 = bond_up(cfg(Mode::Hash(HashFields::L2Dst)), 4);
    for i in 0..200 {
        assert_eq!(sel(&b3, &non_ip(i), 0), sel(&b2, &non_ip(i), 0));
    }
    assert_eq!(
        hash_flow(HashFields::L3L4, &non_ip(3)),
        hash_flow(HashFields::L2SrcDst, &non_ip(3))
    );
}

#[test]
fn tcp_session_stays_on_one_member() {
    let b = bond_up(cfg(Mode::Hash(HashFields::L3L4)), 4);
    let d = b.distribution();
    let mut ctx = SelectCtx::default();
    let syn = Flow {
        tcp_flags: tcpflags_syn(),
        payload_offset: 54,
        ..flow(42)
    };
    let first = d.select(&syn, 0, &mut ctx);
    for k in 0..100u32 {
        ctx.rr = k * 7;
        ctx.pending = [k; MAX_MEMBERS];
        let seg = Flow {
            tcp_flags: 0x10,
            payload_offset: (54 + k) as u16,
            ..flow(42)
        };
        assert_eq!(d.select(&seg, k, &mut ctx), first);
    }
}

fn tcpflags_syn() -> u8 {
    crate::wire::tcpflags::SYN
}

#[test]
fn member_failure_moves_only_its_own_flows() {
    let mut b = bond_up(cfg(Mode::Hash(HashFields::L3L4)), 3);
    let before: Vec<_> = (0..600).map(|i| sel(&b, &flow(i), 0).unwrap()).collect();
    b.link_changed(1, false, SEC).unwrap();
    let after: Vec<_> = (0..600).map(|i| sel(&b, &flow(i), 0).unwrap()).collect();
    let mut to = [0usize; 3];
    for (x, y) in before.iter().zip(&after) {
        if *x != 1 {
            assert_eq!(x, y, "flow on a surviving member moved");
        } else {
            to[*y] += 1;
        }
    }
    assert_eq!(to[1], 0);
    let moved = to[0] + to[2];
    assert!(
        to[0] * 10 >= moved * 3 && to[2] * 10 >= moved * 3,
        "redistributed evenly: {to:?}"
    );
    b.link_changed(1, true, 2 * SEC).unwrap();
    let back: Vec<_> = (0..600).map(|i| sel(&b, &flow(i), 0).unwrap()).collect();
    assert_eq!(back, before, "flows return when the member returns");
}

#[test]
fn ip_hash_else_round_robin() {
    let b = bond_up(cfg(Mode::IpHashElseRoundRobin), 2);
    let d = b.distribution();
    let mut ctx = SelectCtx::default();
    let ip = flow(3);
    let m = d.select(&ip, 0, &mut ctx);
    for _ in 0..10 {
        assert_eq!(d.select(&ip, 0, &mut ctx), m);
    }
    let arp = non_ip(3);
    let got: Vec<_> = (0..4)
        .map(|_| d.select(&arp, 0, &mut ctx).unwrap())
        .collect();
    assert!(
        got.contains(&0) && got.contains(&1),
        "non-IP alternates: {got:?}"
    );
    // IP frames hash the destination address only.
    let other_src = Flow {
        l3: Some(L3Addrs {
            src: ipv4(1),
            ..ip.l3.unwrap()
        }),
        sport: 9,
        ..ip
    };
    assert_eq!(d.select(&other_src, 0, &mut ctx), m);
}

// ---------------------------------------------------------------- vm-pinned

#[test]
fn vm_pinned_spreads_homes_and_fails_over_crosswise() {
    let mut b = bond_up(cfg(Mode::VmPinned), 2);
    b.add_vnic(0, mac(10), 5).unwrap(); // claim 8's first VM
    b.add_vnic(1, mac(11), 5).unwrap(); // second VM
    b.add_vnic(2, mac(12), 5).unwrap();
    b.add_vnic(3, mac(13), 5).unwrap();
    assert_eq!(
        (0..4).map(|s| b.home_of(s).unwrap()).collect::<Vec<_>>(),
        vec![0, 1, 0, 1]
    );
    let d = b.distribution();
    for i in 0..100 {
        assert_eq!(d.select(&flow(i), 0, &mut SelectCtx::default()), Some(0));
        assert_eq!(d.select(&flow(i), 1, &mut SelectCtx::default()), Some(1));
    }
    assert!(events(&mut b).is_empty());

    // First NIC fails: the first VM's traffic moves to the second NIC.
    b.link_changed(0, false, SEC).unwrap();
    assert_eq!(sel(&b, &flow(1), 0), Some(1));
    assert_eq!(b.effective_member_of(0), Some(1));
    assert_eq!(b.home_of(0), Some(0));
    let ev = events(&mut b);
    assert_eq!(moved_to(&ev), vec![(0, 1), (2, 1)]);
    b.link_changed(0, true, 2 * SEC).unwrap();
    assert_eq!(sel(&b, &flow(1), 0), Some(0));
    assert_eq!(moved_to(&events(&mut b)), vec![(0, 0), (2, 0)]);

    // Second NIC fails: the second VM's traffic moves to the first.
    b.link_changed(1, false, 3 * SEC).unwrap();
    assert_eq!(sel(&b, &flow(1), 1), Some(0));
}

#[test]
fn vm_pinned_failover_spreads_over_survivors_and_is_sticky() {
    let mut b = bond_up(cfg(Mode::VmPinned), 3);
    for s in 0..9 {
        b.add_vnic(s, mac(s), 5).unwrap();
    }
    b.link_changed(0, false, SEC).unwrap();
    let displaced: Vec<_> = [0, 3, 6]
        .iter()
        .map(|&s| b.effective_member_of(s).unwrap())
        .collect();
    assert!(
        displaced.contains(&1) && displaced.contains(&2),
        "{displaced:?}"
    );
    // A change that does not concern them does not reshuffle the displaced vNICs.
    b.add_vnic(20, mac(20), 5).unwrap();
    b.set_vnic_priority(20, 9).unwrap();
    let again: Vec<_> = [0, 3, 6]
        .iter()
        .map(|&s| b.effective_member_of(s).unwrap())
        .collect();
    assert_eq!(again, displaced);
    // Member 2 stalls: what was displaced onto it moves to member 1, and stays there
    // when member 2 returns (only a vNIC's home pulls it back).
    b.tx_stalled(2, 2 * SEC).unwrap();
    assert!([0, 3, 6]
        .iter()
        .all(|&s| b.effective_member_of(s) == Some(1)));
    b.tick(3 * SEC);
    assert!([0, 3, 6]
        .iter()
        .all(|&s| b.effective_member_of(s) == Some(1)));
    assert_eq!(b.effective_member_of(2), Some(2), "vNIC 2 is home again");
    b.link_changed(0, true, 4 * SEC).unwrap();
    assert!([0, 3, 6]
        .iter()
        .all(|&s| b.effective_member_of(s) == Some(0)));
}

#[test]
fn vm_pinned_follows_failback_policy() {
    let c = BondConfig {
        mode: Mode::VmPinned,
        failback: Failback::Delayed,
        failback_delay: SEC,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    b.add_vnic(0, mac(1), 5).unwrap();
    b.link_changed(0, false, SEC).unwrap();
    b.link_changed(0, true, 2 * SEC).unwrap();
    assert_eq!(sel(&b, &flow(0), 0), Some(1));
    b.tick(3 * SEC);
    assert_eq!(sel(&b, &flow(0), 0), Some(0));
}

#[test]
fn unknown_slot_falls_back_to_source_mac_hash() {
    let b = bond_up(cfg(Mode::VmPinned), 4);
    let reference = bond_up(cfg(Mode::Hash(HashFields::L2Src)), 4);
    for i in 0..100 {
        assert_eq!(sel(&b, &flow(i), 1000 + i), sel(&reference, &flow(i), 0));
        assert_eq!(sel(&b, &flow(i), u32::MAX), sel(&reference, &flow(i), 0));
    }
}

#[test]
fn vm_pinned_filters_duplicate_broadcasts() {
    let b = bond_up(cfg(Mode::VmPinned), 2);
    let d = b.distribution();
    let bcast = Flow {
        dst_mac: MacAddr::BROADCAST,
        ..non_ip(1)
    };
    assert!(d.accepts_rx_frame(0, &bcast));
    assert!(!d.accepts_rx_frame(1, &bcast));
    assert!(
        d.accepts_rx_frame(1, &non_ip(1)),
        "unicast accepted on every member"
    );
    // With a LAG (LACP) the switch sends each broadcast once: accept everywhere.
    let c = BondConfig {
        mode: Mode::VmPinned,
        lacp: true,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    b.set_lacp(0, true, 0).unwrap();
    b.set_lacp(1, true, 0).unwrap();
    assert!(b.distribution().accepts_rx_frame(1, &bcast));
}

#[test]
fn set_home_and_remove_vnic() {
    let mut b = bond_up(cfg(Mode::VmPinned), 3);
    b.add_vnic(4, mac(4), 5).unwrap();
    assert_eq!(b.slot_of_mac(mac(4)), Some(4));
    b.set_home(4, 2).unwrap();
    assert_eq!(sel(&b, &flow(0), 4), Some(2));
    assert_eq!(moved_to(&events(&mut b)), vec![(4, 2)]);
    b.remove_vnic(4).unwrap();
    assert_eq!(b.home_of(4), None);
    assert!(b.distribution().slots.is_empty());
}

// ---------------------------------------------------------------- priority-aware

#[test]
fn priority_aware_isolates_low_priority() {
    let c = BondConfig {
        mode: Mode::PriorityAware,
        isolate_priority_max: 3,
        isolated_member: 2,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 3);
    b.add_vnic(0, mac(0), 1).unwrap(); // low
    b.add_vnic(1, mac(1), 3).unwrap(); // low (at the limit)
    b.add_vnic(2, mac(2), 8).unwrap(); // high
    let d = b.distribution();
    let mut ctx = SelectCtx {
        rr: 0,
        pending: [500, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    for i in 0..20 {
        assert_eq!(d.select(&flow(i), 0, &mut ctx), Some(2));
        assert_eq!(d.select(&flow(i), 1, &mut ctx), Some(2));
    }
    ctx.pending[2] = 9000; // the isolated member is busy with low-priority traffic
    assert_eq!(d.select(&flow(0), 2, &mut ctx), Some(1));
    ctx.pending[0] = 0;
    ctx.pending[1] = 700;
    assert_eq!(d.select(&flow(0), 2, &mut ctx), Some(0));

    // The isolated member fails: low-priority vNICs move to the next usable one.
    b.link_changed(2, false, SEC).unwrap();
    assert_eq!(sel(&b, &flow(0), 0), Some(0));
    let ev = events(&mut b);
    assert_eq!(moved_to(&ev), vec![(0, 0), (1, 0)]);
    // Raising a vNIC's priority frees it.
    b.set_vnic_priority(0, 9).unwrap();
    let mut ctx = SelectCtx::default();
    ctx.pending[0] = 100;
    assert_eq!(b.distribution().select(&flow(0), 0, &mut ctx), Some(1));
}

// ---------------------------------------------------------------- load-based

fn load_bond() -> Bond {
    let mut b = bond_up(cfg(Mode::LoadBased), 2);
    for s in 0..4 {
        b.add_vnic(s, mac(s), 5).unwrap(); // homes 0,1,0,1
    }
    events(&mut b);
    b
}

const GBIT: u64 = 1_000_000_000;

#[test]
fn load_based_waits_for_the_window_then_moves_one_vnic() {
    let mut b = load_bond();
    let cap = [10 * GBIT, 10 * GBIT];
    // Member 0 at 90 %: vNIC 0 sends 6 Gb/s, vNIC 2 3 Gb/s; member 1 at 10 %.
    let rates = [(0, 6 * GBIT), (2, 3 * GBIT), (1, GBIT), (3, 0)];
    let member = [9 * GBIT, GBIT];
    for t in 0..30 {
        assert_eq!(b.report_load(t * SEC, &member, &cap, &rates), 0, "t={t}");
    }
    assert_eq!(b.report_load(30 * SEC, &member, &cap, &rates), 1);
    // Excess 1.5 Gb/s: the smallest single vNIC that removes it is vNIC 2 (3 Gb/s).
    assert_eq!(b.home_of(2), Some(1));
    assert_eq!(b.home_of(0), Some(0));
    let ev = events(&mut b);
    assert_eq!(
        ev[0],
        BondEvent::Rebalanced {
            slot: 2,
            from: 0,
            to: 1
        }
    );
    assert_eq!(moved_to(&ev), vec![(2, 1)]);
    assert_eq!(sel(&b, &flow(0), 2), Some(1));
    // The window restarts: no further move right away even if still reported hot.
    assert_eq!(b.report_load(31 * SEC, &member, &cap, &rates), 0);
}

#[test]
fn load_based_dip_below_threshold_resets_the_window() {
    let mut b = load_bond();
    let cap = [10 * GBIT, 10 * GBIT];
    let rates = [(0, 6 * GBIT), (2, 3 * GBIT)];
    for t in 0..20 {
        b.report_load(t * SEC, &[9 * GBIT, 0], &cap, &rates);
    }
    b.report_load(20 * SEC, &[7 * GBIT, 0], &cap, &rates); // 70 %: below 75 %
    for t in 21..50 {
        assert_eq!(
            b.report_load(t * SEC, &[9 * GBIT, 0], &cap, &rates),
            0,
            "t={t}"
        );
    }
    assert_eq!(b.report_load(51 * SEC, &[9 * GBIT, 0], &cap, &rates), 1);
}

#[test]
fn load_based_prefers_one_sufficient_vnic() {
    let c = BondConfig {
        mode: Mode::LoadBased,
        rebalance_window: 0,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    for s in 0..6 {
        b.set_home_on_add(s, 0);
    }
    // Member 0 at 95 %, member 1 idle: excess over 75 % is 2 Gb/s. The 2 Gb/s vNICs each
    // remove it alone: the smallest sufficient vNIC moves (the lower slot on ties).
    let rates = [
        (0, GBIT),
        (1, GBIT),
        (2, GBIT),
        (3, 2 * GBIT),
        (4, 2 * GBIT),
        (5, GBIT / 2),
    ];
    let n = b.report_load(
        0,
        &[9 * GBIT + GBIT / 2, 0],
        &[10 * GBIT, 10 * GBIT],
        &rates,
    );
    assert_eq!(n, 1);
    let moved: Vec<_> = (0..6).filter(|&s| b.home_of(s) == Some(1)).collect();
    assert_eq!(moved, vec![3]);
}

#[test]
fn load_based_moves_several_when_no_single_vnic_suffices() {
    let c = BondConfig {
        mode: Mode::LoadBased,
        rebalance_window: 0,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    for s in 0..6 {
        b.set_home_on_add(s, 0);
    }
    // Excess 2 Gb/s, vNICs of at most 1 Gb/s: two moves, the largest first.
    let rates = [
        (0, GBIT / 2),
        (1, GBIT),
        (2, GBIT),
        (3, GBIT / 4),
        (4, GBIT),
        (5, GBIT / 2),
    ];
    let n = b.report_load(
        0,
        &[9 * GBIT + GBIT / 2, 0],
        &[10 * GBIT, 10 * GBIT],
        &rates,
    );
    assert_eq!(n, 2);
    let moved: Vec<_> = (0..6).filter(|&s| b.home_of(s) == Some(1)).collect();
    assert_eq!(moved.len(), 2);
    assert!(moved.iter().all(|&s| [1, 2, 4].contains(&s)), "{moved:?}");
}

#[test]
fn load_based_never_overloads_the_target() {
    let c = BondConfig {
        mode: Mode::LoadBased,
        rebalance_window: 0,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    for s in 0..3 {
        b.set_home_on_add(s, 0);
    }
    let cap = [10 * GBIT, 10 * GBIT];
    // Target has 0.5 Gb/s of headroom below 75 %; every vNIC is larger: nothing moves.
    let rates = [(0, 4 * GBIT), (1, 4 * GBIT), (2, GBIT)];
    assert_eq!(b.report_load(0, &[9 * GBIT, 7 * GBIT], &cap, &rates), 0);
    // A vNIC that fits moves, even though it only reduces the excess.
    let rates = [(0, 4 * GBIT), (1, 4 * GBIT), (2, GBIT / 2)];
    assert_eq!(b.report_load(SEC, &[9 * GBIT, 7 * GBIT], &cap, &rates), 1);
    assert_eq!(b.home_of(2), Some(1));
}

/// A vNIC's rate is what its VM offered (frames the member never carried included:
/// dropped for want of tx room, or shaped), so it can exceed its member's measured
/// load. Moving it takes the member's load to zero, not below: once `load - rate`
/// wrapped (release) or panicked (debug), and every other vNIC that fitted was moved
/// too.
#[test]
fn load_based_moves_a_vnic_that_offers_more_than_its_member_carried() {
    let c = BondConfig {
        mode: Mode::LoadBased,
        rebalance_window: 0,
        rebalance_threshold_pct: 80,
        ..BondConfig::default()
    };
    let mut b = bond_up(c, 2);
    for s in 0..3 {
        b.set_home_on_add(s, 0);
    }
    // A 10 Gb/s member carrying 9.9 (over 80 %), a 25 Gb/s one idle. vNIC 0 offers 12
    // Gb/s; the two others are small.
    let cap = [10 * GBIT, 25 * GBIT];
    let rates = [(0, 12 * GBIT), (1, GBIT / 10), (2, GBIT / 10)];
    assert_eq!(b.report_load(0, &[99 * GBIT / 10, 0], &cap, &rates), 1);
    assert_eq!(
        (b.home_of(0), b.home_of(1), b.home_of(2)),
        (Some(1), Some(0), Some(0))
    );
}

#[test]
fn report_load_is_ignored_outside_load_based() {
    let mut b = bond_up(cfg(Mode::VmPinned), 2);
    b.add_vnic(0, mac(0), 5).unwrap();
    for t in 0..100 {
        assert_eq!(
            b.report_load(
                t * SEC,
                &[10 * GBIT, 0],
                &[10 * GBIT, 10 * GBIT],
                &[(0, 10 * GBIT)]
            ),
            0
        );
    }
    // Short or zero-capacity inputs do not panic.
    let mut b = load_bond();
    assert_eq!(b.report_load(0, &[], &[], &[]), 0);
    assert_eq!(
        b.report_load(100 * SEC, &[u64::MAX], &[0], &[(0, u64::MAX)]),
        0
    );
}

impl Bond {
    /// Test helper: adds a vNIC and pins its home.
    fn set_home_on_add(&mut self, slot: u32, home: usize) {
        self.add_vnic(slot, mac(slot), 5).unwrap();
        self.set_home(slot, home).unwrap();
        self.drain_events().for_each(drop);
    }
}

// ---------------------------------------------------------------- distribution publishing

#[test]
fn generation_changes_only_with_the_distribution() {
    let mut b = bond_up(cfg(Mode::RoundRobin), 2);
    let g = b.generation();
    b.tick(SEC);
    b.link_changed(0, true, SEC).unwrap(); // same state again
    assert_eq!(b.generation(), g);
    b.link_changed(0, false, 2 * SEC).unwrap();
    assert!(b.generation() > g);
    assert_eq!(b.distribution().generation(), b.generation());
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Distribution>();
}

#[test]
fn set_mode_at_run_time() {
    let mut b = bond_up(cfg(Mode::ActiveBackup), 2);
    b.add_vnic(0, mac(0), 5).unwrap();
    b.set_mode(Mode::RoundRobin, SEC);
    assert_eq!(b.config().mode, Mode::RoundRobin);
    assert!(b.distribution().accepts_rx(1));
    let mut ctx = SelectCtx::default();
    let d = b.distribution();
    let a = d.select(&flow(0), 0, &mut ctx);
    let c = d.select(&flow(0), 0, &mut ctx);
    assert_ne!(a, c);
    b.set_mode(Mode::Hash(HashFields::L2Dst), 2 * SEC);
    assert_eq!(b.distribution().mode(), Mode::Hash(HashFields::L2Dst));
}

// ---------------------------------------------------------------- properties

#[derive(Clone, Debug)]
enum Op {
    Link(usize, bool),
    Stall(usize),
    Admin(usize, bool),
    Lacp(usize, bool),
    Manual,
    Mode(u8),
    Failback(u8),
    AddVnic(u32, u8),
    RemoveVnic(u32),
    Load(Vec<u64>),
    Advance(u64),
}

fn mode_of(i: u8) -> Mode {
    match i % 14 {
        0 => Mode::ActiveBackup,
        1 => Mode::RoundRobin,
        2 => Mode::LeastPending,
        3 => Mode::IpHashElseRoundRobin,
        4 => Mode::VmPinned,
        5 => Mode::PriorityAware,
        6 => Mode::LoadBased,
        k => Mode::Hash(HashFields::ALL[(k - 7) as usize]),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5usize, any::<bool>()).prop_map(|(m, u)| Op::Link(m, u)),
        2 => (0..5usize).prop_map(Op::Stall),
        1 => (0..5usize, any::<bool>()).prop_map(|(m, u)| Op::Admin(m, u)),
        1 => (0..5usize, any::<bool>()).prop_map(|(m, u)| Op::Lacp(m, u)),
        1 => Just(Op::Manual),
        1 => any::<u8>().prop_map(Op::Mode),
        1 => any::<u8>().prop_map(Op::Failback),
        2 => (0..12u32, 0..=10u8).prop_map(|(s, p)| Op::AddVnic(s, p)),
        1 => (0..12u32).prop_map(Op::RemoveVnic),
        1 => proptest::collection::vec(0..20_000_000_000u64, 0..5).prop_map(Op::Load),
        3 => (0..3 * SEC).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// No frame is ever assigned to an unusable member; `None` only when nothing is usable;
    /// the usable mask agrees with member states; no call panics.
    #[test]
    fn never_selects_an_unusable_member(
        n in 1..5usize,
        lacp in any::<bool>(),
        delays in (0..3u64, 0..3u64),
        ops in proptest::collection::vec(op(), 1..60),
        flows in proptest::collection::vec((any::<u32>(), any::<bool>(), 0..20u32), 1..20),
    ) {
        let c = BondConfig {
            lacp,
            updelay: delays.0 * 100 * MS,
            downdelay: delays.1 * 100 * MS,
            failback_delay: SEC,
            rebalance_window: 2 * SEC,
            ..BondConfig::default()
        };
        let mut b = Bond::new(c, n).unwrap();
        let mut now = 0;
        let mut ctx = SelectCtx::default();
        for op in ops {
            match op {
                Op::Link(m, u) => { let _ = b.link_changed(m, u, now); }
                Op::Stall(m) => { let _ = b.tx_stalled(m, now); }
                Op::Admin(m, u) => { let _ = b.set_admin(m, u, now); }
                Op::Lacp(m, u) => { let _ = b.set_lacp(m, u, now); }
                Op::Manual => { b.manual_failback(now); }
                Op::Mode(i) => b.set_mode(mode_of(i), now),
                Op::Failback(i) => {
                    let f = [Failback::Immediate, Failback::Delayed, Failback::Manual][i as usize % 3];
                    let c = BondConfig { failback: f, ..b.config().clone() };
                    b.set_config(c, now).unwrap();
                }
                Op::AddVnic(s, p) => { let _ = b.add_vnic(s, mac(s), p); }
                Op::RemoveVnic(s) => { let _ = b.remove_vnic(s); }
                Op::Load(v) => {
                    let caps = vec![10 * GBIT; v.len()];
                    let rates: Vec<(u32, u64)> = (0..12).map(|s| (s, v.first().copied().unwrap_or(0) / 4)).collect();
                    b.report_load(now, &v, &caps, &rates);
                }
                Op::Advance(d) => { now += d; b.tick(now); }
            }
            let d = b.distribution();
            let mask = d.usable_mask();
            prop_assert_eq!(mask, b.usable_mask());
            for m in 0..n {
                let st = b.member_status(m).unwrap();
                prop_assert_eq!(st.usable, mask & (1 << m) != 0);
                prop_assert_eq!(st.usable, st.state.is_usable());
                if st.usable { prop_assert!(st.admin_up); }
                if st.state == MemberState::Down { prop_assert!(st.reason != DownReason::None); }
            }
            prop_assert!(mask >> n == 0);
            if let Some(a) = d.active() { prop_assert!(mask & (1 << a) != 0); }
            for &(seed, ip, slot) in &flows {
                let f = if ip { flow(seed) } else { non_ip(seed) };
                ctx.pending[(seed % 16) as usize] = seed;
                match d.select(&f, slot, &mut ctx) {
                    Some(m) => prop_assert!(mask & (1 << m) != 0, "member {} not in {:b}", m, mask),
                    None => prop_assert_eq!(mask, 0),
                }
            }
            for m in 0..MAX_MEMBERS + 2 {
                let _ = d.accepts_rx(m);
            }
            if d.mode() == Mode::ActiveBackup {
                prop_assert!((0..n).filter(|&m| d.accepts_rx(m)).count() <= 1);
            }
            b.drain_events().for_each(drop);
        }
    }

    /// Hash modes are stable per flow: the same flow always gets the same member,
    /// whatever the worker's round-robin counter and pending bytes, and whichever
    /// distribution rebuilt from the same member states is used.
    #[test]
    fn hash_policies_are_stable_per_flow(
        h in 0..7usize,
        n in 1..17usize,
        down in any::<u16>(),
        seeds in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<[u8; 16]>()), 1..40),
    ) {
        let mode = Mode::Hash(HashFields::ALL[h]);
        let mut b = bond_up(cfg(mode), n);
        for m in 0..n {
            if down & (1 << m) != 0 { b.link_changed(m, false, 1).unwrap(); }
        }
        let d1 = b.distribution();
        b.set_mode(Mode::RoundRobin, 2);
        b.set_mode(mode, 3);
        let d2 = b.distribution();
        for (seed, rr, pend) in seeds {
            let f = flow(seed);
            let mut c1 = SelectCtx::default();
            let mut c2 = SelectCtx { rr, pending: pend.map(|p| p as u32 * 1000) };
            let a = d1.select(&f, seed, &mut c1);
            prop_assert_eq!(a, d1.select(&f, 0, &mut c2));
            prop_assert_eq!(a, d2.select(&f, rr, &mut c1));
            prop_assert_eq!(a.is_none(), b.usable_mask() == 0);
        }
    }

    /// A hash never panics on arbitrary parsed frames.
    #[test]
    fn hash_of_arbitrary_frames(bytes in proptest::collection::vec(any::<u8>(), 14..120), h in 0..7usize) {
        let f = Flow::parse(&bytes).unwrap();
        let b = bond_up(cfg(Mode::Hash(HashFields::ALL[h])), 3);
        prop_assert!(sel(&b, &f, 0).is_some());
    }
}

// ---------------------------------------------------------------- frame view, burst picks

proptest! {
    /// The lazy view hashes and selects exactly like the parsed flow, in every mode.
    #[test]
    fn view_selects_like_flow(bytes in frame_strategy(), slot in 0u32..4, rr in any::<u32>()) {
        let Ok(view) = FrameView::new_checked(&bytes) else { return Ok(()) };
        let flow = Flow::parse(&bytes).unwrap();
        for h in HashFields::ALL {
            prop_assert_eq!(hash_flow(h, &view), hash_flow(h, &flow), "{}", h);
        }
        prop_assert_eq!(view.is_ip(), flow.l3.is_some());
        for mode in all_modes() {
            let b = bond_up(cfg(mode), 3);
            let d = b.distribution();
            let mut c1 = SelectCtx { rr, pending: [0; MAX_MEMBERS] };
            let mut c2 = c1;
            prop_assert_eq!(d.select(&view, slot, &mut c1), d.select(&flow, slot, &mut c2));
            prop_assert_eq!(c1, c2);
            for m in 0..3 {
                prop_assert_eq!(d.accepts_rx_frame(m, &view), d.accepts_rx_frame(m, &flow));
            }
        }
    }

    /// A pick decided once per burst gives every frame the member `select` gives it,
    /// whatever the mode and whichever members are up.
    #[test]
    fn burst_pick_agrees_with_select(bytes in frame_strategy(), slot in 0u32..4, up in 0u8..8) {
        let Ok(view) = FrameView::new_checked(&bytes) else { return Ok(()) };
        for mode in all_modes() {
            let mut b = Bond::new(cfg(mode), 3).unwrap();
            for m in 0..3 {
                b.link_changed(m, up & (1 << m) != 0, 0).unwrap();
            }
            let d = b.distribution();
            let mut ctx = SelectCtx::default();
            let want = d.select(&view, slot, &mut ctx);
            match d.burst_pick() {
                BurstPick::Member(m) => prop_assert_eq!(Some(m), want, "{:?}", mode),
                BurstPick::Hash(f) => {
                    prop_assert_eq!(Some(d.member_of_hash(hash_flow(f, &view))), want, "{:?}", mode)
                }
                BurstPick::PerFrame => {}
            }
        }
    }
}
