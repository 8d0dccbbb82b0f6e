//! Issue 3 smoke: every benchmark topology of `perf/bench.sh` forwards frames to the
//! right sink, and no mbuf leaks. Correctness only — nothing here looks at speed.
//!
//! Each case runs `vswitchd --run-for` briefly with the benchmark's own configuration
//! (`perf/topologies.sh`: net_pcap sources with `infinite_rx=1`, net_null sinks, a
//! vsperf generator through net_virtio_user for case 2) and checks the final `--json`
//! counters.

use std::time::Duration;

use tests::*;

const VM1: &str = "02:00:00:00:00:01";
const VM2: &str = "02:00:00:00:00:02";
const EXT: &str = "02:00:00:00:00:99";

/// The benchmark's own vswitchd configuration of `case` (`perf/topologies.sh`, which
/// `perf/bench.sh` and `perf/callgrind.sh` source too), with pcaps of `size`-byte
/// frames made by `vsperf gen-pcap` in `dir`, and `vhost` as case 2's vhost-user socket.
fn bench_topology(dir: &Scratch, case: &str, size: usize, vhost: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = format!(
        r#". "{}"; vs_topology "$@""#,
        root.join("perf/topologies.sh").display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("VM1", VM1)
        .env("VM2", VM2)
        .env("EXT", EXT)
        .env("VSPERF", bin("vsperf"))
        .env("PCAP_DIR", &dir.0)
        .arg("vs_topology")
        .arg(case)
        .arg(size.to_string())
        .arg(unique("vbs"))
        .arg(dir.path("vswitchd.ctl"))
        .arg(vhost)
        .output()
        .expect("bash");
    let cfg = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success() && !cfg.contains("rx_pcap=,"),
        "perf/topologies.sh case {case}: {}\n{cfg}",
        String::from_utf8_lossy(&out.stderr)
    );
    cfg
}

/// Runs vswitchd for `secs` and returns its final JSON status (exit 0 means no mbuf
/// was in use at exit; the status says so too).
fn run_switch(dir: &Scratch, config: &str, secs: f64) -> serde_json::Value {
    let p = start_vswitchd(&dir.0, config, &["--run-for", &secs.to_string()]);
    let ((code, stderr), out) = p.wait_and_stderr(Duration::from_secs(30));
    let status = last_json(&out);
    assert_eq!(
        status["mbufs_in_use_at_exit"], 0,
        "mbuf leak: {status}\n{stderr}"
    );
    assert_eq!(code, Some(0), "vswitchd failed:\n{stderr}");
    status
}

fn tx(status: &serde_json::Value, port: &str) -> u64 {
    port_counters(status, port)["tx_pkts"].as_u64().unwrap()
}
fn rx(status: &serde_json::Value, port: &str) -> u64 {
    port_counters(status, port)["rx_pkts"].as_u64().unwrap()
}
fn total_drops(status: &serde_json::Value, port: &str) -> u64 {
    drops_total(port_counters(status, port))
}

/// Source → sinks: the sinks sent (almost) everything the source received — all but
/// at most one burst per sink left in a tx buffer at shutdown (freed, not leaked) —
/// and nothing was dropped.
fn assert_forwarded(s: &serde_json::Value, source: &str, sinks: &[&str]) {
    let got = rx(s, source);
    let sent: u64 = sinks.iter().map(|p| tx(s, p)).sum();
    assert!(got > 10_000, "{source} received only {got}: {s}");
    assert!(
        got.abs_diff(sent) <= 64 * sinks.len() as u64 + 32,
        "{source} rx {got} vs sinks tx {sent}: {s}"
    );
    assert_eq!(total_drops(s, source), 0, "drops on {source}: {s}");
}

/// Case 1 (and 5 at 1518 B): VM (net_pcap) → hash-l3l4 bond of two net_null NICs; the
/// 1024 flows are spread over both members.
#[test]
fn case1_vm_to_bond_pcap_64_and_1518() {
    let dir = Scratch::new();
    for size in [64, 1518] {
        let cfg = bench_topology(&dir, "1", size, "");
        let s = run_switch(&dir, &cfg, 1.5);
        assert_forwarded(&s, "vm1.0", &["n0", "n1"]);
        let (a, b) = (tx(&s, "n0"), tx(&s, "n1"));
        assert!(
            a.min(b) * 4 > a.max(b),
            "hash-l3l4 should spread 1024 flows over both members: n0 {a} n1 {b}"
        );
        let bytes = port_counters(&s, "n0")["tx_bytes"].as_u64().unwrap();
        assert_eq!(
            bytes,
            a * size as u64,
            "{size}-byte frames must leave as they came"
        );
    }
}

/// Case 4: case 1 with the bandwidth policy on (shares and a shaper whose limits are
/// high enough not to drop): every frame still leaves through the bond, none is
/// dropped or held back.
#[test]
fn case4_policy_on_forwards_everything() {
    let dir = Scratch::new();
    for size in [64, 1518] {
        let cfg = bench_topology(&dir, "4", size, "");
        assert!(cfg.contains("bandwidth = true") && cfg.contains("average_bps"));
        let s = run_switch(&dir, &cfg, 1.5);
        assert_forwarded(&s, "vm1.0", &["n0", "n1"]);
        let (a, b) = (tx(&s, "n0"), tx(&s, "n1"));
        assert!(a > 0 && b > 0, "both members carry flows: n0 {a} n1 {b}");
    }
}

/// Case 3a: a bond member backed by net_pcap (frames to the VM's MAC) → the vNIC.
#[test]
fn case3a_bond_to_vm() {
    let dir = Scratch::new();
    let cfg = bench_topology(&dir, "3a", 64, "");
    let s = run_switch(&dir, &cfg, 1.5);
    assert_forwarded(&s, "n0", &["vm1.0"]);
    assert_eq!(
        tx(&s, "n0") + tx(&s, "n1"),
        0,
        "frames for the VM went back out: {s}"
    );
}

/// Case 3b: VM1 (net_pcap, frames to VM2) → VM2 (net_null), never out of the uplink.
#[test]
fn case3b_vm_to_vm() {
    let dir = Scratch::new();
    let cfg = bench_topology(&dir, "3b", 64, "");
    let s = run_switch(&dir, &cfg, 1.5);
    assert_forwarded(&s, "vm1.0", &["vm2.0"]);
    assert_eq!(tx(&s, "n0"), 0, "VM-to-VM frames leaked to the uplink: {s}");
}

/// Case 2: a vsperf generator through net_virtio_user → vhost-user vNIC → the bond;
/// every frame the generator put on the virtio ring leaves through a member.
#[test]
fn case2_virtio_generator_to_bond() {
    generator_to_bond("2");
}

/// Case 4v: case 2 with the bandwidth policy on (shares and a shaper high enough not
/// to drop): still every frame the VM sent leaves through the bond.
#[test]
fn case4v_policy_on_the_vm_path_forwards_everything() {
    generator_to_bond("4v");
}

/// A vsperf generator playing the VM of `case` (2 or 4v) sends 200 000 frames; the
/// switch receives each one and sends it out of one of the bond's two members.
fn generator_to_bond(case: &str) {
    let dir = Scratch::new();
    let sock = dir.path("vm1.sock").display().to_string();
    let cfg = bench_topology(&dir, case, 64, &sock);
    assert_eq!(
        cfg.contains("bandwidth = true") && cfg.contains("average_bps"),
        case == "4v",
        "case {case}'s policy: {cfg}"
    );
    let sw = start_vswitchd(&dir.0, &cfg, &[]);
    let r = vsperf_run(
        "generator",
        &args![
            "--wait-link",
            10,
            "--port",
            format!("net_virtio_user0,path={sock},queues=1"),
            "--mode",
            "txonly",
            "--rate",
            "max",
            "--src-mac",
            VM1,
            "--dst-mac",
            EXT,
            "--flows",
            1024,
            "--count",
            200000,
            "--duration",
            10,
            "--drain-ms",
            300
        ],
        Duration::from_secs(40),
    );
    let sent = r["ports"][0]["tx_pkts"].as_u64().unwrap();
    assert!(sent > 10_000, "generator sent only {sent}: {r}");
    std::thread::sleep(Duration::from_millis(200));
    let (code, out) = sw.stop(Duration::from_secs(20));
    let s = last_json(&out);
    assert_eq!(s["mbufs_in_use_at_exit"], 0, "mbuf leak: {s}");
    assert_eq!(code, Some(0));
    assert_eq!(
        rx(&s, "vm1.0"),
        sent,
        "the switch must receive every frame the VM sent: {s}"
    );
    assert_eq!(
        tx(&s, "n0") + tx(&s, "n1"),
        sent,
        "every frame must leave through the bond: {s}"
    );
    assert!(
        tx(&s, "n0") > 0 && tx(&s, "n1") > 0,
        "both members carry flows: {s}"
    );
}

/// The benchmark script parses its options (no DPDK needed).
#[test]
fn bench_script_help() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash")
        .arg(root.join("perf/bench.sh"))
        .arg("--help")
        .output()
        .expect("bash");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--with-ovs"));
}
