//! A fixed-capacity FIFO of mbufs waiting for their vNIC's allocation, owned by one
//! worker. No allocation after construction.

use dpdk_sys::Mbuf;
use policy::time::Nanos;

/// A frame waiting: the mbuf, when it was queued, and the port it will leave on.
pub struct Waiting {
    /// The frame.
    pub mbuf: Mbuf,
    /// When it was queued.
    pub since: Nanos,
    /// The uplink member port chosen for it.
    pub port: u16,
}

/// Ring buffer of [`Waiting`] frames.
pub struct DelayRing {
    slots: Box<[Option<Waiting>]>,
    head: usize,
    len: usize,
}

impl DelayRing {
    /// A ring holding at most `cap` frames.
    pub fn new(cap: usize) -> DelayRing {
        DelayRing {
            slots: (0..cap.max(1)).map(|_| None).collect(),
            head: 0,
            len: 0,
        }
    }
    /// Frames held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Appends, or gives the frame back when full.
    #[inline]
    pub fn push(&mut self, w: Waiting) -> Result<(), Waiting> {
        if self.len == self.slots.len() {
            return Err(w);
        }
        let i = (self.head + self.len) % self.slots.len();
        self.slots[i] = Some(w);
        self.len += 1;
        Ok(())
    }
    /// The oldest frame's length and queueing time.
    #[inline]
    pub fn front(&self) -> Option<(u32, Nanos)> {
        self.slots[self.head]
            .as_ref()
            .filter(|_| self.len > 0)
            .map(|w| (w.mbuf.pkt_len(), w.since))
    }
    /// Removes the oldest frame.
    #[inline]
    pub fn pop(&mut self) -> Option<Waiting> {
        if self.len == 0 {
            return None;
        }
        let w = self.slots[self.head].take();
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        w
    }
}
