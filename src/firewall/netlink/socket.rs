//! Talking to nf_tables: a batch sent whole on the firewall's batch socket (opened on first
//! use, kept open, its buffers sized for the batch) with every acknowledgement read back, and
//! one-off requests (a GET or a dump) on a socket of their own, opened in whatever network
//! namespace the calling thread is in.
//!
//! Owns: the sockets, their buffers and the reading of replies, turning a kernel error into a
//! [`FirewallError::Kernel`] naming the operation. Knows nothing of what the messages say.

use std::ffi::{c_char, c_void};
use std::os::fd::AsRawFd as _;

use nftnl::FinalizedBatch;

use super::proto::{NLMSG_DONE, NLMSG_ERROR};
use crate::firewall::FirewallError;

/// The batch socket and the buffer size it was given.
pub(super) struct BatchSocket {
    socket: mnl::Socket,
    size: usize,
}

/// Gives a netfilter socket buffers big enough for `bytes` of batch and its acknowledgements
/// (best effort: without CAP_NET_ADMIN the defaults stay).
fn size_buffers(socket: &mnl::Socket, bytes: usize) -> usize {
    let size = (bytes * 2).clamp(1 << 20, 64 << 20);
    let c_size = size as libc::c_int;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
        // SAFETY: a valid socket fd and a pointer to a live c_int of the stated size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&c_size as *const libc::c_int).cast::<c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    size
}

/// Discards replies an earlier batch left unread (the kernel answers a batch within `send`, so
/// after an error the rest of its acknowledgements may still be queued).
fn drain(socket: &mnl::Socket) {
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: a valid socket fd and a live buffer of the stated length; MSG_DONTWAIT makes
        // it return at once when nothing is queued.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast::<c_void>(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break;
        }
    }
}

/// Sends a batch on the firewall's batch socket (opened on first use, kept open) and reads
/// every acknowledgement, so a kernel error is an error naming `op`.
pub(super) fn send_and_process(
    held: &mut Option<BatchSocket>,
    batch: &FinalizedBatch,
    op: &'static str,
) -> Result<(), FirewallError> {
    let err = |source| FirewallError::Kernel { op, source };
    // nftnl splits a big batch into pages; the kernel needs the batch (BEGIN .. END) in one
    // datagram, or it refuses the part without END (EINVAL). Send the pages as one.
    let whole: Vec<u8> = batch.iter().flat_map(|page| page.iter().copied()).collect();
    if held.is_none() {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(err)?;
        let size = size_buffers(&socket, whole.len());
        *held = Some(BatchSocket { socket, size });
    }
    let b = held
        .as_mut()
        .ok_or_else(|| err(std::io::Error::other("no netlink socket")))?;
    if whole.len() * 2 > b.size {
        b.size = size_buffers(&b.socket, whole.len());
    }
    drain(&b.socket);
    let socket = &b.socket;
    let portid = socket.portid();
    if socket.send(&whole).map_err(err)? < whole.len() {
        return Err(err(std::io::Error::other(
            "the kernel took only part of the batch",
        )));
    }
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..]).map_err(err)? {
            let message = message.map_err(err)?;
            let seq = expected.next().unwrap_or_default();
            mnl::cb_run(message, seq, portid).map_err(err)?;
        }
    }
    Ok(())
}

/// A 4-byte aligned buffer, as netlink headers need.
struct NlBuf(Vec<u32>);

impl NlBuf {
    fn new() -> NlBuf {
        NlBuf(vec![0; nftnl::nft_nlmsg_maxsize() as usize / 4])
    }
    fn bytes(&mut self) -> &mut [u8] {
        let len = self.0.len() * 4;
        // SAFETY: a u32 buffer viewed as bytes: same allocation, u8 has no alignment needs, and
        // the borrow of `self` keeps it alive and unaliased.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// Sends one request and hands each reply message (aligned) to `each` until the kernel says
/// done, acknowledges, or reports an error.
pub(super) fn request(
    op: &'static str,
    build: impl FnOnce(*mut c_char, u32) -> usize,
    mut each: impl FnMut(*const c_void),
) -> Result<(), FirewallError> {
    let err = |source| FirewallError::Kernel { op, source };
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(err)?;
    let seq = std::process::id();
    let mut buf = NlBuf::new();
    let len = build(buf.bytes().as_mut_ptr().cast::<c_char>(), seq);
    socket.send(&buf.bytes()[..len]).map_err(err)?;
    loop {
        let n = socket.recv_raw(buf.bytes()).map_err(err)?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0;
        while off + 16 <= n {
            let b = &buf.bytes()[off..n];
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let kind = u16::from_ne_bytes([b[4], b[5]]);
            if len < 16 || len > b.len() {
                return Ok(());
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(err(std::io::Error::from_raw_os_error(-code)))
                    };
                }
                _ => each(buf.bytes()[off..].as_ptr().cast::<c_void>()),
            }
            off += (len + 3) & !3;
        }
    }
}
