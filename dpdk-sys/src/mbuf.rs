//! Mempools, owned mbufs and bursts of them.
//!
//! [`Mbuf`] owns one reference to an `rte_mbuf`: dropping it frees that reference
//! back to its pool, so an mbuf can only leak by `mem::forget`. [`Burst`] is a
//! fixed-capacity array of mbufs laid out exactly as DPDK's `struct rte_mbuf *[]`
//! (Mbuf is `repr(transparent)` over a non-null pointer), so `rx_burst`/`tx_burst`
//! write and read it in place with no copying and no allocation.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use crate::eal::{last_error, Eal};
use crate::ffi;

/// A packet mbuf pool. Pools live until the process ends (ports keep pointers to
/// them), so a `Mempool` is a `Copy` handle.
#[derive(Clone, Copy, Debug)]
pub struct Mempool(NonNull<ffi::rte_mempool>);

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe; the handle is a
// pointer to a pool that is never freed while the process runs.
unsafe impl Send for Mempool {}
// SAFETY: as above; all operations through the handle are thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a packet mbuf pool of `n` mbufs with `data_room` bytes of buffer
    /// (headroom included) and a per-lcore cache of `cache` mbufs.
    pub fn new(
        _eal: &Eal,
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
    ) -> Result<Mempool, String> {
        let cname = CString::new(name).map_err(|_| format!("pool name {name:?} has a NUL"))?;
        // SAFETY: EAL is initialised (the &Eal proves it); name is a valid C string; the
        // socket id -1 (SOCKET_ID_ANY) is accepted.
        let p = unsafe { ffi::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, -1) };
        NonNull::new(p).map(Mempool).ok_or_else(|| {
            format!(
                "cannot create mbuf pool {name} of {n} mbufs: {}; raise -m in the EAL arguments",
                last_error()
            )
        })
    }

    /// Mbufs currently taken from the pool (allocated and not yet freed), including
    /// those sitting in per-lcore caches' accounting as DPDK counts them.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool pointer is valid for the life of the process.
        unsafe { ffi::rte_mempool_in_use_count(self.0.as_ptr()) }
    }

    /// The bytes of frame one mbuf of this pool holds: its data room less the headroom.
    pub fn segment_room(&self) -> u32 {
        // SAFETY: the pool pointer is valid for the life of the process.
        let room = unsafe { ffi::rte_pktmbuf_data_room_size(self.0.as_ptr()) };
        u32::from(room).saturating_sub(ffi::RTE_PKTMBUF_HEADROOM)
    }

    /// Mbufs available in the pool.
    pub fn available(&self) -> u32 {
        // SAFETY: the pool pointer is valid for the life of the process.
        unsafe { ffi::rte_mempool_avail_count(self.0.as_ptr()) }
    }

    /// The raw pool pointer, for port setup.
    pub fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.0.as_ptr()
    }

    /// Allocates one mbuf (empty, default headroom).
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: valid pool; rte_pktmbuf_alloc returns NULL or an mbuf with refcnt 1
        // that we now own.
        NonNull::new(unsafe { ffi::rte_pktmbuf_alloc(self.0.as_ptr()) }).map(Mbuf)
    }
}

/// One owned reference to a packet mbuf. Dropping it frees the reference.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf is a unique owner of one reference; mbufs may move between threads
// (DPDK pools are thread-safe for free).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Wraps a raw mbuf pointer.
    ///
    /// # Safety
    /// `p` must be a valid mbuf whose reference the caller owns and hands over.
    #[inline]
    pub unsafe fn from_raw(p: NonNull<ffi::rte_mbuf>) -> Mbuf {
        Mbuf(p)
    }

    /// Gives up ownership, returning the raw pointer.
    #[inline]
    pub fn into_raw(self) -> NonNull<ffi::rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    #[inline]
    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: we own a reference to a valid mbuf for as long as self lives.
        unsafe { self.0.as_ref() }
    }

    /// The first segment's data (the whole frame for single-segment mbufs).
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off points at data_len initialised bytes inside the
        // mbuf's buffer, valid while we hold a reference.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// Mutable access to the first segment's data, only when this is the sole
    /// reference (refcnt 1): shared mbufs (floods) must not be modified.
    #[inline]
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        let m = self.raw();
        if m.refcnt != 1 {
            return None;
        }
        let (addr, off, len) = (
            m.buf_addr as *mut u8,
            m.data_off as usize,
            m.data_len as usize,
        );
        // SAFETY: sole owner (refcnt 1) and &mut self: no other reference to these bytes.
        Some(unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) })
    }

    /// Total frame length over all segments.
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// Number of segments.
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.raw().nb_segs
    }

    /// The port the mbuf was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Appends `len` bytes at the end of the data and returns them for writing.
    #[inline]
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // A single segment, `rte_pktmbuf_append`'s usual case, without a call (the
        // generator appends to every frame it makes).
        // SAFETY: we own a reference to a valid mbuf for as long as self lives, and
        // &mut self: nobody else reads or writes its header now.
        let m = unsafe { self.0.as_mut() };
        if m.nb_segs == 1 {
            let tail = m.data_off as usize + m.data_len as usize;
            if tail + len as usize > m.buf_len as usize {
                return None;
            }
            m.data_len += len;
            m.pkt_len += u32::from(len);
            // SAFETY: bytes tail..tail+len lie inside the mbuf's buffer (checked against
            // buf_len above) and belong to this mbuf's data now; &mut self is the only
            // access to them.
            return Some(unsafe {
                std::slice::from_raw_parts_mut((m.buf_addr as *mut u8).add(tail), len as usize)
            });
        }
        self.append_chained(len)
    }

    #[cold]
    fn append_chained(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: valid mbuf we own; rte_pktmbuf_append returns NULL when there is no room.
        let p = unsafe { ffi::rte_pktmbuf_append(self.0.as_ptr(), len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: DPDK reserved `len` writable bytes at p inside our buffer.
        Some(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len as usize) })
    }

    /// A new mbuf holding a copy of `bytes` from `pool`.
    pub fn from_bytes(pool: &Mempool, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = pool.alloc()?;
        let len = u16::try_from(bytes.len()).ok()?;
        m.append(len)?.copy_from_slice(bytes);
        Some(m)
    }

    /// Another reference to the same mbuf (refcount + 1), for sending one frame to
    /// several ports. Neither reference may modify the data afterwards.
    #[inline]
    pub fn share(&self) -> Mbuf {
        // SAFETY: valid mbuf; bumping the refcount of every segment is what
        // rte_pktmbuf_refcnt_update does, and the new reference is owned by the result.
        unsafe {
            ffi::rte_pktmbuf_refcnt_update(self.0.as_ptr(), 1);
        }
        Mbuf(self.0)
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference; rte_pktmbuf_free releases it (and the
        // mbuf when it was the last).
        unsafe { ffi::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// A fixed-capacity burst of mbufs, laid out as DPDK's `struct rte_mbuf *[N]`.
/// Entries `0..len` are owned; dropping the burst frees them.
pub struct Burst<const N: usize> {
    bufs: [MaybeUninit<Mbuf>; N],
    len: usize,
}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Burst<N> {
    /// An empty burst.
    #[inline]
    pub fn new() -> Self {
        Burst {
            bufs: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }
    /// Number of mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// True when full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }
    /// Free room.
    #[inline]
    pub fn room(&self) -> usize {
        N - self.len
    }
    /// Capacity.
    pub const CAPACITY: usize = N;

    /// Adds an mbuf; gives it back when full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        // `get_mut`, not a compare with N and an index: one check instead of two.
        let Some(slot) = self.bufs.get_mut(self.len) else {
            return Err(m);
        };
        slot.write(m);
        self.len += 1;
        Ok(())
    }

    /// The held mbufs.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: entries 0..len are initialised; MaybeUninit<Mbuf> has Mbuf's layout.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr() as *const Mbuf, self.len) }
    }

    /// Takes every mbuf out, in order, leaving the burst empty.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_, N> {
        let len = self.len;
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            end: len,
        }
    }

    /// Pointer to the free tail, for rx_burst to fill. Internal.
    #[inline]
    pub(crate) fn tail_ptr(&mut self) -> (*mut *mut ffi::rte_mbuf, usize) {
        // SAFETY: index len <= N, so the pointer is within or one past the array.
        let p = unsafe { self.bufs.as_mut_ptr().add(self.len) } as *mut *mut ffi::rte_mbuf;
        (p, N - self.len)
    }

    /// Marks `n` more entries (written by DPDK at the tail) as owned. Internal.
    #[inline]
    pub(crate) fn grow(&mut self, n: usize) {
        debug_assert!(self.len + n <= N);
        self.len += n;
    }

    /// Pointer to the entries for tx_burst. Internal.
    #[inline]
    pub(crate) fn head_ptr(&mut self) -> *mut *mut ffi::rte_mbuf {
        self.bufs.as_mut_ptr() as *mut *mut ffi::rte_mbuf
    }

    /// Forgets the first `n` entries (DPDK took them) and moves the rest to the front.
    #[inline]
    pub(crate) fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let rest = self.len - n;
        if n == 0 || rest == 0 {
            // Nothing taken, or everything: no entries to move (the usual case, and a
            // memmove call of zero bytes is not free).
            self.len = rest;
            return;
        }
        // SAFETY: moves initialised entries n..len to 0..rest; the first n were taken
        // over by DPDK and must not be dropped, which this overwrites.
        unsafe {
            std::ptr::copy(self.bufs.as_ptr().add(n), self.bufs.as_mut_ptr(), rest);
        }
        self.len = rest;
    }

    /// Appends `n` fresh mbufs from `pool` (empty, default headroom) in one bulk
    /// call: all of them, or none when the pool cannot give `n` or there is no room
    /// for them. Returns whether it did.
    #[inline]
    pub fn alloc_from(&mut self, pool: &Mempool, n: usize) -> bool {
        if n == 0 || n > self.room() {
            return n == 0;
        }
        let (p, _) = self.tail_ptr();
        // SAFETY: `p` points at `room() >= n` free slots of this burst, laid out as
        // `struct rte_mbuf *[]`; rte_pktmbuf_alloc_bulk fills all n with mbufs of
        // refcnt 1 that we then own, or none (returning non-zero).
        let rc = unsafe { ffi::rte_pktmbuf_alloc_bulk(pool.as_ptr(), p, n as u32) };
        if rc != 0 {
            return false;
        }
        self.grow(n);
        true
    }

    /// Frees the entries from `n` on (keeps the first `n`).
    #[inline]
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        let end = self.len;
        self.len = n;
        for i in n..end {
            // SAFETY: entries n..end were initialised and owned; len is already n, so
            // each is read (and freed) exactly once.
            drop(unsafe { self.bufs.get_unchecked(i).assume_init_read() });
        }
    }

    /// The held mbufs, for writing their data.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: entries 0..len are initialised; MaybeUninit<Mbuf> has Mbuf's layout;
        // &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.as_mut_ptr() as *mut Mbuf, self.len) }
    }

    /// Frees every held mbuf at once (one bulk call).
    #[inline]
    pub fn free_all(&mut self) {
        if self.len == 0 {
            return;
        }
        let n = self.len;
        self.len = 0;
        // SAFETY: entries 0..n are owned mbuf references; after this call they are
        // released and len is 0 so they are not touched again.
        unsafe {
            ffi::vs_pktmbuf_free_bulk(self.bufs.as_mut_ptr() as *mut *mut ffi::rte_mbuf, n as u32)
        }
    }
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// Iterator taking mbufs out of a [`Burst`].
pub struct Drain<'a, const N: usize> {
    burst: &'a mut Burst<N>,
    next: usize,
    end: usize,
}

impl<const N: usize> Iterator for Drain<'_, N> {
    type Item = Mbuf;
    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        // SAFETY: next < end <= N (end is the burst's len when the drain began), so the
        // index is in bounds; entries next..end were initialised and are read exactly
        // once; the burst's len was already set to 0 so it will not drop them.
        let m = unsafe { self.burst.bufs.get_unchecked(self.next).assume_init_read() };
        self.next += 1;
        Some(m)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.end - self.next, Some(self.end - self.next))
    }
}

impl<const N: usize> Drop for Drain<'_, N> {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}
