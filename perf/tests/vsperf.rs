//! End-to-end tests of the `vsperf` binary on real DPDK virtual devices.
//!
//! Each test runs the built binary (its own EAL, its own `--file-prefix`) and reads
//! its `--json` report. Tests are serialised by a lock: they pace traffic and measure
//! time on a 2-core machine, and concurrent busy-polling processes pinned to the same
//! core would only measure each other.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use perf::report::Report;

static SERIAL: Mutex<()> = Mutex::new(());

fn vsperf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vsperf"))
}

fn prefix(tag: &str) -> String {
    format!("vsperft{}{tag}", std::process::id())
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vsperf-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn report(out: &Output) -> Report {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "vsperf failed ({}):\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout must be exactly one JSON line:\n{stdout}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

fn run(args: &[&str]) -> Report {
    let out = vsperf().args(args).output().expect("spawn vsperf");
    report(&out)
}

fn within(v: u64, target: f64, pct: f64) -> bool {
    (v as f64 - target).abs() <= target * pct / 100.0
}

#[test]
fn paced_txonly_on_a_ring_loop_is_lossless_and_exact() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = prefix("ring");
    let r = run(&[
        "run",
        "--file-prefix",
        &p,
        "--json",
        "--duration",
        "10",
        "--port",
        "net_ring0",
        "--mode",
        "txonly",
        "--src-mac",
        "02:00:00:00:00:0a",
        "--dst-mac",
        "02:00:00:00:00:0b",
        "--flows",
        "8",
        "--size",
        "128",
        "--signature",
        "c0ffee",
        "--rate",
        "20000pps",
        "--count",
        "2000",
    ]);
    assert_eq!(r.stopped_by, "count");
    assert_eq!(r.mbufs_in_use_at_exit, 0);
    let p = &r.ports[0];
    assert_eq!(p.driver, "net_ring");
    assert_eq!(p.mode, "txonly");
    assert_eq!((p.tx_pkts, p.tx_dropped, p.rx_pkts), (2000, 0, 2000));
    assert_eq!((p.tx_bytes, p.rx_bytes), (2000 * 128, 2000 * 128));
    assert_eq!(p.rx_by_src_mac.get("02:00:00:00:00:0a"), Some(&2000));
    assert_eq!(p.rx_by_src_mac.len(), 1);
    assert_eq!(p.rx_by_ethertype.get("0x0800"), Some(&2000));
    // 2000 frames at 20 kpps take 0.1 s.
    assert!(
        (0.08..0.3).contains(&p.duration_s),
        "duration {}",
        p.duration_s
    );
    assert!(p.samples.is_none() && p.timeline.is_none());
}

#[test]
fn pacing_several_streams_at_their_own_rates() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = prefix("pace");
    let r = run(&[
        "run",
        "--file-prefix",
        &p,
        "--json",
        "-q",
        "--duration",
        "1",
        "--timeline-ms",
        "100",
        "--mode",
        "txonly",
        "--size",
        "64",
        "--port",
        "net_null0,no-rx=1",
        "--rate",
        "10000pps",
        "--port",
        "net_null1,no-rx=1",
        "--rate",
        "2kpps",
        "--port",
        "net_null2,no-rx=1",
        "--rate",
        "5120kbps", // 10000 frames/s of 64 B
        "--port",
        "net_ring0",
        "--rate",
        "10000pps",
        "--flows",
        "16",
    ]);
    assert_eq!(r.stopped_by, "duration");
    assert!(
        (r.duration_s - 1.0).abs() < 0.01,
        "duration {}",
        r.duration_s
    );
    let tx: Vec<u64> = r.ports.iter().map(|p| p.tx_pkts).collect();
    assert!(within(tx[0], 10_000.0, 5.0), "10000pps gave {tx:?}");
    assert!(within(tx[1], 2_000.0, 5.0), "2kpps gave {tx:?}");
    assert!(within(tx[2], 10_000.0, 5.0), "5120kbps at 64 B gave {tx:?}");
    assert!(within(tx[3], 10_000.0, 5.0), "ring at 10000pps gave {tx:?}");
    assert!(r.ports.iter().all(|p| p.tx_dropped == 0));
    // The timeline of the looped ring: ~10 intervals of ~1000 frames, summing to rx.
    let ring = &r.ports[3];
    let tl = ring.timeline.as_ref().expect("timeline");
    // 1 s of traffic and 0.2 s of drain in 100 ms steps, plus the final partial one.
    assert!((12..=14).contains(&tl.len()), "timeline {tl:?}");
    assert_eq!(tl.iter().map(|s| s[1]).sum::<u64>(), ring.rx_pkts);
    assert!(tl.windows(2).all(|w| w[0][0] < w[1][0]));
    // Intervals are noisy when other processes share the core (the pacer catches up
    // in the next interval), so check the median one.
    let mut mid: Vec<u64> = tl[1..9].iter().map(|s| s[1]).collect();
    mid.sort_unstable();
    assert!(
        within(mid[4], 1000.0, 10.0),
        "median interval {} in {tl:?}",
        mid[4]
    );
    assert_eq!(r.mbufs_in_use_at_exit, 0);
}

#[test]
fn latency_on_a_loopback_ring_loses_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = prefix("lat");
    let r = run(&[
        "run",
        "--file-prefix",
        &p,
        "--json",
        "-q",
        "--duration",
        "10",
        "--port",
        "net_ring0",
        "--mode",
        "latency",
        "--rate",
        "50000pps",
        "--count",
        "5000",
    ]);
    let p = &r.ports[0];
    assert_eq!(p.tx_pkts, 5000);
    assert_eq!(p.samples, Some(5000));
    assert_eq!((p.lost, p.reordered), (Some(0), Some(0)));
    let (p50, p99, p999, max) = (
        p.p50_us.unwrap(),
        p.p99_us.unwrap(),
        p.p999_us.unwrap(),
        p.max_us.unwrap(),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{p50} {p99} {p999} {max}"
    );
    assert_eq!(r.mbufs_in_use_at_exit, 0);
}

fn wait_for(path: &Path, secs: u64) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn echo_over_vhost_user_returns_every_latency_frame() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("vhost");
    let sock = dir.join("vm.sock");
    // The "switch side": a vhost-user server that echoes; done after 1000 frames.
    let echo = vsperf()
        .args([
            "run",
            "--file-prefix",
            &prefix("echo"),
            "--lcores",
            "1",
            "--json",
            "-q",
            "--duration",
            "20",
        ])
        .arg("--port")
        .arg(format!("net_vhost0,iface={},queues=1", sock.display()))
        .args(["--mode", "echo", "--count", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&sock, 10);
    // The "VM": virtio-user, latency stream to the echo.
    let vm = vsperf()
        .args([
            "run",
            "--file-prefix",
            &prefix("vm"),
            "--lcores",
            "0",
            "--json",
            "-q",
            "--duration",
            "20",
        ])
        .args(["--wait-link", "10", "--drain-ms", "500"])
        .arg("--port")
        .arg(format!(
            "net_virtio_user0,path={},queues=1,queue_size=1024",
            sock.display()
        ))
        .args([
            "--mode",
            "latency",
            "--src-mac",
            "02:00:00:00:01:01",
            "--dst-mac",
            "02:00:00:00:01:02",
        ])
        .args(["--rate", "2000pps", "--count", "1000", "--flows", "4"])
        .output()
        .unwrap();
    let vm = report(&vm);
    let echo = report(&echo.wait_with_output().unwrap());
    let v = &vm.ports[0];
    assert_eq!(v.driver, "net_virtio_user");
    assert_eq!(v.tx_pkts, 1000, "{v:?}");
    assert_eq!(v.samples, Some(1000), "{v:?}");
    assert_eq!(v.lost, Some(0));
    // Echoed frames come back with the MACs swapped: source is the echo's MAC.
    assert_eq!(v.rx_by_src_mac.get("02:00:00:00:01:02"), Some(&1000));
    let e = &echo.ports[0];
    assert_eq!(e.driver, "net_vhost");
    assert_eq!(echo.stopped_by, "count");
    assert_eq!((e.rx_pkts, e.tx_pkts, e.tx_dropped), (1000, 1000, 0));
    assert_eq!(e.rx_by_src_mac.get("02:00:00:00:01:01"), Some(&1000));
    assert_eq!(vm.mbufs_in_use_at_exit, 0);
    assert_eq!(echo.mbufs_in_use_at_exit, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn pcap_records(b: &[u8]) -> Vec<&[u8]> {
    assert_eq!(&b[0..4], &0xa1b2c3d4u32.to_le_bytes(), "pcap magic");
    assert_eq!(
        u32::from_le_bytes(b[20..24].try_into().unwrap()),
        1,
        "linktype ethernet"
    );
    let mut off = 24;
    let mut v = Vec::new();
    while off < b.len() {
        let incl = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        v.push(&b[off + 16..off + 16 + incl]);
        off += 16 + incl;
    }
    assert_eq!(off, b.len(), "truncated record");
    v
}

#[test]
fn gen_pcap_writes_flows_that_io_mode_replays_into_a_sink() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("pcap");
    let udp = dir.join("udp.pcap");
    let st = vsperf()
        .args([
            "gen-pcap",
            "--src-mac",
            "02:00:00:00:00:01",
            "--dst-mac",
            "02:00:00:00:00:02",
        ])
        .args([
            "--size",
            "64",
            "--flows",
            "100",
            "--records",
            "500",
            "--out",
        ])
        .arg(&udp)
        .status()
        .unwrap();
    assert!(st.success());
    let bytes = std::fs::read(&udp).unwrap();
    let recs = pcap_records(&bytes);
    assert_eq!(recs.len(), 500);
    let flows: std::collections::HashSet<_> = recs
        .iter()
        .map(|f| {
            assert_eq!(f.len(), 64);
            let p = policy::wire::Flow::parse(f).unwrap();
            assert_eq!(p.src_mac.to_string(), "02:00:00:00:00:01");
            (p.l3.unwrap(), p.sport, p.dport)
        })
        .collect();
    assert_eq!(flows.len(), 100);

    let syn = dir.join("syn.pcap");
    let st = vsperf()
        .args([
            "gen-pcap",
            "--src-mac",
            "02:00:00:00:00:66",
            "--dst-mac",
            "02:00:00:00:00:02",
        ])
        .args([
            "--proto",
            "tcp",
            "--tcp-flags",
            "syn",
            "--flows",
            "16",
            "--out",
        ])
        .arg(&syn)
        .status()
        .unwrap();
    assert!(st.success());
    let bytes = std::fs::read(&syn).unwrap();
    let recs = pcap_records(&bytes);
    assert_eq!(recs.len(), 16);
    assert!(recs.iter().all(|f| {
        let p = policy::wire::Flow::parse(f).unwrap();
        p.proto == 6 && p.tcp_flags == 0x02
    }));

    // io: pcap port -> ring (looped back into the ring's rxonly counter).
    let out_pcap = dir.join("out.pcap");
    let r = run(&[
        "run",
        "--file-prefix",
        &prefix("io"),
        "--json",
        "-q",
        "--duration",
        "10",
        "--port",
        &format!(
            "net_pcap0,rx_pcap={},tx_pcap={}",
            udp.display(),
            out_pcap.display()
        ),
        "--mode",
        "io",
        "--peer",
        "1",
        "--port",
        "net_ring0",
        "--mode",
        "rxonly",
        "--count",
        "500",
    ]);
    assert_eq!(r.stopped_by, "count");
    let (pc, ring) = (&r.ports[0], &r.ports[1]);
    // io counts frames as rx on the pcap port and tx on its peer.
    assert_eq!((pc.rx_pkts, pc.tx_pkts), (500, 0));
    assert_eq!((ring.tx_pkts, ring.tx_dropped, ring.rx_pkts), (500, 0, 500));
    assert_eq!(ring.tx_bytes, 500 * 64);
    assert_eq!(ring.rx_by_src_mac.get("02:00:00:00:00:01"), Some(&500));
    assert_eq!(r.mbufs_in_use_at_exit, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn memif_pair_in_one_process_delivers_exactly() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir("memif");
    let sock = dir.join("memif.sock");
    let r = run(&[
        "run",
        "--file-prefix",
        &prefix("memif"),
        "--json",
        "-q",
        "--duration",
        "10",
        "--wait-link",
        "5",
        "--port",
        &format!("net_memif0,role=server,socket={}", sock.display()),
        "--mode",
        "rxonly",
        "--count",
        "3000",
        "--port",
        &format!("net_memif1,role=client,socket={}", sock.display()),
        "--mode",
        "txonly",
        "--src-mac",
        "02:00:00:00:00:21",
        "--proto",
        "tcp",
        "--tcp-flags",
        "syn",
        "--flows",
        "64",
        "--rate",
        "30kpps",
        "--count",
        "3000",
    ]);
    assert_eq!(r.stopped_by, "count");
    let (rx, tx) = (&r.ports[0], &r.ports[1]);
    assert_eq!(rx.driver, "net_memif");
    assert_eq!((tx.tx_pkts, tx.tx_dropped), (3000, 0));
    assert_eq!(rx.rx_pkts, 3000);
    assert_eq!(rx.rx_by_src_mac.get("02:00:00:00:00:21"), Some(&3000));
    assert_eq!(rx.rx_by_ethertype.get("0x0800"), Some(&3000));
    assert!(rx.link_up && tx.link_up);
    assert_eq!(r.mbufs_in_use_at_exit, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_devargs_exit_non_zero_with_one_error_line() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = vsperf()
        .args([
            "run",
            "--file-prefix",
            &prefix("bad"),
            "--json",
            "--port",
            "net_bogus0,x=1",
            "--mode",
            "rxonly",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("vsperf: error:"))
        .collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(ours[0].contains("net_bogus0"), "{err}");
    assert_eq!(err.lines().last(), Some(ours[0]));
    // A command-line mistake is exit status 2, also one line from us.
    let out = vsperf()
        .args(["run", "--port", "net_null0", "--mode", "io"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn sigterm_stops_the_run_and_still_reports() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // net_null's rx side produces blank frames as fast as it is polled.
    let child = vsperf()
        .args([
            "run",
            "--file-prefix",
            &prefix("sig"),
            "--json",
            "-q",
            "--port",
            "net_null0",
            "--mode",
            "rxonly",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let r = report(&child.wait_with_output().unwrap());
    assert_eq!(r.stopped_by, "signal");
    assert!(r.ports[0].rx_pkts > 0);
    assert_eq!(r.mbufs_in_use_at_exit, 0);
}
