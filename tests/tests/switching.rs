//! Issue 2 end to end: L2 switching between VMs (vhost-user, played by `vsperf`
//! through `net_virtio_user` in another process) and NICs (`net_tap`, observed and
//! driven from the kernel side by `vsperf` on `net_af_packet`).

use std::time::{Duration, Instant};

use tests::*;

const VM1: &str = "02:00:00:00:00:01";
const VM2: &str = "02:00:00:00:00:02";
const EXT: &str = "02:00:00:00:00:99";

struct Topo {
    dir: Scratch,
    vm1_sock: String,
    vm2_sock: String,
    tap_a: String,
    tap_b: String,
}

impl Topo {
    fn new() -> Topo {
        let dir = Scratch::new();
        Topo {
            vm1_sock: dir.path("vm1.sock").display().to_string(),
            vm2_sock: dir.path("vm2.sock").display().to_string(),
            tap_a: unique("vsa"),
            tap_b: unique("vsb"),
            dir,
        }
    }

    /// Two VMs on an active-backup bond of two tap NICs.
    fn config(&self, vhost_mode: &str) -> String {
        format!(
            r#"
[eal]
file_prefix = "{prefix}"
[dataplane]
cores = [1]
[[nic]]
name = "nic0"
devargs = "net_tap0,iface={a}"
[[nic]]
name = "nic1"
devargs = "net_tap1,iface={b}"
[[bond]]
name = "bond0"
members = ["nic0", "nic1"]
mode = "active-backup"
[[vm]]
name = "vm1"
  [[vm.vnic]]
  socket = "{s1}"
  vhost_mode = "{mode}"
  mac = "{VM1}"
  uplink = "bond0"
[[vm]]
name = "vm2"
  [[vm.vnic]]
  socket = "{s2}"
  vhost_mode = "{mode}"
  mac = "{VM2}"
  uplink = "bond0"
"#,
            prefix = unique("vsw"),
            a = self.tap_a,
            b = self.tap_b,
            s1 = self.vm1_sock,
            s2 = self.vm2_sock,
            mode = vhost_mode,
        )
    }

    fn vm_port(&self, sock: &str, idx: usize) -> String {
        format!("net_virtio_user{idx},path={sock},queues=1")
    }
}

/// One vsperf process plays VM1 (port 0), VM2 (port 1) and the external host behind
/// each tap (ports 2 and 3). `vm1_opts` configures what VM1 sends; `host_opts` what
/// the host on tap A sends.
fn phase(t: &Topo, vm1_opts: &[String], host_opts: &[String]) -> serde_json::Value {
    let mut a = args![
        "--wait-link",
        10,
        "--duration",
        4,
        "--drain-ms",
        300,
        "--port",
        t.vm_port(&t.vm1_sock, 0),
    ];
    a.extend(vm1_opts.iter().cloned());
    a.extend(args![
        "--port",
        t.vm_port(&t.vm2_sock, 1),
        "--mode",
        "rxonly"
    ]);
    a.extend(args!["--port", format!("net_af_packet0,iface={}", t.tap_a)]);
    a.extend(host_opts.iter().cloned());
    a.extend(args![
        "--port",
        format!("net_af_packet1,iface={}", t.tap_b),
        "--mode",
        "rxonly"
    ]);
    vsperf_run("vsperf", &a, Duration::from_secs(40))
}

/// Frames vsperf port `i` put on the wire, which must be most of what it was asked to
/// send (a few may be refused while a freshly connected vhost queue is not yet polled).
fn sent(r: &serde_json::Value, i: usize) -> u64 {
    let tx = r["ports"][i]["tx_pkts"].as_u64().unwrap();
    assert!(tx >= 1800, "port {i} sent only {tx} frames: {r}");
    tx
}

fn rxonly() -> Vec<String> {
    args!["--mode", "rxonly"]
}

#[test]
fn l2_switching_between_vms_and_nics() {
    let t = Topo::new();
    let sw = start_vswitchd(&t.dir.0, &t.config("server"), &[]);
    assert!(wait_until(Duration::from_secs(5), || iface_exists(
        &t.tap_a
    ) && iface_exists(
        &t.tap_b
    )));
    set_link(&t.tap_a, true);
    set_link(&t.tap_b, true);
    let n = 2000u64;

    // VM1 -> VM2 unicast: delivered locally, never sent out.
    let r = phase(
        &t,
        &args![
            "--mode",
            "txonly",
            "--src-mac",
            VM1,
            "--dst-mac",
            VM2,
            "--count",
            n,
            "--rate",
            "20kpps"
        ],
        &rxonly(),
    );
    assert_eq!(
        rx_from(&r, 1, VM1),
        sent(&r, 0),
        "VM2 must get every frame VM1 sent: {r}"
    );
    assert_eq!(
        rx_from(&r, 2, VM1) + rx_from(&r, 3, VM1),
        0,
        "VM-to-VM traffic leaked to a NIC: {r}"
    );

    // VM1 -> external MAC: leaves on the bond's active member with VM1's source MAC.
    let r = phase(
        &t,
        &args![
            "--mode",
            "txonly",
            "--src-mac",
            VM1,
            "--dst-mac",
            EXT,
            "--count",
            n,
            "--rate",
            "20kpps"
        ],
        &rxonly(),
    );
    assert_eq!(
        rx_from(&r, 2, VM1),
        sent(&r, 0),
        "the host behind nic0 must see VM1's frames: {r}"
    );
    assert_eq!(
        rx_from(&r, 3, VM1),
        0,
        "the standby member must carry nothing: {r}"
    );
    assert_eq!(
        rx_from(&r, 1, VM1),
        0,
        "unicast to an external MAC must not reach VM2: {r}"
    );

    // Host -> VM2 by destination MAC; VM1 gets nothing.
    let r = phase(
        &t,
        &rxonly(),
        &args![
            "--mode",
            "txonly",
            "--src-mac",
            EXT,
            "--dst-mac",
            VM2,
            "--count",
            n,
            "--rate",
            "20kpps"
        ],
    );
    assert_eq!(
        rx_from(&r, 1, EXT),
        sent(&r, 2),
        "VM2 must get the host's frames: {r}"
    );
    assert_eq!(
        rx_from(&r, 0, EXT),
        0,
        "VM1 must not get frames for VM2: {r}"
    );

    // Broadcast from VM1: VM2 and the uplink get it.
    let r = phase(
        &t,
        &args![
            "--mode",
            "txonly",
            "--src-mac",
            VM1,
            "--dst-mac",
            "ff:ff:ff:ff:ff:ff",
            "--count",
            n,
            "--rate",
            "20kpps"
        ],
        &rxonly(),
    );
    assert_eq!(
        rx_from(&r, 1, VM1),
        sent(&r, 0),
        "broadcast must reach VM2: {r}"
    );
    assert_eq!(
        rx_from(&r, 2, VM1),
        sent(&r, 0),
        "broadcast must leave on the uplink: {r}"
    );

    // Broadcast from the host reaches both VMs.
    let r = phase(
        &t,
        &rxonly(),
        &args![
            "--mode",
            "txonly",
            "--src-mac",
            EXT,
            "--dst-mac",
            "ff:ff:ff:ff:ff:ff",
            "--count",
            n,
            "--rate",
            "20kpps"
        ],
    );
    assert_eq!(rx_from(&r, 0, EXT), sent(&r, 2), "{r}");
    assert_eq!(rx_from(&r, 1, EXT), sent(&r, 2), "{r}");

    // Spoofed source MAC from VM1: dropped and counted; unknown unicast from the host: dropped.
    let r = phase(
        &t,
        &args![
            "--mode",
            "txonly",
            "--src-mac",
            "02:00:00:00:00:66",
            "--dst-mac",
            VM2,
            "--count",
            n,
            "--rate",
            "20kpps"
        ],
        &args![
            "--mode",
            "txonly",
            "--src-mac",
            EXT,
            "--dst-mac",
            "02:00:00:00:00:77",
            "--count",
            500,
            "--rate",
            "20kpps"
        ],
    );
    let spoofed_sent = sent(&r, 0);
    assert!(spoofed_sent >= n * 9 / 10, "{r}");
    assert_eq!(
        rx_from(&r, 1, "02:00:00:00:00:66"),
        0,
        "a spoofed frame was delivered: {r}"
    );
    assert_eq!(
        rx_from(&r, 3, "02:00:00:00:00:66") + rx_from(&r, 2, "02:00:00:00:00:66"),
        0,
        "{r}"
    );

    let (code, out) = sw.stop(Duration::from_secs(20));
    let status = last_json(&out);
    assert_eq!(
        code,
        Some(0),
        "vswitchd exit code (3 = mbufs leaked): {status}"
    );
    assert_eq!(status["mbufs_in_use_at_exit"], 0, "{status}");
    let vm1 = port_counters(&status, "vm1.0");
    assert_eq!(drops(vm1, "spoofed"), spoofed_sent, "{status}");
    let nic0 = port_counters(&status, "nic0");
    assert!(drops(nic0, "unknown_unicast") >= 500, "{status}");
    // The vhost sockets the switch served are gone.
    assert!(
        !std::path::Path::new(&t.vm1_sock).exists(),
        "vhost socket left behind"
    );
}

#[test]
fn vm_reconnect_keeps_switch_forwarding() {
    let t = Topo::new();
    let sw = start_vswitchd(&t.dir.0, &t.config("server"), &[]);
    assert!(wait_until(Duration::from_secs(5), || iface_exists(
        &t.tap_a
    )));
    set_link(&t.tap_a, true);
    set_link(&t.tap_b, true);
    // VM2 and the host run throughout: the host sends to VM2 at 5 kpps for 8 s.
    let other = vsperf(
        "vm2+host",
        &args![
            "--wait-link",
            10,
            "--duration",
            8,
            "--drain-ms",
            300,
            "--port",
            t.vm_port(&t.vm2_sock, 1),
            "--mode",
            "rxonly",
            "--port",
            format!("net_af_packet0,iface={}", t.tap_a),
            "--mode",
            "txonly",
            "--src-mac",
            EXT,
            "--dst-mac",
            VM2,
            "--rate",
            "5kpps",
            "--timeline-ms",
            100,
        ],
    );
    // VM1 connects, sends to VM2, and is killed without warning.
    let vm1 = vsperf(
        "vm1",
        &args![
            "--wait-link",
            10,
            "--duration",
            30,
            "--port",
            t.vm_port(&t.vm1_sock, 0),
            "--mode",
            "txonly",
            "--src-mac",
            VM1,
            "--dst-mac",
            VM2,
            "--rate",
            "5kpps"
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    vm1.signal("KILL");
    drop(vm1);
    std::thread::sleep(Duration::from_millis(500));
    // VM1 comes back and sends 1000 frames to VM2.
    let r1 = vsperf_run(
        "vm1-again",
        &args![
            "--wait-link",
            10,
            "--port",
            t.vm_port(&t.vm1_sock, 0),
            "--mode",
            "txonly",
            "--src-mac",
            VM1,
            "--dst-mac",
            VM2,
            "--count",
            1000,
            "--rate",
            "10kpps"
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r1["ports"][0]["tx_pkts"].as_u64(), Some(1000), "{r1}");
    let ((code, err), out) = other.wait_and_stderr(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    let r = last_json(&out);
    let from_host = rx_from(&r, 0, EXT);
    let sent = r["ports"][1]["tx_pkts"].as_u64().unwrap();
    assert!(sent > 30_000, "{r}");
    // VM1's crash must not interrupt the host -> VM2 traffic: allow a handful of frames
    // in flight at the moments VM1 dropped and reconnected.
    assert!(
        from_host + 50 >= sent,
        "VM2 lost host frames while VM1 reconnected: got {from_host} of {sent}: {r}"
    );
    assert!(
        rx_from(&r, 0, VM1) >= 1000,
        "VM1's frames after its reconnection did not reach VM2: {r}"
    );
    let (code, out) = sw.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(last_json(&out)["mbufs_in_use_at_exit"], 0);
}

#[test]
fn client_mode_switch_restart_reconnects_to_running_vms() {
    let t = Topo::new();
    // The VMs serve the sockets (QEMU's vhost-user server role): one vsperf process
    // plays both; VM1 sends to VM2 at 10 kpps until the test stops it. vsperf reads
    // the link of a virtio-user server port every few ms, which is what makes DPDK's
    // virtio-user notice the departed switch and listen again, as QEMU does.
    let mut vms = vsperf(
        "vms",
        &args![
            "--duration",
            120,
            "--drain-ms",
            200,
            "--timeline-ms",
            10,
            "--port",
            format!("net_virtio_user0,path={},server=1,queues=1", t.vm1_sock),
            "--mode",
            "txonly",
            "--src-mac",
            VM1,
            "--dst-mac",
            VM2,
            "--rate",
            "10kpps",
            "--port",
            format!("net_virtio_user1,path={},server=1,queues=1", t.vm2_sock),
            "--mode",
            "rxonly",
        ],
    );
    // DPDK's virtio-user server blocks in accept() until a client connects, so only
    // VM1's socket exists before the switch starts; the switch's client-mode reconnect
    // finds VM2's socket once VM1 is connected.
    assert!(wait_until(Duration::from_secs(10), || {
        std::path::Path::new(&t.vm1_sock).exists()
    }));
    let sw = start_vswitchd(&t.dir.0, &t.config("client"), &[]);
    vms.wait_for("vsperf: traffic started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let (code, out) = sw.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(last_json(&out)["mbufs_in_use_at_exit"], 0, "{out}");
    // Both VMs must notice the switch left (their link goes down) before it returns,
    // or the restart would prove nothing.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let e = vms.stderr();
            e.contains("net_virtio_user0 link down") && e.contains("net_virtio_user1 link down")
        }),
        "the VMs never saw the switch go away:\n{}",
        vms.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    let restart_wall = std::time::SystemTime::now();
    let restart = Instant::now();
    let sw = start_vswitchd(&t.dir.0, &t.config("client"), &[]);
    let started = restart.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let ((code, err), out) = {
        vms.signal("TERM");
        vms.wait_and_stderr(Duration::from_secs(20))
    };
    assert_eq!(code, Some(0), "{err}");
    let r = last_json(&out);
    assert_eq!(r["mbufs_in_use_at_exit"], 0, "{r}");
    let (code, out) = sw.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(last_json(&out)["mbufs_in_use_at_exit"], 0, "{out}");

    // Place the restart on vsperf's time axis (both clocks are this host's).
    let t0 = r["started_unix_s"].as_f64().expect("started_unix_s");
    let restart_ms = (restart_wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - t0)
        * 1000.0;
    let tl = timeline(&r, 1);
    let before: u64 = tl
        .iter()
        .filter(|&&(t, _)| (t as f64) < restart_ms - 500.0)
        .map(|&(_, n)| n)
        .sum();
    assert!(before > 5_000, "VM2 got little before the restart: {r}");
    // First 10 ms interval after the restart in which VM2 received anything: its end
    // is an upper bound of when the first frame arrived.
    let resumed = tl
        .iter()
        .find(|&&(t, n)| t as f64 > restart_ms && n > 0)
        .unwrap_or_else(|| panic!("traffic never resumed after the switch restart: {r}"));
    let after: u64 = tl
        .iter()
        .filter(|&&(t, _)| t >= resumed.0)
        .map(|&(_, n)| n)
        .sum();
    // ~2 s at 10 kpps are left after the restart; most of it must arrive.
    assert!(
        after > 5_000,
        "VM2 got only {after} frames after resuming: {r}"
    );
    // Each VM's link went down with the first switch and up with the second.
    let mut link_up_ms = Vec::new();
    for port in 0..2 {
        let ev: Vec<[u64; 2]> = serde_json::from_value(r["ports"][port]["link_events"].clone())
            .unwrap_or_else(|e| panic!("link_events of port {port}: {e}: {r}"));
        let down = ev
            .iter()
            .position(|e| e[1] == 0)
            .unwrap_or_else(|| panic!("port {port} never saw its link go down: {ev:?}"));
        let up = ev[down..]
            .iter()
            .find(|e| e[1] == 1 && e[0] as f64 > restart_ms)
            .unwrap_or_else(|| panic!("port {port}'s link never came back: {ev:?}"));
        link_up_ms.push(up[0] as f64 - restart_ms);
    }
    eprintln!(
        "client-mode restart: switch_started_ms={} vm_link_up_ms={:.0},{:.0} vm2_first_frame_ms<={:.0}",
        started.as_millis(),
        link_up_ms[0],
        link_up_ms[1],
        resumed.0 as f64 - restart_ms
    );
}

#[test]
fn bad_config_is_refused_with_a_clear_message() {
    let t = Topo::new();
    let path = t.dir.path("bad.toml");
    std::fs::write(
        &path,
        t.config("server")
            .replace("uplink = \"bond0\"\n[[vm]]", "uplink = \"nic0\"\n[[vm]]"),
    )
    .unwrap();
    let out = std::process::Command::new(bin("vswitchd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("vnic 'vm1.0'") && e.contains("member of bond 'bond0'"),
        "{e}"
    );
    std::fs::write(&path, "[dataplane]\ncores = [1]\nbogus = 1\n").unwrap();
    let out = std::process::Command::new(bin("vswitchd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("bad.toml:3") && e.contains("bogus"), "{e}");
}

#[test]
fn two_workers_deliver_to_guests_with_one_queue_pair() {
    // cores = [0, 1]: two workers. Ports are spread round-robin (nic0→w0, nic1→w1,
    // vm1→w0, vm2→w1), so VM2's frames to VM1 are sent by worker 1 while VM1's go out
    // from worker 0: both must reach guests that enabled a single queue pair.
    let t = Topo::new();
    let cfg = t.config("server").replace("cores = [1]", "cores = [0, 1]");
    let sw = start_vswitchd(&t.dir.0, &cfg, &[]);
    let r = vsperf_run(
        "vms",
        &args![
            "--wait-link",
            10,
            "--duration",
            4,
            "--drain-ms",
            300,
            "--port",
            t.vm_port(&t.vm1_sock, 0),
            "--mode",
            "txonly",
            "--src-mac",
            VM1,
            "--dst-mac",
            VM2,
            "--count",
            2000,
            "--rate",
            "10kpps",
            "--port",
            t.vm_port(&t.vm2_sock, 1),
            "--mode",
            "txonly",
            "--src-mac",
            VM2,
            "--dst-mac",
            VM1,
            "--count",
            2000,
            "--rate",
            "10kpps",
        ],
        Duration::from_secs(40),
    );
    assert_eq!(
        rx_from(&r, 1, VM1),
        sent(&r, 0),
        "VM1 -> VM2 across workers: {r}"
    );
    assert_eq!(
        rx_from(&r, 0, VM2),
        sent(&r, 1),
        "VM2 -> VM1 across workers: {r}"
    );
    let (code, out) = sw.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(last_json(&out)["mbufs_in_use_at_exit"], 0);
}
