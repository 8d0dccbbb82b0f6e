//! `vsperf c2c`: how long a cache line takes to travel between two CPUs and back.
//!
//! Two threads, pinned to the two CPUs, hand one counter back and forth: the first
//! writes an odd value and spins until it reads the next even one, which the second
//! writes when it sees the odd one. Each hand-over moves the line from one CPU's cache
//! to the other's, so the round trip is what every producer/consumer ring between the
//! two CPUs (a vhost-user virtqueue between a VM's core and the switch's) pays per
//! cache line it shares. On a VM the figure depends on where the host runs the two
//! vCPUs at that moment (the same physical core's two threads, two cores that share a
//! cache, or not), which no counter inside the guest shows otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One counter alone on its cache line (no false sharing with the stop flag).
#[repr(align(128))]
struct Line(AtomicU64);

/// The value that tells the echoing thread to stop.
const STOP: u64 = u64::MAX;

/// Round trips between two CPUs, per window of about a millisecond.
#[derive(Debug, Clone, serde::Serialize)]
pub struct C2cReport {
    /// The CPU that starts each round trip.
    pub cpu_a: usize,
    /// The CPU that answers.
    pub cpu_b: usize,
    /// Windows measured.
    pub windows: usize,
    /// Round trips in all.
    pub round_trips: u64,
    /// Mean round trip of the fastest window, ns.
    pub min_ns: f64,
    /// Median of the windows' mean round trips, ns.
    pub median_ns: f64,
    /// Mean round trip of the slowest window, ns (a descheduled thread shows here).
    pub max_ns: f64,
}

/// Errors of [`c2c`].
#[derive(Debug, thiserror::Error)]
pub enum C2cError {
    /// A CPU this process may not run on.
    #[error("cannot pin a thread to CPU {0} (not in this process's CPU set?)")]
    Pin(usize),
    /// The two CPUs are the same.
    #[error("the two CPUs must differ")]
    SameCpu,
    /// The answering thread never answered.
    #[error("CPU {0} did not answer within 1 s (is something else busy-polling it?)")]
    NoAnswer(usize),
}

fn pin(cpu: usize) -> Result<(), C2cError> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(C2cError::Pin(cpu))
    }
}

/// Measures for about `run` between `cpu_a` and `cpu_b`.
pub fn c2c(cpu_a: usize, cpu_b: usize, run: Duration) -> Result<C2cReport, C2cError> {
    if cpu_a == cpu_b {
        return Err(C2cError::SameCpu);
    }
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .map(|c| c.id)
        .collect();
    if let Some(&cpu) = [cpu_a, cpu_b].iter().find(|c| !allowed.contains(c)) {
        return Err(C2cError::Pin(cpu));
    }
    let line = Arc::new(Line(AtomicU64::new(0)));
    let echo_line = Arc::clone(&line);
    let echo = std::thread::spawn(move || -> Result<(), C2cError> {
        pin(cpu_b)?;
        let l = &echo_line.0;
        let mut seen = 0u64;
        loop {
            let v = l.load(Ordering::Acquire);
            if v == STOP {
                return Ok(());
            }
            if v != seen && v % 2 == 1 {
                l.store(v + 1, Ordering::Release);
                seen = v;
            }
            std::hint::spin_loop();
        }
    });
    let result = ping(&line.0, cpu_a, cpu_b, run);
    line.0.store(STOP, Ordering::Release);
    echo.join().unwrap_or(Ok(()))?;
    result
}

/// The starting side: round trips in windows of 1 ms until `run` has passed.
fn ping(l: &AtomicU64, cpu_a: usize, cpu_b: usize, run: Duration) -> Result<C2cReport, C2cError> {
    pin(cpu_a)?;
    let window = Duration::from_millis(1);
    let start = Instant::now();
    let mut means = Vec::with_capacity(run.as_millis() as usize + 1);
    let mut total = 0u64;
    let mut v = 1u64;
    while start.elapsed() < run {
        let w0 = Instant::now();
        let mut n = 0u64;
        while w0.elapsed() < window {
            // 64 round trips between clock reads.
            for _ in 0..64 {
                l.store(v, Ordering::Release);
                let mut spins = 0u32;
                while l.load(Ordering::Acquire) != v + 1 {
                    std::hint::spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(65536) && w0.elapsed() > Duration::from_secs(1) {
                        return Err(C2cError::NoAnswer(cpu_b));
                    }
                }
                v += 2;
            }
            n += 64;
        }
        means.push(w0.elapsed().as_nanos() as f64 / n as f64);
        total += n;
    }
    means.sort_by(f64::total_cmp);
    Ok(C2cReport {
        cpu_a,
        cpu_b,
        windows: means.len(),
        round_trips: total,
        min_ns: means.first().copied().unwrap_or(0.0),
        median_ns: means.get(means.len() / 2).copied().unwrap_or(0.0),
        max_ns: means.last().copied().unwrap_or(0.0),
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn same_cpu_is_refused() {
        assert!(matches!(
            c2c(0, 0, Duration::from_millis(1)),
            Err(C2cError::SameCpu)
        ));
    }

    #[test]
    fn a_cpu_outside_the_machine_is_an_error() {
        assert!(matches!(
            c2c(0, 4096, Duration::from_millis(1)),
            Err(C2cError::Pin(4096))
        ));
    }
}
