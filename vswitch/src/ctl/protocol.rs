//! The control protocol: JSON lines over a Unix stream socket.
//!
//! # Framing
//!
//! The client sends one [`Request`] per line (UTF-8 JSON, terminated by `\n`, at most
//! [`MAX_LINE`] bytes including the newline); the server answers each with exactly one
//! [`Response`] line, in order. Blank lines are ignored. A connection may carry any
//! number of requests; either side may close it at any time.
//!
//! ```text
//! → {"version":1,"id":7,"cmd":"bond/show","args":{"bond":"bond0"}}
//! ← {"id":7,"ok":true,"result":[{"name":"bond0", ...}]}
//! → {"version":1,"id":8,"cmd":"set-bond","args":{"bond":"bond0","settings":[["mode","balance-tcp"]]}}
//! ← {"id":8,"ok":false,"result":null,"error":"bond 'bond0': unknown bond mode \"balance-tcpx\"; ..."}
//! ```
//!
//! # Versioning
//!
//! `version` is [`VERSION`] (1). A server refuses any other version with an error
//! response naming the versions it speaks; new commands and new result fields may be
//! added within a version (clients ignore unknown fields), incompatible changes bump it.
//!
//! # Commands (`cmd` and `args`)
//!
//! | cmd | args | result |
//! |---|---|---|
//! | `hello` | — | `{"protocol":1,"daemon":"vswitchd","version":"…"}` |
//! | `show` | — | [`ShowTree`](super::ShowTree) |
//! | `dump-config` | — | the desired [`Config`](crate::config::Config) |
//! | `stats` | `{"port"?: str}` | [`StatsShow`](super::StatsShow) |
//! | `pmd-stats-show` | — | `[`[`PmdStats`](super::PmdStats)`]` |
//! | `pmd-rxq-show` | — | `[`[`PmdRxqShow`](super::PmdRxqShow)`]` |
//! | `pmd-stats-clear` | — | `{"workers": u64}` |
//! | `bond/show` | `{"bond"?: str}` | `[`[`UplinkShow`](super::UplinkShow)`]` |
//! | `lacp/show` | `{"bond"?: str}` | `[`[`LacpShow`](super::LacpShow)`]` |
//! | `bond/failback` | `{"bond": str}` | `{"moved": u64}` |
//! | `vnic/bandwidth` | `{"vnic"?: str}` | `[`[`VnicShow`](super::VnicShow)`]` |
//! | every [`ConfigChange`](super::ConfigChange) name | its fields | `{}` |
//!
//! Errors: `ok` is false, `result` is null and `error` is a one-line message for the
//! operator (the configuration validator's text for refused changes). A request that
//! cannot be decoded at all is answered with `id` 0 (or its `id` when that much could
//! be read).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Longest accepted request line, newline included. Longer lines are answered with
/// an error and the connection is closed (the stream cannot be resynchronised).
pub const MAX_LINE: usize = 64 * 1024;

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.ctl";

/// Every command name the server knows: the read commands, then every
/// [`ConfigChange`](super::ConfigChange) name.
pub const COMMANDS: [&str; 27] = [
    "hello",
    "show",
    "dump-config",
    "stats",
    "pmd-stats-show",
    "pmd-rxq-show",
    "pmd-stats-clear",
    "bond/show",
    "lacp/show",
    "bond/failback",
    "vnic/bandwidth",
    "add-nic",
    "set-nic",
    "del-nic",
    "add-vm",
    "del-vm",
    "add-vnic",
    "del-vnic",
    "set-vnic-uplink",
    "add-bond",
    "del-bond",
    "add-bond-member",
    "del-bond-member",
    "set-bond",
    "set-vm",
    "set-vnic",
    "set-dataplane",
];

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version, [`VERSION`].
    pub version: u32,
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    /// Command name, e.g. `show`, `set-bond`.
    pub cmd: String,
    /// Command arguments (an object, or null when there are none).
    #[serde(default)]
    pub args: Value,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's `id` (0 when it could not be read).
    pub id: u64,
    /// True on success.
    pub ok: bool,
    /// The command's result (null on error).
    #[serde(default)]
    pub result: Value,
    /// On error, a one-line message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A success.
    pub fn ok(id: u64, result: Value) -> Response {
        Response {
            id,
            ok: true,
            result,
            error: None,
        }
    }

    /// A failure; newlines in `msg` are flattened so the reply stays one line.
    pub fn err(id: u64, msg: impl Into<String>) -> Response {
        let msg: String = msg.into();
        Response {
            id,
            ok: false,
            result: Value::Null,
            error: Some(msg.replace(['\n', '\r'], " ")),
        }
    }

    /// The JSON line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"id":{},"ok":false,"result":null,"error":"cannot encode response: {}"}}"#,
                self.id, e
            )
        });
        s.push('\n');
        s
    }
}

/// Decodes one line into a request, or the error response to send instead.
pub fn decode_request(line: &[u8]) -> Result<Request, Response> {
    let text = std::str::from_utf8(line)
        .map_err(|e| Response::err(0, format!("request is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Response::err(0, format!("request is not valid JSON: {e}")))?;
    let id = value.get("id").and_then(Value::as_u64).unwrap_or(0);
    match value.get("version").and_then(Value::as_u64) {
        Some(v) if v == VERSION as u64 => {}
        Some(v) => {
            return Err(Response::err(
                id,
                format!("unsupported protocol version {v}; this vswitchd speaks version {VERSION}"),
            ))
        }
        None => {
            return Err(Response::err(
                id,
                "request has no \"version\" (this vswitchd speaks version 1)",
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| Response::err(id, format!("malformed request: {e}")))
}
