//! The DPDK side: open the ports, run the poll loop, collect the report.
//!
//! One thread — the EAL main lcore, pinned by the EAL to the first core of
//! `--lcores` — owns every port's rx queue 0 and tx queue 0 (tokens from
//! `dpdk-sys`) and polls them round-robin; nothing else touches them. Per iteration
//! it reads the TSC once, then for each port: receive a burst and act on it by mode,
//! then (generators only) ask the port's [`Pacer`] how many frames are due and send
//! them. Frames are built by copying a precomputed template into a freshly allocated
//! mbuf (testpmd txonly's scheme); no allocation on the heap per packet or per burst.
//!
//! Ownership of mbufs: everything received or allocated is either accepted by a
//! `tx_burst` or freed in the same iteration (`Burst::free_all`), so at the end the
//! pool is whole once the ports are stopped and closed; the report says so
//! (`mbufs_in_use_at_exit`).
//!
//! Link watch: a `net_virtio_user` port in server mode (`server=1`, vsperf playing a
//! QEMU that serves the vhost-user socket) must go back to listening when its
//! vhost-user client (the switch) leaves, as QEMU does, so a restarted switch in
//! client mode finds it again. DPDK 22.11 does that only from the link-status-change
//! interrupt (testpmd's default, `intr_conf.lsc`): the EAL interrupt thread sees the
//! connection close, closes its end, listens, accepts the next client and
//! renegotiates. Without the interrupt the port notices nothing until someone reads
//! its link, and a link read from the poll loop would start the same recovery with
//! nobody to undo its interrupt registrations at close (the interrupt thread then
//! panics on a closed descriptor at exit). So such ports are configured with the
//! interrupt on; the poll loop reads their link (then a plain read of the state the
//! interrupt thread recorded) every [`LINK_POLL_MS`] ms, and logs and reports the
//! changes (`link_events`).
//!
//! Ending: at `--duration`, when every port with a `--count` has reached it, or when
//! the stop flag (SIGINT/SIGTERM) is set. Generation stops first, then the loop keeps
//! receiving (and echo/io ports keep forwarding) for `--drain-ms` so frames in flight
//! are counted.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dpdk_sys::eal::rdtsc;
use dpdk_sys::{Burst, Eal, EalError, Mempool, Port, PortError, RxQueue, TxQueue};
use policy::wire::{Flow, MacAddr};

use crate::cli::{Mode, PortConfig, RunConfig};
use crate::counters::{mac_string, LatencyTracker, PortCounters, RxClass, Timeline};
use crate::frame::{read_stamp, stamp, FrameError, Templates};
use crate::rate::Pacer;
use crate::report::{PmdStats, PortReport, Report, SCHEMA};

/// Largest burst (rx and generated tx).
pub const MAX_BURST: usize = 64;

/// How often the link of a watched port is read (see the module doc), ms.
pub const LINK_POLL_MS: u64 = 1;

/// True for the ports configured with the link-status-change interrupt and whose
/// link changes the poll loop records: `net_virtio_user` in server mode
/// (`server=1`), which goes back to listening after its vhost-user client left only
/// through that interrupt (see the module doc).
pub fn watches_link(devargs: &str) -> bool {
    let mut parts = devargs.split(',').map(str::trim);
    let name = parts.next().unwrap_or("");
    name.starts_with("net_virtio_user")
        && parts.any(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| k.trim() == "server" && v.trim() == "1")
        })
}

/// Link state of a watched port and the changes seen.
struct LinkWatch {
    up: bool,
    /// `[t_ms, up]` from the start of traffic.
    events: Vec<[u64; 2]>,
}

/// Why a run could not start (every message is one line).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// EAL init failed.
    #[error(transparent)]
    Eal(#[from] EalError),
    /// Mempool creation failed.
    #[error("{0}")]
    Pool(String),
    /// A port could not be opened or set up.
    #[error("port {index} ({devargs}): {source}")]
    Port {
        /// Command-line position.
        index: usize,
        /// Devargs.
        devargs: String,
        /// Cause.
        source: PortError,
    },
    /// A frame template could not be built.
    #[error("port {index}: {source}")]
    Frame {
        /// Command-line position.
        index: usize,
        /// Cause.
        source: FrameError,
    },
    /// `--wait-link` expired.
    #[error(
        "link of port {index} ({devargs}) still down after --wait-link {secs} s; is the peer (vhost/virtio) connected?"
    )]
    LinkTimeout {
        /// Command-line position.
        index: usize,
        /// Devargs.
        devargs: String,
        /// Seconds waited.
        secs: f64,
    },
}

/// One port's state, owned by the poll thread.
struct PortState<'c> {
    cfg: &'c PortConfig,
    port: Port,
    name: String,
    driver: String,
    rxq: RxQueue,
    tpl: Option<Templates>,
    pacer: Pacer,
    next_flow: usize,
    c: PortCounters,
    class: RxClass,
    timeline: Timeline,
    lat: Option<LatencyTracker>,
    done: bool,
    /// TSC when `done` became true.
    done_at: Option<u64>,
    last_print: PortCounters,
    /// Set for ports whose link the loop reads ([`watches_link`]).
    link_watch: Option<LinkWatch>,
}

impl PortState<'_> {
    fn generated(&self) -> u64 {
        self.pacer.total()
    }

    /// Receives one burst and acts on it. *Fast path*.
    #[inline]
    fn poll_rx(
        &mut self,
        txqs: &mut [TxQueue],
        me: usize,
        rx: &mut Burst<MAX_BURST>,
        tx: &mut Burst<MAX_BURST>,
    ) -> Forwarded {
        let n = self.rxq.rx_burst(rx);
        if n == 0 {
            return Forwarded::default();
        }
        self.c.rx_pkts += n as u64;
        let now = if self.lat.is_some() { rdtsc() } else { 0 };
        for m in rx.as_slice() {
            let d = m.data();
            self.c.rx_bytes += m.pkt_len() as u64;
            self.class.count(d);
            if let Some(lat) = self.lat.as_mut() {
                if let Ok(f) = Flow::parse(d) {
                    if f.has_l4 && f.proto == 17 {
                        if let Some((seq, tsc)) = read_stamp(d, f.payload_offset as usize) {
                            lat.record(seq, tsc, now);
                        }
                    }
                }
            }
        }
        if let Some(count) = self.cfg.count {
            if !self.cfg.mode.generates() && self.c.rx_pkts >= count && !self.done {
                self.done = true;
                self.done_at = Some(rdtsc());
            }
        }
        match self.cfg.mode {
            Mode::Echo => {
                for mut m in rx.drain() {
                    if let Some(d) = m.data_mut() {
                        if d.len() >= 12 {
                            let (dst, src) = d[..12].split_at_mut(6);
                            dst.swap_with_slice(src);
                        }
                    }
                    // tx has room for everything rx held (same capacity).
                    let _ = tx.push(m);
                }
                forward(&mut txqs[me], me, tx)
            }
            Mode::Io => {
                let peer = self.cfg.peer.unwrap_or(me);
                forward(&mut txqs[peer], peer, rx)
            }
            _ => {
                rx.free_all();
                Forwarded::default()
            }
        }
    }

    /// Counts `sent` frames and frees (as dropped) what the PMD left in `left`.
    #[inline]
    fn account_tx(&mut self, sent: usize, left: &mut Burst<MAX_BURST>) {
        self.c.tx_pkts += sent as u64;
        self.c.tx_dropped += left.len() as u64;
        left.free_all();
    }

    /// Generates and sends the frames due at `now`; returns how many it made. *Fast path*.
    #[inline]
    fn poll_tx(
        &mut self,
        txq: &mut TxQueue,
        pool: &Mempool,
        now: u64,
        burst: usize,
        tx: &mut Burst<MAX_BURST>,
    ) -> u64 {
        let Some(tpl) = self.tpl.as_ref() else {
            return 0;
        };
        if self.done {
            return 0;
        }
        let mut cap = burst as u64;
        if let Some(count) = self.cfg.count {
            cap = cap.min(count - self.generated());
        }
        let due = self.pacer.due(now, cap);
        if due == 0 {
            return 0;
        }
        let len = tpl.frame_len();
        let off = tpl.payload_offset();
        let mut made = 0u64;
        // One bulk allocation for the burst; mbuf by mbuf only when the pool runs low.
        let start = tx.len();
        if !tx.alloc_from(pool, due as usize) {
            for _ in 0..due {
                let Some(m) = pool.alloc() else {
                    self.c.alloc_failed += 1;
                    break;
                };
                if tx.push(m).is_err() {
                    break;
                }
            }
        }
        let first_seq = self.generated();
        let flows = tpl.flows();
        let mut keep = start;
        for i in start..tx.len() {
            let m = &mut tx.as_mut_slice()[i];
            let Some(d) = m.append(len as u16) else {
                self.c.alloc_failed += 1;
                break;
            };
            tpl.write(self.next_flow, d);
            if self.lat.is_some() {
                stamp(d, off, first_seq + made, rdtsc());
            }
            self.next_flow += 1;
            if self.next_flow == flows {
                self.next_flow = 0;
            }
            made += 1;
            keep = i + 1;
        }
        // Mbufs that could not take a frame (not expected: the pool's data room is
        // sized for the largest frame) go back to the pool, not on the wire.
        tx.truncate(keep);
        self.pacer.issued(made);
        let sent = txq.tx_burst(tx);
        self.c.tx_bytes += (sent * len) as u64;
        self.account_tx(sent, tx);
        if let Some(count) = self.cfg.count {
            if self.generated() >= count {
                self.done = true;
                self.done_at = Some(now);
            }
        }
        made
    }
}

/// What an echo or io port transmitted on `port` (counted on that port).
#[derive(Debug, Clone, Copy, Default)]
struct Forwarded {
    port: usize,
    pkts: u64,
    bytes: u64,
    dropped: u64,
}

/// Sends `b` on `txq` (port index `port`), frees what the PMD refused.
#[inline]
fn forward(txq: &mut TxQueue, port: usize, b: &mut Burst<MAX_BURST>) -> Forwarded {
    let bytes = burst_bytes(b);
    let sent = txq.tx_burst(b);
    let f = Forwarded {
        port,
        pkts: sent as u64,
        bytes: bytes - burst_bytes(b),
        dropped: b.len() as u64,
    };
    b.free_all();
    f
}

#[inline]
fn burst_bytes(b: &Burst<MAX_BURST>) -> u64 {
    b.as_slice().iter().map(|m| m.pkt_len() as u64).sum()
}

fn rate_str(v: f64, unit: &str) -> String {
    if v >= 1e9 {
        format!("{:.2} G{unit}", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M{unit}", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} k{unit}", v / 1e3)
    } else {
        format!("{v:.0} {unit}")
    }
}

/// Opens the ports, runs the traffic and returns the report. Human-readable output
/// goes to `log` (stderr in the binary). `stop` is polled every iteration.
///
/// The EAL is cleaned up and its runtime directory removed before this returns,
/// also on failure: call it once per process.
pub fn run(cfg: &RunConfig, stop: &AtomicBool, log: &mut dyn Write) -> Result<Report, RunError> {
    let eal = match Eal::init(&cfg.eal_args) {
        Ok(e) => e,
        Err(e) => {
            remove_runtime_dir(&cfg.file_prefix);
            return Err(e.into());
        }
    };
    let r = run_ports(eal, cfg, stop, log);
    dpdk_sys::eal::cleanup(eal);
    remove_runtime_dir(&cfg.file_prefix);
    r
}

fn run_ports(
    eal: &'static Eal,
    cfg: &RunConfig,
    stop: &AtomicBool,
    log: &mut dyn Write,
) -> Result<Report, RunError> {
    let hz = eal.tsc_hz();
    let max_size = cfg.ports.iter().map(|p| p.frame.size).max().unwrap_or(64);
    let data_room = (max_size.max(2048) + 128).min(u16::MAX as usize) as u16;
    let pool = Mempool::new(
        eal,
        "vsperf_pool",
        cfg.mbufs,
        256.min(cfg.mbufs / 2),
        data_room,
    )
    .map_err(RunError::Pool)?;

    let mut states = Vec::with_capacity(cfg.ports.len());
    let mut txqs = Vec::with_capacity(cfg.ports.len());
    for (index, pc) in cfg.ports.iter().enumerate() {
        let perr = |source| RunError::Port {
            index,
            devargs: pc.devargs.clone(),
            source,
        };
        // Ports are started in order, so a net_vhost port listed before a
        // net_virtio_user port in the same process has its socket ready.
        let port = Port::attach(eal, &pc.devargs).map_err(perr)?;
        let info = port.info().map_err(perr)?;
        port.configure_with_lsc(1, 1, cfg.nb_desc, &pool, watches_link(&pc.devargs))
            .map_err(perr)?;
        if let Err(e) = port.set_promiscuous(true) {
            let _ = writeln!(log, "vsperf: warning: port {index}: {e}");
        }
        port.start().map_err(perr)?;
        let rxq = port.rx_queue(0).map_err(perr)?;
        txqs.push(port.tx_queue(0).map_err(perr)?);
        let tpl = if pc.mode.generates() {
            let mut spec = pc.frame.clone();
            spec.src_mac = pc.src_mac.unwrap_or(MacAddr(port.mac()));
            Some(Templates::build(&spec).map_err(|source| RunError::Frame { index, source })?)
        } else {
            None
        };
        let pps = tpl.as_ref().and_then(|t| pc.rate.pps(t.frame_len()));
        states.push(PortState {
            cfg: pc,
            port,
            name: port.name(),
            driver: info.driver,
            rxq,
            tpl,
            pacer: Pacer::new(pps, hz, 0),
            next_flow: 0,
            c: PortCounters::default(),
            class: RxClass::default(),
            timeline: Timeline::default(),
            lat: (pc.mode == Mode::Latency).then(|| LatencyTracker::new(hz)),
            done: false,
            done_at: None,
            last_print: PortCounters::default(),
            link_watch: watches_link(&pc.devargs).then(|| LinkWatch {
                up: port.link().up,
                events: Vec::new(),
            }),
        });
    }

    if cfg.wait_link > 0.0 {
        let t0 = Instant::now();
        for (index, st) in states.iter().enumerate() {
            while !st.port.link().up {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if t0.elapsed().as_secs_f64() > cfg.wait_link {
                    return Err(RunError::LinkTimeout {
                        index,
                        devargs: st.cfg.devargs.clone(),
                        secs: cfg.wait_link,
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    if !cfg.quiet {
        for (i, st) in states.iter().enumerate() {
            let what = match (&st.tpl, st.cfg.mode) {
                (Some(t), _) => format!(
                    "{} B x {} flows at {} {}",
                    t.frame_len(),
                    t.flows(),
                    st.cfg.rate,
                    st.cfg
                        .count
                        .map(|c| format!("count {c}"))
                        .unwrap_or_default()
                ),
                (None, Mode::Io) => format!("-> port {}", st.cfg.peer.unwrap_or(i)),
                _ => String::new(),
            };
            let _ = writeln!(
                log,
                "vsperf: port {i} {} ({}) mode {} {what}",
                st.name, st.driver, st.cfg.mode
            );
        }
    }

    let burst = cfg.burst.min(MAX_BURST);
    let mut rx = Burst::<MAX_BURST>::new();
    let mut tx = Burst::<MAX_BURST>::new();
    let start = rdtsc();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if !cfg.quiet {
        // Scripts align external events (a link pull) with the timeline on this line.
        let _ = writeln!(log, "vsperf: traffic started");
        let _ = log.flush();
    }
    for st in states.iter_mut() {
        st.pacer = Pacer::new(
            st.tpl.as_ref().and_then(|t| st.cfg.rate.pps(t.frame_len())),
            hz,
            start,
        );
    }
    let secs = |t: u64| t.saturating_sub(start) as f64 / hz as f64;
    let end_at = cfg
        .duration
        .map(|d| start.saturating_add((d * hz as f64) as u64));
    let period = (cfg.stats_period * hz as f64) as u64;
    let mut next_print = if period > 0 && !cfg.quiet {
        start.saturating_add(period)
    } else {
        u64::MAX
    };
    let mut last_print_t = start;
    let tl_period = ms_to_ticks(cfg.timeline_ms, hz);
    let mut next_tl = if tl_period > 0 {
        start.saturating_add(tl_period)
    } else {
        u64::MAX
    };
    let link_period = (LINK_POLL_MS * hz / 1000).max(1);
    let mut next_link = if states.iter().any(|s| s.link_watch.is_some()) {
        start + link_period
    } else {
        u64::MAX
    };
    let counted = states.iter().any(|s| s.cfg.count.is_some());
    let mut stopped_by: Option<&'static str> = None;
    let mut drain_end = u64::MAX;
    let mut traffic_end = u64::MAX;
    let idle_sleep = Duration::from_micros(cfg.idle_sleep_us);

    loop {
        let now = rdtsc();
        if stopped_by.is_none() {
            if stop.load(Ordering::Relaxed) {
                stopped_by = Some("signal");
            } else if end_at.is_some_and(|e| now >= e) {
                stopped_by = Some("duration");
            } else if counted && states.iter().all(|s| s.cfg.count.is_none() || s.done) {
                stopped_by = Some("count");
            }
            if stopped_by.is_some() {
                traffic_end = now;
                drain_end = now.saturating_add(ms_to_ticks(cfg.drain_ms, hz));
            }
        } else if now >= drain_end || stop.load(Ordering::Relaxed) && stopped_by != Some("signal") {
            break;
        }
        let mut moved = false;
        for i in 0..states.len() {
            let rx_before = states[i].c.rx_pkts;
            let f = states[i].poll_rx(&mut txqs, i, &mut rx, &mut tx);
            if f.pkts + f.dropped > 0 {
                let c = &mut states[f.port].c;
                c.tx_pkts += f.pkts;
                c.tx_bytes += f.bytes;
                c.tx_dropped += f.dropped;
            }
            let st = &mut states[i];
            moved |= st.c.rx_pkts != rx_before;
            if stopped_by.is_none() && st.tpl.is_some() {
                moved |= st.poll_tx(&mut txqs[i], &pool, now, burst, &mut tx) > 0;
            }
        }
        if !moved && !idle_sleep.is_zero() {
            std::thread::sleep(idle_sleep);
        }
        if now >= next_tl {
            let t_ms = ticks_to_ms(now.saturating_sub(start), hz);
            for st in states.iter_mut() {
                st.timeline.sample(t_ms, st.c.rx_pkts);
            }
            next_tl = next_tl.saturating_add(tl_period);
        }
        if now >= next_link {
            let t_ms = ticks_to_ms(now.saturating_sub(start), hz);
            for (i, st) in states.iter_mut().enumerate() {
                let Some(w) = st.link_watch.as_mut() else {
                    continue;
                };
                let up = st.port.link().up;
                if up != w.up {
                    w.up = up;
                    w.events.push([t_ms, up as u64]);
                    if !cfg.quiet {
                        let _ = writeln!(
                            log,
                            "[{:7.3}s] vsperf: port {i} {} link {}",
                            secs(now),
                            st.name,
                            if up { "up" } else { "down" }
                        );
                    }
                }
            }
            next_link = now + link_period;
        }
        if now >= next_print {
            let dt = secs(now) - secs(last_print_t);
            for (i, st) in states.iter_mut().enumerate() {
                let d_rx = (st.c.rx_pkts - st.last_print.rx_pkts) as f64 / dt;
                let d_tx = (st.c.tx_pkts - st.last_print.tx_pkts) as f64 / dt;
                let b_rx = (st.c.rx_bytes - st.last_print.rx_bytes) as f64 * 8.0 / dt;
                let b_tx = (st.c.tx_bytes - st.last_print.tx_bytes) as f64 * 8.0 / dt;
                let _ = writeln!(
                    log,
                    "[{:7.2}s] port {i} {:<14} {:<7} rx {:>10} ({}, {}) tx {:>10} ({}, {}) drop {}",
                    secs(now),
                    st.name,
                    st.cfg.mode.to_string(),
                    st.c.rx_pkts,
                    rate_str(d_rx, "pps"),
                    rate_str(b_rx, "bps"),
                    st.c.tx_pkts,
                    rate_str(d_tx, "pps"),
                    rate_str(b_tx, "bps"),
                    st.c.tx_dropped
                );
                st.last_print = st.c;
            }
            last_print_t = now;
            next_print = next_print.saturating_add(period);
        }
    }
    let end = rdtsc();
    let duration_s = secs(traffic_end.min(end));
    let drain_s = secs(end) - duration_s;
    if tl_period > 0 {
        let t_ms = ticks_to_ms(end.saturating_sub(start), hz);
        for st in states.iter_mut() {
            if st.timeline.samples.last().map(|s| s[0]) != Some(t_ms) {
                st.timeline.sample(t_ms, st.c.rx_pkts);
            }
        }
    }
    drop(rx);
    drop(tx);

    let mut reports = Vec::with_capacity(states.len());
    for (index, st) in states.iter().enumerate() {
        let s = st.port.stats();
        let port_s = st.done_at.map_or(duration_s, |t| secs(t).min(duration_s));
        let d = port_s.max(1e-9);
        let mut r = PortReport {
            index,
            name: st.name.clone(),
            devargs: st.cfg.devargs.clone(),
            driver: st.driver.clone(),
            mode: st.cfg.mode.to_string(),
            link_up: st.port.link().up,
            rx_pkts: st.c.rx_pkts,
            rx_bytes: st.c.rx_bytes,
            tx_pkts: st.c.tx_pkts,
            tx_bytes: st.c.tx_bytes,
            tx_dropped: st.c.tx_dropped,
            tx_alloc_failed: st.c.alloc_failed,
            rx_pps: st.c.rx_pkts as f64 / d,
            tx_pps: st.c.tx_pkts as f64 / d,
            rx_bps: st.c.rx_bytes as f64 * 8.0 / d,
            tx_bps: st.c.tx_bytes as f64 * 8.0 / d,
            duration_s: port_s,
            rx_by_src_mac: st
                .class
                .by_src_mac
                .top(64)
                .into_iter()
                .map(|(k, v)| (mac_string(k), v))
                .collect(),
            rx_src_mac_other: st.class.by_src_mac.rest(64),
            rx_by_ethertype: st
                .class
                .by_ethertype
                .top(16)
                .into_iter()
                .map(|(k, v)| (format!("0x{k:04x}"), v))
                .collect(),
            pmd: PmdStats {
                ipackets: s.ipackets,
                opackets: s.opackets,
                imissed: s.imissed,
                ierrors: s.ierrors,
                oerrors: s.oerrors,
                rx_nombuf: s.rx_nombuf,
            },
            timeline: (tl_period > 0).then(|| st.timeline.samples.clone()),
            link_events: st.link_watch.as_ref().map(|w| w.events.clone()),
            samples: None,
            lost: None,
            reordered: None,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            max_us: None,
            min_us: None,
            mean_us: None,
        };
        if let Some(l) = &st.lat {
            r.samples = Some(l.samples);
            r.lost = Some(st.c.tx_pkts.saturating_sub(l.samples));
            r.reordered = Some(l.reordered);
            r.p50_us = Some(l.quantile_us(0.5));
            r.p99_us = Some(l.quantile_us(0.99));
            r.p999_us = Some(l.quantile_us(0.999));
            r.max_us = Some(l.max_us());
            r.min_us = Some(l.min_us());
            r.mean_us = Some(l.mean_us());
        }
        reports.push(r);
    }

    // Stop and close every port so the PMDs hand back the mbufs they hold, then
    // check the pool is whole.
    drop(txqs);
    for st in states.iter() {
        if let Err(e) = st.port.stop() {
            let _ = writeln!(log, "vsperf: warning: {e}");
        }
    }
    // The queue tokens go first: a port is not closed under its own queues.
    let ports: Vec<Port> = states.iter().map(|st| st.port).collect();
    drop(states);
    for port in &ports {
        if let Err(e) = port.close() {
            let _ = writeln!(log, "vsperf: warning: {e}");
        }
    }
    let in_use = pool.in_use();
    let report = Report {
        tool: "vsperf".into(),
        schema: SCHEMA,
        duration_s,
        drain_s,
        stopped_by: stopped_by.unwrap_or("signal").into(),
        tsc_hz: hz,
        started_unix_s,
        mbufs_in_use_at_exit: in_use,
        ports: reports,
    };
    if !cfg.quiet {
        print_summary(&report, log);
    }
    Ok(report)
}

/// Removes the EAL runtime directory of `prefix` (config, fbarrays, mp socket: about
/// 13 MB of tmpfs per run with `--no-huge`), which the EAL leaves behind. Only a
/// directory that looks like an EAL runtime directory (it has a `config` file) is
/// removed; this process was its primary and has cleaned up the EAL.
fn remove_runtime_dir(prefix: &str) {
    if prefix.is_empty() || prefix.contains('/') || prefix.starts_with('.') {
        return;
    }
    let mut bases = vec![std::path::PathBuf::from("/var/run/dpdk")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        bases.push(std::path::PathBuf::from(x).join("dpdk"));
    }
    bases.push(std::path::PathBuf::from("/tmp/dpdk"));
    for b in bases {
        let d = b.join(prefix);
        if d.join("config").is_file() {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}

/// testpmd-style final statistics.
pub fn print_summary(r: &Report, log: &mut dyn Write) {
    for p in &r.ports {
        let _ = writeln!(
            log,
            "  ---------------------- Forward statistics for port {} ({}, {}, {}) ----------------------",
            p.index, p.name, p.driver, p.mode
        );
        let _ = writeln!(
            log,
            "  RX-packets: {:<14} RX-bytes: {:<16} RX-pps: {:<12.0} RX-bps: {}",
            p.rx_pkts,
            p.rx_bytes,
            p.rx_pps,
            rate_str(p.rx_bps, "bps")
        );
        let _ = writeln!(
            log,
            "  TX-packets: {:<14} TX-bytes: {:<16} TX-pps: {:<12.0} TX-bps: {}  TX-dropped: {}",
            p.tx_pkts,
            p.tx_bytes,
            p.tx_pps,
            rate_str(p.tx_bps, "bps"),
            p.tx_dropped
        );
        if let (Some(s), Some(l), Some(o)) = (p.samples, p.lost, p.reordered) {
            let _ = writeln!(
                log,
                "  Latency: samples {s} lost {l} reordered {o}  p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
                p.p50_us.unwrap_or(0.0),
                p.p99_us.unwrap_or(0.0),
                p.p999_us.unwrap_or(0.0),
                p.max_us.unwrap_or(0.0)
            );
        }
        if !p.rx_by_src_mac.is_empty() {
            let macs: Vec<String> = p
                .rx_by_src_mac
                .iter()
                .take(8)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                log,
                "  RX by source MAC: {}{}",
                macs.join(" "),
                if p.rx_by_src_mac.len() > 8 {
                    " ..."
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(
        log,
        "  ---- {:.3} s of traffic + {:.3} s drain, stopped by {}, mbufs in use at exit: {} ----",
        r.duration_s, r.drain_s, r.stopped_by, r.mbufs_in_use_at_exit
    );
}

/// `ms` milliseconds in TSC ticks at `hz`, saturating (128-bit product).
fn ms_to_ticks(ms: u64, hz: u64) -> u64 {
    (ms as u128 * hz as u128 / 1000).min(u64::MAX as u128) as u64
}

/// `ticks` TSC ticks at `hz` in milliseconds (128-bit product: `ticks * 1000` in 64
/// bits wraps after about 89 days at 2.4 GHz).
fn ticks_to_ms(ticks: u64, hz: u64) -> u64 {
    (ticks as u128 * 1000 / hz.max(1) as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::{ms_to_ticks, ticks_to_ms, watches_link};

    #[test]
    fn tick_conversions_do_not_wrap() {
        let hz = 2_400_000_000;
        assert_eq!(ms_to_ticks(1500, hz), 3_600_000_000);
        assert_eq!(ms_to_ticks(u64::MAX, hz), u64::MAX);
        // 100 days of ticks: `ticks * 1000` is beyond 64 bits.
        let days_100 = 100 * 86_400 * hz;
        assert_eq!(ticks_to_ms(days_100, hz), 100 * 86_400_000);
        assert_eq!(ticks_to_ms(5, 0), 5000);
    }

    #[test]
    fn only_virtio_user_servers_are_watched() {
        assert!(watches_link(
            "net_virtio_user0,path=/tmp/a.sock,server=1,queues=1"
        ));
        assert!(watches_link("net_virtio_user1, server = 1"));
        assert!(!watches_link("net_virtio_user0,path=/tmp/a.sock,queues=1"));
        assert!(!watches_link("net_virtio_user0,path=/tmp/a.sock,server=0"));
        assert!(!watches_link("net_vhost0,iface=/tmp/a.sock,server=1"));
        assert!(!watches_link("net_tap0,iface=x"));
        assert!(!watches_link(""));
    }
}
