//! Central authorization of one redemption: an Access-Request to `option radius_auth_server`
//! and its Access-Accept or Access-Reject, within `option radius_timeout_ms`. Each request has
//! its own socket (so its own source port: concurrent requests never share an Identifier
//! space) and is sent once more, the same bytes, at half the time (RFC 5080 §2.2.1 allows an
//! identical retransmission). No answer in time, an unreachable server or an answer that does
//! not check out all come back as [`Unanswered`]: the caller's own decision stands.
//! At most [`MAX_IN_FLIGHT`] requests wait at once; more are not sent (a guest flooding
//! genuine vouchers must not flood the server too). Not: what is decided with the answer
//! (`sessions::gate`).

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::packet::{access_request, check_access_answer, AccessQuery, Verdict, MAX_PACKET};

/// Requests waiting for an answer at most.
pub const MAX_IN_FLIGHT: usize = 32;

thread_local! {
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// Why no verdict came (the router decides alone).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    #[error("the RADIUS server {server} did not answer within {ms} ms")]
    Timeout { server: SocketAddr, ms: u64 },
    #[error("cannot reach the RADIUS server {server}: {why}")]
    Unreachable { server: SocketAddr, why: String },
    #[error("{MAX_IN_FLIGHT} redemptions are already waiting for the RADIUS server")]
    Busy,
}

/// Counts one request in flight while it lives.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        IN_FLIGHT.with(|n| {
            (n.get() < MAX_IN_FLIGHT).then(|| {
                n.set(n.get() + 1);
                Slot
            })
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Asks `server` about `q` (see the module comment).
pub async fn authorize(
    server: SocketAddr,
    secret: &[u8],
    q: &AccessQuery,
    timeout: Duration,
) -> Result<Verdict, Unanswered> {
    let Some(_slot) = Slot::take() else {
        return Err(Unanswered::Busy);
    };
    let unreachable = |e: std::io::Error| Unanswered::Unreachable {
        server,
        why: e.to_string(),
    };
    let mut rnd = [0u8; 17];
    getrandom::fill(&mut rnd).map_err(|e| Unanswered::Unreachable {
        server,
        why: e.to_string(),
    })?;
    let auth: [u8; 16] = rnd[1..].try_into().unwrap_or_default();
    let req = access_request(rnd[0], &auth, q, secret);
    let any: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let udp = UdpSocket::bind(any).await.map_err(unreachable)?;
    // Connected: the kernel passes only datagrams from the server's address and port.
    udp.connect(server).await.map_err(unreachable)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let resend_at = tokio::time::Instant::now() + timeout / 2;
    udp.send(&req).await.map_err(unreachable)?;
    let mut resent = false;
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let until = if resent { deadline } else { resend_at };
        match tokio::time::timeout_at(until, udp.recv(&mut buf)).await {
            Ok(Ok(n)) => match check_access_answer(&buf[..n], &req, secret) {
                Ok(v) => return Ok(v),
                Err(e) => eprintln!("wifiposd: RADIUS answer ignored: {e}"),
            },
            // ICMP port unreachable: nobody listens there.
            Ok(Err(e)) => return Err(unreachable(e)),
            Err(_) if !resent => {
                resent = true;
                udp.send(&req).await.map_err(unreachable)?;
            }
            Err(_) => {
                return Err(Unanswered::Timeout {
                    server,
                    ms: timeout.as_millis() as u64,
                })
            }
        }
    }
}
