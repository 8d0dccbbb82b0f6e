//! Requests to the control thread that are either carried out and answered, or
//! withdrawn and never carried out.
//!
//! A requester (the control socket's API, the daemon) waits a bounded time for the
//! control thread. Giving up used to leave the request queued: the client was told
//! the change was refused, and the control thread carried it out later anyway (a
//! topology whose new ports the requester had already closed). Now a request has a
//! state word: the control thread *claims* it before acting ([`Reply::claim`]), the
//! requester *withdraws* it when its wait ends ([`request`]), and only one of the two
//! can win. A requester that finds the request claimed keeps waiting for the answer,
//! which the control thread always sends once it acts.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};

const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const WITHDRAWN: u8 = 2;

/// Where the answer to a control request goes (the control thread's side).
pub struct Reply<T> {
    tx: Sender<T>,
    state: Arc<AtomicU8>,
}

impl<T> Reply<T> {
    /// Claims the request before acting on it: false when the requester withdrew it
    /// (then do nothing; the reply is dropped unsent).
    pub fn claim(&self) -> bool {
        self.state
            .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Answers a claimed request.
    pub fn send(self, v: T) {
        debug_assert_eq!(self.state.load(Ordering::Relaxed), CLAIMED);
        // The requester waits for a claimed request's answer; a requester that is
        // gone (its thread ended) just drops it.
        let _ = self.tx.send(v);
    }
}

/// Makes a request with `send` (which queues it for the control thread; false when
/// the control thread is gone) and waits up to `timeout` for the answer. `None`: the
/// request was withdrawn unclaimed (or the control thread is gone) and will never be
/// carried out. A request claimed in time is waited for to the end.
pub fn request<T>(send: impl FnOnce(Reply<T>) -> bool, timeout: Duration) -> Option<T> {
    let (tx, rx): (Sender<T>, Receiver<T>) = crossbeam::channel::bounded(1);
    let state = Arc::new(AtomicU8::new(PENDING));
    if !send(Reply {
        tx,
        state: Arc::clone(&state),
    }) {
        return None;
    }
    if let Ok(v) = rx.recv_timeout(timeout) {
        return Some(v);
    }
    match state.compare_exchange(PENDING, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => None,
        // Claimed: being carried out; its answer comes (or the control thread died
        // with it, and the channel says so).
        Err(_) => rx.recv().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A control thread that takes each request `delay` after it is queued.
    fn control(delay: Duration) -> (Sender<Reply<u32>>, std::thread::JoinHandle<Vec<u32>>) {
        let (tx, rx) = crossbeam::channel::unbounded::<Reply<u32>>();
        let h = std::thread::spawn(move || {
            let mut done = Vec::new();
            for (i, r) in rx.iter().enumerate() {
                std::thread::sleep(delay);
                if r.claim() {
                    // Acting takes a while too.
                    std::thread::sleep(delay);
                    done.push(i as u32);
                    r.send(i as u32);
                }
            }
            done
        });
        (tx, h)
    }

    /// Withdrawn in time: refused to the requester, never carried out.
    #[test]
    fn a_request_withdrawn_before_it_is_claimed_is_never_carried_out() {
        let (cmds, ctl) = control(Duration::from_millis(100));
        let r = request(|reply| cmds.send(reply).is_ok(), Duration::from_millis(20));
        assert_eq!(r, None);
        drop(cmds);
        assert_eq!(
            ctl.join().unwrap(),
            Vec::<u32>::new(),
            "carried out after a refusal"
        );
    }

    /// Claimed in time but answered after the timeout: the answer is waited for.
    #[test]
    fn a_claimed_request_is_waited_for_past_the_timeout() {
        let (cmds, ctl) = control(Duration::from_millis(30));
        let t = Instant::now();
        let r = request(|reply| cmds.send(reply).is_ok(), Duration::from_millis(45));
        assert_eq!(r, Some(0));
        assert!(t.elapsed() >= Duration::from_millis(60));
        drop(cmds);
        assert_eq!(ctl.join().unwrap(), vec![0]);
    }

    /// No control thread: refused at once.
    #[test]
    fn a_request_nobody_takes_is_refused() {
        let (cmds, rx) = crossbeam::channel::unbounded::<Reply<u32>>();
        drop(rx);
        assert_eq!(
            request(|reply| cmds.send(reply).is_ok(), Duration::from_secs(5)),
            None
        );
        // Taken off the queue and dropped without an answer: refused, not hung.
        let (cmds, rx) = crossbeam::channel::unbounded::<Reply<u32>>();
        let h = std::thread::spawn(move || {
            let r = rx.recv().unwrap();
            assert!(r.claim());
            drop(r);
        });
        let t = Instant::now();
        assert_eq!(
            request(|reply| cmds.send(reply).is_ok(), Duration::from_secs(5)),
            None
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        h.join().unwrap();
    }
}
