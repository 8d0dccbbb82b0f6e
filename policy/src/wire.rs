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
//!
//! [`FrameView`] is the lazy form the workers use per frame: its checked constructor
//! decodes only the Ethernet header and VLAN tags; the IP addresses and ports are read
//! when a bond's hash needs them, and a whole `Flow` is built only for the DoS path.
//! `Flow::parse` is built on it, so the two cannot disagree.

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
    /// The address as a u64 key for hashing and tables: the six bytes in memory
    /// order, little-endian, upper 16 bits zero (so a frame's MAC is one 8-byte load
    /// and a mask, see [`FrameView::dst_key`]). Not an ordering of addresses.
    #[inline]
    pub fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0])
    }

    /// True for the key of a group (multicast or broadcast) address: the I/G bit, the
    /// lowest bit of the first byte.
    #[inline]
    pub fn key_is_multicast(key: u64) -> bool {
        key & 1 != 0
    }

    /// True when `key` ([`MacAddr::to_u64`]) is one of IEEE 802.1Q's reserved
    /// link-local group addresses 01:80:C2:00:00:00–0F (STP, PAUSE, slow protocols,
    /// EAPOL, LLDP), which a bridge never forwards.
    #[inline]
    pub fn key_is_link_local_reserved(key: u64) -> bool {
        key & 0xf0ff_ffff_ffff == 0x0000_00c2_8001
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

#[cfg(test)]
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
    /// *Fast path*: no allocation, a handful of bounds checks. The same as
    /// [`FrameView::new_checked`] followed by [`FrameView::flow`].
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Flow, WireError> {
        FrameView::new_checked(buf).map(|v| v.flow())
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

/// What [`FrameView::ip`] finds in a complete IPv4 or IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeader {
    /// Source and destination addresses (IPv4 as IPv4-mapped IPv6).
    pub addrs: L3Addrs,
    /// IP protocol (IPv6: the first next-header value).
    pub proto: u8,
    /// Offset of the L4 header in the frame; `None` for IPv4 fragments, whose ports
    /// (in the first fragment only) are ignored so all fragments of a datagram hash alike.
    pub l4_offset: Option<u16>,
}

/// The six address bytes of an 8-byte little-endian load.
const MAC_KEY_MASK: u64 = 0xffff_ffff_ffff;

/// A lazily parsed view of one frame: the Ethernet header and VLAN tags are decoded
/// by the checked constructor, the IP and L4 headers only when asked for.
///
/// The switch's per-frame decision mostly needs the MACs and the ethertype; only
/// some bond modes need the addresses or the ports, and only the DoS path needs a
/// whole [`Flow`]. Every accessor agrees with [`Flow::parse`] of the same bytes
/// (property-tested), and none can fail or panic once the view exists.
#[derive(Clone, Copy, Debug)]
pub struct FrameView<'a> {
    buf: &'a [u8],
    /// The Ethernet header (the first 14 bytes of `buf`).
    eth: &'a [u8; field::HEADER_LEN],
    ethertype: u16,
    vlan: u16,
    l3_offset: u16,
    /// The frame is known to be IPv4 without options (its IP header's first byte is
    /// 0x45), from an [`EthHeaderKey`] that compares that byte too
    /// ([`EthHeaderKey::view_v4`]); the one-step read need not check it again.
    v4_plain: bool,
}

impl<'a> FrameView<'a> {
    /// Validates that `buf` holds an Ethernet header and skips up to two VLAN tags
    /// (802.1Q, 802.1ad). Fails exactly when [`Flow::parse`] fails. *Fast path*.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        let Some(Ok(eth)) = buf
            .get(..field::HEADER_LEN)
            .map(<&[u8; field::HEADER_LEN]>::try_from)
        else {
            return Err(WireError::Truncated);
        };
        let mut et = u16::from_be_bytes([eth[12], eth[13]]);
        let mut off = field::HEADER_LEN;
        let mut vlan = 0;
        for _ in 0..2 {
            if (et == ethertype::VLAN || et == ethertype::QINQ) && buf.len() >= off + 4 {
                if vlan == 0 {
                    vlan = be16(buf, off) & 0x0fff;
                }
                et = be16(buf, off + 2);
                off += 4;
            } else {
                break;
            }
        }
        Ok(FrameView {
            buf,
            eth,
            ethertype: et,
            vlan,
            l3_offset: off as u16,
            v4_plain: false,
        })
    }

    /// Destination MAC.
    #[inline]
    pub fn dst_mac(&self) -> MacAddr {
        let e = self.eth;
        MacAddr([e[0], e[1], e[2], e[3], e[4], e[5]])
    }

    /// Source MAC.
    #[inline]
    pub fn src_mac(&self) -> MacAddr {
        let e = self.eth;
        MacAddr([e[6], e[7], e[8], e[9], e[10], e[11]])
    }

    /// Destination MAC as [`MacAddr::to_u64`] gives it: one 8-byte load and a mask.
    #[inline]
    pub fn dst_key(&self) -> u64 {
        let e = self.eth;
        u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]) & MAC_KEY_MASK
    }

    /// Source MAC as [`MacAddr::to_u64`] gives it: one 8-byte load and a mask.
    #[inline]
    pub fn src_key(&self) -> u64 {
        let e = self.eth;
        u64::from_le_bytes([e[6], e[7], e[8], e[9], e[10], e[11], e[12], e[13]]) & MAC_KEY_MASK
    }

    /// Ethertype after VLAN tags.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        self.ethertype
    }

    /// Outer VLAN ID (0 when untagged).
    #[inline]
    pub fn vlan(&self) -> u16 {
        self.vlan
    }

    /// Offset of the L3 header in the frame.
    #[inline]
    pub fn l3_offset(&self) -> u16 {
        self.l3_offset
    }

    /// The whole frame.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// True for IEEE 802.3 Slow Protocols frames (LACP, Marker).
    #[inline]
    pub fn is_slow_protocol(&self) -> bool {
        self.ethertype == ethertype::SLOW
    }

    /// The IP header, when the frame is IPv4/IPv6 with a complete header (else `None`,
    /// as [`Flow::l3`]). *Fast path*: one length check per header, fixed-size reads.
    #[inline]
    pub fn ip(&self) -> Option<IpHeader> {
        let buf = self.buf;
        let off = self.l3_offset as usize;
        match self.ethertype {
            ethertype::IPV4 => {
                let h: &[u8; 20] = buf.get(off..off + 20)?.try_into().ok()?;
                let ihl = (h[0] & 0x0f) as usize * 4;
                if h[0] >> 4 != 4 || ihl < 20 || buf.len() < off + ihl {
                    return None;
                }
                let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
                let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
                // More-fragments set or a non-zero fragment offset: a fragment.
                let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
                Some(IpHeader {
                    addrs: L3Addrs {
                        src: 0xffff_0000_0000u128 | src as u128,
                        dst: 0xffff_0000_0000u128 | dst as u128,
                    },
                    proto: h[9],
                    l4_offset: if fragment {
                        None
                    } else {
                        Some((off + ihl) as u16)
                    },
                })
            }
            ethertype::IPV6 => {
                let h: &[u8; 40] = buf.get(off..off + 40)?.try_into().ok()?;
                if h[0] >> 4 != 6 {
                    return None;
                }
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&h[8..24]);
                d.copy_from_slice(&h[24..40]);
                Some(IpHeader {
                    addrs: L3Addrs {
                        src: u128::from_be_bytes(s),
                        dst: u128::from_be_bytes(d),
                    },
                    proto: h[6],
                    l4_offset: Some((off + 40) as u16),
                })
            }
            _ => None,
        }
    }

    /// TCP/UDP source and destination ports of `ip` (this frame's [`ip`](Self::ip)),
    /// when the L4 header is complete and the packet is not an IPv4 fragment (else
    /// `None`, as [`Flow::has_l4`]). *Fast path*.
    #[inline]
    pub fn ports(&self, ip: &IpHeader) -> Option<(u16, u16)> {
        let off = ip.l4_offset? as usize;
        let need = match ip.proto {
            ipproto::TCP => 20,
            ipproto::UDP => 8,
            _ => return None,
        };
        if self.buf.len() < off + need {
            return None;
        }
        let p: &[u8; 4] = self.buf.get(off..off + 4)?.try_into().ok()?;
        Some((
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ))
    }

    /// The common case of [`FlowFields::l3l4`](crate::bond::FlowFields::l3l4) in one
    /// step: an IPv4 header without options, not a fragment, carrying a complete UDP
    /// or TCP header. Gives the addresses and `sport << 16 | dport | proto << 32`;
    /// `None` for anything else (the caller falls back to [`ip`](Self::ip) and
    /// [`ports`](Self::ports), which agree with this where both answer). *Fast path*.
    #[inline(always)]
    pub fn udp_tcp_v4(&self) -> Option<(L3Addrs, u64)> {
        self.v4_header().map(|(h, proto)| v4_fields(h, proto))
    }

    /// [`udp_tcp_v4`](Self::udp_tcp_v4) as the two words the L3+L4 hash takes
    /// ([`FlowFields::l3l4_words`](crate::bond::FlowFields::l3l4_words)): both
    /// addresses in one 8-byte load. *Fast path*.
    #[inline(always)]
    pub fn udp_tcp_v4_words(&self) -> Option<(u64, u64)> {
        let (h, proto) = self.v4_header()?;
        // Both words as they lie in the header, the protocol xored into the pair (from
        // bit 32 to bit 24), as `l3l4_words` defines them.
        let (mut a, mut p) = ([0u8; 8], [0u8; 4]);
        a.copy_from_slice(&h[12..20]);
        p.copy_from_slice(&h[20..24]);
        Some((
            u64::from_le_bytes(a) ^ proto >> 8,
            u32::from_le_bytes(p) as u64,
        ))
    }

    /// The first 24 bytes of the IP header, and its protocol shifted to bit 32, when
    /// the frame is IPv4 without options, not a fragment, and its UDP or TCP header is
    /// whole.
    #[inline(always)]
    fn v4_header(&self) -> Option<(&'a [u8; 24], u64)> {
        if self.ethertype != ethertype::IPV4 {
            return None;
        }
        let off = self.l3_offset as usize;
        // One length check covers a TCP header (40 bytes from the IP header) and so a
        // UDP one; only frames shorter than that check the protocol's own length.
        let Some(h) = self.buf.get(off..off + V4_WHOLE_L4) else {
            return v4_header_short(self.buf, off);
        };
        let h: &[u8; 24] = h[..24].try_into().ok()?;
        Some((h, v4_whole_udp_tcp(h, self.v4_plain)?))
    }

    /// The key of this frame's Ethernet header, when the frame is untagged (a tag's
    /// VLAN ID lies beyond the bytes the key compares) and has a byte after the
    /// header. *Fast path*.
    #[inline(always)]
    pub fn header_key(&self) -> Option<EthHeaderKey> {
        let raw = u16::from_be_bytes([self.eth[12], self.eth[13]]);
        if raw == ethertype::VLAN || raw == ethertype::QINQ {
            return None;
        }
        let (lo, hi) = key_words(self.buf.get(..KEY_LEN)?.try_into().ok()?);
        Some(EthHeaderKey {
            lo,
            hi,
            ethertype: self.ethertype,
        })
    }

    /// The whole [`Flow`] of this frame.
    #[inline]
    pub fn flow(&self) -> Flow {
        let mut f = Flow {
            dst_mac: self.dst_mac(),
            src_mac: self.src_mac(),
            ethertype: self.ethertype,
            vlan: self.vlan,
            l3_offset: self.l3_offset,
            ..Flow::default()
        };
        if let Some(ip) = self.ip() {
            f.l3 = Some(ip.addrs);
            f.proto = ip.proto;
            if let Some(off) = ip.l4_offset {
                f.parse_l4(self.buf, off as usize);
            }
        }
        f
    }
}

/// [`FrameView::v4_header`] of a frame with fewer than 40 bytes from its IP header
/// (at `off`): a UDP datagram may still be whole.
#[cold]
fn v4_header_short(buf: &[u8], off: usize) -> Option<(&[u8; 24], u64)> {
    let h: &[u8; 24] = buf.get(off..off + 24)?.try_into().ok()?;
    let proto = v4_whole_udp_tcp(h, false)?;
    // The IP header and a UDP header (8 bytes) or a TCP one (20).
    let need = if proto == (ipproto::UDP as u64) << 32 {
        28
    } else {
        40
    };
    if buf.len() < off + need {
        return None;
    }
    Some((h, proto))
}

/// The protocol of IPv4 header `h`, shifted to bit 32, when the header has no options
/// (version 4, IHL 5; not checked when the caller knows it, `plain`), the protocol is
/// UDP or TCP and the packet is not a fragment (no more-fragments flag, fragment
/// offset 0).
///
/// After byte 0, one load and one mask: bytes 6..10 (flags and fragment offset, TTL,
/// protocol) without the don't-fragment and reserved flags and the TTL leave the
/// protocol alone in the top byte exactly when the packet is whole.
#[inline(always)]
fn v4_whole_udp_tcp(h: &[u8; 24], plain: bool) -> Option<u64> {
    if !plain && h[0] != 0x45 {
        return None;
    }
    // A whole-array copy, so it is one load: from single bytes, the masked-out TTL
    // left three byte loads and shifts.
    let mut b = [0u8; 4];
    b.copy_from_slice(&h[6..10]);
    let w = u32::from_le_bytes(b) & 0xff00_ff3f;
    if w != (ipproto::UDP as u32) << 24 && w != (ipproto::TCP as u32) << 24 {
        return None;
    }
    Some((w as u64) << 8)
}

/// The addresses and the L4 word of a [`FrameView::v4_header`] (`proto`: its
/// protocol at bit 32).
#[inline(always)]
fn v4_fields(h: &[u8; 24], proto: u64) -> (L3Addrs, u64) {
    let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    let ports = u32::from_be_bytes([h[20], h[21], h[22], h[23]]) as u64;
    (
        L3Addrs {
            src: 0xffff_0000_0000u128 | src as u128,
            dst: 0xffff_0000_0000u128 | dst as u128,
        },
        ports | proto,
    )
}

/// The Ethernet header (first 14 bytes) of an untagged frame and the byte after it,
/// as two overlapping 8-byte loads, with its ethertype: what
/// [`FrameView::new_checked`] decodes from a frame without VLAN tags.
///
/// A frame whose first 14 bytes are the same has the same MACs and ethertype and no
/// tag, so whatever was decided from those alone (the spoof check, the destination
/// lookup) holds for it too. The switch keeps the previous frame's key through a
/// burst: frames of one VM to one peer share their header, and
/// [`view`](Self::view) replaces the checked constructor, the spoof, slow-protocol
/// and multicast checks and the destination lookup by two loads and two compares.
///
/// The 15th byte comes free (the second load ends there instead of at byte 14, the
/// first still covers byte 6): of an IPv4 frame it is the IP header's version and
/// length, so frames of a key of an IPv4 header without options
/// ([`is_v4_plain`](Self::is_v4_plain)) are known to have none
/// ([`view_v4`](Self::view_v4)). Of other frames it is the first byte of their
/// payload (an IPv6 header's version and traffic class, an ARP hardware type), the
/// same within a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthHeaderKey {
    /// Bytes 0..8 (destination MAC, first two of the source), little-endian.
    lo: u64,
    /// Bytes 7..15 (source MAC but its first byte, ethertype, the next byte),
    /// little-endian.
    hi: u64,
    ethertype: u16,
}

impl EthHeaderKey {
    /// The view of `buf` when its first 15 bytes are this key's: the same view
    /// [`FrameView::new_checked`] gives (property-tested). `None` for any other frame.
    /// *Fast path*.
    #[inline(always)]
    pub fn view<'a>(&self, buf: &'a [u8]) -> Option<FrameView<'a>> {
        self.view_as(buf, self.ethertype)
    }

    /// [`view`](Self::view) for a caller that passes this key's
    /// [`ethertype`](Self::ethertype) in: as a constant, it lets the compiler drop the
    /// view's ethertype checks from a loop compiled for that ethertype. *Fast path*.
    #[inline(always)]
    pub fn view_as<'a>(&self, buf: &'a [u8], ethertype: u16) -> Option<FrameView<'a>> {
        debug_assert_eq!(ethertype, self.ethertype);
        self.view_known(buf, ethertype, false)
    }

    /// [`view`](Self::view) for a key that [`is_v4_plain`](Self::is_v4_plain): the
    /// view knows its frame's IP header has no options, so the one-step L3+L4 read
    /// ([`FrameView::udp_tcp_v4_words`]) does not check that again. *Fast path*.
    #[inline(always)]
    pub fn view_v4<'a>(&self, buf: &'a [u8]) -> Option<FrameView<'a>> {
        debug_assert!(self.is_v4_plain());
        self.view_known(buf, ethertype::IPV4, true)
    }

    #[inline(always)]
    fn view_known<'a>(
        &self,
        buf: &'a [u8],
        ethertype: u16,
        v4_plain: bool,
    ) -> Option<FrameView<'a>> {
        let k: &[u8; KEY_LEN] = buf.get(..KEY_LEN)?.try_into().ok()?;
        let (lo, hi) = key_words(k);
        if lo != self.lo || hi != self.hi {
            return None;
        }
        let eth: &[u8; field::HEADER_LEN] = k[..field::HEADER_LEN].try_into().ok()?;
        Some(FrameView {
            buf,
            eth,
            ethertype,
            vlan: 0,
            l3_offset: field::HEADER_LEN as u16,
            v4_plain,
        })
    }

    /// The ethertype of the frames this key matches (untagged: the outer one).
    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        self.ethertype
    }

    /// Whether this key's frames are IPv4 without IP options (version 4, header
    /// length 5: the byte after the Ethernet header is 0x45).
    #[inline(always)]
    pub fn is_v4_plain(&self) -> bool {
        self.ethertype == ethertype::IPV4 && (self.hi >> 56) as u8 == 0x45
    }
}

/// Bytes from an IPv4 header (without options) to the end of a TCP header.
const V4_WHOLE_L4: usize = 40;

/// The length from which an untagged IPv4 frame's L3 and L4 fields are read in one
/// step ([`FrameView::udp_tcp_v4_words`]). A loop over frames of one
/// [`EthHeaderKey`] that checks this length once per frame spares the view and the
/// read their own length checks.
pub const V4_RUN_MIN_LEN: usize = field::HEADER_LEN + V4_WHOLE_L4;

/// The bytes an [`EthHeaderKey`] compares: the Ethernet header and the byte after it.
const KEY_LEN: usize = field::HEADER_LEN + 1;

/// The two overlapping little-endian words of an [`EthHeaderKey`]'s bytes.
#[inline(always)]
fn key_words(e: &[u8; KEY_LEN]) -> (u64, u64) {
    // Whole-array copies, so each is one load: byte-wise arrays sharing byte 7 were
    // left as single-byte loads.
    let (mut lo, mut hi) = ([0u8; 8], [0u8; 8]);
    lo.copy_from_slice(&e[..8]);
    hi.copy_from_slice(&e[7..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
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
pub(crate) mod tests {
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
    fn link_local_reserved_group_addresses() {
        let key = |s: &str| s.parse::<MacAddr>().unwrap().to_u64();
        for m in [
            "01:80:c2:00:00:00",
            "01:80:c2:00:00:01",
            "01:80:c2:00:00:02",
            "01:80:c2:00:00:0e",
            "01:80:c2:00:00:0f",
        ] {
            assert!(MacAddr::key_is_link_local_reserved(key(m)), "{m}");
        }
        for m in [
            "01:80:c2:00:00:10",
            "01:80:c2:00:01:00",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "02:80:c2:00:00:00",
            "33:33:00:00:00:01",
        ] {
            assert!(!MacAddr::key_is_link_local_reserved(key(m)), "{m}");
        }
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

    /// The single-pass parser `Flow::parse` was before [`FrameView`] existed, kept as
    /// the reference the view must agree with.
    fn reference_parse(buf: &[u8]) -> Result<Flow, WireError> {
        let eth = EthernetFrame::new_checked(buf)?;
        let mut f = Flow {
            dst_mac: eth.dst(),
            src_mac: eth.src(),
            ..Flow::default()
        };
        let mut et = eth.ethertype();
        let mut off = field::HEADER_LEN;
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
            ethertype::IPV4 => {
                if buf.len() < off + 20 {
                    return Ok(f);
                }
                let vihl = buf[off];
                let ihl = (vihl & 0x0f) as usize * 4;
                if vihl >> 4 != 4 || ihl < 20 || buf.len() < off + ihl {
                    return Ok(f);
                }
                f.l3 = Some(L3Addrs {
                    src: 0xffff_0000_0000u128 | be32(buf, off + 12) as u128,
                    dst: 0xffff_0000_0000u128 | be32(buf, off + 16) as u128,
                });
                f.proto = buf[off + 9];
                let frag = be16(buf, off + 6);
                if frag & 0x2000 != 0 || frag & 0x1fff != 0 {
                    return Ok(f);
                }
                f.parse_l4(buf, off + ihl);
            }
            ethertype::IPV6 => {
                if buf.len() < off + 40 || buf[off] >> 4 != 6 {
                    return Ok(f);
                }
                f.l3 = Some(L3Addrs {
                    src: u128::from_be_bytes(buf[off + 8..off + 24].try_into().unwrap()),
                    dst: u128::from_be_bytes(buf[off + 24..off + 40].try_into().unwrap()),
                });
                f.proto = buf[off + 6];
                f.parse_l4(buf, off + 40);
            }
            _ => {}
        }
        Ok(f)
    }

    /// Frames that reach every branch of the parser: random bytes with a chosen
    /// ethertype, optional VLAN tags, an IP version/IHL byte and a protocol, cut to a
    /// random length.
    pub(crate) fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 0..120),
            0usize..3,
            prop_oneof![
                Just(ethertype::IPV4),
                Just(ethertype::IPV6),
                Just(ethertype::SLOW),
                Just(ethertype::ARP),
                any::<u16>()
            ],
            prop_oneof![
                Just(0x45u8),
                Just(0x46),
                Just(0x44),
                Just(0x60),
                any::<u8>()
            ],
            prop_oneof![
                Just(ipproto::TCP),
                Just(ipproto::UDP),
                Just(ipproto::ICMP),
                any::<u8>()
            ],
            prop_oneof![
                Just(0u16),
                Just(0x4000),
                Just(0x2000),
                Just(0x0001),
                any::<u16>()
            ],
            any::<prop::sample::Index>(),
        )
            .prop_map(|(mut b, tags, et, vihl, proto, frag, cut)| {
                b.resize(120, 0);
                let mut off = 12;
                for t in 0..tags {
                    let tpid = if t == 0 {
                        ethertype::QINQ
                    } else {
                        ethertype::VLAN
                    };
                    b[off..off + 2].copy_from_slice(&tpid.to_be_bytes());
                    off += 4;
                }
                b[off..off + 2].copy_from_slice(&et.to_be_bytes());
                let l3 = off + 2;
                b[l3] = vihl;
                if et == ethertype::IPV6 {
                    b[l3 + 6] = proto;
                } else {
                    b[l3 + 6..l3 + 8].copy_from_slice(&frag.to_be_bytes());
                    b[l3 + 9] = proto;
                }
                let len = cut.index(b.len() + 1);
                b.truncate(len);
                b
            })
    }

    proptest! {
        #[test]
        fn parse_matches_reference(bytes in frame_strategy()) {
            prop_assert_eq!(Flow::parse(&bytes), reference_parse(&bytes));
        }

        #[test]
        fn view_agrees_with_flow(bytes in frame_strategy()) {
            let r = FrameView::new_checked(&bytes);
            prop_assert_eq!(r.is_err(), bytes.len() < MIN_FRAME_LEN);
            let Ok(v) = r else { return Ok(()) };
            let f = reference_parse(&bytes).unwrap();
            prop_assert_eq!(v.dst_mac(), f.dst_mac);
            prop_assert_eq!(v.src_mac(), f.src_mac);
            prop_assert_eq!(v.dst_key(), f.dst_mac.to_u64());
            prop_assert_eq!(v.src_key(), f.src_mac.to_u64());
            prop_assert_eq!(v.ethertype(), f.ethertype);
            prop_assert_eq!(v.vlan(), f.vlan);
            prop_assert_eq!(v.l3_offset(), f.l3_offset);
            prop_assert_eq!(v.is_slow_protocol(), f.is_slow_protocol());
            let ip = v.ip();
            prop_assert_eq!(ip.map(|i| i.addrs), f.l3);
            prop_assert_eq!(ip.map(|i| i.proto).unwrap_or(0), f.proto);
            let ports = ip.and_then(|i| v.ports(&i));
            prop_assert_eq!(ports.is_some(), f.has_l4);
            prop_assert_eq!(ports.unwrap_or((0, 0)), (f.sport, f.dport));
            // The one-step IPv4 UDP/TCP read, where it answers, agrees with the above.
            prop_assert_eq!(
                v.udp_tcp_v4_words(),
                v.udp_tcp_v4().map(|(a, l4)| crate::bond::l3l4_words(&a, l4))
            );
            // ... and answers for every IPv4 frame without options whose UDP or TCP
            // header is whole (fragments have no L4 header).
            let one_step = f.ethertype == ethertype::IPV4
                && bytes.get(f.l3_offset as usize) == Some(&0x45)
                && (f.proto == ipproto::UDP || f.proto == ipproto::TCP)
                && f.has_l4;
            prop_assert_eq!(v.udp_tcp_v4().is_some(), one_step);
            if let Some((addrs, l4)) = v.udp_tcp_v4() {
                let (sport, dport) = ports.unwrap();
                prop_assert_eq!(Some(addrs), f.l3);
                prop_assert_eq!(l4, (sport as u64) << 16 | dport as u64 | (f.proto as u64) << 32);
            }
        }
    }

    /// Two frames with the same first 15 bytes as often as not.
    fn frame_pair() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (frame_strategy(), frame_strategy(), any::<bool>()).prop_map(|(a, mut b, same)| {
            if same && a.len() >= 15 && b.len() >= 15 {
                b[..15].copy_from_slice(&a[..15]);
            }
            (a, b)
        })
    }

    proptest! {
        #[test]
        fn header_key_view_is_the_checked_view((a, b) in frame_pair()) {
            let Ok(va) = FrameView::new_checked(&a) else { return Ok(()) };
            let raw = u16::from_be_bytes([a[12], a[13]]);
            let key = va.header_key();
            prop_assert_eq!(
                key.is_some(),
                raw != ethertype::VLAN && raw != ethertype::QINQ && a.len() >= 15
            );
            let Some(key) = key else { return Ok(()) };
            let view = key.view(&b);
            prop_assert_eq!(view.is_some(), b.len() >= 15 && a[..15] == b[..15]);
            prop_assert_eq!(key.is_v4_plain(), va.ethertype() == ethertype::IPV4 && a[14] == 0x45);
            if key.is_v4_plain() {
                // The view that skips the IP header's first byte reads the same.
                let v4 = key.view_v4(&b);
                prop_assert_eq!(v4.is_some(), view.is_some());
                if let (Some(v4), Some(v)) = (v4, view) {
                    prop_assert_eq!(v4.udp_tcp_v4(), v.udp_tcp_v4());
                    prop_assert_eq!(v4.udp_tcp_v4_words(), v.udp_tcp_v4_words());
                }
            }
            let Some(v) = view else { return Ok(()) };
            let c = FrameView::new_checked(&b).unwrap();
            prop_assert_eq!(v.dst_key(), c.dst_key());
            prop_assert_eq!(v.src_key(), c.src_key());
            prop_assert_eq!(v.ethertype(), c.ethertype());
            prop_assert_eq!(v.vlan(), c.vlan());
            prop_assert_eq!(v.l3_offset(), c.l3_offset());
            prop_assert_eq!(v.as_bytes(), c.as_bytes());
            prop_assert_eq!(v.ip().map(|i| (i.addrs, i.proto, i.l4_offset)), c.ip().map(|i| (i.addrs, i.proto, i.l4_offset)));
            prop_assert_eq!(v.udp_tcp_v4(), c.udp_tcp_v4());
        }
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
