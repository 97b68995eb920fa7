//! The control socket: a root-only Unix socket (default `/var/run/wifiposd.sock`) on which the
//! admin commands (`wifiposd status`, …) reach the running daemon. One JSON request line in,
//! one JSON reply line out (`{"ok":true,"result":…}` or `{"ok":false,"error":{…}}`), then the
//! connection closes.
//!
//! Owns: binding (a stale socket file is replaced, a live one means another daemon: refused),
//! the file mode (0600) and a peer check (same user as the daemon), limits (request size, time
//! per request, connections at once), and the client side. Not: what commands do (`admin`).
//!
//! Imports run one way: `sessions` ← `admin` ← `control` ← `daemon`; `control` uses only
//! `admin`'s request and error types and takes the handler from `daemon`.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

use crate::admin::{AdminError, Request};

/// The largest request accepted (requests are one short line).
pub const MAX_REQUEST: u64 = 4096;
/// Admin connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 4;
/// How long a client may take to send its request.
pub const REQUEST_TIME: Duration = Duration::from_secs(2);
/// How long the command line waits for the daemon.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another wifiposd is already running (it answers on {0})")]
    InUse(PathBuf),
    #[error("cannot create the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One reply on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<AdminError>,
}

/// The bound socket; the file is removed when this is dropped.
pub struct Socket {
    pub listener: UnixListener,
    path: PathBuf,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket at `path`, mode 0600. Must run inside a tokio runtime.
pub fn bind(path: &Path) -> Result<Socket, ControlError> {
    let err = |source| ControlError::Bind {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.to_owned()));
        }
        // Left by a daemon that was killed: nobody answers on it.
        std::fs::remove_file(path).map_err(err)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // With the usual umask (022) nobody else can write to the socket even before the chmod.
    let listener = UnixListener::bind(path).map_err(err)?;
    let socket = Socket {
        listener,
        path: path.to_owned(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(socket)
}

/// Answers requests with `handle` until the task is dropped. `handle` runs to completion for
/// one request at a time (it may borrow the daemon's state).
pub async fn serve<H>(listener: &UnixListener, handle: H)
where
    H: Fn(Request) -> Result<serde_json::Value, AdminError> + 'static,
{
    let handle = Rc::new(handle);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // The daemon's own user (the owner of /proc/self), allowed besides root.
    let me = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("wifiposd: control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            answer(stream, me, &*handle).await;
        });
    }
}

async fn answer<H>(mut stream: UnixStream, me: Option<u32>, handle: &H)
where
    H: Fn(Request) -> Result<serde_json::Value, AdminError>,
{
    let peer = stream.peer_cred().ok().map(|c| c.uid());
    let reply = if peer.is_none() || (peer != me && peer != Some(0)) {
        Err(AdminError::Refused(
            "only root may use the control socket".into(),
        ))
    } else {
        match read_request(&mut stream).await {
            Ok(req) => handle(req),
            Err(e) => Err(e),
        }
    };
    let reply = match reply {
        Ok(result) => Reply {
            ok: true,
            result: Some(result),
            error: None,
        },
        Err(e) => Reply {
            ok: false,
            result: None,
            error: Some(e),
        },
    };
    let mut line = serde_json::to_vec(&reply).unwrap_or_default();
    line.push(b'\n');
    let _ = tokio::time::timeout(CLIENT_TIMEOUT, stream.write_all(&line)).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut UnixStream) -> Result<Request, AdminError> {
    let mut line = Vec::new();
    let mut limited = tokio::io::BufReader::new(stream).take(MAX_REQUEST + 1);
    match tokio::time::timeout(REQUEST_TIME, limited.read_until(b'\n', &mut line)).await {
        Err(_) => return Err(AdminError::BadRequest("the request took too long".into())),
        Ok(Err(e)) => return Err(AdminError::BadRequest(format!("cannot read: {e}"))),
        Ok(Ok(_)) => {}
    }
    if line.len() as u64 > MAX_REQUEST {
        return Err(AdminError::BadRequest(format!(
            "the request is longer than {MAX_REQUEST} bytes"
        )));
    }
    serde_json::from_slice(&line)
        .map_err(|e| AdminError::BadRequest(format!("not a request this daemon knows: {e}")))
}

/// Sends one request to the daemon at `path` and waits for its answer.
pub fn call(path: &Path, req: &Request) -> Result<serde_json::Value, AdminError> {
    let unreachable = |e: std::io::Error| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                "is wifiposd running? (/etc/init.d/wifipos start)".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => "run this as root".to_owned(),
            _ => e.to_string(),
        };
        AdminError::Unreachable(format!(
            "cannot reach the daemon at {}: {why}",
            path.display()
        ))
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CLIENT_TIMEOUT)))
        .map_err(unreachable)?;
    let mut line = serde_json::to_vec(req).map_err(|e| AdminError::Internal(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(unreachable)?;
    let mut answer = Vec::new();
    stream
        .take(256 << 20)
        .read_to_end(&mut answer)
        .map_err(|e| AdminError::Unreachable(format!("the daemon did not answer in time: {e}")))?;
    let reply: Reply = serde_json::from_slice(&answer).map_err(|e| {
        AdminError::Internal(format!(
            "the daemon's answer is not understood ({e}); are wifiposd and this command the same version?"
        ))
    })?;
    match (reply.ok, reply.result, reply.error) {
        (true, Some(r), _) => Ok(r),
        (false, _, Some(e)) => Err(e),
        _ => Err(AdminError::Internal("the daemon's answer is empty".into())),
    }
}
