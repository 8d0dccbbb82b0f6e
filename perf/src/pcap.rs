//! Classic pcap files (microsecond timestamps, LINKTYPE_ETHERNET), for `gen-pcap`.
//!
//! The file is what `net_pcap0,rx_pcap=FILE,infinite_rx=1` replays: benchmarks
//! generate N flows once, then a pcap port plays them at line rate with no generator
//! process. Records are written in flow order, one frame per flow per round.

use std::io::{self, Write};

use crate::frame::Templates;

/// pcap magic for microsecond timestamps, as written (little-endian host order).
pub const MAGIC: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Writes the global header.
pub fn write_header<W: Write>(w: &mut W, snaplen: u32) -> io::Result<()> {
    w.write_all(&MAGIC.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&0i32.to_le_bytes())?;
    w.write_all(&0u32.to_le_bytes())?;
    w.write_all(&snaplen.to_le_bytes())?;
    w.write_all(&LINKTYPE_ETHERNET.to_le_bytes())
}

/// Writes one record with timestamp `ts_us` microseconds.
pub fn write_record<W: Write>(w: &mut W, ts_us: u64, frame: &[u8]) -> io::Result<()> {
    w.write_all(&((ts_us / 1_000_000) as u32).to_le_bytes())?;
    w.write_all(&((ts_us % 1_000_000) as u32).to_le_bytes())?;
    w.write_all(&(frame.len() as u32).to_le_bytes())?;
    w.write_all(&(frame.len() as u32).to_le_bytes())?;
    w.write_all(frame)
}

/// Writes `records` frames cycling over the templates' flows; returns bytes written.
pub fn write_flows<W: Write>(w: &mut W, t: &Templates, records: usize) -> io::Result<u64> {
    write_header(w, 65535)?;
    let mut buf = vec![0u8; t.frame_len()];
    for i in 0..records {
        t.write(i, &mut buf);
        write_record(w, i as u64, &buf)?;
    }
    Ok(24 + records as u64 * (16 + t.frame_len() as u64))
}

/// Counts the records of a little-endian microsecond pcap: `(linktype, records)`.
/// `None` when the bytes are not such a file or a record is truncated.
pub fn count_records(b: &[u8]) -> Option<(u32, usize)> {
    if b.len() < 24 || u32::from_le_bytes(b[0..4].try_into().ok()?) != MAGIC {
        return None;
    }
    let link = u32::from_le_bytes(b[20..24].try_into().ok()?);
    let mut off = 24usize;
    let mut n = 0;
    while off < b.len() {
        let hdr = b.get(off..off + 16)?;
        let incl = u32::from_le_bytes(hdr[8..12].try_into().ok()?) as usize;
        off = off.checked_add(16 + incl)?;
        if off > b.len() {
            return None;
        }
        n += 1;
    }
    Some((link, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameSpec;

    #[test]
    fn writes_a_countable_file() {
        let t = Templates::build(&FrameSpec {
            flows: 10,
            ..FrameSpec::default()
        })
        .unwrap();
        let mut v = Vec::new();
        let n = write_flows(&mut v, &t, 25).unwrap();
        assert_eq!(n as usize, v.len());
        assert_eq!(count_records(&v), Some((1, 25)));
        assert_eq!(count_records(&v[..v.len() - 1]), None);
        assert_eq!(count_records(b"not a pcap file at all.."), None);
        // Record 12 is flow 2.
        let off = 24 + 12 * (16 + 64) + 16;
        assert_eq!(&v[off..off + 64], &t.frame(2)[..]);
    }
}
