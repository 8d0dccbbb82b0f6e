//! Tests of the control channel: `apply_to_config` for every change kind and the
//! \[0060\]/\[0061\] rules, the server over a real socket (every command, garbage,
//! limits), persistence, and the Prometheus exporter.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::protocol::{Response, COMMANDS, MAX_LINE};
use super::server::{serve_with, ServerOptions};
use super::testing::{sample_config, spawn_server, FakeApi, TempDir};
use super::*;

fn s(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn apply(change: ConfigChange) -> Result<Config, CtlError> {
    apply_to_config(&sample_config(), &change)
}

fn apply_err(change: ConfigChange) -> String {
    apply(change)
        .expect_err("change should be refused")
        .to_string()
}

fn vnic_names(c: &Config) -> Vec<String> {
    c.vm.iter()
        .flat_map(|vm| (0..vm.vnic.len()).map(move |j| Config::vnic_name(vm, j)))
        .collect()
}

fn add_nic3() -> Config {
    let ch = ConfigChange::AddNic {
        name: "nic3".into(),
        devargs: "net_null3".into(),
        speed_mbps: Some(25_000),
        mtu: None,
    };
    apply(ch).unwrap()
}

// ---- apply_to_config ------------------------------------------------------------

#[test]
fn add_nic_and_duplicate() {
    let c = add_nic3();
    assert_eq!(c.nic.len(), 4);
    assert_eq!(c.nic[3].speed_mbps, Some(25_000));
    assert_eq!(c.uplink("nic3"), Some(crate::config::UplinkRef::Nic(3)));
    let e = apply_err(ConfigChange::AddNic {
        name: "bond0".into(),
        devargs: "x".into(),
        speed_mbps: None,
        mtu: None,
    });
    assert!(
        e.contains("already used by a nic") || e.contains("already used by a bond"),
        "{e}"
    );
    let e = apply_err(ConfigChange::AddNic {
        name: "nic9".into(),
        devargs: " ".into(),
        speed_mbps: None,
        mtu: None,
    });
    assert!(e.contains("devargs is empty"), "{e}");
}

#[test]
fn nic_mtu_defaults_and_is_set_within_its_range() {
    // `set-nic NIC key=value` on `c`.
    let set_nic = |c: &Config, nic: &str, key: &str, value: &str| {
        apply_to_config(
            c,
            &ConfigChange::SetNic {
                nic: nic.into(),
                settings: vec![s(key, value)],
            },
        )
    };
    let refused = |c: &Config, key: &str, value: &str| {
        set_nic(c, "nic3", key, value).unwrap_err().to_string()
    };
    let c = add_nic3();
    assert_eq!(c.nic[3].mtu, None);
    assert_eq!(c.nic[3].mtu(), 1500);
    assert_eq!(
        c.nic[3].frame_max(),
        1518,
        "MTU + Ethernet header + a VLAN tag"
    );
    let c2 = set_nic(&c, "nic3", "mtu", "9000").unwrap();
    assert_eq!(c2.nic[3].mtu, Some(9000));
    assert_eq!(c2.nic[3].frame_max(), 9018);
    // An empty value goes back to the default.
    let c3 = set_nic(&c2, "nic3", "mtu", "").unwrap();
    assert_eq!(c3.nic[3].mtu(), 1500);
    for bad in ["67", "9711"] {
        let e = refused(&c, "mtu", bad);
        assert!(
            e.contains(&format!("mtu {bad} is outside 68..=9710")),
            "{e}"
        );
    }
    let e = refused(&c, "mtu", "70000");
    assert!(e.contains("mtu"), "{e}");
    let e = refused(&c, "name", "x");
    assert!(e.contains("name"), "{e}");
    assert!(matches!(
        set_nic(&c, "nic9", "mtu", "9000"),
        Err(CtlError::NotFound { kind: "nic", .. })
    ));
    let added = apply(ConfigChange::AddNic {
        name: "nic4".into(),
        devargs: "net_null4".into(),
        speed_mbps: None,
        mtu: Some(9000),
    })
    .unwrap();
    assert_eq!(added.nic[3].mtu, Some(9000));
}

#[test]
fn apply_does_not_touch_its_input() {
    let before = sample_config();
    let _ = apply_to_config(&before, &ConfigChange::DelVm { name: "vm1".into() }).unwrap();
    assert_eq!(before, sample_config());
}

#[test]
fn del_nic_rules() {
    let c = apply_to_config(
        &add_nic3(),
        &ConfigChange::DelNic {
            name: "nic3".into(),
        },
    )
    .unwrap();
    assert_eq!(c, sample_config());
    let e = apply_err(ConfigChange::DelNic {
        name: "nic0".into(),
    });
    assert!(
        e.contains("member of bond 'bond0'") && e.contains("del-bond-member"),
        "{e}"
    );
    let e = apply_err(ConfigChange::DelNic {
        name: "nic2".into(),
    });
    assert!(e.contains("uplink of vnic 'vm1.1'"), "{e}");
    assert_eq!(
        apply(ConfigChange::DelNic {
            name: "nope".into()
        })
        .unwrap_err(),
        CtlError::NotFound {
            kind: "nic",
            name: "nope".into()
        }
    );
}

#[test]
fn add_and_del_vm() {
    let c = apply(ConfigChange::AddVm {
        name: "vm3".into(),
        priority: None,
        shares: None,
    })
    .unwrap();
    let vm = c.vm.iter().find(|v| v.name == "vm3").unwrap();
    assert_eq!(
        (vm.priority, vm.shares, vm.vnic.len()),
        (5, 1000, 0),
        "file defaults apply"
    );
    let c = apply(ConfigChange::AddVm {
        name: "vm3".into(),
        priority: Some(9),
        shares: Some(50),
    })
    .unwrap();
    let vm = c.vm.iter().find(|v| v.name == "vm3").unwrap();
    assert_eq!((vm.priority, vm.shares), (9, 50));
    let e = apply_err(ConfigChange::AddVm {
        name: "vm3".into(),
        priority: Some(11),
        shares: None,
    });
    assert!(e.contains("priority 11 is out of range"), "{e}");
    let e = apply_err(ConfigChange::AddVm {
        name: "vm1".into(),
        priority: None,
        shares: None,
    });
    assert!(e.contains("already used by a vm"), "{e}");
    let c = apply(ConfigChange::DelVm { name: "vm1".into() }).unwrap();
    assert_eq!(vnic_names(&c), vec!["web"]);
    assert!(matches!(
        apply(ConfigChange::DelVm { name: "x".into() }),
        Err(CtlError::NotFound { kind: "vm", .. })
    ));
}

fn vnic(vm: &str, mac: &str, uplink: &str) -> ConfigChange {
    ConfigChange::AddVnic {
        vm: vm.into(),
        name: None,
        mac: mac.into(),
        socket: Some(format!("/tmp/{mac}.sock")),
        vhost_mode: None,
        devargs: None,
        uplink: uplink.into(),
        mtu: None,
    }
}

#[test]
fn vnic_mtu_is_unlimited_unless_set_within_its_range() {
    let c = apply(vnic("vm1", "02:00:00:00:00:10", "bond0")).unwrap();
    let v = &c.vm[0].vnic[2];
    assert_eq!(
        (v.mtu, v.frame_max()),
        (None, u32::MAX),
        "no limit by default"
    );
    let mut add = vnic("vm1", "02:00:00:00:00:10", "bond0");
    if let ConfigChange::AddVnic { mtu, .. } = &mut add {
        *mtu = Some(1500);
    }
    let c = apply(add).unwrap();
    assert_eq!(c.vm[0].vnic[2].frame_max(), 1518);
    let set = |c: &Config, value: &str| {
        apply_to_config(
            c,
            &ConfigChange::SetVnic {
                vnic: "vm1.2".into(),
                settings: vec![s("mtu", value)],
            },
        )
    };
    let c2 = set(&c, "9000").unwrap();
    assert_eq!(c2.vm[0].vnic[2].frame_max(), 9018);
    // An empty value takes the limit away again.
    assert_eq!(set(&c2, "").unwrap().vm[0].vnic[2].mtu, None);
    for bad in ["67", "9711"] {
        let e = set(&c, bad).unwrap_err().to_string();
        assert!(
            e.contains(&format!("vnic 'vm1.2': mtu {bad} is outside 68..=9710")),
            "{e}"
        );
    }
}

#[test]
fn add_vnic_names_and_rules() {
    let c = apply(vnic("vm1", "02:00:00:00:00:10", "bond0")).unwrap();
    assert_eq!(vnic_names(&c), vec!["vm1.0", "vm1.1", "vm1.2", "web"]);
    let v = &c.vm[0].vnic[2];
    assert_eq!(
        (v.vhost_mode.as_str(), v.spoof_check),
        ("server", true),
        "file defaults apply"
    );
    // A named vNIC; then a default name skips taken ones.
    let c2 = apply_to_config(
        &sample_config(),
        &ConfigChange::AddVnic {
            vm: "vm2".into(),
            name: Some("vm2.0".into()),
            mac: "02:00:00:00:00:11".into(),
            socket: None,
            vhost_mode: None,
            devargs: Some("net_null7".into()),
            uplink: "nic2".into(),
            mtu: None,
        },
    )
    .unwrap();
    let c3 = apply_to_config(&c2, &vnic("vm2", "02:00:00:00:00:12", "nic2")).unwrap();
    assert_eq!(
        vnic_names(&c3),
        vec!["vm1.0", "vm1.1", "web", "vm2.0", "vm2.1"]
    );
    // Rules.
    let e = apply_err(vnic("vm1", "02:00:00:00:00:01", "bond0"));
    assert!(e.contains("already used by vnic 'vm1.0'"), "{e}");
    let e = apply_err(vnic("vm1", "02:00:00:00:00:10", "nic0"));
    assert!(
        e.contains("member of bond 'bond0'") && e.contains("[0060]"),
        "[0060]: {e}"
    );
    let e = apply_err(vnic("vm1", "02:00:00:00:00:10", "nowhere"));
    assert!(e.contains("neither a bond nor a nic"), "{e}");
    let e = apply_err(ConfigChange::AddVnic {
        vm: "vm1".into(),
        name: None,
        mac: "02:00:00:00:00:10".into(),
        socket: Some("/tmp/a".into()),
        vhost_mode: Some("client".into()),
        devargs: Some("net_null5".into()),
        uplink: "bond0".into(),
        mtu: None,
    });
    assert!(e.contains("not both"), "{e}");
    let e = apply_err(ConfigChange::AddVnic {
        vm: "vm1".into(),
        name: Some("web".into()),
        mac: "02:00:00:00:00:10".into(),
        socket: None,
        vhost_mode: None,
        devargs: Some("net_null5".into()),
        uplink: "bond0".into(),
        mtu: None,
    });
    assert!(e.contains("'web'") && e.contains("already used"), "{e}");
    assert!(matches!(
        apply(vnic("vmX", "02:00:00:00:00:10", "bond0")),
        Err(CtlError::NotFound { kind: "vm", .. })
    ));
}

#[test]
fn del_vnic_keeps_other_names() {
    let c = apply(ConfigChange::DelVnic {
        name: "vm1.0".into(),
    })
    .unwrap();
    assert_eq!(
        vnic_names(&c),
        vec!["vm1.1", "web"],
        "vm1.1 must not become vm1.0"
    );
    assert_eq!(c.vm[0].vnic[0].uplink, "nic2");
    assert!(matches!(
        apply(ConfigChange::DelVnic {
            name: "vm1.7".into()
        }),
        Err(CtlError::NotFound { .. })
    ));
}

#[test]
fn set_vnic_uplink_rules() {
    let c = apply(ConfigChange::SetVnicUplink {
        vnic: "vm1.1".into(),
        uplink: "bond0".into(),
    })
    .unwrap();
    assert_eq!(c.vm[0].vnic[1].uplink, "bond0");
    // [0060]: never to a bonded NIC directly.
    let e = apply_err(ConfigChange::SetVnicUplink {
        vnic: "web".into(),
        uplink: "nic1".into(),
    });
    assert!(
        e.contains("vnic 'web'") && e.contains("member of bond 'bond0'") && e.contains("[0060]"),
        "{e}"
    );
    assert!(matches!(
        apply(ConfigChange::SetVnicUplink {
            vnic: "web".into(),
            uplink: "zz".into()
        }),
        Err(CtlError::NotFound { .. })
    ));
}

#[test]
fn add_bond_rules() {
    let base = add_nic3();
    let c = apply_to_config(
        &base,
        &ConfigChange::AddBond {
            name: "bond1".into(),
            members: vec!["nic3".into()],
            settings: vec![s("mode", "balance-tcp"), s("updelay_ms", "200")],
        },
    )
    .unwrap();
    let b = c.bond.iter().find(|b| b.name == "bond1").unwrap();
    assert_eq!(
        (b.mode.as_str(), b.updelay_ms, b.failback.as_str()),
        ("balance-tcp", 200, "immediate")
    );
    // [0060]: a NIC belongs to at most one bond.
    let e = apply_to_config(
        &base,
        &ConfigChange::AddBond {
            name: "bond1".into(),
            members: vec!["nic0".into()],
            settings: vec![],
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("already a member of bond 'bond0'") && e.contains("[0060]"),
        "{e}"
    );
    // [0061]: a NIC cannot join a bond while it is a vNIC's unbonded uplink.
    let e = apply_err(ConfigChange::AddBond {
        name: "bond1".into(),
        members: vec!["nic2".into()],
        settings: vec![],
    });
    assert!(
        e.contains("vnic 'vm1.1'") && e.contains("member of bond 'bond1'"),
        "[0061]: {e}"
    );
    let e = apply_err(ConfigChange::AddBond {
        name: "bond1".into(),
        members: vec![],
        settings: vec![],
    });
    assert!(e.contains("no members"), "{e}");
    let e = apply_err(ConfigChange::AddBond {
        name: "bond1".into(),
        members: vec!["nicZ".into()],
        settings: vec![],
    });
    assert!(e.contains("'nicZ' is not a configured"), "{e}");
}

#[test]
fn del_bond_rules() {
    let e = apply_err(ConfigChange::DelBond {
        name: "bond0".into(),
    });
    assert!(e.contains("uplink of vnic 'vm1.0'"), "{e}");
    let mut c = sample_config();
    for v in ["vm1.0", "web"] {
        c = apply_to_config(
            &c,
            &ConfigChange::SetVnicUplink {
                vnic: v.into(),
                uplink: "nic2".into(),
            },
        )
        .unwrap();
    }
    let c = apply_to_config(
        &c,
        &ConfigChange::DelBond {
            name: "bond0".into(),
        },
    )
    .unwrap();
    assert!(c.bond.is_empty());
    assert_eq!(
        c.uplink("nic0"),
        Some(crate::config::UplinkRef::Nic(0)),
        "its NICs become unbonded"
    );
}

#[test]
fn bond_member_rules() {
    let c = apply_to_config(
        &add_nic3(),
        &ConfigChange::AddBondMember {
            bond: "bond0".into(),
            nic: "nic3".into(),
        },
    )
    .unwrap();
    assert_eq!(c.bond[0].members, vec!["nic0", "nic1", "nic3"]);
    // [0061]
    let e = apply_err(ConfigChange::AddBondMember {
        bond: "bond0".into(),
        nic: "nic2".into(),
    });
    assert!(
        e.contains("vnic 'vm1.1'") && e.contains("member of bond 'bond0'"),
        "[0061]: {e}"
    );
    let e = apply_err(ConfigChange::AddBondMember {
        bond: "bond0".into(),
        nic: "nic0".into(),
    });
    assert!(e.contains("already a member"), "{e}");
    assert!(matches!(
        apply(ConfigChange::AddBondMember {
            bond: "bond0".into(),
            nic: "nicQ".into()
        }),
        Err(CtlError::NotFound { kind: "nic", .. })
    ));
    // Removing a member also removes it from active_order.
    let c = apply(ConfigChange::SetBond {
        bond: "bond0".into(),
        settings: vec![s("active_order", "nic1, nic0")],
    })
    .unwrap();
    assert_eq!(c.bond[0].active_order, vec!["nic1", "nic0"]);
    let c = apply_to_config(
        &c,
        &ConfigChange::DelBondMember {
            bond: "bond0".into(),
            nic: "nic1".into(),
        },
    )
    .unwrap();
    assert_eq!(
        (c.bond[0].members.clone(), c.bond[0].active_order.clone()),
        (vec!["nic0".to_string()], vec!["nic0".to_string()])
    );
    let e = apply_to_config(
        &c,
        &ConfigChange::DelBondMember {
            bond: "bond0".into(),
            nic: "nic0".into(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no members"), "{e}");
    let e = apply_err(ConfigChange::DelBondMember {
        bond: "bond0".into(),
        nic: "nic2".into(),
    });
    assert!(e.contains("not a member"), "{e}");
}

#[test]
fn set_bond_keys_are_typed_by_field() {
    let c = apply(ConfigChange::SetBond {
        bond: "bond0".into(),
        settings: vec![
            s("mode", "active-backup"),
            s("failback", "delayed"),
            s("failback_delay_ms", "500"),
            s("notify_switches", "no"),
            s("lacp_rate", "slow"),
            s("isolated_member", "nic1"),
            s("rebalance_threshold_pct", "80"),
        ],
    })
    .unwrap();
    let b = &c.bond[0];
    assert_eq!(b.mode, "active-backup");
    assert_eq!(
        (b.failback.as_str(), b.failback_delay_ms, b.notify_switches),
        ("delayed", 500, false)
    );
    assert_eq!(
        (b.isolated_member.as_deref(), b.rebalance_threshold_pct),
        (Some("nic1"), Some(80))
    );
    // Unset an optional key with an empty value.
    let c = apply_to_config(
        &c,
        &ConfigChange::SetBond {
            bond: "bond0".into(),
            settings: vec![s("isolated_member", "")],
        },
    )
    .unwrap();
    assert_eq!(c.bond[0].isolated_member, None);
    // A list that is empty now: its items' type comes from the field, numbers here
    // (they used to be read as strings and refused).
    assert!(c.bond[0].lacp_port_priorities.is_empty());
    let c = apply_to_config(
        &c,
        &ConfigChange::SetBond {
            bond: "bond0".into(),
            settings: vec![s("lacp_port_priorities", "100, 200")],
        },
    )
    .unwrap();
    assert_eq!(c.bond[0].lacp_port_priorities, vec![100, 200]);
    let e = apply_to_config(
        &c,
        &ConfigChange::SetBond {
            bond: "bond0".into(),
            settings: vec![s("lacp_port_priorities", "100, high")],
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'high' is not a number"), "{e}");

    let set = |k: &str, v: &str| {
        apply_err(ConfigChange::SetBond {
            bond: "bond0".into(),
            settings: vec![s(k, v)],
        })
    };
    let e = set("mode", "bogus");
    assert!(
        e.contains("bond 'bond0'") && e.contains("unknown bond mode"),
        "{e}"
    );
    assert!(set("failback", "sometimes").contains("failback policy"));
    assert!(set("lacp", "yes").contains("lacp = 'yes' must be one of off, active, passive"));
    assert!(set("failback_delay_ms", "soon").contains("not a number"));
    assert!(set("notify_switches", "maybe").contains("not true or false"));
    assert!(set("active_order", "nic2").contains("not a member"));
    assert!(set("isolated_member", "nic2").contains("not a member"));
    let e = set("rebalance_threshold_pct", "300");
    assert!(
        e.contains("rebalance_threshold_pct") || e.contains("300"),
        "{e}"
    );
    let e = set("modee", "vm-pinned");
    assert!(
        e.contains("unknown field `modee`") && e.contains("expected one of"),
        "{e}"
    );
    assert!(set("members", "nic0").contains("add-bond-member"));
    assert!(set("name", "bond9").contains("cannot be set"));
    assert!(matches!(
        apply(ConfigChange::SetBond {
            bond: "b".into(),
            settings: vec![]
        }),
        Err(CtlError::NotFound { kind: "bond", .. })
    ));
}

#[test]
fn set_dataplane_types_and_checks_every_key() {
    let c = apply(ConfigChange::SetDataplane {
        settings: vec![s("pmd_sleep_max_us", "250")],
    })
    .unwrap();
    assert_eq!(c.dataplane.pmd_sleep_max_us, 250);
    assert_eq!(c.dataplane.cores, sample_config().dataplane.cores);
    let e = apply_err(ConfigChange::SetDataplane {
        settings: vec![s("pmd_sleep_max_us", "10001")],
    });
    assert!(e.contains("at most 10000"), "{e}");
    let e = apply_err(ConfigChange::SetDataplane {
        settings: vec![s("pmd_sleep_max_us", "-1")],
    });
    assert!(e.contains("pmd_sleep_max_us"), "{e}");
    let e = apply_err(ConfigChange::SetDataplane {
        settings: vec![s("pmd_sleep", "5")],
    });
    assert!(
        e.contains("pmd_sleep_max_us"),
        "the known keys are listed: {e}"
    );
    // Keys that need a restart still pass here: the daemon refuses them, with the
    // file's path (tests/tests/pmd_sleep.rs).
    let c = apply(ConfigChange::SetDataplane {
        settings: vec![s("mbufs", "20000")],
    })
    .unwrap();
    assert_eq!(c.dataplane.mbufs, 20000);
    assert!(DATAPLANE_LIVE.contains(&"pmd_sleep_max_us"));
}

#[test]
fn set_vm_and_vnic() {
    let c = apply(ConfigChange::SetVm {
        vm: "vm2".into(),
        settings: vec![s("shares", "3000"), s("priority", "1")],
    })
    .unwrap();
    assert_eq!((c.vm[1].shares, c.vm[1].priority), (3000, 1));
    let c = apply(ConfigChange::SetVm {
        vm: "vm2".into(),
        settings: vec![s("qmp", "/run/qmp.sock")],
    })
    .unwrap();
    assert_eq!(c.vm[1].qmp.as_deref(), Some("/run/qmp.sock"));
    let e = apply_err(ConfigChange::SetVm {
        vm: "vm2".into(),
        settings: vec![s("priority", "11")],
    });
    assert!(e.contains("out of range"), "{e}");
    assert!(apply_err(ConfigChange::SetVm {
        vm: "vm2".into(),
        settings: vec![s("vnic", "x")]
    })
    .contains("add-vnic"));

    let c = apply(ConfigChange::SetVnic {
        vnic: "vm1.1".into(),
        settings: vec![
            s("shares", "10"),
            s("priority", "3"),
            s("spoof_check", "false"),
        ],
    })
    .unwrap();
    let v = &c.vm[0].vnic[1];
    assert_eq!(
        (v.shares, v.priority, v.spoof_check),
        (Some(10), Some(3), false)
    );
    let e = apply_err(ConfigChange::SetVnic {
        vnic: "vm1.1".into(),
        settings: vec![s("priority", "12")],
    });
    assert!(e.contains("priority out of range"), "{e}");
    let e = apply_err(ConfigChange::SetVnic {
        vnic: "vm1.1".into(),
        settings: vec![s("mac", "ff:ff:ff:ff:ff:ff")],
    });
    assert!(e.contains("not a unicast"), "{e}");
    let e = apply_err(ConfigChange::SetVnic {
        vnic: "web".into(),
        settings: vec![s("uplink", "nic2")],
    });
    assert!(e.contains("set-vnic-uplink"), "{e}");
    // A key the configuration schema does not (yet) have is refused by name.
    let e = apply_err(ConfigChange::SetVnic {
        vnic: "web".into(),
        settings: vec![s("no_such_knob", "5")],
    });
    assert!(e.contains("no_such_knob"), "{e}");
}

fn one_of_each() -> Vec<ConfigChange> {
    let st = vec![s("k", "v")];
    vec![
        ConfigChange::AddNic {
            name: "n".into(),
            devargs: "d".into(),
            speed_mbps: Some(1),
            mtu: Some(9000),
        },
        ConfigChange::SetNic {
            nic: "n".into(),
            settings: st.clone(),
        },
        ConfigChange::DelNic { name: "n".into() },
        ConfigChange::AddVm {
            name: "v".into(),
            priority: Some(1),
            shares: None,
        },
        ConfigChange::DelVm { name: "v".into() },
        vnic("v", "02:00:00:00:00:99", "u"),
        ConfigChange::DelVnic { name: "x".into() },
        ConfigChange::SetVnicUplink {
            vnic: "x".into(),
            uplink: "u".into(),
        },
        ConfigChange::AddBond {
            name: "b".into(),
            members: vec!["n".into()],
            settings: st.clone(),
        },
        ConfigChange::DelBond { name: "b".into() },
        ConfigChange::AddBondMember {
            bond: "b".into(),
            nic: "n".into(),
        },
        ConfigChange::DelBondMember {
            bond: "b".into(),
            nic: "n".into(),
        },
        ConfigChange::SetBond {
            bond: "b".into(),
            settings: st.clone(),
        },
        ConfigChange::SetVm {
            vm: "v".into(),
            settings: st.clone(),
        },
        ConfigChange::SetVnic {
            vnic: "x".into(),
            settings: st.clone(),
        },
        ConfigChange::SetDataplane { settings: st },
    ]
}

#[test]
fn changes_round_trip_through_the_wire_form() {
    let all = one_of_each();
    let mut names: Vec<String> = all.iter().map(ConfigChange::name).collect();
    names.dedup();
    assert_eq!(
        names,
        ConfigChange::NAMES.to_vec(),
        "NAMES lists every variant, in order"
    );
    for c in all {
        let back = ConfigChange::from_request(&c.name(), &c.args())
            .unwrap()
            .unwrap();
        assert_eq!(back, c);
        assert!(COMMANDS.contains(&c.name().as_str()));
    }
    assert!(ConfigChange::from_request("show", &Value::Null).is_none());
    let e = ConfigChange::from_request("add-nic", &json!({"name": "x"}))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("missing field `devargs`"), "{e}");
    let e = ConfigChange::from_request("del-nic", &json!({"name": "x", "extra": 1}))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("unknown field `extra`"), "{e}");
}

// ---- the server over a real socket ------------------------------------------------

struct Client {
    r: BufReader<UnixStream>,
    w: UnixStream,
    next: u64,
}

impl Client {
    fn connect(p: &Path) -> Client {
        let w = UnixStream::connect(p).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
            next: 1,
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> Option<Response> {
        self.w.write_all(bytes).ok()?;
        self.read()
    }

    fn read(&mut self) -> Option<Response> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad response line {line:?}: {e}")),
            ),
        }
    }

    fn call(&mut self, cmd: &str, args: Value) -> Response {
        self.next += 1;
        let req = json!({"version": 1, "id": self.next, "cmd": cmd, "args": args});
        let r = self.raw(format!("{req}\n").as_bytes()).expect("a response");
        assert_eq!(r.id, self.next, "response id echoes the request");
        r
    }

    fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let r = self.call(cmd, args);
        assert!(r.ok, "{cmd} failed: {:?}", r.error);
        assert!(r.error.is_none());
        r.result
    }

    fn err(&mut self, cmd: &str, args: Value) -> String {
        let r = self.call(cmd, args);
        assert!(!r.ok, "{cmd} should fail");
        assert_eq!(r.result, Value::Null);
        r.error.expect("error text")
    }
}

struct Fixture {
    _dir: TempDir,
    sock: PathBuf,
    api: Arc<FakeApi>,
    quit: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Fixture {
    fn new(persist: bool) -> Fixture {
        Self::with(persist, ServerOptions::default())
    }

    fn with(persist: bool, opts: ServerOptions) -> Fixture {
        let dir = TempDir::new("ctl");
        let sock = dir.path().join("sub/vswitchd.ctl");
        let cfg_path = dir.path().join("vswitch.toml");
        if persist {
            persist::write_atomic(&cfg_path, &sample_config()).unwrap();
        }
        let api = Arc::new(FakeApi::new(
            sample_config(),
            persist.then_some(cfg_path.as_path()),
        ));
        let quit = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handle = serve_with(&sock, &opts, api.clone(), quit.clone()).expect("serve");
        Fixture {
            _dir: dir,
            sock,
            api,
            quit,
            handle: Some(handle),
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.sock)
    }

    fn stop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn every_read_command_over_the_socket() {
    let f = Fixture::new(false);
    let mut c = f.client();
    let hello = c.ok("hello", Value::Null);
    assert_eq!(hello["protocol"], 1);

    let show: ShowTree = serde_json::from_value(c.ok("show", json!({}))).unwrap();
    assert_eq!(show, f.api.show().unwrap(), "the tree arrives intact");
    assert_eq!(
        show.uplinks
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        vec!["bond0", "nic2"]
    );
    assert_eq!(show.vms[0].vnics[0].uplink, "bond0");

    let cfg: Config = serde_json::from_value(c.ok("dump-config", Value::Null)).unwrap();
    assert_eq!(cfg, sample_config());

    let st: StatsShow = serde_json::from_value(c.ok("stats", json!({}))).unwrap();
    assert_eq!(st.ports.len(), 6);
    let st: StatsShow = serde_json::from_value(c.ok("stats", json!({"port": "web"}))).unwrap();
    assert_eq!((st.ports.len(), st.ports[0].kind.as_str()), (1, "vnic"));
    assert_eq!(c.err("stats", json!({"port": "zz"})), "no port named 'zz'");

    let pmd: Vec<PmdStats> = serde_json::from_value(c.ok("pmd-stats-show", Value::Null)).unwrap();
    assert_eq!(pmd.iter().map(|p| p.core).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(c.ok("pmd-stats-clear", Value::Null), json!({"workers": 2}));
    let rxq: Vec<PmdRxqShow> = serde_json::from_value(c.ok("pmd-rxq-show", Value::Null)).unwrap();
    assert_eq!(rxq.iter().map(|p| p.core).collect::<Vec<_>>(), vec![1, 2]);
    let polled: usize = rxq.iter().map(|p| p.ports.len()).sum();
    assert_eq!(polled, 6, "every port polled once: {rxq:?}");
    for p in &rxq {
        let share: f64 = p.ports.iter().map(|q| q.rx_share_pct).sum();
        assert!((share - 100.0).abs() < 1e-9, "{p:?}");
    }

    let bonds: Vec<UplinkShow> = serde_json::from_value(c.ok("bond/show", Value::Null)).unwrap();
    assert_eq!(bonds.len(), 1);
    assert_eq!(bonds[0].members[0].pinned_vnics, vec!["vm1.0"]);
    assert_eq!(bonds[0].members[1].pinned_vnics, vec!["web"]);
    let one: Vec<UplinkShow> =
        serde_json::from_value(c.ok("bond/show", json!({"bond": "bond0"}))).unwrap();
    assert_eq!(one, bonds);
    assert_eq!(
        c.err("bond/show", json!({"bond": "nic2"})),
        "no bond named 'nic2'"
    );

    let lacp: Vec<LacpShow> = serde_json::from_value(c.ok("lacp/show", Value::Null)).unwrap();
    assert_eq!((lacp.len(), lacp[0].negotiated), (1, true));

    assert_eq!(
        c.ok("bond/failback", json!({"bond": "bond0"})),
        json!({"moved": 2})
    );
    assert_eq!(f.api.failbacks.load(Ordering::Relaxed), 1);
    assert!(c
        .err("bond/failback", Value::Null)
        .contains("missing \"bond\""));

    let bw: Vec<VnicShow> = serde_json::from_value(c.ok("vnic/bandwidth", Value::Null)).unwrap();
    assert_eq!(bw.len(), 3);
    // vm1.0 (2000 shares) and web (1000) share bond0's 20 Gb/s 2:1.
    assert!(
        bw[0].entitled_bps.abs_diff(2 * bw[2].entitled_bps) <= 2,
        "{bw:?}"
    );
    let bw: Vec<VnicShow> =
        serde_json::from_value(c.ok("vnic/bandwidth", json!({"vnic": "web"}))).unwrap();
    assert_eq!(bw[0].shaping.map(|s| s.peak_bps), Some(200_000_000));
}

#[test]
fn every_change_over_the_socket_and_persisted() {
    let f = Fixture::new(true);
    let cfg_path = f._dir.path().join("vswitch.toml");
    let mut c = f.client();
    let steps: Vec<(&str, Value)> = vec![
        (
            "add-nic",
            json!({"name": "nic3", "devargs": "net_null3", "speed_mbps": 1000}),
        ),
        ("add-nic", json!({"name": "nic4", "devargs": "net_null4"})),
        (
            "add-bond",
            json!({"name": "bond1", "members": ["nic3"], "settings": [["mode", "balance-tcp"]]}),
        ),
        ("add-bond-member", json!({"bond": "bond1", "nic": "nic4"})),
        ("del-bond-member", json!({"bond": "bond1", "nic": "nic4"})),
        (
            "set-bond",
            json!({"bond": "bond0", "settings": [["failback", "manual"], ["updelay_ms", "100"]]}),
        ),
        ("add-vm", json!({"name": "vm3", "priority": 2})),
        (
            "add-vnic",
            json!({"vm": "vm3", "mac": "02:00:00:00:00:30", "socket": "/tmp/vm3.sock", "vhost_mode": "client", "uplink": "bond1"}),
        ),
        (
            "set-vnic-uplink",
            json!({"vnic": "vm3.0", "uplink": "nic4"}),
        ),
        (
            "set-vm",
            json!({"vm": "vm3", "settings": [["shares", "500"]]}),
        ),
        (
            "set-vnic",
            json!({"vnic": "vm3.0", "settings": [["priority", "9"]]}),
        ),
        ("del-vnic", json!({"name": "vm1.0"})),
        ("del-vm", json!({"name": "vm2"})),
        ("del-bond", json!({"name": "bond1"})),
        ("del-nic", json!({"name": "nic3"})),
    ];
    for (cmd, args) in steps {
        assert_eq!(c.ok(cmd, args), json!({}), "{cmd}");
    }
    let now = f.api.config().unwrap();
    // The file on disk is exactly the accepted state (a restart comes back with it).
    assert_eq!(persist::load(&cfg_path).unwrap(), now);
    assert_eq!(now.bond[0].failback, "manual");
    let vm3 = now.vm.iter().find(|v| v.name == "vm3").unwrap();
    assert_eq!(
        (
            vm3.shares,
            vm3.vnic[0].priority,
            vm3.vnic[0].uplink.as_str()
        ),
        (500, Some(9), "nic4")
    );
    assert_eq!(vnic_names(&now), vec!["vm1.1", "vm3.0"]);

    // A refused change changes nothing, in memory or on disk, and says why.
    let before = std::fs::read(&cfg_path).unwrap();
    let e = c.err("add-bond-member", json!({"bond": "bond0", "nic": "nic2"}));
    assert!(
        e.contains("vnic 'vm1.1'") && e.contains("member of bond 'bond0'"),
        "{e}"
    );
    let e = c.err(
        "set-bond",
        json!({"bond": "bond0", "settings": [["mode", "fastest"]]}),
    );
    assert!(e.contains("unknown bond mode \"fastest\""), "{e}");
    let e = c.err(
        "add-vnic",
        json!({"vm": "vm3", "mac": "02:00:00:00:00:31", "uplink": "nic4"}),
    );
    assert!(e.contains("give a vhost-user socket or a devargs"), "{e}");
    let e = c.err("add-nic", json!({"name": "x"}));
    assert!(
        e.starts_with("bad arguments: add-nic: missing field `devargs`"),
        "{e}"
    );
    assert_eq!(std::fs::read(&cfg_path).unwrap(), before);
    assert_eq!(f.api.config().unwrap(), now);
}

#[test]
fn garbage_gets_error_replies_and_the_connection_stays_usable() {
    let f = Fixture::new(false);
    let mut c = f.client();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"hello\n", "not valid JSON"),
        (b"\xff\xfe\x00\n", "not UTF-8"),
        (b"[1,2,3]\n", "no \"version\""),
        (
            b"{\"version\":2,\"id\":5,\"cmd\":\"show\"}\n",
            "unsupported protocol version 2",
        ),
        (b"{\"version\":1,\"id\":6}\n", "malformed request"),
        (
            b"{\"version\":1,\"id\":7,\"cmd\":\"show\",\"args\":{},\"x\":1}\n",
            "unknown field `x`",
        ),
        (
            b"{\"version\":1,\"id\":8,\"cmd\":\"reboot\"}\n",
            "unknown command 'reboot'",
        ),
        (
            b"{\"version\":1,\"id\":9,\"cmd\":\"show\",\"args\":{\"verbose\":true}}\n",
            "bad arguments: show",
        ),
        (
            b"{\"version\":1,\"id\":10,\"cmd\":\"stats\",\"args\":[1]}\n",
            "bad arguments: stats",
        ),
        (
            b"{\"version\":1,\"id\":11,\"cmd\":\"set-bond\",\"args\":\"x\"}\n",
            "bad arguments: set-bond",
        ),
        (
            b"{\"version\":1,\"id\":18446744073709551616,\"cmd\":\"show\"}\n",
            "malformed request",
        ),
    ];
    for (bytes, want) in cases {
        let r = c.raw(bytes).expect("a reply, not a hang-up");
        assert!(!r.ok);
        let e = r.error.unwrap();
        assert!(
            e.contains(want),
            "{:?}: {e}",
            String::from_utf8_lossy(bytes)
        );
        assert!(!e.contains('\n'));
    }
    // The id is echoed when it could be read.
    assert_eq!(
        c.raw(b"{\"version\":3,\"id\":42,\"cmd\":\"show\"}\n")
            .unwrap()
            .id,
        42
    );
    // Blank lines are ignored; several requests in one write are answered in order.
    let two = b"\n\r\n{\"version\":1,\"id\":100,\"cmd\":\"hello\"}\n{\"version\":1,\"id\":101,\"cmd\":\"hello\"}\n";
    assert_eq!(c.raw(two).unwrap().id, 100);
    assert_eq!(c.read().unwrap().id, 101);
    assert!(c.ok("hello", Value::Null)["protocol"] == 1);
}

#[test]
fn oversized_line_is_refused_and_others_keep_being_served() {
    let f = Fixture::new(false);
    let mut other = f.client();
    let mut c = f.client();
    // A line just under the cap is read (and refused as JSON, not as too long).
    let mut ok_line = vec![b' '; MAX_LINE - 2];
    ok_line[0] = b'x';
    ok_line.push(b'\n');
    let r = c.raw(&ok_line).unwrap();
    assert!(r.error.unwrap().contains("not valid JSON"));
    // One byte over: refused, and the connection is closed.
    let big = vec![b'a'; MAX_LINE + 10];
    let r = c.raw(&big).unwrap();
    assert!(r.error.unwrap().contains("longer than 65536 bytes"));
    assert!(
        c.read().is_none(),
        "connection closed after an oversized line"
    );
    // The same with no newline at all.
    let mut c = f.client();
    let r = c.raw(&vec![b'{'; MAX_LINE]).unwrap();
    assert!(r.error.unwrap().contains("longer than"));
    assert_eq!(other.ok("hello", Value::Null)["daemon"], "vswitchd");
}

#[test]
fn half_a_line_then_disconnect() {
    let f = Fixture::new(false);
    for _ in 0..5 {
        let mut s = UnixStream::connect(&f.sock).unwrap();
        s.write_all(b"{\"version\":1,\"id\":1,\"cmd\":\"sh")
            .unwrap();
        drop(s);
    }
    let mut s = UnixStream::connect(&f.sock).unwrap();
    s.write_all(b"{\"version\":1,").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "a partial line is discarded, not answered");
    assert!(f.client().ok("show", Value::Null)["uplinks"].is_array());
}

#[test]
fn silent_clients_time_out_and_the_client_cap_holds() {
    let idle = Duration::from_millis(1000);
    let opts = ServerOptions {
        max_clients: 2,
        idle_timeout: idle,
        ..ServerOptions::default()
    };
    let f = Fixture::with(false, opts);
    let start = Instant::now();
    let mut a = UnixStream::connect(&f.sock).unwrap();
    let mut b = f.client();
    b.ok("hello", Value::Null);
    let mut third = f.client();
    let r = third.read().expect("an error line");
    assert!(r.error.unwrap().contains("too many control clients (2)"));
    assert!(
        start.elapsed() < idle,
        "the cap was checked while both clients were live"
    );
    // The silent client is dropped after the idle timeout, not before.
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        a.read(&mut buf).unwrap(),
        0,
        "server closed the idle connection"
    );
    assert!(
        start.elapsed() >= idle && start.elapsed() < idle * 5,
        "{:?}",
        start.elapsed()
    );
    // Once the slots are free again a new client is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = f.client();
        let r = c.raw(b"{\"version\":1,\"id\":9,\"cmd\":\"hello\"}\n");
        if r.as_ref().is_some_and(|r| r.ok && r.id == 9) {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// With every slot taken, a new client is served: the connection idle the longest
/// is told why and closed. A trickle of blank lines is not activity: it neither keeps
/// a connection past the idle timeout nor protects it from eviction.
#[test]
fn idle_clients_make_room_and_a_trickle_is_not_activity() {
    let opts = ServerOptions {
        max_clients: 2,
        idle_timeout: Duration::from_millis(1500),
        evict_after: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let f = Fixture::with(false, opts);
    let start = Instant::now();
    // `a` sends a blank line every 50 ms and never a request.
    let a = UnixStream::connect(&f.sock).unwrap();
    let mut a_w = a.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        while a_w.write_all(b"\n").is_ok() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut b = f.client();
    b.ok("hello", Value::Null);
    std::thread::sleep(Duration::from_millis(300));
    // Both slots taken; `a` has been idle the longest.
    let mut c = f.client();
    assert_eq!(c.ok("hello", Value::Null), b.ok("hello", Value::Null));
    let mut a_r = BufReader::new(a);
    a_r.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    a_r.read_line(&mut line).unwrap();
    let r: Response = serde_json::from_str(&line).unwrap();
    assert!(r.error.unwrap().contains("idle the longest"), "{line}");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "evicted only by the idle timeout"
    );
    trickle.join().unwrap();
    // `b` and `c` both made requests within 200 ms: a third is refused.
    b.ok("hello", Value::Null);
    c.ok("hello", Value::Null);
    let mut d = f.client();
    let r = d.read().expect("an error line");
    assert!(r.error.unwrap().contains("all of them active"));
    // A client that only trickles blank lines is closed after the idle timeout.
    let f = Fixture::with(
        false,
        ServerOptions {
            idle_timeout: Duration::from_millis(500),
            ..ServerOptions::default()
        },
    );
    let mut t = UnixStream::connect(&f.sock).unwrap();
    t.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let begun = Instant::now();
    let mut buf = [0u8; 16];
    loop {
        assert!(
            begun.elapsed() < Duration::from_secs(5),
            "a trickle kept the connection"
        );
        if t.write_all(b"\n").is_err() {
            break;
        }
        match t.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => panic!("a blank line was answered"),
            Err(_) => std::thread::sleep(Duration::from_millis(30)),
        }
    }
    assert!(
        begun.elapsed() >= Duration::from_millis(500),
        "{:?}",
        begun.elapsed()
    );
}

#[test]
fn a_panicking_api_call_is_an_error_reply() {
    let f = Fixture::new(false);
    let mut c = f.client();
    f.api.panic_in_show.store(true, Ordering::Relaxed);
    assert!(c.err("show", Value::Null).contains("internal error"));
    f.api.panic_in_show.store(false, Ordering::Relaxed);
    assert!(c.ok("show", Value::Null)["vms"].is_array());
}

#[test]
fn socket_file_lifecycle() {
    let mut f = Fixture::new(false);
    let md = std::fs::metadata(&f.sock).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    // A second server on a live socket is refused.
    let api: Arc<dyn ControlApi> = f.api.clone();
    let e = super::server::serve(&f.sock, 0o660, None, api.clone(), Arc::default()).unwrap_err();
    assert!(matches!(e, CtlError::InUse(_)), "{e}");
    assert!(e.to_string().contains("another vswitchd"));
    f.stop();
    assert!(!f.sock.exists(), "socket removed on exit");

    // A stale socket (nobody listening) is replaced.
    let dir = TempDir::new("stale");
    let p = dir.path().join("s.ctl");
    drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
    assert!(p.exists());
    let (quit, h) = spawn_server(&p, api.clone());
    assert_eq!(Client::connect(&p).ok("hello", Value::Null)["protocol"], 1);
    quit.store(true, Ordering::Relaxed);
    h.join().unwrap();

    // Something that is not a socket is never removed.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "keep me").unwrap();
    let e = super::server::serve(&plain, 0o660, None, api.clone(), Arc::default()).unwrap_err();
    assert!(e.to_string().contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");

    // Group by numeric gid (our own, so chown is allowed); unknown group names fail.
    let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(dir.path()).unwrap());
    let g = dir.path().join("g.ctl");
    let quit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h =
        super::server::serve(&g, 0o600, Some(&gid.to_string()), api.clone(), quit.clone()).unwrap();
    let md = std::fs::metadata(&g).unwrap();
    assert_eq!(
        (
            md.permissions().mode() & 0o777,
            std::os::unix::fs::MetadataExt::gid(&md)
        ),
        (0o600, gid)
    );
    quit.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let e = super::server::serve(&g, 0o660, Some("no-such-group-xyz"), api, Arc::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("no group named 'no-such-group-xyz'"),
        "{e}"
    );
    assert!(!g.exists(), "a failed start leaves no socket behind");
}

fn shared_server() -> &'static PathBuf {
    static S: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = S.get_or_init(|| {
        let dir = TempDir::new("fuzz");
        let p = dir.path().join("fuzz.ctl");
        let api = Arc::new(FakeApi::new(sample_config(), None));
        let (quit, h) = spawn_server(&p, api);
        // Runs for the rest of the test process.
        std::mem::forget((quit, h));
        (dir, p)
    });
    p
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn request_like() -> impl Strategy<Value = Vec<u8>> {
        let cmd = prop::sample::select(COMMANDS.to_vec());
        (
            cmd,
            any::<u64>(),
            prop::collection::vec(any::<(String, String)>(), 0..4),
            0u32..3,
        )
            .prop_map(|(cmd, id, kv, v)| {
                let args: serde_json::Map<String, Value> =
                    kv.into_iter().map(|(k, x)| (k, Value::String(x))).collect();
                format!(
                    "{}\n",
                    json!({"version": v, "id": id, "cmd": cmd, "args": args})
                )
                .into_bytes()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Arbitrary bytes: every line gets one parseable reply and the server keeps
        /// answering valid requests on the same and on new connections.
        #[test]
        fn arbitrary_bytes(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6)) {
            let p = shared_server();
            let mut c = Client::connect(p);
            for l in &lines {
                let mut l: Vec<u8> = l.iter().copied().filter(|&b| b != b'\n').collect();
                let blank = l.iter().all(u8::is_ascii_whitespace);
                l.push(b'\n');
                if blank {
                    c.w.write_all(&l).unwrap();
                    continue;
                }
                let r = c.raw(&l).expect("a reply");
                prop_assert!(r.ok || r.error.is_some());
            }
            prop_assert_eq!(c.ok("hello", Value::Null)["protocol"].clone(), json!(1));
            prop_assert!(Client::connect(p).ok("hello", Value::Null).is_object());
        }

        /// Request-shaped garbage (real command names, random arguments and versions).
        #[test]
        fn random_requests(reqs in prop::collection::vec(request_like(), 1..6)) {
            let p = shared_server();
            let mut c = Client::connect(p);
            for r in &reqs {
                let resp = c.raw(r).expect("a reply");
                prop_assert!(resp.ok != resp.error.is_some());
            }
            prop_assert!(c.ok("show", Value::Null)["uplinks"].is_array());
        }
    }
}

// ---- persistence ------------------------------------------------------------------

#[test]
fn write_atomic_round_trips_and_keeps_the_mode() {
    let dir = TempDir::new("persist");
    let p = dir.path().join("vswitch.toml");
    let cfg = apply(ConfigChange::SetBond {
        bond: "bond0".into(),
        settings: vec![s("active_order", "nic1,nic0")],
    })
    .unwrap();
    persist::write_atomic(&p, &cfg).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(persist::load(&p).unwrap(), cfg);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    persist::write_atomic(&p, &sample_config()).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(persist::load(&p).unwrap(), sample_config());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("vswitch.toml")],
        "no temp file left behind"
    );
}

#[test]
fn a_crash_mid_write_leaves_the_old_file() {
    let dir = TempDir::new("crash");
    let p = dir.path().join("vswitch.toml");
    persist::write_atomic(&p, &sample_config()).unwrap();
    // Simulated kill -9 between write and rename: a half-written temp file remains.
    let text = persist::render(&add_nic3()).unwrap();
    let tmp = dir.path().join(".vswitch.toml.tmp.99999");
    std::fs::write(&tmp, &text[..text.len() / 2]).unwrap();
    assert_eq!(
        persist::load(&p).unwrap(),
        sample_config(),
        "the file is the last complete write"
    );
    assert_eq!(persist::remove_stale_temps(&p), 1);
    assert!(!tmp.exists());
    persist::write_atomic(&p, &add_nic3()).unwrap();
    assert_eq!(persist::load(&p).unwrap(), add_nic3());
}

#[test]
fn a_corrupted_file_is_refused_with_its_line() {
    let dir = TempDir::new("corrupt");
    let p = dir.path().join("vswitch.toml");
    persist::write_atomic(&p, &sample_config()).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let bad = text.replacen("mode = \"vm-pinned\"", "mode = \"vm-pinned", 1);
    assert_ne!(bad, text);
    std::fs::write(&p, &bad).unwrap();
    let expect = bad
        .lines()
        .position(|l| l.contains("mode = \"vm-pinned"))
        .unwrap()
        + 1;
    match persist::load(&p).unwrap_err() {
        ConfigError::Parse { path, line, .. } => {
            assert_eq!(path, p.display().to_string());
            assert_eq!(line, expect);
        }
        other => panic!("{other}"),
    }
    // Truncation at a random point (a torn non-atomic write) is refused too.
    std::fs::write(&p, &text[..text.find("[[vm.vnic]]").unwrap() + 5]).unwrap();
    let e = persist::load(&p).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:", p.display())), "{e}");
}

// ---- Prometheus -------------------------------------------------------------------

#[test]
fn prometheus_render() {
    let api = FakeApi::new(sample_config(), None);
    api.set_link("nic1", false);
    let text = prometheus::collect(&api).unwrap();
    for want in [
        "# TYPE vswitch_port_rx_packets_total counter",
        "vswitch_port_rx_packets_total{port=\"nic0\",kind=\"nic\"} 1000",
        "vswitch_port_tx_bytes_total{port=\"web\",kind=\"vnic\"} 3840",
        "vswitch_port_drops_total{port=\"vm1.0\",kind=\"vnic\",reason=\"over_share\"} 2",
        "vswitch_port_drops_total{port=\"nic0\",kind=\"nic\",reason=\"no_usable_member\"} 1",
        "vswitch_member_usable{uplink=\"bond0\",member=\"nic1\"} 0",
        "vswitch_member_state{uplink=\"bond0\",member=\"nic1\",state=\"disabled\",reason=\"link down\"} 1",
        "vswitch_uplink_degraded{uplink=\"bond0\"} 1",
        "vswitch_lacp_member_enabled{bond=\"bond0\",member=\"nic1\"} 0",
        "vswitch_lacp_negotiated{bond=\"bond0\"} 1",
        "vswitch_vnic_member{vnic=\"web\",uplink=\"bond0\",member=\"nic0\"} 1",
        "vswitch_vnic_entitled_bps{vnic=\"vm1.0\",vm=\"vm1\",uplink=\"bond0\"} 6666666666",
        "vswitch_pmd_busy_ratio{worker=\"0\",core=\"1\"} 0.25",
        "vswitch_snapshot_generation 3",
    ] {
        assert!(text.lines().any(|l| l == want), "missing {want:?} in\n{text}");
    }
    // Every family has exactly one HELP and TYPE, before its samples.
    let mut seen = std::collections::HashSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            assert!(
                seen.insert(rest.split(' ').next().unwrap().to_string()),
                "duplicate TYPE {l}"
            );
        } else if !l.starts_with('#') {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(seen.contains(name), "sample before its TYPE: {l}");
        }
    }
}

#[test]
fn prometheus_label_escaping() {
    let mut st = StatsShow::default();
    st.ports.push(PortStatsShow {
        name: "a\"b\\c\nd".into(),
        kind: "nic".into(),
        ..Default::default()
    });
    let text = prometheus::render(&ShowTree::default(), &st, &[], &[]);
    assert!(text.contains("port=\"a\\\"b\\\\c\\nd\""), "{text}");
}

fn http(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn prometheus_http() {
    let api: Arc<dyn ControlApi> = Arc::new(FakeApi::new(sample_config(), None));
    let quit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr, h) = prometheus::serve("127.0.0.1:0".parse().unwrap(), api, quit.clone()).unwrap();
    let r = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4"));
    let body = r.split("\r\n\r\n").nth(1).unwrap();
    let len: usize = r
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), len);
    assert!(body.contains("vswitch_port_rx_packets_total{port=\"nic2\",kind=\"nic\"} 3000"));
    assert!(http(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(
        http(addr, &format!("GET /{} HTTP/1.1\r\n", "a".repeat(10_000)))
            .starts_with("HTTP/1.1 431")
    );
    quit.store(true, Ordering::Relaxed);
    h.join().unwrap();
}

/// A panicking API call answers 500; the exporter goes on serving (its thread used to
/// die with the panic).
#[test]
fn prometheus_survives_a_panicking_api() {
    let fake = Arc::new(FakeApi::new(sample_config(), None));
    let api: Arc<dyn ControlApi> = fake.clone();
    let quit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr, h) = prometheus::serve("127.0.0.1:0".parse().unwrap(), api, quit.clone()).unwrap();
    fake.panic_in_show.store(true, Ordering::Relaxed);
    let r = http(addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 500"), "{r}");
    fake.panic_in_show.store(false, Ordering::Relaxed);
    let r = http(addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    quit.store(true, Ordering::Relaxed);
    h.join().unwrap();
}

#[test]
fn pmd_stats_shares_and_sleep_times_from_a_workers_counters() {
    let w = WorkerStats::default();
    // Nothing counted yet: zeros, no NaN.
    let p = PmdStats::from_counts(0, 1, &PmdCounts::read(&w), 0, 0);
    assert_eq!((p.busy_pct, p.cycles_per_pkt, p.sleep_pct), (0.0, 0.0, 0.0));
    assert_eq!((p.sleep_us, p.sleep_us_per_iteration), (0, 0.0));
    w.busy_cycles.store(300, Ordering::Relaxed);
    w.idle_cycles.store(700, Ordering::Relaxed);
    w.sleep_cycles.store(500, Ordering::Relaxed);
    w.sleep_iterations.store(5, Ordering::Relaxed);
    w.ports[2].rx_pkts.store(150, Ordering::Relaxed);
    // A 1 MHz clock: a cycle is a µs.
    let p = PmdStats::from_counts(0, 1, &PmdCounts::read(&w), 1_000_000, 50);
    assert_eq!(
        (p.busy_pct, p.cycles_per_pkt, p.sleep_pct),
        (30.0, 2.0, 50.0)
    );
    assert_eq!(
        (
            p.sleep_iterations,
            p.sleep_us,
            p.sleep_us_per_iteration,
            p.sleep_max_us
        ),
        (5, 500, 100.0, 50)
    );
}

#[test]
fn pmd_counts_since_a_baseline_count_only_what_came_after() {
    let base = PmdCounts {
        iterations: 100,
        busy_iterations: 40,
        busy_cycles: 4_000,
        idle_cycles: 6_000,
        rx_pkts: 400,
        sleep_iterations: 10,
        sleep_cycles: 1_000,
    };
    let now = PmdCounts {
        iterations: 300,
        busy_iterations: 140,
        busy_cycles: 14_000,
        idle_cycles: 16_000,
        rx_pkts: 1_400,
        sleep_iterations: 10,
        sleep_cycles: 1_000,
    };
    let d = now.since(&base);
    assert_eq!(
        (d.iterations, d.busy_iterations, d.rx_pkts),
        (200, 100, 1_000)
    );
    let p = PmdStats::from_counts(0, 1, &d, 1_000_000, 0);
    // 10 000 busy of 20 000 cycles, 10 cycles a frame, no sleep since the baseline.
    assert_eq!(
        (p.busy_pct, p.cycles_per_pkt, p.sleep_iterations),
        (50.0, 10.0, 0)
    );
    // A counter below its baseline (a worker restarted) counts 0, not a wrap.
    assert_eq!(base.since(&now), PmdCounts::default());
}
