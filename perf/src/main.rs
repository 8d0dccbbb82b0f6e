//! `vsperf`: see the `perf` crate documentation (`cargo doc -p perf`) or `vsperf run --help`.
#![deny(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use perf::cli::{self, Parsed};

static STOP: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let parsed = match cli::parse(std::env::args_os()) {
        Err(e) => e.exit(),
        Ok(Err(msg)) => {
            eprintln!("vsperf: error: {msg}");
            return ExitCode::from(2);
        }
        Ok(Ok(p)) => p,
    };
    match parsed {
        Parsed::GenPcap(g) => match perf::gen_pcap(&g) {
            Ok(n) => {
                eprintln!("vsperf: wrote {n} records to {}", g.out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vsperf: error: {e}");
                ExitCode::FAILURE
            }
        },
        Parsed::PlotTimeline(a) => match perf::plot_timeline(&a) {
            Ok(n) => {
                eprintln!("vsperf: drew {n} series to {}", a.out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vsperf: error: {e}");
                ExitCode::FAILURE
            }
        },
        Parsed::C2c(a) => {
            let (cpu_a, cpu_b) = a.cpus;
            match perf::c2c::c2c(cpu_a, cpu_b, std::time::Duration::from_millis(a.ms)) {
                Ok(r) if a.json => {
                    let mut out = std::io::stdout().lock();
                    let _ = serde_json::to_writer(&mut out, &r);
                    let _ = writeln!(out);
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    eprintln!(
                        "vsperf: cache line round trip CPU {cpu_a} <-> CPU {cpu_b}: median {:.0} ns \
                         (fastest {:.0}, slowest {:.0} of {} 1-ms windows, {} round trips)",
                        r.median_ns, r.min_ns, r.max_ns, r.windows, r.round_trips
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("vsperf: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Parsed::Run(cfg) => {
            // First signal: stop and print the final statistics. Second: exit now.
            if let Err(e) = ctrlc::set_handler(|| {
                if STOP.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
            }) {
                eprintln!("vsperf: warning: cannot install the signal handler: {e}");
            }
            let mut err = std::io::stderr();
            match perf::engine::run(&cfg, &STOP, &mut err) {
                Ok(report) => {
                    if cfg.json {
                        let mut out = std::io::stdout().lock();
                        let _ = serde_json::to_writer(&mut out, &report);
                        let _ = writeln!(out);
                        let _ = out.flush();
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("vsperf: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
