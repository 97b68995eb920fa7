//! Reading a voucher from a photo without letting a crafted image stall the router.
//!
//! Owns: the size bound of a photo (checked before any pixel is read), the QR decode itself
//! (rqrr), and where it runs. rqrr's cost explodes with the number of finder-like patterns in
//! an image (a grid of them took minutes) and a thread cannot be stopped, so the daemon decodes
//! in a child process — its own binary, `wifiposd __decode-qr W H` — that limits its own CPU
//! time and address space and is killed after a wall-clock limit. The server runs one decode
//! at a time and only for a device that passed the MAC check and the rate limit.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Largest side of a photo the page may send (it downscales to at most 1000 px a side).
pub const MAX_PHOTO_SIDE: usize = 1200;
/// Largest photo in pixels (bytes: one gray byte per pixel).
pub const MAX_PHOTO_PIXELS: usize = 1000 * 1000;
/// The hidden subcommand that decodes in a child process.
pub const CHILD_ARG: &str = "__decode-qr";
/// CPU seconds a decode child may use (the kernel stops it after that).
pub const CHILD_CPU_S: u64 = 4;
/// Address space of a decode child.
pub const CHILD_MEM: u64 = 96 * 1024 * 1024;

/// Where photos are decoded.
#[derive(Debug, Clone)]
pub enum Decoder {
    /// In a child process of this program (`PROGRAM __decode-qr W H`): killable, with CPU and
    /// memory limits. What the daemon uses.
    Child(PathBuf),
    /// On a thread of its own: off the serving thread, but a runaway decode keeps its core
    /// until it ends. For tests and embedding only.
    Thread,
}

#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("reading the photo took longer than {0:?}; it was stopped")]
    TimedOut(Duration),
    #[error("the photo reader could not run: {0}")]
    Failed(String),
}

/// The width and height a photo upload may have: both at least 1, sides at most
/// [`MAX_PHOTO_SIDE`], at most [`MAX_PHOTO_PIXELS`] in all.
pub fn size_ok(w: usize, h: usize) -> bool {
    w > 0
        && h > 0
        && w <= MAX_PHOTO_SIDE
        && h <= MAX_PHOTO_SIDE
        && w.saturating_mul(h) <= MAX_PHOTO_PIXELS
}

/// Finds a QR code in a grayscale image and returns its text. Runs in the calling thread with
/// no time limit: call it only through [`decode`] (or in the child).
pub fn decode_qr(w: usize, h: usize, px: &[u8]) -> Option<String> {
    if px.len() != w.checked_mul(h)? || !size_ok(w, h) {
        return None;
    }
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| px[y * w + x]);
    img.detect_grids()
        .into_iter()
        .find_map(|g| g.decode().ok().map(|(_, text)| text))
}

/// Decodes `px` (`w` × `h` gray bytes) with `decoder`, giving up after `limit`.
pub async fn decode(
    decoder: &Decoder,
    w: usize,
    h: usize,
    px: Vec<u8>,
    limit: Duration,
) -> Result<Option<String>, PhotoError> {
    match decoder {
        Decoder::Thread => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("qr-decode".into())
                .spawn(move || {
                    let _ = tx.send(decode_qr(w, h, &px));
                })
                .map_err(|e| PhotoError::Failed(e.to_string()))?;
            match tokio::time::timeout(limit, rx).await {
                Ok(Ok(text)) => Ok(text),
                Ok(Err(_)) => Err(PhotoError::Failed("the decoder stopped".into())),
                Err(_) => Err(PhotoError::TimedOut(limit)),
            }
        }
        Decoder::Child(program) => in_child(program, w, h, &px, limit).await,
    }
}

async fn in_child(
    program: &PathBuf,
    w: usize,
    h: usize,
    px: &[u8],
    limit: Duration,
) -> Result<Option<String>, PhotoError> {
    use tokio::io::AsyncWriteExt as _;
    let failed = |e: std::io::Error| PhotoError::Failed(e.to_string());
    let started = Instant::now();
    let mut child = Command::new(program)
        .arg(CHILD_ARG)
        .arg(w.to_string())
        .arg(h.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(failed)?;
    let result = async {
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| PhotoError::Failed("no pipe to the decoder".into()))?;
        let mut pipe =
            tokio::net::unix::pipe::Sender::from_owned_fd(stdin.into()).map_err(failed)?;
        // A child that dies early (CPU or memory limit) closes the pipe: that is its answer.
        let _ = tokio::time::timeout(limit, pipe.write_all(px)).await;
        drop(pipe);
        loop {
            if let Some(status) = child.try_wait().map_err(failed)? {
                let mut out = String::new();
                if let Some(mut stdout) = child.stdout.take() {
                    // The child has exited: this reads what it left in the pipe and ends.
                    let _ = (&mut stdout).take(64 * 1024).read_to_string(&mut out);
                }
                return Ok(match status.code() {
                    Some(0) => Some(out),
                    Some(1) => None,
                    _ => {
                        eprintln!(
                            "wifiposd: photo decoder stopped after {} ms ({status}): no QR code read",
                            started.elapsed().as_millis()
                        );
                        None
                    }
                });
            }
            if started.elapsed() >= limit {
                return Err(PhotoError::TimedOut(limit));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    .await;
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// The child's side: `__decode-qr W H`, the pixels on stdin. Lowers its priority (the
/// daemon always comes first) and limits its own CPU time and address space first, prints the code's text and exits 0, or exits 1 when there is none
/// and 2 on bad input.
pub fn child_main(args: &[String]) -> ExitCode {
    use rustix::process::{getrlimit, nice, setrlimit, Resource, Rlimit};
    let _ = nice(19);
    for (res, n) in [(Resource::Cpu, CHILD_CPU_S), (Resource::As, CHILD_MEM)] {
        // Never above a limit the daemon itself runs under.
        let n = getrlimit(res).maximum.map_or(n, |max| max.min(n));
        let lim = Rlimit {
            current: Some(n),
            maximum: Some(n),
        };
        if setrlimit(res, lim).is_err() {
            return ExitCode::from(2);
        }
    }
    let dim = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let (Some(w), Some(h)) = (dim(0), dim(1)) else {
        return ExitCode::from(2);
    };
    if !size_ok(w, h) {
        return ExitCode::from(2);
    }
    let mut px = Vec::with_capacity(w * h);
    if std::io::stdin()
        .lock()
        .take((w * h) as u64)
        .read_to_end(&mut px)
        .is_err()
        || px.len() != w * h
    {
        return ExitCode::from(2);
    }
    match decode_qr(w, h, &px) {
        Some(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        None => ExitCode::from(1),
    }
}
