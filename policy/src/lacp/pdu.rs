//! LACPDU and Marker PDU codec (IEEE 802.1AX-2008 §5.4.2, §6.5.3; 802.3-2005 clause 43).
//!
//! Frames are whole, untagged Ethernet frames: destination 01:80:c2:00:00:02 (Slow
//! Protocols multicast), source the member's MAC, ethertype 0x8809, then the Slow
//! Protocol subtype (1 = LACP, 2 = Marker). Both PDUs are exactly 110 octets counted
//! from the subtype, so an encoded frame is 14 + 110 = [`FRAME_LEN`] = 124 octets:
//! above the 60-octet Ethernet minimum, so no padding is ever needed. Receivers accept
//! longer frames (a NIC may leave the FCS or padding on) and ignore the excess.
//!
//! Decoding is strict in the spirit of smoltcp's checked views: every length, TLV
//! type and TLV length is checked before a field is read, the checks are done once in
//! [`decode`], and any malformed input returns a small `Copy` [`PduError`]. No input
//! can make the decoder panic (property-tested with arbitrary bytes). Nothing here
//! allocates; decode and encode are fit for the receive path.
//!
//! Version handling: version 0 is refused ([`PduError::BadVersion`]). Version 1 PDUs
//! are checked completely, including the Terminator TLV. PDUs with a higher version
//! (802.1AX-2014 LACPv2) are processed as version 1, as the standard's forward
//! compatibility rule asks: the version-1 TLVs must be where version 1 puts them, and
//! what follows the Collector TLV is not checked (v2 inserts TLVs there).
//! Reserved fields are ignored on receive and sent as zero.

use crate::wire::{ethertype, MacAddr};
use core::fmt;

/// Length of an encoded LACPDU or Marker PDU frame: Ethernet header + 110 octets.
pub const FRAME_LEN: usize = 124;
/// Length of a Slow Protocol PDU after the Ethernet header (subtype included).
pub const PDU_LEN: usize = 110;
/// Slow Protocols subtype of LACP.
pub const SUBTYPE_LACP: u8 = 1;
/// Slow Protocols subtype of the Marker protocol.
pub const SUBTYPE_MARKER: u8 = 2;

/// Byte offsets inside a frame (Ethernet header included).
pub mod field {
    /// Ethernet header length; the Slow Protocol subtype follows.
    pub const ETH: usize = 14;
    /// Slow Protocols subtype.
    pub const SUBTYPE: usize = ETH;
    /// Version number.
    pub const VERSION: usize = ETH + 1;
    /// Actor Information TLV (type, length, 18 octets of information).
    pub const ACTOR_TLV: usize = ETH + 2;
    /// Partner Information TLV.
    pub const PARTNER_TLV: usize = ETH + 22;
    /// Collector Information TLV.
    pub const COLLECTOR_TLV: usize = ETH + 42;
    /// LACPDU Terminator TLV.
    pub const LACP_TERMINATOR: usize = ETH + 58;
    /// Marker Information / Response TLV.
    pub const MARKER_TLV: usize = ETH + 2;
    /// Marker PDU Terminator TLV.
    pub const MARKER_TERMINATOR: usize = ETH + 20;
    /// Offset of the information after a TLV header.
    pub const TLV_BODY: usize = 2;
}

/// TLV types and lengths.
pub mod tlv {
    /// Actor Information TLV type.
    pub const ACTOR: u8 = 1;
    /// Partner Information TLV type.
    pub const PARTNER: u8 = 2;
    /// Collector Information TLV type.
    pub const COLLECTOR: u8 = 3;
    /// Terminator TLV type (length 0).
    pub const TERMINATOR: u8 = 0;
    /// Marker Information TLV type.
    pub const MARKER_INFO: u8 = 1;
    /// Marker Response TLV type.
    pub const MARKER_RESPONSE: u8 = 2;
    /// Length of the Actor and Partner Information TLVs.
    pub const PORT_INFO_LEN: u8 = 20;
    /// Length of the Collector Information TLV.
    pub const COLLECTOR_LEN: u8 = 16;
    /// Length of the Marker Information / Response TLVs.
    pub const MARKER_LEN: u8 = 16;
}

/// Why a frame was not accepted as a Slow Protocol PDU. Small and `Copy`: the receive
/// path returns it and the caller counts it by [`PduError::name`] / [`PduError::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduError {
    /// Shorter than the Ethernet header plus the 110-octet PDU.
    Truncated,
    /// Ethertype is not 0x8809 (VLAN-tagged slow frames are refused too).
    NotSlowProtocol,
    /// Destination is not 01:80:c2:00:00:02.
    BadDestination,
    /// Source MAC is a group address or zero.
    BadSource,
    /// Slow Protocols subtype other than LACP (1) or Marker (2), e.g. OAM.
    UnknownSubtype(u8),
    /// Version number 0.
    BadVersion(u8),
    /// A TLV at `offset` (from the start of the PDU, i.e. the subtype) has the wrong
    /// type or length.
    BadTlv {
        /// Offset of the TLV type octet, counted from the subtype octet.
        offset: u8,
        /// TLV type found.
        tlv_type: u8,
        /// TLV length found.
        length: u8,
    },
}

impl PduError {
    /// Number of distinct error kinds (size of a counter array indexed by [`Self::index`]).
    pub const KINDS: usize = 7;
    /// Names of the kinds, in [`Self::index`] order.
    pub const NAMES: [&'static str; Self::KINDS] = [
        "truncated",
        "not_slow_protocol",
        "bad_destination",
        "bad_source",
        "unknown_subtype",
        "bad_version",
        "bad_tlv",
    ];

    /// Counter index of this kind, `0..KINDS`.
    pub fn index(&self) -> usize {
        match self {
            PduError::Truncated => 0,
            PduError::NotSlowProtocol => 1,
            PduError::BadDestination => 2,
            PduError::BadSource => 3,
            PduError::UnknownSubtype(_) => 4,
            PduError::BadVersion(_) => 5,
            PduError::BadTlv { .. } => 6,
        }
    }

    /// Short snake_case name for counters and logs.
    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PduError::UnknownSubtype(s) => write!(f, "unknown slow protocol subtype {s}"),
            PduError::BadVersion(v) => write!(f, "bad version {v}"),
            PduError::BadTlv {
                offset,
                tlv_type,
                length,
            } => {
                write!(
                    f,
                    "bad TLV at offset {offset}: type {tlv_type}, length {length}"
                )
            }
            other => f.write_str(other.name()),
        }
    }
}

/// The eight state bits of an Actor_State / Partner_State octet (802.1AX §5.4.2.2).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PortState(pub u8);

impl PortState {
    /// LACP_Activity: 1 = active, 0 = passive.
    pub const ACTIVITY: u8 = 0x01;
    /// LACP_Timeout: 1 = short (3 s), 0 = long (90 s).
    pub const TIMEOUT: u8 = 0x02;
    /// Aggregation: 1 = aggregatable, 0 = individual.
    pub const AGGREGATION: u8 = 0x04;
    /// Synchronization: the port is attached to the right aggregator.
    pub const SYNCHRONIZATION: u8 = 0x08;
    /// Collecting enabled.
    pub const COLLECTING: u8 = 0x10;
    /// Distributing enabled.
    pub const DISTRIBUTING: u8 = 0x20;
    /// Partner information is the administrative default.
    pub const DEFAULTED: u8 = 0x40;
    /// Receive machine is in EXPIRED.
    pub const EXPIRED: u8 = 0x80;

    /// Bit names in bit order, as `ovs-appctl lacp/show` prints them.
    pub const NAMES: [(u8, &'static str); 8] = [
        (Self::ACTIVITY, "activity"),
        (Self::TIMEOUT, "timeout"),
        (Self::AGGREGATION, "aggregation"),
        (Self::SYNCHRONIZATION, "synchronized"),
        (Self::COLLECTING, "collecting"),
        (Self::DISTRIBUTING, "distributing"),
        (Self::DEFAULTED, "defaulted"),
        (Self::EXPIRED, "expired"),
    ];

    /// True if every bit of `mask` is set.
    #[inline]
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
    /// Sets or clears the bits of `mask`.
    #[inline]
    pub fn set(&mut self, mask: u8, on: bool) {
        if on {
            self.0 |= mask;
        } else {
            self.0 &= !mask;
        }
    }
    /// Returns a copy with the bits of `mask` set or cleared.
    #[inline]
    pub fn with(mut self, mask: u8, on: bool) -> Self {
        self.set(mask, on);
        self
    }
}

impl fmt::Display for PortState {
    /// Space-separated names of the set bits, e.g. `activity timeout aggregation`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.has(bit) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}[{}]", self.0, self)
    }
}

/// The Actor or Partner Information of a LACPDU (one side's view of one port).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug, Hash)]
pub struct PortInfo {
    /// System priority (lower is better).
    pub system_priority: u16,
    /// System ID (a MAC address).
    pub system: MacAddr,
    /// Operational key.
    pub key: u16,
    /// Port priority (lower is better).
    pub port_priority: u16,
    /// Port number (non-zero).
    pub port: u16,
    /// State bits.
    pub state: PortState,
}

impl PortInfo {
    /// Same system, key, port and the Aggregation bit: the fields whose change makes the
    /// standard's `update_Selected` unselect a port, and that `recordPDU` compares.
    pub fn same_identity(&self, other: &PortInfo) -> bool {
        self.system_priority == other.system_priority
            && self.system == other.system
            && self.key == other.key
            && self.port_priority == other.port_priority
            && self.port == other.port
            && self.state.has(PortState::AGGREGATION) == other.state.has(PortState::AGGREGATION)
    }

    fn read(b: &[u8; PORT_INFO_BODY]) -> PortInfo {
        PortInfo {
            system_priority: u16::from_be_bytes([b[0], b[1]]),
            system: MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]),
            key: u16::from_be_bytes([b[8], b[9]]),
            port_priority: u16::from_be_bytes([b[10], b[11]]),
            port: u16::from_be_bytes([b[12], b[13]]),
            state: PortState(b[14]),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&self.system_priority.to_be_bytes());
        b[2..8].copy_from_slice(&self.system.0);
        b[8..10].copy_from_slice(&self.key.to_be_bytes());
        b[10..12].copy_from_slice(&self.port_priority.to_be_bytes());
        b[12..14].copy_from_slice(&self.port.to_be_bytes());
        b[14] = self.state.0;
        b[15..18].fill(0);
    }
}

/// Octets of Actor/Partner information after the TLV header (incl. 3 reserved).
const PORT_INFO_BODY: usize = 18;

/// A decoded LACPDU.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Lacpdu {
    /// Version number as received (1 when encoding).
    pub version: u8,
    /// The sender's view of itself.
    pub actor: PortInfo,
    /// The sender's view of us.
    pub partner: PortInfo,
    /// CollectorMaxDelay, in tens of microseconds.
    pub collector_max_delay: u16,
}

/// Which Marker PDU: a request or the reply to one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MarkerKind {
    /// Marker Information (TLV type 1): a request that the receiver must answer.
    Information,
    /// Marker Response (TLV type 2).
    Response,
}

/// A decoded Marker PDU (802.3 §43.5.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MarkerPdu {
    /// Information or Response.
    pub kind: MarkerKind,
    /// Requester_Port.
    pub requester_port: u16,
    /// Requester_System.
    pub requester_system: MacAddr,
    /// Requester_Transaction_ID.
    pub transaction_id: u32,
}

/// A decoded Slow Protocol PDU this module understands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SlowPdu {
    /// Subtype 1.
    Lacp(Lacpdu),
    /// Subtype 2.
    Marker(MarkerPdu),
}

fn check_tlv(frame: &[u8], at: usize, tlv_type: u8, len: u8) -> Result<(), PduError> {
    // `frame` is at least FRAME_LEN long here and every `at` is below FRAME_LEN - 2.
    let (t, l) = (frame[at], frame[at + 1]);
    if t != tlv_type || l != len {
        return Err(PduError::BadTlv {
            offset: (at - field::ETH) as u8,
            tlv_type: t,
            length: l,
        });
    }
    Ok(())
}

fn port_info_at(frame: &[u8], at: usize) -> PortInfo {
    let mut b = [0u8; PORT_INFO_BODY];
    b.copy_from_slice(&frame[at + field::TLV_BODY..at + field::TLV_BODY + PORT_INFO_BODY]);
    PortInfo::read(&b)
}

/// Decodes a whole Ethernet frame carrying a LACPDU or Marker PDU.
///
/// Checks, in order: length, ethertype, destination, source, subtype, version, TLVs.
/// Never panics; never allocates.
pub fn decode(frame: &[u8]) -> Result<SlowPdu, PduError> {
    if frame.len() < field::SUBTYPE + 1 {
        return Err(PduError::Truncated);
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != ethertype::SLOW {
        return Err(PduError::NotSlowProtocol);
    }
    // The subtype decides the kind of error a short frame gets.
    let subtype = frame[field::SUBTYPE];
    if subtype != SUBTYPE_LACP && subtype != SUBTYPE_MARKER {
        return Err(PduError::UnknownSubtype(subtype));
    }
    if frame.len() < FRAME_LEN {
        return Err(PduError::Truncated);
    }
    if frame[0..6] != MacAddr::SLOW_PROTOCOLS.0 {
        return Err(PduError::BadDestination);
    }
    let mut src = [0u8; 6];
    src.copy_from_slice(&frame[6..12]);
    if !MacAddr(src).is_unicast() {
        return Err(PduError::BadSource);
    }
    let version = frame[field::VERSION];
    if version == 0 {
        return Err(PduError::BadVersion(version));
    }
    if subtype == SUBTYPE_LACP {
        check_tlv(frame, field::ACTOR_TLV, tlv::ACTOR, tlv::PORT_INFO_LEN)?;
        check_tlv(frame, field::PARTNER_TLV, tlv::PARTNER, tlv::PORT_INFO_LEN)?;
        check_tlv(
            frame,
            field::COLLECTOR_TLV,
            tlv::COLLECTOR,
            tlv::COLLECTOR_LEN,
        )?;
        if version == 1 {
            check_tlv(frame, field::LACP_TERMINATOR, tlv::TERMINATOR, 0)?;
        }
        let c = field::COLLECTOR_TLV + field::TLV_BODY;
        Ok(SlowPdu::Lacp(Lacpdu {
            version,
            actor: port_info_at(frame, field::ACTOR_TLV),
            partner: port_info_at(frame, field::PARTNER_TLV),
            collector_max_delay: u16::from_be_bytes([frame[c], frame[c + 1]]),
        }))
    } else {
        let at = field::MARKER_TLV;
        let kind = match frame[at] {
            tlv::MARKER_INFO => MarkerKind::Information,
            tlv::MARKER_RESPONSE => MarkerKind::Response,
            t => {
                return Err(PduError::BadTlv {
                    offset: (at - field::ETH) as u8,
                    tlv_type: t,
                    length: frame[at + 1],
                })
            }
        };
        check_tlv(frame, at, frame[at], tlv::MARKER_LEN)?;
        if version == 1 {
            check_tlv(frame, field::MARKER_TERMINATOR, tlv::TERMINATOR, 0)?;
        }
        let b = at + field::TLV_BODY;
        Ok(SlowPdu::Marker(MarkerPdu {
            kind,
            requester_port: u16::from_be_bytes([frame[b], frame[b + 1]]),
            requester_system: MacAddr([
                frame[b + 2],
                frame[b + 3],
                frame[b + 4],
                frame[b + 5],
                frame[b + 6],
                frame[b + 7],
            ]),
            transaction_id: u32::from_be_bytes([
                frame[b + 8],
                frame[b + 9],
                frame[b + 10],
                frame[b + 11],
            ]),
        }))
    }
}

fn write_header(src: MacAddr, subtype: u8, out: &mut [u8; FRAME_LEN]) {
    out.fill(0);
    out[0..6].copy_from_slice(&MacAddr::SLOW_PROTOCOLS.0);
    out[6..12].copy_from_slice(&src.0);
    out[12..14].copy_from_slice(&ethertype::SLOW.to_be_bytes());
    out[field::SUBTYPE] = subtype;
    out[field::VERSION] = 1;
}

/// Encodes `pdu` (sent as version 1) from `src` into `out`; returns the frame length
/// ([`FRAME_LEN`]). Reserved octets are zero. No allocation.
pub fn encode_lacpdu(src: MacAddr, pdu: &Lacpdu, out: &mut [u8; FRAME_LEN]) -> usize {
    write_header(src, SUBTYPE_LACP, out);
    let a = field::ACTOR_TLV;
    out[a] = tlv::ACTOR;
    out[a + 1] = tlv::PORT_INFO_LEN;
    pdu.actor.write(&mut out[a + 2..a + 2 + PORT_INFO_BODY]);
    let p = field::PARTNER_TLV;
    out[p] = tlv::PARTNER;
    out[p + 1] = tlv::PORT_INFO_LEN;
    pdu.partner.write(&mut out[p + 2..p + 2 + PORT_INFO_BODY]);
    let c = field::COLLECTOR_TLV;
    out[c] = tlv::COLLECTOR;
    out[c + 1] = tlv::COLLECTOR_LEN;
    out[c + 2..c + 4].copy_from_slice(&pdu.collector_max_delay.to_be_bytes());
    // Terminator TLV (0, 0) and the 50 reserved octets are already zero.
    FRAME_LEN
}

/// Encodes a Marker PDU from `src` into `out`; returns [`FRAME_LEN`]. No allocation.
pub fn encode_marker(src: MacAddr, pdu: &MarkerPdu, out: &mut [u8; FRAME_LEN]) -> usize {
    write_header(src, SUBTYPE_MARKER, out);
    let m = field::MARKER_TLV;
    out[m] = match pdu.kind {
        MarkerKind::Information => tlv::MARKER_INFO,
        MarkerKind::Response => tlv::MARKER_RESPONSE,
    };
    out[m + 1] = tlv::MARKER_LEN;
    let b = m + field::TLV_BODY;
    out[b..b + 2].copy_from_slice(&pdu.requester_port.to_be_bytes());
    out[b + 2..b + 8].copy_from_slice(&pdu.requester_system.0);
    out[b + 8..b + 12].copy_from_slice(&pdu.transaction_id.to_be_bytes());
    FRAME_LEN
}
