//! The control socket server.
//!
//! # Threads
//!
//! [`serve`] binds the socket and starts one accept thread (`ctl-accept`), which
//! starts one thread per client (`ctl-client`), at most
//! [`ServerOptions::max_clients`] at a time; a client over the cap gets one error
//! line and is closed. Client threads call the [`ControlApi`] directly, so the API
//! sees concurrent calls. Every thread polls the quit flag at least every 100 ms.
//!
//! # Robustness invariants
//!
//! - No input makes the server panic or stop: lines that are not UTF-8, not JSON, not
//!   a request, of another version or an unknown command are answered with an error
//!   [`Response`] and the connection stays usable; a line longer than
//!   [`MAX_LINE`] is answered with an error and that connection is closed; a panic
//!   inside the API is caught and answered as an internal error.
//! - A client that makes no request for [`ServerOptions::idle_timeout`] is
//!   disconnected, so a silent client cannot hold a thread forever: only a complete,
//!   non-blank request line counts, not a trickle of bytes or blank lines. Half a line
//!   followed by a disconnect is discarded.
//! - When every slot is taken, a new client is still served: the connection idle the
//!   longest (at least [`ServerOptions::evict_after`]) is told why and closed to make
//!   room, so idle connections cannot lock operators out. Only when every client made
//!   a request more recently is the new one refused.
//! - The socket is created with the requested mode (0660 by default) and optionally
//!   handed to a group; a stale socket file (nobody listening) is replaced, a live one
//!   (another `vswitchd`) makes [`serve`] fail, and anything that is not a socket is
//!   never removed. On exit the socket file is removed if it is still ours.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::protocol::{decode_request, Request, Response, MAX_LINE, VERSION};
use super::{ConfigChange, ControlApi, CtlError};

/// How often threads look at the quit flag.
const POLL: Duration = Duration::from_millis(100);

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Socket file mode (e.g. `0o660`).
    pub mode: u32,
    /// Group (name or numeric gid) to give the socket to.
    pub group: Option<String>,
    /// Most concurrent clients.
    pub max_clients: usize,
    /// A client that makes no request for this long is disconnected.
    pub idle_timeout: Duration,
    /// With every slot taken, a client idle at least this long gives its slot to a
    /// new one.
    pub evict_after: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            mode: 0o660,
            group: None,
            max_clients: 16,
            idle_timeout: Duration::from_secs(60),
            evict_after: Duration::from_secs(1),
        }
    }
}

/// Starts the control server on `path` with default limits; see [`serve_with`].
pub fn serve(
    path: &Path,
    mode: u32,
    group: Option<&str>,
    api: Arc<dyn ControlApi>,
    quit: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, CtlError> {
    let opts = ServerOptions {
        mode,
        group: group.map(str::to_string),
        ..ServerOptions::default()
    };
    serve_with(path, &opts, api, quit)
}

/// Starts the control server. Returns once the socket is listening; the returned
/// thread runs until `quit` is set, then waits for its clients and removes the socket.
pub fn serve_with(
    path: &Path,
    opts: &ServerOptions,
    api: Arc<dyn ControlApi>,
    quit: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, CtlError> {
    let shown = path.display().to_string();
    prepare_path(path)?;
    let listener = UnixListener::bind(path)
        .map_err(|e| CtlError::Io(format!("cannot listen on {shown}: {e}")))?;
    let cleanup = |e: CtlError| {
        let _ = std::fs::remove_file(path);
        e
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.mode)).map_err(|e| {
        cleanup(CtlError::Io(format!(
            "cannot chmod {shown} to {:o}: {e}",
            opts.mode
        )))
    })?;
    if let Some(g) = &opts.group {
        let gid = lookup_group(g).map_err(cleanup)?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            cleanup(CtlError::Io(format!(
                "cannot give {shown} to group {g}: {e}"
            )))
        })?;
    }
    let ino = std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    listener
        .set_nonblocking(true)
        .map_err(|e| cleanup(CtlError::Io(format!("{shown}: {e}"))))?;
    let path: PathBuf = path.to_path_buf();
    let opts = opts.clone();
    std::thread::Builder::new()
        .name("ctl-accept".into())
        .spawn(move || {
            accept_loop(&listener, &opts, &api, &quit);
            // Remove the socket only if it is still the one we created.
            if std::fs::metadata(&path).map(|m| (m.dev(), m.ino())).ok() == ino {
                let _ = std::fs::remove_file(&path);
            }
        })
        .map_err(|e| CtlError::Io(format!("cannot start the control thread: {e}")))
}

/// Why a path cannot take a new server socket ([`clear_stale_socket`]).
#[derive(Debug)]
pub(crate) enum SocketPathError {
    /// Something other than a socket is there.
    NotASocket,
    /// A socket something listens on is there.
    InUse,
    /// The path could not be checked or the stale socket removed.
    Io(String),
}

/// Makes way for a server socket at `path`, for the control socket and vhost-user
/// server vNICs alike: removes a stale socket an earlier run left (a bind would fail
/// on it), and refuses anything else there — a file that is not a socket, or a socket
/// something still listens on. `Ok(true)` when a stale socket was removed.
pub(crate) fn clear_stale_socket(path: &Path) -> Result<bool, SocketPathError> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SocketPathError::Io(format!("cannot inspect {shown}: {e}"))),
        Ok(md) if !md.file_type().is_socket() => Err(SocketPathError::NotASocket),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(SocketPathError::InUse),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .map(|()| true)
                    .map_err(|e| SocketPathError::Io(format!("cannot remove stale {shown}: {e}")))
            }
            Err(e) => Err(SocketPathError::Io(format!(
                "cannot check existing {shown}: {e}"
            ))),
        },
    }
}

/// Replaces a stale socket, refuses a live one or a non-socket, creates the parent.
fn prepare_path(path: &Path) -> Result<(), CtlError> {
    let shown = path.display().to_string();
    match clear_stale_socket(path) {
        Ok(true) => tracing::info!(path = %shown, "replacing stale control socket"),
        Ok(false) => {}
        Err(SocketPathError::NotASocket) => {
            return Err(CtlError::Io(format!(
            "{shown} exists and is not a socket; remove it or choose another control socket path"
        )))
        }
        Err(SocketPathError::InUse) => return Err(CtlError::InUse(shown)),
        Err(SocketPathError::Io(m)) => return Err(CtlError::Io(m)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CtlError::Io(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Resolves a group name (from `/etc/group`) or a numeric gid.
fn lookup_group(g: &str) -> Result<u32, CtlError> {
    if let Ok(gid) = g.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group")
        .map_err(|e| CtlError::Io(format!("cannot read /etc/group to find group {g}: {e}")))?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            let gid = f.next()?.parse::<u32>().ok()?;
            (name == g).then_some(gid)
        })
        .next()
        .ok_or_else(|| {
            CtlError::Io(format!(
                "no group named '{g}' in /etc/group; give a group name or a numeric gid"
            ))
        })
}

/// What the accept thread knows of a client thread.
struct ClientState {
    /// When its last request was answered (or it connected), in ms since the server
    /// started.
    idle_since_ms: AtomicU64,
    /// Set by the accept thread: close to make room for a new client.
    evict: AtomicBool,
}

struct ClientSlot(Arc<AtomicUsize>);
impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: &UnixListener,
    opts: &ServerOptions,
    api: &Arc<dyn ControlApi>,
    quit: &Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let epoch = Instant::now();
    let mut clients: Vec<(JoinHandle<()>, Arc<ClientState>)> = Vec::new();
    while !quit.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                clients.retain(|(h, _)| !h.is_finished());
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                if active.load(Ordering::SeqCst) >= opts.max_clients
                    && !evict_longest_idle(&clients, epoch, opts.evict_after)
                {
                    let _ = stream.set_write_timeout(Some(POLL));
                    let msg = format!(
                        "too many control clients ({}), all of them active; try again later",
                        opts.max_clients
                    );
                    let _ = stream.write_all(Response::err(0, msg).to_line().as_bytes());
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let slot = ClientSlot(Arc::clone(&active));
                let state = Arc::new(ClientState {
                    idle_since_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
                    evict: AtomicBool::new(false),
                });
                let client = Client {
                    quit: Arc::clone(quit),
                    state: Arc::clone(&state),
                    epoch,
                    idle: opts.idle_timeout,
                };
                let api = Arc::clone(api);
                let spawned =
                    std::thread::Builder::new()
                        .name("ctl-client".into())
                        .spawn(move || {
                            let _slot = slot;
                            serve_client(stream, &*api, &client);
                        });
                match spawned {
                    Ok(h) => clients.push((h, state)),
                    Err(e) => tracing::warn!("cannot start a control client thread: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                crate::nap::nap(Duration::from_millis(20))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // E.g. out of file descriptors: back off, keep serving.
                tracing::warn!("control socket accept failed: {e}");
                crate::nap::nap(POLL);
            }
        }
    }
    for (h, _) in clients {
        let _ = h.join();
    }
}

/// Asks the client idle the longest, if it has been idle at least `min`, to close
/// (it does within [`POLL`]); false when there is none.
fn evict_longest_idle(
    clients: &[(JoinHandle<()>, Arc<ClientState>)],
    epoch: Instant,
    min: Duration,
) -> bool {
    let now = epoch.elapsed().as_millis() as u64;
    let victim = clients
        .iter()
        .map(|(_, c)| c)
        .filter(|c| !c.evict.load(Ordering::Relaxed))
        .min_by_key(|c| c.idle_since_ms.load(Ordering::Relaxed))
        .filter(|c| {
            now.saturating_sub(c.idle_since_ms.load(Ordering::Relaxed)) >= min.as_millis() as u64
        });
    match victim {
        Some(c) => {
            c.evict.store(true, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// A client thread's view of the server.
struct Client {
    quit: Arc<AtomicBool>,
    state: Arc<ClientState>,
    epoch: Instant,
    idle: Duration,
}

/// Serves one connection until EOF, error, idle timeout, an oversized line, eviction
/// or quit.
fn serve_client(mut stream: UnixStream, api: &dyn ControlApi, client: &Client) {
    if stream.set_read_timeout(Some(POLL)).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .is_err()
    {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut last = Instant::now();
    loop {
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            if pos + 1 > MAX_LINE {
                let _ = stream.write_all(too_long().to_line().as_bytes());
                return;
            }
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = &line[..pos];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let resp = handle_line(api, line);
            if stream.write_all(resp.to_line().as_bytes()).is_err() {
                return;
            }
            last = Instant::now();
            client
                .state
                .idle_since_ms
                .store(client.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        if buf.len() >= MAX_LINE {
            let _ = stream.write_all(too_long().to_line().as_bytes());
            return;
        }
        if client.quit.load(Ordering::Relaxed) || last.elapsed() >= client.idle {
            return;
        }
        if client.state.evict.load(Ordering::Relaxed) {
            let msg = "closed: every control client slot is taken and this connection was idle the longest; reconnect to go on";
            let _ = stream.write_all(Response::err(0, msg.to_string()).to_line().as_bytes());
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // Nothing for POLL: look at the flags and the idle time again.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn too_long() -> Response {
    Response::err(
        0,
        format!("request line longer than {MAX_LINE} bytes; closing the connection"),
    )
}

/// Decodes and executes one request line; never panics.
pub fn handle_line(api: &dyn ControlApi, line: &[u8]) -> Response {
    let req = match decode_request(line) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(api, &req))) {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(cmd = %req.cmd, "control command panicked");
            Response::err(
                req.id,
                CtlError::Internal(format!("command '{}' failed unexpectedly", req.cmd))
                    .to_string(),
            )
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PortArg {
    #[serde(default)]
    port: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BondArg {
    #[serde(default)]
    bond: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VnicArg {
    #[serde(default)]
    vnic: Option<String>,
}

fn args<T: serde::de::DeserializeOwned + Default>(req: &Request) -> Result<T, CtlError> {
    if req.args.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(req.args.clone())
        .map_err(|e| CtlError::BadArgs(format!("{}: {e}", req.cmd)))
}

fn value<T: serde::Serialize>(r: Result<T, CtlError>) -> Result<Value, CtlError> {
    r.and_then(|t| serde_json::to_value(t).map_err(|e| CtlError::Internal(e.to_string())))
}

/// Executes a decoded request against the API.
pub fn dispatch(api: &dyn ControlApi, req: &Request) -> Response {
    let result = match req.cmd.as_str() {
        "hello" => args::<NoArgs>(req).map(|_| {
            json!({ "protocol": VERSION, "daemon": "vswitchd", "version": env!("CARGO_PKG_VERSION") })
        }),
        "show" => args::<NoArgs>(req).and_then(|_| value(api.show())),
        "dump-config" => args::<NoArgs>(req).and_then(|_| value(api.config())),
        "stats" => args::<PortArg>(req).and_then(|a| value(api.stats(a.port.as_deref()))),
        "pmd-stats-show" => args::<NoArgs>(req).and_then(|_| value(api.pmd_stats())),
        "pmd-rxq-show" => args::<NoArgs>(req).and_then(|_| value(api.pmd_rxq())),
        "pmd-stats-clear" => args::<NoArgs>(req)
            .and_then(|_| api.pmd_stats_clear().map(|n| json!({ "workers": n }))),
        "bond/show" => args::<BondArg>(req).and_then(|a| value(api.bond_show(a.bond.as_deref()))),
        "lacp/show" => args::<BondArg>(req).and_then(|a| value(api.lacp_show(a.bond.as_deref()))),
        "bond/failback" => args::<BondArg>(req).and_then(|a| match a.bond {
            Some(b) => api.bond_failback(&b).map(|moved| json!({ "moved": moved })),
            None => Err(CtlError::BadArgs("bond/failback: missing \"bond\"".into())),
        }),
        "vnic/bandwidth" => args::<VnicArg>(req).and_then(|a| value(api.vnic_bandwidth(a.vnic.as_deref()))),
        other => match ConfigChange::from_request(other, &req.args) {
            Some(Ok(change)) => api.apply_change(change).map(|()| json!({})),
            Some(Err(e)) => Err(e),
            None => Err(CtlError::UnknownCommand(other.chars().take(64).collect())),
        },
    };
    match result {
        Ok(v) => Response::ok(req.id, v),
        Err(e) => Response::err(req.id, e.to_string()),
    }
}
