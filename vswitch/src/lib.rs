//! # vswitch — the data plane and the `vswitchd` daemon
//!
//! Threads (see `docs/ARCHITECTURE.md` for the full picture):
//! - **workers** ([`worker`]): one per configured core, pinned, busy-polling their
//!   rx queues, switching frames and transmitting on their own tx queue of each port.
//!   No locks, no allocation per packet.
//! - **control** ([`control`]): polls link state, runs the teaming/LACP logic from the
//!   `policy` crate, handles slow-protocol frames, and publishes new [`snapshot`]s.
//! - **main** (`vswitchd`): configuration, signals, status output.
//!
//! `unsafe` lives in `dpdk-sys`; this crate has none.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod delay_ring;
pub mod dos_path;
pub mod lacp_ctl;
pub mod nap;
pub mod reply;
pub mod shared;
pub mod snapshot;
pub mod stats;
pub mod switch;
pub mod vm_ctl;
pub mod vmctl;
pub mod worker;
