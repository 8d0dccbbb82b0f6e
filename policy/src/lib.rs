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
//! - [`bond`]: member states, failure detection, failover/failback, load distribution.
//! - [`lacp`]: IEEE 802.1AX LACPDU/Marker codec and the LACP state machines.
//! - [`bandwidth`]: per-vNIC shares, reservations, priority and traffic shaping.
//! - [`dos`]: denial-of-service detection on traffic arriving for VMs.
//! - [`vmaction`]: when to suspend, resume, migrate or alert about a VM.
//!
//! Invariants kept by every module:
//! - no panics on any input bytes (parsers are fuzzed / property-tested);
//! - no allocation in functions documented as *fast path*;
//! - no interior mutability shared across threads: the caller owns the state.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bandwidth;
pub mod bond;
pub mod dos;
pub mod lacp;
pub mod time;
pub mod vmaction;
pub mod wire;
