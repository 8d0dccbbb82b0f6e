//! `vsctl`: configures and inspects a running `vswitchd` over its control socket,
//! in the family style of `ovs-vsctl` / `ovs-appctl`.
//!
//! Every command is one request of the JSON-lines protocol documented in
//! `vswitch::ctl::protocol`. The daemon validates every change against the same
//! rules as the configuration file and persists accepted changes; `vsctl` only sends
//! requests and renders replies (text, or the raw JSON with `--format json`).
//!
//! Exit status: 0 on success, 1 when the request failed (the daemon refused it, or
//! the daemon could not be reached — with a one-line message saying what to do), 2
//! for command-line usage errors.
#![deny(unsafe_code)]

mod client;
mod render;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use client::{Client, ClientError, DEFAULT_SOCKET};

const EXAMPLES: &str = "\
Examples:
  vsctl show
  vsctl add-nic nic3 0000:3b:00.1 --speed-mbps 25000
  vsctl add-bond bond1 nic3 nic4 mode=balance-tcp lacp=active
  vsctl add-vnic vm1 --mac 02:00:00:00:00:05 --socket /run/vm1-net1.sock --uplink bond1
  vsctl set-vnic vm1.1 shares=2000 priority=8
  vsctl --format json bond/show bond0
  vsctl stats --watch --interval 2";

#[derive(Parser, Debug)]
#[command(name = "vsctl", version, about = "Configure and inspect a running vswitchd.", after_help = EXAMPLES)]
struct Cli {
    /// The daemon's control socket. Give it before the command (`add-vnic` has its own
    /// `--socket`, the VM's vhost-user socket).
    #[arg(long, env = "VSWITCH_SOCKET", default_value = DEFAULT_SOCKET, value_name = "PATH")]
    socket: PathBuf,
    /// Output format of show commands (`json` prints the daemon's data as is).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Seconds to wait for a reply.
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECONDS")]
    timeout: f64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// A `key=value` argument.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("'{s}' is not key=value (e.g. mode=active-backup)")),
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show the whole switch: uplinks (bonds with members, states and reasons;
    /// unbonded NICs), VMs with their vNICs, uplinks and policy settings.
    #[command(after_help = "Example:\n  vsctl show\n  vsctl --format json show")]
    Show,
    /// Print the desired configuration the daemon persists, as JSON.
    #[command(after_help = "Example:\n  vsctl dump-config > backup.json")]
    DumpConfig,
    /// Add a physical NIC (it starts unbonded).
    #[command(
        after_help = "Example:\n  vsctl add-nic nic3 0000:3b:00.1 --mtu 9000\n  vsctl add-nic nic4 net_tap0,iface=tap0 --speed-mbps 10000"
    )]
    AddNic {
        /// NIC name.
        name: String,
        /// DPDK devargs or PCI address.
        devargs: String,
        /// Speed to assume when the driver reports none (virtual NICs).
        #[arg(long, value_name = "N")]
        speed_mbps: Option<u32>,
        /// MTU, 68-9710 (default 1500); longer frames are not sent out of the NIC but
        /// counted as mtu_exceeded drops.
        #[arg(long, value_name = "N")]
        mtu: Option<u16>,
    },
    /// Change NIC settings: mtu (68-9710; Open vSwitch's mtu_request), speed_mbps,
    /// devargs (reopens the port). An empty value unsets an optional key.
    #[command(
        after_help = "Example:\n  vsctl set-nic nic0 mtu=9000\n  vsctl set-nic nic1 speed_mbps=25000"
    )]
    SetNic {
        /// NIC name.
        nic: String,
        /// key=value pairs.
        #[arg(required = true, value_parser = key_value, value_name = "KEY=VALUE")]
        settings: Vec<(String, String)>,
    },
    /// Delete an unbonded NIC that no vNIC uses.
    #[command(after_help = "Example:\n  vsctl del-nic nic3")]
    DelNic {
        /// NIC name.
        name: String,
    },
    /// Add a VM (then give it vNICs with add-vnic).
    #[command(after_help = "Example:\n  vsctl add-vm vm3 --priority 8 --shares 2000")]
    AddVm {
        /// VM name.
        name: String,
        /// Priority 0-10 (10 highest; default 5).
        #[arg(long, value_name = "P")]
        priority: Option<u8>,
        /// Bandwidth shares (default 1000).
        #[arg(long, value_name = "S")]
        shares: Option<u32>,
    },
    /// Delete a VM and its vNICs.
    #[command(after_help = "Example:\n  vsctl del-vm vm3")]
    DelVm {
        /// VM name.
        name: String,
    },
    /// Add a vNIC to a VM, attached to a bond or an unbonded NIC.
    #[command(
        group(ArgGroup::new("backend").required(true).args(["socket", "devargs"])),
        after_help = "Example:\n  vsctl add-vnic vm1 --mac 02:00:00:00:00:05 --socket /run/vm1-net1.sock --uplink bond0\n  vsctl add-vnic vm1 --mac 02:00:00:00:00:06 --devargs net_tap1,iface=t1 --uplink nic2 --name vm1-tap"
    )]
    AddVnic {
        /// The VM.
        vm: String,
        /// MAC address (unicast).
        #[arg(long, value_name = "M")]
        mac: String,
        /// vhost-user socket path.
        #[arg(long, value_name = "PATH")]
        socket: Option<String>,
        /// vhost-user role: server (the switch creates the socket) or client.
        #[arg(long, value_name = "MODE", requires = "socket", value_parser = ["server", "client"])]
        vhost_mode: Option<String>,
        /// Any DPDK port instead of vhost-user.
        #[arg(long, value_name = "D")]
        devargs: Option<String>,
        /// A bond or an unbonded NIC (never a bonded NIC, [0060]).
        #[arg(long, value_name = "U")]
        uplink: String,
        /// vNIC name (default VM.N).
        #[arg(long, value_name = "N")]
        name: Option<String>,
        /// MTU (68-9710; Open vSwitch's mtu_request): longer frames are not delivered
        /// to the VM but counted as mtu_exceeded drops. Default: no limit. Give the
        /// guest the same with QEMU's host_mtu=.
        #[arg(long, value_name = "BYTES")]
        mtu: Option<u16>,
    },
    /// Delete a vNIC.
    #[command(after_help = "Example:\n  vsctl del-vnic vm1.1")]
    DelVnic {
        /// vNIC name.
        name: String,
    },
    /// Move a vNIC to another bond or unbonded NIC.
    #[command(after_help = "Example:\n  vsctl set-vnic-uplink vm1.0 bond1")]
    SetVnicUplink {
        /// vNIC name.
        vnic: String,
        /// Bond or unbonded NIC.
        uplink: String,
    },
    /// Create a bond of NICs; trailing key=value pairs are bond settings.
    #[command(
        after_help = "Example:\n  vsctl add-bond bond1 nic3 nic4\n  vsctl add-bond bond1 nic3 nic4 mode=balance-tcp lacp=active"
    )]
    AddBond {
        /// Bond name.
        name: String,
        /// Member NICs, then optional key=value settings (as for set-bond).
        #[arg(required = true, num_args = 1.., value_name = "MEMBER|KEY=VALUE")]
        members: Vec<String>,
    },
    /// Delete a bond no vNIC uses (its NICs become unbonded).
    #[command(after_help = "Example:\n  vsctl del-bond bond1")]
    DelBond {
        /// Bond name.
        name: String,
    },
    /// Add a NIC to a bond (not while it is a vNIC's unbonded uplink, [0061]).
    #[command(after_help = "Example:\n  vsctl add-bond-member bond0 nic3")]
    AddBondMember {
        /// Bond name.
        bond: String,
        /// NIC name.
        nic: String,
    },
    /// Remove a NIC from a bond (it becomes unbonded).
    #[command(after_help = "Example:\n  vsctl del-bond-member bond0 nic3")]
    DelBondMember {
        /// Bond name.
        bond: String,
        /// NIC name.
        nic: String,
    },
    /// Change bond settings: mode, failback, failback_delay_ms, updelay_ms,
    /// downdelay_ms, active_order (comma list), notify_switches, lacp, lacp_rate,
    /// lacp_fallback, degraded, isolate_priority_max, isolated_member,
    /// rebalance_threshold_pct, rebalance_window_s. An empty value unsets an optional key.
    #[command(
        after_help = "Example:\n  vsctl set-bond bond0 mode=active-backup failback=delayed failback_delay_ms=30000\n  vsctl set-bond bond0 active_order=nic1,nic0"
    )]
    SetBond {
        /// Bond name.
        bond: String,
        /// key=value pairs.
        #[arg(required = true, value_parser = key_value, value_name = "KEY=VALUE")]
        settings: Vec<(String, String)>,
    },
    /// Fail a bond back to its preferred members now (failback=manual).
    #[command(
        name = "bond/failback",
        after_help = "Example:\n  vsctl bond/failback bond0"
    )]
    BondFailback {
        /// Bond name.
        bond: String,
    },
    /// Show bonds: mode, members with state and reason, traffic per member, and which
    /// vNICs are pinned where.
    #[command(
        name = "bond/show",
        after_help = "Example:\n  vsctl bond/show\n  vsctl --format json bond/show bond0"
    )]
    BondShow {
        /// Only this bond.
        bond: Option<String>,
    },
    /// Show LACP state of bonds.
    #[command(name = "lacp/show", after_help = "Example:\n  vsctl lacp/show bond0")]
    LacpShow {
        /// Only this bond.
        bond: Option<String>,
    },
    /// Change VM settings: shares, priority, qmp, hook (and any other [[vm]] key).
    #[command(after_help = "Example:\n  vsctl set-vm vm1 shares=4000 priority=9")]
    SetVm {
        /// VM name.
        vm: String,
        /// key=value pairs.
        #[arg(required = true, value_parser = key_value, value_name = "KEY=VALUE")]
        settings: Vec<(String, String)>,
    },
    /// Change vNIC settings: shares, priority, spoof_check, mac, and the bandwidth
    /// keys of the [[vm.vnic]] table (reservation_mbps, average_bps, peak_bps,
    /// burst_bytes, peak_period_ms) as this vswitchd supports them.
    #[command(
        after_help = "Example:\n  vsctl set-vnic vm1.0 shares=500 priority=2\n  vsctl set-vnic vm1.0 average_bps=100000000 peak_bps=200000000 burst_bytes=1000000"
    )]
    SetVnic {
        /// vNIC name.
        vnic: String,
        /// key=value pairs.
        #[arg(required = true, value_parser = key_value, value_name = "KEY=VALUE")]
        settings: Vec<(String, String)>,
    },
    /// Change [dataplane] settings. A running switch takes pmd_sleep_max_us (the
    /// workers' load-based sleep, µs, 0 = busy-poll, as Open vSwitch's
    /// pmd-sleep-max); the other keys need an edit of the file and a restart.
    #[command(
        name = "set-dataplane",
        after_help = "Example:\n  vsctl set-dataplane pmd_sleep_max_us=100\n  vsctl set-dataplane pmd_sleep_max_us=0    (busy-poll again)"
    )]
    SetDataplane {
        /// key=value pairs.
        #[arg(required = true, value_parser = key_value, value_name = "KEY=VALUE")]
        settings: Vec<(String, String)>,
    },
    /// Show each vNIC's entitled and used bandwidth and what limits it.
    #[command(
        name = "vnic/bandwidth",
        after_help = "Example:\n  vsctl vnic/bandwidth\n  vsctl vnic/bandwidth vm1.0"
    )]
    VnicBandwidth {
        /// Only this vNIC.
        vnic: Option<String>,
    },
    /// Per-port counters (NICs, bond members, vNICs) and drops by reason.
    #[command(
        after_help = "Example:\n  vsctl stats\n  vsctl stats --port nic0\n  vsctl stats --watch --interval 2    (Ctrl-C to stop)"
    )]
    Stats {
        /// Only this port.
        #[arg(long, value_name = "P")]
        port: Option<String>,
        /// Refresh like top until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes with --watch.
        #[arg(long, default_value_t = 1.0, value_name = "S", requires = "watch")]
        interval: f64,
        /// Stop after this many refreshes (for scripts and tests).
        #[arg(long, hide = true, requires = "watch")]
        count: Option<u64>,
    },
    /// Per-worker poll-loop statistics: iterations, busy %, cycles per packet.
    #[command(after_help = "Example:\n  vsctl pmd-stats-show")]
    PmdStatsShow,
    /// Start pmd-stats-show's and pmd-rxq-show's counts afresh (as ovs-appctl
    /// dpif-netdev/pmd-stats-clear); port statistics and the Prometheus counters are
    /// not touched.
    #[command(
        after_help = "Example:\n  vsctl pmd-stats-clear && sleep 10 && vsctl pmd-stats-show"
    )]
    PmdStatsClear,
    /// Which worker polls which rx queue, and each queue's share of the worker's
    /// received frames (as ovs-appctl dpif-netdev/pmd-rxq-show).
    #[command(after_help = "Example:\n  vsctl pmd-rxq-show\n  vsctl --format json pmd-rxq-show")]
    PmdRxqShow,
}

/// What to send and how to show the reply.
enum Action {
    Read {
        cmd: &'static str,
        args: Value,
        text: fn(&Value) -> String,
    },
    Change {
        cmd: &'static str,
        args: Value,
    },
}

fn opt(k: &str, v: &Option<String>) -> Value {
    match v {
        Some(x) => json!({ k: x }),
        None => json!({}),
    }
}

fn action(cmd: &Cmd) -> Action {
    use Action::{Change, Read};
    let config = |_: &Value| String::new();
    match cmd {
        Cmd::Show => Read {
            cmd: "show",
            args: json!({}),
            text: render::show,
        },
        Cmd::DumpConfig => Read {
            cmd: "dump-config",
            args: json!({}),
            text: config,
        },
        Cmd::AddNic {
            name,
            devargs,
            speed_mbps,
            mtu,
        } => Change {
            cmd: "add-nic",
            args: json!({"name": name, "devargs": devargs, "speed_mbps": speed_mbps, "mtu": mtu}),
        },
        Cmd::SetNic { nic, settings } => Change {
            cmd: "set-nic",
            args: json!({"nic": nic, "settings": settings}),
        },
        Cmd::DelNic { name } => Change {
            cmd: "del-nic",
            args: json!({ "name": name }),
        },
        Cmd::AddVm {
            name,
            priority,
            shares,
        } => Change {
            cmd: "add-vm",
            args: json!({"name": name, "priority": priority, "shares": shares}),
        },
        Cmd::DelVm { name } => Change {
            cmd: "del-vm",
            args: json!({ "name": name }),
        },
        Cmd::AddVnic {
            vm,
            mac,
            socket,
            vhost_mode,
            devargs,
            uplink,
            name,
            mtu,
        } => Change {
            cmd: "add-vnic",
            args: json!({"vm": vm, "mac": mac, "socket": socket, "vhost_mode": vhost_mode,
                         "devargs": devargs, "uplink": uplink, "name": name, "mtu": mtu}),
        },
        Cmd::DelVnic { name } => Change {
            cmd: "del-vnic",
            args: json!({ "name": name }),
        },
        Cmd::SetVnicUplink { vnic, uplink } => Change {
            cmd: "set-vnic-uplink",
            args: json!({"vnic": vnic, "uplink": uplink}),
        },
        Cmd::AddBond { name, members } => {
            let (settings, members): (Vec<&String>, Vec<&String>) =
                members.iter().partition(|m| m.contains('='));
            let settings: Vec<(String, String)> =
                settings.iter().filter_map(|s| key_value(s).ok()).collect();
            Change {
                cmd: "add-bond",
                args: json!({"name": name, "members": members, "settings": settings}),
            }
        }
        Cmd::DelBond { name } => Change {
            cmd: "del-bond",
            args: json!({ "name": name }),
        },
        Cmd::AddBondMember { bond, nic } => Change {
            cmd: "add-bond-member",
            args: json!({"bond": bond, "nic": nic}),
        },
        Cmd::DelBondMember { bond, nic } => Change {
            cmd: "del-bond-member",
            args: json!({"bond": bond, "nic": nic}),
        },
        Cmd::SetBond { bond, settings } => Change {
            cmd: "set-bond",
            args: json!({"bond": bond, "settings": settings}),
        },
        Cmd::BondFailback { bond } => Read {
            cmd: "bond/failback",
            args: json!({ "bond": bond }),
            text: |v| {
                format!(
                    "{} vNIC(s) moved back to their home members\n",
                    v.get("moved").and_then(Value::as_u64).unwrap_or(0)
                )
            },
        },
        Cmd::BondShow { bond } => Read {
            cmd: "bond/show",
            args: opt("bond", bond),
            text: render::bond_show,
        },
        Cmd::LacpShow { bond } => Read {
            cmd: "lacp/show",
            args: opt("bond", bond),
            text: render::lacp_show,
        },
        Cmd::SetVm { vm, settings } => Change {
            cmd: "set-vm",
            args: json!({"vm": vm, "settings": settings}),
        },
        Cmd::SetVnic { vnic, settings } => Change {
            cmd: "set-vnic",
            args: json!({"vnic": vnic, "settings": settings}),
        },
        Cmd::SetDataplane { settings } => Change {
            cmd: "set-dataplane",
            args: json!({ "settings": settings }),
        },
        Cmd::VnicBandwidth { vnic } => Read {
            cmd: "vnic/bandwidth",
            args: opt("vnic", vnic),
            text: render::vnic_bandwidth,
        },
        Cmd::Stats { port, .. } => Read {
            cmd: "stats",
            args: opt("port", port),
            text: render::stats,
        },
        Cmd::PmdStatsShow => Read {
            cmd: "pmd-stats-show",
            args: json!({}),
            text: render::pmd_stats,
        },
        Cmd::PmdStatsClear => Read {
            cmd: "pmd-stats-clear",
            args: json!({}),
            text: |v| {
                format!(
                    "pmd statistics cleared ({} worker(s))\n",
                    v.get("workers").and_then(Value::as_u64).unwrap_or(0)
                )
            },
        },
        Cmd::PmdRxqShow => Read {
            cmd: "pmd-rxq-show",
            args: json!({}),
            text: render::pmd_rxq,
        },
    }
}

/// Drops null-valued keys so optional flags that were not given are not sent.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, x)| !x.is_null()).collect()),
        other => other,
    }
}

fn run(cli: &Cli) -> Result<(), ClientError> {
    if !(cli.timeout.is_finite() && cli.timeout > 0.0) {
        return Err(ClientError::Remote(
            "--timeout must be a positive number of seconds".into(),
        ));
    }
    let mut client = Client::new(
        &cli.socket,
        Duration::from_secs_f64(cli.timeout.min(86_400.0)),
    );
    let mut out = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock, s: &str| {
        // A closed pipe (vsctl show | head) is not an error worth a message.
        let _ = out.write_all(s.as_bytes()).and_then(|_| out.flush());
    };
    match action(&cli.cmd) {
        Action::Change { cmd, args } => {
            let r = client.call(cmd, prune(args))?;
            if cli.format == Format::Json {
                print(&mut out, &format!("{}\n", pretty(&r)));
            }
        }
        Action::Read { cmd, args, text } => {
            let args = prune(args);
            let json = cli.format == Format::Json || cmd == "dump-config";
            if let Cmd::Stats {
                watch: true,
                interval,
                count,
                ..
            } = &cli.cmd
            {
                if !(interval.is_finite() && *interval > 0.0) {
                    return Err(ClientError::Remote(
                        "--interval must be a positive number of seconds".into(),
                    ));
                }
                let mut n = 0u64;
                loop {
                    let r = client.call(cmd, args.clone())?;
                    let body = if json {
                        format!("{}\n", pretty(&r))
                    } else {
                        text(&r)
                    };
                    // Clear screen and home the cursor, like top; Ctrl-C ends it.
                    print(&mut out, &format!("\x1b[H\x1b[2JEvery {interval}s: vsctl stats    (Ctrl-C to stop)\n\n{body}"));
                    n += 1;
                    if count.is_some_and(|c| n >= c) {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs_f64(interval.min(86_400.0)));
                }
            } else {
                let r = client.call(cmd, args)?;
                print(
                    &mut out,
                    &if json {
                        format!("{}\n", pretty(&r))
                    } else {
                        text(&r)
                    },
                );
            }
        }
    }
    Ok(())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("vsctl: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_an_example() {
        use clap::CommandFactory;
        for sc in Cli::command().get_subcommands() {
            let after = sc
                .get_after_help()
                .map(|s| s.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Example:\n  vsctl "),
                "{} has no example",
                sc.get_name()
            );
        }
    }

    #[test]
    fn key_values() {
        assert_eq!(
            key_value("mode=active-backup"),
            Ok(("mode".into(), "active-backup".into()))
        );
        assert_eq!(
            key_value("isolated_member="),
            Ok(("isolated_member".into(), "".into()))
        );
        assert!(key_value("mode").is_err());
        assert!(key_value("=x").is_err());
    }

    #[test]
    fn add_bond_splits_members_and_settings() {
        let cli = Cli::try_parse_from(["vsctl", "add-bond", "b1", "n1", "n2", "mode=balance-tcp"])
            .unwrap();
        match action(&cli.cmd) {
            Action::Change { cmd, args } => {
                assert_eq!(cmd, "add-bond");
                assert_eq!(
                    args,
                    json!({"name": "b1", "members": ["n1", "n2"], "settings": [["mode", "balance-tcp"]]})
                );
            }
            Action::Read { .. } => panic!("add-bond is a change"),
        }
    }
}
