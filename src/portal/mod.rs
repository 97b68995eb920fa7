//! The captive portal's HTTP server (hyper 1 on a current-thread tokio runtime).
//!
//! Owns: accepting connections and the limits that keep a small router standing — connection
//! caps per address, per IPv6 /64 and in total with fair eviction (`conns`), a header read
//! timeout and a connection lifetime (slowloris), head size, per-route body caps (a redeem
//! form is tiny; only a photo is large), a body read timeout and a byte budget for photo
//! uploads in flight, and one photo decode at a time, off this thread (`photo`). Turns hyper
//! requests into [`routes::Req`]. What to answer is `routes`; what the pages say is `pages`;
//! who may try how often is `limiter`; who the client is comes from `neigh`. HTTPS (optional)
//! is `tls`: the same limits and service behind a TLS handshake; with it on, plain-HTTP
//! requests for the portal are redirected to the https URL.
//!
//! Memory held for clients is thus bounded: at most `max_connections` × (hyper's buffers +
//! `max_form`) plus `photo_budget` bytes of photo bodies.

pub mod conns;
pub mod limiter;
pub mod pages;
pub mod photo;
pub mod routes;
pub mod tls;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::neigh::Neighbours;
use conns::Conns;
pub use photo::Decoder;
pub use routes::{
    Access, Answer, Central, CentralAsk, Gate, Portal, PortalConfig, RedeemError, Req, Resp,
};

/// Limits on what clients may cost the router.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections in all; beyond, a newcomer takes over the heaviest holder's oldest
    /// connection, or is closed at once.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// Open connections from one IPv6 /64 (one phone may use many addresses in it).
    pub max_per_prefix: usize,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time to send a request's body once its headers are in.
    pub body_timeout: Duration,
    /// Longest a connection may stay open, busy or idle.
    pub connection_lifetime: Duration,
    /// Largest body of a form post (`POST /redeem` and anything but a photo).
    pub max_form: usize,
    /// Largest request body: a photo upload (one byte per pixel).
    pub max_body: usize,
    /// Bytes of photo uploads in flight at once, from all clients.
    pub photo_budget: usize,
    /// Largest request head (request line and headers).
    pub max_head: usize,
    /// Where photos are decoded.
    pub decoder: Decoder,
    /// Longest one photo decode may run before it is stopped.
    pub photo_time: Duration,
    /// Longest a photo waits for the decoder (one decode at a time) before "busy".
    pub photo_wait: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            max_per_client: 16,
            max_per_prefix: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            connection_lifetime: Duration::from_secs(60),
            max_form: 4 * 1024,
            max_body: photo::MAX_PHOTO_PIXELS,
            photo_budget: 2 * photo::MAX_PHOTO_PIXELS,
            max_head: 16 * 1024,
            decoder: Decoder::Thread,
            photo_time: Duration::from_secs(5),
            photo_wait: Duration::from_secs(3),
        }
    }
}

struct Shared<G, N> {
    portal: Rc<RefCell<Portal<G>>>,
    neigh: RefCell<N>,
    limits: Limits,
    conns: RefCell<Conns>,
    /// Photo bytes reserved by uploads in flight.
    photo_bytes: Cell<usize>,
    /// Client groups (IPv4 address, IPv6 /64) with a photo upload in flight: one each.
    photo_groups: RefCell<std::collections::HashSet<IpAddr>>,
    /// One photo decode at a time.
    decoding: tokio::sync::Semaphore,
}

impl<G, N> Shared<G, N> {
    fn new(portal: Rc<RefCell<Portal<G>>>, neigh: N, limits: Limits) -> Shared<G, N> {
        Shared {
            portal,
            neigh: RefCell::new(neigh),
            conns: RefCell::new(Conns::new(
                limits.max_connections,
                limits.max_per_client,
                limits.max_per_prefix,
            )),
            limits,
            photo_bytes: Cell::new(0),
            photo_groups: RefCell::new(std::collections::HashSet::new()),
            decoding: tokio::sync::Semaphore::new(1),
        }
    }
}

/// Counts a connection while it lives.
struct Slot<G, N> {
    shared: Rc<Shared<G, N>>,
    ip: IpAddr,
    id: u64,
}

impl<G, N> Drop for Slot<G, N> {
    fn drop(&mut self) {
        self.shared.conns.borrow_mut().release(self.ip, self.id);
    }
}

/// A client group's one photo upload, until dropped.
struct Uploading<'a>(&'a RefCell<std::collections::HashSet<IpAddr>>, IpAddr);

impl Drop for Uploading<'_> {
    fn drop(&mut self) {
        self.0.borrow_mut().remove(&self.1);
    }
}

/// Photo bytes held from the budget until dropped.
struct Reserved<'a>(&'a Cell<usize>, usize);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - self.1);
    }
}

fn reserve(budget: &Cell<usize>, limit: usize, n: usize) -> Option<Reserved<'_>> {
    let used = budget.get();
    (used + n <= limit).then(|| {
        budget.set(used + n);
        Reserved(budget, n)
    })
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
    serve_with_tls(listener, None, portal, neigh, limits, shutdown).await;
}

/// [`serve`], plus HTTPS on `https` (its listener and certificate) when given: both listeners
/// share the connection caps, limits and portal.
pub async fn serve_with_tls<G, N>(
    listener: TcpListener,
    https: Option<(TcpListener, Rc<tls::Tls>)>,
    portal: Rc<RefCell<Portal<G>>>,
    neigh: N,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    G: Gate + 'static,
    N: Neighbours + 'static,
{
    let shared = Rc::new(Shared::new(portal, neigh, limits));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let https = https
                .map(|(l, t)| tokio::task::spawn_local(tls::accept_loop(l, shared.clone(), t)));
            accept_loop(listener, shared, shutdown).await;
            if let Some(h) = https {
                h.abort();
            }
        })
        .await;
}

/// Counts a new connection from `peer` against the caps (closing those it evicts); `None`
/// when it must be refused.
fn admit<G, N>(shared: &Rc<Shared<G, N>>, peer: IpAddr) -> Option<Slot<G, N>> {
    let ip = unmap(peer);
    let (admitted, evicted) = {
        let mut conns = shared.conns.borrow_mut();
        (conns.admit(ip), conns.take_evicted())
    };
    for victim in evicted {
        victim.abort();
    }
    Some(Slot {
        shared: shared.clone(),
        ip,
        id: admitted?,
    })
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
    let mut minute = tokio::time::interval(Duration::from_secs(60));
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            _ = minute.tick() => {
                let n = shared.portal.borrow_mut().take_rate_limited();
                if n > 0 {
                    eprintln!("wifiposd: {n} voucher attempts refused by the rate limit in the last minute");
                }
                continue;
            }
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
        let Some(slot) = admit(&shared, peer.ip()) else {
            continue; // dropping the stream closes it
        };
        let (ip, id) = (slot.ip, slot.id);
        let _ = stream.set_nodelay(true);
        let task = tokio::task::spawn_local(async move {
            let io = TokioIo::new(tls::Stream::Plain(stream));
            connection(&slot.shared, io, peer, false).await;
            drop(slot);
        });
        shared
            .conns
            .borrow_mut()
            .attach(ip, id, task.abort_handle());
    }
}

/// Serves HTTP/1.1 on one connection with the header timeout, head size limit and lifetime of
/// `shared.limits`; returns when the connection is closed. `secure`: it came over TLS.
async fn connection<G, N, IO>(shared: &Rc<Shared<G, N>>, io: IO, peer: SocketAddr, secure: bool)
where
    G: Gate + 'static,
    N: Neighbours + 'static,
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let s = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let s = s.clone();
        async move { Ok::<_, Infallible>(respond(&s, req, peer, secure).await) }
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
    let shared = Rc::new(Shared::new(portal, neigh, limits));
    connection(&shared, TokioIo::new(io), peer, false).await;
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
    secure: bool,
) -> Response<Full<Bytes>> {
    let post = req.method() == hyper::Method::POST;
    let photo = post && req.uri().path() == "/photo";
    let cap = match (post, photo) {
        (true, true) => shared.limits.max_body,
        _ => shared.limits.max_form,
    };
    let declared = header(&req, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return close(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large\n",
        ));
    }
    let head = req.method() == hyper::Method::HEAD;
    let host = header(&req, HOST).or_else(|| req.uri().authority().map(|a| a.to_string()));
    let to_https = !secure && shared.portal.borrow().is_https();
    if to_https && req.uri().path().starts_with("/v/") {
        // A voucher link printed with the plain-HTTP URL (before HTTPS was turned on): its
        // code survives the move to the https portal.
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        return close(response(shared.portal.borrow().to_https(pq), head));
    }
    if !shared.portal.borrow().is_portal_host(host.as_deref()) {
        // Redirected traffic for another site (an OS probe): its redirect needs neither the
        // body nor the device. The connection is closed after it, because conntrack keeps a
        // redirected connection bound to the portal even after the device has paid.
        return close(response(shared.portal.borrow().elsewhere(), head));
    }
    if to_https {
        // The portal is on HTTPS: the same page there (a voucher link printed with an http
        // URL keeps working).
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        return close(response(shared.portal.borrow().to_https(pq), head));
    }
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let accept_language = header(&req, hyper::header::ACCEPT_LANGUAGE);
    // Only requests to the portal itself get here: they need to know the device. A neighbour
    // entry that names another device than the connection's packets is refused outright.
    let mac = match shared.neigh.borrow_mut().mac_of(peer) {
        Ok(mac) => mac,
        Err(_) => return close(plain(StatusCode::CONFLICT, CONFLICT_PAGE)),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut r = Req {
        method,
        host,
        path,
        query,
        accept_language,
        body: Vec::new(),
        mac,
        source: Some(unmap(peer.ip())),
        now,
    };
    if photo {
        // Boxed: the photo path's state is large and would otherwise be reserved in every
        // connection's task.
        return close(Box::pin(photo_upload(shared, &r, req.into_body(), declared)).await);
    }
    if post {
        let mut body = req.into_body();
        let read = read_body(&mut body, &mut r.body, cap);
        match tokio::time::timeout(shared.limits.body_timeout, read).await {
            Ok(true) => {}
            Ok(false) => {
                return close(plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large\n",
                ))
            }
            Err(_) => return close(plain(StatusCode::REQUEST_TIMEOUT, "Request too slow\n")),
        }
    }
    let answer = shared.portal.borrow_mut().answer(&r);
    response(settle(shared, &r, answer).await, head)
}

/// `POST /photo`: admitted by the portal (device known, size in bounds, an attempt left) before
/// a byte of the body is read; one upload per client group at a time; the body must be exactly
/// as declared and fit the photo budget; then it is decoded off this thread, one at a time.
async fn photo_upload<G: Gate, N: Neighbours>(
    shared: &Shared<G, N>,
    r: &Req,
    mut body: Incoming,
    declared: Option<u64>,
) -> Response<Full<Bytes>> {
    let admitted = shared.portal.borrow_mut().admit_photo(r);
    let (w, h) = match admitted {
        Ok(d) => d,
        Err(resp) => return response(resp, false),
    };
    let n = w * h;
    if declared != Some(n as u64) {
        return plain(
            StatusCode::BAD_REQUEST,
            "A photo needs a Content-Length of width x height bytes\n",
        );
    }
    let busy = || response(shared.portal.borrow().photo_busy(r), false);
    let group = r.source.map(conns::group_of);
    let _uploading = match group {
        Some(g) if !shared.photo_groups.borrow_mut().insert(g) => return busy(),
        Some(g) => Some(Uploading(&shared.photo_groups, g)),
        None => None,
    };
    let Some(_held) = reserve(&shared.photo_bytes, shared.limits.photo_budget, n) else {
        return busy();
    };
    let mut px = Vec::with_capacity(n);
    let read = read_body(&mut body, &mut px, n);
    match tokio::time::timeout(shared.limits.body_timeout, read).await {
        Ok(true) if px.len() == n => {}
        Ok(_) => return plain(StatusCode::BAD_REQUEST, "Incomplete photo\n"),
        Err(_) => return plain(StatusCode::REQUEST_TIMEOUT, "Request too slow\n"),
    }
    let Ok(Ok(_turn)) =
        tokio::time::timeout(shared.limits.photo_wait, shared.decoding.acquire()).await
    else {
        return busy();
    };
    let text = match photo::decode(&shared.limits.decoder, w, h, px, shared.limits.photo_time).await
    {
        Ok(text) => text,
        Err(e) => {
            eprintln!("wifiposd: photo from {:?}: {e}", r.mac);
            None
        }
    };
    let answer = shared.portal.borrow_mut().photo_decoded(r, text.as_deref());
    response(settle(shared, r, answer).await, false)
}

/// The response to an [`Answer`]: at once, or after the central server's word (no borrow of
/// the portal is held while waiting).
async fn settle<G: Gate, N: Neighbours>(shared: &Shared<G, N>, r: &Req, answer: Answer) -> Resp {
    match answer {
        Answer::Now(resp) => resp,
        Answer::Ask(a) => {
            let central = a.question.await;
            shared.portal.borrow_mut().finish(r, a.pending, central)
        }
    }
}

/// Reads a request body into `out`, at most `cap` bytes (false if there is more, or it broke
/// off). Copies each chunk, so hyper's read buffer is free again at once: a held connection
/// costs the bytes it sent, not a buffer.
async fn read_body(body: &mut Incoming, out: &mut Vec<u8>, cap: usize) -> bool {
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return false;
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > cap {
                return false;
            }
            out.extend_from_slice(&data);
        }
    }
    true
}

/// Marks a response as the last on its connection.
fn close(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
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
