//! Plain netlink requests over an `mnl` socket, built and parsed as bytes: a dump (every
//! message of the answer until `NLMSG_DONE`), a single acknowledged request, and an iterator
//! over attributes. Used by [`crate::ifaddr`] (rtnetlink) and [`crate::conntrack`]
//! (ctnetlink). Owns no protocol knowledge beyond the netlink framing itself.

use std::io;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_DUMP: u16 = 0x300;
/// Attribute types carry these flags in their top bits.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A netlink message: header (16 bytes) then `body`, padded to 4 bytes.
pub fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut m = Vec::with_capacity((len + 3) & !3);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m.resize((len + 3) & !3, 0);
    m
}

/// Appends one attribute (type, payload), padded to 4 bytes.
pub fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
}

/// Attributes of a message body: `(type without flags, payload, the whole attribute)`.
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let item = (kind, &b[4..len], &b[..len]);
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some(item)
    })
}

/// Walks the messages in one received buffer; `f` gets `(type, body)`. Returns `Ok(true)` at
/// `NLMSG_DONE`, an error for an `NLMSG_ERROR` with a non-zero code.
fn walk(mut msgs: &[u8], mut f: impl FnMut(u16, &[u8])) -> io::Result<bool> {
    while msgs.len() >= 16 {
        let len = u32::from_ne_bytes([msgs[0], msgs[1], msgs[2], msgs[3]]) as usize;
        let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
        if len < 16 || len > msgs.len() {
            return Ok(true);
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = msgs
                    .get(16..20)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(true);
            }
            _ => f(kind, &msgs[16..len]),
        }
        msgs = msgs.get((len + 3) & !3..).unwrap_or(&[]);
    }
    Ok(false)
}

/// Sends a dump request and hands every answering message to `f` as `(type, body)`.
pub fn dump(sock: &mnl::Socket, request: &[u8], mut f: impl FnMut(u16, &[u8])) -> io::Result<()> {
    sock.send(request)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sock.recv_raw(&mut buf)?;
        if n == 0 || walk(&buf[..n], &mut f)? {
            return Ok(());
        }
    }
}

/// Sends one request with `NLM_F_ACK` set and waits for its acknowledgement.
pub fn request(sock: &mnl::Socket, request: &[u8]) -> io::Result<()> {
    sock.send(request)?;
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = sock.recv_raw(&mut buf)?;
        if n == 0 || walk(&buf[..n], |_, _| {})? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_bad_lengths_stop() {
        let mut b = Vec::new();
        push_attr(&mut b, 1, &[1, 2, 3]);
        push_attr(&mut b, 0x8002, &[9; 4]);
        let got: Vec<(u16, Vec<u8>)> = attrs(&b).map(|(k, d, _)| (k, d.to_vec())).collect();
        assert_eq!(got, vec![(1, vec![1, 2, 3]), (2, vec![9; 4])]);
        // A length past the end ends the walk instead of reading beyond it.
        b[8] = 200;
        assert_eq!(attrs(&b).count(), 1);
        assert_eq!(attrs(&[3, 0]).count(), 0);
    }

    #[test]
    fn errors_and_done_end_a_walk() {
        let mut err = message(NLMSG_ERROR, 0, 1, &(-2i32).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        assert_eq!(walk(&err, |_, _| {}).unwrap_err().raw_os_error(), Some(2));
        let mut seen = Vec::new();
        let mut two = message(100, 0, 1, &[1, 2, 3, 4]);
        two.extend(message(NLMSG_DONE, 0, 1, &[0; 4]));
        assert!(walk(&two, |k, b| seen.push((k, b.to_vec()))).unwrap());
        assert_eq!(seen, vec![(100, vec![1, 2, 3, 4])]);
    }
}
