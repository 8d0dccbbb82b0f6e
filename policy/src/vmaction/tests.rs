//! Tests for `policy::vmaction` with a simulated clock.

use super::*;
use crate::dos::{AttackKind, DosEvent};
use crate::time::MS;

fn vm(name: &str, priority: u8, bonds: &[&str], policy: VmActionPolicy) -> VmSpec {
    VmSpec {
        name: name.into(),
        priority,
        bonds: bonds.iter().map(|b| b.to_string()).collect(),
        policy,
        dos_responses: vec![],
    }
}

fn starvable() -> VmActionPolicy {
    VmActionPolicy {
        suspend_when_starved: Some(true),
        starve_grace: Some(500 * MS),
        ..VmActionPolicy::default()
    }
}

/// Two VMs on bond0: `hi` (priority 10) and `lo` (priority 1, may be suspended).
fn two_vms() -> VmSupervisor {
    let mut s = VmSupervisor::new(SupervisorConfig::default());
    s.add_vm(vm("hi", 10, &["bond0"], VmActionPolicy::default()));
    s.add_vm(vm("lo", 1, &["bond0"], starvable()));
    s
}

/// The non-alert actions drained, as (vm, action).
fn acts(s: &mut VmSupervisor) -> Vec<(String, VmAction)> {
    s.drain_actions()
        .into_iter()
        .filter(|a| a.action != VmAction::Alert)
        .map(|a| (a.vm, a.action))
        .collect()
}

fn alerts(s: &mut VmSupervisor) -> Vec<String> {
    s.drain_actions()
        .into_iter()
        .filter(|a| a.action == VmAction::Alert)
        .map(|a| a.reason)
        .collect()
}

fn one(vm: &str, a: VmAction) -> Vec<(String, VmAction)> {
    vec![(vm.to_string(), a)]
}

#[test]
fn member_fails_low_priority_vm_starved_suspended_then_resumed_on_failback() {
    let mut s = two_vms();
    s.bond_degraded("bond0", SEC);
    s.vm_starved("lo", true, SEC + 100 * MS);
    s.tick(SEC + 500 * MS);
    assert!(acts(&mut s).is_empty(), "grace period not over");
    s.tick(SEC + 600 * MS);
    let planned = s.drain_actions();
    assert_eq!(planned.len(), 1);
    assert_eq!(
        (planned[0].vm.as_str(), planned[0].action),
        ("lo", VmAction::Suspend)
    );
    assert!(planned[0].reason.contains("bond0"), "{}", planned[0].reason);
    // Nothing more while the suspend is in flight.
    s.tick(SEC + 700 * MS);
    assert!(s.drain_actions().is_empty());
    s.action_result("lo", VmAction::Suspend, Ok(()));
    assert!(s.is_suspended_by_us("lo"));
    let a = alerts(&mut s);
    assert_eq!(a.len(), 1);
    assert!(a[0].contains("lo suspended"), "{a:?}");
    // Suspended, it stops sending and no longer looks starved: it stays suspended.
    s.vm_starved("lo", false, 2 * SEC);
    for t in 2..10 {
        s.tick(t * SEC);
    }
    assert!(s.drain_actions().is_empty());
    // Failback: resume.
    s.bond_restored("bond0", 10 * SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Resume));
    s.action_result("lo", VmAction::Resume, Ok(()));
    assert!(!s.is_suspended_by_us("lo"));
    assert_eq!(alerts(&mut s).len(), 1);
    s.tick(11 * SEC);
    assert!(s.drain_actions().is_empty());
    let st = s.status();
    let lo = st.iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!(
        (lo.counts.suspends, lo.counts.resumes, lo.counts.alerts),
        (1, 1, 2)
    );
    let hi = st.iter().find(|v| v.vm == "hi").unwrap();
    assert_eq!(hi.counts, ActionCounts::default());
}

#[test]
fn starvation_without_degraded_bond_or_shorter_than_grace_does_nothing() {
    let mut s = two_vms();
    s.vm_starved("lo", true, 0);
    s.tick(10 * SEC);
    assert!(
        s.drain_actions().is_empty(),
        "not starved by the degraded-bond rule"
    );
    s.vm_starved("lo", false, 10 * SEC);
    s.bond_degraded("bond0", 11 * SEC);
    s.vm_starved("lo", true, 11 * SEC);
    s.vm_starved("lo", false, 11 * SEC + 400 * MS);
    s.vm_starved("lo", true, 11 * SEC + 450 * MS);
    s.tick(11 * SEC + 900 * MS);
    assert!(
        s.drain_actions().is_empty(),
        "the grace restarts with each starvation episode"
    );
    s.tick(11 * SEC + 950 * MS);
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
}

#[test]
fn priority_protection_prevents_suspension() {
    let mut s = VmSupervisor::new(SupervisorConfig {
        min_priority_to_keep: Some(1),
        ..SupervisorConfig::default()
    });
    s.add_vm(vm("lo", 1, &["bond0"], starvable()));
    s.bond_degraded("bond0", 0);
    s.vm_starved("lo", true, 0);
    s.tick(5 * SEC);
    assert!(s.drain_actions().is_empty());
}

/// Per-bond policies: a VM without its own setting follows its bond; a VM's own
/// setting wins over the bond's either way; the grace and the alerts follow the
/// same rule.
#[test]
fn bond_policy_is_the_default_and_the_vm_setting_wins() {
    let mut s = VmSupervisor::new(SupervisorConfig::default());
    s.set_bond_policy(
        "strict",
        BondActionPolicy {
            suspend_starved: true,
            starve_grace: 200 * MS,
            alert: false,
            ..BondActionPolicy::default()
        },
    );
    let unset = VmActionPolicy::default();
    // On the strict bond: follows it / opts out / keeps alerts and its own grace.
    s.add_vm(vm("follows", 1, &["strict"], unset.clone()));
    s.add_vm(vm(
        "exempt",
        1,
        &["strict"],
        VmActionPolicy {
            suspend_when_starved: Some(false),
            ..unset.clone()
        },
    ));
    s.add_vm(vm(
        "slow",
        1,
        &["strict"],
        VmActionPolicy {
            starve_grace: Some(2 * SEC),
            alert: Some(true),
            ..unset.clone()
        },
    ));
    // On a bond without a policy: nothing unless the VM asks for it itself.
    s.add_vm(vm("plain", 1, &["other"], unset.clone()));
    s.add_vm(vm(
        "own",
        1,
        &["other"],
        VmActionPolicy {
            suspend_when_starved: Some(true),
            ..unset
        },
    ));
    s.bond_degraded("strict", 0);
    s.bond_degraded("other", 0);
    for v in ["follows", "exempt", "slow", "plain", "own"] {
        s.vm_starved(v, true, 0);
    }
    s.tick(199 * MS);
    assert!(s.drain_actions().is_empty(), "within the bond's grace");
    s.tick(200 * MS);
    assert_eq!(acts(&mut s), one("follows", VmAction::Suspend));
    s.tick(SEC);
    assert_eq!(
        acts(&mut s),
        one("own", VmAction::Suspend),
        "default grace 1 s"
    );
    s.tick(2 * SEC);
    assert_eq!(
        acts(&mut s),
        one("slow", VmAction::Suspend),
        "its own grace"
    );
    for v in ["follows", "own", "slow"] {
        s.action_result(v, VmAction::Suspend, Ok(()));
    }
    let a = alerts(&mut s);
    assert!(
        a.iter().any(|m| m.contains("own suspended"))
            && a.iter().any(|m| m.contains("slow suspended")),
        "{a:?}"
    );
    assert!(
        !a.iter().any(|m| m.contains("follows")),
        "the strict bond silences alerts of VMs that do not set their own: {a:?}"
    );
    s.tick(10 * SEC);
    assert!(
        s.drain_actions().is_empty(),
        "exempt and plain stay running"
    );
    assert!(!s.is_suspended_by_us("exempt") && !s.is_suspended_by_us("plain"));
    // Failback of the strict bond resumes the VMs it suspended.
    s.bond_restored("strict", 11 * SEC);
    let mut resumed = acts(&mut s);
    resumed.sort();
    assert_eq!(
        resumed,
        vec![
            ("follows".to_string(), VmAction::Resume),
            ("slow".to_string(), VmAction::Resume)
        ]
    );
}

#[test]
fn migration_requested_once_after_degradation_lasts_migrate_after() {
    let mut s = VmSupervisor::new(SupervisorConfig::default());
    let p = VmActionPolicy {
        migrate_after: Some(10 * SEC),
        ..VmActionPolicy::default()
    };
    s.add_vm(vm("lo", 1, &["bond0"], p));
    s.add_vm(vm(
        "bystander",
        1,
        &["bond0"],
        VmActionPolicy {
            migrate_after: Some(10 * SEC),
            ..VmActionPolicy::default()
        },
    ));
    s.bond_degraded("bond0", SEC);
    s.vm_starved("lo", true, 2 * SEC);
    s.tick(11 * SEC - 1);
    assert!(s.drain_actions().is_empty());
    s.tick(11 * SEC);
    assert_eq!(
        acts(&mut s),
        one("lo", VmAction::RequestMigration),
        "only the starved VM"
    );
    s.action_result("lo", VmAction::RequestMigration, Ok(()));
    assert!(alerts(&mut s)[0].contains("migration requested"));
    for t in 12..40 {
        s.tick(t * SEC);
    }
    assert!(s.drain_actions().is_empty(), "requested once per episode");
    // A new episode may request again.
    s.bond_restored("bond0", 40 * SEC);
    s.bond_degraded("bond0", 41 * SEC);
    s.vm_starved("lo", true, 41 * SEC);
    s.tick(51 * SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::RequestMigration));
}

#[test]
fn bond_migrate_after_applies_to_vms_without_their_own() {
    let mut s = two_vms();
    s.set_bond_policy(
        "bond0",
        BondActionPolicy {
            suspend_starved: true,
            migrate_after: Some(3 * SEC),
            ..BondActionPolicy::default()
        },
    );
    s.bond_degraded("bond0", 0);
    s.vm_starved("lo", true, 0);
    s.tick(SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
    s.action_result("lo", VmAction::Suspend, Ok(()));
    s.vm_starved("lo", false, 2 * SEC);
    s.tick(3 * SEC);
    // Still affected: suspended because of bond0.
    assert_eq!(acts(&mut s), one("lo", VmAction::RequestMigration));
}

#[test]
fn inputs_are_idempotent() {
    let mut s = two_vms();
    for _ in 0..3 {
        s.bond_degraded("bond0", 0);
        s.vm_starved("lo", true, 0);
    }
    let mut planned = Vec::new();
    for t in 0..20 {
        s.tick(t * 100 * MS);
        s.bond_degraded("bond0", t * 100 * MS);
        s.vm_starved("lo", true, t * 100 * MS);
        planned.extend(acts(&mut s));
    }
    assert_eq!(planned, one("lo", VmAction::Suspend));
    s.action_result("lo", VmAction::Suspend, Ok(()));
    s.action_result("lo", VmAction::Suspend, Ok(())); // duplicate result: ignored
    s.action_result("lo", VmAction::Resume, Ok(())); // never asked: ignored
    assert!(s.is_suspended_by_us("lo"));
    for t in 20..40 {
        s.tick(t * 100 * MS);
        s.vm_starved("lo", true, t * 100 * MS);
    }
    assert!(acts(&mut s).is_empty(), "never suspended twice");
    s.bond_restored("bond0", 5 * SEC);
    s.bond_restored("bond0", 5 * SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Resume));
    s.action_result("lo", VmAction::Resume, Ok(()));
    s.bond_restored("bond0", 6 * SEC);
    s.tick(7 * SEC);
    assert!(acts(&mut s).is_empty());
}

#[test]
fn never_resumes_a_vm_it_did_not_suspend() {
    let mut s = two_vms();
    s.bond_degraded("bond0", 0);
    s.vm_starved("lo", true, 0);
    s.tick(SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
    s.action_result("lo", VmAction::Suspend, Err("qmp: no such socket".into()));
    s.bond_restored("bond0", 2 * SEC);
    for t in 2..100 {
        s.tick(t * SEC);
    }
    assert!(
        acts(&mut s).is_empty(),
        "suspend failed and the cause is gone: nothing to undo"
    );
    assert!(!s.is_suspended_by_us("lo"));
}

#[test]
fn suspension_completing_after_its_cause_cleared_is_undone() {
    let mut s = two_vms();
    s.bond_degraded("bond0", 0);
    s.vm_starved("lo", true, 0);
    s.tick(SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
    s.bond_restored("bond0", SEC + 1);
    assert!(acts(&mut s).is_empty(), "wait for the in-flight suspend");
    s.action_result("lo", VmAction::Suspend, Ok(()));
    assert_eq!(acts(&mut s), one("lo", VmAction::Resume));
}

#[test]
fn failed_actions_are_retried_with_backoff_and_alerted_once() {
    let mut s = two_vms();
    s.bond_degraded("bond0", 0);
    s.vm_starved("lo", true, 0);
    s.tick(SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
    let mut attempts = vec![SEC];
    let mut alert_count = 0;
    let mut t = SEC;
    // Fail 5 times; retries after 1 s, 2 s, 4 s, 8 s.
    while attempts.len() < 6 {
        s.action_result("lo", VmAction::Suspend, Err("boom".into()));
        loop {
            t += 100 * MS;
            s.tick(t);
            let d = s.drain_actions();
            alert_count += d.iter().filter(|a| a.action == VmAction::Alert).count();
            if d.iter().any(|a| a.action == VmAction::Suspend) {
                attempts.push(t);
                break;
            }
            assert!(t < 100 * SEC);
        }
    }
    let gaps: Vec<Nanos> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]) / (100 * MS))
        .collect();
    assert_eq!(gaps, vec![10, 20, 40, 80, 160]);
    // The first failure's alert was drained with the first retry loop.
    assert_eq!(alert_count, 1);
    s.action_result("lo", VmAction::Suspend, Ok(()));
    assert!(s.is_suspended_by_us("lo"));
    let st = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!(
        (st.failures, st.counts.failures, st.counts.suspends),
        (0, 5, 1)
    );
}

#[test]
fn lost_results_time_out_and_count_as_failures() {
    let cfg = SupervisorConfig {
        action_timeout: 5 * SEC,
        retry_base: 2 * SEC,
        ..SupervisorConfig::default()
    };
    let mut s = VmSupervisor::new(cfg);
    s.add_vm(vm("lo", 1, &["bond0"], starvable()));
    s.bond_degraded("bond0", 0);
    s.vm_starved("lo", true, 0);
    s.tick(SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
    s.tick(6 * SEC - 1);
    assert!(s.drain_actions().is_empty());
    s.tick(6 * SEC);
    assert_eq!(alerts(&mut s).len(), 1, "timeout alerted");
    s.tick(8 * SEC - 1);
    assert!(s.drain_actions().is_empty());
    s.tick(8 * SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
    // The late result of the first attempt matches the retry in flight: accepted once.
    s.action_result("lo", VmAction::Suspend, Ok(()));
    assert!(s.is_suspended_by_us("lo"));
}

#[test]
fn restart_restore_still_resumes() {
    let mut s = two_vms();
    s.bond_degraded("bond0", 0);
    s.vm_starved("lo", true, 0);
    s.tick(SEC);
    let g0 = s.snapshot_generation();
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
    s.action_result("lo", VmAction::Suspend, Ok(()));
    assert!(s.snapshot_generation() > g0);
    let snap = s.snapshot();
    assert_eq!(
        snap.suspended,
        vec![SuspendedVm {
            vm: "lo".into(),
            reasons: vec![SuspendReason::Starved {
                bond: "bond0".into()
            }]
        }]
    );

    // The switch restarts; the bond was repaired meanwhile.
    let mut s = two_vms();
    s.add_vm(vm("other", 1, &[], VmActionPolicy::default()));
    let mut with_orphan = snap.clone();
    with_orphan.suspended.push(SuspendedVm {
        vm: "gone".into(),
        reasons: vec![],
    });
    assert_eq!(s.restore(&with_orphan, 100 * SEC), vec!["gone".to_string()]);
    assert!(s.is_suspended_by_us("lo"));
    s.tick(104 * SEC);
    assert!(
        s.drain_actions().is_empty(),
        "waits restore_settle for bond reports"
    );
    s.tick(105 * SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Resume));
    s.action_result("lo", VmAction::Resume, Ok(()));
    assert!(s.snapshot().suspended.is_empty());

    // Restart while the bond is still degraded: stays suspended until failback.
    let mut s = two_vms();
    s.restore(&snap, 100 * SEC);
    s.bond_degraded("bond0", 100 * SEC + 10 * MS);
    for t in 101..120 {
        s.tick(t * SEC);
    }
    assert!(s.drain_actions().is_empty());
    s.bond_restored("bond0", 120 * SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Resume));
}

/// `lo` suspended by the switch because bond0 is degraded and it is starved.
fn lo_suspended() -> VmSupervisor {
    let mut s = two_vms();
    s.bond_degraded("bond0", SEC);
    s.vm_starved("lo", true, SEC);
    s.tick(2 * SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Suspend));
    s.action_result("lo", VmAction::Suspend, Ok(()));
    s.drain_actions();
    s
}

#[test]
fn a_live_change_carries_suspension_counts_and_degradation_over() {
    let old = lo_suspended();
    // The new configuration adds a VM and drops none; no restore settle applies.
    let mut s = two_vms();
    s.add_vm(vm("new", 1, &["bond0"], starvable()));
    s.carry_over(&old, |_| false);
    assert!(s.is_suspended_by_us("lo"));
    assert!(!s.is_suspended_by_us("new"));
    let lo = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!((lo.counts.suspends, lo.counts.resumes), (1, 0), "{lo:?}");
    assert!(s.snapshot_generation() > old.snapshot_generation());
    // The bond is still degraded in the new supervisor: lo stays suspended...
    s.vm_starved("lo", false, 3 * SEC);
    for t in 3..10 {
        s.tick(t * SEC);
    }
    assert!(acts(&mut s).is_empty());
    // ...until failback, with no restore settle in between.
    s.bond_restored("bond0", 10 * SEC);
    assert_eq!(acts(&mut s), one("lo", VmAction::Resume));
    s.action_result("lo", VmAction::Resume, Ok(()));
    let lo = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!((lo.counts.suspends, lo.counts.resumes), (1, 1), "{lo:?}");
}

#[test]
fn a_live_change_keeps_a_suspend_in_flight_and_forgets_removed_vms() {
    let mut old = two_vms();
    old.bond_degraded("bond0", SEC);
    old.vm_starved("lo", true, SEC);
    old.tick(2 * SEC);
    assert_eq!(acts(&mut old), one("lo", VmAction::Suspend));
    // The change lands before the suspend's result; `hi` is removed.
    let mut s = VmSupervisor::new(SupervisorConfig::default());
    s.add_vm(vm("lo", 1, &["bond0"], starvable()));
    s.carry_over(&old, |_| false);
    assert!(!s.is_suspended_by_us("lo"), "not confirmed yet");
    let lo = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!(lo.pending, Some(VmAction::Suspend), "{lo:?}");
    assert!(s.status().iter().all(|v| v.vm != "hi"));
    assert_eq!(
        s.snapshot().suspended.len(),
        1,
        "an in-flight suspend persists"
    );
    s.tick(3 * SEC);
    assert!(acts(&mut s).is_empty(), "suspended once, not twice");
    // The result, from the executor handed over, lands here and counts once.
    s.action_result("lo", VmAction::Suspend, Ok(()));
    assert!(s.is_suspended_by_us("lo"));
    let lo = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!((lo.pending, lo.counts.suspends), (None, 1), "{lo:?}");
    s.tick(4 * SEC);
    assert!(acts(&mut s).is_empty());
}

#[test]
fn a_live_change_does_not_repeat_a_resume_or_migration_in_flight() {
    // Resume in flight: the bond came back, lo's resume has not answered yet.
    let mut old = lo_suspended();
    old.bond_restored("bond0", 3 * SEC);
    assert_eq!(acts(&mut old), one("lo", VmAction::Resume));
    let mut s = two_vms();
    s.carry_over(&old, |_| false);
    for t in 4..8 {
        s.tick(t * SEC);
        assert!(acts(&mut s).is_empty(), "resume repeated at {t} s");
    }
    s.action_result("lo", VmAction::Resume, Ok(()));
    assert!(!s.is_suspended_by_us("lo"));
    let lo = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!((lo.counts.suspends, lo.counts.resumes), (1, 1), "{lo:?}");

    // Migration in flight: requested once, across the change.
    let migrating = || {
        let mut s = VmSupervisor::new(SupervisorConfig::default());
        s.add_vm(vm(
            "lo",
            1,
            &["bond0"],
            VmActionPolicy {
                migrate_after: Some(2 * SEC),
                ..VmActionPolicy::default()
            },
        ));
        s
    };
    let mut old = migrating();
    old.bond_degraded("bond0", SEC);
    old.vm_starved("lo", true, SEC);
    old.tick(3 * SEC);
    assert_eq!(acts(&mut old), one("lo", VmAction::RequestMigration));
    let mut s = migrating();
    s.carry_over(&old, |_| false);
    s.tick(4 * SEC);
    assert!(acts(&mut s).is_empty(), "migration requested twice");
    s.action_result("lo", VmAction::RequestMigration, Ok(()));
    for t in 5..9 {
        s.tick(t * SEC);
    }
    assert!(acts(&mut s).is_empty(), "requested once per episode");
    let lo = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!(lo.counts.migrations, 1, "{lo:?}");

    // A failure that arrives after the change is retried by the new supervisor,
    // after its backoff; a result that never arrives times out there.
    let mut old = migrating();
    old.bond_degraded("bond0", SEC);
    old.vm_starved("lo", true, SEC);
    old.tick(3 * SEC);
    assert_eq!(acts(&mut old), one("lo", VmAction::RequestMigration));
    let mut s = migrating();
    s.carry_over(&old, |_| false);
    s.action_result(
        "lo",
        VmAction::RequestMigration,
        Err("hook exited 1".into()),
    );
    let lo = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!((lo.failures, lo.pending), (1, None), "{lo:?}");
    let retry = lo.retry_at.expect("a backoff");
    s.tick(retry);
    assert_eq!(acts(&mut s), one("lo", VmAction::RequestMigration));
    let timeout = SupervisorConfig::default().action_timeout;
    s.tick(retry + timeout);
    let lo = s.status().into_iter().find(|v| v.vm == "lo").unwrap();
    assert_eq!((lo.failures, lo.pending), (2, None), "timed out: {lo:?}");
}

#[test]
fn a_live_change_keeps_an_attack_only_with_its_detector() {
    let build = || {
        let mut s = VmSupervisor::new(SupervisorConfig::default());
        let mut victim = vm("web", 5, &["bond0"], VmActionPolicy::default());
        victim.dos_responses = vec![DosResponse::SuspendLowerPriority];
        s.add_vm(victim);
        s.add_vm(vm(
            "batch",
            1,
            &["bond0"],
            VmActionPolicy {
                suspend_for_dos: true,
                ..VmActionPolicy::default()
            },
        ));
        s
    };
    let mut old = build();
    old.dos_event("web", &started(SEC), SEC);
    assert_eq!(acts(&mut old), one("batch", VmAction::Suspend));
    old.action_result("batch", VmAction::Suspend, Ok(()));

    // The detector moved over: the attack goes on, batch stays suspended until it ends.
    let mut s = build();
    s.carry_over(&old, |v| v == "web");
    s.tick(5 * SEC);
    assert!(acts(&mut s).is_empty());
    s.dos_event("web", &ended(6 * SEC), 6 * SEC);
    assert_eq!(acts(&mut s), one("batch", VmAction::Resume));

    // A new detector would never report the end: the reason lapses at once.
    let mut s = build();
    s.carry_over(&old, |_| false);
    s.tick(5 * SEC);
    assert_eq!(acts(&mut s), one("batch", VmAction::Resume));
}

#[test]
fn snapshot_is_serde_serializable() {
    fn assert_serde<T: serde::Serialize + serde::de::DeserializeOwned>() {}
    assert_serde::<SupervisorSnapshot>();
    assert_serde::<VmAction>();
}

fn started(at: Nanos) -> DosEvent {
    DosEvent::AttackStarted {
        kind: AttackKind::SynFlood { half_open: 50_000 },
        at,
    }
}

fn ended(at: Nanos) -> DosEvent {
    DosEvent::AttackEnded {
        kind: AttackKind::SynFlood { half_open: 50_000 },
        at,
    }
}

#[test]
fn dos_attack_suspends_lower_priority_vms_sharing_the_uplink_and_resumes_after() {
    let mut s = VmSupervisor::new(SupervisorConfig::default());
    let dosable = VmActionPolicy {
        suspend_for_dos: true,
        ..VmActionPolicy::default()
    };
    let mut victim = vm("web", 5, &["bond0"], VmActionPolicy::default());
    victim.dos_responses = vec![
        DosResponse::SuspendLowerPriority,
        DosResponse::RequestMigration,
        DosResponse::Alert,
    ];
    s.add_vm(victim);
    s.add_vm(vm("batch", 1, &["bond0"], dosable.clone()));
    s.add_vm(vm("elsewhere", 1, &["bond1"], dosable.clone()));
    s.add_vm(vm("db", 9, &["bond0"], dosable.clone()));
    s.add_vm(vm("pinned", 2, &["bond0"], VmActionPolicy::default()));

    s.dos_event("web", &started(SEC), SEC);
    let d = s.drain_actions();
    let mut got: Vec<(&str, VmAction)> = d.iter().map(|a| (a.vm.as_str(), a.action)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("batch", VmAction::Suspend),
            ("web", VmAction::RequestMigration),
            ("web", VmAction::Alert)
        ]
    );
    assert!(d
        .iter()
        .any(|a| a.action == VmAction::Alert && a.reason.contains("SYN flood")));
    s.action_result("batch", VmAction::Suspend, Ok(()));
    s.action_result("web", VmAction::RequestMigration, Ok(()));
    s.drain_actions();
    // A second attack class on the same VM: nothing new.
    s.dos_event(
        "web",
        &DosEvent::AttackStarted {
            kind: AttackKind::Signature { rule: 0 },
            at: 2 * SEC,
        },
        2 * SEC,
    );
    assert!(acts(&mut s).is_empty());
    s.dos_event("web", &ended(3 * SEC), 3 * SEC);
    assert!(acts(&mut s).is_empty(), "the signature attack still runs");
    s.dos_event(
        "web",
        &DosEvent::AttackEnded {
            kind: AttackKind::Signature { rule: 0 },
            at: 4 * SEC,
        },
        4 * SEC,
    );
    let d = s.drain_actions();
    assert!(d
        .iter()
        .any(|a| a.vm == "batch" && a.action == VmAction::Resume));
    assert!(d
        .iter()
        .any(|a| a.vm == "web" && a.action == VmAction::Alert && a.reason.contains("ended")));
    // A later attack is a new episode: migration may be requested again.
    s.dos_event("web", &started(10 * SEC), 10 * SEC);
    assert!(acts(&mut s).contains(&("web".to_string(), VmAction::RequestMigration)));
}

#[test]
fn dos_events_for_vms_without_responses_do_nothing() {
    let mut s = two_vms();
    s.dos_event("hi", &started(0), 0);
    s.dos_event("nobody", &started(0), 0);
    assert!(s.drain_actions().is_empty());
}

#[test]
fn action_names_round_trip() {
    for a in [
        VmAction::Suspend,
        VmAction::Resume,
        VmAction::RequestMigration,
        VmAction::Alert,
    ] {
        assert_eq!(a.to_string().parse::<VmAction>(), Ok(a));
    }
    assert!("pause".parse::<VmAction>().is_err());
}
