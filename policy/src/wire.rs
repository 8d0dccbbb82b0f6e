//! Zero-copy views of the frames the switch looks at.
//!
//! In the spirit of smoltcp's `wire` module: a view is built once with a checked
//! constructor that validates lengths, then its accessors cannot fail or panic.
//! Field byte ranges live in `field` modules. Nothing here allocates or copies;
//! the functions are on the per-packet fast path.
//!
//! [`Flow::parse`] extracts everything the distribution hashes, the DoS detectors and
//! the switching decision need from one frame in a single pass: MACs, the (inner)
//! ethertype after up to two VLAN tags, IPv4/IPv6 addresses, the L4 protocol, ports
//! and TCP flags. A frame too short for a layer simply lacks that layer: a runt
//! Ethernet frame is an error, a truncated IP header makes a non-IP flow.

use core::fmt;
use core::str::FromStr;

/// Ethertypes the switch cares about.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// Reverse ARP, used for gratuitous "MAC moved" announcements.
    pub const RARP: u16 = 0x8035;
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service tag (QinQ).
    pub const QINQ: u16 = 0x88A8;
    /// IPv6.
    pub const IPV6: u16 = 0x86DD;
    /// IEEE 802.3 Slow Protocols (LACP, Marker).
    pub const SLOW: u16 = 0x8809;
}

/// IP protocol numbers the switch parses.
pub mod ipproto {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP.
    pub const ICMP: u8 = 1;
}

/// TCP flag bits, as in the TCP header's flags byte.
pub mod tcpflags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The Slow Protocols multicast address 01:80:c2:00:00:02 (LACP, Marker).
    pub const SLOW_PROTOCOLS: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x02]);

    /// True for group addresses (multicast and broadcast): the I/G bit is set.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    /// True for ff:ff:ff:ff:ff:ff.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }
    /// True for an individual (unicast) address that is not all zeroes.
    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }
    /// The address as a u64 (upper 16 bits zero), handy for hashing and tables.
    #[inline]
    pub fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 02:00:00:00:00:01")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(err)?;
            if p.is_empty() || p.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// Errors from checked constructors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header it must contain.
    Truncated,
    /// A field holds a value the parser does not accept.
    Malformed,
}

/// Byte ranges of the Ethernet header.
pub mod field {
    use core::ops::Range;
    /// Destination MAC.
    pub const DST: Range<usize> = 0..6;
    /// Source MAC.
    pub const SRC: Range<usize> = 6..12;
    /// Ethertype (or TPID of the first VLAN tag).
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Length of the untagged Ethernet header.
    pub const HEADER_LEN: usize = 14;
}

/// The smallest frame the switch accepts: an Ethernet header.
pub const MIN_FRAME_LEN: usize = field::HEADER_LEN;

/// A read-only view of an Ethernet frame whose header is known to be present.
#[derive(Clone, Copy)]
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    /// Validates that `buf` holds at least an Ethernet header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < field::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buf })
    }
    /// Destination MAC.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr(read6(self.buf, 0))
    }
    /// Source MAC.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr(read6(self.buf, 6))
    }
    /// The outer ethertype (a VLAN TPID for tagged frames).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buf, 12)
    }
    /// The whole frame.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

#[inline]
fn read6(b: &[u8], at: usize) -> [u8; 6] {
    let mut o = [0u8; 6];
    o.copy_from_slice(&b[at..at + 6]);
    o
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// L3 addresses of a flow. IPv4 addresses are stored as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct L3Addrs {
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
}

/// Everything the switch needs to know about one frame, parsed in one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flow {
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Ethertype after VLAN tags.
    pub ethertype: u16,
    /// Outer VLAN ID (0 when untagged).
    pub vlan: u16,
    /// Offset of the L3 header in the frame.
    pub l3_offset: u16,
    /// L3 addresses, when the frame is IPv4/IPv6 with a complete header.
    pub l3: Option<L3Addrs>,
    /// IP protocol (0 when not IP).
    pub proto: u8,
    /// L4 source port; 0 when absent (non-TCP/UDP or a non-first fragment).
    pub sport: u16,
    /// L4 destination port; 0 when absent.
    pub dport: u16,
    /// TCP flags byte; 0 when not TCP.
    pub tcp_flags: u8,
    /// True when L4 ports were parsed (TCP/UDP, first fragment, header complete).
    pub has_l4: bool,
    /// Offset of the L4 payload (after the TCP/UDP header), when `has_l4`.
    pub payload_offset: u16,
}

impl Flow {
    /// Parses a frame. Fails only when the Ethernet header itself is missing.
    /// *Fast path*: no allocation, a handful of bounds checks.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Flow, WireError> {
        let eth = EthernetFrame::new_checked(buf)?;
        let mut f = Flow {
            dst_mac: eth.dst(),
            src_mac: eth.src(),
            ..Flow::default()
        };
        let mut et = eth.ethertype();
        let mut off = field::HEADER_LEN;
        // Up to two VLAN tags (802.1Q, 802.1ad).
        for _ in 0..2 {
            if (et == ethertype::VLAN || et == ethertype::QINQ) && buf.len() >= off + 4 {
                if f.vlan == 0 {
                    f.vlan = be16(buf, off) & 0x0fff;
                }
                et = be16(buf, off + 2);
                off += 4;
            } else {
                break;
            }
        }
        f.ethertype = et;
        f.l3_offset = off as u16;
        match et {
            ethertype::IPV4 => f.parse_ipv4(buf, off),
            ethertype::IPV6 => f.parse_ipv6(buf, off),
            _ => {}
        }
        Ok(f)
    }

    #[inline]
    fn parse_ipv4(&mut self, buf: &[u8], off: usize) {
        if buf.len() < off + 20 {
            return;
        }
        let vihl = buf[off];
        let ihl = (vihl & 0x0f) as usize * 4;
        if vihl >> 4 != 4 || ihl < 20 || buf.len() < off + ihl {
            return;
        }
        let src = be32(buf, off + 12);
        let dst = be32(buf, off + 16);
        self.l3 = Some(L3Addrs {
            src: 0xffff_0000_0000u128 | src as u128,
            dst: 0xffff_0000_0000u128 | dst as u128,
        });
        self.proto = buf[off + 9];
        let frag = be16(buf, off + 6);
        let more_fragments = frag & 0x2000 != 0;
        let frag_offset = frag & 0x1fff;
        if more_fragments || frag_offset != 0 {
            // Fragments carry L4 ports only in the first one; hash them on L3 alone
            // so all fragments of a datagram take the same member.
            return;
        }
        self.parse_l4(buf, off + ihl);
    }

    #[inline]
    fn parse_ipv6(&mut self, buf: &[u8], off: usize) {
        if buf.len() < off + 40 || buf[off] >> 4 != 6 {
            return;
        }
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&buf[off + 8..off + 24]);
        d.copy_from_slice(&buf[off + 24..off + 40]);
        self.l3 = Some(L3Addrs {
            src: u128::from_be_bytes(s),
            dst: u128::from_be_bytes(d),
        });
        self.proto = buf[off + 6];
        self.parse_l4(buf, off + 40);
    }

    #[inline]
    fn parse_l4(&mut self, buf: &[u8], off: usize) {
        match self.proto {
            ipproto::TCP if buf.len() >= off + 20 => {
                self.sport = be16(buf, off);
                self.dport = be16(buf, off + 2);
                self.tcp_flags = buf[off + 13];
                let doff = ((buf[off + 12] >> 4) as usize * 4).max(20);
                self.payload_offset = (off + doff).min(buf.len()) as u16;
                self.has_l4 = true;
            }
            ipproto::UDP if buf.len() >= off + 8 => {
                self.sport = be16(buf, off);
                self.dport = be16(buf, off + 2);
                self.payload_offset = (off + 8) as u16;
                self.has_l4 = true;
            }
            _ => {}
        }
    }

    /// True for IEEE 802.3 Slow Protocols frames (LACP, Marker).
    #[inline]
    pub fn is_slow_protocol(&self) -> bool {
        self.ethertype == ethertype::SLOW
    }
}

/// Length of a gratuitous RARP frame built by [`build_rarp`] (padded to the Ethernet minimum).
pub const RARP_FRAME_LEN: usize = 60;

/// Writes a gratuitous RARP "reverse request" announcing `mac`, as Open vSwitch and
/// VMware's "notify switches" send after a MAC moves to another NIC: broadcast,
/// source `mac`, sender and target hardware address `mac`, protocol addresses zero.
/// Returns the number of bytes written ([`RARP_FRAME_LEN`]).
pub fn build_rarp(mac: MacAddr, out: &mut [u8; RARP_FRAME_LEN]) -> usize {
    out.fill(0);
    out[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    out[6..12].copy_from_slice(&mac.0);
    out[12..14].copy_from_slice(&ethertype::RARP.to_be_bytes());
    out[14..16].copy_from_slice(&1u16.to_be_bytes()); // HTYPE Ethernet
    out[16..18].copy_from_slice(&ethertype::IPV4.to_be_bytes()); // PTYPE
    out[18] = 6; // HLEN
    out[19] = 4; // PLEN
    out[20..22].copy_from_slice(&3u16.to_be_bytes()); // reverse request
    out[22..28].copy_from_slice(&mac.0); // SHA
                                         // SPA 28..32 = 0
    out[32..38].copy_from_slice(&mac.0); // THA
                                         // TPA 38..42 = 0
    RARP_FRAME_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn udp4(sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 18];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        f[14] = 0x45;
        f[23] = ipproto::UDP;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn mac_parse_and_display_round_trip() {
        let m: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0, 0, 0, 10]);
        assert_eq!(m.to_string(), "02:00:00:00:00:0a");
        assert!(m.is_unicast());
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "002:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn runt_is_truncated() {
        assert_eq!(Flow::parse(&[0u8; 13]), Err(WireError::Truncated));
        assert!(Flow::parse(&[0u8; 14]).is_ok());
    }

    #[test]
    fn parses_udp4() {
        let f = Flow::parse(&udp4(1234, 80)).unwrap();
        assert_eq!(f.ethertype, ethertype::IPV4);
        assert_eq!(f.proto, ipproto::UDP);
        assert_eq!((f.sport, f.dport), (1234, 80));
        assert!(f.has_l4);
        assert_eq!(f.l3.unwrap().src & 0xffff_ffff, 0x0a00_0001);
    }

    #[test]
    fn vlan_tag_is_skipped() {
        let mut f = udp4(1, 2);
        f.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        let p = Flow::parse(&f).unwrap();
        assert_eq!(p.vlan, 100);
        assert_eq!(p.ethertype, ethertype::IPV4);
        assert_eq!((p.sport, p.dport), (1, 2));
    }

    #[test]
    fn truncated_ip_is_l2_only() {
        let f = udp4(1, 2);
        let p = Flow::parse(&f[..30]).unwrap();
        assert!(p.l3.is_none() && !p.has_l4);
        let p = Flow::parse(&f[..36]).unwrap();
        assert!(p.l3.is_some() && !p.has_l4);
    }

    #[test]
    fn fragments_have_no_ports() {
        let mut f = udp4(1, 2);
        f[20] = 0x20; // MF
        let p = Flow::parse(&f).unwrap();
        assert!(p.l3.is_some() && !p.has_l4 && p.sport == 0);
    }

    #[test]
    fn rarp_frame_layout() {
        let mac = MacAddr([2, 0, 0, 0, 0, 7]);
        let mut buf = [0u8; RARP_FRAME_LEN];
        build_rarp(mac, &mut buf);
        let p = Flow::parse(&buf).unwrap();
        assert_eq!(p.ethertype, ethertype::RARP);
        assert!(p.dst_mac.is_broadcast());
        assert_eq!(p.src_mac, mac);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let r = Flow::parse(&bytes);
            prop_assert_eq!(r.is_err(), bytes.len() < 14);
            if let Ok(f) = r {
                prop_assert!((f.payload_offset as usize) <= bytes.len());
            }
        }
    }
}
