//! Sleeping in a process that receives a signal per frame.
//!
//! DPDK's tap PMD arms a real-time signal (SIGRTMIN+1 here) for every frame a tap
//! receives, directed at the process, so under a flood into a tap the daemon's
//! threads — the main thread first — are interrupted tens of thousands of times a
//! second. `std::thread::sleep` survives an interruption by calling `nanosleep` again
//! with the remaining time, and the kernel adds the timer slack (50 µs) to every
//! relative sleep it arms: with signals closer together than the slack, the remaining
//! time never shrinks and the sleep never ends. That was the "vswitchd ignores
//! SIGTERM" of the saturated LACP test: the quit flag was set, but the main thread's
//! 50 ms sleep did not return in 30 s while it burnt a third of a core in the kernel.
//!
//! [`nap`] waits on a deadline instead (`park_timeout`, a futex wait with an absolute
//! timeout that an interruption resumes, not restarts), so it returns on time however
//! many signals arrive. Every periodic loop of the daemon sleeps with it.

use std::time::{Duration, Instant};

/// Sleeps for `d` (at least), whatever signals interrupt it; see the module doc.
pub fn nap(d: Duration) {
    let end = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        // Returns early on an unpark or spuriously; the loop waits out the rest.
        std::thread::park_timeout(end - now);
    }
}

/// Asks the kernel to end this thread's timed sleeps within 1 µs of their deadline
/// instead of the default 50 µs timer slack: the workers' load-based sleeps last a few
/// µs (Open vSwitch sets the same for its PMD threads).
pub fn fine_timer_slack() -> Result<(), String> {
    nix::sys::prctl::set_timerslack(1_000).map_err(|e| format!("prctl(PR_SET_TIMERSLACK): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naps_at_least_as_long_as_asked_even_when_unparked() {
        let me = std::thread::current();
        let t = std::thread::spawn(move || {
            for _ in 0..50 {
                me.unpark();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let start = Instant::now();
        nap(Duration::from_millis(30));
        let took = start.elapsed();
        t.join().unwrap();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
