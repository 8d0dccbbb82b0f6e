//! Per-port counters, written by exactly one worker each, read by anyone.
//!
//! Every worker owns a [`WorkerStats`]: one [`PortCounters`] per DPDK port id. Only
//! the owning worker writes them (a relaxed load + store, no locked RMW on the fast
//! path); the control thread and `vsctl` sum them across workers. Counters are
//! updated once per burst, not per packet, wherever the code allows.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The most DPDK ports the switch tracks (DPDK's RTE_MAX_ETHPORTS on Debian).
pub const MAX_PORTS: usize = 32;

/// Why a frame was dropped. Each reason has a counter per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt = 0,
    /// Source MAC is not the vNIC's own (forged transmit).
    Spoofed,
    /// A VM tried to send a slow-protocol (LACP) frame.
    SlowFromVm,
    /// No vNIC has the destination MAC.
    UnknownUnicast,
    /// The uplink has no usable member.
    NoUsableMember,
    /// Arrived on a standby member of an active-backup bond.
    StandbyMember,
    /// The tx queue was full.
    TxFull,
    /// The control thread's handoff queue was full.
    ControlQueueFull,
    /// A frame of a chain of segments whose Ethernet header is not all in the first
    /// segment (the switch reads headers from the first segment only); a frame that
    /// is short in all is a [`Runt`](Self::Runt).
    MultiSegment,
    /// Over its proportional share.
    OverShare,
    /// Over its traffic-shaping limit.
    OverShaping,
    /// Lower priority while its bond is degraded.
    LowerPriorityDegraded,
    /// Its delay queue was full or the frame waited too long.
    QueueFull,
    /// Matched a DoS signature or a drop mitigation.
    DosDrop,
    /// Arrived on a port the current snapshot does not know (hot-plug race).
    UnknownPort,
    /// To a reserved link-local group address (01:80:C2:00:00:0x: STP, PAUSE, EAPOL,
    /// LLDP), which a bridge must not forward: from a VM (not out of the NICs) or from
    /// the wire (not flooded to the VMs). Slow protocols (LACP) have their own path.
    ReservedMulticast,
    /// A group-addressed frame from the wire whose source is a vNIC of the same uplink:
    /// the physical switch flooded a VM's own frame back through another member
    /// (switch-independent teaming); that uplink's VMs had it from the local flood.
    LoopedBack,
    /// A chain of segments (a vhost-user guest's frame longer than one mbuf) for a
    /// port whose device does not transmit chains (no `RTE_ETH_TX_OFFLOAD_MULTI_SEGS`):
    /// counted here, charged to that port, instead of handing the PMD a chain whose
    /// tail it could neither send nor free.
    ChainUnsupported,
    /// Longer than the MTU of the port it was to leave by (a NIC's, or a vNIC's that
    /// sets one), plus an Ethernet header and a VLAN tag (Open vSwitch's
    /// `tx_mtu_exceeded`), charged to that port.
    MtuExceeded,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 19;
    /// All reasons in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::Spoofed,
        DropReason::SlowFromVm,
        DropReason::UnknownUnicast,
        DropReason::NoUsableMember,
        DropReason::StandbyMember,
        DropReason::TxFull,
        DropReason::ControlQueueFull,
        DropReason::MultiSegment,
        DropReason::OverShare,
        DropReason::OverShaping,
        DropReason::LowerPriorityDegraded,
        DropReason::QueueFull,
        DropReason::DosDrop,
        DropReason::UnknownPort,
        DropReason::ReservedMulticast,
        DropReason::LoopedBack,
        DropReason::ChainUnsupported,
        DropReason::MtuExceeded,
    ];
    /// Why a frame whose first segment holds `data_len` bytes, of `pkt_len` in all,
    /// is too short to read its Ethernet header: a runt, or a header split across
    /// segments.
    pub fn short(data_len: usize, pkt_len: u32) -> DropReason {
        if pkt_len as usize > data_len {
            DropReason::MultiSegment
        } else {
            DropReason::Runt
        }
    }

    /// The counter's name in output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::Spoofed => "spoofed",
            DropReason::SlowFromVm => "slow_protocol_from_vm",
            DropReason::UnknownUnicast => "unknown_unicast",
            DropReason::NoUsableMember => "no_usable_member",
            DropReason::StandbyMember => "standby_member",
            DropReason::TxFull => "tx_full",
            DropReason::ControlQueueFull => "control_queue_full",
            DropReason::MultiSegment => "multi_segment",
            DropReason::OverShare => "over_share",
            DropReason::OverShaping => "over_shaping",
            DropReason::LowerPriorityDegraded => "lower_priority_degraded",
            DropReason::QueueFull => "queue_full",
            DropReason::DosDrop => "dos",
            DropReason::UnknownPort => "unknown_port",
            DropReason::ReservedMulticast => "reserved_multicast",
            DropReason::LoopedBack => "looped_back",
            DropReason::ChainUnsupported => "chain_unsupported",
            DropReason::MtuExceeded => "mtu_exceeded",
        }
    }
}

/// Counters of one port as seen by one worker.
#[derive(Default)]
pub struct PortCounters {
    /// Frames received on the port.
    pub rx_pkts: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Frames transmitted on the port.
    pub tx_pkts: AtomicU64,
    /// Bytes transmitted.
    pub tx_bytes: AtomicU64,
    /// Drops charged to this port, by reason.
    pub drops: [AtomicU64; DropReason::COUNT],
}

/// Single-writer add: the owner is the only thread that stores, so a load + store
/// is exact and avoids a locked instruction.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl PortCounters {
    /// Adds one drop of `reason` (owner only).
    #[inline]
    pub fn drop_one(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }
}

/// A plain-value copy of counters, summed over workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PortTotals {
    /// Frames received.
    pub rx_pkts: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_pkts: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Drops by reason, in [`DropReason::ALL`] order (serialised as a map by name).
    #[serde(serialize_with = "drops_by_name")]
    pub drops: [u64; DropReason::COUNT],
}

fn drops_by_name<S: serde::Serializer>(
    d: &[u64; DropReason::COUNT],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(DropReason::COUNT))?;
    for r in DropReason::ALL {
        m.serialize_entry(r.name(), &d[r as usize])?;
    }
    m.end()
}

impl PortTotals {
    /// Sum of all drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Drops of one reason.
    pub fn drops_of(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// The counts since `base` was read: a port id DPDK reuses after a hot-unplug
    /// starts from the counts its previous holder left.
    pub fn since(&self, base: &PortTotals) -> PortTotals {
        let mut t = *self;
        t.rx_pkts = t.rx_pkts.saturating_sub(base.rx_pkts);
        t.rx_bytes = t.rx_bytes.saturating_sub(base.rx_bytes);
        t.tx_pkts = t.tx_pkts.saturating_sub(base.tx_pkts);
        t.tx_bytes = t.tx_bytes.saturating_sub(base.tx_bytes);
        for (d, b) in t.drops.iter_mut().zip(base.drops) {
            *d = d.saturating_sub(b);
        }
        t
    }
}

/// All counters of one worker.
pub struct WorkerStats {
    /// Indexed by DPDK port id.
    pub ports: Vec<PortCounters>,
    /// Poll loop iterations.
    pub iterations: AtomicU64,
    /// Iterations that received at least one frame.
    pub busy_iterations: AtomicU64,
    /// TSC cycles spent in busy iterations (pmd-stats-show's "processing cycles").
    pub busy_cycles: AtomicU64,
    /// TSC cycles spent in idle iterations, load-based sleeps included.
    pub idle_cycles: AtomicU64,
    /// Iterations that ended in a load-based sleep (`[dataplane] pmd_sleep_max_us`).
    pub sleep_iterations: AtomicU64,
    /// TSC cycles spent in those sleeps.
    pub sleep_cycles: AtomicU64,
    /// Snapshot generation the worker runs with.
    pub generation: AtomicU64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            iterations: AtomicU64::new(0),
            busy_iterations: AtomicU64::new(0),
            busy_cycles: AtomicU64::new(0),
            idle_cycles: AtomicU64::new(0),
            sleep_iterations: AtomicU64::new(0),
            sleep_cycles: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }
}

/// Sums one port's counters over the workers.
pub fn port_totals(workers: &[std::sync::Arc<WorkerStats>], port: u16) -> PortTotals {
    let mut t = PortTotals::default();
    for w in workers {
        let c = &w.ports[port as usize];
        t.rx_pkts += c.rx_pkts.load(Relaxed);
        t.rx_bytes += c.rx_bytes.load(Relaxed);
        t.tx_pkts += c.tx_pkts.load(Relaxed);
        t.tx_bytes += c.tx_bytes.load(Relaxed);
        for (i, d) in c.drops.iter().enumerate() {
            t.drops[i] += d.load(Relaxed);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_first_segment_is_a_runt_only_when_the_frame_is_short_in_all() {
        // All of the frame in one segment, shorter than a header: a runt.
        assert_eq!(DropReason::short(13, 13), DropReason::Runt);
        assert_eq!(DropReason::short(0, 0), DropReason::Runt);
        // A 60-byte frame whose first segment holds 10: the header is split.
        assert_eq!(DropReason::short(10, 60), DropReason::MultiSegment);
        assert_eq!(DropReason::short(0, 14), DropReason::MultiSegment);
    }

    #[test]
    fn every_reason_has_a_name_of_its_own_in_counter_order() {
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
