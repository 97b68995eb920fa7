//! The captive portal's HTTP server (hyper 1 on a current-thread tokio runtime).
//!
//! Owns: accepting connections and the limits that keep a small router standing — connection
//! caps (total and per client), a header read timeout and a connection lifetime (slowloris),
//! header and body size limits — and turning hyper requests into [`routes::Req`]. What to
//! answer is `routes`; what the pages say is `pages`; who the client is comes from `neigh`.

pub mod pages;
pub mod routes;

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::neigh::Neighbours;
pub use routes::{Access, Gate, Portal, PortalConfig, RedeemError, Req, Resp};

/// Limits on what clients may cost the router.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections in all; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Longest a connection may stay open, busy or idle.
    pub connection_lifetime: Duration,
    /// Largest request body (the photo upload is the largest legitimate one).
    pub max_body: usize,
    /// Largest request head (request line and headers).
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            max_per_client: 16,
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
            max_body: routes::MAX_PHOTO_SIDE * routes::MAX_PHOTO_SIDE,
            max_head: 16 * 1024,
        }
    }
}

struct Shared<G, N> {
    portal: Rc<RefCell<Portal<G>>>,
    neigh: RefCell<N>,
    limits: Limits,
    open: RefCell<(usize, HashMap<IpAddr, usize>)>,
}

/// Counts a connection while it lives.
struct Slot<G, N> {
    shared: Rc<Shared<G, N>>,
    ip: IpAddr,
}

impl<G, N> Drop for Slot<G, N> {
    fn drop(&mut self) {
        let mut open = self.shared.open.borrow_mut();
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Serves the portal on `listener` until `shutdown` completes. Runs its connections on a
/// `LocalSet`, so the portal, store and firewall need not be `Send`. The caller keeps a handle
/// on `portal` to change its settings on reload.
pub async fn serve<G, N>(
    listener: TcpListener,
    portal: Rc<RefCell<Portal<G>>>,
    neigh: N,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    G: Gate + 'static,
    N: Neighbours + 'static,
{
    let shared = Rc::new(Shared {
        portal,
        neigh: RefCell::new(neigh),
        limits,
        open: RefCell::new((0, HashMap::new())),
    });
    let local = tokio::task::LocalSet::new();
    local
        .run_until(accept_loop(listener, shared, shutdown))
        .await;
}

async fn accept_loop<G, N>(
    listener: TcpListener,
    shared: Rc<Shared<G, N>>,
    shutdown: impl Future<Output = ()>,
) where
    G: Gate + 'static,
    N: Neighbours + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("wifiposd: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = unmap(peer.ip());
        {
            let mut open = shared.open.borrow_mut();
            let per = open.1.get(&ip).copied().unwrap_or(0);
            if open.0 >= shared.limits.max_connections || per >= shared.limits.max_per_client {
                continue; // dropping the stream closes it
            }
            open.0 += 1;
            *open.1.entry(ip).or_insert(0) += 1;
        }
        let slot = Slot {
            shared: shared.clone(),
            ip,
        };
        let _ = stream.set_nodelay(true);
        tokio::task::spawn_local(async move {
            connection(&slot.shared, TokioIo::new(stream), peer).await;
            drop(slot);
        });
    }
}

/// Serves HTTP/1.1 on one connection with the header timeout, head size limit and lifetime of
/// `shared.limits`; returns when the connection is closed.
async fn connection<G, N, IO>(shared: &Rc<Shared<G, N>>, io: IO, peer: SocketAddr)
where
    G: Gate + 'static,
    N: Neighbours + 'static,
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let s = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let s = s.clone();
        async move { Ok::<_, Infallible>(respond(&s, req, peer).await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_head.max(8192))
        .keep_alive(true);
    let conn = http.serve_connection(io, service);
    let _ = tokio::time::timeout(shared.limits.connection_lifetime, conn).await;
}

/// Serves one already accepted connection from `peer` (any byte stream: a socket, a
/// `tokio::io::duplex` pipe in tests and fuzzing) exactly as [`serve`] serves each of its
/// connections, minus the connection caps. Returns when the connection is closed.
pub async fn serve_connection<G, N, IO>(
    io: IO,
    peer: SocketAddr,
    portal: Rc<RefCell<Portal<G>>>,
    neigh: N,
    limits: Limits,
) where
    G: Gate + 'static,
    N: Neighbours + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let shared = Rc::new(Shared {
        portal,
        neigh: RefCell::new(neigh),
        limits,
        open: RefCell::new((0, HashMap::new())),
    });
    connection(&shared, TokioIo::new(io), peer).await;
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn header(req: &Request<Incoming>, name: hyper::header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn respond<G: Gate, N: Neighbours>(
    shared: &Shared<G, N>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let max = shared.limits.max_body;
    let declared = header(&req, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n");
    }
    let head = req.method() == hyper::Method::HEAD;
    let host = header(&req, HOST).or_else(|| req.uri().authority().map(|a| a.to_string()));
    if !shared.portal.borrow().is_portal_host(host.as_deref()) {
        // Redirected traffic for another site (an OS probe): its redirect needs neither the
        // body nor the device. The connection is closed after it, because conntrack keeps a
        // redirected connection bound to the portal even after the device has paid.
        let mut r = response(shared.portal.borrow().elsewhere(), head);
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let accept_language = header(&req, hyper::header::ACCEPT_LANGUAGE);
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n"),
    };
    // Only requests to the portal itself get here: they need to know the device. A neighbour
    // entry that names another device than the connection's packets is refused outright.
    let mac = match shared.neigh.borrow_mut().mac_of(peer) {
        Ok(mac) => mac,
        Err(_) => return plain(StatusCode::CONFLICT, CONFLICT_PAGE),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let r = Req {
        method,
        host,
        path,
        query,
        accept_language,
        body,
        mac,
        now,
    };
    let resp = shared.portal.borrow_mut().handle(&r);
    response(resp, head)
}

/// A hyper response for the portal's answer (without its body for `HEAD`).
fn response(resp: Resp, head: bool) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(resp.status)
        .header(CONTENT_TYPE, resp.content_type)
        .header(CACHE_CONTROL, "no-store");
    if let Some(loc) = resp
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        builder = builder.header(LOCATION, loc);
    }
    let body = if head { Vec::new() } else { resp.body };
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal error\n"))
}

/// What a device gets when another device on the network claims its address.
const CONFLICT_PAGE: &str = "Another device on this Wi-Fi is pretending to be yours, so the \
router cannot tell who is asking. Your voucher has NOT been used and still works. Please wait \
a minute and open the link again, or ask the staff for help.\n";

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::Mac;
    use crate::neigh::Fixed;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    struct Nobody;

    impl Gate for Nobody {
        fn redeem(&mut self, _: &str, _: Mac, _: i64) -> Result<Access, RedeemError> {
            Err(RedeemError::Internal("test".into()))
        }
        fn access(&mut self, _: Mac, _: i64) -> Option<Access> {
            None
        }
    }

    /// Writes `request` into [`serve_connection`] over an in-memory pipe, half-closes, and
    /// returns everything the server sent before it closed.
    fn exchange(request: &[u8]) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let cfg = PortalConfig {
            venue: "Test".into(),
            portal_url: "http://10.20.0.1:2050".into(),
            default_lang: pages::Lang::En,
            attempts_per_minute: 10,
        };
        let portal = Rc::new(RefCell::new(Portal::new(cfg, Nobody)));
        let peer: SocketAddr = "10.20.0.9:40000".parse().unwrap();
        let local = tokio::task::LocalSet::new();
        rt.block_on(local.run_until(async move {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let neigh = Fixed(Mac([2, 0, 0, 0, 0, 9]));
            let task = tokio::task::spawn_local(serve_connection(
                server,
                peer,
                portal,
                neigh,
                Limits::default(),
            ));
            client.write_all(request).await.unwrap();
            client.shutdown().await.unwrap();
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            task.await.unwrap();
            String::from_utf8(out).unwrap()
        }))
    }

    #[test]
    fn a_connection_over_a_pipe_is_served_like_a_socket() {
        let out = exchange(b"GET /generate_204 HTTP/1.1\r\nHost: connectivitycheck.gstatic.com\r\n\r\nGET /api/captive HTTP/1.1\r\nHost: 10.20.0.1:2050\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 302 Found\r\n"), "{out}");
        assert!(
            out.contains("location: http://10.20.0.1:2050/\r\n"),
            "{out}"
        );
        let bad = exchange(b"GARBAGE\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    }
}
