//! Runs the built `vsctl` binary against the daemon's real control server
//! (`vswitch::ctl::server`) backed by `FakeApi`, and against sockets that are not a
//! switch.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::Value;
use vswitch::ctl::testing::{sample_config, spawn_server, FakeApi, TempDir};
use vswitch::ctl::ControlApi;

struct Daemon {
    dir: TempDir,
    sock: PathBuf,
    api: Arc<FakeApi>,
    quit: Arc<AtomicBool>,
    h: Option<JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = TempDir::new("vsctl");
        let sock = dir.path().join("vswitchd.ctl");
        let cfg = dir.path().join("vswitch.toml");
        vswitch::ctl::persist::write_atomic(&cfg, &sample_config()).unwrap();
        let api = Arc::new(FakeApi::new(sample_config(), Some(&cfg)));
        let (quit, h) = spawn_server(&sock, api.clone());
        Daemon {
            dir,
            sock,
            api,
            quit,
            h: Some(h),
        }
    }

    fn vsctl(&self, args: &[&str]) -> Output {
        vsctl_at(&self.sock, args)
    }

    /// Runs vsctl, expecting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.vsctl(args);
        assert!(
            o.status.success(),
            "vsctl {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--format", "json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Runs vsctl, expecting failure; returns the single stderr line.
    fn fails(&self, args: &[&str]) -> String {
        failure(self.vsctl(args))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(h) = self.h.take() {
            let _ = h.join();
        }
    }
}

fn vsctl_at(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vsctl"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .env_remove("VSWITCH_SOCKET")
        .output()
        .unwrap()
}

fn failure(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(o.stdout.is_empty());
    let e = String::from_utf8(o.stderr).unwrap();
    assert_eq!(e.lines().count(), 1, "one line: {e:?}");
    assert!(e.starts_with("vsctl: ") && e.ends_with('\n'), "{e:?}");
    e.trim_end().to_string()
}

#[test]
fn show_text_and_json() {
    let d = Daemon::start();
    let t = d.ok(&["show"]);
    for want in [
        "vswitchd (snapshot generation 3)",
        "    bond bond0: mode vm-pinned, failback immediate, lacp active",
        "      member nic0: enabled, link up, 10000 Mb/s, mtu 1500; carries vm1.0",
        "    nic nic2 (unbonded): link up, 1000 Mb/s, mtu 1500",
        "    vm vm1: priority 7, shares 2000",
        "      vnic vm1.0: mac 02:00:00:00:00:01, vhost-user server /tmp/vm1.sock, link up",
        "        uplink bond0 (on nic0), shares 2000, priority 7, reservation -, shaping -",
    ] {
        assert!(t.lines().any(|l| l == want), "missing {want:?} in\n{t}");
    }
    let j = d.json(&["show"]);
    assert_eq!(j, serde_json::to_value(d.api.show().unwrap()).unwrap());
    d.api.set_link("nic1", false);
    let t = d.ok(&["show"]);
    assert!(
        t.contains("lacp active, DEGRADED")
            && t.contains("member nic1: disabled (link down), link down"),
        "{t}"
    );
}

#[test]
fn every_show_command_in_json() {
    let d = Daemon::start();
    assert_eq!(d.json(&["bond/show"]).as_array().unwrap().len(), 1);
    assert_eq!(
        d.json(&["bond/show", "bond0"])[0]["members"][1]["pinned_vnics"][0],
        "web"
    );
    assert_eq!(d.json(&["lacp/show"])[0]["bond"], "bond0");
    assert_eq!(d.json(&["stats"])["ports"].as_array().unwrap().len(), 6);
    assert_eq!(
        d.json(&["stats", "--port", "nic2"])["ports"][0]["rx_pkts"],
        3000
    );
    assert_eq!(d.json(&["pmd-stats-show"])[1]["core"], 2);
    assert_eq!(d.json(&["pmd-rxq-show"])[0]["ports"][0]["port"], "nic0");
    assert_eq!(
        d.json(&["vnic/bandwidth", "web"])[0]["shaping"]["peak_bps"],
        200_000_000
    );
    assert_eq!(d.json(&["dump-config"])["bond"][0]["name"], "bond0");
    assert_eq!(d.json(&["bond/failback", "bond0"])["moved"], 2);
}

#[test]
fn text_of_show_commands() {
    let d = Daemon::start();
    let t = d.ok(&["bond/show", "bond0"]);
    assert!(
        t.starts_with(
            "---- bond0 ----\nbond_mode: vm-pinned\nfailback: immediate\nlacp_status: active\n"
        ),
        "{t}"
    );
    assert!(t.contains("\nmember nic1: enabled, link up, 10000 Mb/s, mtu 1500\n  usable: yes\n  tx: 4000 packets, 256000 bytes\n"), "{t}");
    assert!(t.contains("  vnics: web\n"), "{t}");
    let t = d.ok(&["stats"]);
    assert!(
        t.starts_with("PORT   KIND  UPLINK  LINK  RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  DROPS\n"),
        "{t}"
    );
    assert!(
        t.contains("\ndrops by reason:\n") && t.contains("  vm1.0: over_share=2 spoofed=1\n"),
        "{t}"
    );
    let t = d.ok(&["stats", "--port", "web"]);
    assert_eq!(t.lines().count(), 5, "{t}");
    let t = d.ok(&["pmd-stats-show"]);
    assert!(
        t.contains("pmd thread worker 1 core 2:\n  iterations: 2000000 (busy 250000)\n"),
        "{t}"
    );
    assert!(
        t.contains("  busy cycles: 25.0 %\n  avg cycles per packet: 180.5\n"),
        "{t}"
    );
    let t = d.ok(&["vnic/bandwidth"]);
    assert!(
        t.lines()
            .next()
            .unwrap()
            .starts_with("VNIC   VM   UPLINK  SHARES  PRIO  RESERVED"),
        "{t}"
    );
    assert!(
        t.contains("web    vm2  bond0   1000    5     -         100.0 Mb/s/200.0 Mb/s  6.67 Gb/s"),
        "{t}"
    );
    assert!(d.ok(&["lacp/show"]).starts_with("---- bond0 ----"));
    assert_eq!(
        d.ok(&["bond/failback", "bond0"]),
        "2 vNIC(s) moved back to their home members\n"
    );
}

#[test]
fn changes_are_applied_and_persisted() {
    let d = Daemon::start();
    let cmds: &[&[&str]] = &[
        &["add-nic", "nic3", "net_null3", "--speed-mbps", "25000"],
        &["add-nic", "nic4", "net_null4"],
        &[
            "add-bond",
            "bond1",
            "nic3",
            "nic4",
            "mode=balance-tcp",
            "lacp=active",
        ],
        &["del-bond-member", "bond1", "nic4"],
        &["add-bond-member", "bond1", "nic4"],
        &[
            "set-bond",
            "bond0",
            "failback=delayed",
            "failback_delay_ms=30000",
            "active_order=nic1,nic0",
        ],
        &["add-vm", "vm3", "--priority", "8", "--shares", "300"],
        &[
            "add-vnic",
            "vm3",
            "--mac",
            "02:00:00:00:00:30",
            "--socket",
            "/tmp/vm3.sock",
            "--vhost-mode",
            "client",
            "--uplink",
            "bond1",
            "--mtu",
            "9000",
        ],
        &[
            "add-vnic",
            "vm3",
            "--mac",
            "02:00:00:00:00:31",
            "--devargs",
            "net_null8",
            "--uplink",
            "nic2",
            "--name",
            "vm3-tap",
        ],
        &["set-vnic", "vm3.0", "shares=50", "priority=2"],
        &["set-vm", "vm3", "shares=600"],
        &["set-vnic-uplink", "vm3-tap", "bond0"],
        &["del-vnic", "vm1.0"],
        &["del-vm", "vm2"],
    ];
    for c in cmds {
        assert_eq!(d.ok(c), "", "changes print nothing in text mode: {c:?}");
    }
    let cfg = d.api.config().unwrap();
    let on_disk = vswitch::ctl::persist::load(&d.dir.path().join("vswitch.toml")).unwrap();
    assert_eq!(on_disk, cfg, "every accepted change is on disk");
    let b1 = cfg.bond.iter().find(|b| b.name == "bond1").unwrap();
    assert_eq!(
        (b1.members.clone(), b1.mode.as_str(), b1.lacp.as_str()),
        (vec!["nic3".into(), "nic4".into()], "balance-tcp", "active")
    );
    assert_eq!(
        (
            cfg.bond[0].failback_delay_ms,
            cfg.bond[0].active_order.clone()
        ),
        (30000, vec!["nic1".into(), "nic0".into()])
    );
    let vm3 = cfg.vm.iter().find(|v| v.name == "vm3").unwrap();
    assert_eq!((vm3.priority, vm3.shares), (8, 600));
    assert_eq!(
        (
            vm3.vnic[0].vhost_mode.as_str(),
            vm3.vnic[0].shares,
            vm3.vnic[0].priority,
            vm3.vnic[0].mtu
        ),
        ("client", Some(50), Some(2), Some(9000))
    );
    assert_eq!(
        (vm3.vnic[1].name.as_deref(), vm3.vnic[1].uplink.as_str()),
        (Some("vm3-tap"), "bond0")
    );
    assert_eq!(d.json(&["del-vnic", "vm3-tap"]), serde_json::json!({}));
    for c in [
        &["del-vnic", "vm3.0"][..],
        &["del-bond", "bond1"],
        &["del-nic", "nic4"],
    ] {
        d.ok(c);
    }
    assert_eq!(d.api.config().unwrap().nic.len(), 4);
}

#[test]
fn refused_changes_say_why_in_one_line() {
    let d = Daemon::start();
    let before = d.api.config().unwrap();
    let e = d.fails(&["add-bond-member", "bond0", "nic2"]);
    assert!(
        e.contains("vnic 'vm1.1'") && e.contains("member of bond 'bond0'"),
        "{e}"
    );
    let e = d.fails(&["set-vnic-uplink", "web", "nic0"]);
    assert!(e.contains("[0060]"), "{e}");
    let e = d.fails(&["set-bond", "bond0", "mode=fastest"]);
    assert!(
        e.contains("unknown bond mode \"fastest\"; expected one of:"),
        "{e}"
    );
    let e = d.fails(&["set-bond", "bond0", "modee=vm-pinned"]);
    assert!(e.contains("unknown field `modee`"), "{e}");
    assert_eq!(d.fails(&["del-vm", "vm9"]), "vsctl: no vm named 'vm9'");
    assert_eq!(
        d.fails(&["stats", "--port", "zz"]),
        "vsctl: no port named 'zz'"
    );
    let e = d.fails(&["del-nic", "nic2"]);
    assert!(e.contains("uplink of vnic 'vm1.1'"), "{e}");
    assert_eq!(d.api.config().unwrap(), before);
}

#[test]
fn usage_errors_exit_2() {
    let d = Daemon::start();
    for args in [
        &[
            "add-vnic",
            "vm1",
            "--mac",
            "02:00:00:00:00:40",
            "--uplink",
            "bond0",
        ][..],
        &[
            "add-vnic",
            "vm1",
            "--mac",
            "m",
            "--socket",
            "s",
            "--devargs",
            "d",
            "--uplink",
            "u",
        ],
        &["set-bond", "bond0", "mode"],
        &["set-bond", "bond0"],
        &["frobnicate"],
    ] {
        let o = d.vsctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    let o = d.vsctl(&["add-vnic", "--help"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("Example:\n  vsctl add-vnic vm1 --mac"));
}

#[test]
fn stats_watch_redraws() {
    let d = Daemon::start();
    let out = d.ok(&["stats", "--watch", "--interval", "0.05", "--count", "3"]);
    assert_eq!(out.matches("\x1b[H\x1b[2J").count(), 3);
    assert_eq!(out.matches("PORT   KIND").count(), 3);
}

#[test]
fn socket_from_environment() {
    let d = Daemon::start();
    let o = Command::new(env!("CARGO_BIN_EXE_vsctl"))
        .arg("show")
        .env("VSWITCH_SOCKET", &d.sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn no_daemon() {
    let dir = TempDir::new("nodaemon");
    let missing = dir.path().join("vswitchd.ctl");
    let e = failure(vsctl_at(&missing, &["show"]));
    assert_eq!(
        e,
        format!(
            "vsctl: cannot connect to {}: No such file or directory — is vswitchd running? Use --socket PATH or set VSWITCH_SOCKET",
            missing.display()
        )
    );
    // A stale socket: nobody listening.
    drop(UnixListener::bind(&missing).unwrap());
    let e = failure(vsctl_at(&missing, &["show"]));
    assert!(
        e.contains("Connection refused — nothing is listening"),
        "{e}"
    );
}

#[test]
fn paths_that_are_not_a_switch() {
    let dir = TempDir::new("notswitch");
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "hello").unwrap();
    let e = failure(vsctl_at(&plain, &["show"]));
    assert!(
        e.ends_with(
            "plain is not a socket — it is not a vswitchd control socket; use --socket PATH"
        ),
        "{e}"
    );

    // A socket that answers garbage, one that hangs up, and one that never answers.
    let serve = |name: &str, reply: Option<&'static [u8]>| -> PathBuf {
        let p = dir.path().join(name);
        let l = UnixListener::bind(&p).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                match reply {
                    Some(b) => {
                        let _ = (&s).write_all(b);
                    }
                    None => std::thread::sleep(std::time::Duration::from_secs(3)),
                }
            }
        });
        p
    };
    let http = serve("http", Some(b"HTTP/1.0 400 Bad Request\r\n\r\n"));
    let e = failure(vsctl_at(&http, &["show"]));
    assert!(e.contains("does not speak the vswitchd control protocol (it replied \"HTTP/1.0 400 Bad Request\")"), "{e}");
    let json = serve("json", Some(b"{\"hello\": 1}\n"));
    let e = failure(vsctl_at(&json, &["show"]));
    assert!(e.contains("not a protocol response"), "{e}");
    let hangup = serve("hangup", Some(b""));
    let e = failure(vsctl_at(&hangup, &["show"]));
    assert!(e.contains("closed the connection without a reply"), "{e}");
    let silent = serve("silent", None);
    let e = failure(vsctl_at(&silent, &["--timeout", "0.3", "show"]));
    assert!(
        e.contains("no reply from") && e.contains("within 0.3 s"),
        "{e}"
    );
}
