//! Test support: [`FakeApi`], a [`ControlApi`] over an in-memory [`Config`] with
//! deterministic counters, so the control server, `vsctl` and the exporter can be
//! tested end to end without DPDK. Not part of the daemon; hidden from the docs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{Config, UplinkRef};
use crate::stats::DropReason;

use super::{
    apply_to_config, persist, ConfigChange, ControlApi, CtlError, LacpMemberShow, LacpShow,
    MemberShow, PmdRxqShow, PmdStats, PortStatsShow, RxqShow, ShapingShow, ShowTree, StatsShow,
    UplinkShow, VmShow, VnicShow,
};

/// A small valid configuration: `nic0`,`nic1` in `bond0`, unbonded `nic2`, VM `vm1`
/// with `vm1.0` on `bond0` and `vm1.1` on `nic2`, VM `vm2` with `web` on `bond0`.
pub const SAMPLE: &str = r#"
[dataplane]
cores = [1, 2]
[[nic]]
name = "nic0"
devargs = "net_null0"
speed_mbps = 10000
[[nic]]
name = "nic1"
devargs = "net_null1"
speed_mbps = 10000
[[nic]]
name = "nic2"
devargs = "net_null2"
speed_mbps = 1000
[[bond]]
name = "bond0"
members = ["nic0", "nic1"]
mode = "vm-pinned"
lacp = "active"
[[vm]]
name = "vm1"
priority = 7
shares = 2000
  [[vm.vnic]]
  socket = "/tmp/vm1.sock"
  mac = "02:00:00:00:00:01"
  uplink = "bond0"
  [[vm.vnic]]
  socket = "/tmp/vm1b.sock"
  mac = "02:00:00:00:00:02"
  uplink = "nic2"
[[vm]]
name = "vm2"
  [[vm.vnic]]
  name = "web"
  devargs = "net_null9"
  mac = "02:00:00:00:00:03"
  uplink = "bond0"
"#;

/// The parsed [`SAMPLE`].
pub fn sample_config() -> Config {
    Config::parse(SAMPLE, "sample").expect("SAMPLE is valid")
}

/// A [`ControlApi`] over an in-memory configuration.
pub struct FakeApi {
    cfg: Mutex<Config>,
    persist_to: Option<PathBuf>,
    down: Mutex<Vec<String>>,
    /// Manual failbacks performed.
    pub failbacks: AtomicU64,
    /// Makes `show` panic (to test that the server survives a panicking API).
    pub panic_in_show: AtomicBool,
}

impl FakeApi {
    /// A fake starting from `cfg`; with `persist_to`, accepted changes are written there.
    pub fn new(cfg: Config, persist_to: Option<&Path>) -> FakeApi {
        FakeApi {
            cfg: Mutex::new(cfg),
            persist_to: persist_to.map(Path::to_path_buf),
            down: Mutex::new(Vec::new()),
            failbacks: AtomicU64::new(0),
            panic_in_show: AtomicBool::new(false),
        }
    }

    /// Sets a NIC's link down (or up again).
    pub fn set_link(&self, nic: &str, up: bool) {
        let mut d = self.down.lock().unwrap_or_else(|e| e.into_inner());
        d.retain(|n| n != nic);
        if !up {
            d.push(nic.to_string());
        }
    }

    fn cfg(&self) -> Config {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn is_down(&self, nic: &str) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|n| n == nic)
    }

    /// Deterministic counters: a function of the port's position.
    fn port_stats(&self, cfg: &Config) -> Vec<PortStatsShow> {
        let mut out = Vec::new();
        for (i, n) in cfg.nic.iter().enumerate() {
            let k = i as u64 + 1;
            let mut p = PortStatsShow {
                name: n.name.clone(),
                kind: "nic".into(),
                uplink: cfg.bond_of_nic(&n.name).map(|b| b.name.clone()),
                link_up: !self.is_down(&n.name),
                mtu: Some(n.mtu()),
                rx_pkts: 1000 * k,
                rx_bytes: 64_000 * k,
                tx_pkts: 2000 * k,
                tx_bytes: 128_000 * k,
                drops: DropReason::ALL
                    .iter()
                    .map(|r| (r.name().to_string(), 0))
                    .collect(),
            };
            p.drops.insert(DropReason::NoUsableMember.name().into(), k);
            out.push(p);
        }
        let mut k = 0;
        for vm in &cfg.vm {
            for (j, v) in vm.vnic.iter().enumerate() {
                k += 1;
                let mut p = PortStatsShow {
                    name: Config::vnic_name(vm, j),
                    kind: "vnic".into(),
                    uplink: Some(v.uplink.clone()),
                    link_up: true,
                    mtu: None,
                    rx_pkts: 10 * k,
                    rx_bytes: 640 * k,
                    tx_pkts: 20 * k,
                    tx_bytes: 1280 * k,
                    drops: DropReason::ALL
                        .iter()
                        .map(|r| (r.name().to_string(), 0))
                        .collect(),
                };
                p.drops.insert(DropReason::Spoofed.name().into(), k);
                p.drops.insert(DropReason::OverShare.name().into(), 2 * k);
                out.push(p);
            }
        }
        out
    }

    fn uplinks(&self, cfg: &Config) -> Vec<UplinkShow> {
        let stats = self.port_stats(cfg);
        let vnics_on = |u: &str| -> Vec<String> {
            cfg.vm
                .iter()
                .flat_map(|vm| {
                    vm.vnic
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.uplink == u)
                        .map(move |(j, _)| Config::vnic_name(vm, j))
                })
                .collect()
        };
        let member = |name: &str, pinned: Vec<String>| {
            let s = stats
                .iter()
                .find(|p| p.name == name)
                .cloned()
                .unwrap_or_default();
            let up = !self.is_down(name);
            let nic = cfg.nic.iter().find(|n| n.name == name);
            MemberShow {
                name: name.to_string(),
                state: if up {
                    "enabled".into()
                } else {
                    "disabled".into()
                },
                reason: if up {
                    String::new()
                } else {
                    "link down".into()
                },
                link_up: up,
                usable: up,
                speed_mbps: nic.and_then(|n| n.speed_mbps).unwrap_or(10_000),
                mtu: nic.map_or(0, |n| n.mtu()),
                tx_pkts: s.tx_pkts,
                tx_bytes: s.tx_bytes,
                rx_pkts: s.rx_pkts,
                rx_bytes: s.rx_bytes,
                pinned_vnics: pinned,
            }
        };
        let mut out = Vec::new();
        for b in &cfg.bond {
            let vnics = vnics_on(&b.name);
            let usable: Vec<&String> = b.members.iter().filter(|m| !self.is_down(m)).collect();
            let members = b
                .members
                .iter()
                .map(|m| {
                    let pinned = vnics
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| !usable.is_empty() && usable[k % usable.len()] == m)
                        .map(|(_, v)| v.clone())
                        .collect();
                    member(m, pinned)
                })
                .collect();
            out.push(UplinkShow {
                name: b.name.clone(),
                is_bond: true,
                mode: b.mode.clone(),
                failback: b.failback.clone(),
                lacp: b.lacp.clone(),
                degraded: usable.len() < b.members.len(),
                active_member: usable.first().map(|s| s.to_string()),
                members,
                vnics,
            });
        }
        for n in &cfg.nic {
            if cfg.bond_of_nic(&n.name).is_none() {
                let vnics = vnics_on(&n.name);
                out.push(UplinkShow {
                    name: n.name.clone(),
                    is_bond: false,
                    mode: "single".into(),
                    failback: String::new(),
                    lacp: "off".into(),
                    degraded: self.is_down(&n.name),
                    active_member: Some(n.name.clone()),
                    members: vec![member(&n.name, vnics.clone())],
                    vnics,
                });
            }
        }
        out
    }

    fn vnics(&self, cfg: &Config) -> Vec<VnicShow> {
        let ups = self.uplinks(cfg);
        let mut out = Vec::new();
        for vm in &cfg.vm {
            for (j, v) in vm.vnic.iter().enumerate() {
                let name = Config::vnic_name(vm, j);
                let shares = v.shares.unwrap_or(vm.shares);
                let up = ups.iter().find(|u| u.name == v.uplink);
                let capacity_bps: u64 = up
                    .map(|u| {
                        u.members
                            .iter()
                            .filter(|m| m.usable)
                            .map(|m| m.speed_mbps as u64 * 1_000_000)
                            .sum()
                    })
                    .unwrap_or(0);
                let total_shares: u64 = cfg
                    .vm
                    .iter()
                    .flat_map(|w| {
                        w.vnic
                            .iter()
                            .filter(|x| x.uplink == v.uplink)
                            .map(move |x| x.shares.unwrap_or(w.shares) as u64)
                    })
                    .sum();
                let entitled = (capacity_bps * shares as u64)
                    .checked_div(total_shares)
                    .unwrap_or(0);
                out.push(VnicShow {
                    name: name.clone(),
                    vm: vm.name.clone(),
                    mac: v.mac.clone(),
                    backend: match (&v.socket, &v.devargs) {
                        (Some(s), _) => format!("vhost-user {} {s}", v.vhost_mode),
                        (None, Some(d)) => format!("devargs {d}"),
                        _ => String::new(),
                    },
                    link_up: true,
                    mtu: v.mtu,
                    uplink: v.uplink.clone(),
                    member: up.and_then(|u| {
                        u.members
                            .iter()
                            .find(|m| m.pinned_vnics.contains(&name))
                            .map(|m| m.name.clone())
                    }),
                    shares,
                    priority: v.priority.unwrap_or(vm.priority),
                    reservation_mbps: None,
                    shaping: (name == "web").then_some(ShapingShow {
                        average_bps: 100_000_000,
                        peak_bps: 200_000_000,
                        burst_bytes: 1_000_000,
                        peak_period_ms: 100,
                    }),
                    entitled_bps: entitled,
                    used_bps: entitled / 2,
                    limit: if matches!(cfg.uplink(&v.uplink), Some(UplinkRef::Bond(_))) {
                        "shares".into()
                    } else {
                        String::new()
                    },
                });
            }
        }
        out
    }
}

impl ControlApi for FakeApi {
    fn show(&self) -> Result<ShowTree, CtlError> {
        if self.panic_in_show.load(Ordering::Relaxed) {
            panic!("FakeApi::show asked to panic");
        }
        let cfg = self.cfg();
        let vnics = self.vnics(&cfg);
        Ok(ShowTree {
            uplinks: self.uplinks(&cfg),
            vms: cfg
                .vm
                .iter()
                .map(|vm| VmShow {
                    name: vm.name.clone(),
                    priority: vm.priority,
                    shares: vm.shares,
                    vnics: vnics.iter().filter(|v| v.vm == vm.name).cloned().collect(),
                    ..VmShow::default()
                })
                .collect(),
            generation: 3,
        })
    }

    fn config(&self) -> Result<Config, CtlError> {
        Ok(self.cfg())
    }

    fn stats(&self, port: Option<&str>) -> Result<StatsShow, CtlError> {
        let mut ports = self.port_stats(&self.cfg());
        if let Some(p) = port {
            ports.retain(|s| s.name == p);
            if ports.is_empty() {
                return Err(CtlError::NotFound {
                    kind: "port",
                    name: p.into(),
                });
            }
        }
        Ok(StatsShow { ports })
    }

    fn pmd_stats(&self) -> Result<Vec<PmdStats>, CtlError> {
        Ok(self
            .cfg()
            .dataplane
            .cores
            .iter()
            .enumerate()
            .map(|(w, &core)| PmdStats {
                worker: w,
                core,
                iterations: 1_000_000 * (w as u64 + 1),
                busy_iterations: 250_000,
                rx_pkts: 4_000_000,
                busy_pct: 25.0,
                cycles_per_pkt: 180.5,
                sleep_iterations: 0,
                sleep_pct: 0.0,
                sleep_us: 0,
                sleep_us_per_iteration: 0.0,
                sleep_max_us: self.cfg().dataplane.pmd_sleep_max_us,
            })
            .collect())
    }

    fn pmd_stats_clear(&self) -> Result<usize, CtlError> {
        Ok(self.cfg().dataplane.cores.len())
    }

    fn pmd_rxq(&self) -> Result<Vec<PmdRxqShow>, CtlError> {
        let cfg = self.cfg();
        let workers = cfg.dataplane.cores.len().max(1);
        // Every port's queue 0 round-robin over the workers, its rx count as in `stats`.
        let entries = self
            .port_stats(&cfg)
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    i % workers,
                    RxqShow {
                        port: p.name,
                        kind: p.kind,
                        queues: vec![0],
                        rx_pkts: p.rx_pkts,
                        rx_share_pct: 0.0,
                    },
                )
            })
            .collect();
        Ok(PmdRxqShow::group(&cfg.dataplane.cores, entries))
    }

    fn bond_show(&self, bond: Option<&str>) -> Result<Vec<UplinkShow>, CtlError> {
        let cfg = self.cfg();
        let mut v: Vec<UplinkShow> = self
            .uplinks(&cfg)
            .into_iter()
            .filter(|u| u.is_bond)
            .collect();
        if let Some(b) = bond {
            v.retain(|u| u.name == b);
            if v.is_empty() {
                return Err(CtlError::NotFound {
                    kind: "bond",
                    name: b.into(),
                });
            }
        }
        Ok(v)
    }

    fn lacp_show(&self, bond: Option<&str>) -> Result<Vec<LacpShow>, CtlError> {
        let cfg = self.cfg();
        if let Some(b) = bond {
            if !cfg.bond.iter().any(|x| x.name == b) {
                return Err(CtlError::NotFound {
                    kind: "bond",
                    name: b.into(),
                });
            }
        }
        Ok(cfg
            .bond
            .iter()
            .filter(|b| bond.map_or(b.lacp != "off", |n| n == b.name))
            .map(|b| {
                let members: Vec<LacpMemberShow> = b
                    .members
                    .iter()
                    .map(|m| LacpMemberShow {
                        name: m.clone(),
                        may_enable: !self.is_down(m),
                        mux: if self.is_down(m) {
                            "detached".into()
                        } else {
                            "collecting_distributing".into()
                        },
                        partner: "02:aa:bb:cc:dd:ee".into(),
                    })
                    .collect();
                let mut text = format!("---- {} ----\n  status: {} negotiated\n", b.name, b.lacp);
                for m in &members {
                    text.push_str(&format!("\nmember: {}: {}\n", m.name, m.mux));
                }
                LacpShow {
                    bond: b.name.clone(),
                    lacp: b.lacp.clone(),
                    negotiated: b.lacp != "off",
                    fallback_active: false,
                    members,
                    text,
                }
            })
            .collect())
    }

    fn bond_failback(&self, bond: &str) -> Result<u64, CtlError> {
        let cfg = self.cfg();
        if !cfg.bond.iter().any(|b| b.name == bond) {
            return Err(CtlError::NotFound {
                kind: "bond",
                name: bond.into(),
            });
        }
        self.failbacks.fetch_add(1, Ordering::Relaxed);
        Ok(cfg
            .vm
            .iter()
            .flat_map(|vm| vm.vnic.iter())
            .filter(|v| v.uplink == bond)
            .count() as u64)
    }

    fn vnic_bandwidth(&self, vnic: Option<&str>) -> Result<Vec<VnicShow>, CtlError> {
        let mut v = self.vnics(&self.cfg());
        if let Some(n) = vnic {
            v.retain(|x| x.name == n);
            if v.is_empty() {
                return Err(CtlError::NotFound {
                    kind: "vnic",
                    name: n.into(),
                });
            }
        }
        Ok(v)
    }

    fn apply_change(&self, change: ConfigChange) -> Result<(), CtlError> {
        let mut cur = self.cfg.lock().unwrap_or_else(|e| e.into_inner());
        let new = apply_to_config(&cur, &change)?;
        if let Some(p) = &self.persist_to {
            persist::write_atomic(p, &new)?;
        }
        *cur = new;
        Ok(())
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory whose name contains `tag`.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "vswitch-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `api` on `path` for a test; set the returned flag to stop.
pub fn spawn_server(
    path: &Path,
    api: Arc<dyn ControlApi>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let quit = Arc::new(AtomicBool::new(false));
    let h = super::server::serve(path, 0o660, None, api, Arc::clone(&quit)).expect("serve");
    (quit, h)
}

/// Counts in a map (used by tests to compare drop maps).
pub fn nonzero(m: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    m.iter()
        .filter(|(_, &v)| v > 0)
        .map(|(k, &v)| (k.as_str(), v))
        .collect()
}
