//! Command line: `vsperf run ...` and `vsperf gen-pcap ...`.
//!
//! Per-port options follow their `--port`, testpmd-style: everything between one
//! `--port` and the next configures that port. A per-port option given *before* the
//! first `--port` is the default for every port. Global options (`--duration`,
//! `--json`, ...) may appear anywhere. Grouping uses clap's argument indices, so the
//! help text, value parsing and error messages are clap's own.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use policy::wire::MacAddr;

use crate::frame::{FrameSpec, Proto, Signature, TcpFlags, Vary};
use crate::rate::Rate;

/// What a port does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Generate frames (and count whatever arrives).
    Txonly,
    /// Count and free what arrives.
    Rxonly,
    /// Forward what arrives to the peer port (`--peer`).
    Io,
    /// Swap source and destination MAC and send back on the same port.
    Echo,
    /// Send timestamped, sequenced frames and measure their round trip (the far end
    /// must echo them back to this port).
    Latency,
}

impl Mode {
    /// Whether the mode generates frames.
    pub fn generates(self) -> bool {
        matches!(self, Mode::Txonly | Mode::Latency)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Txonly => "txonly",
            Mode::Rxonly => "rxonly",
            Mode::Io => "io",
            Mode::Echo => "echo",
            Mode::Latency => "latency",
        })
    }
}

/// vsperf: a testpmd-style DPDK traffic harness.
#[derive(Debug, Parser)]
#[command(name = "vsperf", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Cmd {
    /// Open DPDK ports by devargs and run one mode per port (one poll thread).
    #[command(after_long_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Write a pcap of N flows (no DPDK), for `net_pcap0,rx_pcap=FILE,infinite_rx=1`.
    #[command(after_long_help = GEN_EXAMPLES)]
    GenPcap(GenPcapArgs),
    /// Draw the `timeline` of a `vsperf run --timeline-ms N --json` report as an SVG chart (no DPDK).
    #[command(after_long_help = PLOT_EXAMPLES)]
    PlotTimeline(PlotArgs),
    /// Measure the round trip of a cache line between two CPUs (no DPDK).
    #[command(after_long_help = C2C_EXAMPLES)]
    C2c(C2cArgs),
}

const C2C_EXAMPLES: &str = "\
Examples:
  vsperf c2c --cpus 0,1 --ms 200
  vsperf c2c --json   # one JSON object: cpu_a, cpu_b, windows, round_trips, min_ns, median_ns, max_ns

Two pinned threads hand a counter back and forth for --ms milliseconds; the figures are the
mean round trip of 1-ms windows (fastest, median, slowest). Every producer/consumer ring between
the two CPUs (a vhost-user virtqueue between a VM's core and the switch's) pays this per cache
line it moves. On a VM it changes with where the host runs the two vCPUs; perf/bench.sh logs it
beside each case-2 run. Run it while nothing else busy-polls the two CPUs.";

/// `A,B`: two CPU numbers.
fn cpu_pair(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("{s:?} is not two CPU numbers A,B");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

/// `vsperf c2c` arguments.
#[derive(Debug, Args)]
pub struct C2cArgs {
    /// The two CPUs, A,B. e.g. `--cpus 0,1`
    #[arg(long, default_value = "0,1", value_parser = cpu_pair)]
    pub cpus: (usize, usize),
    /// How long to measure, in ms. e.g. `--ms 200`
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub ms: u64,
    /// Print one JSON object on stdout instead of a line on stderr. e.g. `--json`
    #[arg(long)]
    pub json: bool,
}

const PLOT_EXAMPLES: &str = "\
Examples:
  vsperf plot-timeline --report run.json --out failover.svg --port 1 --label nic0 --port 2 --label nic1 \\
      --mark 2.0='nic0 down' --mark 4.0='nic0 up' --title 'Failover under load'";

/// `vsperf plot-timeline` arguments.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The JSON report (`vsperf run ... --timeline-ms N --json` stdout). e.g. `--report run.json`
    #[arg(long)]
    pub report: PathBuf,
    /// Output SVG file. e.g. `--out docs/failover.svg`
    #[arg(long)]
    pub out: PathBuf,
    /// Port index to draw, repeatable [default: every port with a timeline]. e.g. `--port 1`
    #[arg(long)]
    pub port: Vec<usize>,
    /// Legend text of the n-th `--port`, repeatable. e.g. `--label nic0`
    #[arg(long)]
    pub label: Vec<String>,
    /// A vertical marker, SECS=TEXT, repeatable. e.g. `--mark '2.0=link down'`
    #[arg(long)]
    pub mark: Vec<String>,
    /// Chart title. e.g. `--title 'Failover under load'`
    #[arg(long, default_value = "")]
    pub title: String,
    /// Width in pixels. e.g. `--width 1000`
    #[arg(long, default_value_t = 900)]
    pub width: u32,
    /// Height in pixels. e.g. `--height 400`
    #[arg(long, default_value_t = 420)]
    pub height: u32,
}

const RUN_EXAMPLES: &str = "\
Examples:
  # Play a VM: 64-byte UDP, 16 flows, 10 kpps for 5 s against a vhost-user server socket
  vsperf run --file-prefix vm1 --lcores 1 --port net_virtio_user0,path=/tmp/vm1.sock,queues=1 \\
      --mode txonly --src-mac 02:00:00:00:00:01 --dst-mac 02:00:00:00:00:02 --flows 16 \\
      --rate 10000pps --duration 5 --wait-link 5 --json
  # Three streams at different rates in one process, into null sinks
  vsperf run --size 128 --port net_null0,no-rx=1 --mode txonly --rate 100mbps \\
      --port net_null1,no-rx=1 --mode txonly --rate 200mbps --port net_null2,no-rx=1 --mode txonly --rate 1gbps --duration 2
  # Latency through an echoing peer (the peer runs `--mode echo` on the other end)
  vsperf run --port net_virtio_user0,path=/tmp/s.sock --mode latency --rate 1000pps --count 5000 --wait-link 5 --json
  # Sink that records which source MACs arrived, sampled every 10 ms
  vsperf run --port net_vhost0,iface=/tmp/vm2.sock,queues=1 --mode rxonly --duration 10 --timeline-ms 10 --json
  # io forwarding: replay a pcap into a null sink
  vsperf run --port net_pcap0,rx_pcap=flows.pcap --mode io --peer 1 --port net_null0,no-rx=1 --mode rxonly --duration 1

The run ends at --duration, when every port with a --count has reached it, or on SIGINT/SIGTERM;
then it keeps receiving for --drain-ms and prints the final statistics (JSON on stdout with --json;
everything else goes to stderr).";

const GEN_EXAMPLES: &str = "\
Examples:
  vsperf gen-pcap --out flows.pcap --src-mac 02:00:00:00:00:01 --dst-mac 02:00:00:00:00:02 --size 64 --flows 1024
  vsperf gen-pcap --out syn.pcap --src-mac 02:00:00:00:00:66 --dst-mac 02:00:00:00:00:02 --proto tcp --tcp-flags syn --flows 65536";

/// `vsperf run` arguments as clap sees them; see [`RunArgs::into_config`].
#[derive(Debug, Args)]
pub struct RunArgs {
    /// EAL --file-prefix; must differ between concurrent DPDK processes. e.g. `--file-prefix vm1` [default: vsperf<pid>]
    #[arg(long, help_heading = "EAL")]
    pub file_prefix: Option<String>,
    /// EAL lcore list; the poll loop runs (pinned) on the first one. e.g. `--lcores 1`
    #[arg(long, default_value = "0", help_heading = "EAL")]
    pub lcores: String,
    /// EAL memory in MiB (-m). e.g. `--mem 2048`
    #[arg(long, default_value_t = 1024, help_heading = "EAL")]
    pub mem: u32,
    /// Extra EAL argument, repeatable. e.g. `--eal-arg=--log-level=pmd.net.vhost:debug`
    #[arg(long = "eal-arg", allow_hyphen_values = true, help_heading = "EAL")]
    pub eal_args: Vec<String>,
    /// Pass only -l, --file-prefix and the --eal-arg values to the EAL (no --no-huge, -m,
    /// --no-pci, --no-telemetry, --iova-mode=va defaults), e.g. for hugepages and real NICs. e.g. `--eal-raw`
    #[arg(long, help_heading = "EAL")]
    pub eal_raw: bool,

    /// Stop after this many seconds of traffic (float). e.g. `--duration 2.5`
    #[arg(long, help_heading = "Run")]
    pub duration: Option<f64>,
    /// Wait up to SECS for every port's link to come up before sending (vhost/virtio
    /// connection); fail if it does not. e.g. `--wait-link 5`
    #[arg(long, value_name = "SECS", default_value_t = 0.0, help_heading = "Run")]
    pub wait_link: f64,
    /// Print per-port statistics to stderr every SECS (0 = only at the end). e.g. `--stats-period 0.5`
    #[arg(long, value_name = "SECS", default_value_t = 1.0, help_heading = "Run")]
    pub stats_period: f64,
    /// Print one JSON object with the final statistics on stdout. e.g. `--json`
    #[arg(long, help_heading = "Run")]
    pub json: bool,
    /// Record each port's rx packets per N ms into the JSON `timeline` (0 = off). e.g. `--timeline-ms 10`
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Run")]
    pub timeline_ms: u64,
    /// After traffic stops, keep receiving this long for frames in flight. e.g. `--drain-ms 500`
    #[arg(long, value_name = "MS", default_value_t = 200, help_heading = "Run")]
    pub drain_ms: u64,
    /// Sleep this long after a pass over the ports that moved no frame (0 = busy-poll,
    /// as testpmd does). For low-rate VMs sharing a core: a busy poller can keep other
    /// threads on its core (and kernel work that waits for them) off the CPU for
    /// seconds on some hosts. Adds up to this much latency. e.g. `--idle-sleep-us 50`
    #[arg(long, value_name = "US", default_value_t = 0, help_heading = "Run")]
    pub idle_sleep_us: u64,
    /// Frames per generated tx burst (1..=64); rx bursts take up to 64. e.g. `--burst 64`
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "Run")]
    pub burst: u16,
    /// Descriptors per rx/tx queue. e.g. `--nb-desc 512`
    #[arg(long, default_value_t = 1024, help_heading = "Run")]
    pub nb_desc: u16,
    /// Mbufs in the pool [default: 4096 + 4 x nb-desc per port]. e.g. `--mbufs 16383`
    #[arg(long, help_heading = "Run")]
    pub mbufs: Option<u32>,
    /// Quiet: no periodic or final human-readable statistics. e.g. `-q`
    #[arg(short, long, help_heading = "Run")]
    pub quiet: bool,

    /// Open a port by devargs; the per-port options after it apply to it. Repeatable.
    /// e.g. `--port net_virtio_user0,path=/tmp/vm.sock,queues=1`, `--port net_vhost0,iface=/tmp/s.sock,client=1`,
    /// `--port net_pcap0,rx_pcap=in.pcap,infinite_rx=1`, `--port net_tap0,iface=vs0`, `--port net_null0,no-rx=1`, `--port net_ring0`
    #[arg(
        long = "port",
        value_name = "DEVARGS",
        required = true,
        help_heading = "Per port (after its --port)"
    )]
    pub ports: Vec<String>,
    /// Port mode [default: rxonly]. e.g. `--mode txonly`
    #[arg(long, value_enum, help_heading = "Per port (after its --port)")]
    pub mode: Vec<Mode>,
    /// Source MAC of generated frames [default: the port's MAC]. e.g. `--src-mac 02:00:00:00:00:01`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub src_mac: Vec<MacAddr>,
    /// Destination MAC of generated frames [default: ff:ff:ff:ff:ff:ff]. e.g. `--dst-mac 02:00:00:00:00:02`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub dst_mac: Vec<MacAddr>,
    /// Frame size in bytes without FCS (60 = minimum Ethernet) [default: 64]. e.g. `--size 1518`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub size: Vec<usize>,
    /// Number of flows (distinct 5-tuples, see --vary) [default: 1]. e.g. `--flows 1024`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub flows: Vec<u32>,
    /// Which fields vary per flow [default: all]. e.g. `--vary src-ip,sport`, `--vary none`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub vary: Vec<Vary>,
    /// L4 protocol [default: udp]. e.g. `--proto tcp`
    #[arg(long, value_enum, help_heading = "Per port (after its --port)")]
    pub proto: Vec<Proto>,
    /// TCP flags for --proto tcp [default: syn]. e.g. `--tcp-flags syn`, `--tcp-flags syn,ack`, `--tcp-flags 0x04`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub tcp_flags: Vec<TcpFlags>,
    /// 802.1Q VLAN id to tag generated frames with [default: untagged]. e.g. `--vlan 100`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub vlan: Vec<u16>,
    /// IPv4 source of flow 0 [default: 10.0.0.1]. e.g. `--src-ip 192.168.1.10`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub src_ip: Vec<Ipv4Addr>,
    /// IPv4 destination of flow 0 [default: 10.1.0.1]. e.g. `--dst-ip 192.168.2.10`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub dst_ip: Vec<Ipv4Addr>,
    /// L4 source port of flow 0 [default: 1024]. e.g. `--sport 5000`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub sport: Vec<u16>,
    /// L4 destination port of flow 0 [default: 1024]. e.g. `--dport 80`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub dport: Vec<u16>,
    /// Payload signature, hex bytes repeated over the payload [default: zeros]. e.g. `--signature c0ffee`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub signature: Vec<Signature>,
    /// Transmit rate: max, Npps/kpps/mpps, or Nbps/kbps/mbps/gbps of frame bits [default: max].
    /// e.g. `--rate 10000pps`, `--rate 200mbps`, `--rate 1gbps`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub rate: Vec<Rate>,
    /// txonly/latency: frames to generate, then stop sending. rxonly/io/echo: the port is
    /// done once it has received N (it keeps counting). e.g. `--count 10000`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub count: Vec<u64>,
    /// io mode: index (0-based, command-line order) of the port to forward to
    /// [default: the neighbour, 0<->1, 2<->3]. e.g. `--peer 1`
    #[arg(long, help_heading = "Per port (after its --port)")]
    pub peer: Vec<usize>,
}

/// `vsperf gen-pcap` arguments.
#[derive(Debug, Args)]
pub struct GenPcapArgs {
    /// Output file. e.g. `--out /tmp/flows.pcap`
    #[arg(long)]
    pub out: PathBuf,
    /// Source MAC. e.g. `--src-mac 02:00:00:00:00:01`
    #[arg(long)]
    pub src_mac: MacAddr,
    /// Destination MAC. e.g. `--dst-mac 02:00:00:00:00:02`
    #[arg(long)]
    pub dst_mac: MacAddr,
    /// Frame size without FCS. e.g. `--size 64`
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Number of flows. e.g. `--flows 1024`
    #[arg(long, default_value_t = 1)]
    pub flows: u32,
    /// Records to write, cycling over the flows [default: one per flow]. e.g. `--records 4096`
    #[arg(long)]
    pub records: Option<usize>,
    /// Which fields vary per flow. e.g. `--vary src-ip`
    #[arg(long, default_value = "all")]
    pub vary: Vary,
    /// L4 protocol. e.g. `--proto tcp`
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    pub proto: Proto,
    /// TCP flags. e.g. `--tcp-flags syn`
    #[arg(long, default_value = "syn")]
    pub tcp_flags: TcpFlags,
    /// 802.1Q VLAN id. e.g. `--vlan 100`
    #[arg(long)]
    pub vlan: Option<u16>,
    /// IPv4 source of flow 0. e.g. `--src-ip 10.0.0.1`
    #[arg(long, default_value = "10.0.0.1")]
    pub src_ip: Ipv4Addr,
    /// IPv4 destination of flow 0. e.g. `--dst-ip 10.1.0.1`
    #[arg(long, default_value = "10.1.0.1")]
    pub dst_ip: Ipv4Addr,
    /// L4 source port of flow 0. e.g. `--sport 1024`
    #[arg(long, default_value_t = 1024)]
    pub sport: u16,
    /// L4 destination port of flow 0. e.g. `--dport 80`
    #[arg(long, default_value_t = 1024)]
    pub dport: u16,
    /// Payload signature (hex). e.g. `--signature c0ffee`
    #[arg(long)]
    pub signature: Option<Signature>,
}

impl GenPcapArgs {
    /// The frame specification.
    pub fn spec(&self) -> FrameSpec {
        FrameSpec {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            vlan: self.vlan,
            size: self.size,
            flows: self.flows,
            proto: self.proto,
            tcp_flags: self.tcp_flags,
            src_ip: self.src_ip,
            dst_ip: self.dst_ip,
            sport: self.sport,
            dport: self.dport,
            vary: self.vary,
            signature: self.signature.clone().map(|s| s.0).unwrap_or_default(),
            latency: false,
        }
    }
}

/// One port's validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PortConfig {
    /// Devargs.
    pub devargs: String,
    /// Mode.
    pub mode: Mode,
    /// Frames to generate (the source MAC is filled from the port when `src_mac` is None).
    pub frame: FrameSpec,
    /// Source MAC given on the command line.
    pub src_mac: Option<MacAddr>,
    /// Rate.
    pub rate: Rate,
    /// `--count`.
    pub count: Option<u64>,
    /// io peer index.
    pub peer: Option<usize>,
}

/// A validated `run` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// EAL arguments (without argv[0]).
    pub eal_args: Vec<String>,
    /// The EAL `--file-prefix` (its runtime directory is removed at exit).
    pub file_prefix: String,
    /// `--duration`.
    pub duration: Option<f64>,
    /// `--wait-link` seconds.
    pub wait_link: f64,
    /// `--stats-period` seconds.
    pub stats_period: f64,
    /// `--json`.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// `--timeline-ms`.
    pub timeline_ms: u64,
    /// `--drain-ms`.
    pub drain_ms: u64,
    /// `--idle-sleep-us`.
    pub idle_sleep_us: u64,
    /// `--burst`.
    pub burst: usize,
    /// `--nb-desc`.
    pub nb_desc: u16,
    /// Pool size.
    pub mbufs: u32,
    /// Ports in command-line order.
    pub ports: Vec<PortConfig>,
}

/// Assigns the values of one per-port option to ports by position.
struct Grouper<'a> {
    m: &'a ArgMatches,
    port_idx: Vec<usize>,
}

impl Grouper<'_> {
    /// `(default, per_port)` for option `id` whose parsed values are `vals`.
    fn group<T: Clone>(&self, id: &str, flag: &str, vals: &[T]) -> Result<Vec<Option<T>>, String> {
        let idx: Vec<usize> = self
            .m
            .indices_of(id)
            .map(|i| i.collect())
            .unwrap_or_default();
        let mut default = None;
        let mut per = vec![None; self.port_idx.len()];
        for (v, at) in vals.iter().zip(idx) {
            let owner = self.port_idx.iter().take_while(|&&p| p < at).count();
            if owner == 0 {
                if default.is_some() {
                    return Err(format!("--{flag} given twice before the first --port"));
                }
                default = Some(v.clone());
            } else {
                if per[owner - 1].is_some() {
                    return Err(format!("--{flag} given twice for port {}", owner - 1));
                }
                per[owner - 1] = Some(v.clone());
            }
        }
        Ok(per
            .into_iter()
            .map(|p| p.or_else(|| default.clone()))
            .collect())
    }
}

impl RunArgs {
    /// Groups the per-port options by `--port` and validates everything. `m` are the
    /// `run` subcommand's matches (for argument positions).
    pub fn into_config(self, m: &ArgMatches) -> Result<RunConfig, String> {
        let port_idx: Vec<usize> = m
            .indices_of("ports")
            .map(|i| i.collect())
            .unwrap_or_default();
        let g = Grouper { m, port_idx };
        let n = self.ports.len();
        let mode = g.group("mode", "mode", &self.mode)?;
        let src_mac = g.group("src_mac", "src-mac", &self.src_mac)?;
        let dst_mac = g.group("dst_mac", "dst-mac", &self.dst_mac)?;
        let size = g.group("size", "size", &self.size)?;
        let flows = g.group("flows", "flows", &self.flows)?;
        let vary = g.group("vary", "vary", &self.vary)?;
        let proto = g.group("proto", "proto", &self.proto)?;
        let tcp_flags = g.group("tcp_flags", "tcp-flags", &self.tcp_flags)?;
        let vlan = g.group("vlan", "vlan", &self.vlan)?;
        let src_ip = g.group("src_ip", "src-ip", &self.src_ip)?;
        let dst_ip = g.group("dst_ip", "dst-ip", &self.dst_ip)?;
        let sport = g.group("sport", "sport", &self.sport)?;
        let dport = g.group("dport", "dport", &self.dport)?;
        let signature = g.group("signature", "signature", &self.signature)?;
        let rate = g.group("rate", "rate", &self.rate)?;
        let count = g.group("count", "count", &self.count)?;
        let peer = g.group("peer", "peer", &self.peer)?;

        let mut ports = Vec::with_capacity(n);
        for i in 0..n {
            let mode = mode[i].unwrap_or(Mode::Rxonly);
            let d = FrameSpec::default();
            let frame = FrameSpec {
                src_mac: src_mac[i].unwrap_or(d.src_mac),
                dst_mac: dst_mac[i].unwrap_or(MacAddr([0xff; 6])),
                vlan: vlan[i],
                size: size[i].unwrap_or(64),
                flows: flows[i].unwrap_or(1),
                proto: proto[i].unwrap_or(Proto::Udp),
                tcp_flags: tcp_flags[i].unwrap_or(TcpFlags(0x02)),
                src_ip: src_ip[i].unwrap_or(d.src_ip),
                dst_ip: dst_ip[i].unwrap_or(d.dst_ip),
                sport: sport[i].unwrap_or(d.sport),
                dport: dport[i].unwrap_or(d.dport),
                vary: vary[i].unwrap_or_default(),
                signature: signature[i].clone().map(|s| s.0).unwrap_or_default(),
                latency: mode == Mode::Latency,
            };
            if mode.generates() {
                crate::frame::Templates::build(&frame)
                    .map_err(|e| format!("port {i} ({}): {e}", self.ports[i]))?;
            }
            let peer = match mode {
                Mode::Io => {
                    let p = peer[i].unwrap_or(i ^ 1);
                    if p >= n {
                        return Err(format!(
                            "port {i} ({}) is in io mode but its peer port {p} does not exist; give --peer INDEX or a second --port",
                            self.ports[i]
                        ));
                    }
                    Some(p)
                }
                _ => None,
            };
            if count[i] == Some(0) {
                return Err(format!(
                    "--count for port {i} ({}) must be at least 1",
                    self.ports[i]
                ));
            }
            if rate[i].is_some() && !mode.generates() {
                return Err(format!(
                    "--rate applies to port {i} ({}), which is in {mode} mode and does not generate",
                    self.ports[i]
                ));
            }
            ports.push(PortConfig {
                devargs: self.ports[i].clone(),
                mode,
                frame,
                src_mac: src_mac[i],
                rate: rate[i].unwrap_or(Rate::Max),
                count: count[i],
                peer,
            });
        }
        if let Some(d) = self.duration {
            if !(d.is_finite() && d > 0.0) {
                return Err(format!(
                    "--duration must be a positive number of seconds, got {d}"
                ));
            }
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !non_negative(self.stats_period) || !non_negative(self.wait_link) {
            return Err("--stats-period and --wait-link must be non-negative seconds".into());
        }
        let prefix = self
            .file_prefix
            .unwrap_or_else(|| format!("vsperf{}", std::process::id()));
        let mut eal = vec![
            "-l".to_string(),
            self.lcores.clone(),
            format!("--file-prefix={prefix}"),
        ];
        if !self.eal_raw {
            eal.extend(
                [
                    "--no-huge",
                    "-m",
                    &self.mem.to_string(),
                    "--no-pci",
                    "--no-telemetry",
                    "--iova-mode=va",
                    "--log-level=lib.eal:error",
                    "--log-level=lib.vhost.config:error",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        eal.extend(self.eal_args);
        let mbufs = self
            .mbufs
            .unwrap_or(4096 + 4 * self.nb_desc as u32 * n as u32);
        Ok(RunConfig {
            eal_args: eal,
            file_prefix: prefix,
            duration: self.duration,
            wait_link: self.wait_link,
            stats_period: self.stats_period,
            json: self.json,
            quiet: self.quiet,
            timeline_ms: self.timeline_ms,
            drain_ms: self.drain_ms,
            idle_sleep_us: self.idle_sleep_us,
            burst: self.burst as usize,
            nb_desc: self.nb_desc,
            mbufs,
            ports,
        })
    }
}

/// What `main` should do.
#[derive(Debug)]
pub enum Parsed {
    /// Run traffic.
    Run(RunConfig),
    /// Write a pcap.
    GenPcap(GenPcapArgs),
    /// Draw a timeline.
    PlotTimeline(PlotArgs),
    /// Measure a cache line's round trip between two CPUs.
    C2c(C2cArgs),
}

/// Parses a full argv (argv[0] first). Help and clap usage errors are returned as
/// `clap::Error` (print with `.exit()`); semantic errors as strings.
pub fn parse<I, T>(args: I) -> Result<Result<Parsed, String>, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let m = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&m)?;
    Ok(match cli.cmd {
        Cmd::Run(r) => {
            let sub = m.subcommand_matches("run").expect("run matched");
            r.into_config(sub).map(Parsed::Run)
        }
        Cmd::GenPcap(g) => Ok(Parsed::GenPcap(g)),
        Cmd::PlotTimeline(a) => Ok(Parsed::PlotTimeline(a)),
        Cmd::C2c(a) => Ok(Parsed::C2c(a)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &str) -> Result<RunConfig, String> {
        let argv = std::iter::once("vsperf").chain(args.split_whitespace());
        match parse(argv) {
            Ok(Ok(Parsed::Run(c))) => Ok(c),
            Ok(Ok(_)) => panic!("not run"),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn per_port_options_follow_their_port_and_defaults_come_first() {
        let c = run(
            "run --idle-sleep-us 50 --size 128 --count 7 --port a --mode txonly --rate 1000pps --dst-mac 02:00:00:00:00:02 \
                     --port b --mode rxonly --duration 2 --port c --mode txonly --size 256 --rate 1gbps --json",
        )
        .unwrap();
        assert_eq!(c.ports.len(), 3);
        assert_eq!(c.ports[0].mode, Mode::Txonly);
        assert_eq!(c.ports[0].rate, Rate::Pps(1000.0));
        assert_eq!(c.ports[0].frame.size, 128);
        assert_eq!(c.ports[0].frame.dst_mac, MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(c.ports[1].mode, Mode::Rxonly);
        assert_eq!(c.ports[1].count, Some(7));
        assert_eq!(c.ports[2].frame.size, 256);
        assert_eq!(c.ports[2].frame.dst_mac, MacAddr([0xff; 6]));
        assert_eq!(c.ports[2].rate, Rate::Bps(1e9));
        assert_eq!(c.duration, Some(2.0));
        assert!(c.json);
        assert_eq!(c.idle_sleep_us, 50);
        assert!(c.eal_args.iter().any(|a| a == "--no-huge"));
    }

    #[test]
    fn semantic_errors_are_reported() {
        assert!(run("run --port a --mode txonly --size 10")
            .unwrap_err()
            .contains("below the minimum"));
        assert!(run("run --port a --mode io").unwrap_err().contains("peer"));
        assert!(run("run --port a --mode rxonly --rate 10pps")
            .unwrap_err()
            .contains("does not generate"));
        assert!(run("run --port a --mode txonly --size 64 --size 65")
            .unwrap_err()
            .contains("twice"));
        assert!(run("run --port a --mode latency --proto tcp")
            .unwrap_err()
            .contains("udp"));
        assert!(run("run --port a --duration -1").is_err());
        assert!(run("run --mode txonly").is_err(), "a run without --port");
        assert!(run("run --port a --rate fast").is_err());
        assert!(run("run --port a --mode txonly --count 0")
            .unwrap_err()
            .contains("at least 1"));
    }

    #[test]
    fn c2c_takes_two_cpus() {
        let c2c = |args: &str| match Cli::try_parse_from(args.split_whitespace()).map(|c| c.cmd) {
            Ok(Cmd::C2c(a)) => Ok(a.cpus),
            Ok(_) => panic!("not c2c"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(c2c("vsperf c2c"), Ok((0, 1)));
        assert_eq!(c2c("vsperf c2c --cpus 1,0"), Ok((1, 0)));
        assert!(c2c("vsperf c2c --cpus 1")
            .unwrap_err()
            .contains("two CPU numbers"));
        assert!(c2c("vsperf c2c --cpus a,1").is_err());
        assert!(c2c("vsperf c2c --ms 0").is_err());
    }

    #[test]
    fn io_peers_default_to_neighbours() {
        let c = run("run --port a --mode io --port b --mode io").unwrap();
        assert_eq!(c.ports[0].peer, Some(1));
        assert_eq!(c.ports[1].peer, Some(0));
        assert_eq!(c.idle_sleep_us, 0, "busy-poll unless asked");
    }
}
