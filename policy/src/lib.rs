//! # policy — the NIC manager's decisions, without DPDK
//!
//! Everything the switch *decides* lives here, as pure, deterministic Rust that
//! never reads a clock, a socket or a NIC. Time is passed in (`now: Nanos`), frames
//! are passed in as byte slices, and results come back as values. The data plane
//! (`vswitch`) wires these decisions to DPDK ports; tests here drive them with a
//! simulated clock.
//!
//! Modules:
//! - [`wire`]: zero-copy views of Ethernet/VLAN/IPv4/IPv6/TCP/UDP frames and flow keys.
//! - [`time`]: the nanosecond clock type every timer uses.
//!
//! Invariants kept by every module:
//! - no panics on any input bytes (parsers are fuzzed / property-tested);
//! - no allocation in functions documented as *fast path*;
//! - no interior mutability shared across threads: the caller owns the state.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod time;
pub mod wire;
