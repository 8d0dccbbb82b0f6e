//! The `--json` output: one [`Report`] object on stdout at the end of a run.
//!
//! This is an interface: the end-to-end tests deserialize it (they may use these
//! types: `serde_json::from_str::<perf::report::Report>(&stdout)`). Fields are only
//! ever added, never renamed or removed; `schema` is bumped if that rule is broken.
//! Rates are averages over the port's `duration_s`; bit rates count frame bytes
//! (no FCS, preamble or gap).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of this schema.
pub const SCHEMA: u32 = 1;

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always "vsperf".
    pub tool: String,
    /// [`SCHEMA`].
    pub schema: u32,
    /// Seconds from the start of traffic until the run decided to stop (drain excluded).
    pub duration_s: f64,
    /// Seconds spent receiving after that (`--drain-ms`, or less after a signal).
    pub drain_s: f64,
    /// Why the run ended: "duration", "count" (every counted stream finished),
    /// "signal" (SIGINT/SIGTERM).
    pub stopped_by: String,
    /// TSC frequency used for pacing and latency.
    pub tsc_hz: u64,
    /// Wall-clock time of the start of traffic (time 0 of `timeline` and
    /// `link_events`), seconds since the Unix epoch, so other processes' events can
    /// be placed on the run's time axis.
    #[serde(default)]
    pub started_unix_s: f64,
    /// Mbufs still taken from the pool after every port was stopped and closed
    /// (0 when nothing leaked).
    pub mbufs_in_use_at_exit: u32,
    /// One entry per `--port`, in command-line order.
    pub ports: Vec<PortReport>,
}

/// One port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortReport {
    /// Position on the command line (0-based).
    pub index: usize,
    /// DPDK ethdev name (e.g. `net_ring0`).
    pub name: String,
    /// The devargs as given.
    pub devargs: String,
    /// PMD driver name.
    pub driver: String,
    /// txonly, rxonly, io, echo or latency.
    pub mode: String,
    /// Link state at the end.
    pub link_up: bool,
    /// Frames received by the harness.
    pub rx_pkts: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames the PMD accepted for transmission on this port: generated (txonly,
    /// latency), echoed (echo), or forwarded to it by an io port (the io port that
    /// received them counts them as rx, this port as tx).
    pub tx_pkts: u64,
    /// Bytes the PMD accepted.
    pub tx_bytes: u64,
    /// Frames refused by this port's PMD (tx ring full) and freed.
    pub tx_dropped: u64,
    /// Frames not generated because the mbuf pool was empty.
    pub tx_alloc_failed: u64,
    /// Average receive rate over this port's `duration_s` (frames received during
    /// the drain are included in the count, not in the time).
    pub rx_pps: f64,
    /// Average transmit rate.
    pub tx_pps: f64,
    /// Average receive bit rate.
    pub rx_bps: f64,
    /// Average transmit bit rate.
    pub tx_bps: f64,
    /// Seconds this port was active: from the start of traffic until it reached its
    /// `--count`, or until the run stopped (drain excluded).
    pub duration_s: f64,
    /// The ≤ 64 most frequent source MACs received (lowercase `aa:bb:..`) → frames.
    pub rx_by_src_mac: BTreeMap<String, u64>,
    /// Frames from source MACs not in `rx_by_src_mac`.
    pub rx_src_mac_other: u64,
    /// The ≤ 16 most frequent outer ethertypes (`0x0800`; tagged frames count as
    /// `0x8100`) → frames.
    pub rx_by_ethertype: BTreeMap<String, u64>,
    /// The PMD's own counters (some virtual PMDs do not count).
    pub pmd: PmdStats,
    /// `[t_ms, rx_pkts_in_interval]` every `--timeline-ms` (absent when off): `t_ms`
    /// is when the interval was closed, from the start of traffic; sampling continues
    /// through the drain and ends with a last (possibly shorter) interval, so the
    /// counts sum to `rx_pkts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<[u64; 2]>>,
    /// Link changes seen while running, `[t_ms, 1 = up | 0 = down]` from the start of
    /// traffic; present only for ports whose link vsperf watches (virtio-user in
    /// server mode, see `engine`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_events: Option<Vec<[u64; 2]>>,
    /// Latency mode only: stamped frames received back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Latency mode only: stamped frames sent and never received back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Latency mode only: stamped frames received out of order (or twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reordered: Option<u64>,
    /// Latency mode only: round-trip median, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// Latency mode only: 99th percentile, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Latency mode only: 99.9th percentile, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<f64>,
    /// Latency mode only: maximum, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
    /// Latency mode only: minimum, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_us: Option<f64>,
    /// Latency mode only: mean, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_us: Option<f64>,
}

/// A port's PMD statistics (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmdStats {
    /// ipackets.
    pub ipackets: u64,
    /// opackets.
    pub opackets: u64,
    /// imissed.
    pub imissed: u64,
    /// ierrors.
    pub ierrors: u64,
    /// oerrors.
    pub oerrors: u64,
    /// rx_nombuf.
    pub rx_nombuf: u64,
}
