//! Frame templates for the transmit modes, and the latency stamp.
//!
//! A stream's frames are Ethernet (optionally one 802.1Q tag) / IPv4 / UDP or TCP,
//! `size` bytes from the destination MAC to the end of the payload (no FCS). Flow
//! *i* of *N* adds *i* to each field named in `--vary` (source and destination IPv4
//! address, source and destination L4 port; wrapping), so a stream of N flows has N
//! distinct 5-tuples that hash differently in a bond's distribution function.
//!
//! Everything is precomputed by [`Templates::build`]: the header of every flow (IPv4
//! checksum, and for TCP the full TCP checksum over the fixed payload) and the
//! payload (the `--signature` bytes repeated). The fast path [`Templates::write`] is
//! two `memcpy`s into an mbuf — no allocation, no arithmetic. UDP frames carry a zero
//! UDP checksum (valid for IPv4), so latency frames can be stamped after the copy
//! without recomputing anything.
//!
//! Latency stamp (UDP only), at the start of the L4 payload: `b"VSPL"`, a
//! little-endian u64 sequence number, a little-endian u64 TSC value: 20 bytes.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use policy::wire::MacAddr;

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// 802.1Q tag length.
pub const VLAN_LEN: usize = 4;
/// IPv4 header length (no options).
pub const IPV4_LEN: usize = 20;
/// UDP header length.
pub const UDP_LEN: usize = 8;
/// TCP header length (no options).
pub const TCP_LEN: usize = 20;
/// Largest frame the harness builds.
pub const MAX_FRAME: usize = 9216;
/// Marks a latency stamp.
pub const LATENCY_MAGIC: [u8; 4] = *b"VSPL";
/// Length of the latency stamp.
pub const LATENCY_STAMP_LEN: usize = 20;

/// L4 protocol of generated frames.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// UDP (checksum 0).
    Udp,
    /// TCP (checksum computed at template time).
    Tcp,
}

/// TCP flags byte, parsed from names (`syn`, `syn,ack`, `rst`, ...) or a number (`0x12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

const FLAG_NAMES: [(&str, u8); 8] = [
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ece", 0x40),
    ("cwr", 0x80),
];

impl FromStr for TcpFlags {
    type Err = String;
    fn from_str(s: &str) -> Result<TcpFlags, String> {
        let t = s.trim().to_ascii_lowercase();
        if let Some(h) = t.strip_prefix("0x") {
            return u8::from_str_radix(h, 16)
                .map(TcpFlags)
                .map_err(|_| format!("bad TCP flags {s:?}"));
        }
        if let Ok(v) = t.parse::<u8>() {
            return Ok(TcpFlags(v));
        }
        let mut v = 0u8;
        for name in t.split([',', '|', '+']) {
            let bit = FLAG_NAMES.iter().find(|(n, _)| *n == name.trim()).ok_or_else(|| {
                format!("bad TCP flag {name:?} in {s:?}: use fin,syn,rst,psh,ack,urg,ece,cwr or 0xNN")
            })?;
            v |= bit.1;
        }
        Ok(TcpFlags(v))
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = FLAG_NAMES
            .iter()
            .filter(|(_, b)| self.0 & b != 0)
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            write!(f, "0x00")
        } else {
            write!(f, "{}", names.join(","))
        }
    }
}

/// Which header fields vary from flow to flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vary {
    /// Source IPv4 address.
    pub src_ip: bool,
    /// Destination IPv4 address.
    pub dst_ip: bool,
    /// Source L4 port.
    pub sport: bool,
    /// Destination L4 port.
    pub dport: bool,
}

impl Default for Vary {
    fn default() -> Self {
        Vary {
            src_ip: true,
            dst_ip: true,
            sport: true,
            dport: true,
        }
    }
}

impl FromStr for Vary {
    type Err = String;
    fn from_str(s: &str) -> Result<Vary, String> {
        let mut v = Vary {
            src_ip: false,
            dst_ip: false,
            sport: false,
            dport: false,
        };
        if s.trim() == "none" {
            return Ok(v);
        }
        for f in s.split(',') {
            match f.trim() {
                "src-ip" => v.src_ip = true,
                "dst-ip" => v.dst_ip = true,
                "sport" => v.sport = true,
                "dport" => v.dport = true,
                "all" => v = Vary::default(),
                other => {
                    return Err(format!(
                        "bad --vary field {other:?}: use src-ip,dst-ip,sport,dport, all or none"
                    ))
                }
            }
        }
        Ok(v)
    }
}

/// Payload signature: bytes repeated over the payload, parsed from hex (`deadbeef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature(pub Vec<u8>);

impl FromStr for Signature {
    type Err = String;
    fn from_str(s: &str) -> Result<Signature, String> {
        let h = s.trim().trim_start_matches("0x");
        if h.is_empty() || h.len() & 1 == 1 || h.len() > 512 {
            return Err(format!(
                "bad signature {s:?}: give 1 to 256 bytes as an even number of hex digits, e.g. deadbeef"
            ));
        }
        (0..h.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&h[i..i + 2], 16)
                    .map_err(|_| format!("bad hex in signature {s:?}"))
            })
            .collect::<Result<Vec<u8>, String>>()
            .map(Signature)
    }
}

/// Everything that defines a stream's frames.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSpec {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// One 802.1Q tag with this VLAN id (priority 0), or untagged.
    pub vlan: Option<u16>,
    /// Frame length without FCS.
    pub size: usize,
    /// Number of flows (at least 1).
    pub flows: u32,
    /// L4 protocol.
    pub proto: Proto,
    /// TCP flags (TCP only).
    pub tcp_flags: TcpFlags,
    /// IPv4 source of flow 0.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination of flow 0.
    pub dst_ip: Ipv4Addr,
    /// L4 source port of flow 0.
    pub sport: u16,
    /// L4 destination port of flow 0.
    pub dport: u16,
    /// Fields that vary per flow.
    pub vary: Vary,
    /// Payload pattern (empty = zeros).
    pub signature: Vec<u8>,
    /// Reserve room for the latency stamp (UDP only).
    pub latency: bool,
}

impl Default for FrameSpec {
    fn default() -> Self {
        FrameSpec {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            vlan: None,
            size: 64,
            flows: 1,
            proto: Proto::Udp,
            tcp_flags: TcpFlags(0x02),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 1, 0, 1),
            sport: 1024,
            dport: 1024,
            vary: Vary::default(),
            signature: Vec::new(),
            latency: false,
        }
    }
}

/// Why a frame specification cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is too short for its headers (and stamp).
    #[error("frame size {size} is below the minimum {min} for these headers")]
    TooSmall {
        /// Requested size.
        size: usize,
        /// Minimum.
        min: usize,
    },
    /// The frame is longer than the harness builds.
    #[error("frame size {0} is above the maximum {MAX_FRAME}")]
    TooLarge(usize),
    /// Latency stamps need UDP frames (TCP checksums are fixed at template time).
    #[error("latency mode needs --proto udp")]
    LatencyNeedsUdp,
    /// VLAN id out of range.
    #[error("VLAN id {0} is out of range 0..=4095")]
    BadVlan(u16),
    /// Zero or too many flows.
    #[error("--flows must be 1..=1048576, got {0}")]
    BadFlows(u32),
}

/// Precomputed frames of one stream.
#[derive(Debug, Clone)]
pub struct Templates {
    hdr_len: usize,
    size: usize,
    flows: usize,
    headers: Vec<u8>,
    payload: Vec<u8>,
}

fn csum_add(mut sum: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Templates {
    /// The smallest frame for these headers.
    pub fn min_size(proto: Proto, vlan: bool, latency: bool) -> usize {
        ETH_LEN
            + if vlan { VLAN_LEN } else { 0 }
            + IPV4_LEN
            + match proto {
                Proto::Udp => UDP_LEN,
                Proto::Tcp => TCP_LEN,
            }
            + if latency { LATENCY_STAMP_LEN } else { 0 }
    }

    /// Builds every flow's header and the shared payload.
    pub fn build(spec: &FrameSpec) -> Result<Templates, FrameError> {
        if spec.latency && spec.proto != Proto::Udp {
            return Err(FrameError::LatencyNeedsUdp);
        }
        if let Some(v) = spec.vlan {
            if v > 4095 {
                return Err(FrameError::BadVlan(v));
            }
        }
        if spec.flows == 0 || spec.flows > 1 << 20 {
            return Err(FrameError::BadFlows(spec.flows));
        }
        let min = Self::min_size(spec.proto, spec.vlan.is_some(), spec.latency);
        if spec.size < min {
            return Err(FrameError::TooSmall {
                size: spec.size,
                min,
            });
        }
        if spec.size > MAX_FRAME {
            return Err(FrameError::TooLarge(spec.size));
        }
        let l2 = ETH_LEN + if spec.vlan.is_some() { VLAN_LEN } else { 0 };
        let l4_len = match spec.proto {
            Proto::Udp => UDP_LEN,
            Proto::Tcp => TCP_LEN,
        };
        let hdr_len = l2 + IPV4_LEN + l4_len;
        let mut payload = vec![0u8; spec.size - hdr_len];
        if !spec.signature.is_empty() {
            for (i, b) in payload.iter_mut().enumerate() {
                *b = spec.signature[i % spec.signature.len()];
            }
        }
        let flows = spec.flows as usize;
        let mut headers = vec![0u8; flows * hdr_len];
        let payload_sum = csum_add(0, &payload);
        for (i, h) in headers.chunks_exact_mut(hdr_len).enumerate() {
            let i32_ = i as u32;
            let i16_ = i as u16;
            h[0..6].copy_from_slice(&spec.dst_mac.0);
            h[6..12].copy_from_slice(&spec.src_mac.0);
            if let Some(v) = spec.vlan {
                h[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
                h[14..16].copy_from_slice(&v.to_be_bytes());
            }
            h[l2 - 2..l2].copy_from_slice(&0x0800u16.to_be_bytes());
            let src = u32::from(spec.src_ip).wrapping_add(if spec.vary.src_ip { i32_ } else { 0 });
            let dst = u32::from(spec.dst_ip).wrapping_add(if spec.vary.dst_ip { i32_ } else { 0 });
            let sport = spec
                .sport
                .wrapping_add(if spec.vary.sport { i16_ } else { 0 });
            let dport = spec
                .dport
                .wrapping_add(if spec.vary.dport { i16_ } else { 0 });
            let ip = &mut h[l2..l2 + IPV4_LEN];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((spec.size - l2) as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = match spec.proto {
                Proto::Udp => 17,
                Proto::Tcp => 6,
            };
            ip[12..16].copy_from_slice(&src.to_be_bytes());
            ip[16..20].copy_from_slice(&dst.to_be_bytes());
            let c = csum_fold(csum_add(0, ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let l4_total = (spec.size - l2 - IPV4_LEN) as u16;
            let l4 = &mut h[l2 + IPV4_LEN..];
            l4[0..2].copy_from_slice(&sport.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            match spec.proto {
                Proto::Udp => {
                    l4[4..6].copy_from_slice(&l4_total.to_be_bytes());
                }
                Proto::Tcp => {
                    l4[4..8].copy_from_slice(&(0x1000_0000u32.wrapping_add(i32_)).to_be_bytes());
                    if spec.tcp_flags.0 & 0x10 != 0 {
                        l4[8..12].copy_from_slice(&1u32.to_be_bytes());
                    }
                    l4[12] = 5 << 4;
                    l4[13] = spec.tcp_flags.0;
                    l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
                    let mut pseudo = [0u8; 12];
                    pseudo[0..4].copy_from_slice(&src.to_be_bytes());
                    pseudo[4..8].copy_from_slice(&dst.to_be_bytes());
                    pseudo[9] = 6;
                    pseudo[10..12].copy_from_slice(&l4_total.to_be_bytes());
                    // The payload length is even-aligned after a 20-byte header, so the
                    // payload's partial sum can be added as is.
                    let s = csum_add(csum_add(0, &pseudo), l4);
                    let c = csum_fold(s + payload_sum);
                    l4[16..18].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
        Ok(Templates {
            hdr_len,
            size: spec.size,
            flows,
            headers,
            payload,
        })
    }

    /// Frame length.
    #[inline]
    pub fn frame_len(&self) -> usize {
        self.size
    }

    /// Number of flows.
    #[inline]
    pub fn flows(&self) -> usize {
        self.flows
    }

    /// Offset of the L4 payload (where the latency stamp goes).
    #[inline]
    pub fn payload_offset(&self) -> usize {
        self.hdr_len
    }

    /// Writes flow `flow % flows` into `out`, which must be exactly `frame_len()` bytes.
    /// *Fast path*: two copies, no allocation.
    #[inline]
    pub fn write(&self, flow: usize, out: &mut [u8]) {
        // The generator passes flow < flows; the division only for other callers.
        let f = if flow < self.flows {
            flow
        } else {
            flow % self.flows
        };
        let (h, p) = out.split_at_mut(self.hdr_len);
        h.copy_from_slice(&self.headers[f * self.hdr_len..(f + 1) * self.hdr_len]);
        p.copy_from_slice(&self.payload);
    }

    /// Flow `flow`'s frame as a new vector (for pcap files and tests).
    pub fn frame(&self, flow: usize) -> Vec<u8> {
        let mut v = vec![0u8; self.size];
        self.write(flow, &mut v);
        v
    }
}

/// Writes a latency stamp at `off` (the L4 payload offset). `frame` must hold
/// `off + LATENCY_STAMP_LEN` bytes (guaranteed by [`Templates::build`] with `latency`).
#[inline]
pub fn stamp(frame: &mut [u8], off: usize, seq: u64, tsc: u64) {
    if let Some(s) = frame.get_mut(off..off + LATENCY_STAMP_LEN) {
        s[0..4].copy_from_slice(&LATENCY_MAGIC);
        s[4..12].copy_from_slice(&seq.to_le_bytes());
        s[12..20].copy_from_slice(&tsc.to_le_bytes());
    }
}

/// Reads a latency stamp at `off`: `(seq, tsc)`, or `None` when there is none.
#[inline]
pub fn read_stamp(frame: &[u8], off: usize) -> Option<(u64, u64)> {
    let s = frame.get(off..off.checked_add(LATENCY_STAMP_LEN)?)?;
    if s[0..4] != LATENCY_MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(s[4..12].try_into().ok()?);
    let tsc = u64::from_le_bytes(s[12..20].try_into().ok()?);
    Some((seq, tsc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::wire::Flow;

    fn ipv4(a: u128) -> Ipv4Addr {
        Ipv4Addr::from(a as u32)
    }

    #[test]
    fn udp_flows_parse_back_with_distinct_tuples() {
        let spec = FrameSpec {
            flows: 16,
            size: 64,
            ..FrameSpec::default()
        };
        let t = Templates::build(&spec).unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..16 {
            let f = t.frame(i);
            assert_eq!(f.len(), 64);
            let p = Flow::parse(&f).unwrap();
            assert_eq!(p.src_mac, spec.src_mac);
            assert_eq!(p.dst_mac, spec.dst_mac);
            assert_eq!(p.ethertype, 0x0800);
            assert_eq!(p.proto, 17);
            assert!(p.has_l4);
            let l3 = p.l3.unwrap();
            assert_eq!(ipv4(l3.src), Ipv4Addr::new(10, 0, 0, 1 + i as u8));
            assert_eq!(ipv4(l3.dst), Ipv4Addr::new(10, 1, 0, 1 + i as u8));
            assert_eq!(p.sport, 1024 + i as u16);
            assert_eq!(p.payload_offset as usize, t.payload_offset());
            // IPv4 header checksum verifies.
            assert_eq!(csum_fold(csum_add(0, &f[14..34])), 0);
            seen.insert((l3, p.sport, p.dport));
        }
        assert_eq!(seen.len(), 16);
        // Flow index wraps.
        assert_eq!(t.frame(16), t.frame(0));
    }

    #[test]
    fn tcp_syn_with_vlan_and_valid_checksum() {
        let spec = FrameSpec {
            proto: Proto::Tcp,
            tcp_flags: "syn".parse().unwrap(),
            vlan: Some(100),
            size: 81,
            signature: vec![0xde, 0xad],
            flows: 3,
            ..FrameSpec::default()
        };
        let t = Templates::build(&spec).unwrap();
        for i in 0..3 {
            let f = t.frame(i);
            let p = Flow::parse(&f).unwrap();
            assert_eq!(p.vlan, 100);
            assert_eq!(p.proto, 6);
            assert_eq!(p.tcp_flags, 0x02);
            let l3 = p.l3.unwrap();
            // TCP checksum over pseudo header + segment verifies to 0.
            let seg = &f[18 + 20..];
            let mut pseudo = [0u8; 12];
            pseudo[0..4].copy_from_slice(&(l3.src as u32).to_be_bytes());
            pseudo[4..8].copy_from_slice(&(l3.dst as u32).to_be_bytes());
            pseudo[9] = 6;
            pseudo[10..12].copy_from_slice(&(seg.len() as u16).to_be_bytes());
            assert_eq!(
                csum_fold(csum_add(csum_add(0, &pseudo), seg)),
                0,
                "flow {i}"
            );
            assert_eq!(
                &f[t.payload_offset()..t.payload_offset() + 4],
                &[0xde, 0xad, 0xde, 0xad]
            );
        }
    }

    #[test]
    fn size_limits_and_latency_rules() {
        let small = FrameSpec {
            size: 41,
            ..FrameSpec::default()
        };
        assert_eq!(
            Templates::build(&small).unwrap_err(),
            FrameError::TooSmall { size: 41, min: 42 }
        );
        let lat = FrameSpec {
            size: 61,
            latency: true,
            ..FrameSpec::default()
        };
        assert!(matches!(
            Templates::build(&lat),
            Err(FrameError::TooSmall { min: 62, .. })
        ));
        let lat_tcp = FrameSpec {
            latency: true,
            proto: Proto::Tcp,
            ..FrameSpec::default()
        };
        assert_eq!(
            Templates::build(&lat_tcp).unwrap_err(),
            FrameError::LatencyNeedsUdp
        );
        assert!(Templates::build(&FrameSpec {
            size: MAX_FRAME + 1,
            ..FrameSpec::default()
        })
        .is_err());
        assert!(Templates::build(&FrameSpec {
            flows: 0,
            ..FrameSpec::default()
        })
        .is_err());
    }

    #[test]
    fn stamp_round_trips_and_rejects_foreign_payloads() {
        let t = Templates::build(&FrameSpec {
            latency: true,
            ..FrameSpec::default()
        })
        .unwrap();
        let mut f = t.frame(0);
        assert_eq!(read_stamp(&f, t.payload_offset()), None);
        stamp(&mut f, t.payload_offset(), 42, 0xdead_beef_0000);
        assert_eq!(
            read_stamp(&f, t.payload_offset()),
            Some((42, 0xdead_beef_0000))
        );
        assert_eq!(read_stamp(&f[..50], t.payload_offset()), None);
        assert_eq!(read_stamp(&f, usize::MAX), None);
    }

    #[test]
    fn option_parsers() {
        assert_eq!("syn,ack".parse::<TcpFlags>().unwrap(), TcpFlags(0x12));
        assert_eq!("0x29".parse::<TcpFlags>().unwrap(), TcpFlags(0x29));
        assert!("syn,bogus".parse::<TcpFlags>().is_err());
        assert_eq!(TcpFlags(0x12).to_string(), "syn,ack");
        assert_eq!(
            "deadbeef".parse::<Signature>().unwrap(),
            Signature(vec![0xde, 0xad, 0xbe, 0xef])
        );
        assert!("abc".parse::<Signature>().is_err());
        assert!("zz".parse::<Signature>().is_err());
        let v: Vary = "src-ip,dport".parse().unwrap();
        assert!(v.src_ip && v.dport && !v.dst_ip && !v.sport);
        assert!("nope".parse::<Vary>().is_err());
    }
}
