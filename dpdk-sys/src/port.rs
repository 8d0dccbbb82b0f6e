//! Ethernet ports: attach by devargs, configure, start/stop, queues, link and stats.
//!
//! Queue ownership is enforced by types: [`RxQueue`] and [`TxQueue`] are tokens that
//! are `Send` but neither `Clone` nor `Sync`, and each (port, queue) can be claimed
//! only once at a time (a process-wide claim bitmap), so an rx or tx queue is never
//! used by two threads at once — DPDK's rule for its lock-free queues.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::eal::{errno_str, Eal};
use crate::ffi;
use crate::mbuf::{Burst, Mempool};

/// The highest queue index a token can claim (claims are a 64-bit map per port).
pub const MAX_QUEUES: u16 = 64;
const MAX_PORTS: usize = ffi::RTE_MAX_ETHPORTS as usize;

static RX_CLAIMS: [AtomicU64; MAX_PORTS] = [const { AtomicU64::new(0) }; MAX_PORTS];
static TX_CLAIMS: [AtomicU64; MAX_PORTS] = [const { AtomicU64::new(0) }; MAX_PORTS];

/// Errors from port operations, with DPDK's reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    /// rte_dev_probe refused the devargs.
    #[error("cannot attach device {devargs:?}: {reason}. Is the driver name right (net_vhost0, net_tap0, net_pcap0, ...) and its arguments valid?")]
    Probe {
        /// The devargs given.
        devargs: String,
        /// DPDK's reason.
        reason: String,
    },
    /// The device probed but no ethdev port carries its name.
    #[error("device {0:?} attached but no Ethernet port was created for it")]
    NoPort(String),
    /// A configuration step failed.
    #[error("port {port} ({name}): {op} failed: {reason}")]
    Op {
        /// Port id.
        port: u16,
        /// Port name.
        name: String,
        /// The operation.
        op: &'static str,
        /// DPDK's reason.
        reason: String,
    },
    /// A queue is already owned by someone else, or out of range.
    #[error("port {port}: {kind} queue {queue} is already claimed or out of range")]
    QueueClaimed {
        /// Port id.
        port: u16,
        /// "rx" or "tx".
        kind: &'static str,
        /// Queue index.
        queue: u16,
    },
}

/// Link state as the PMD reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    /// Carrier up.
    pub up: bool,
    /// Speed in Mb/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Port statistics as the PMD counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Received packets.
    pub ipackets: u64,
    /// Transmitted packets.
    pub opackets: u64,
    /// Received bytes.
    pub ibytes: u64,
    /// Transmitted bytes.
    pub obytes: u64,
    /// Rx dropped by the hardware/PMD (no descriptors).
    pub imissed: u64,
    /// Rx errors.
    pub ierrors: u64,
    /// Tx errors.
    pub oerrors: u64,
    /// Rx mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// Static facts about a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Driver name, e.g. `net_vhost`.
    pub driver: String,
    /// Most rx queues the device allows.
    pub max_rx_queues: u16,
    /// Most tx queues the device allows.
    pub max_tx_queues: u16,
    /// Whether the device transmits multi-segment mbufs (advertises
    /// `RTE_ETH_TX_OFFLOAD_MULTI_SEGS`; [`Port::configure`] then turns it on).
    pub tx_multi_seg: bool,
    /// The smallest and largest MTU the device takes (the largest also within its
    /// longest receivable frame, less an Ethernet header and FCS).
    pub min_mtu: u16,
    /// See `min_mtu`.
    pub max_mtu: u16,
    /// Whether the device can receive a frame into several mbufs
    /// (`RTE_ETH_RX_OFFLOAD_SCATTER`).
    pub rx_scatter: bool,
}

/// What [`Port::configure_with`] sets beyond the queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSetup {
    /// The link-status-change interrupt (see [`Port::configure_with_lsc`]).
    pub lsc: bool,
    /// The MTU (the largest IP packet, without the Ethernet header): given to the
    /// device at configure time and with `rte_eth_dev_set_mtu`, so a NIC sizes its
    /// receive to it (and a tap's kernel interface takes it). Where a frame of this
    /// MTU does not fit one mbuf of the pool, rx scatter is turned on if the device
    /// has it. `None`: DPDK's default (1500).
    pub mtu: Option<u16>,
}

/// `RTE_ETH_TX_OFFLOAD_MULTI_SEGS` (`RTE_BIT64(15)` in rte_ethdev.h, a macro bindgen
/// cannot evaluate).
const TX_OFFLOAD_MULTI_SEGS: u64 = 1 << 15;
/// `RTE_ETH_RX_OFFLOAD_SCATTER` (`RTE_BIT64(13)`).
const RX_OFFLOAD_SCATTER: u64 = 1 << 13;
/// What DPDK adds to an MTU for the longest frame a port receives: the Ethernet
/// header, the FCS and one VLAN tag.
const MTU_OVERHEAD: u32 = 14 + 4 + 4;

/// Whether a port with MTU `mtu` receives frames longer than one mbuf of `pool`,
/// which a device puts into several mbufs only with rx scatter.
fn needs_segments(mtu: u16, pool: &Mempool) -> bool {
    u32::from(mtu) + MTU_OVERHEAD > pool.segment_room()
}

impl PortInfo {
    /// Whether [`Port::configure_with`] turns rx scatter on for MTU `mtu` with rx
    /// buffers from `pool`: a frame of that MTU needs more than one mbuf, and the
    /// device has rx scatter.
    pub fn rx_scatter_for(&self, mtu: u16, pool: &Mempool) -> bool {
        self.rx_scatter && needs_segments(mtu, pool)
    }
}

/// Drivers that do not advertise `RTE_ETH_TX_OFFLOAD_MULTI_SEGS` but whose tx takes a
/// chain whole: DPDK 22.11's `net_null` counts `pkt_len` and frees every mbuf with
/// `rte_pktmbuf_free_bulk`, which frees chains. (`net_pcap` also copes, up to its
/// snapshot length, but is held to what it advertises.)
const TX_CHAINS_UNADVERTISED: [&str; 1] = ["net_null"];

/// A DPDK Ethernet port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port {
    id: u16,
}

fn op_err(port: Port, op: &'static str, rc: i32) -> PortError {
    PortError::Op {
        port: port.id,
        name: port.name(),
        op,
        reason: errno_str(rc),
    }
}

impl Port {
    /// Attaches a device by devargs (`net_tap0,iface=dtap0`, a PCI address, ...) and
    /// returns its port. A device already created by `--vdev` is found, not re-probed.
    pub fn attach(_eal: &Eal, devargs: &str) -> Result<Port, PortError> {
        let name = devargs.split(',').next().unwrap_or("").trim().to_string();
        if let Some(p) = Port::by_name(&name) {
            return Ok(p);
        }
        let c = CString::new(devargs).map_err(|_| PortError::Probe {
            devargs: devargs.to_string(),
            reason: "contains a NUL byte".into(),
        })?;
        // SAFETY: EAL initialised (the &Eal proves it); c is a valid C string.
        let rc = unsafe { ffi::rte_dev_probe(c.as_ptr()) };
        if rc < 0 {
            return Err(PortError::Probe {
                devargs: devargs.to_string(),
                reason: errno_str(rc),
            });
        }
        Port::by_name(&name).ok_or(PortError::NoPort(name))
    }

    /// The port whose ethdev name is `name`.
    pub fn by_name(name: &str) -> Option<Port> {
        let c = CString::new(name).ok()?;
        let mut id = 0u16;
        // SAFETY: valid C string and out-pointer.
        let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        (rc == 0).then_some(Port { id })
    }

    /// Every valid port id, in order.
    pub fn all() -> Vec<Port> {
        (0..MAX_PORTS as u16)
            // SAFETY: rte_eth_dev_is_valid_port accepts any id.
            .filter(|&id| unsafe { ffi::rte_eth_dev_is_valid_port(id) } == 1)
            .map(|id| Port { id })
            .collect()
    }

    /// A handle for a known port id (operations on an invalid id fail cleanly).
    pub fn from_id(id: u16) -> Port {
        Port { id }
    }

    /// The numeric port id.
    #[inline]
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The ethdev name.
    pub fn name(&self) -> String {
        let mut buf = [0 as std::os::raw::c_char; 64];
        // SAFETY: buf is RTE_ETH_NAME_MAX_LEN (64) bytes, as the API requires.
        let rc = unsafe { ffi::rte_eth_dev_get_name_by_port(self.id, buf.as_mut_ptr()) };
        if rc != 0 {
            return format!("port{}", self.id);
        }
        // SAFETY: DPDK wrote a NUL-terminated string into buf.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    /// Driver name and queue limits.
    pub fn info(&self) -> Result<PortInfo, PortError> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid out-pointer to a zeroed struct.
        let rc = unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) };
        if rc != 0 {
            return Err(op_err(*self, "dev_info_get", rc));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points at the driver's static name string.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            tx_multi_seg: info.tx_offload_capa & TX_OFFLOAD_MULTI_SEGS != 0,
            min_mtu: info.min_mtu,
            // Also held to the longest frame the device receives (ethdev checks both;
            // net_tap says 65535 but receives 1522 bytes at most).
            max_mtu: info
                .max_mtu
                .min(info.max_rx_pktlen.saturating_sub(14 + 4).min(65535) as u16),
            rx_scatter: info.rx_offload_capa & RX_OFFLOAD_SCATTER != 0,
        })
    }

    /// Sets the device's MTU (`rte_eth_dev_set_mtu`), on a configured port, running or
    /// not where the PMD allows it. A PMD without an MTU operation (`net_null`,
    /// `net_pcap`) is left as it is: not an error.
    pub fn set_mtu(&self, mtu: u16) -> Result<(), PortError> {
        // SAFETY: valid port id; DPDK checks the port is configured and the range.
        let rc = unsafe { ffi::rte_eth_dev_set_mtu(self.id, mtu) };
        if rc != 0 && rc != -libc_enotsup() {
            return Err(op_err(*self, "set_mtu", rc));
        }
        Ok(())
    }

    /// The device's MTU now (`rte_eth_dev_get_mtu`).
    pub fn mtu(&self) -> Option<u16> {
        let mut mtu = 0u16;
        // SAFETY: valid out-pointer; the call only reads the port's data.
        let rc = unsafe { ffi::rte_eth_dev_get_mtu(self.id, &mut mtu) };
        (rc == 0).then_some(mtu)
    }

    /// Configures `nb_rx` rx and `nb_tx` tx queues with default settings, sets up each
    /// queue with `nb_desc` descriptors, rx buffers from `pool`.
    pub fn configure(
        &self,
        nb_rx: u16,
        nb_tx: u16,
        nb_desc: u16,
        pool: &Mempool,
    ) -> Result<(), PortError> {
        self.configure_with_lsc(nb_rx, nb_tx, nb_desc, pool, false)
    }

    /// [`Port::configure`], and with `lsc` the link-status-change interrupt on
    /// (`intr_conf.lsc`, testpmd's default): the EAL interrupt thread then follows the
    /// link and [`Port::link`] reads the state it recorded. Fails for a device that
    /// has no such interrupt. A `net_virtio_user` server port needs it to go back to
    /// listening when its vhost-user peer leaves.
    pub fn configure_with_lsc(
        &self,
        nb_rx: u16,
        nb_tx: u16,
        nb_desc: u16,
        pool: &Mempool,
        lsc: bool,
    ) -> Result<(), PortError> {
        self.configure_with(
            nb_rx,
            nb_tx,
            nb_desc,
            pool,
            PortSetup {
                lsc,
                ..PortSetup::default()
            },
        )
    }

    /// [`Port::configure`] with the settings of `setup`.
    pub fn configure_with(
        &self,
        nb_rx: u16,
        nb_tx: u16,
        nb_desc: u16,
        pool: &Mempool,
        setup: PortSetup,
    ) -> Result<(), PortError> {
        let lsc = setup.lsc;
        let mut conf = ffi::rte_eth_conf::default();
        conf.intr_conf.set_lsc(u32::from(lsc));
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid port id, valid out-pointer.
        if unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) } != 0 {
            info = ffi::rte_eth_dev_info::default();
        }
        if nb_rx > 1 {
            // Several rx queues: hash flows over them (RSS) where the device can, on the
            // fields it supports; without RSS every frame would land on queue 0.
            let hf = RSS_IP_TCP_UDP & info.flow_type_rss_offloads;
            if hf != 0 {
                conf.rxmode.mq_mode = ffi::RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
            }
        }
        // Chained mbufs (a vhost-user guest's frames longer than one mbuf) may only be
        // given to a device that was configured for them: without the offload a PMD
        // may pick a tx path that sends the first segment and never frees the rest.
        // Where the device has it, it is on; [`TxQueue::multi_seg`] tells which.
        conf.txmode.offloads = info.tx_offload_capa & TX_OFFLOAD_MULTI_SEGS;
        if let Some(mtu) = setup.mtu {
            conf.rxmode.mtu = u32::from(mtu);
            if needs_segments(mtu, pool) {
                conf.rxmode.offloads |= info.rx_offload_capa & RX_OFFLOAD_SCATTER;
            }
        }
        // SAFETY: valid port id and a configuration struct zeroed but for RSS, LSC, the
        // MTU and the offloads (multi-segment tx, rx scatter) the device advertises.
        let rc = unsafe { ffi::rte_eth_dev_configure(self.id, nb_rx, nb_tx, &conf) };
        if rc != 0 {
            return Err(op_err(*self, "configure", rc));
        }
        if let Some(mtu) = setup.mtu {
            // The configure above records the MTU; a PMD with an MTU operation (tap:
            // its kernel interface's MTU) applies it here.
            self.set_mtu(mtu)?;
        }
        // SAFETY: plain query on a valid port.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(self.id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..nb_rx {
            // SAFETY: configured port, queue index < nb_rx, NULL conf = driver defaults,
            // pool valid for the process lifetime.
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    nb_desc,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(op_err(*self, "rx_queue_setup", rc));
            }
        }
        for q in 0..nb_tx {
            // SAFETY: configured port, queue index < nb_tx, NULL conf = driver defaults.
            let rc = unsafe {
                ffi::rte_eth_tx_queue_setup(self.id, q, nb_desc, socket, std::ptr::null())
            };
            if rc != 0 {
                return Err(op_err(*self, "tx_queue_setup", rc));
            }
        }
        Ok(())
    }

    /// Starts the port.
    pub fn start(&self) -> Result<(), PortError> {
        // SAFETY: valid, configured port.
        let rc = unsafe { ffi::rte_eth_dev_start(self.id) };
        if rc != 0 {
            return Err(op_err(*self, "start", rc));
        }
        Ok(())
    }

    /// Stops the port. Callers stop polling its queues first.
    pub fn stop(&self) -> Result<(), PortError> {
        // SAFETY: valid port; no queue of it is being polled (the caller's contract,
        // enforced in the switch by stopping workers first).
        let rc = unsafe { ffi::rte_eth_dev_stop(self.id) };
        if rc != 0 {
            return Err(op_err(*self, "stop", rc));
        }
        Ok(())
    }

    /// Closes the port and removes its device (hot-unplug). The port id is invalid afterwards.
    pub fn detach(self) -> Result<(), PortError> {
        self.check_no_queue_tokens("close")?;
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid out-pointer.
        let rc = unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) };
        if rc != 0 {
            return Err(op_err(self, "dev_info_get", rc));
        }
        // SAFETY: the port is stopped by the caller; close releases its queues.
        let rc = unsafe { ffi::rte_eth_dev_close(self.id) };
        if rc != 0 {
            return Err(op_err(self, "close", rc));
        }
        if !info.device.is_null() {
            // SAFETY: device pointer from dev_info of the port just closed.
            let rc = unsafe { ffi::rte_dev_remove(info.device) };
            if rc != 0 {
                return Err(op_err(self, "dev_remove", rc));
            }
        }
        Ok(())
    }

    /// Closes the port without removing the device.
    pub fn close(&self) -> Result<(), PortError> {
        self.check_no_queue_tokens("close")?;
        // SAFETY: valid port, stopped by the caller.
        let rc = unsafe { ffi::rte_eth_dev_close(self.id) };
        if rc != 0 {
            return Err(op_err(*self, "close", rc));
        }
        Ok(())
    }

    /// Receive every frame regardless of destination MAC (NICs of a switch).
    pub fn set_promiscuous(&self, on: bool) -> Result<(), PortError> {
        // SAFETY: valid port.
        let rc = unsafe {
            if on {
                ffi::rte_eth_promiscuous_enable(self.id)
            } else {
                ffi::rte_eth_promiscuous_disable(self.id)
            }
        };
        // Some virtual PMDs do not implement it (-ENOTSUP): they receive everything anyway.
        if rc != 0 && rc != -(libc_enotsup()) {
            return Err(op_err(*self, "promiscuous", rc));
        }
        Ok(())
    }

    /// Current link state, without waiting.
    pub fn link(&self) -> Link {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: valid out-pointer.
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut l) };
        if rc != 0 {
            return Link::default();
        }
        Link {
            up: l.link_status() != 0,
            speed_mbps: if l.link_speed == u32::MAX {
                0
            } else {
                l.link_speed
            },
            full_duplex: l.link_duplex() != 0,
        }
    }

    /// PMD statistics.
    pub fn stats(&self) -> PortStats {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid out-pointer.
        let rc = unsafe { ffi::rte_eth_stats_get(self.id, &mut s) };
        if rc != 0 {
            return PortStats::default();
        }
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: valid out-pointer.
        unsafe { ffi::rte_eth_macaddr_get(self.id, &mut a) };
        a.addr_bytes
    }

    /// Claims rx queue `q` for the calling owner.
    pub fn rx_queue(&self, q: u16) -> Result<RxQueue, PortError> {
        claim(&RX_CLAIMS, *self, q, "rx")?;
        Ok(RxQueue {
            port: self.id,
            queue: q,
            _not_sync: PhantomData,
        })
    }

    /// Claims tx queue `q` for the calling owner.
    pub fn tx_queue(&self, q: u16) -> Result<TxQueue, PortError> {
        let info = self.info()?;
        let multi_seg = info.tx_multi_seg || TX_CHAINS_UNADVERTISED.contains(&info.driver.as_str());
        claim(&TX_CLAIMS, *self, q, "tx")?;
        Ok(TxQueue {
            port: self.id,
            queue: q,
            multi_seg,
            _not_sync: PhantomData,
        })
    }
}

impl Port {
    /// True while any rx or tx queue token of this port exists (a worker may still
    /// poll or transmit on it).
    pub fn queues_in_use(&self) -> bool {
        let i = self.id as usize;
        i < MAX_PORTS
            && (RX_CLAIMS[i].load(Ordering::Acquire) | TX_CLAIMS[i].load(Ordering::Acquire)) != 0
    }

    /// Closing a port whose queues someone still holds would let them poll a closed
    /// device: refused.
    fn check_no_queue_tokens(&self, op: &'static str) -> Result<(), PortError> {
        if self.queues_in_use() {
            return Err(PortError::Op {
                port: self.id,
                name: self.name(),
                op,
                reason:
                    "queue tokens of this port are still held (release every RxQueue/TxQueue first)"
                        .into(),
            });
        }
        Ok(())
    }
}

/// `RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP` of `rte_ethdev.h` (bindgen
/// cannot evaluate the `RTE_BIT64` macros): IPv4/IPv6 (also fragments, other and
/// extension headers), and TCP and UDP over both.
const RSS_IP_TCP_UDP: u64 = {
    const fn b(n: u32) -> u64 {
        1u64 << n
    }
    let ip = b(2) | b(3) | b(7) | b(8) | b(9) | b(13) | b(15);
    let tcp = b(4) | b(10) | b(16);
    let udp = b(5) | b(11) | b(17);
    ip | tcp | udp
};

impl Port {
    /// Points the RSS redirection table at rx queues `0..n` only, so the queues from
    /// `n` up receive no hashed traffic (a queue reserved for steered frames). A device
    /// without a redirection table (or RSS off) needs nothing: `Ok`.
    pub fn rss_spread_over(&self, n: u16) -> Result<(), PortError> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid port id, valid out-pointer.
        let rc = unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) };
        if rc != 0 {
            return Err(op_err(*self, "dev_info_get", rc));
        }
        let size = info.reta_size as usize;
        if size == 0 || n == 0 {
            return Ok(());
        }
        let mut reta = vec![ffi::rte_eth_rss_reta_entry64::default(); size.div_ceil(64)];
        for i in 0..size {
            let e = &mut reta[i / 64];
            e.mask |= 1 << (i % 64);
            e.reta[i % 64] = (i % n as usize) as u16;
        }
        // SAFETY: `reta` holds `reta_size` entries (64 per element), each selected by
        // its mask bit; valid port id.
        let rc =
            unsafe { ffi::rte_eth_dev_rss_reta_update(self.id, reta.as_mut_ptr(), info.reta_size) };
        if rc != 0 && rc != -libc_enotsup() {
            return Err(op_err(*self, "rss_reta_update", rc));
        }
        Ok(())
    }

    /// Steers every received frame of `ethertype` to rx queue `queue` with an rte_flow
    /// rule (ETH type match → QUEUE), as DPDK's mode-4 bonding does for LACP's
    /// dedicated queue. Call after [`configure`](Self::configure), before
    /// [`start`](Self::start). The rule lives until the port is closed. Fails with the
    /// PMD's reason where it has no flow support.
    pub fn steer_ethertype(&self, ethertype: u16, queue: u16) -> Result<(), PortError> {
        let mut attr = ffi::rte_flow_attr::default();
        attr.set_ingress(1);
        let mut spec = ffi::rte_flow_item_eth::default();
        let mut mask = ffi::rte_flow_item_eth::default();
        // Writing a union field is safe; the header view and the named fields alias.
        spec.__bindgen_anon_1.__bindgen_anon_1.type_ = ethertype.to_be();
        mask.__bindgen_anon_1.__bindgen_anon_1.type_ = 0xffff;
        let items = [
            ffi::rte_flow_item {
                type_: ffi::RTE_FLOW_ITEM_TYPE_ETH,
                spec: &spec as *const _ as *const std::os::raw::c_void,
                last: std::ptr::null(),
                mask: &mask as *const _ as *const std::os::raw::c_void,
            },
            ffi::rte_flow_item {
                type_: ffi::RTE_FLOW_ITEM_TYPE_END,
                spec: std::ptr::null(),
                last: std::ptr::null(),
                mask: std::ptr::null(),
            },
        ];
        let q = ffi::rte_flow_action_queue { index: queue };
        let actions = [
            ffi::rte_flow_action {
                type_: ffi::RTE_FLOW_ACTION_TYPE_QUEUE,
                conf: &q as *const _ as *const std::os::raw::c_void,
            },
            ffi::rte_flow_action {
                type_: ffi::RTE_FLOW_ACTION_TYPE_END,
                conf: std::ptr::null(),
            },
        ];
        let mut err = ffi::rte_flow_error::default();
        // SAFETY: END-terminated item and action arrays whose spec/mask/conf point at
        // locals alive for the call; valid out-pointer for the error.
        let rc = unsafe {
            ffi::rte_flow_validate(self.id, &attr, items.as_ptr(), actions.as_ptr(), &mut err)
        };
        if rc != 0 {
            return Err(flow_err(*self, "flow_validate", rc, &err));
        }
        // SAFETY: as above; the PMD copies what it keeps.
        let flow = unsafe {
            ffi::rte_flow_create(self.id, &attr, items.as_ptr(), actions.as_ptr(), &mut err)
        };
        if flow.is_null() {
            return Err(flow_err(*self, "flow_create", -1, &err));
        }
        Ok(())
    }
}

/// A flow error with the PMD's message when it gave one.
fn flow_err(port: Port, op: &'static str, rc: i32, err: &ffi::rte_flow_error) -> PortError {
    let msg = if err.message.is_null() {
        errno_str(rc)
    } else {
        // SAFETY: the PMD sets `message` to a NUL-terminated static string.
        unsafe { CStr::from_ptr(err.message) }
            .to_string_lossy()
            .into_owned()
    };
    PortError::Op {
        port: port.id,
        name: port.name(),
        op,
        reason: msg,
    }
}

fn libc_enotsup() -> i32 {
    95
}

fn claim(
    map: &[AtomicU64; MAX_PORTS],
    port: Port,
    q: u16,
    kind: &'static str,
) -> Result<(), PortError> {
    if q >= MAX_QUEUES || port.id as usize >= MAX_PORTS {
        return Err(PortError::QueueClaimed {
            port: port.id,
            kind,
            queue: q,
        });
    }
    let bit = 1u64 << q;
    let prev = map[port.id as usize].fetch_or(bit, Ordering::AcqRel);
    if prev & bit != 0 {
        return Err(PortError::QueueClaimed {
            port: port.id,
            kind,
            queue: q,
        });
    }
    Ok(())
}

/// Exclusive right to poll one rx queue. `Send`, not `Sync`, not `Clone`.
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl RxQueue {
    /// The port.
    #[inline]
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The queue index.
    #[inline]
    pub fn queue(&self) -> u16 {
        self.queue
    }
    /// Receives up to the burst's free room; returns how many arrived.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        self.rx_burst_max(burst, N)
    }
    /// Receives up to `max` frames, or the burst's free room if that is less; returns
    /// how many arrived.
    #[inline]
    pub fn rx_burst_max<const N: usize>(&mut self, burst: &mut Burst<N>, max: usize) -> usize {
        let (p, room) = burst.tail_ptr();
        let room = room.min(max).min(u16::MAX as usize);
        if room == 0 {
            return 0;
        }
        // SAFETY: we exclusively own this queue (claim bitmap + !Sync); p points at
        // `room` writable slots; DPDK writes owned mbuf pointers into the first n.
        let n = unsafe { ffi::rte_eth_rx_burst(self.port, self.queue, p, room as u16) } as usize;
        burst.grow(n);
        n
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        RX_CLAIMS[self.port as usize].fetch_and(!(1u64 << self.queue), Ordering::AcqRel);
    }
}

/// Exclusive right to transmit on one tx queue. `Send`, not `Sync`, not `Clone`.
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
    multi_seg: bool,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl TxQueue {
    /// The port.
    #[inline]
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The queue index.
    #[inline]
    pub fn queue(&self) -> u16 {
        self.queue
    }
    /// Whether the queue may be given multi-segment mbufs: the device advertises
    /// `RTE_ETH_TX_OFFLOAD_MULTI_SEGS` (which [`Port::configure`] turns on), or its
    /// driver takes chains without saying so (`TX_CHAINS_UNADVERTISED`). Where it may
    /// not, the caller must not pass chained mbufs to [`tx_burst`](Self::tx_burst).
    #[inline]
    pub fn multi_seg(&self) -> bool {
        self.multi_seg
    }
    /// Transmits from the front of the burst; sent mbufs leave it, the rest move to
    /// the front and stay owned by the caller. Returns how many were sent.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let len = burst.len();
        if len == 0 {
            return 0;
        }
        // SAFETY: exclusive queue ownership; the first `len` entries are owned mbufs;
        // DPDK takes ownership of the first n it returns.
        let n =
            unsafe { ffi::rte_eth_tx_burst(self.port, self.queue, burst.head_ptr(), len as u16) }
                as usize;
        burst.consume_front(n);
        n
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        TX_CLAIMS[self.port as usize].fetch_and(!(1u64 << self.queue), Ordering::AcqRel);
    }
}

/// A tx queue several threads may use, one at a time, behind a spin lock: Open
/// vSwitch's answer for vhost-user guests that enable fewer queue pairs than there
/// are polling threads. Only used where a queue per thread is impossible; a worker
/// holds the lock for one `tx_burst` call.
#[derive(Debug)]
pub struct SharedTxQueue {
    lock: std::sync::atomic::AtomicBool,
    queue: std::cell::UnsafeCell<TxQueue>,
}

// SAFETY: the inner TxQueue is only reached while `lock` is held (acquire/release), so
// at most one thread uses it at a time, which is DPDK's requirement for a tx queue.
unsafe impl Sync for SharedTxQueue {}
// SAFETY: TxQueue is Send; moving the wrapper moves the queue.
unsafe impl Send for SharedTxQueue {}

impl SharedTxQueue {
    /// Wraps a claimed tx queue for sharing.
    pub fn new(queue: TxQueue) -> SharedTxQueue {
        SharedTxQueue {
            lock: std::sync::atomic::AtomicBool::new(false),
            queue: std::cell::UnsafeCell::new(queue),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        // SAFETY: port() reads a field that never changes after construction.
        unsafe { (*self.queue.get()).port() }
    }

    /// [`TxQueue::multi_seg`] of the wrapped queue.
    pub fn multi_seg(&self) -> bool {
        // SAFETY: multi_seg() reads a field that never changes after construction.
        unsafe { (*self.queue.get()).multi_seg() }
    }

    /// Transmits like [`TxQueue::tx_burst`], spinning until the queue is free.
    #[inline]
    pub fn tx_burst<const N: usize>(&self, burst: &mut Burst<N>) -> usize {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: we hold the lock, so no other thread has a reference to the queue.
        let n = unsafe { (*self.queue.get()).tx_burst(burst) };
        self.lock.store(false, Ordering::Release);
        n
    }
}
