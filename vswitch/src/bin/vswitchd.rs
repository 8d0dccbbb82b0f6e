//! `vswitchd --config FILE`: runs the switch until SIGINT/SIGTERM (or SIGHUP).
//!
//! Signals: the first thing `main` does, before any thread exists, is block SIGINT,
//! SIGTERM and SIGHUP in its own mask; every thread started later inherits it (the
//! EAL's interrupt and control threads, the vhost library's, workers, control, ctl
//! server). One dedicated thread takes them with `sigwait` and sets the quit flag the
//! main loop polls. No thread ever runs a handler for them, so a shutdown signal cannot
//! land on a thread that cannot act on it or in a handler some library replaced; it
//! stays pending until the waiter takes it. (This replaced `ctrlc`'s handler, after
//! session 1 saw vswitchd catch SIGTERM intermittently without its handler thread
//! waking.) Child processes start with an empty mask (Rust's `Command` resets it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use vswitch::ctl::ControlApi;
use vswitch::daemon::SwitchApi;
use vswitch::stats::DropReason;
use vswitch::switch::Switch;

/// The DPDK virtual switch daemon.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Example:\n  vswitchd --config /etc/vswitch/vswitch.toml --stats-interval 2"
)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Print port counters every N seconds (0 = only at exit).
    #[arg(long, default_value_t = 0.0)]
    stats_interval: f64,
    /// Stop by itself after N seconds (demos, tests).
    #[arg(long)]
    run_for: Option<f64>,
    /// Print the final status as JSON on stdout at exit.
    #[arg(long)]
    json: bool,
    /// Control socket path (overrides `[control] socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
}

fn print_table(sw: &Switch) {
    let view = sw.control_view();
    println!(
        "{:<14} {:<5} {:<5} {:>12} {:>12} {:>12} {:>12}  drops",
        "port", "kind", "link", "rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes"
    );
    for p in sw.ports() {
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| p.counters.drops_of(**r) > 0)
            .map(|r| format!("{}={}", r.name(), p.counters.drops_of(*r)))
            .collect();
        println!(
            "{:<14} {:<5} {:<5} {:>12} {:>12} {:>12} {:>12}  {}",
            p.name,
            p.kind,
            if p.link_up { "up" } else { "down" },
            p.counters.rx_pkts,
            p.counters.rx_bytes,
            p.counters.tx_pkts,
            p.counters.tx_bytes,
            if drops.is_empty() {
                "-".to_string()
            } else {
                drops.join(" ")
            }
        );
    }
    for u in &view.uplinks {
        let members: Vec<String> = u
            .members
            .iter()
            .map(|m| {
                format!(
                    "{}({}{})",
                    m.name,
                    if m.usable { "usable" } else { "unusable" },
                    if m.reason.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", m.reason)
                    }
                )
            })
            .collect();
        println!(
            "uplink {} [{}{}]: {}",
            u.name,
            if u.is_bond { "bond " } else { "" },
            u.mode,
            members.join(" ")
        );
    }
    for l in &view.lacp {
        print!("{}", l.status);
    }
}

/// The signals that stop the switch.
fn shutdown_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// Starts the thread that waits for [`shutdown_signals`] (blocked in every thread by
/// then) and sets `quit` on the first; later ones are logged.
fn spawn_signal_waiter(set: SigSet, quit: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match set.wait() {
                Ok(sig) => {
                    if quit.swap(true, Ordering::SeqCst) {
                        tracing::warn!(signal = %sig, "already stopping");
                    } else {
                        tracing::info!(signal = %sig, "stopping");
                    }
                }
                // sigwait fails only for an invalid set; nothing to retry.
                Err(e) => {
                    tracing::error!("sigwait: {e}; signals no longer stop the switch");
                    return;
                }
            }
        })
        .map(|_| ())
}

fn main() {
    // Before anything can start a thread (see the module doc).
    let signals = shutdown_signals();
    if let Err(e) = signals.thread_block() {
        eprintln!("vswitchd: cannot block the shutdown signals: {e}");
        std::process::exit(1);
    }
    // Colours only for a person at a terminal: a log file or journald gets plain
    // `key=value` lines (NO_COLOR turns them off anywhere).
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let removed = vswitch::ctl::persist::remove_stale_temps(&args.config);
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed temporary files of an interrupted config write"
        );
    }
    let cfg = match vswitch::ctl::persist::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            std::process::exit(2);
        }
    };
    let quit = Arc::new(AtomicBool::new(false));
    if let Err(e) = spawn_signal_waiter(signals, Arc::clone(&quit)) {
        eprintln!("vswitchd: cannot start the signal thread: {e}");
        std::process::exit(1);
    }
    let sw = match Switch::start(&cfg) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("vswitchd: {e}");
            std::process::exit(1);
        }
    };
    let api: Arc<dyn ControlApi> = Arc::new(SwitchApi::new(
        Arc::clone(&sw),
        cfg.clone(),
        args.config.clone(),
    ));
    let ctl_quit = Arc::new(AtomicBool::new(false));
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(&cfg.control.socket));
    let server = match vswitch::ctl::server::serve(
        &socket,
        0o660,
        cfg.control.group.as_deref(),
        Arc::clone(&api),
        Arc::clone(&ctl_quit),
    ) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vswitchd: control socket {}: {e}", socket.display());
            sw.shutdown();
            std::process::exit(1);
        }
    };
    tracing::info!(socket = %socket.display(), "control socket ready");
    let metrics = match cfg
        .control
        .metrics
        .as_deref()
        .map(|a| a.parse().expect("validated"))
    {
        Some(addr) => {
            match vswitch::ctl::prometheus::serve(addr, Arc::clone(&api), Arc::clone(&ctl_quit)) {
                Ok((bound, h)) => {
                    tracing::info!(%bound, "metrics endpoint ready");
                    Some(h)
                }
                Err(e) => {
                    eprintln!("vswitchd: metrics {addr}: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let start = Instant::now();
    let mut last_print = Instant::now();
    while !quit.load(Ordering::SeqCst) {
        vswitch::nap::nap(Duration::from_millis(50));
        if args
            .run_for
            .is_some_and(|t| start.elapsed().as_secs_f64() >= t)
        {
            break;
        }
        if args.stats_interval > 0.0 && last_print.elapsed().as_secs_f64() >= args.stats_interval {
            last_print = Instant::now();
            print_table(&sw);
        }
    }
    ctl_quit.store(true, Ordering::SeqCst);
    let _ = server.join();
    if let Some(m) = metrics {
        let _ = m.join();
    }
    // Final counters: after the workers stopped, before the ports close.
    sw.stop_threads();
    if !args.json {
        print_table(&sw);
    }
    let ports = sw.ports();
    let view = sw.control_view();
    let in_use = sw.shutdown();
    if args.json {
        let v =
            serde_json::json!({ "ports": ports, "control": view, "mbufs_in_use_at_exit": in_use });
        println!("{v}");
    } else {
        println!("mbufs in use at exit: {in_use}");
    }
    std::process::exit(if in_use == 0 { 0 } else { 3 });
}
