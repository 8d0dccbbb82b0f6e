//! The worker-side view of a bond: an immutable [`Distribution`] and the flow hashes.
//!
//! A `Distribution` is built by the control thread ([`super::Bond`]) after every change
//! and published to the workers, who only ever read it. Everything a worker needs per
//! frame is precomputed: the list of usable members, the 256-entry hash bucket table,
//! the active-backup active member and a per-vNIC-slot target table. [`Distribution::select`]
//! and [`Distribution::accepts_rx`] do not allocate, do not panic and run in constant
//! time (at most [`MAX_MEMBERS`] iterations for least-pending).
//!
//! Invariant kept by the builder and re-checked defensively by `select`: every member
//! index `select` returns has its bit set in [`Distribution::usable_mask`].

use super::{HashFields, Mode, MAX_MEMBERS};
use crate::wire::{Flow, FrameView, L3Addrs, MacAddr};

/// Number of hash buckets. Hash values are reduced to a bucket by their top 8 bits
/// (the "outcome falls within a range" of \[0067\]); each bucket maps to one member.
pub const HASH_BUCKETS: usize = 256;

/// Entry of the per-slot table meaning "this slot is not known to the bond".
pub(super) const SLOT_UNKNOWN: u8 = 0xff;
/// Entry of the per-slot table meaning "no fixed member: use least-pending".
pub(super) const SLOT_FLOAT: u8 = 0xfe;

/// Per-worker scratch state for [`Distribution::select`], owned by one worker thread.
///
/// The worker keeps one `SelectCtx` per bond; it is never shared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectCtx {
    /// Round-robin counter, advanced by round-robin selections (and used to rotate
    /// tie-breaks among members with equal pending bytes).
    pub rr: u32,
    /// Bytes currently pending for transmission on each member (index = member),
    /// maintained by the caller (e.g. bytes buffered for the member's tx queue plus
    /// descriptors not yet completed). Used by least-pending and priority-aware modes
    /// (\[0066\], \[0109\]).
    pub pending: [u32; MAX_MEMBERS],
}

/// An immutable snapshot of how a bond distributes frames, safe to share between
/// threads (`Clone + Send + Sync`, no interior mutability).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribution {
    pub(super) generation: u64,
    pub(super) mode: Mode,
    pub(super) n_members: u8,
    pub(super) usable: u16,
    pub(super) rx: u16,
    pub(super) usable_list: [u8; MAX_MEMBERS],
    pub(super) n_usable: u8,
    /// Active-backup active member (first usable member in failover order).
    pub(super) active: Option<u8>,
    /// Switch-independent multi-active modes: the one member on which group-addressed
    /// frames are accepted.
    pub(super) mcast_rx: Option<u8>,
    pub(super) degraded: bool,
    pub(super) buckets: [u8; HASH_BUCKETS],
    /// Per vNIC slot: a member index, [`SLOT_FLOAT`] or [`SLOT_UNKNOWN`].
    pub(super) slots: Vec<u8>,
}

impl Distribution {
    /// The member a frame leaves on, or `None` when no member is usable.
    ///
    /// `flow` is the parsed frame, `vnic_slot` the sending vNIC's slot (slots unknown to
    /// the bond fall back to a hash of the source MAC over the usable members), `ctx`
    /// the worker's own scratch state. *Fast path*: no allocation, no panic.
    #[inline]
    pub fn select<F: FlowFields + ?Sized>(
        &self,
        flow: &F,
        vnic_slot: u32,
        ctx: &mut SelectCtx,
    ) -> Option<usize> {
        if self.n_usable == 0 {
            return None;
        }
        let m = match self.mode {
            Mode::ActiveBackup => self.active?,
            Mode::RoundRobin => self.round_robin(ctx),
            Mode::LeastPending => self.least_pending(ctx),
            Mode::Hash(fields) => self.by_hash(hash_flow(fields, flow)),
            Mode::IpHashElseRoundRobin => {
                if flow.is_ip() {
                    self.by_hash(hash_flow(HashFields::L3Dst, flow))
                } else {
                    self.round_robin(ctx)
                }
            }
            Mode::VmPinned | Mode::LoadBased | Mode::PriorityAware => {
                match self.slots.get(vnic_slot as usize).copied() {
                    Some(SLOT_FLOAT) => self.least_pending(ctx),
                    Some(m) if self.is_usable(m as usize) => m,
                    _ => self.by_hash(hash_flow(HashFields::L2Src, flow)),
                }
            }
        };
        // Defensive: the builder guarantees this, but never hand out an unusable member.
        if self.is_usable(m as usize) {
            Some(m as usize)
        } else {
            self.usable_list.first().map(|&m| m as usize)
        }
    }

    /// Whether frames received on `member` are delivered (coarse, per member).
    ///
    /// Active-backup: only the active member. Other modes: members that are
    /// administratively up and (when the bond runs LACP) collecting/distributing.
    /// Slow-protocol frames are handled by the caller before asking. *Fast path*.
    #[inline]
    pub fn accepts_rx(&self, member: usize) -> bool {
        member < MAX_MEMBERS && self.rx & (1 << member) != 0
    }

    /// Like [`accepts_rx`](Self::accepts_rx) but also suppresses duplicate group-addressed
    /// frames in switch-independent multi-active modes (vm-pinned and load-based without
    /// LACP): the upstream switch floods broadcasts and multicasts to every member, so
    /// they are accepted on one designated member only (as Open vSwitch's balance-slb
    /// and vSphere's port-ID teaming do). *Fast path*.
    #[inline]
    pub fn accepts_rx_frame<F: FlowFields + ?Sized>(&self, member: usize, flow: &F) -> bool {
        if !self.accepts_rx(member) {
            return false;
        }
        match self.mcast_rx {
            Some(m) if flow.dst_mac().is_multicast() => m as usize == member,
            _ => true,
        }
    }

    /// Bit `i` set when member `i` may carry traffic.
    #[inline]
    pub fn usable_mask(&self) -> u16 {
        self.usable
    }

    /// Number of usable members.
    #[inline]
    pub fn usable_count(&self) -> usize {
        self.n_usable as usize
    }

    /// The active member in active-backup terms (first usable member in failover order).
    /// Meaningful for [`Mode::ActiveBackup`]; computed for every mode.
    #[inline]
    pub fn active(&self) -> Option<usize> {
        self.active.map(|m| m as usize)
    }

    /// True while fewer members are usable than are administratively up (a failover is
    /// in effect: claim 10's "failover is occurring").
    #[inline]
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// The distribution mode.
    #[inline]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Number of configured members.
    #[inline]
    pub fn n_members(&self) -> usize {
        self.n_members as usize
    }

    /// Incremented by the control thread each time the distribution changes; workers may
    /// compare it to decide whether to reload.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The member owning hash bucket `bucket` (`None` when no member is usable).
    #[inline]
    pub fn bucket_member(&self, bucket: u8) -> Option<usize> {
        if self.n_usable == 0 {
            None
        } else {
            Some(self.buckets[bucket as usize] as usize)
        }
    }

    #[inline]
    fn is_usable(&self, m: usize) -> bool {
        m < MAX_MEMBERS && self.usable & (1 << m) != 0
    }

    #[inline]
    fn round_robin(&self, ctx: &mut SelectCtx) -> u8 {
        let i = ctx.rr % self.n_usable as u32;
        ctx.rr = ctx.rr.wrapping_add(1);
        self.usable_list[i as usize]
    }

    /// The usable member with the least pending bytes; ties are broken by rotating the
    /// starting point with `ctx.rr`, so idle members (all zero) share the load.
    #[inline]
    fn least_pending(&self, ctx: &mut SelectCtx) -> u8 {
        let n = self.n_usable as usize;
        let start = (ctx.rr % n as u32) as usize;
        ctx.rr = ctx.rr.wrapping_add(1);
        let mut best = self.usable_list[start];
        let mut best_p = ctx.pending[best as usize & (MAX_MEMBERS - 1)];
        for i in 1..n {
            let m = self.usable_list[(start + i) % n];
            let p = ctx.pending[m as usize & (MAX_MEMBERS - 1)];
            if p < best_p {
                best = m;
                best_p = p;
            }
        }
        best
    }

    #[inline]
    fn by_hash(&self, h: u64) -> u8 {
        self.buckets[bucket_of(h)]
    }

    /// How to pick members for a whole burst, decided once so that the per-frame work
    /// is only what the mode needs: a fixed member, or a hash of known fields over the
    /// bucket table. Every pick it leads to equals [`select`](Self::select)'s
    /// (property-tested). *Fast path*, once per burst.
    #[inline]
    pub fn burst_pick(&self) -> BurstPick {
        if self.n_usable == 0 {
            return BurstPick::PerFrame;
        }
        match self.mode {
            Mode::ActiveBackup => match self.active {
                Some(m) if self.is_usable(m as usize) => BurstPick::Member(m as usize),
                _ => BurstPick::PerFrame,
            },
            Mode::Hash(fields) => BurstPick::Hash(fields),
            _ => BurstPick::PerFrame,
        }
    }

    /// The member of flow hash `h` (a [`hash_flow`] value) under [`BurstPick::Hash`].
    /// Only meaningful while a member is usable (`burst_pick` says so).
    #[inline]
    pub fn member_of_hash(&self, h: u64) -> usize {
        self.buckets[bucket_of(h)] as usize
    }
}

/// A member choice resolved once per burst ([`Distribution::burst_pick`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BurstPick {
    /// Every frame leaves on this member (active-backup's active member).
    Member(usize),
    /// By [`hash_flow`] of these fields: [`Distribution::member_of_hash`].
    Hash(HashFields),
    /// Frame by frame through [`Distribution::select`] (round-robin, least-pending,
    /// per-vNIC modes; no usable member).
    PerFrame,
}

/// The bucket (0..[`HASH_BUCKETS`]) of a flow hash: its top 8 bits.
#[inline]
pub fn bucket_of(hash: u64) -> usize {
    (hash >> 56) as usize
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(K1).rotate_left(29)
}

/// The last step: the bucket is the top byte ([`bucket_of`]), and the top byte of a
/// product depends on every bit of its input, so one xor-shift (to bring the high
/// half's bits down too) and one multiply do what MurmurHash3's two-multiply
/// finaliser did here, for 5 instructions per frame less (`perf/callgrind.sh`).
#[inline]
fn finish(h: u64) -> u64 {
    (h ^ (h >> 32)).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

#[inline]
fn lo(x: u128) -> u64 {
    x as u64
}

#[inline]
fn hi(x: u128) -> u64 {
    (x >> 64) as u64
}

/// An address folded to 64 bits for hashing. IPv4 addresses are IPv4-mapped, so
/// their upper half is a constant and folding costs nothing; IPv6 keeps every bit
/// (the halves are rotated apart before they are combined).
#[inline]
fn fold(x: u128) -> u64 {
    lo(x) ^ hi(x).rotate_left(32)
}

/// The fields of a frame that member selection reads: implemented by a parsed
/// [`Flow`] and by a lazily parsed [`FrameView`] (which reads the IP and L4 headers
/// only when a hash needs them). Both give the same values for the same bytes, so
/// [`hash_flow`] and [`Distribution::select`] do not depend on which is passed.
pub trait FlowFields {
    /// Destination MAC.
    fn dst_mac(&self) -> MacAddr;
    /// Source MAC.
    fn src_mac(&self) -> MacAddr;
    /// Outer VLAN ID (0 when untagged).
    fn vlan(&self) -> u16;
    /// True when the frame has a complete IPv4/IPv6 header.
    fn is_ip(&self) -> bool;
    /// The IP addresses, when [`is_ip`](Self::is_ip).
    fn l3(&self) -> Option<L3Addrs>;
    /// The IP addresses and the L4 word hashed by [`HashFields::L3L4`]: the ports
    /// (`sport << 16 | dport`, 0 without an L4 header) with the protocol at bit 32.
    fn l3l4(&self) -> Option<(L3Addrs, u64)>;
    /// [`l3l4`](Self::l3l4) as [`HashFields::L3L4`] hashes it ([`l3l4_words`]).
    #[inline(always)]
    fn l3l4_words(&self) -> Option<(u64, u64)> {
        self.l3l4().map(|(a, l4)| l3l4_words(&a, l4))
    }
}

/// The two words [`HashFields::L3L4`] hashes, from addresses `a` and the L4 word `l4`
/// of [`FlowFields::l3l4`]: both addresses in one word with the protocol xored in at
/// bit 24, and the ports with their bytes in wire order.
///
/// An IPv4 pair is its 8 address bytes as they lie in the header (source first),
/// loaded little-endian: the fast path ([`FrameView::udp_tcp_v4_words`]) hashes its
/// two loads as they are, without swapping bytes, and its check of the protocol
/// leaves the protocol alone at bit 24 of a word, which one xor puts in. Other pairs
/// are folded (`fold(src).rotate_left(32) ^ fold(dst)`), keeping every bit of each
/// half.
#[inline]
pub fn l3l4_words(a: &L3Addrs, l4: u64) -> (u64, u64) {
    let proto = (l4 >> 32) << 24;
    let ports = (l4 as u32).swap_bytes() as u64;
    let pair = match (ipv4_of(a.src), ipv4_of(a.dst)) {
        (Some(s), Some(d)) => ((s as u64) << 32 | d as u64).swap_bytes(),
        _ => fold(a.src).rotate_left(32) ^ fold(a.dst),
    };
    (pair ^ proto, ports)
}

/// The IPv4 address of an IPv4-mapped address (`::ffff:a.b.c.d`).
#[inline]
fn ipv4_of(x: u128) -> Option<u32> {
    (x >> 32 == 0xffff).then_some(x as u32)
}

impl FlowFields for Flow {
    #[inline]
    fn dst_mac(&self) -> MacAddr {
        self.dst_mac
    }
    #[inline]
    fn src_mac(&self) -> MacAddr {
        self.src_mac
    }
    #[inline]
    fn vlan(&self) -> u16 {
        self.vlan
    }
    #[inline]
    fn is_ip(&self) -> bool {
        self.l3.is_some()
    }
    #[inline]
    fn l3(&self) -> Option<L3Addrs> {
        self.l3
    }
    #[inline]
    fn l3l4(&self) -> Option<(L3Addrs, u64)> {
        let a = self.l3?;
        let ports = if self.has_l4 {
            ((self.sport as u64) << 16) | self.dport as u64
        } else {
            0
        };
        Some((a, ports | ((self.proto as u64) << 32)))
    }
}

impl FlowFields for FrameView<'_> {
    #[inline]
    fn dst_mac(&self) -> MacAddr {
        FrameView::dst_mac(self)
    }
    #[inline]
    fn src_mac(&self) -> MacAddr {
        FrameView::src_mac(self)
    }
    #[inline]
    fn vlan(&self) -> u16 {
        FrameView::vlan(self)
    }
    #[inline]
    fn is_ip(&self) -> bool {
        self.ip().is_some()
    }
    #[inline]
    fn l3(&self) -> Option<L3Addrs> {
        self.ip().map(|i| i.addrs)
    }
    #[inline(always)]
    fn l3l4_words(&self) -> Option<(u64, u64)> {
        if let Some(w) = self.udp_tcp_v4_words() {
            return Some(w);
        }
        l3l4_general(self).map(|(a, l4)| l3l4_words(&a, l4))
    }
    #[inline(always)]
    fn l3l4(&self) -> Option<(L3Addrs, u64)> {
        if let Some(v4) = self.udp_tcp_v4() {
            return Some(v4);
        }
        l3l4_general(self)
    }
}

/// [`FlowFields::l3l4`] of any frame, through [`FrameView::ip`] and
/// [`FrameView::ports`]: the fallback after the one-step IPv4 UDP/TCP read (which it
/// agrees with, so the caller need not try that read again).
#[inline]
fn l3l4_general(f: &FrameView) -> Option<(L3Addrs, u64)> {
    let ip = f.ip()?;
    let ports = match f.ports(&ip) {
        Some((s, d)) => ((s as u64) << 16) | d as u64,
        None => 0,
    };
    Some((ip.addrs, ports | ((ip.proto as u64) << 32)))
}

/// Hashes the fields `fields` selects from `flow`. Deterministic, stable per flow, a few
/// multiply/xor rounds (no SipHash). *Fast path*: reads only the layers `fields` needs.
///
/// Fallbacks: an L3 hash of a frame without an IP header hashes the corresponding L2
/// fields (L3Dst → L2Dst, L3Src → L2Src, L3SrcDst and L3L4 → L2SrcDst); an L3L4 hash
/// of an IP frame without ports (non-TCP/UDP, fragments) hashes the addresses and the
/// protocol, so all fragments of a datagram stay together. L2 hashes include the VLAN ID.
#[inline(always)]
pub fn hash_flow<F: FlowFields + ?Sized>(fields: HashFields, flow: &F) -> u64 {
    let l2s = || flow.src_mac().to_u64() | (flow.vlan() as u64) << 48;
    let l2d = || flow.dst_mac().to_u64() | (flow.vlan() as u64) << 48;
    let h = match fields {
        HashFields::L2Dst => mix(1, l2d()),
        HashFields::L2Src => mix(2, l2s()),
        HashFields::L2SrcDst => mix(mix(3, l2s()), l2d()),
        HashFields::L3Dst => match flow.l3() {
            Some(a) => mix(4, fold(a.dst)),
            None => mix(1, l2d()),
        },
        HashFields::L3Src => match flow.l3() {
            Some(a) => mix(5, fold(a.src)),
            None => mix(2, l2s()),
        },
        HashFields::L3SrcDst => match flow.l3() {
            Some(a) => mix(mix(6, fold(a.src)), fold(a.dst)),
            None => mix(mix(3, l2s()), l2d()),
        },
        // The two addresses (and the protocol) share one round (an IPv4 pair fits 64
        // bits whole), and the ports are xored into it before its multiply: one here
        // and one in `finish`, where three rounds did the same spread
        // (perf/callgrind.sh case 1). No rotation after the multiply: `finish` folds
        // the product's high half down, which is what the rotation did (the bucket
        // tests hold either way). No seed: an all-zero pair leaves the ports, which the
        // multiply and `finish` still spread.
        HashFields::L3L4 => match flow.l3l4_words() {
            Some((pair, ports)) => return hash_l3l4_words(pair, ports),
            None => mix(mix(3, l2s()), l2d()),
        },
    };
    finish(h)
}

/// [`hash_flow`] under [`HashFields::L3L4`] of a frame whose
/// [`l3l4_words`](FlowFields::l3l4_words) are `pair` and `ports`: for a caller that
/// has read them itself ([`FrameView::udp_tcp_v4_words`]). *Fast path*.
///
/// The ports go through the multiply with the pair. Xored in after it, a destination
/// port (the word's low 16 bits) reached the bucket byte through `finish`'s multiply
/// alone, whose top byte takes such inputs in a lattice: 8192 destination ports
/// filled the 256 buckets with 0..67 flows each (chi² 4025; 18..52 and 264 now).
/// The price of xoring before the multiply: a source address's last octet and a
/// source port's high byte share bits 24–31, so flows varying both in lockstep could
/// cancel out; traffic does not vary that way, and a multiply of the ports of their
/// own cost 4 instructions a frame (`perf/callgrind.sh` case 1: 48 → 52; this is 49).
#[inline(always)]
pub fn hash_l3l4_words(pair: u64, ports: u64) -> u64 {
    finish((pair ^ ports).wrapping_mul(K1))
}
