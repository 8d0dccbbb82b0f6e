//! Issue 7 end to end: ports added and removed on a running switch (DPDK hot-plug
//! of vhost-user and tap ports through `vsctl`) while another VM's traffic keeps
//! flowing — with no loss.

use std::time::{Duration, Instant};

use tests::*;

const VM1: &str = "02:00:00:00:00:01";
const VM2: &str = "02:00:00:00:00:02";
const VM3: &str = "02:00:00:00:00:03";
const EXT: &str = "02:00:00:00:00:99";

fn config(dir: &Scratch, tap_a: &str, tap_b: &str) -> String {
    let vm = |name: &str, mac: &str| {
        let sock = dir.path(&format!("{name}.sock")).display().to_string();
        Vm::new(name).vnic(Vnic::vhost(&sock, mac, "bond0"))
    };
    Topology::new("vhp")
        .nic(Nic::tap("nic0", 0, tap_a))
        .nic(Nic::tap("nic1", 1, tap_b))
        .bond(Bond::new("bond0", &["nic0", "nic1"]).mode("active-backup"))
        .vm(vm("vm1", VM1))
        .vm(vm("vm2", VM2))
        .render()
}

fn ok(dir: &Scratch, args: &[&str]) {
    let t = Instant::now();
    let (code, out, err) = vsctl(&dir.0, args);
    assert_eq!(code, 0, "vsctl {args:?} failed: {err}{out}");
    eprintln!("vsctl {} took {:?}", args.join(" "), t.elapsed());
}

/// Starts the switch of `config`'s topology with its two taps named from `prefix` and
/// up; returns it and the active member's tap (nic0).
fn start_with_taps(dir: &Scratch, prefix: &str) -> (Proc, String) {
    let (tap_a, tap_b) = (unique(&format!("{prefix}a")), unique(&format!("{prefix}b")));
    let sw = start_vswitchd(&dir.0, &config(dir, &tap_a, &tap_b), &[]);
    assert!(wait_until(Duration::from_secs(5), || iface_exists(&tap_a)
        && iface_exists(&tap_b)));
    set_link(&tap_a, true);
    set_link(&tap_b, true);
    (sw, tap_a)
}

/// Plugs in VM3: a vhost-user vNIC with MAC `VM3` on bond0. Returns its socket.
fn plug_in_vm3(dir: &Scratch) -> String {
    let vm3_sock = dir.path("vm3.sock").display().to_string();
    ok(dir, &["add-vm", "vm3"]);
    ok(
        dir,
        &[
            "add-vnic", "vm3", "--mac", VM3, "--socket", &vm3_sock, "--uplink", "bond0",
        ],
    );
    vm3_sock
}

/// Receives on VM3's vNIC (`sock`) for 2 s; returns the receiver's report.
fn receive_on_vm3(sock: &str) -> serde_json::Value {
    vsperf_run(
        "vm3",
        &VsperfArgs::new()
            .wait_link(10)
            .duration(2)
            .vm(2, sock)
            .rxonly()
            .build(),
        Duration::from_secs(30),
    )
}

/// Stops the switch of `config`'s topology: it must exit 0 with no mbuf in use, and
/// nothing may have been switched to a port that was gone (the hand-over order holds).
fn stop_clean(sw: Proc) {
    let (code, out) = sw.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}");
    let status = last_json(&out);
    assert_eq!(status["mbufs_in_use_at_exit"], 0, "{out}");
    for p in ["nic0", "nic1", "vm1.0", "vm2.0"] {
        assert_eq!(
            drops(port_counters(&status, p), "unknown_port"),
            0,
            "{status}"
        );
    }
}

#[test]
fn ports_come_and_go_while_other_vms_traffic_flows_without_loss() {
    let dir = Scratch::new();
    let (tap_a, tap_b, tap_c) = (unique("hpa"), unique("hpb"), unique("hpc"));
    let sw = start_vswitchd(&dir.0, &config(&dir, &tap_a, &tap_b), &[]);
    assert!(wait_until(Duration::from_secs(5), || iface_exists(&tap_a)
        && iface_exists(&tap_b)));
    set_link(&tap_a, true);
    set_link(&tap_b, true);

    // VM1 → VM2 at 4 kpps for 12 s, the whole time the ports change around them.
    let rate = 4000u64;
    let vms = vsperf(
        "vms",
        &VsperfArgs::new()
            .wait_link(10)
            .duration(12)
            .drain_ms(300)
            .vm(0, &dir.path("vm1.sock").display().to_string())
            .txonly(VM1, VM2)
            .rate(format!("{rate}pps"))
            .vm(1, &dir.path("vm2.sock").display().to_string())
            .rxonly()
            .build(),
    );
    std::thread::sleep(Duration::from_millis(1500));

    // A VM with a vhost-user vNIC, and a NIC, added live; the vNIC moved onto it.
    let vm3_sock = dir.path("vm3.sock").display().to_string();
    ok(&dir, &["add-vm", "vm3", "--priority", "3"]);
    ok(
        &dir,
        &[
            "add-vnic", "vm3", "--mac", VM3, "--socket", &vm3_sock, "--uplink", "bond0",
        ],
    );
    assert!(
        std::path::Path::new(&vm3_sock).exists(),
        "the hot-plugged vhost-user port did not create its socket"
    );
    let nic2 = format!("net_tap2,iface={tap_c}");
    ok(&dir, &["add-nic", "nic2", &nic2, "--speed-mbps", "1000"]);
    assert!(wait_until(Duration::from_secs(5), || iface_exists(&tap_c)));
    set_link(&tap_c, true);
    ok(&dir, &["set-vnic-uplink", "vm3.0", "nic2"]);
    let tree = vsctl_json(&dir.0, &["show"]);
    let vm3 = tree["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "vm3")
        .unwrap_or_else(|| panic!("vm3 not shown: {tree}"));
    assert_eq!(vm3["vnics"][0]["uplink"], "nic2", "{tree}");
    let saved = std::fs::read_to_string(dir.path("vswitch.toml")).unwrap();
    assert!(
        saved.contains("vm3.sock") && saved.contains(&tap_c),
        "{saved}"
    );

    // The new VM's frames leave through the new NIC: VM3 (a second generator
    // process) sends 1500 frames; the host behind the new tap receives them.
    let r3 = vsperf_run(
        "vm3",
        &VsperfArgs::new()
            .wait_link(10)
            .duration(2)
            .drain_ms(300)
            .vm(2, &vm3_sock)
            .txonly(VM3, EXT)
            .rate("1kpps")
            .count(1500)
            .host(0, &tap_c)
            .rxonly()
            .build(),
        Duration::from_secs(30),
    );
    assert_eq!(r3["ports"][0]["tx_pkts"], 1500, "{r3}");
    assert_eq!(rx_from(&r3, 1, VM3), 1500, "{r3}");

    // Everything removed again, live.
    ok(&dir, &["del-vnic", "vm3.0"]);
    assert!(
        wait_until(Duration::from_secs(2), || !std::path::Path::new(&vm3_sock)
            .exists()),
        "the removed vhost-user port left its socket"
    );
    ok(&dir, &["del-vm", "vm3"]);
    ok(&dir, &["del-nic", "nic2"]);
    assert!(
        wait_until(Duration::from_secs(5), || !iface_exists(&tap_c)),
        "the removed tap NIC is still there"
    );

    // A port added now reuses the DPDK port id VM3's vNIC had; its counters start at 0.
    ok(
        &dir,
        &[
            "add-vnic",
            "vm2",
            "--mac",
            "02:00:00:00:00:22",
            "--devargs",
            "net_null7,no-rx=1",
            "--uplink",
            "bond0",
            "--name",
            "vm2-null",
        ],
    );
    let st = vsctl_json(&dir.0, &["stats", "--port", "vm2-null"]);
    assert_eq!(st["ports"][0]["rx_pkts"], 0, "{st}");

    // VM2 received every frame VM1 sent while all that happened.
    let ((code, err), out) = vms.wait_and_stderr(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{err}");
    let r = last_json(&out);
    let sent = r["ports"][0]["tx_pkts"].as_u64().unwrap();
    let got = rx_from(&r, 1, VM1);
    eprintln!("VM1 sent {sent}, VM2 received {got} across the hot-plug");
    assert!(sent >= rate * 10, "VM1 sent only {sent}: {r}");
    assert_eq!(got, sent, "frames lost while ports were hot-plugged: {r}");

    let saved = std::fs::read_to_string(dir.path("vswitch.toml")).unwrap();
    assert!(!saved.contains("vm3") && !saved.contains(&tap_c), "{saved}");
    assert!(saved.contains("vm2-null"), "{saved}");
    stop_clean(sw);
}

/// `vsctl set-vnic` bandwidth settings take effect on the running switch: a vNIC
/// offering far more than its shaping (a `net_pcap` replay in the switch process) is
/// held at 100 Mb/s, then at 50 Mb/s after a live change, then at its uplink's
/// 1000 Mb/s once shaping is unset.
#[test]
fn bandwidth_settings_change_live() {
    let dir = Scratch::new();
    let pcap = dir.path("vm1.pcap");
    let frames: Vec<Vec<u8>> = (0..64u16)
        .map(|i| {
            udp_frame(
                [2, 0, 0, 0, 0, 1],
                [2, 0, 0, 0, 0, 0x99],
                [10, 0, 0, 1],
                [10, 0, 1, 1],
                1000 + i,
                80,
            )
        })
        .collect();
    write_pcap(&pcap, &frames);
    let config = Topology::new("vhb")
        .nic(Nic::null("nic0", 0).speed_mbps(1000))
        .vm(
            Vm::new("vm1").vnic(Vnic::pcap(0, &pcap, "02:00:00:00:00:01", "nic0").shaping(
                100_000_000,
                200_000_000,
                1_000_000,
            )),
        )
        .render();
    let sw = start_vswitchd(&dir.0, &config, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let rate = |what: &str| {
        std::thread::sleep(Duration::from_millis(300));
        let r = vnic_sent_bps(&dir.0, &["vm1.0"], 64, Duration::from_secs(3))[0] / 1e6;
        eprintln!("{what}: {r:.1} Mb/s");
        r
    };
    let a = rate("shaped at 100 Mb/s");
    ok(
        &dir,
        &[
            "set-vnic",
            "vm1.0",
            "average_bps=50000000",
            "peak_bps=100000000",
        ],
    );
    let b = rate("shaped at 50 Mb/s (live change)");
    ok(
        &dir,
        &[
            "set-vnic",
            "vm1.0",
            "average_bps=",
            "peak_bps=",
            "burst_bytes=",
        ],
    );
    let c = rate("unshaped, uplink 1000 Mb/s");
    let (code, out) = sw.stop(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{out}");
    assert!((a - 100.0).abs() < 5.0, "first shaping: {a:.1} Mb/s");
    assert!((b - 50.0).abs() < 4.0, "after the live change: {b:.1} Mb/s");
    assert!((c - 1000.0).abs() < 50.0, "unshaped: {c:.1} Mb/s");
    let saved = std::fs::read_to_string(dir.path("vswitch.toml")).unwrap();
    assert!(!saved.contains("average_bps"), "{saved}");
}

/// A stream's destination is decided again whenever the topology changes, although
/// its frames keep one Ethernet header (a worker carries the last checked header of a
/// vNIC from burst to burst, and at 2 kpps every burst is one frame of that header):
/// VM1's frames to a MAC no vNIC has leave through the bond; once a vNIC with that MAC
/// is plugged in they reach it and no longer leave; once it is removed they leave
/// through the bond again.
#[test]
fn a_stream_follows_its_destination_as_vnics_come_and_go() {
    let dir = Scratch::new();
    let (sw, tap_a) = start_with_taps(&dir, "hs");

    let stream = vsperf(
        "vm1",
        &VsperfArgs::new()
            .wait_link(10)
            .duration(40)
            .vm(0, &dir.path("vm1.sock").display().to_string())
            .txonly(VM1, VM3)
            .rate("2000pps")
            .build(),
    );
    // The host behind the active member (active-backup: nic0) for 2 s.
    let host = |name: &str| {
        let r = vsperf_run(
            name,
            &VsperfArgs::new()
                .wait_link(10)
                .duration(2)
                .host(0, &tap_a)
                .rxonly()
                .build(),
            Duration::from_secs(30),
        );
        rx_from(&r, 0, VM1)
    };
    let before = host("host-before");
    assert!(
        before > 2000,
        "before VM3: {before} of VM1's frames left through the bond"
    );

    let r3 = receive_on_vm3(&plug_in_vm3(&dir));
    let to_vm3 = rx_from(&r3, 0, VM1);
    assert!(
        to_vm3 > 2000,
        "VM3 plugged in: it received {to_vm3} of VM1's frames: {r3}"
    );
    let during = host("host-during");
    assert_eq!(
        during, 0,
        "VM3 plugged in: {during} of VM1's frames still left through the bond"
    );

    ok(&dir, &["del-vnic", "vm3.0"]);
    let after = host("host-after");
    assert!(
        after > 2000,
        "VM3 removed: {after} of VM1's frames left through the bond"
    );

    let (code, _) = stream.stop(Duration::from_secs(20));
    assert!(code.is_some(), "the generator did not stop");
    stop_clean(sw);
}

/// The same from the network side: a host behind the active member streams to VM3's
/// MAC at 2 kpps, so every burst a worker receives from the member is one frame of
/// one Ethernet header, which it carries from burst to burst. Before VM3 exists the
/// frames are unknown unicast; once its vNIC is plugged in they reach it; once it is
/// removed they are unknown unicast again, not sent on to the port that is gone.
#[test]
fn a_stream_from_the_network_follows_its_destination_as_vnics_come_and_go() {
    let dir = Scratch::new();
    let (sw, tap_a) = start_with_taps(&dir, "hn");

    let stream = vsperf(
        "host",
        &VsperfArgs::new()
            .wait_link(10)
            .duration(40)
            .host(0, &tap_a)
            .txonly(EXT, VM3)
            .rate("2000pps")
            .build(),
    );
    let unknown = || drops(&port_stats(&dir.0, "nic0"), "unknown_unicast");
    // Frames to VM3's MAC, counted as unknown unicast over `window`.
    let unknown_over = |window: Duration| {
        let u0 = unknown();
        std::thread::sleep(window);
        unknown() - u0
    };
    assert!(
        wait_until(Duration::from_secs(15), || unknown() > 0),
        "the host's frames never reached the switch"
    );
    let before = unknown_over(Duration::from_secs(2));
    assert!(before > 2000, "before VM3: {before} frames unknown unicast");

    let vm3_sock = plug_in_vm3(&dir);
    let u0 = unknown();
    let r3 = receive_on_vm3(&vm3_sock);
    let during = unknown() - u0;
    let to_vm3 = rx_from(&r3, 0, EXT);
    assert!(
        to_vm3 > 2000,
        "VM3 plugged in: it received {to_vm3} of the host's frames: {r3}"
    );
    assert_eq!(during, 0, "VM3 plugged in: {during} frames unknown unicast");

    ok(&dir, &["del-vnic", "vm3.0"]);
    let after = unknown_over(Duration::from_secs(2));
    assert!(
        after > 2000,
        "VM3 removed: {after} frames unknown unicast: {}",
        vsctl_json(&dir.0, &["stats"])
    );

    let (code, _) = stream.stop(Duration::from_secs(20));
    assert!(code.is_some(), "the generator did not stop");
    stop_clean(sw);
}
