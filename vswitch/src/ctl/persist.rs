//! Persistence of the desired configuration.
//!
//! The daemon's configuration file is the single record of what the operator asked
//! for. After every accepted change the daemon calls [`write_atomic`], which writes
//! the whole configuration to a temporary file in the same directory, flushes it to
//! disk, renames it over the file and flushes the directory. A crash at any point
//! (even `kill -9` or power loss) leaves either the old file or the new one, never a
//! mix; at worst a temporary file `.NAME.tmp.PID` is left behind, which
//! [`remove_stale_temps`] deletes at the next start-up and which is never read.
//!
//! At start-up the daemon calls [`load`]: a file that does not parse or validate
//! stops start-up with the file, line and reason, and is never overwritten (the
//! daemon never reaches the point of writing it).
//!
//! What is written is the serialised [`Config`] (TOML): comments and key order of a
//! hand-written file are not preserved once a change has been accepted. Before the
//! rename the text is parsed back and compared with the configuration, so a file the
//! daemon writes always loads to exactly what it meant.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

use super::CtlError;

const HEADER: &str =
    "# vswitchd configuration. Rewritten by vswitchd after every change accepted\n\
                      # over the control socket (vsctl); comments are not preserved.\n\n";

/// Loads and validates the configuration file (errors carry file, line and reason).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path)
}

fn temp_prefix(path: &Path) -> Option<String> {
    path.file_name()
        .map(|n| format!(".{}.tmp.", n.to_string_lossy()))
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The text [`write_atomic`] writes for `cfg`.
pub fn render(cfg: &Config) -> Result<String, CtlError> {
    let body = toml::to_string(cfg)
        .map_err(|e| CtlError::Internal(format!("cannot serialise the configuration: {e}")))?;
    let text = format!("{HEADER}{body}");
    match Config::parse(&text, "(serialised configuration)") {
        Ok(back) if &back == cfg => Ok(text),
        Ok(_) => Err(CtlError::Internal(
            "the serialised configuration does not read back identically".into(),
        )),
        Err(e) => Err(CtlError::Internal(format!(
            "the serialised configuration does not read back: {e}"
        ))),
    }
}

/// Atomically replaces `path` with `cfg`: temp file in the same directory, fsync,
/// rename, fsync of the directory. The file keeps its permissions (0640 when new).
pub fn write_atomic(path: &Path, cfg: &Config) -> Result<(), CtlError> {
    write_text_atomic(path, &render(cfg)?)
}

/// Atomically replaces `path` with `text`, as [`write_atomic`] does (also used to put a
/// file's earlier bytes back).
pub fn write_text_atomic(path: &Path, text: &str) -> Result<(), CtlError> {
    let shown = path.display();
    let io = |what: &str, e: std::io::Error| CtlError::Io(format!("cannot {what} {shown}: {e}"));
    let prefix =
        temp_prefix(path).ok_or_else(|| CtlError::Io(format!("{shown} is not a file path")))?;
    let dir = dir_of(path);
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o640);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| io("create a temporary file next to", e))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("set permissions for", e))?;
        f.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("flush", e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| io("replace", e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("flush the directory of", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files a crashed [`write_atomic`] left next to `path`; returns
/// how many were removed.
pub fn remove_stale_temps(path: &Path) -> usize {
    let Some(prefix) = temp_prefix(path) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(dir_of(path)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}
