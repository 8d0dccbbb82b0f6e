//! Stand-in for `policy::bond::Distribution` until the teaming logic lands: a hash of
//! the source and destination MACs over the usable members. Same method names, so
//! the worker does not change when the real one replaces it.

use policy::wire::Flow;

/// Per-worker selection scratch (round-robin counter, pending bytes per member).
#[derive(Debug, Clone, Default)]
pub struct SelectCtx {
    /// Round-robin counter.
    pub rr: u32,
}

/// Which member a frame leaves on.
#[derive(Debug, Clone)]
pub struct Distribution {
    usable: Vec<u8>,
    mask: u16,
}

impl Distribution {
    /// Members whose bit is set in `mask` are usable.
    pub fn from_mask(mask: u16) -> Distribution {
        let usable = (0..16u8).filter(|i| mask & (1 << i) != 0).collect();
        Distribution { usable, mask }
    }
    /// The member for this frame, None when no member is usable.
    #[inline]
    pub fn select(&self, flow: &Flow, _vnic: u32, _ctx: &mut SelectCtx) -> Option<usize> {
        if self.usable.is_empty() {
            return None;
        }
        let h = (flow.src_mac.to_u64() ^ flow.dst_mac.to_u64()).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        Some(self.usable[(h as usize) % self.usable.len()] as usize)
    }
    /// Whether frames arriving on `member` are accepted.
    #[inline]
    pub fn accepts_rx(&self, member: usize) -> bool {
        member < 16 && self.mask & (1 << member) != 0
    }
    /// Usable members as a bit mask.
    pub fn usable_mask(&self) -> u16 {
        self.mask
    }
}
