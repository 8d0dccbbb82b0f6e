//! How VM actions reach a VM: a QEMU QMP client and a hook-command runner.
//!
//! The control thread executes the `policy::vmaction::PlannedAction`s it drains
//! from the supervisor through this module, then reports the outcome back
//! (`VmSupervisor::action_result`). Two mechanisms, usable together per VM:
//!
//! - **QMP** ([`Qmp`]): a UNIX socket to QEMU's monitor (`-qmp unix:PATH,server=on,wait=off`).
//!   [`Qmp::connect`] reads the greeting and negotiates capabilities; `stop`
//!   suspends, `cont` resumes, `query-status` checks. [`qmp_suspend`] and
//!   [`qmp_resume`] are idempotent wrappers that check the state first and verify it after.
//! - **Hook** ([`run_hook`]): any command (libvirt `virsh suspend`, an orchestrator's
//!   migration request, a mailer), run with `sh -c`, receiving the VM name, action and
//!   reason both as environment variables (`VSWITCH_VM`, `VSWITCH_ACTION`,
//!   `VSWITCH_REASON`) and as three appended, safely quoted arguments.
//!
//! # Invariants
//!
//! - Nothing blocks without bound: every QMP read and write has a deadline (the
//!   `timeout` given to `connect`, per operation), responses are read line by line
//!   with a size cap, async `{"event": ...}` messages are skipped, and a hook is
//!   killed (its whole process group) when its timeout expires. A socket that is
//!   gone, silent or answering garbage yields a [`VmctlError`] quickly.
//! - After any error other than [`VmctlError::Command`], a [`Qmp`] connection may be
//!   out of step: drop it and connect again.
//! - Only `std` and `serde_json`; no `unsafe`.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Longest QMP message accepted (one line).
pub const MAX_QMP_LINE: usize = 1 << 20;

/// Why a VM action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum VmctlError {
    /// The QMP socket could not be connected to (gone, refused, permission).
    #[error("cannot connect to QMP socket {path}: {source}")]
    Connect {
        /// Socket path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading or writing the QMP socket failed.
    #[error("QMP I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The QMP peer did not answer in time.
    #[error("QMP peer did not answer within {0:?}")]
    Timeout(Duration),
    /// The QMP peer closed the connection.
    #[error("QMP peer closed the connection")]
    Closed,
    /// The QMP peer sent something that is not QMP.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// QEMU refused the command.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command sent.
        command: String,
        /// QMP error class.
        class: String,
        /// QMP error description.
        desc: String,
    },
    /// The VM did not reach the expected state after the command.
    #[error("VM status is {actual:?}, expected {expected:?}")]
    UnexpectedStatus {
        /// Expected `query-status` status.
        expected: String,
        /// Reported status.
        actual: String,
    },
    /// The hook command could not be started.
    #[error("cannot run hook {cmd:?}: {source}")]
    Spawn {
        /// The hook command line.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The hook command exited unsuccessfully.
    #[error("hook {cmd:?} failed: {status}")]
    HookFailed {
        /// The hook command line.
        cmd: String,
        /// Its exit status.
        status: String,
    },
    /// The hook command was still running at its timeout and was killed.
    #[error("hook {cmd:?} killed after {timeout:?}")]
    HookTimeout {
        /// The hook command line.
        cmd: String,
        /// The timeout.
        timeout: Duration,
    },
}

/// A connected, capability-negotiated QMP session.
pub struct Qmp {
    stream: UnixStream,
    buf: Vec<u8>,
    timeout: Duration,
    next_id: u64,
}

impl Qmp {
    /// Connects to the QMP socket at `path`, reads the greeting and sends
    /// `qmp_capabilities`. Each operation (this one included) must finish within `timeout`.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Qmp, VmctlError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| VmctlError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let mut qmp = Qmp {
            stream,
            buf: Vec::new(),
            timeout,
            next_id: 1,
        };
        let deadline = Instant::now() + timeout;
        let greeting = qmp.read_message(deadline)?;
        if greeting.get("QMP").is_none() {
            return Err(VmctlError::Protocol(format!(
                "expected a QMP greeting, got {greeting}"
            )));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Sends `command` (with optional `arguments`) and returns its `return` value.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, VmctlError> {
        let deadline = Instant::now() + self.timeout;
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push_str("\r\n");
        self.write_all(line.as_bytes(), deadline)?;
        loop {
            let m = self.read_message(deadline)?;
            if m.get("event").is_some() {
                continue;
            }
            // Responses to earlier, abandoned commands carry another id: skip them.
            if m.get("id").is_some_and(|v| v != &json!(id)) {
                continue;
            }
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                return Err(VmctlError::Command {
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(VmctlError::Protocol(format!("unexpected message {m}")));
        }
    }

    /// Pauses the VM (`stop`).
    pub fn stop(&mut self) -> Result<(), VmctlError> {
        self.execute("stop", None).map(drop)
    }

    /// Resumes the VM (`cont`).
    pub fn cont(&mut self) -> Result<(), VmctlError> {
        self.execute("cont", None).map(drop)
    }

    /// The VM's run state: `"running"`, `"paused"`, `"prelaunch"`, `"shutdown"`, ...
    pub fn query_status(&mut self) -> Result<String, VmctlError> {
        let r = self.execute("query-status", None)?;
        r.get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| VmctlError::Protocol(format!("query-status returned {r}")))
    }

    fn write_all(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), VmctlError> {
        let remaining = remaining(deadline, self.timeout)?;
        self.stream.set_write_timeout(Some(remaining))?;
        self.stream
            .write_all(bytes)
            .map_err(|e| io_or_timeout(e, self.timeout))
    }

    /// Reads one JSON object (one line), waiting at most until `deadline`.
    fn read_message(&mut self, deadline: Instant) -> Result<Value, VmctlError> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_slice(text).map_err(|e| {
                    VmctlError::Protocol(format!(
                        "not JSON ({e}): {:?}",
                        String::from_utf8_lossy(&text[..text.len().min(80)])
                    ))
                })?;
                if !v.is_object() {
                    return Err(VmctlError::Protocol(format!("not a JSON object: {v}")));
                }
                return Ok(v);
            }
            if self.buf.len() > MAX_QMP_LINE {
                return Err(VmctlError::Protocol("message longer than 1 MiB".into()));
            }
            let remaining = remaining(deadline, self.timeout)?;
            self.stream.set_read_timeout(Some(remaining))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(VmctlError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_or_timeout(e, self.timeout)),
            }
        }
    }
}

fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration, VmctlError> {
    let r = deadline.saturating_duration_since(Instant::now());
    if r.is_zero() {
        Err(VmctlError::Timeout(timeout))
    } else {
        Ok(r)
    }
}

fn io_or_timeout(e: std::io::Error, timeout: Duration) -> VmctlError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => VmctlError::Timeout(timeout),
        _ => VmctlError::Io(e),
    }
}

/// Suspends the VM behind the QMP socket `path`, idempotently: does nothing when it
/// is already paused, and verifies it is paused afterwards.
pub fn qmp_suspend(path: impl AsRef<Path>, timeout: Duration) -> Result<(), VmctlError> {
    let mut q = Qmp::connect(path, timeout)?;
    if q.query_status()? != "paused" {
        q.stop()?;
    }
    expect_status(&mut q, "paused")
}

/// Resumes the VM behind the QMP socket `path`, idempotently: does nothing when it
/// is already running, and verifies it is running afterwards.
pub fn qmp_resume(path: impl AsRef<Path>, timeout: Duration) -> Result<(), VmctlError> {
    let mut q = Qmp::connect(path, timeout)?;
    if q.query_status()? != "running" {
        q.cont()?;
    }
    expect_status(&mut q, "running")
}

fn expect_status(q: &mut Qmp, expected: &str) -> Result<(), VmctlError> {
    let actual = q.query_status()?;
    if actual == expected {
        Ok(())
    } else {
        Err(VmctlError::UnexpectedStatus {
            expected: expected.into(),
            actual,
        })
    }
}

/// Runs hook command line `cmd` with `sh -c` for `action` on `vm`.
///
/// The VM name, action and reason are passed as `VSWITCH_VM`, `VSWITCH_ACTION`,
/// `VSWITCH_REASON` and appended to `cmd` as three quoted arguments (`"$@"`), so
/// `/usr/local/bin/vm-hook` receives them as `$1 $2 $3`. To ignore the arguments,
/// end the command with a comment: `virsh suspend "$VSWITCH_VM" #`. stdin and stdout
/// are null, stderr goes to the switch's stderr. The command runs in its own process
/// group, which is killed when `timeout` expires.
pub fn run_hook(
    cmd: &str,
    vm: &str,
    action: &str,
    reason: &str,
    timeout: Duration,
) -> Result<(), VmctlError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} \"$@\""))
        .arg("vswitch-hook")
        .args([vm, action, reason])
        .env("VSWITCH_VM", vm)
        .env("VSWITCH_ACTION", action)
        .env("VSWITCH_REASON", reason)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| VmctlError::Spawn {
            cmd: cmd.to_string(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(VmctlError::HookFailed {
                    cmd: cmd.to_string(),
                    status: status.to_string(),
                })
            }
            Ok(None) if Instant::now() >= deadline => {
                // Kill the whole process group (the hook's children too), then reap.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err(VmctlError::HookTimeout {
                    cmd: cmd.to_string(),
                    timeout,
                });
            }
            Ok(None) => crate::nap::nap(Duration::from_millis(5)),
            Err(source) => {
                return Err(VmctlError::Spawn {
                    cmd: cmd.to_string(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::process::Child;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn scratch_dir() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "vmctl-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    struct Qemu(Child);
    impl Drop for Qemu {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn qemu_available() -> bool {
        let found = Command::new("qemu-system-x86_64")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!("!!!!!!!! SKIPPED: qemu-system-x86_64 is not on PATH; the QMP test did not run !!!!!!!!");
        }
        found
    }

    #[test]
    fn qmp_stop_cont_query_status_against_real_qemu() {
        if !qemu_available() {
            return;
        }
        let dir = scratch_dir();
        let sock = dir.join("vm.qmp");
        let _qemu = Qemu(
            Command::new("qemu-system-x86_64")
                .args([
                    "-machine",
                    "none",
                    "-nodefaults",
                    "-nographic",
                    "-display",
                    "none",
                    "-monitor",
                    "none",
                    "-serial",
                    "none",
                ])
                .arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", sock.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("start qemu"),
        );
        let t0 = Instant::now();
        let mut q = loop {
            match Qmp::connect(&sock, Duration::from_secs(5)) {
                Ok(q) => break q,
                Err(e) if t0.elapsed() < Duration::from_secs(10) => {
                    let _ = e;
                    crate::nap::nap(Duration::from_millis(50));
                }
                Err(e) => panic!("QEMU's QMP socket never came up: {e}"),
            }
        };
        assert_eq!(q.query_status().unwrap(), "running");
        q.stop().unwrap();
        assert_eq!(q.query_status().unwrap(), "paused");
        q.cont().unwrap();
        assert_eq!(q.query_status().unwrap(), "running");
        // A refused command is a Command error and the session stays usable.
        match q.execute("no-such-command", None) {
            Err(VmctlError::Command { class, .. }) => assert_eq!(class, "CommandNotFound"),
            other => panic!("expected a command error, got {other:?}"),
        }
        assert_eq!(q.query_status().unwrap(), "running");
        drop(q);
        // Idempotent wrappers, each on a fresh connection.
        let t = Duration::from_secs(5);
        qmp_suspend(&sock, t).unwrap();
        qmp_suspend(&sock, t).unwrap();
        assert_eq!(
            Qmp::connect(&sock, t).unwrap().query_status().unwrap(),
            "paused"
        );
        qmp_resume(&sock, t).unwrap();
        qmp_resume(&sock, t).unwrap();
        assert_eq!(
            Qmp::connect(&sock, t).unwrap().query_status().unwrap(),
            "running"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_socket_fails_fast() {
        let t0 = Instant::now();
        let r = Qmp::connect("/nonexistent/vmctl/vm.qmp", Duration::from_secs(5));
        assert!(
            matches!(r, Err(VmctlError::Connect { .. })),
            "{:?}",
            r.err()
        );
        assert!(t0.elapsed() < Duration::from_millis(500));
        let r = qmp_suspend("/nonexistent/vmctl/vm.qmp", Duration::from_secs(5));
        assert!(matches!(r, Err(VmctlError::Connect { .. })));
    }

    /// A fake QMP peer: serves one connection with `serve`, in a thread.
    fn fake_server(
        serve: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (PathBuf, std::thread::JoinHandle<()>) {
        let dir = scratch_dir();
        let sock = dir.join("fake.qmp");
        let listener = UnixListener::bind(&sock).unwrap();
        let h = std::thread::spawn(move || {
            if let Ok((s, _)) = listener.accept() {
                serve(s);
            }
        });
        (sock, h)
    }

    const GREETING: &[u8] = b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";

    fn connect_err(sock: &Path, timeout: Duration) -> (VmctlError, Duration) {
        let t0 = Instant::now();
        let e = Qmp::connect(sock, timeout)
            .err()
            .expect("connect should fail");
        (e, t0.elapsed())
    }

    #[test]
    fn garbage_greeting_is_a_protocol_error() {
        let (sock, h) = fake_server(|mut s| {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
            std::thread::sleep(Duration::from_millis(500));
        });
        let (e, took) = connect_err(&sock, Duration::from_secs(5));
        assert!(matches!(e, VmctlError::Protocol(_)), "{e:?}");
        assert!(took < Duration::from_millis(400));
        h.join().unwrap();
    }

    #[test]
    fn silent_peer_times_out() {
        let (sock, h) = fake_server(|s| {
            std::thread::sleep(Duration::from_millis(1500));
            drop(s);
        });
        let (e, took) = connect_err(&sock, Duration::from_millis(300));
        assert!(matches!(e, VmctlError::Timeout(_)), "{e:?}");
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(1000),
            "{took:?}"
        );
        h.join().unwrap();
    }

    #[test]
    fn endless_events_or_partial_line_still_time_out() {
        // Greets, then answers nothing but a stream of events.
        let (sock, h) = fake_server(|mut s| {
            let _ = s.write_all(GREETING);
            for _ in 0..40 {
                if s.write_all(b"{\"event\": \"STOP\", \"timestamp\": {}}\r\n")
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        let (e, took) = connect_err(&sock, Duration::from_millis(300));
        assert!(matches!(e, VmctlError::Timeout(_)), "{e:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
        h.join().unwrap();
        // Greets, then sends half a line and stalls.
        let (sock, h) = fake_server(|mut s| {
            let _ = s.write_all(GREETING);
            let _ = s.write_all(b"{\"return\": ");
            std::thread::sleep(Duration::from_millis(1000));
        });
        let (e, _) = connect_err(&sock, Duration::from_millis(300));
        assert!(matches!(e, VmctlError::Timeout(_)), "{e:?}");
        h.join().unwrap();
    }

    #[test]
    fn peer_closing_or_answering_non_objects_errors() {
        let (sock, h) = fake_server(drop);
        let (e, _) = connect_err(&sock, Duration::from_secs(5));
        assert!(matches!(e, VmctlError::Closed), "{e:?}");
        h.join().unwrap();
        let (sock, h) = fake_server(|mut s| {
            let _ = s.write_all(GREETING);
            let mut b = [0u8; 256];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"[1, 2, 3]\r\n");
            std::thread::sleep(Duration::from_millis(200));
        });
        let (e, _) = connect_err(&sock, Duration::from_secs(5));
        assert!(matches!(e, VmctlError::Protocol(_)), "{e:?}");
        h.join().unwrap();
    }

    #[test]
    fn events_are_skipped_and_ids_matched() {
        let (sock, h) = fake_server(|mut s| {
            let _ = s.write_all(GREETING);
            let mut b = [0u8; 256];
            let _ = s.read(&mut b); // qmp_capabilities, id 1
            let _ = s.write_all(b"{\"return\": {}, \"id\": 1}\r\n");
            let _ = s.read(&mut b); // query-status, id 2
            let _ = s.write_all(b"{\"event\": \"RESUME\"}\r\n\r\n{\"return\": {}, \"id\": 99}\r\n{\"return\": {\"status\": \"paused\", \"running\": false}, \"id\": 2}\r\n");
            std::thread::sleep(Duration::from_millis(200));
        });
        let mut q = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        assert_eq!(q.query_status().unwrap(), "paused");
        h.join().unwrap();
    }

    #[test]
    fn hook_receives_vm_action_and_reason() {
        let dir = scratch_dir();
        let out = dir.join("out");
        let script = dir.join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "printf '%s|%s|%s\\n' \"$VSWITCH_VM\" \"$VSWITCH_ACTION\" \"$VSWITCH_REASON\" > '{0}'\nprintf '%s\\n' \"$#\" \"$1\" \"$2\" \"$3\" >> '{0}'\n",
                out.display()
            ),
        )
        .unwrap();
        let reason = "bond0 degraded; it's \"bad\" $(touch pwned) `id`";
        run_hook(
            &format!("sh '{}'", script.display()),
            "vm-1",
            "suspend",
            reason,
            Duration::from_secs(5),
        )
        .unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            got,
            format!("vm-1|suspend|{reason}\n3\nvm-1\nsuspend\n{reason}\n")
        );
        assert!(!Path::new("pwned").exists() && !dir.join("pwned").exists());
        // A failing hook reports its status; a comment drops the appended arguments.
        let e = run_hook("exit 3 #", "vm-1", "resume", "x", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, VmctlError::HookFailed { .. }), "{e:?}");
        run_hook(
            "test \"$VSWITCH_ACTION\" = resume #",
            "vm-1",
            "resume",
            "x",
            Duration::from_secs(5),
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hanging_hook_is_killed_at_the_timeout() {
        let dir = scratch_dir();
        let pidfile = dir.join("pid");
        let cmd = format!("sleep 30 & echo $! > '{}'; wait #", pidfile.display());
        let t0 = Instant::now();
        let e = run_hook(&cmd, "vm-1", "migrate", "x", Duration::from_millis(300)).unwrap_err();
        let took = t0.elapsed();
        assert!(matches!(e, VmctlError::HookTimeout { .. }), "{e:?}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // The hook's own child (same process group) is gone too.
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string();
        let gone = (0..100).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if alive {
                std::thread::sleep(Duration::from_millis(10));
            }
            !alive
        });
        assert!(gone, "sleep {pid} survived the hook's timeout");
        let _ = std::fs::remove_dir_all(dir);
    }
}
