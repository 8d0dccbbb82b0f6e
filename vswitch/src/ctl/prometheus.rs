//! Prometheus text exposition (format 0.0.4) over a tiny HTTP/1.1 server.
//!
//! Off by default; the daemon starts it when a listen address is configured (keep it
//! on a local or management address: there is no authentication). One thread
//! (`prometheus`) accepts connections and answers them one at a time — scrapes are
//! rare and small, so a thread per connection would buy nothing. Each connection
//! gets a 2 s read/write timeout and one response (`Connection: close`); only
//! `GET /metrics` (and `GET /`) are served, anything else is 404/405, a request head
//! over 8 KiB is 431. Hand-written on `std::net::TcpListener` rather than
//! `tiny_http`: one route, no keep-alive, no bodies to parse — a dependency would be
//! more code to audit than this.
//!
//! Metrics are rendered from the same [`ControlApi`] data `vsctl` shows ([`render`]
//! is pure and unit-tested):
//!
//! | metric | labels |
//! |---|---|
//! | `vswitch_port_{rx,tx}_{packets,bytes}_total` | `port`, `kind` |
//! | `vswitch_port_drops_total` | `port`, `kind`, `reason` |
//! | `vswitch_member_link_up`, `vswitch_member_usable` | `uplink`, `member` |
//! | `vswitch_member_state` (1 for the current state) | `uplink`, `member`, `state`, `reason` |
//! | `vswitch_uplink_degraded` | `uplink` |
//! | `vswitch_lacp_negotiated`, `vswitch_lacp_fallback_active` | `bond` |
//! | `vswitch_lacp_member_enabled` | `bond`, `member` |
//! | `vswitch_vnic_{entitled,used}_bps`, `vswitch_vnic_{shares,priority,link_up}` | `vnic`, `vm`, `uplink` |
//! | `vswitch_vnic_member` (1 for the member carrying it) | `vnic`, `uplink`, `member` |
//! | `vswitch_pmd_iterations_total`, `vswitch_pmd_busy_ratio`, `vswitch_pmd_cycles_per_packet`, `vswitch_pmd_sleep_iterations_total`, `vswitch_pmd_sleep_ratio` | `worker`, `core` |
//! | `vswitch_snapshot_generation` | — |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{ControlApi, CtlError, LacpShow, PmdStats, ShowTree, StatsShow};

const MAX_HEAD: usize = 8 * 1024;

/// Starts the exporter on `addr` (port 0 picks a free port). Returns the bound
/// address and the thread, which stops within 100 ms of `quit` being set.
pub fn serve(
    addr: SocketAddr,
    api: Arc<dyn ControlApi>,
    quit: Arc<AtomicBool>,
) -> Result<(SocketAddr, JoinHandle<()>), CtlError> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| CtlError::Io(format!("cannot listen for Prometheus on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CtlError::Io(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| CtlError::Io(e.to_string()))?;
    let h = std::thread::Builder::new()
        .name("prometheus".into())
        .spawn(move || {
            while !quit.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => answer(s, &*api),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        crate::nap::nap(Duration::from_millis(50))
                    }
                    Err(e) => {
                        tracing::warn!("prometheus accept failed: {e}");
                        crate::nap::nap(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|e| CtlError::Io(format!("cannot start the Prometheus thread: {e}")))?;
    Ok((local, h))
}

fn answer(mut s: TcpStream, api: &dyn ControlApi) {
    let t = Some(Duration::from_secs(2));
    if s.set_nonblocking(false).is_err()
        || s.set_read_timeout(t).is_err()
        || s.set_write_timeout(t).is_err()
    {
        return;
    }
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return reply(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            );
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(_) => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        // A panicking API call (a bug) answers 500 instead of ending the exporter
        // thread, as the control socket's server does.
        ("GET", "/metrics") => {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| collect(api)))
                .unwrap_or_else(|_| {
                    Err(CtlError::Internal(
                        "the metrics could not be gathered (a bug; see the log)".into(),
                    ))
                }) {
                Ok(body) => reply(
                    &mut s,
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    &body,
                ),
                Err(e) => reply(
                    &mut s,
                    "500 Internal Server Error",
                    "text/plain",
                    &format!("{e}\n"),
                ),
            }
        }
        ("GET", "/") => reply(
            &mut s,
            "200 OK",
            "text/plain",
            "vswitchd metrics: GET /metrics\n",
        ),
        ("GET", _) => reply(
            &mut s,
            "404 Not Found",
            "text/plain",
            "not found; try /metrics\n",
        ),
        _ => reply(
            &mut s,
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n",
        ),
    }
}

fn reply(s: &mut TcpStream, status: &str, ctype: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(msg.as_bytes());
    // Lingering close: stop writing, then drain what the client still sends (up to a
    // bound), so closing with unread input does not reset the connection before the
    // client has read the response.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match s.read(&mut sink) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// Gathers the data from the API and renders it. `show` and `stats` are required;
/// PMD and LACP data are included when the API provides them.
pub fn collect(api: &dyn ControlApi) -> Result<String, CtlError> {
    let show = api.show()?;
    let stats = api.stats(None)?;
    let pmd = api.pmd_stats().unwrap_or_default();
    let lacp = api.lacp_show(None).unwrap_or_default();
    Ok(render(&show, &stats, &pmd, &lacp))
}

/// Escapes a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// Metric families in first-use order, each with HELP/TYPE and its samples.
#[derive(Default)]
struct Families {
    order: Vec<&'static str>,
    fams: BTreeMap<&'static str, (&'static str, &'static str, String)>,
}

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        let e = self.fams.entry(name).or_insert_with(|| {
            self.order.push(name);
            (kind, help, String::new())
        });
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
            .collect();
        let value = if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        };
        if l.is_empty() {
            let _ = writeln!(e.2, "{name} {value}");
        } else {
            let _ = writeln!(e.2, "{name}{{{}}} {value}", l.join(","));
        }
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for name in self.order {
            let (kind, help, samples) = &self.fams[name];
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            out.push_str(samples);
        }
        out
    }
}

fn b(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

/// Renders the exposition text.
pub fn render(show: &ShowTree, stats: &StatsShow, pmd: &[PmdStats], lacp: &[LacpShow]) -> String {
    let mut f = Families::default();
    f.add(
        "vswitch_snapshot_generation",
        "gauge",
        "Configuration snapshot generation the workers run with.",
        &[],
        show.generation as f64,
    );
    for p in &stats.ports {
        let l = [("port", p.name.as_str()), ("kind", p.kind.as_str())];
        f.add(
            "vswitch_port_rx_packets_total",
            "counter",
            "Frames received on the port.",
            &l,
            p.rx_pkts as f64,
        );
        f.add(
            "vswitch_port_rx_bytes_total",
            "counter",
            "Bytes received on the port.",
            &l,
            p.rx_bytes as f64,
        );
        f.add(
            "vswitch_port_tx_packets_total",
            "counter",
            "Frames transmitted on the port.",
            &l,
            p.tx_pkts as f64,
        );
        f.add(
            "vswitch_port_tx_bytes_total",
            "counter",
            "Bytes transmitted on the port.",
            &l,
            p.tx_bytes as f64,
        );
        f.add(
            "vswitch_port_link_up",
            "gauge",
            "1 when the port's link is up.",
            &l,
            b(p.link_up),
        );
        for (reason, n) in &p.drops {
            let l = [
                ("port", p.name.as_str()),
                ("kind", p.kind.as_str()),
                ("reason", reason.as_str()),
            ];
            f.add(
                "vswitch_port_drops_total",
                "counter",
                "Frames dropped, by port and reason.",
                &l,
                *n as f64,
            );
        }
    }
    for u in &show.uplinks {
        f.add(
            "vswitch_uplink_degraded",
            "gauge",
            "1 when a bond has fewer usable members than configured.",
            &[("uplink", &u.name)],
            b(u.degraded),
        );
        for m in &u.members {
            let l = [("uplink", u.name.as_str()), ("member", m.name.as_str())];
            f.add(
                "vswitch_member_link_up",
                "gauge",
                "1 when the member's carrier is up.",
                &l,
                b(m.link_up),
            );
            f.add(
                "vswitch_member_usable",
                "gauge",
                "1 when the member carries traffic.",
                &l,
                b(m.usable),
            );
            let l = [
                ("uplink", u.name.as_str()),
                ("member", m.name.as_str()),
                ("state", m.state.as_str()),
                ("reason", m.reason.as_str()),
            ];
            f.add(
                "vswitch_member_state",
                "gauge",
                "1 for the member's current state and reason.",
                &l,
                1.0,
            );
        }
    }
    for l in lacp {
        f.add(
            "vswitch_lacp_negotiated",
            "gauge",
            "1 when some member of the bond hears a LACP partner.",
            &[("bond", &l.bond)],
            b(l.negotiated),
        );
        f.add(
            "vswitch_lacp_fallback_active",
            "gauge",
            "1 when the bond runs in LACP fallback.",
            &[("bond", &l.bond)],
            b(l.fallback_active),
        );
        for m in &l.members {
            let lab = [("bond", l.bond.as_str()), ("member", m.name.as_str())];
            f.add(
                "vswitch_lacp_member_enabled",
                "gauge",
                "1 when LACP lets the member carry traffic.",
                &lab,
                b(m.may_enable),
            );
        }
    }
    for vm in &show.vms {
        for v in &vm.vnics {
            let l = [
                ("vnic", v.name.as_str()),
                ("vm", v.vm.as_str()),
                ("uplink", v.uplink.as_str()),
            ];
            f.add(
                "vswitch_vnic_entitled_bps",
                "gauge",
                "Rate the share allocator entitles the vNIC to, bit/s.",
                &l,
                v.entitled_bps as f64,
            );
            f.add(
                "vswitch_vnic_used_bps",
                "gauge",
                "Rate the vNIC sends at, bit/s.",
                &l,
                v.used_bps as f64,
            );
            f.add(
                "vswitch_vnic_shares",
                "gauge",
                "Effective shares of the vNIC.",
                &l,
                v.shares as f64,
            );
            f.add(
                "vswitch_vnic_priority",
                "gauge",
                "Effective priority of the vNIC (0-10).",
                &l,
                v.priority as f64,
            );
            f.add(
                "vswitch_vnic_link_up",
                "gauge",
                "1 when the vNIC is connected.",
                &l,
                b(v.link_up),
            );
            if let Some(m) = &v.member {
                let l = [
                    ("vnic", v.name.as_str()),
                    ("uplink", v.uplink.as_str()),
                    ("member", m.as_str()),
                ];
                f.add(
                    "vswitch_vnic_member",
                    "gauge",
                    "1 for the member the vNIC's traffic leaves on.",
                    &l,
                    1.0,
                );
            }
        }
    }
    for p in pmd {
        let (w, c) = (p.worker.to_string(), p.core.to_string());
        let l = [("worker", w.as_str()), ("core", c.as_str())];
        f.add(
            "vswitch_pmd_iterations_total",
            "counter",
            "Poll-loop iterations of the worker.",
            &l,
            p.iterations as f64,
        );
        f.add(
            "vswitch_pmd_busy_ratio",
            "gauge",
            "Share of the worker's cycles spent on frames (0-1).",
            &l,
            p.busy_pct / 100.0,
        );
        f.add(
            "vswitch_pmd_cycles_per_packet",
            "gauge",
            "Busy cycles per received frame.",
            &l,
            p.cycles_per_pkt,
        );
        f.add(
            "vswitch_pmd_sleep_iterations_total",
            "counter",
            "Poll-loop iterations that ended in a load-based sleep (pmd_sleep_max_us).",
            &l,
            p.sleep_iterations as f64,
        );
        f.add(
            "vswitch_pmd_sleep_ratio",
            "gauge",
            "Share of the worker's cycles spent in load-based sleeps (0-1).",
            &l,
            p.sleep_pct / 100.0,
        );
    }
    f.finish()
}
