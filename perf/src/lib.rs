//! `vsperf`: a testpmd-style DPDK traffic harness.
//!
//! It plays VMs (a `net_virtio_user` port against the switch's vhost-user socket, or
//! a `net_vhost` server for the switch-as-client mode) and external hosts (`net_tap`,
//! `net_af_packet`, `net_pcap`, `net_null`, `net_ring`, `net_memif`) for the
//! end-to-end tests and for operators. Its command line and its JSON output are an
//! interface other code depends on: both are documented here and only ever extended.
//!
//! # Command line
//!
//! ```text
//! vsperf run [EAL options] [run options] [per-port defaults] (--port DEVARGS [per-port options])...
//! vsperf gen-pcap --out FILE --src-mac M --dst-mac M [--size 64] [--flows N] [--proto udp|tcp] ...
//! vsperf plot-timeline --report RUN.json --out FILE.svg [--port I [--label L]]... [--mark SECS=TEXT]...
//! vsperf c2c [--cpus A,B] [--ms N] [--json]
//! ```
//!
//! EAL options: `--file-prefix P` (default `vsperf<pid>`; unique per DPDK process),
//! `--lcores L` (default `0`; the poll loop is pinned to the first lcore by the EAL),
//! `--mem MB` (1024), `--eal-arg X` (repeatable), `--eal-raw` (drop the defaults
//! `--no-huge -m MB --no-pci --no-telemetry --iova-mode=va --log-level=lib.eal:error
//! --log-level=lib.vhost.config:error`).
//!
//! Run options (anywhere): `--duration SECS` (float), `--wait-link SECS` (fail unless
//! every link is up in time), `--stats-period SECS` (1; 0 = final only), `--json`,
//! `--timeline-ms N`, `--drain-ms MS` (200), `--idle-sleep-us US` (0 = busy-poll; else
//! sleep that long after a pass over the ports that moved no frame), `--burst N` (32,
//! max 64), `--nb-desc N` (1024), `--mbufs N`, `-q/--quiet`.
//!
//! Per-port options apply to the last `--port` before them; given before the first
//! `--port` they are defaults for all ports: `--mode txonly|rxonly|io|echo|latency`
//! (default rxonly), `--src-mac` (default: the port's MAC), `--dst-mac` (default
//! broadcast), `--size` (64; bytes without FCS), `--flows` (1), `--vary
//! src-ip,dst-ip,sport,dport|all|none` (all), `--proto udp|tcp`, `--tcp-flags syn`,
//! `--vlan ID`, `--src-ip`, `--dst-ip`, `--sport`, `--dport`, `--signature HEX`,
//! `--rate max|Npps|Nkpps|Nmpps|Nbps|Nkbps|Nmbps|Ngbps`, `--count N`, `--peer INDEX`.
//!
//! Modes: **txonly** generates (and counts what it receives); **rxonly** counts and
//! frees; **io** forwards everything received to `--peer` (default the neighbour,
//! 0↔1); **echo** swaps the MACs and sends back on the same port; **latency**
//! generates UDP frames carrying a sequence number and a TSC stamp (see
//! [`frame`]) and measures the round trip of those that come back.
//!
//! `--count N` means "generate N frames" for txonly/latency and "done once N were
//! received" for the others. A run ends at `--duration`, when every port with a
//! `--count` is done, or on SIGINT/SIGTERM (a second signal exits at once); then it
//! receives for `--drain-ms` more and reports. Exit status: 0 on success, 1 when the
//! EAL or a port cannot be set up or `--wait-link` expires (one line `vsperf: error:
//! ...` on stderr), 2 for a bad command line.
//!
//! # Output
//!
//! Human-readable statistics go to stderr (every `--stats-period` seconds, and a
//! testpmd-style block at the end). Unless `-q`, the line `vsperf: traffic started`
//! on stderr marks time 0 of the run (and of the `timeline`), so scripts can align
//! external events with it. With `--json`, stdout carries exactly one JSON
//! object, a [`report::Report`]:
//!
//! ```json
//! {"tool":"vsperf","schema":1,"duration_s":1.2,"drain_s":0.2,"stopped_by":"duration","tsc_hz":2400000000,
//!  "started_unix_s":1763841600.25,
//!  "mbufs_in_use_at_exit":0,
//!  "ports":[{"index":0,"name":"net_ring0","devargs":"net_ring0","driver":"net_ring","mode":"latency",
//!    "link_up":true,"rx_pkts":1000,"rx_bytes":64000,"tx_pkts":1000,"tx_bytes":64000,"tx_dropped":0,
//!    "tx_alloc_failed":0,"rx_pps":833.3,"tx_pps":833.3,"rx_bps":426666.7,"tx_bps":426666.7,"duration_s":1.2,
//!    "rx_by_src_mac":{"02:00:00:00:00:01":1000},"rx_src_mac_other":0,"rx_by_ethertype":{"0x0800":1000},
//!    "pmd":{"ipackets":1000,"opackets":1000,"imissed":0,"ierrors":0,"oerrors":0,"rx_nombuf":0},
//!    "timeline":[[10,8],[20,10]],
//!    "samples":1000,"lost":0,"reordered":0,"p50_us":1.2,"p99_us":3.4,"p999_us":9.1,"max_us":12.0,
//!    "min_us":0.8,"mean_us":1.3}]}
//! ```
//!
//! `timeline` is present only with `--timeline-ms`; `samples` .. `mean_us` only in
//! latency mode. `started_unix_s` is the wall-clock time of the start of traffic
//! (time 0 of `timeline`), so other processes' events can be placed on that axis.
//! `link_events` (`[[t_ms, 0|1], ...]`, link down/up) is present only for
//! `net_virtio_user` ports in server mode (`server=1`): vsperf runs them with the
//! link-status-change interrupt, which is what makes them listen again when their
//! vhost-user client (a switch in client mode) leaves, as QEMU does (see [`engine`]). `lost` is `tx_pkts - samples`; `tx_dropped` (tx ring full) frames
//! were never sent and are not in `lost`.
//!
//! # Design
//!
//! Pure parts — [`rate`] (parsing and a time-injected pacer), [`frame`] (templates,
//! latency stamps), [`counters`], [`pcap`], [`cli`] — are unit-tested without DPDK.
//! [`c2c`] (`vsperf c2c`) needs no DPDK either: it measures a cache line's round trip
//! between two CPUs, which sets the speed of any ring between them.
//! [`engine`] is the only DPDK user and goes through `dpdk-sys`'s safe API; this
//! crate has no `unsafe`. One thread polls every port (see [`engine`] for the loop
//! and its ownership rules).
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod c2c;
pub mod cli;
pub mod counters;
pub mod engine;
pub mod frame;
pub mod pcap;
pub mod plot;
pub mod rate;
pub mod report;

/// Writes the pcap `gen-pcap` asks for; returns the number of records.
pub fn gen_pcap(a: &cli::GenPcapArgs) -> Result<usize, String> {
    let t = frame::Templates::build(&a.spec()).map_err(|e| e.to_string())?;
    let records = a.records.unwrap_or(t.flows());
    let f = std::fs::File::create(&a.out)
        .map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    let mut w = std::io::BufWriter::new(f);
    pcap::write_flows(&mut w, &t, records)
        .map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    std::io::Write::flush(&mut w).map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    Ok(records)
}

/// Draws the SVG `plot-timeline` asks for; returns the number of series drawn.
pub fn plot_timeline(a: &cli::PlotArgs) -> Result<usize, String> {
    let text = std::fs::read_to_string(&a.report)
        .map_err(|e| format!("cannot read {}: {e}", a.report.display()))?;
    let report: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .ok_or_else(|| format!("{} holds no JSON report", a.report.display()))?;
    let ports: Vec<usize> = if a.port.is_empty() {
        report["ports"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .enumerate()
                    .filter(|(_, p)| p["timeline"].is_array())
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        a.port.clone()
    };
    let series = plot::series_from_report(&report, &ports, &a.label)?;
    let mut markers = Vec::new();
    for m in &a.mark {
        let (t, text) = m
            .split_once('=')
            .ok_or_else(|| format!("--mark {m:?}: expected SECS=TEXT"))?;
        let t_s: f64 = t
            .trim()
            .parse()
            .map_err(|_| format!("--mark {m:?}: {t:?} is not a number of seconds"))?;
        markers.push(plot::Marker {
            t_s,
            text: text.to_string(),
        });
    }
    let svg = plot::svg(&a.title, &series, &markers, a.width, a.height);
    std::fs::write(&a.out, svg).map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    Ok(series.len())
}
