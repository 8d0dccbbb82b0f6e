//! The workers' load-based sleep (`[dataplane] pmd_sleep_max_us`, Open vSwitch's
//! `pmd-sleep-max`) end to end: a lightly loaded worker gives its core up and still
//! forwards every frame; `vsctl set-dataplane` turns it off on the running switch (the
//! worker busy-polls again, the change is saved), and refuses what needs a restart.

use std::time::{Duration, Instant};

use tests::*;

const VM1: &str = "02:00:00:00:00:01";
const VM2: &str = "02:00:00:00:00:02";

/// On-CPU nanoseconds of the thread of `pid` named `name` (`/proc/.../schedstat`).
fn thread_cpu_ns(pid: u32, name: &str) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("vswitchd's threads");
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let s = std::fs::read_to_string(t.path().join("schedstat")).expect("schedstat");
            return s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .expect("on-CPU ns");
        }
    }
    panic!("vswitchd has no thread {name}");
}

/// What worker 0 did over `window`: the share of the window its thread was on a CPU,
/// and the load-based sleeps it counted (from `pmd-stats-show`).
fn watch_worker(dir: &std::path::Path, pid: u32, window: Duration) -> (f64, u64) {
    let sleeps = |dir: &std::path::Path| {
        vsctl_json(dir, &["pmd-stats-show"])[0]["sleep_iterations"]
            .as_u64()
            .expect("sleep_iterations")
    };
    let (s0, c0, t0) = (sleeps(dir), thread_cpu_ns(pid, "pmd0"), Instant::now());
    std::thread::sleep(window);
    let (s1, c1) = (sleeps(dir), thread_cpu_ns(pid, "pmd0"));
    let share = (c1 - c0) as f64 / t0.elapsed().as_nanos() as f64;
    (share, s1 - s0)
}

#[test]
fn a_lightly_loaded_worker_sleeps_forwards_everything_and_busy_polls_again_when_told() {
    let dir = Scratch::new();
    let (sock1, sock2) = (
        dir.path("vm1.sock").display().to_string(),
        dir.path("vm2.sock").display().to_string(),
    );
    let config = Topology::new("vsl")
        .dataplane("pmd_sleep_max_us", 300)
        .nic(Nic::null("nic0", 0))
        .vm(Vm::new("vm1").vnic(Vnic::vhost(&sock1, VM1, "nic0")))
        .vm(Vm::new("vm2").vnic(Vnic::vhost(&sock2, VM2, "nic0")))
        .render();
    let sw = start_vswitchd(&dir.0, &config, &[]);
    let pid = sw.pid();
    // VM1 sends to VM2 at 20 kpps for 9 s: at most 6 frames per 300-µs sleep, never
    // the 16 that keep a worker awake.
    let vms = vsperf(
        "vms",
        &VsperfArgs::new()
            .wait_link(10)
            .duration(9)
            .drain_ms(300)
            .vm(0, &sock1)
            .txonly(VM1, VM2)
            .rate("20kpps")
            .vm(1, &sock2)
            .rxonly()
            .build(),
    );
    assert!(
        wait_until(Duration::from_secs(15), || port_rx(&dir.0, "vm1.0") > 1000),
        "VM1's frames never reached the switch"
    );

    // Sleeping: the worker is off its core most of the time.
    let (share_on, sleeps_on) = watch_worker(&dir.0, pid, Duration::from_secs(2));
    let (code, text, err) = vsctl(&dir.0, &["pmd-stats-show"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("sleep iterations:") && text.contains("max 300 us"),
        "{text}"
    );

    // Off on the running switch: busy-polling again, no sleep counted.
    let (code, _, err) = vsctl(&dir.0, &["set-dataplane", "pmd_sleep_max_us=0"]);
    assert_eq!(code, 0, "{err}");
    let (share_off, sleeps_off) = watch_worker(&dir.0, pid, Duration::from_secs(2));
    eprintln!(
        "worker on a CPU {:.1} % of 2 s with pmd_sleep_max_us=300 ({sleeps_on} sleeps), {:.1} % with 0 ({sleeps_off} sleeps)",
        share_on * 100.0,
        share_off * 100.0
    );
    assert!(sleeps_on > 1000, "{sleeps_on} sleeps in 2 s at 20 kpps");
    assert!(
        share_on < 0.5,
        "the sleeping worker was on a CPU {share_on:.2} of the time"
    );
    assert_eq!(
        sleeps_off, 0,
        "the worker still slept after set-dataplane pmd_sleep_max_us=0"
    );
    assert!(
        share_off > 0.6,
        "the busy-polling worker was on a CPU only {share_off:.2} of the time"
    );

    // The change is saved; what needs a restart is refused and changes nothing.
    let cfg = vsctl_json(&dir.0, &["dump-config"]);
    assert_eq!(cfg["dataplane"]["pmd_sleep_max_us"], 0, "{cfg}");
    for (arg, needle) in [
        ("mbufs=20000", "restart"),
        ("pmd_sleep_max_us=20000", "at most 10000"),
        ("pmd_sleep_maxus=5", "pmd_sleep_max_us"),
        ("pmd_sleep_max_us=soon", "pmd_sleep_max_us"),
    ] {
        let (code, _, err) = vsctl(&dir.0, &["set-dataplane", arg]);
        assert_ne!(code, 0, "set-dataplane {arg} was accepted");
        assert!(err.contains(needle), "set-dataplane {arg}: {err}");
    }
    assert_eq!(vsctl_json(&dir.0, &["dump-config"]), cfg);

    // Every frame VM1 put on the wire reached VM2, sleeping or not.
    let ((code, err), out) = vms.wait_and_stderr(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    let r = last_json(&out);
    let sent = r["ports"][0]["tx_pkts"].as_u64().unwrap();
    assert!(sent > 150_000, "VM1 sent only {sent} frames: {r}");
    assert_eq!(rx_from(&r, 1, VM1), sent, "VM2 lost frames: {r}");

    // pmd-stats-clear: pmd-stats-show counts afresh (nothing arrives any more: no
    // frame after it); the port statistics keep theirs.
    let before = vsctl_json(&dir.0, &["pmd-stats-show"])[0].clone();
    assert!(before["rx_pkts"].as_u64().unwrap() >= sent, "{before}");
    let rxq = vsctl_json(&dir.0, &["pmd-rxq-show"]);
    let vm1 = rxq[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["port"] == "vm1.0")
        .cloned()
        .unwrap_or_else(|| panic!("vm1.0 not polled: {rxq}"));
    assert!(vm1["rx_pkts"].as_u64().unwrap() >= sent, "{rxq}");
    let (code, text, err) = vsctl(&dir.0, &["pmd-stats-clear"]);
    assert_eq!(
        (code, text.as_str()),
        (0, "pmd statistics cleared (1 worker(s))\n"),
        "{err}"
    );
    let after = vsctl_json(&dir.0, &["pmd-stats-show"])[0].clone();
    assert_eq!(after["rx_pkts"], 0, "{after}");
    let rxq = vsctl_json(&dir.0, &["pmd-rxq-show"]);
    let queues = rxq[0]["ports"].as_array().unwrap();
    assert!(
        queues.len() >= 2 && queues.iter().all(|q| q["rx_pkts"] == 0),
        "pmd-rxq-show after the clear: {rxq}"
    );
    assert!(
        after["iterations"].as_u64().unwrap() < before["iterations"].as_u64().unwrap(),
        "before {before}, after {after}"
    );
    assert!(port_rx(&dir.0, "vm1.0") >= sent);

    let (code, out) = sw.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(last_json(&out)["mbufs_in_use_at_exit"], 0);
}

#[test]
fn frames_waiting_in_a_bandwidth_queue_keep_the_worker_awake() {
    const EXT: &str = "02:00:00:00:00:99";
    let dir = Scratch::new();
    let sock = dir.path("vm1.sock").display().to_string();
    // VM1 offers about 10 Mb/s (20 kpps of 64 bytes) to a 5 Mb/s shaper: its queue is
    // never empty, so a nap would always send queued frames late.
    let config = Topology::new("vsq")
        .dataplane("pmd_sleep_max_us", 300)
        .nic(Nic::null("nic0", 0))
        .vm(Vm::new("vm1")
            .vnic(Vnic::vhost(&sock, VM1, "nic0").shaping(5_000_000, 5_000_000, 100_000)))
        .render();
    let sw = start_vswitchd(&dir.0, &config, &[]);
    let pid = sw.pid();
    let vm = vsperf(
        "vm1",
        &VsperfArgs::new()
            .wait_link(10)
            .duration(9)
            .vm(0, &sock)
            .txonly(VM1, EXT)
            .rate("20kpps")
            .build(),
    );
    assert!(
        wait_until(Duration::from_secs(15), || port_rx(&dir.0, "vm1.0") > 1000),
        "VM1's frames never reached the switch"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (share_queued, sleeps_queued) = watch_worker(&dir.0, pid, Duration::from_secs(2));

    // The limit lifted: nothing waits, the worker sleeps.
    let (code, _, err) = vsctl(
        &dir.0,
        &[
            "set-vnic",
            "vm1.0",
            "average_bps=1000000000",
            "peak_bps=1000000000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let (share_free, sleeps_free) = watch_worker(&dir.0, pid, Duration::from_secs(2));
    eprintln!(
        "queue never empty: worker on a CPU {:.1} %, {sleeps_queued} sleeps in 2 s; limit lifted: {:.1} %, {sleeps_free} sleeps",
        share_queued * 100.0,
        share_free * 100.0
    );
    assert!(
        sleeps_free > 1000,
        "{sleeps_free} sleeps in 2 s with nothing queued"
    );
    assert!(
        sleeps_queued * 20 < sleeps_free,
        "the worker slept {sleeps_queued} times in 2 s while frames waited in the shaper's queue"
    );
    assert!(
        share_queued > 0.6,
        "the worker was on a CPU only {share_queued:.2} of the time while frames waited"
    );

    let ((code, err), _) = vm.wait_and_stderr(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    let (code, out) = sw.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(last_json(&out)["mbufs_in_use_at_exit"], 0);
}
