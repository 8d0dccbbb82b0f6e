//! The client side of the control protocol (see `vswitch::ctl::protocol`): one JSON
//! request line, one JSON response line, over the Unix socket. Every failure becomes
//! a [`ClientError`] whose text says what was wrong and what to do.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// Protocol version spoken.
pub const VERSION: u32 = 1;
/// Default socket path (the daemon's default).
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.ctl";
/// Longest reply line accepted (replies can be large: a whole switch).
const MAX_REPLY: u64 = 64 * 1024 * 1024;

/// Why a request did not succeed.
#[derive(Debug)]
pub enum ClientError {
    /// `connect` failed.
    Connect { path: PathBuf, err: std::io::Error },
    /// The path exists but is not a socket.
    NotASocket { path: PathBuf },
    /// The peer does not answer with the protocol.
    NotASwitch { path: PathBuf, detail: String },
    /// No reply in time.
    Timeout { path: PathBuf, secs: f64 },
    /// Reading or writing failed.
    Io { path: PathBuf, err: std::io::Error },
    /// The daemon refused the request; its message.
    Remote(String),
}

/// `io::Error`'s text without the " (os error N)" suffix.
fn os_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::io::ErrorKind::*;
        match self {
            ClientError::Connect { path, err } => {
                let p = path.display();
                let hint = match err.kind() {
                    NotFound => "is vswitchd running? Use --socket PATH or set VSWITCH_SOCKET",
                    ConnectionRefused => "nothing is listening (vswitchd is not running or the socket is stale); start vswitchd or use --socket PATH",
                    PermissionDenied => "run as root or as a member of the socket's group",
                    _ => "check that vswitchd is running and use --socket PATH",
                };
                write!(f, "cannot connect to {p}: {} — {hint}", os_text(err))
            }
            ClientError::NotASocket { path } => write!(
                f,
                "{} is not a socket — it is not a vswitchd control socket; use --socket PATH",
                path.display()
            ),
            ClientError::NotASwitch { path, detail } => write!(
                f,
                "{} does not speak the vswitchd control protocol ({detail}) — is it the right socket? Use --socket PATH",
                path.display()
            ),
            ClientError::Timeout { path, secs } => write!(
                f,
                "no reply from {} within {secs} s — vswitchd may be busy or hung; retry or raise --timeout",
                path.display()
            ),
            ClientError::Io { path, err } => write!(f, "talking to {} failed: {}", path.display(), os_text(err)),
            ClientError::Remote(m) => f.write_str(m),
        }
    }
}

/// A connection to the daemon.
pub struct Client {
    path: PathBuf,
    timeout: Duration,
    stream: Option<(UnixStream, BufReader<UnixStream>)>,
    next_id: u64,
}

impl Client {
    /// A client for `path`; connects on first use.
    pub fn new(path: &Path, timeout: Duration) -> Client {
        Client {
            path: path.to_path_buf(),
            timeout,
            stream: None,
            next_id: 0,
        }
    }

    fn connect(&mut self) -> Result<(), ClientError> {
        if self.stream.is_some() {
            return Ok(());
        }
        let path = self.path.clone();
        if let Ok(md) = std::fs::metadata(&path) {
            if !md.file_type().is_socket() {
                return Err(ClientError::NotASocket { path });
            }
        }
        let s = UnixStream::connect(&path).map_err(|err| ClientError::Connect {
            path: path.clone(),
            err,
        })?;
        let io = |err| ClientError::Io {
            path: path.clone(),
            err,
        };
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let r = BufReader::new(s.try_clone().map_err(io)?);
        self.stream = Some((s, r));
        Ok(())
    }

    /// Sends `cmd` with `args`; returns the result, or the daemon's error as
    /// [`ClientError::Remote`].
    pub fn call(&mut self, cmd: &str, args: Value) -> Result<Value, ClientError> {
        self.connect()?;
        self.next_id += 1;
        let id = self.next_id;
        let path = self.path.clone();
        let secs = self.timeout.as_secs_f64();
        let (w, r) = self.stream.as_mut().expect("connected above");
        let line = format!(
            "{}\n",
            json!({"version": VERSION, "id": id, "cmd": cmd, "args": args})
        );
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        if let Err(err) = w.write_all(line.as_bytes()) {
            self.stream = None;
            return Err(if timed_out(&err) {
                ClientError::Timeout { path, secs }
            } else {
                ClientError::Io { path, err }
            });
        }
        let mut buf = Vec::new();
        let got = r.by_ref().take(MAX_REPLY).read_until(b'\n', &mut buf);
        let not_switch = |detail: String| ClientError::NotASwitch {
            path: path.clone(),
            detail,
        };
        match got {
            Ok(0) => {
                self.stream = None;
                return Err(not_switch(
                    "it closed the connection without a reply".into(),
                ));
            }
            Ok(_) if !buf.ends_with(b"\n") => {
                self.stream = None;
                return Err(not_switch("the reply ended in the middle of a line".into()));
            }
            Ok(_) => {}
            Err(err) => {
                self.stream = None;
                return Err(if timed_out(&err) {
                    ClientError::Timeout { path, secs }
                } else {
                    ClientError::Io { path, err }
                });
            }
        }
        let v: Value = serde_json::from_slice(&buf).map_err(|_| {
            let text = String::from_utf8_lossy(&buf);
            let text: String = text.trim().chars().take(40).collect();
            not_switch(format!("it replied {text:?}"))
        })?;
        let ok = v.get("ok").and_then(Value::as_bool);
        let rid = v.get("id").and_then(Value::as_u64);
        match (ok, rid) {
            (Some(true), Some(i)) if i == id => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            (Some(false), _) => Err(ClientError::Remote(
                v.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("the request failed (no reason given)")
                    .to_string(),
            )),
            _ => Err(not_switch("the reply is not a protocol response".into())),
        }
    }
}
