//! Shared setup of the end-to-end tests: the topology a `vswitchd` runs (rendered as
//! the TOML it reads) and the `vsperf` argument lists that play VMs and external hosts.
//!
//! Both are plain builders that keep what they are given in order, so a test still
//! reads as its scenario:
//!
//! ```ignore
//! let cfg = Topology::new("vsw")
//!     .nic(Nic::tap("nic0", 0, &tap_a))
//!     .nic(Nic::tap("nic1", 1, &tap_b))
//!     .bond(Bond::new("bond0", &["nic0", "nic1"]).mode("active-backup"))
//!     .vm(Vm::new("vm1").vnic(Vnic::vhost(&sock, VM1, "bond0")))
//!     .render();
//! let r = vsperf_run("vm1", &VsperfArgs::new().wait_link(10).vm(0, &sock).txonly(VM1, EXT).count(2000).build(), timeout);
//! ```
//!
//! Keys are rendered in the order they were set; setting a key again replaces its value
//! in place.

use std::fmt::Display;
use std::path::Path;

use crate::unique;

/// A value as TOML writes it: strings quoted, numbers and booleans bare, slices as arrays.
pub trait TomlValue {
    /// The value's TOML text.
    fn toml(&self) -> String;
}

impl TomlValue for str {
    fn toml(&self) -> String {
        format!("\"{}\"", self.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

impl TomlValue for String {
    fn toml(&self) -> String {
        self.as_str().toml()
    }
}

impl<T: TomlValue + ?Sized> TomlValue for &T {
    fn toml(&self) -> String {
        (**self).toml()
    }
}

macro_rules! bare_toml {
    ($($t:ty),*) => { $(impl TomlValue for $t {
        fn toml(&self) -> String {
            self.to_string()
        }
    })* };
}
bare_toml!(bool, u8, u16, u32, u64, usize, i32, i64);

impl<T: TomlValue> TomlValue for [T] {
    fn toml(&self) -> String {
        let items: Vec<String> = self.iter().map(|v| v.toml()).collect();
        format!("[{}]", items.join(", "))
    }
}

impl<T: TomlValue, const N: usize> TomlValue for [T; N] {
    fn toml(&self) -> String {
        self[..].toml()
    }
}

impl<T: TomlValue> TomlValue for Vec<T> {
    fn toml(&self) -> String {
        self[..].toml()
    }
}

/// The keys of one TOML table, in the order they were set.
#[derive(Clone, Debug, Default)]
struct Keys(Vec<(String, String)>);

impl Keys {
    fn set(&mut self, key: &str, value: &(impl TomlValue + ?Sized)) {
        let value = value.toml();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn render(&self, indent: &str, out: &mut String) {
        for (k, v) in &self.0 {
            out.push_str(&format!("{indent}{k} = {v}\n"));
        }
    }
}

/// A whole `vswitchd` configuration: `[eal]`, `[dataplane]`, then every `[[nic]]`,
/// `[[bond]]` and `[[vm]]` in the order added.
#[derive(Clone, Debug)]
pub struct Topology {
    eal: Keys,
    dataplane: Keys,
    nics: Vec<Nic>,
    bonds: Vec<Bond>,
    vms: Vec<Vm>,
}

impl Topology {
    /// `file_prefix` = [`unique`]`(prefix)`, one worker on core 1, no ports yet.
    pub fn new(prefix: &str) -> Topology {
        let mut eal = Keys::default();
        eal.set("file_prefix", &unique(prefix));
        let mut dataplane = Keys::default();
        dataplane.set("cores", &[1u32]);
        Topology {
            eal,
            dataplane,
            nics: Vec::new(),
            bonds: Vec::new(),
            vms: Vec::new(),
        }
    }

    /// The worker cores (`[dataplane] cores`).
    pub fn cores(self, cores: &[u32]) -> Topology {
        self.dataplane("cores", cores)
    }

    /// Any other `[dataplane]` key (`link_poll_ms`, `mbufs`, `bandwidth`, ...).
    pub fn dataplane(mut self, key: &str, value: impl TomlValue) -> Topology {
        self.dataplane.set(key, &value);
        self
    }

    /// Adds a `[[nic]]`.
    pub fn nic(mut self, nic: Nic) -> Topology {
        self.nics.push(nic);
        self
    }

    /// Adds a `[[bond]]`.
    pub fn bond(mut self, bond: Bond) -> Topology {
        self.bonds.push(bond);
        self
    }

    /// Adds a `[[vm]]`.
    pub fn vm(mut self, vm: Vm) -> Topology {
        self.vms.push(vm);
        self
    }

    /// The TOML `vswitchd --config` reads.
    pub fn render(&self) -> String {
        let mut out = String::from("[eal]\n");
        self.eal.render("", &mut out);
        out.push_str("[dataplane]\n");
        self.dataplane.render("", &mut out);
        for nic in &self.nics {
            out.push_str("[[nic]]\n");
            nic.0.render("", &mut out);
        }
        for bond in &self.bonds {
            out.push_str("[[bond]]\n");
            bond.0.render("", &mut out);
        }
        for vm in &self.vms {
            out.push_str("[[vm]]\n");
            vm.keys.render("", &mut out);
            for vnic in &vm.vnics {
                out.push_str("  [[vm.vnic]]\n");
                vnic.0.render("  ", &mut out);
            }
        }
        out
    }
}

/// A `[[nic]]`.
#[derive(Clone, Debug)]
pub struct Nic(Keys);

impl Nic {
    /// A NIC on any DPDK device.
    pub fn new(name: &str, devargs: &str) -> Nic {
        let mut k = Keys::default();
        k.set("name", name);
        k.set("devargs", devargs);
        Nic(k)
    }

    /// `net_tap<idx>` on kernel interface `iface`.
    pub fn tap(name: &str, idx: usize, iface: &str) -> Nic {
        Nic::new(name, &format!("net_tap{idx},iface={iface}"))
    }

    /// `net_null<idx>,no-rx=1`: takes everything, receives nothing.
    pub fn null(name: &str, idx: usize) -> Nic {
        Nic::new(name, &format!("net_null{idx},no-rx=1"))
    }

    /// The NIC's capacity as the bandwidth policy sees it.
    pub fn speed_mbps(self, mbps: u64) -> Nic {
        self.set("speed_mbps", mbps)
    }

    /// Any other key.
    pub fn set(mut self, key: &str, value: impl TomlValue) -> Nic {
        self.0.set(key, &value);
        self
    }
}

/// A `[[bond]]`.
#[derive(Clone, Debug)]
pub struct Bond(Keys);

impl Bond {
    /// A bond of `members` (NIC names), the switch's default mode.
    pub fn new(name: &str, members: &[&str]) -> Bond {
        let mut k = Keys::default();
        k.set("name", name);
        k.set("members", members);
        Bond(k)
    }

    /// `mode` (`active-backup`, `hash-l3l4`, ...).
    pub fn mode(self, mode: &str) -> Bond {
        self.set("mode", mode)
    }

    /// Any other key (`failback`, `lacp`, `degraded`, ...).
    pub fn set(mut self, key: &str, value: impl TomlValue) -> Bond {
        self.0.set(key, &value);
        self
    }
}

/// A `[[vm]]` and its `[[vm.vnic]]`s.
#[derive(Clone, Debug)]
pub struct Vm {
    keys: Keys,
    vnics: Vec<Vnic>,
}

impl Vm {
    /// A VM without vNICs.
    pub fn new(name: &str) -> Vm {
        let mut keys = Keys::default();
        keys.set("name", name);
        Vm {
            keys,
            vnics: Vec::new(),
        }
    }

    /// Any VM key (`shares`, `priority`, `dos_*`, ...).
    pub fn set(mut self, key: &str, value: impl TomlValue) -> Vm {
        self.keys.set(key, &value);
        self
    }

    /// Adds a vNIC.
    pub fn vnic(mut self, vnic: Vnic) -> Vm {
        self.vnics.push(vnic);
        self
    }
}

/// A `[[vm.vnic]]`.
#[derive(Clone, Debug)]
pub struct Vnic(Keys);

impl Vnic {
    /// A vhost-user vNIC on `socket` (the switch's default vhost mode).
    pub fn vhost(socket: &str, mac: &str, uplink: &str) -> Vnic {
        let mut k = Keys::default();
        k.set("socket", socket);
        k.set("mac", mac);
        k.set("uplink", uplink);
        Vnic(k)
    }

    /// A vNIC on any DPDK device inside the switch process.
    pub fn device(devargs: &str, mac: &str, uplink: &str) -> Vnic {
        let mut k = Keys::default();
        k.set("devargs", devargs);
        k.set("mac", mac);
        k.set("uplink", uplink);
        Vnic(k)
    }

    /// `net_pcap<idx>` replaying `pcap` forever: a source that saturates anything.
    pub fn pcap(idx: usize, pcap: &Path, mac: &str, uplink: &str) -> Vnic {
        let devargs = format!("net_pcap{idx},rx_pcap={},infinite_rx=1", pcap.display());
        Vnic::device(&devargs, mac, uplink)
    }

    /// `net_null<idx>,no-rx=1`: an idle vNIC that takes whatever it is sent.
    pub fn null(idx: usize, mac: &str, uplink: &str) -> Vnic {
        Vnic::device(&format!("net_null{idx},no-rx=1"), mac, uplink)
    }

    /// The shaper: average and peak rate (b/s) and burst size (bytes).
    pub fn shaping(self, average_bps: u64, peak_bps: u64, burst_bytes: u64) -> Vnic {
        self.set("average_bps", average_bps)
            .set("peak_bps", peak_bps)
            .set("burst_bytes", burst_bytes)
    }

    /// Any other key (`name`, `vhost_mode`, `spoof_check`, `shares`, ...).
    pub fn set(mut self, key: &str, value: impl TomlValue) -> Vnic {
        self.0.set(key, &value);
        self
    }
}

/// A `vsperf run` argument list, built in order: options before the first `--port`
/// are the run's, options after a `--port` belong to that port.
#[derive(Clone, Debug, Default)]
pub struct VsperfArgs(Vec<String>);

impl VsperfArgs {
    /// No arguments yet.
    pub fn new() -> VsperfArgs {
        VsperfArgs::default()
    }

    /// `--NAME VALUE` (`name` without the dashes).
    pub fn opt(mut self, name: &str, value: impl Display) -> VsperfArgs {
        self.0.push(format!("--{name}"));
        self.0.push(value.to_string());
        self
    }

    /// Appends arguments as they are.
    pub fn extend(mut self, more: &[String]) -> VsperfArgs {
        self.0.extend(more.iter().cloned());
        self
    }

    /// Appends another list (a port's options, observers, ...).
    pub fn append(mut self, more: VsperfArgs) -> VsperfArgs {
        self.0.extend(more.0);
        self
    }

    /// `--wait-link SECS`: wait for every port's link first.
    pub fn wait_link(self, secs: u64) -> VsperfArgs {
        self.opt("wait-link", secs)
    }

    /// `--duration SECS`.
    pub fn duration(self, secs: u64) -> VsperfArgs {
        self.opt("duration", secs)
    }

    /// `--drain-ms MS`: keep receiving this long after the senders stop.
    pub fn drain_ms(self, ms: u64) -> VsperfArgs {
        self.opt("drain-ms", ms)
    }

    /// `--timeline-ms MS`: per-port rx timeline resolution.
    pub fn timeline_ms(self, ms: u64) -> VsperfArgs {
        self.opt("timeline-ms", ms)
    }

    /// `--port DEVARGS`.
    pub fn port(self, devargs: impl Display) -> VsperfArgs {
        self.opt("port", devargs)
    }

    /// A VM: `net_virtio_user<idx>` with one queue pair on the switch's vhost-user
    /// `socket`.
    pub fn vm(self, idx: usize, socket: &str) -> VsperfArgs {
        self.port(virtio_user(idx, socket))
    }

    /// [`VsperfArgs::vm`] with `descriptors` in its virtio ring (the PMD's default is
    /// 256): room for the frames that arrive while this process waits for its core.
    pub fn vm_ring(self, idx: usize, socket: &str, descriptors: u16) -> VsperfArgs {
        self.port(format!(
            "{},queue_size={descriptors}",
            virtio_user(idx, socket)
        ))
    }

    /// The external host behind a tap NIC: `net_af_packet<idx>` on kernel interface
    /// `iface`.
    pub fn host(self, idx: usize, iface: &str) -> VsperfArgs {
        self.port(format!("net_af_packet{idx},iface={iface}"))
    }

    /// The last port sends from `src` to `dst` (`--mode txonly`).
    pub fn txonly(self, src: &str, dst: &str) -> VsperfArgs {
        self.opt("mode", "txonly")
            .opt("src-mac", src)
            .opt("dst-mac", dst)
    }

    /// The last port only receives (`--mode rxonly`).
    pub fn rxonly(self) -> VsperfArgs {
        self.opt("mode", "rxonly")
    }

    /// `--count N`: frames the last port sends.
    pub fn count(self, n: u64) -> VsperfArgs {
        self.opt("count", n)
    }

    /// `--rate R` of the last port (`20kpps`, `40mbps`, `max`, ...).
    pub fn rate(self, rate: impl Display) -> VsperfArgs {
        self.opt("rate", rate)
    }

    /// The argument list, for [`crate::vsperf`] and [`crate::vsperf_run`].
    pub fn build(self) -> Vec<String> {
        self.0
    }
}

/// The devargs of a VM's `net_virtio_user<idx>` port with one queue pair on `socket`.
pub fn virtio_user(idx: usize, socket: &str) -> String {
    format!("net_virtio_user{idx},path={socket},queues=1")
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn renders_every_section_in_order() {
        let cfg = Topology::new("t")
            .dataplane("link_poll_ms", 10)
            .cores(&[0, 1])
            .nic(Nic::tap("nic0", 0, "ta").speed_mbps(100))
            .nic(Nic::null("nic1", 1))
            .bond(Bond::new("bond0", &["nic0", "nic1"]).mode("hash-l3l4"))
            .vm(Vm::new("vm1")
                .set("shares", 2000)
                .vnic(Vnic::vhost("/tmp/s", "02:00:00:00:00:01", "bond0").set("spoof_check", false))
                .vnic(
                    Vnic::pcap(0, Path::new("/tmp/p"), "02:00:00:00:00:02", "nic0")
                        .shaping(1, 2, 3),
                ))
            .render();
        let prefix = cfg.lines().nth(1).unwrap().to_string();
        assert!(prefix.starts_with("file_prefix = \"t"), "{cfg}");
        let want = format!(
            "[eal]\n{prefix}\n[dataplane]\ncores = [0, 1]\nlink_poll_ms = 10\n\
             [[nic]]\nname = \"nic0\"\ndevargs = \"net_tap0,iface=ta\"\nspeed_mbps = 100\n\
             [[nic]]\nname = \"nic1\"\ndevargs = \"net_null1,no-rx=1\"\n\
             [[bond]]\nname = \"bond0\"\nmembers = [\"nic0\", \"nic1\"]\nmode = \"hash-l3l4\"\n\
             [[vm]]\nname = \"vm1\"\nshares = 2000\n\
             \x20 [[vm.vnic]]\n  socket = \"/tmp/s\"\n  mac = \"02:00:00:00:00:01\"\n  uplink = \"bond0\"\n  spoof_check = false\n\
             \x20 [[vm.vnic]]\n  devargs = \"net_pcap0,rx_pcap=/tmp/p,infinite_rx=1\"\n  mac = \"02:00:00:00:00:02\"\n  uplink = \"nic0\"\n  average_bps = 1\n  peak_bps = 2\n  burst_bytes = 3\n"
        );
        assert_eq!(cfg, want);
    }

    #[test]
    fn vsperf_args_keep_their_order() {
        let a = VsperfArgs::new()
            .wait_link(10)
            .vm(0, "/tmp/s")
            .txonly("a", "b")
            .count(5)
            .rate("20kpps")
            .host(1, "tap")
            .rxonly()
            .build();
        let want = "--wait-link 10 --port net_virtio_user0,path=/tmp/s,queues=1 --mode txonly \
                    --src-mac a --dst-mac b --count 5 --rate 20kpps \
                    --port net_af_packet1,iface=tap --mode rxonly";
        assert_eq!(a.join(" "), want);
    }
}
