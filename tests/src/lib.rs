//! Harness for the end-to-end tests: starts `vswitchd`, generator processes
//! (`vsperf`) and peers (`dpdk-testpmd`, QEMU) as real processes, each DPDK process
//! with its own `--file-prefix`, and cleans them up (and their tap interfaces and
//! sockets) when dropped, even when a test fails.
//!
//! Binaries are found next to the test executable's target directory
//! (`target/<profile>/vswitchd`); `scripts/test.sh` builds them first.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod fixture;
pub use fixture::*;

/// A built binary of this workspace.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --release --workspace --bins` (scripts/test.sh does)",
        p.display()
    );
    p
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this test process and call (for tap interfaces, file
/// prefixes, socket paths). Interface names must stay under 16 bytes.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{}", std::process::id() % 10000, n)
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates `/tmp/vst-<unique>`.
    pub fn new() -> Scratch {
        let p = std::env::temp_dir().join(unique("vst-"));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose stderr is collected in the background; killed on drop.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    stdout_reader: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr captured.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if std::env::var_os("VST_VERBOSE").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout_reader = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }));
        Proc {
            name: name.to_string(),
            child: Some(child),
            stderr,
            stdout_reader,
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`; panics with the log after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self.stderr().contains(needle) {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited ({st}) before printing {needle:?}:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} did not print {needle:?} within {timeout:?}:\n{}",
            self.name,
            self.stderr()
        );
    }

    /// Sends a signal by name (TERM, INT, KILL).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits for exit (up to `timeout`, then kills); returns (exit code, stdout).
    pub fn wait(mut self, timeout: Duration) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let t = Instant::now();
        let code = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st.code(),
                Ok(None) if t.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let stacks = thread_stacks(child.id());
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} did not exit within {timeout:?}:\n{}\nthreads:\n{stacks}",
                        self.name,
                        self.stderr()
                    );
                }
            }
        };
        let out = self
            .stdout_reader
            .take()
            .unwrap()
            .join()
            .unwrap_or_default();
        (code, out)
    }

    /// SIGTERM, then wait; returns (exit code, stdout).
    pub fn stop(self, timeout: Duration) -> (Option<i32>, String) {
        self.signal("TERM");
        self.wait(timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Parses the last line of `out` that is a JSON object.
pub fn last_json(out: &str) -> serde_json::Value {
    out.lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l.trim())
                .ok()
                .filter(|v| v.is_object())
        })
        .unwrap_or_else(|| panic!("no JSON object in output:\n{out}"))
}

/// `vswitchd` running a config written into `dir`.
pub fn start_vswitchd(dir: &Path, config: &str, extra: &[&str]) -> Proc {
    let path = dir.join("vswitch.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(bin("vswitchd"));
    cmd.arg("--config")
        .arg(&path)
        .arg("--json")
        .arg("--socket")
        .arg(dir.join("vswitchd.ctl"))
        .args(extra);
    let mut p = Proc::spawn("vswitchd", cmd);
    p.wait_for("switch started", Duration::from_secs(30));
    p
}

/// The counters object of port `name` in vswitchd's final JSON.
pub fn port_counters<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["ports"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .map(|p| &p["counters"])
        .unwrap_or_else(|| panic!("no port {name} in {status}"))
}

/// A drop counter by reason name (`spoofed`, `unknown_unicast`, ...).
pub fn drops(counters: &serde_json::Value, reason: &str) -> u64 {
    counters["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop reason {reason} in {counters}"))
}

/// All drops of a port's counters, every reason.
pub fn drops_total(counters: &serde_json::Value) -> u64 {
    counters["drops"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

/// `ip link set <iface> up|down`.
pub fn set_link(iface: &str, up: bool) {
    let st = Command::new("ip")
        .args(["link", "set", "dev", iface, if up { "up" } else { "down" }])
        .status()
        .expect("ip");
    assert!(st.success(), "ip link set {iface} failed");
}

/// True when `ip link show <iface>` succeeds.
pub fn iface_exists(iface: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", iface])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Waits until `f` is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Starts `vsperf run` with `args` (file prefix and lcore 0 added unless given) and `--json`.
pub fn vsperf(name: &str, args: &[String]) -> Proc {
    let mut cmd = Command::new(bin("vsperf"));
    cmd.arg("run");
    if !args.iter().any(|a| a == "--file-prefix") {
        cmd.arg("--file-prefix").arg(unique("vp"));
    }
    if !args.iter().any(|a| a == "--lcores") {
        cmd.arg("--lcores").arg("0");
    }
    cmd.args(args).arg("--json").arg("--stats-period").arg("0");
    Proc::spawn(name, cmd)
}

/// Runs vsperf to completion and returns its JSON report.
pub fn vsperf_run(name: &str, args: &[String], timeout: Duration) -> serde_json::Value {
    let p = vsperf(name, args);
    let (code, out) = p.wait_and_stderr(timeout);
    let (code, stderr) = code;
    assert_eq!(code, Some(0), "{name} failed:\n{stderr}");
    last_json(&out)
}

/// Frames a vsperf port received from `mac`.
pub fn rx_from(report: &serde_json::Value, port: usize, mac: &str) -> u64 {
    report["ports"][port]["rx_by_src_mac"][mac]
        .as_u64()
        .unwrap_or(0)
}

/// Builds a Vec<String> from string-likes.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$($a.to_string()),*] };
}

impl Proc {
    /// Waits for exit like [`Proc::wait`], also returning stderr: ((code, stderr), stdout).
    pub fn wait_and_stderr(self, timeout: Duration) -> ((Option<i32>, String), String) {
        let err = Arc::clone(&self.stderr);
        let (code, out) = self.wait(timeout);
        std::thread::sleep(Duration::from_millis(20));
        let e = err.lock().unwrap().clone();
        ((code, e), out)
    }
}

/// Runs `vsctl --socket <dir>/vswitchd.ctl ARGS...`; returns (exit code, stdout, stderr).
///
/// vsctl waits up to [`VSCTL_TIMEOUT`] for a reply. When it gets none, the thread
/// stacks of the vswitchd serving `dir` are appended to its stderr, so that a test
/// failing on a silent switch shows what the switch was doing.
pub fn vsctl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let sock = dir.join("vswitchd.ctl");
    let out = Command::new(bin("vsctl"))
        .arg("--socket")
        .arg(&sock)
        .arg("--timeout")
        .arg(VSCTL_TIMEOUT.as_secs().to_string())
        .args(args)
        .output()
        .expect("run vsctl");
    let mut err = String::from_utf8_lossy(&out.stderr).into_owned();
    if err.contains("no reply from") {
        for pid in pids_of("vswitchd", &sock.display().to_string()) {
            err.push_str(&format!(
                "\nvswitchd {pid} threads:\n{}",
                thread_stacks(pid)
            ));
        }
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

/// How long the tests' vsctl waits for a reply: well above vsctl's default of 10 s,
/// because a configuration change is answered only once the configuration file is
/// on disk, and an fsync on this shared machine's disk has been seen to take 6.5 s
/// while a build was writing.
pub const VSCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// PIDs of the processes named `comm` whose command line contains `needle`.
fn pids_of(comm: &str, needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            proc_file(format!("/proc/{pid}/comm")).trim() == comm
                && proc_file(format!("/proc/{pid}/cmdline")).contains(needle)
        })
        .collect()
}

/// A `/proc` file's text (lossy: `cmdline` separates arguments with NULs), or ""
/// when it cannot be read (the process is gone).
fn proc_file(path: impl AsRef<Path>) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Helpers for the teaming tests (link pulls, failover timing, distribution).

/// Disables IPv6 on a kernel interface, so the kernel itself puts nothing (router and
/// neighbour solicitations, MLD reports) on a tap whose traffic a test counts.
pub fn quiet_iface(iface: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1");
}

/// Runs `vsctl --format json ARGS` and parses its answer; panics when vsctl fails.
pub fn vsctl_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let (code, out, err) = vsctl(dir, &a);
    assert_eq!(code, 0, "vsctl {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("vsctl {args:?}: not JSON ({e}): {out}"))
}

/// `tx_pkts` of every named port, from one `vsctl stats` (one consistent snapshot).
pub fn ports_tx(dir: &Path, names: &[&str]) -> Vec<u64> {
    let s = vsctl_json(dir, &["stats"]);
    names
        .iter()
        .map(|n| {
            s["ports"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == *n))
                .and_then(|p| p["tx_pkts"].as_u64())
                .unwrap_or_else(|| panic!("no port {n} in {s}"))
        })
        .collect()
}

/// A port's whole counter record (rx/tx, every drop reason), from `vsctl stats`.
pub fn port_stats(dir: &Path, name: &str) -> serde_json::Value {
    vsctl_json(dir, &["stats", "--port", name])["ports"][0].clone()
}

/// `rx_pkts` of a port, from `vsctl stats`.
pub fn port_rx(dir: &Path, name: &str) -> u64 {
    let s = port_stats(dir, name);
    s["rx_pkts"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rx_pkts for {name} in {s}"))
}

/// A vsperf port's rx timeline: (end of the interval in ms since the run's start,
/// frames received in the interval).
pub fn timeline(report: &serde_json::Value, port: usize) -> Vec<(u64, u64)> {
    report["ports"][port]["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline for port {port} (run with --timeline-ms)"))
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect()
}

/// Frames a vsperf port received with `ethertype` (e.g. `"0x8035"`).
pub fn rx_ethertype(report: &serde_json::Value, port: usize, ethertype: &str) -> u64 {
    report["ports"][port]["rx_by_ethertype"][ethertype]
        .as_u64()
        .unwrap_or(0)
}

/// Seconds since midnight UTC of a wall-clock time.
pub fn time_of_day(t: std::time::SystemTime) -> f64 {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    (d.as_secs() % 86_400) as f64 + d.subsec_nanos() as f64 * 1e-9
}

/// Seconds since midnight UTC of the RFC 3339 timestamp that starts a `tracing` log
/// line (`2024-05-01T12:34:56.123456Z  INFO ...`, possibly with ANSI colour codes).
pub fn log_time_of_day(line: &str) -> Option<f64> {
    let t = line.find('T')?;
    let rest = &line[t + 1..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))?;
    let hms: Vec<&str> = rest[..end].split(':').collect();
    if hms.len() != 3 {
        return None;
    }
    let h: f64 = hms[0].parse().ok()?;
    let m: f64 = hms[1].parse().ok()?;
    let s: f64 = hms[2].parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Lines of `log` that contain every one of `needles`, ANSI colour codes removed.
pub fn log_lines(log: &str, needles: &[&str]) -> Vec<String> {
    log.lines()
        .map(strip_ansi)
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Writes a classic pcap file (microsecond timestamps, Ethernet link type) holding
/// `frames`, for `net_pcap0,rx_pcap=FILE`.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut b = Vec::with_capacity(24 + frames.iter().map(|f| 16 + f.len()).sum::<usize>());
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&0i32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        b.extend_from_slice(&(i as u32 / 1_000_000).to_le_bytes());
        b.extend_from_slice(&(i as u32 % 1_000_000).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).unwrap();
}

/// A 64-byte IPv4/UDP frame (checksums zero: nothing on the path verifies them).
pub fn udp_frame(
    src: [u8; 6],
    dst: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&50u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src_ip);
    ip[16..20].copy_from_slice(&dst_ip);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&30u16.to_be_bytes());
    f
}

/// `(rx_pkts, tx_pkts)` of every named port, from one `vsctl stats`.
pub fn ports_rx_tx(dir: &Path, names: &[&str]) -> Vec<(u64, u64)> {
    let s = vsctl_json(dir, &["stats"]);
    names
        .iter()
        .map(|n| {
            let p = s["ports"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == *n))
                .unwrap_or_else(|| panic!("no port {n} in {s}"));
            (
                p["rx_pkts"].as_u64().unwrap(),
                p["tx_pkts"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every thread's backtrace of a live process (gdb, when installed), for hang reports,
/// after what the kernel says of each thread (read first: gdb's attach stops them).
pub fn thread_stacks(pid: u32) -> String {
    let user = user_stacks(pid);
    format!("{}\n{user}", kernel_view(pid))
}

/// Each thread's state, CPU and kernel stack from `/proc` (a thread stuck in a system
/// call shows where in the kernel; seen: vsperf 30 s in `mmap`/`munmap`).
fn kernel_view(pid: u32) -> String {
    let mut out = String::new();
    let status = proc_file(format!("/proc/{pid}/status"));
    for l in status.lines().filter(|l| {
        l.starts_with("State") || l.contains("ctxt_switches") || l.starts_with("Cpus_allowed_list")
    }) {
        out.push_str(&format!("{l}\n"));
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let d = t.path();
        let stat = proc_file(d.join("stat"));
        // Fields after the command: state is the 1st, the last CPU the 37th.
        let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        // schedstat: ns on the CPU, ns waiting for it, time slices; syscall: the
        // number and arguments of the call in progress (a running thread has no
        // readable kernel stack, so these tell running from waiting).
        out.push_str(&format!(
            "task {} {} state {} cpu {} wchan {} schedstat {} syscall {}\n{}",
            t.file_name().to_string_lossy(),
            proc_file(d.join("comm")).trim(),
            f.first().unwrap_or(&"?"),
            f.get(36).unwrap_or(&"?"),
            proc_file(d.join("wchan")),
            proc_file(d.join("schedstat")).trim(),
            proc_file(d.join("syscall")).trim(),
            proc_file(d.join("stack")),
        ));
    }
    out
}

/// Every thread's user-space backtrace (gdb), with the process's SIGTERM and SIGINT
/// handlers.
fn user_stacks(pid: u32) -> String {
    Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt 12",
        ])
        // Which handlers SIGTERM and SIGINT have now (an open question: a switch that
        // caught SIGTERM without its ctrlc thread waking).
        .args([
            "-ex",
            "set $b = (char*)malloc(256)",
            "-ex",
            "call (int)sigaction(15, 0, $b)",
        ])
        .args([
            "-ex",
            "info symbol *(void**)$b",
            "-ex",
            "call (int)sigaction(2, 0, $b)",
        ])
        .args(["-ex", "info symbol *(void**)$b"])
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| {
                    l.starts_with("Thread") || l.starts_with('#') || l.contains(" in section ")
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|e| format!("(gdb unavailable: {e})"))
}

/// Frames each named vNIC got past its bandwidth gate so far (received minus every
/// drop), from `vsctl stats`; frames still in its delay ring (≤ 256) count as sent
/// (and may later be dropped, so the count can go down slightly).
pub fn vnic_sent_frames(dir: &Path, names: &[&str]) -> Vec<u64> {
    let (code, out, err) = vsctl(dir, &["--format", "json", "stats"]);
    assert_eq!(code, 0, "vsctl stats: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("stats JSON");
    names
        .iter()
        .map(|n| {
            let p = v["ports"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == *n))
                .unwrap_or_else(|| panic!("no port {n} in {out}"));
            let dropped: u64 = p["drops"]
                .as_object()
                .map(|d| d.values().filter_map(|x| x.as_u64()).sum())
                .unwrap_or(0);
            p["rx_pkts"].as_u64().unwrap_or(0).saturating_sub(dropped)
        })
        .collect()
}

/// Rates (b/s, for `frame_bytes`-byte frames) at which the named vNICs got past their
/// gates over the next `window`.
pub fn vnic_sent_bps(dir: &Path, names: &[&str], frame_bytes: u64, window: Duration) -> Vec<f64> {
    // Each sample is timed at the middle of its vsctl call (process start-up on a busy
    // host can take a noticeable part of the window).
    let t0 = Instant::now();
    let a = vnic_sent_frames(dir, names);
    let ta = t0.elapsed() / 2;
    std::thread::sleep(window);
    let t1 = Instant::now();
    let b = vnic_sent_frames(dir, names);
    let tb = t1.duration_since(t0) + t1.elapsed() / 2;
    let secs = (tb - ta).as_secs_f64();
    a.iter()
        .zip(&b)
        .map(|(x, y)| y.saturating_sub(*x) as f64 * frame_bytes as f64 * 8.0 / secs)
        .collect()
}
