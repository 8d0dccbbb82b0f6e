//! The topology as the workers see it: an immutable [`Snapshot`], published by the
//! control thread and picked up by each worker at a quiescent point.
//!
//! Publication follows Open vSwitch's PMD reload pattern: the control thread builds
//! a complete new `Snapshot`, stores it in an [`ArcSwap`] and bumps a generation
//! counter. A worker compares the counter once per poll iteration (one relaxed
//! load of a shared cache line that only changes on reconfiguration) and, when it
//! moved, takes its own `Arc` of the new snapshot. Between reloads the worker reads
//! only its own `Arc`, so the fast path takes no lock and touches no shared
//! writable state. An old snapshot is freed when the last worker drops it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use policy::bond::{Distribution, HASH_BUCKETS};
use policy::wire::MacAddr;

use crate::stats::MAX_PORTS;

/// What a DPDK port is to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRole {
    /// A VM's virtual NIC (vhost-user or any port standing in for one).
    Vnic {
        /// Index into [`Snapshot::vnics`].
        vnic: u32,
    },
    /// A physical NIC: `member` index within uplink `uplink`.
    Nic {
        /// Index into [`Snapshot::uplinks`].
        uplink: u16,
        /// Member index within the uplink (0 for an unbonded NIC).
        member: u8,
    },
}

impl PortRole {
    /// "vnic" or "nic", as status output names the kind of port.
    pub fn kind(&self) -> &'static str {
        match self {
            PortRole::Vnic { .. } => "vnic",
            PortRole::Nic { .. } => "nic",
        }
    }
}

/// One port in the snapshot.
#[derive(Debug, Clone)]
pub struct PortEntry {
    /// DPDK port id.
    pub id: u16,
    /// Configured name.
    pub name: String,
    /// Its role.
    pub role: PortRole,
    /// The longest frame (mbuf `pkt_len`) that may leave through this port: a NIC's
    /// MTU plus an Ethernet header and a VLAN tag ([`crate::config::NicConfig::frame_max`]),
    /// a vNIC's likewise when it sets an MTU, else `u32::MAX` (no limit;
    /// [`crate::config::VnicConfig::frame_max`]).
    pub frame_max: u32,
}

/// No port: the port id of a vNIC slot that holds no vNIC ([`VnicEntry::vacant`]),
/// and of a hash bucket without a usable member ([`UplinkPorts::by_bucket`]).
pub const NO_PORT: u16 = u16::MAX;

/// One vNIC slot. Slots are stable for a vNIC's life (workers, bonds, allocators and
/// the DoS words key their per-vNIC state by slot); a removed vNIC leaves a vacant
/// slot ([`VnicEntry::vacant`]: not live, in no uplink, not in the MAC table) that a
/// later reconfiguration may reuse.
#[derive(Debug, Clone)]
pub struct VnicEntry {
    /// False for a vacant slot; everything else is meaningless then.
    pub live: bool,
    /// vNIC name.
    pub name: String,
    /// Its VM's name.
    pub vm: String,
    /// Its MAC.
    pub mac: MacAddr,
    /// DPDK port id.
    pub port: u16,
    /// Index into [`Snapshot::uplinks`].
    pub uplink: u16,
    /// Drop frames with another source MAC.
    pub spoof_check: bool,
    /// Priority 0–10.
    pub priority: u8,
    /// Traffic shaping, if configured.
    pub shaping: Option<policy::bandwidth::Shaping>,
    /// Shares, reservation, priority and shaping as the allocator sees them.
    pub bandwidth: policy::bandwidth::VnicBandwidth,
}

impl VnicEntry {
    /// A vacant slot.
    pub fn vacant() -> VnicEntry {
        VnicEntry {
            live: false,
            name: String::new(),
            vm: String::new(),
            mac: MacAddr([0; 6]),
            port: NO_PORT,
            uplink: 0,
            spoof_check: true,
            priority: 0,
            shaping: None,
            bandwidth: Default::default(),
        }
    }
}

/// One uplink: a bond or an unbonded NIC.
#[derive(Debug, Clone)]
pub struct UplinkEntry {
    /// Bond or NIC name.
    pub name: String,
    /// True for a bond.
    pub is_bond: bool,
    /// DPDK port ids of the members, in member order.
    pub members: Vec<u16>,
    /// vNIC indices assigned to this uplink (flood list).
    pub vnics: Vec<u32>,
    /// Which member a frame leaves on; which members may receive.
    pub dist: Distribution,
    /// Derived from `members` and `dist` by [`Snapshot::new`]; whatever it held
    /// before is replaced.
    pub ports: UplinkPorts,
}

/// The member ports of an uplink as the fast path reads them: derived once per
/// snapshot, so that a hashed frame finds its port with one load.
#[derive(Debug, Clone)]
pub struct UplinkPorts {
    /// The port of each hash bucket's member ([`NO_PORT`]: no usable member).
    pub by_bucket: [u16; HASH_BUCKETS],
    /// A bit per member port (bit `port`; port ids are below [`MAX_PORTS`]).
    pub mask: u64,
    /// A bit per member port a frame may leave on now: the usable members (for
    /// active-backup, the active one).
    pub live: u64,
}

impl Default for UplinkPorts {
    fn default() -> Self {
        UplinkPorts {
            by_bucket: [NO_PORT; HASH_BUCKETS],
            mask: 0,
            live: 0,
        }
    }
}

impl UplinkPorts {
    /// The ports of `members` (DPDK port ids in member order) under `dist`.
    pub fn new(members: &[u16], dist: &Distribution) -> UplinkPorts {
        let mut p = UplinkPorts::default();
        for (b, port) in p.by_bucket.iter_mut().enumerate() {
            if let Some(&m) = dist.bucket_member(b as u8).and_then(|i| members.get(i)) {
                *port = m;
            }
        }
        p.mask = members
            .iter()
            .filter(|&&m| (m as usize) < MAX_PORTS)
            .fold(0, |a, &m| a | 1 << m);
        let live_members = match dist.mode() {
            policy::bond::Mode::ActiveBackup => dist.active().map_or(0, |a| 1u32 << a),
            _ => u32::from(dist.usable_mask()),
        };
        p.live = members
            .iter()
            .enumerate()
            .filter(|&(i, &m)| i < 32 && live_members & (1 << i) != 0 && (m as usize) < MAX_PORTS)
            .fold(0, |a, (_, &m)| a | 1 << m);
        p
    }

    /// The member port for a frame that was given `chosen` earlier (it waited in a
    /// vNIC's delay ring) and leaves now: `chosen` while a frame may still leave on
    /// it, else one of the live members, the same one for every frame of `chosen`
    /// (a failed member's flows stay together); [`NO_PORT`] when none is live.
    pub fn still_live(&self, chosen: u16) -> u16 {
        if (chosen as usize) < MAX_PORTS && self.live & (1 << chosen) != 0 {
            return chosen;
        }
        let n = self.live.count_ones();
        if n == 0 {
            return NO_PORT;
        }
        let mut left = self.live;
        for _ in 0..chosen as u32 % n {
            left &= left - 1;
        }
        left.trailing_zeros() as u16
    }
}

/// Destination-MAC table: open addressing over a power-of-two array, built once per
/// snapshot, read-only afterwards. *Fast path*: one multiply and a short probe.
#[derive(Debug, Clone)]
pub struct MacTable {
    keys: Vec<u64>,
    vals: Vec<u32>,
    mask: usize,
}

impl MacTable {
    /// Builds the table from (MAC, vNIC index) pairs.
    pub fn build(entries: &[(MacAddr, u32)]) -> MacTable {
        let cap = (entries.len() * 2).next_power_of_two().max(16);
        let mut t = MacTable {
            keys: vec![0; cap],
            vals: vec![0; cap],
            mask: cap - 1,
        };
        for &(mac, v) in entries {
            let k = mac.to_u64();
            let mut i = Self::slot(k, t.mask);
            while t.keys[i] != 0 && t.keys[i] != k {
                i = (i + 1) & t.mask;
            }
            t.keys[i] = k;
            t.vals[i] = v;
        }
        t
    }

    #[inline]
    fn slot(k: u64, mask: usize) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & mask
    }

    /// The vNIC owning `mac`.
    #[inline]
    pub fn lookup(&self, mac: MacAddr) -> Option<u32> {
        self.lookup_key(mac.to_u64())
    }

    /// The vNIC owning the MAC whose [`MacAddr::to_u64`] key is `k`
    /// (e.g. [`policy::wire::FrameView::dst_key`]).
    #[inline]
    pub fn lookup_key(&self, k: u64) -> Option<u32> {
        if k == 0 {
            return None;
        }
        let mut i = Self::slot(k, self.mask);
        loop {
            let key = self.keys[i];
            if key == k {
                return Some(self.vals[i]);
            }
            if key == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// Everything a worker needs to switch a frame.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Publication number (1 for the first).
    pub generation: u64,
    /// Indexed by DPDK port id.
    pub ports: Vec<Option<PortEntry>>,
    /// vNICs by index.
    pub vnics: Vec<VnicEntry>,
    /// Uplinks by index.
    pub uplinks: Vec<UplinkEntry>,
    /// Destination MAC → vNIC index.
    pub macs: MacTable,
}

impl Snapshot {
    /// Builds a snapshot; `generation` is set on publication.
    pub fn new(
        ports: Vec<PortEntry>,
        vnics: Vec<VnicEntry>,
        mut uplinks: Vec<UplinkEntry>,
    ) -> Snapshot {
        for up in &mut uplinks {
            up.ports = UplinkPorts::new(&up.members, &up.dist);
        }
        let mut by_id: Vec<Option<PortEntry>> = vec![None; MAX_PORTS];
        for p in ports {
            let id = p.id as usize;
            by_id[id] = Some(p);
        }
        let macs = MacTable::build(
            &vnics
                .iter()
                .enumerate()
                .filter(|(_, v)| v.live)
                .map(|(i, v)| (v.mac, i as u32))
                .collect::<Vec<_>>(),
        );
        Snapshot {
            generation: 0,
            ports: by_id,
            vnics,
            uplinks,
            macs,
        }
    }
}

/// The publication point shared by the control thread (writer) and workers (readers).
pub struct Published {
    snap: ArcSwap<Snapshot>,
    generation: AtomicU64,
}

impl Published {
    /// Starts with `first` as generation 1.
    pub fn new(mut first: Snapshot) -> Published {
        first.generation = 1;
        Published {
            snap: ArcSwap::from_pointee(first),
            generation: AtomicU64::new(1),
        }
    }

    /// Publishes a new snapshot (control thread only); returns its generation.
    pub fn publish(&self, mut s: Snapshot) -> u64 {
        let g = self.generation.load(Ordering::Relaxed) + 1;
        s.generation = g;
        self.snap.store(Arc::new(s));
        self.generation.store(g, Ordering::Release);
        g
    }

    /// The current generation (workers poll this).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.snap.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_table_finds_every_entry_and_nothing_else() {
        let entries: Vec<(MacAddr, u32)> = (0..100u32)
            .map(|i| (MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8 + 1]), i))
            .collect();
        let t = MacTable::build(&entries);
        for &(m, v) in &entries {
            assert_eq!(t.lookup(m), Some(v));
        }
        assert_eq!(t.lookup(MacAddr([2, 0, 0, 0, 9, 9])), None);
        assert_eq!(t.lookup(MacAddr([0; 6])), None);
        assert_eq!(
            MacTable::build(&[]).lookup(MacAddr([2, 0, 0, 0, 0, 1])),
            None
        );
    }

    /// Every bucket's port is the port of the member the distribution gives it, for
    /// each set of members up; with none up, no bucket has a port.
    #[test]
    fn uplink_ports_follow_the_distribution() {
        use policy::bond::{Bond, BondConfig, HashFields, Mode};
        let members = [7u16, 3, 12];
        let cfg = BondConfig {
            mode: Mode::Hash(HashFields::L3L4),
            ..BondConfig::default()
        };
        for up in 0u8..8 {
            let mut b = Bond::new(cfg.clone(), members.len()).unwrap();
            for m in 0..members.len() {
                b.link_changed(m, up & (1 << m) != 0, 0).unwrap();
            }
            let d = b.distribution();
            let p = UplinkPorts::new(&members, &d);
            assert_eq!(p.mask, 1 << 7 | 1 << 3 | 1 << 12);
            let mut seen = [0usize; 3];
            for bucket in 0..HASH_BUCKETS {
                match d.bucket_member(bucket as u8) {
                    Some(i) => {
                        assert_eq!(
                            p.by_bucket[bucket], members[i],
                            "bucket {bucket}, up {up:03b}"
                        );
                        assert!(up & (1 << i) != 0, "bucket {bucket} on member {i}, down");
                        seen[i] += 1;
                    }
                    None => assert_eq!(p.by_bucket[bucket], NO_PORT),
                }
            }
            // Every member up owns some buckets; with none up, none has any.
            for (i, &n) in seen.iter().enumerate() {
                assert_eq!(
                    n > 0,
                    up & (1 << i) != 0,
                    "member {i}, up {up:03b}: {n} buckets"
                );
            }
        }
        // A bucket whose member has no port (a distribution wider than the members).
        let mut b = Bond::new(cfg, 2).unwrap();
        b.link_changed(0, true, 0).unwrap();
        b.link_changed(1, true, 0).unwrap();
        let p = UplinkPorts::new(&[5], &b.distribution());
        assert!(p.by_bucket.iter().all(|&x| x == 5 || x == NO_PORT));
        assert!(p.by_bucket.contains(&5) && p.by_bucket.contains(&NO_PORT));
    }

    /// A frame queued for a member leaves on it while the member is live, else on one
    /// live member per failed one; for active-backup, on the active member only.
    #[test]
    fn a_queued_frame_leaves_on_a_live_member() {
        use policy::bond::{Bond, BondConfig, HashFields, Mode};
        let members = [7u16, 3, 12];
        let bond = |mode: Mode, up: u8| {
            let mut b = Bond::new(
                BondConfig {
                    mode,
                    ..BondConfig::default()
                },
                members.len(),
            )
            .unwrap();
            for m in 0..members.len() {
                b.link_changed(m, up & (1 << m) != 0, 0).unwrap();
            }
            UplinkPorts::new(&members, &b.distribution())
        };
        let hash = Mode::Hash(HashFields::L3L4);
        let all = bond(hash, 0b111);
        assert_eq!(all.live, 1 << 7 | 1 << 3 | 1 << 12);
        for &m in &members {
            assert_eq!(all.still_live(m), m);
        }
        // Member 3 failed while frames waited for it: they leave on 7 or 12, all on
        // the same one.
        let two = bond(hash, 0b101);
        let p = two.still_live(3);
        assert!(p == 7 || p == 12, "{p}");
        assert_eq!(two.still_live(7), 7);
        assert_eq!(two.still_live(NO_PORT), two.still_live(NO_PORT));
        assert_ne!(two.still_live(NO_PORT), NO_PORT);
        // None live: no port.
        assert_eq!(bond(hash, 0).still_live(7), NO_PORT);
        // Active-backup: the standby is up but frames leave on the active member.
        let ab = bond(Mode::ActiveBackup, 0b111);
        assert_eq!(ab.live.count_ones(), 1, "{:b}", ab.live);
        let active = ab.live.trailing_zeros() as u16;
        for &m in &members {
            assert_eq!(ab.still_live(m), active);
        }
    }
}
