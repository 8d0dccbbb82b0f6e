//! Issue 4 end to end: NIC teaming on real DPDK ports. A `vswitchd` bonds two
//! `net_tap` NICs; VMs are `vsperf` processes on `net_virtio_user` against the
//! switch's vhost-user sockets; the same `vsperf` process observes what leaves each
//! member through `net_af_packet` ports on the taps' kernel side (with an rx timeline).
//! `ip link set <tap> down` pulls a member's cable.
//!
//! What is checked, per test:
//! - link pull during traffic (active-backup, hash-l3l4): after detection nothing
//!   leaves on the pulled member (the switch's tx counter stops), traffic continues on
//!   the other one (every frame the switch takes from the VM in a window leaves on the
//!   surviving member), and the outage is printed three ways (not asserted beyond a
//!   2 s sanity bound): the switch's logged detection time, the frames lost
//!   (VM tx minus observed) converted to ms, and the observer's gap;
//! - failback per policy: immediate, delayed (not at +300 ms, done at +2 s, and never
//!   before `failback_delay_ms` by the switch's own log), manual (only on
//!   `vsctl bond/failback`);
//! - a gratuitous RARP (ethertype 0x8035) with the VM's source MAC on the member the
//!   VM's MAC moved to, and none in hash modes, which pin no MAC;
//! - distribution: every hash policy spreads 1024 flows 50 % ± 10 % over two members
//!   (L2 hashes get 1024 MAC pairs from a pcap replayed into a vNIC without spoof
//!   check), and hashes only the fields they name (one MAC pair, or one IP pair, stays
//!   on one member);
//! - vm-pinned: each VM leaves on its own member, both on the survivor after a pull
//!   (crosswise failover, claim 8), and back after failback;
//! - the L3+L4 hash frame by frame (`net_pcap` members that write what they send):
//!   every kind of frame the fast path treats apart leaves once, unchanged, on the
//!   member the policy's own hash names, with the bandwidth policy off and on; without
//!   a usable member every frame is counted as a `no_usable_member` drop.
//!
//! Timing on a shared 2-core machine is noisy: the VM and the observer are one
//! `vsperf` process on core 0, which this test process, `ip` and `vsctl` also use, so a
//! scheduling stall shows up as a gap on both taps (and as frames the VM's ring
//! refuses when the pacer catches up) without any loss. The loss-based figure is the
//! most trustworthy one.
//!
//! The observer's clock is aligned with the test's by the link pull itself:
//! af_packet stops receiving on an interface the moment it goes down, so the last
//! frame the observer saw on the pulled tap marks the pull (± one timeline interval
//! plus the few ms `ip` takes to start). Detection is also read from the switch's own
//! log timestamps against the wall-clock instant of the pull.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tests::*;

const VM1: &str = "02:00:00:00:00:01";
const VM2: &str = "02:00:00:00:00:02";
const EXT: &str = "02:00:00:00:00:99";
/// Observer timeline resolution, ms.
const TL_MS: u64 = 2;
/// The VM's rate in the failover tests, frames/s.
const RATE: u64 = 20_000;
const RARP: &str = "0x8035";

/// A running switch with bond0 = {nic0 on tap A, nic1 on tap B} and some VMs.
struct Rig {
    dir: Scratch,
    tap_a: String,
    tap_b: String,
    socks: Vec<String>,
    sw: Proc,
}

/// A VM with one vNIC: (name, MAC, spoof_check).
type VmSpec<'a> = (&'a str, &'a str, bool);

/// The run options of the link-pull tests: 30 s, drained for 100 ms, an rx timeline
/// every [`TL_MS`] ms; the VMs' and the observers' ports follow.
fn pull_run() -> VsperfArgs {
    VsperfArgs::new()
        .wait_link(10)
        .duration(30)
        .drain_ms(100)
        .timeline_ms(TL_MS)
}

/// bond0 = {nic0, nic1}; a test adds its mode and failback policy.
fn bond0() -> Bond {
    Bond::new("bond0", &["nic0", "nic1"])
}

impl Rig {
    /// Starts vswitchd with `bond` (see [`bond0`]) and brings both taps up; returns
    /// once both members are usable.
    fn start(bond: Bond, vms: &[VmSpec]) -> Rig {
        let dir = Scratch::new();
        let tap_a = unique("tma");
        let tap_b = unique("tmb");
        let mut topo = Topology::new("vtm")
            .dataplane("link_poll_ms", 10)
            .nic(Nic::tap("nic0", 0, &tap_a))
            .nic(Nic::tap("nic1", 1, &tap_b))
            .bond(bond);
        let mut socks = Vec::new();
        for (name, mac, spoof) in vms {
            let s = dir.path(&format!("{name}.sock")).display().to_string();
            topo = topo
                .vm(Vm::new(name).vnic(Vnic::vhost(&s, mac, "bond0").set("spoof_check", *spoof)));
            socks.push(s);
        }
        let cfg = topo.render();
        let sw = start_vswitchd(&dir.0, &cfg, &[]);
        assert!(
            wait_until(Duration::from_secs(10), || iface_exists(&tap_a)
                && iface_exists(&tap_b)),
            "taps did not appear"
        );
        for t in [&tap_a, &tap_b] {
            quiet_iface(t);
            set_link(t, true);
        }
        let rig = Rig {
            dir,
            tap_a,
            tap_b,
            socks,
            sw,
        };
        assert!(
            wait_until(Duration::from_secs(5), || rig.usable("nic0")
                && rig.usable("nic1")),
            "members did not come up: {}",
            rig.bond()
        );
        rig
    }

    fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// `vsctl bond/show bond0`.
    fn bond(&self) -> Value {
        vsctl_json(self.dir(), &["bond/show", "bond0"])[0].clone()
    }

    fn member(bond: &Value, name: &str) -> Value {
        bond["members"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no member {name} in {bond}"))
    }

    fn usable(&self, member: &str) -> bool {
        Rig::member(&self.bond(), member)["usable"] == true
    }

    fn active(&self) -> Option<String> {
        self.bond()["active_member"].as_str().map(str::to_string)
    }

    fn pinned(&self, member: &str) -> Vec<String> {
        Rig::member(&self.bond(), member)["pinned_vnics"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (nic0, nic1) tx frames.
    fn tx(&self) -> (u64, u64) {
        let v = ports_tx(self.dir(), &["nic0", "nic1"]);
        (v[0], v[1])
    }

    /// Frames each member sent during the next `ms` milliseconds.
    fn window(&self, ms: u64) -> (u64, u64) {
        let w = self.window_vnics(ms, &[]);
        (w.n0, w.n1)
    }

    /// Frames each member sent, and each of `vnics` received from its VM, during the
    /// next `ms` milliseconds (counters of one `vsctl stats` at each end).
    fn window_vnics(&self, ms: u64, vnics: &[&str]) -> Window {
        let mut names = vec!["nic0", "nic1"];
        names.extend_from_slice(vnics);
        let a = ports_rx_tx(self.dir(), &names);
        std::thread::sleep(Duration::from_millis(ms));
        let b = ports_rx_tx(self.dir(), &names);
        Window {
            n0: b[0].1 - a[0].1,
            n1: b[1].1 - a[1].1,
            vnic_rx: (2..names.len()).map(|i| b[i].0 - a[i].0).collect(),
        }
    }

    fn vm_port(&self, i: usize) -> String {
        virtio_user(i, &self.socks[i])
    }

    /// VM1 sending to the external MAC at [`RATE`].
    fn vm1_to_ext(&self) -> VsperfArgs {
        VsperfArgs::new()
            .port(self.vm_port(0))
            .txonly(VM1, EXT)
            .rate(format!("{RATE}pps"))
    }

    /// The hosts behind both taps, receiving.
    fn observers(&self) -> VsperfArgs {
        VsperfArgs::new()
            .host(0, &self.tap_a)
            .rxonly()
            .host(1, &self.tap_b)
            .rxonly()
    }

    /// Waits until the switch has received `n` frames from vNIC `vnic`.
    fn wait_traffic(&self, vnic: &str, n: u64) {
        assert!(
            wait_until(Duration::from_secs(20), || port_rx(self.dir(), vnic) >= n),
            "no traffic from {vnic}:\n{}",
            self.sw.stderr()
        );
    }

    /// Pulls `tap`'s cable.
    fn pull(&self, tap: &str) -> Cable {
        Cable::set(tap, false)
    }

    /// Plugs `tap` back in.
    fn plug(&self, tap: &str) -> Cable {
        Cable::set(tap, true)
    }

    /// Waits until `f` holds, polling the switch; panics with the bond's state if not.
    fn expect(&self, what: &str, timeout: Duration, f: impl FnMut() -> bool) {
        assert!(
            wait_until(timeout, f),
            "{what} within {timeout:?}: {}\n{}",
            self.bond(),
            self.sw.stderr()
        );
    }

    /// Wall-clock seconds since midnight of the first switch log line containing all `needles`.
    fn log_time(&self, needles: &[&str]) -> Option<f64> {
        log_lines(&self.sw.stderr(), needles)
            .first()
            .and_then(|l| log_time_of_day(l))
    }

    fn finish(self) {
        let (code, out) = self.sw.stop(Duration::from_secs(20));
        let status = last_json(&out);
        assert_eq!(
            code,
            Some(0),
            "vswitchd exit code (3 = mbufs leaked): {status}"
        );
        assert_eq!(status["mbufs_in_use_at_exit"], 0, "{status}");
    }
}

/// Counter deltas over a time window.
#[derive(Debug)]
struct Window {
    /// Frames nic0 sent.
    n0: u64,
    /// Frames nic1 sent.
    n1: u64,
    /// Frames each vNIC received from its VM.
    vnic_rx: Vec<u64>,
}

/// Frames the switch may hold between counting a vNIC's rx and a member's tx (a
/// burst or two), plus a gratuitous RARP.
const IN_FLIGHT: u64 = 72;

/// `a` and `b` differ by at most the frames in flight.
fn same(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= IN_FLIGHT
}

/// When a cable was pulled or plugged: `ip link set` ran from `at` (wall clock `wall`)
/// and took `took` (process start included), so the link changed somewhere in
/// `[at, at + took]`.
struct Cable {
    at: Instant,
    wall: SystemTime,
    took: Duration,
}

impl Cable {
    fn set(tap: &str, up: bool) -> Cable {
        let (at, wall) = (Instant::now(), SystemTime::now());
        set_link(tap, up);
        Cable {
            at,
            wall,
            took: at.elapsed(),
        }
    }
}

/// End (ms) of the last interval with frames before the first silence of at least
/// `quiet_ms` that begins after `after_ms`.
fn last_before_silence(tl: &[(u64, u64)], after_ms: u64, quiet_ms: u64) -> Option<u64> {
    let mut last = None;
    for &(t, n) in tl.iter().filter(|&&(t, _)| t > after_ms) {
        if n > 0 {
            last = Some(t);
        } else if let Some(l) = last {
            if t - l >= quiet_ms {
                return Some(l);
            }
        }
    }
    None
}

/// End (ms) of the first interval ending after `after_ms` with at least `min` frames.
fn first_after(tl: &[(u64, u64)], after_ms: u64, min: u64) -> Option<u64> {
    tl.iter()
        .find(|&&(t, n)| t > after_ms && n >= min)
        .map(|&(t, _)| t)
}

/// End (ms) of the first interval ending after `after_ms` that carries at least 80 % of
/// what `rate` frames/s puts in one interval.
fn full_rate_from(tl: &[(u64, u64)], after_ms: u64, rate: u64) -> Option<u64> {
    first_after(tl, after_ms, rate * TL_MS / 1000 * 8 / 10)
}

/// Frames in intervals ending in (from_ms, to_ms].
fn frames_between(tl: &[(u64, u64)], from_ms: u64, to_ms: u64) -> u64 {
    tl.iter()
        .filter(|&&(t, _)| t > from_ms && t <= to_ms)
        .map(|&(_, n)| n)
        .sum()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Every frame observer port `port` received came from `mac` (so its RARPs did too).
fn all_from(r: &Value, port: usize, mac: &str) -> bool {
    let p = &r["ports"][port];
    let by = p["rx_by_src_mac"].as_object().cloned().unwrap_or_default();
    p["rx_src_mac_other"] == 0
        && by.len() == 1
        && by.get(mac).and_then(Value::as_u64) == p["rx_pkts"].as_u64()
}

/// The switch's detection of a pull, from its log: "logged +X ms after `ip` started
/// (`ip` took Y ms)"; the detection latency is at most X and at least X - Y.
fn detection(rig: &Rig, member: &str, pull: &Cable) -> (f64, String) {
    let t = rig
        .log_time(&["link state changed", member, "\"down\""])
        .unwrap_or_else(|| panic!("no link-down log line for {member}:\n{}", rig.sw.stderr()));
    let x = (t - time_of_day(pull.wall)) * 1000.0;
    (
        x,
        format!(
            "switch logged link-down {x:.1} ms after `ip link set down` started (ip took {} ms)",
            ms(pull.took)
        ),
    )
}

/// (frames the VM on vsperf port `vm` sent, frames the ring refused, frames the
/// observers on `obs` received).
fn accounting(r: &Value, vm: usize, obs: &[usize]) -> (u64, u64, u64) {
    let p = &r["ports"][vm];
    let got = obs
        .iter()
        .map(|&i| r["ports"][i]["rx_pkts"].as_u64().unwrap())
        .sum();
    (
        p["tx_pkts"].as_u64().unwrap(),
        p["tx_dropped"].as_u64().unwrap(),
        got,
    )
}

/// Active-backup with one VM at 20 kpps: pull the active member's cable, check the
/// failover, plug it back and check failback under `failback`.
fn active_backup_pull(failback: &str) {
    let delay_ms = 1000u64;
    let rig = Rig::start(
        bond0()
            .mode("active-backup")
            .set("failback", failback)
            .set("failback_delay_ms", delay_ms),
        &[("vm1", VM1, true)],
    );
    assert_eq!(rig.active().as_deref(), Some("nic0"), "{}", rig.bond());
    let a = pull_run()
        .append(rig.vm1_to_ext())
        .append(rig.observers())
        .build();
    let traffic = vsperf("vm1+observer", &a);
    rig.wait_traffic("vm1.0", 2000);

    // Before: everything the VM sends leaves on the active member, nothing on the standby.
    let w = rig.window_vnics(300, &["vm1.0"]);
    assert!(
        w.vnic_rx[0] >= 300 && same(w.n0, w.vnic_rx[0]) && w.n1 == 0,
        "before the pull: {w:?}"
    );

    // Pull nic0.
    let pull = rig.pull(&rig.tap_a);
    let down = pull.at;
    // Stay off the CPU for a moment: the observer shares core 0 with this process.
    std::thread::sleep(Duration::from_millis(50));
    rig.expect(
        "nic0 taken out after its link went down",
        Duration::from_secs(2),
        || !rig.usable("nic0"),
    );
    assert_eq!(rig.active().as_deref(), Some("nic1"));
    std::thread::sleep(Duration::from_millis(50));
    let w = rig.window_vnics(400, &["vm1.0"]);
    assert_eq!(
        w.n0, 0,
        "frames left on the pulled member after detection: {w:?}"
    );
    assert!(
        w.vnic_rx[0] >= 400 && same(w.n1, w.vnic_rx[0]),
        "traffic did not continue on nic1: {w:?}"
    );

    // Plug it back in; failback per policy.
    std::thread::sleep(Duration::from_millis(200));
    let up = rig.plug(&rig.tap_a).at;
    let mut cmd_at = None;
    match failback {
        "immediate" => {
            rig.expect("immediate failback", Duration::from_secs(2), || {
                rig.active().as_deref() == Some("nic0")
            });
        }
        "delayed" => {
            let before = rig.tx().0;
            let wait = Duration::from_millis(300).saturating_sub(up.elapsed());
            std::thread::sleep(wait);
            assert_eq!(
                rig.active().as_deref(),
                Some("nic1"),
                "failed back before failback_delay_ms: {}",
                rig.bond()
            );
            assert_eq!(
                rig.tx().0,
                before,
                "nic0 carried traffic within 300 ms of link-up under delayed failback"
            );
            let wait = Duration::from_secs(2).saturating_sub(up.elapsed());
            std::thread::sleep(wait);
            assert_eq!(
                rig.active().as_deref(),
                Some("nic0"),
                "no failback 2 s after link-up: {}",
                rig.bond()
            );
        }
        "manual" => {
            rig.expect("nic0 link seen up again", Duration::from_secs(2), || {
                Rig::member(&rig.bond(), "nic0")["link_up"] == true
            });
            let before = rig.tx().0;
            std::thread::sleep(Duration::from_millis(1500));
            let b = rig.bond();
            assert_eq!(
                b["active_member"], "nic1",
                "failed back without the operator: {b}"
            );
            assert_eq!(
                rig.tx().0,
                before,
                "nic0 carried traffic before bond/failback"
            );
            cmd_at = Some(Instant::now());
            let (code, _, err) = vsctl(rig.dir(), &["bond/failback", "bond0"]);
            assert_eq!(code, 0, "{err}");
            rig.expect("failback on bond/failback", Duration::from_secs(2), || {
                rig.active().as_deref() == Some("nic0")
            });
        }
        _ => unreachable!(),
    }
    std::thread::sleep(Duration::from_millis(50));
    let w = rig.window_vnics(300, &["vm1.0"]);
    assert!(
        w.vnic_rx[0] >= 300 && same(w.n0, w.vnic_rx[0]) && w.n1 == 0,
        "after failback: {w:?}"
    );

    let (code, out) = traffic.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "vsperf failed");
    let r = last_json(&out);
    let (tl_a, tl_b) = (timeline(&r, 1), timeline(&r, 2));

    // The observer's view. The pull is where frames stop on tap A.
    let last_a = last_before_silence(&tl_a, 0, 50)
        .unwrap_or_else(|| panic!("traffic on tap A never stopped: {r}"));
    let first_b = first_after(&tl_b, last_a.saturating_sub(TL_MS), 1)
        .unwrap_or_else(|| panic!("nothing on tap B after the pull: {r}"));
    let gap = first_b.saturating_sub(last_a);
    let (sent, refused, got) = accounting(&r, 0, &[1, 2]);
    let lost = sent.saturating_sub(got);
    let (det, det_text) = detection(&rig, "nic0", &pull);
    // Map test instants to observer time through the pull.
    let obs = |i: Instant| last_a + ms(i - down);
    let up_obs = obs(up);
    let back = first_after(&tl_a, up_obs, 1)
        .unwrap_or_else(|| panic!("nothing on tap A after link-up: {r}"));
    let sw_up = rig.log_time(&["link state changed", "nic0", "\"up\""]);
    // The member's readmission (after a delayed failback also logged as "failback").
    let sw_fb = log_lines(&rig.sw.stderr(), &["member up", "nic0"])
        .iter()
        .filter_map(|l| log_time_of_day(l))
        .next_back();
    eprintln!(
        "active-backup/{failback}: {det_text}; frames lost {lost} of {sent} (= {:.1} ms at {RATE} pps; \
         the VM's ring refused {refused}); observer: last frame on A at {last_a} ms, first on B at {first_b} ms \
         => gap {gap} ms (±{TL_MS}, includes any stall of the observer process)",
        lost as f64 * 1000.0 / RATE as f64,
    );
    match (failback, cmd_at) {
        ("manual", Some(c)) => {
            let c_obs = obs(c);
            eprintln!(
                "active-backup/manual: bond/failback -> first frame on A {} ms later; A carried {} frames between link-up and the command",
                back as i64 - c_obs as i64,
                frames_between(&tl_a, up_obs + 20, c_obs.saturating_sub(20))
            );
            assert!(
                back + TL_MS + 5 >= c_obs,
                "A carried traffic before bond/failback (at {back} ms, command at {c_obs} ms)"
            );
        }
        _ => {
            let after = back as i64 - up_obs as i64;
            let sw = match (sw_up, sw_fb) {
                (Some(u), Some(f)) => format!("{:.1} ms", (f - u) * 1000.0),
                _ => "?".into(),
            };
            eprintln!("active-backup/{failback}: link up -> first frame back on A {after} ms (observer); switch log link-up -> failback {sw}");
            if failback == "delayed" {
                assert!(
                    after >= delay_ms as i64 - 50,
                    "delayed failback after only {after} ms"
                );
                let (u, f) = (sw_up.expect("link-up log"), sw_fb.expect("failback log"));
                assert!(
                    (f - u) * 1000.0 >= delay_ms as f64 - 15.0,
                    "failback logged {:.1} ms after link-up",
                    (f - u) * 1000.0
                );
            }
        }
    }
    assert!(gap < 2000, "failover took {gap} ms");
    assert!(det < 2000.0, "detection took {det} ms");
    assert!(lost <= 2 * RATE, "lost {lost} frames (2 s worth)");

    // Gratuitous RARPs: on B at failover, on A at failback, from VM1 only.
    assert!(
        rx_ethertype(&r, 2, RARP) >= 1,
        "no gratuitous RARP on nic1 after failover: {r}"
    );
    assert!(
        rx_ethertype(&r, 1, RARP) >= 1,
        "no gratuitous RARP on nic0 after failback: {r}"
    );
    assert!(
        rx_ethertype(&r, 1, RARP) + rx_ethertype(&r, 2, RARP) <= 8,
        "RARP storm: {r}"
    );
    assert!(
        all_from(&r, 1, VM1) && all_from(&r, 2, VM1),
        "frames (RARPs included) with a source other than VM1: {r}"
    );
    // Nothing duplicated (the RARPs make `got` a few above `sent` at most).
    assert!(got <= sent + 8, "sent {sent}, observed {got}: {r}");
    rig.finish();
}

#[test]
fn active_backup_link_pull_immediate_failback() {
    active_backup_pull("immediate");
}

#[test]
fn active_backup_link_pull_delayed_failback() {
    active_backup_pull("delayed");
}

#[test]
fn active_backup_link_pull_manual_failback() {
    active_backup_pull("manual");
}

/// hash-l3l4 with 64 flows: both members carry traffic; pulling one moves its flows
/// to the other; it gets them back at once on link-up. No RARPs (no MAC is pinned).
#[test]
fn hash_l3l4_link_pull_moves_flows_and_fails_back() {
    let rig = Rig::start(
        bond0().mode("hash-l3l4").set("failback", "immediate"),
        &[("vm1", VM1, true)],
    );
    let a = pull_run()
        .append(rig.vm1_to_ext().opt("flows", 64))
        .append(rig.observers())
        .build();
    let traffic = vsperf("vm1+observer", &a);
    rig.wait_traffic("vm1.0", 2000);
    let w = rig.window_vnics(400, &["vm1.0"]);
    let total = w.n0 + w.n1;
    assert!(w.vnic_rx[0] >= 400 && same(total, w.vnic_rx[0]), "{w:?}");
    assert!(
        w.n0 * 5 > total && w.n1 * 5 > total,
        "64 flows not spread: {w:?}"
    );

    let pull = rig.pull(&rig.tap_a);
    let down = pull.at;
    // Stay off the CPU for a moment: the observer shares core 0 with this process.
    std::thread::sleep(Duration::from_millis(50));
    rig.expect("nic0 out after link down", Duration::from_secs(2), || {
        !rig.usable("nic0")
    });
    std::thread::sleep(Duration::from_millis(50));
    let w = rig.window_vnics(400, &["vm1.0"]);
    assert_eq!(
        w.n0, 0,
        "frames left on the pulled member after detection: {w:?}"
    );
    assert!(
        w.vnic_rx[0] >= 400 && same(w.n1, w.vnic_rx[0]),
        "not every flow moved to nic1: {w:?}"
    );

    std::thread::sleep(Duration::from_millis(200));
    let up = rig.plug(&rig.tap_a).at;
    rig.expect("nic0 back after link up", Duration::from_secs(2), || {
        rig.usable("nic0")
    });
    std::thread::sleep(Duration::from_millis(50));
    let w = rig.window_vnics(400, &["vm1.0"]);
    let total = w.n0 + w.n1;
    assert!(
        same(total, w.vnic_rx[0]) && w.n0 * 5 > total && w.n1 * 5 > total,
        "flows did not come back: {w:?}"
    );

    let (code, out) = traffic.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    let r = last_json(&out);
    let (tl_a, tl_b) = (timeline(&r, 1), timeline(&r, 2));
    let last_a =
        last_before_silence(&tl_a, 0, 50).unwrap_or_else(|| panic!("tap A never went quiet: {r}"));
    let recovered = full_rate_from(&tl_b, last_a, RATE)
        .unwrap_or_else(|| panic!("tap B never reached the full rate after the pull: {r}"));
    let (sent, refused, got) = accounting(&r, 0, &[1, 2]);
    let lost = sent.saturating_sub(got);
    let (_, det_text) = detection(&rig, "nic0", &pull);
    let up_obs = last_a + ms(up - down);
    let back =
        first_after(&tl_a, up_obs, 1).unwrap_or_else(|| panic!("nothing on A after link-up: {r}"));
    eprintln!(
        "hash-l3l4: {det_text}; frames lost {lost} of {sent} (= {:.1} ms of nic0's half; the VM's ring \
         refused {refused}); observer: last frame on A {last_a} ms, B at full rate from {recovered} ms => {} ms \
         (±{TL_MS}); link up -> flows back on A {} ms",
        lost as f64 * 1000.0 / (RATE / 2) as f64,
        recovered.saturating_sub(last_a),
        back as i64 - up_obs as i64
    );
    assert!(recovered - last_a < 2000);
    assert!(
        lost <= RATE,
        "lost {lost} frames (more than 1 s worth): {r}"
    );
    assert_eq!(
        rx_ethertype(&r, 1, RARP) + rx_ethertype(&r, 2, RARP),
        0,
        "RARP in a hash mode: {r}"
    );
    assert!(
        log_lines(&rig.sw.stderr(), &["MAC moved"]).is_empty(),
        "{}",
        rig.sw.stderr()
    );
    rig.finish();
}

/// Splits (nic0, nic1) deltas into nic0's share, asserting a minimum total.
fn share(what: &str, (n0, n1): (u64, u64), min_total: u64) -> f64 {
    let total = n0 + n1;
    assert!(
        total >= min_total,
        "{what}: only {total} frames (nic0 {n0}, nic1 {n1})"
    );
    n0 as f64 / total as f64
}

/// Every hash policy spreads 1024 flows evenly; each hashes only its own fields.
#[test]
fn hash_policies_spread_1024_flows_evenly() {
    let rig = Rig::start(bond0().mode("hash-l3l4"), &[("vm1", VM1, false)]);
    let set_mode = |m: &str| {
        let (code, _, err) = vsctl(rig.dir(), &["set-bond", "bond0", &format!("mode={m}")]);
        assert_eq!(code, 0, "set-bond mode={m}: {err}");
    };
    let mut report = Vec::new();

    // L3/L4 hashes: one VM, one MAC pair, 1024 flows varying both IPs and both ports.
    let traffic = vsperf(
        "vm1",
        &VsperfArgs::new()
            .wait_link(10)
            .duration(30)
            .port(rig.vm_port(0))
            .txonly(VM1, EXT)
            .rate("20kpps")
            .opt("flows", 1024)
            .build(),
    );
    rig.wait_traffic("vm1.0", 1000);
    for m in [
        "hash-l3-dst",
        "hash-l3-src",
        "hash-l3-src-dst",
        "hash-l3l4",
        "balance-tcp",
        "ip-hash-else-round-robin",
    ] {
        set_mode(m);
        std::thread::sleep(Duration::from_millis(50));
        let s = share(m, rig.window(600), 2000);
        report.push(format!("{m} {:.1}%", s * 100.0));
        assert!(
            (0.4..=0.6).contains(&s),
            "{m}: nic0 carries {:.1}% of 1024 flows",
            s * 100.0
        );
    }
    // Negative control: with one MAC pair every L2 hash keeps everything on one member.
    for m in [
        "hash-l2-dst",
        "hash-l2-src",
        "hash-l2-src-dst",
        "balance-slb",
    ] {
        set_mode(m);
        std::thread::sleep(Duration::from_millis(50));
        let s = share(m, rig.window(300), 1000);
        assert!(
            s == 0.0 || s == 1.0,
            "{m} spread one MAC pair over both members ({:.1}% on nic0)",
            s * 100.0
        );
    }
    let (code, _) = traffic.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0));

    // L2 hashes: 1024 (source, destination) MAC pairs, one IP pair, replayed once from a
    // pcap and forwarded by vsperf into the VM's vNIC (spoof check off).
    let mut frames = Vec::new();
    for _ in 0..2 {
        for i in 0..1024u32 {
            let j = (i * 389 + 17) % 1024; // destinations in another order than sources
            let src = [0x02, 0x10, 0, 0, (i >> 8) as u8, i as u8];
            let dst = [0x02, 0x20, 0, 0, (j >> 8) as u8, j as u8];
            frames.push(udp_frame(
                src,
                dst,
                [10, 0, 0, 1],
                [10, 1, 0, 1],
                1024,
                1024,
            ));
        }
    }
    let pcap = rig.dir.path("macs.pcap");
    write_pcap(&pcap, &frames);
    let replay = |m: &str| {
        set_mode(m);
        std::thread::sleep(Duration::from_millis(50));
        let before = rig.tx();
        let r = vsperf_run(
            "mac-replay",
            &VsperfArgs::new()
                .wait_link(10)
                .duration(1)
                .drain_ms(100)
                .port(format!("net_pcap0,rx_pcap={}", pcap.display()))
                .opt("mode", "io")
                .opt("peer", 1)
                .port(format!("{},queue_size=1024", rig.vm_port(0)))
                .rxonly()
                .build(),
            Duration::from_secs(30),
        );
        std::thread::sleep(Duration::from_millis(100));
        let after = rig.tx();
        let forwarded = r["ports"][1]["tx_pkts"].as_u64().unwrap_or(0);
        (
            share(m, (after.0 - before.0, after.1 - before.1), 1000),
            forwarded,
        )
    };
    for m in [
        "hash-l2-dst",
        "hash-l2-src",
        "hash-l2-src-dst",
        "balance-slb",
    ] {
        let (s, fwd) = replay(m);
        report.push(format!("{m} {:.1}% (of {fwd})", s * 100.0));
        assert!(
            (0.4..=0.6).contains(&s),
            "{m}: nic0 carries {:.1}% of 1024 MAC pairs",
            s * 100.0
        );
    }
    // Negative control: one IP pair keeps every L3 hash on one member.
    for m in ["hash-l3-dst", "hash-l3-src-dst"] {
        let (s, _) = replay(m);
        assert!(
            s == 0.0 || s == 1.0,
            "{m} spread one IP pair over both members ({:.1}% on nic0)",
            s * 100.0
        );
    }
    eprintln!("distribution (share on nic0): {}", report.join(", "));
    rig.finish();
}

/// vm-pinned with two VMs: each leaves on its own member; after a pull both leave on
/// the survivor (crosswise failover, claim 8); after failback each is home again.
#[test]
fn vm_pinned_crosswise_failover_and_failback() {
    let rig = Rig::start(
        bond0().mode("vm-pinned").set("failback", "immediate"),
        &[("vm1", VM1, true), ("vm2", VM2, true)],
    );
    let (r1, r2) = (10_000u64, 4_000u64);
    let a = pull_run()
        .port(rig.vm_port(0))
        .txonly(VM1, EXT)
        .rate(format!("{r1}pps"))
        .port(rig.vm_port(1))
        .txonly(VM2, EXT)
        .rate(format!("{r2}pps"))
        .append(rig.observers())
        .build();
    let traffic = vsperf("vms+observer", &a);
    rig.wait_traffic("vm1.0", 1000);
    rig.wait_traffic("vm2.0", 400);
    assert_eq!(rig.pinned("nic0"), vec!["vm1.0"], "{}", rig.bond());
    assert_eq!(rig.pinned("nic1"), vec!["vm2.0"], "{}", rig.bond());
    let vnics = ["vm1.0", "vm2.0"];
    let w = rig.window_vnics(500, &vnics);
    assert!(w.vnic_rx[0] >= 500 && w.vnic_rx[1] >= 200, "{w:?}");
    assert!(
        same(w.n0, w.vnic_rx[0]) && same(w.n1, w.vnic_rx[1]),
        "both up: nic0 must carry VM1 alone, nic1 VM2 alone: {w:?}"
    );

    let down = rig.pull(&rig.tap_a).at;
    std::thread::sleep(Duration::from_millis(50));
    rig.expect("nic0 out after link down", Duration::from_secs(2), || {
        !rig.usable("nic0")
    });
    let out_at = Instant::now();
    let mut p1 = rig.pinned("nic1");
    p1.sort();
    assert_eq!(p1, vec!["vm1.0", "vm2.0"], "{}", rig.bond());
    std::thread::sleep(Duration::from_millis(50));
    let w = rig.window_vnics(500, &vnics);
    assert_eq!(w.n0, 0, "frames left on the pulled member: {w:?}");
    assert!(
        w.vnic_rx[0] >= 500 && same(w.n1, w.vnic_rx[0] + w.vnic_rx[1]),
        "after the pull nic1 must carry both VMs: {w:?}"
    );

    std::thread::sleep(Duration::from_millis(200));
    let up = rig.plug(&rig.tap_a).at;
    rig.expect("vm1.0 home again", Duration::from_secs(2), || {
        rig.pinned("nic0") == vec!["vm1.0"]
    });
    let back_at = Instant::now();
    std::thread::sleep(Duration::from_millis(50));
    let w = rig.window_vnics(500, &vnics);
    assert!(
        w.vnic_rx[0] >= 500 && same(w.n0, w.vnic_rx[0]) && same(w.n1, w.vnic_rx[1]),
        "after failback: {w:?}"
    );

    let (code, out) = traffic.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    let r = last_json(&out);
    // VM2 never left on nic0; VM1 left on nic1 only while nic0 was out.
    assert_eq!(rx_from(&r, 2, VM2), 0, "VM2 left on VM1's member: {r}");
    assert!(
        all_from(&r, 2, VM1),
        "tap A saw a source other than VM1: {r}"
    );
    let vm1_on_b = rx_from(&r, 3, VM1);
    let vm1_on_a = rx_from(&r, 2, VM1);
    let away_ms = ms(back_at - out_at);
    let (vm1_sent, vm2_sent) = (
        r["ports"][0]["tx_pkts"].as_u64().unwrap(),
        r["ports"][1]["tx_pkts"].as_u64().unwrap(),
    );
    assert!(vm1_on_b > 0 && vm1_on_a > 0, "{r}");
    // Each of VM1's frames left on exactly one member (RARPs: a few extra).
    assert!(
        vm1_on_a + vm1_on_b <= vm1_sent + 4,
        "VM1 frames duplicated: {r}"
    );
    assert!(
        vm1_on_a + vm1_on_b + RATE / 10 >= vm1_sent,
        "VM1 lost more than 100 ms of frames: {r}"
    );
    // VM2's member never failed: every frame of VM2 left on it.
    assert!(
        rx_from(&r, 3, VM2) + IN_FLIGHT >= vm2_sent,
        "VM2 lost frames although its member stayed up: {r}"
    );
    assert!(rx_from(&r, 3, VM2) > 0, "{r}");
    // RARPs for VM1's MAC: on nic1 when it moved there, on nic0 when it came home.
    assert!(
        rx_ethertype(&r, 3, RARP) >= 1,
        "no RARP on nic1 at crosswise failover: {r}"
    );
    assert!(
        rx_ethertype(&r, 2, RARP) >= 1,
        "no RARP on nic0 at failback: {r}"
    );
    let moved = log_lines(&rig.sw.stderr(), &["MAC moved", "vm1.0"]);
    assert!(moved.len() >= 2, "{}", rig.sw.stderr());
    assert!(
        log_lines(&rig.sw.stderr(), &["MAC moved", "vm2.0"]).is_empty(),
        "VM2 never moved:\n{}",
        rig.sw.stderr()
    );
    let tl_a = timeline(&r, 2);
    let last_a = last_before_silence(&tl_a, 0, 50).expect("tap A never went quiet");
    let tl_b = timeline(&r, 3);
    // B's rate steps up from VM2's to both VMs' within the outage.
    let b_jump = full_rate_from(&tl_b, last_a.saturating_sub(TL_MS), r1 + r2);
    eprintln!(
        "vm-pinned: vsctl saw nic0 out {} ms after the pull; VM1 away from nic0 for ~{away_ms} ms; VM1 frames seen on nic1: {vm1_on_b}; \
         last frame on A {last_a} ms, nic1 at both VMs' rate from {:?} ms; link up -> home again {} ms (vsctl)",
        ms(out_at - down),
        b_jump,
        ms(back_at - up)
    );
    rig.finish();
}

/// The bond's L3+L4 hash, frame by frame, on frames of every kind the switch's fast
/// path treats apart: a vNIC replays (once) runs of frames sharing their Ethernet
/// header — UDP and TCP (the one-step read), ICMP and fragments (which leave the
/// loop for the general read), IPv4 with options, UDP datagrams too short for the
/// loop, IPv6, ARP — into a hash-l3l4 bond of two `net_pcap` members that write what
/// they send. Every frame leaves exactly once, unchanged, on the member the policy's
/// own hash names (bucket `b` belongs to member `b % 2` with both members up), and
/// nothing is dropped.
#[test]
fn l3l4_hash_picks_the_policys_member_for_every_kind_of_frame() {
    use policy::bond::{bucket_of, hash_flow, HashFields};
    use policy::wire::FrameView;
    use std::collections::HashMap;

    let dir = Scratch::new();
    let (frames, input) = mixed_input(&dir);
    // Every input frame is distinct (a sequence number in a field no hash reads).
    let mut want: HashMap<&[u8], usize> = HashMap::new();
    for f in &frames {
        let view = FrameView::new_checked(f).unwrap();
        let member = bucket_of(hash_flow(HashFields::L3L4, &view)) % 2;
        assert!(want.insert(f, member).is_none(), "duplicate test frame");
    }
    // Without the bandwidth policy frames take the switch's direct loop; with it, the
    // loop that admits them through the vNIC's gate.
    for bandwidth in [false, true] {
        let (status, out) = run_mixed(&dir, &input, bandwidth, l3l4_bond());
        let vnic = port_counters(&status, "vm1.0");
        assert_eq!(vnic["rx_pkts"], frames.len() as u64, "{vnic}");
        assert_eq!(drops_total(vnic), 0, "bandwidth {bandwidth}: {vnic}");

        let mut expected = want.clone();
        let mut seen = [0usize; 2];
        let mut per_kind: HashMap<String, [usize; 2]> = HashMap::new();
        for (m, sent) in out.iter().enumerate() {
            for f in sent {
                let Some(w) = expected.remove(f.as_slice()) else {
                    panic!(
                        "bandwidth {bandwidth}: member {m} sent a frame not sent once: {f:02x?}"
                    );
                };
                assert_eq!(
                    w, m,
                    "bandwidth {bandwidth}: frame left on member {m}, the policy's hash names {w}: {f:02x?}"
                );
                seen[m] += 1;
                per_kind.entry(frame_kind(f)).or_default()[m] += 1;
            }
        }
        assert!(
            expected.is_empty(),
            "bandwidth {bandwidth}: {} frames never left, e.g. {:02x?}",
            expected.len(),
            expected.keys().next()
        );
        // Each IP kind has flows enough to use both members; ARP, one MAC pair hashed
        // by the L2 fallback, uses one.
        for (kind, n) in &per_kind {
            if kind.starts_with("ip") {
                assert!(n[0] > 0 && n[1] > 0, "{kind}: {n:?}");
            } else {
                assert!(n[0] == 0 || n[1] == 0, "{kind}: {n:?}");
            }
        }
        eprintln!("bandwidth {bandwidth}: members {seen:?}, by kind {per_kind:?}");
    }
}

/// The same frames into an LACP bond whose partner never answers (no fallback): no
/// member is usable, and every frame is counted as a `no_usable_member` drop of the
/// vNIC, on the direct loop (which parks them in a sink buffer) and on the gated one;
/// the members send their LACPDUs only.
#[test]
fn frames_without_a_usable_member_are_counted_on_every_path() {
    let dir = Scratch::new();
    let (frames, input) = mixed_input(&dir);
    for bandwidth in [false, true] {
        let bond = l3l4_bond()
            .set("lacp", "active")
            .set("lacp_rate", "fast")
            .set("lacp_fallback", "none");
        let (status, out) = run_mixed(&dir, &input, bandwidth, bond);
        let vnic = port_counters(&status, "vm1.0");
        assert_eq!(vnic["rx_pkts"], frames.len() as u64, "{vnic}");
        assert_eq!(
            drops(vnic, "no_usable_member"),
            frames.len() as u64,
            "bandwidth {bandwidth}: {vnic}"
        );
        assert_eq!(drops_total(vnic), frames.len() as u64, "{vnic}");
        for (m, sent) in out.iter().enumerate() {
            let lacpdus = sent.iter().filter(|f| f[12..14] == [0x88, 0x09]).count();
            assert!(lacpdus > 0, "member {m} sent no LACPDU");
            assert_eq!(
                lacpdus,
                sent.len(),
                "bandwidth {bandwidth}: member {m} sent frames without a partner"
            );
        }
    }
}

/// [`mixed_frames`] from VM1 to EXT, 3000 of them, and the pcap in `dir` holding them.
fn mixed_input(dir: &Scratch) -> (Vec<Vec<u8>>, std::path::PathBuf) {
    let mac = |s: &str| s.parse::<policy::wire::MacAddr>().unwrap().0;
    let frames = mixed_frames(mac(VM1), mac(EXT), 3000);
    let input = dir.path("in.pcap");
    write_pcap(&input, &frames);
    (frames, input)
}

fn l3l4_bond() -> Bond {
    Bond::new("bond0", &["n0", "n1"]).mode("hash-l3l4")
}

/// Runs a switch for 2 s: `bond` of two `net_pcap` members writing what they send, a
/// VM whose vNIC replays `input` once into it, the bandwidth policy on or off. Returns
/// the final status and the frames each member sent.
fn run_mixed(
    dir: &Scratch,
    input: &Path,
    bandwidth: bool,
    bond: Bond,
) -> (Value, [Vec<Vec<u8>>; 2]) {
    let out = [
        dir.path(&format!("n0-{}.pcap", unique("o"))),
        dir.path(&format!("n1-{}.pcap", unique("o"))),
    ];
    let pcap_nic = |name: &str, idx: usize, path: &Path| {
        Nic::new(name, &format!("net_pcap{idx},tx_pcap={}", path.display()))
    };
    let cfg = Topology::new("l3l4")
        .dataplane("bandwidth", bandwidth)
        .nic(pcap_nic("n0", 0, &out[0]))
        .nic(pcap_nic("n1", 1, &out[1]))
        .bond(bond)
        .vm(Vm::new("vm1").vnic(Vnic::device(
            &format!("net_pcap2,rx_pcap={}", input.display()),
            VM1,
            "bond0",
        )))
        .render();
    let p = start_vswitchd(&dir.0, &cfg, &["--run-for", "2"]);
    let ((code, stderr), stdout) = p.wait_and_stderr(Duration::from_secs(30));
    let status = last_json(&stdout);
    assert_eq!(code, Some(0), "vswitchd failed:\n{stderr}");
    assert_eq!(status["mbufs_in_use_at_exit"], 0, "mbuf leak: {status}");
    (status, [read_pcap(&out[0]), read_pcap(&out[1])])
}

/// `n` frames from `src` to `dst` in runs of 1 to 24 of one kind (a run shares its
/// Ethernet header and first IP byte, as the switch's run loop needs), each frame
/// unique by a sequence number in a field the hash does not read (IPv4 ID, IPv6 flow
/// label, ARP target address).
fn mixed_frames(src: [u8; 6], dst: [u8; 6], n: usize) -> Vec<Vec<u8>> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut frames = Vec::with_capacity(n);
    let mut seq = 0u32;
    while frames.len() < n {
        let kind = next() % 9;
        let run = 1 + next() % 24;
        for _ in 0..run {
            seq += 1;
            let r = next();
            let (ip_a, ip_b) = ((r & 0xff) as u8, ((r >> 8) & 0x3) as u8);
            let (sport, dport) = ((r >> 16) as u16, (r >> 32) as u16);
            let ip = [ip_a, ip_b];
            let udp = ports(sport, dport, 30);
            // IPv4 with first byte `vi`, protocol `p`, flags and fragment offset `fr`.
            let v4 = |vi: u8, p: u8, fr: u16, l4: &[u8]| v4(src, dst, vi, p, fr, ip, seq, l4);
            let f = match kind {
                0 => v4(0x45, 17, 0, &udp),
                1 => v4(0x45, 6, 0, &udp),
                2 => v4(0x45, 1, 0, &ports(0x0800, 1, 30)),
                // A first fragment (more-fragments) and a later one: no ports hashed.
                3 => v4(0x45, 17, 0x2000, &udp),
                4 => v4(0x45, 17, 0x0010, &[0u8; 30]),
                // Options (a 4-byte NOP option), so IHL 6.
                5 => v4(0x46, 17, 0, &udp),
                // A UDP datagram with no payload: 42 bytes, shorter than the loop takes.
                6 => v4(0x45, 17, 0, &ports(sport, dport, 0)),
                7 => v6(src, dst, ip, seq, &udp),
                _ => arp(src, dst, ip, seq),
            };
            frames.push(f);
        }
    }
    frames.truncate(n);
    frames
}

/// A UDP/TCP-style L4 start: the ports, then `pad` bytes.
fn ports(sport: u16, dport: u16, pad: usize) -> Vec<u8> {
    let mut l4 = vec![0u8; 8 + pad];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4
}

fn eth(src: [u8; 6], dst: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 (first byte `ver_ihl`, options NOPs) from 10.0.x.y to 10.1.y.x.
#[allow(clippy::too_many_arguments)]
fn v4(
    src: [u8; 6],
    dst: [u8; 6],
    ver_ihl: u8,
    proto: u8,
    frag: u16,
    ip: [u8; 2],
    seq: u32,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = eth(src, dst, 0x0800);
    let hlen = (ver_ihl & 0xf) as usize * 4;
    let mut h = vec![0u8; hlen];
    h[0] = ver_ihl;
    h[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&[10, 0, ip[1], ip[0]]);
    h[16..20].copy_from_slice(&[10, 1, ip[0], ip[1]]);
    for b in &mut h[20..] {
        *b = 1; // NOP options
    }
    f.extend_from_slice(&h);
    f.extend_from_slice(l4);
    f
}

/// IPv6/UDP from fd00::x:y to fd01::y:x, the sequence number in the flow label.
fn v6(src: [u8; 6], dst: [u8; 6], ip: [u8; 2], seq: u32, l4: &[u8]) -> Vec<u8> {
    let mut f = eth(src, dst, 0x86dd);
    let mut h = [0u8; 40];
    h[0..4].copy_from_slice(&(0x6000_0000 | (seq & 0xf_ffff)).to_be_bytes());
    h[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    h[6] = 17;
    h[7] = 64;
    h[8] = 0xfd;
    h[22..24].copy_from_slice(&ip);
    h[24] = 0xfd;
    h[25] = 1;
    h[38..40].copy_from_slice(&[ip[1], ip[0]]);
    f.extend_from_slice(&h);
    f.extend_from_slice(l4);
    f
}

/// An ARP request, the sequence number as the target address.
fn arp(src: [u8; 6], dst: [u8; 6], ip: [u8; 2], seq: u32) -> Vec<u8> {
    let mut f = eth(src, dst, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[10, 0, ip[0], ip[1]]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(60, 0);
    f
}

/// What [`mixed_frames`] made of `f`.
fn frame_kind(f: &[u8]) -> String {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => {
            let frag = u16::from_be_bytes([f[20], f[21]]);
            format!(
                "ipv4 ihl {} proto {} frag {frag:#x} len {}",
                f[14] & 0xf,
                f[23],
                f.len().min(64)
            )
        }
        0x86dd => "ipv6".into(),
        e => format!("ethertype {e:#06x}"),
    }
}

/// The frames of a classic pcap file ([`write_pcap`]'s format, or the one DPDK's
/// `net_pcap` writes: either byte order, micro- or nanosecond timestamps).
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 24, "{}: no pcap header", path.display());
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => panic!("{}: not a pcap file (magic {m:#x})", path.display()),
    };
    let u32_at = |i: usize| {
        let w: [u8; 4] = b[i..i + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let mut frames = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let caplen = u32_at(i + 8) as usize;
        let start = i + 16;
        assert!(
            start + caplen <= b.len(),
            "{}: truncated record",
            path.display()
        );
        frames.push(b[start..start + caplen].to_vec());
        i = start + caplen;
    }
    frames
}
