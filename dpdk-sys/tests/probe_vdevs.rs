//! Proves each virtual device kind the switch uses is linked and probes, and that a
//! frame survives a round trip through a port (mbuf in == mbuf out, pool balanced).
//!
//! One test function: the EAL can be initialised once per process.

use dpdk_sys::{Burst, Eal, Mbuf, Mempool, Port};

fn write_pcap(path: &std::path::Path, frames: usize) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..frames {
        let mut f = vec![0u8; 64];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12] = 0x88;
        f[13] = 0xb5;
        f[14] = i as u8;
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&f);
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn every_vdev_kind_probes_and_forwards() {
    let dir = std::env::temp_dir().join(format!("vs-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("in.pcap");
    write_pcap(&pcap, 4);
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-huge",
        "-m",
        "512",
        "--no-pci",
        "--no-telemetry",
        "--iova-mode=va",
        "--log-level=lib.eal:error",
        "--log-level=lib.vhost.config:error",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--file-prefix=vsprobe{}", std::process::id())])
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    // A second init returns the same handle instead of failing with EALREADY.
    assert!(Eal::init(&[]).is_ok());
    let pool = Mempool::new(eal, "probe_pool", 4095, 64, 2048 + 128).unwrap();

    let vhost_sock = dir.join("vhost.sock");
    let memif_sock = dir.join("memif.sock");
    let tap = format!("vsprb{}", std::process::id() % 100000);
    let cases = [
        ("net_null", "net_null0".to_string()),
        ("net_ring", "net_ring0".to_string()),
        (
            "net_pcap",
            format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()),
        ),
        ("net_tap", format!("net_tap0,iface={tap}")),
        ("net_af_packet", "net_af_packet0,iface=lo".to_string()),
        (
            "net_vhost",
            format!("net_vhost0,iface={},queues=1", vhost_sock.display()),
        ),
        (
            "net_memif",
            format!("net_memif0,role=server,socket={}", memif_sock.display()),
        ),
    ];
    let mut ports = Vec::new();
    for (driver, devargs) in &cases {
        let p = Port::attach(eal, devargs).unwrap_or_else(|e| panic!("{driver}: {e}"));
        let info = p.info().unwrap();
        assert_eq!(&info.driver, driver, "{devargs} bound to the wrong driver");
        p.configure(1, 1, 512, &pool)
            .unwrap_or_else(|e| panic!("{driver}: {e}"));
        // DPDK 22.11: these advertise multi-segment tx; net_null and net_pcap do not.
        let chains = !matches!(*driver, "net_null" | "net_pcap");
        assert_eq!(info.tx_multi_seg, chains, "{driver}: multi-segment tx");
        // What DPDK 22.11 reports here: net_tap's longest receivable frame (1522
        // bytes) bounds its MTU at 1504; net_ring and net_tap have rx scatter.
        let max_mtu = match *driver {
            "net_tap" => 1504,
            "net_af_packet" | "net_memif" => 1500,
            _ => 65535,
        };
        assert_eq!(info.max_mtu, max_mtu, "{driver}: largest MTU");
        let scatter = matches!(*driver, "net_tap" | "net_ring");
        assert_eq!(info.rx_scatter, scatter, "{driver}: rx scatter");
        p.start().unwrap_or_else(|e| panic!("{driver}: {e}"));
        ports.push((driver, p));
    }
    // virtio_user needs the vhost socket to exist: hot-plug it after the vhost port started.
    let vu = Port::attach(
        eal,
        &format!("net_virtio_user0,path={},queues=1", vhost_sock.display()),
    )
    .expect("virtio_user hot-plug");
    assert_eq!(vu.info().unwrap().driver, "net_virtio_user");
    vu.configure(1, 1, 512, &pool).unwrap();
    vu.start().unwrap();

    // Replay from pcap, send to null, check the pool balances.
    let pcap_port = ports.iter().find(|(d, _)| **d == "net_pcap").unwrap().1;
    let null_port = ports.iter().find(|(d, _)| **d == "net_null").unwrap().1;
    let mut rxq = pcap_port.rx_queue(0).unwrap();
    assert!(
        pcap_port.rx_queue(0).is_err(),
        "an rx queue can be claimed twice"
    );
    let mut txq = null_port.tx_queue(0).unwrap();
    // net_null does not advertise it, but frees chains whole: its queue takes them.
    assert!(txq.multi_seg(), "net_null's queue refuses chains");
    let pcap_tx = pcap_port.tx_queue(0).unwrap();
    assert!(!pcap_tx.multi_seg(), "net_pcap's queue takes chains");
    drop(pcap_tx);
    let mut burst: Burst<32> = Burst::new();
    let before = pool.in_use();
    let mut got = 0;
    for _ in 0..100 {
        got += rxq.rx_burst(&mut burst);
        if burst.is_full() {
            break;
        }
    }
    assert!(got > 0, "pcap replay gave no frames");
    assert_eq!(burst.as_slice()[0].data()[12..14], [0x88, 0xb5]);
    let sent = txq.tx_burst(&mut burst);
    assert!(sent > 0);
    drop(burst);
    // Shared references are released too.
    let m = Mbuf::from_bytes(&pool, &[1u8; 60]).unwrap();
    let m2 = m.share();
    drop(m);
    assert_eq!(m2.data().len(), 60);
    drop(m2);
    // Bulk allocation, the inline single-segment append and truncate balance too.
    let mut b: Burst<8> = Burst::new();
    assert!(b.alloc_from(&pool, 5));
    assert!(!b.alloc_from(&pool, 4), "more than the burst's room");
    assert!(b.alloc_from(&pool, 0));
    assert_eq!(b.len(), 5);
    for m in b.as_mut_slice() {
        m.append(100).expect("room for 100 bytes").fill(7);
        assert_eq!((m.data().len(), m.pkt_len()), (100, 100));
    }
    assert!(
        b.as_mut_slice()[0].append(2048).is_none(),
        "an append past the buffer's end"
    );
    assert_eq!(b.as_slice()[0].data(), &[7u8; 100][..]);
    b.truncate(2);
    assert_eq!(b.len(), 2);
    drop(b);
    assert!(
        pool.in_use() <= before,
        "mbufs leaked: {} in use, {} before",
        pool.in_use(),
        before
    );

    // virtio_user -> vhost: a frame crosses vhost-user.
    let vhost = ports.iter().find(|(d, _)| **d == "net_vhost").unwrap().1;
    let mut vtx = vu.tx_queue(0).unwrap();
    assert!(vhost.tx_queue(0).unwrap().multi_seg(), "net_vhost");
    let mut hrx = vhost.rx_queue(0).unwrap();
    let mut out: Burst<4> = Burst::new();
    let mut crossed = 0;
    for _ in 0..200 {
        if out.is_empty() {
            out.push(Mbuf::from_bytes(&pool, &[0xabu8; 64]).unwrap())
                .unwrap();
        }
        vtx.tx_burst(&mut out);
        let mut inb: Burst<4> = Burst::new();
        crossed += hrx.rx_burst(&mut inb);
        if crossed > 0 {
            assert_eq!(inb.as_slice()[0].data()[0], 0xab);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(crossed > 0, "no frame crossed virtio_user -> vhost-user");
    let _ = std::fs::remove_dir_all(&dir);
}
