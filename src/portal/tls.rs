//! HTTPS for the portal (optional: `option portal_hostname`, `tls_cert`, `tls_key`).
//!
//! Owns: reading and checking the PEM certificate and key (readable, a certificate and a key
//! present, inside its validity period, key matching the certificate), the live certificate
//! that SIGHUP replaces (a bad new one keeps the old one in use), and the TLS accept loop: the
//! same connection caps as plain HTTP (`conns`), the handshake bounded by the header timeout,
//! then the very same HTTP service. rustls with the `ring` provider, TLS 1.3 only and few algorithms (see `provider`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use pki_types::pem::PemObject as _;
use pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{Gate, Shared};
use crate::neigh::Neighbours;

/// What is wrong with a certificate or key; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {}: {source}", .path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate (a block starting -----BEGIN CERTIFICATE-----); check option tls_cert", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} holds no PEM private key (a block starting -----BEGIN PRIVATE KEY-----); check option tls_key", .0.display())]
    NoKey(PathBuf),
    #[error("the certificate in {} cannot be read as X.509; check option tls_cert", .0.display())]
    BadCertificate(PathBuf),
    #[error("the certificate in {} expired {days} days ago; renew it (for example with the acme package) and reload", .path.display())]
    Expired { path: PathBuf, days: i64 },
    #[error("the certificate in {} is not valid yet (it starts in {days} days); check the router's clock", .path.display())]
    NotYetValid { path: PathBuf, days: i64 },
    #[error("the private key {} does not belong to the certificate {}; install the key made with that certificate", .key.display(), .cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate {} or its key {} cannot be used: {reason}", .cert.display(), .key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Reads `cert` and `key` and builds the TLS server settings, checking them at time `now`.
pub fn load(cert: &Path, key: &Path, now: i64) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Unreadable {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("key", key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    };
    let (not_before, not_after) =
        validity(leaf).ok_or_else(|| TlsError::BadCertificate(cert.to_owned()))?;
    if now > not_after {
        return Err(TlsError::Expired {
            path: cert.to_owned(),
            days: (now - not_after) / 86_400,
        });
    }
    if now < not_before {
        return Err(TlsError::NotYetValid {
            path: cert.to_owned(),
            days: (not_before - now) / 86_400,
        });
    }
    let private =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.to_owned()))?;
    let provider = Arc::new(provider());
    let unusable = |e: rustls::Error| TlsError::Unusable {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let signing = provider
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(unusable)?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        Ok(()) => {}
        // (A key type whose public half the provider cannot tell is left to the handshake.)
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        Err(e) => return Err(unusable(e)),
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(unusable)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The crypto the portal offers, kept small (what is not named here is left out of the
/// binary): TLS 1.3 with what RFC 8446 §9.1 makes every client implement — AES-128-GCM and
/// secp256r1 — and certificates with RSA or ECDSA keys (what ACME issues). A server without
/// client certificates verifies no signatures, so it lists no verification algorithms.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![kx_group::SECP256R1],
        signature_verification_algorithms: rustls::crypto::WebPkiSupportedAlgorithms {
            all: &[],
            mapping: &[],
        },
        key_provider: &RsaOrEcdsa,
        ..default_provider()
    }
}

/// Loads RSA and ECDSA private keys (not Ed25519: no ACME CA issues for it).
#[derive(Debug)]
struct RsaOrEcdsa;

impl rustls::crypto::KeyProvider for RsaOrEcdsa {
    fn load_private_key(
        &self,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        use rustls::crypto::ring::sign;
        match sign::RsaSigningKey::new(&key) {
            Ok(rsa) => Ok(Arc::new(rsa)),
            Err(_) => sign::any_ecdsa_type(&key),
        }
    }
}

/// The certificate in use; [`Tls::reload`] swaps it.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    acceptor: RefCell<TlsAcceptor>,
}

impl Tls {
    /// Loads `cert` and `key`; an error refuses the start.
    pub fn new(cert: &Path, key: &Path, now: i64) -> Result<Rc<Tls>, TlsError> {
        let config = load(cert, key, now)?;
        Ok(Rc::new(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            acceptor: RefCell::new(TlsAcceptor::from(config)),
        }))
    }

    /// Re-reads the files (a renewal); on error the running certificate stays in use and the
    /// message says so.
    pub fn reload(&self, now: i64) -> Result<(), String> {
        match load(&self.cert, &self.key, now) {
            Ok(config) => {
                *self.acceptor.borrow_mut() = TlsAcceptor::from(config);
                Ok(())
            }
            Err(e) => Err(format!("{e}; the certificate loaded before stays in use")),
        }
    }
}

/// Accepts TLS connections on `listener` until dropped: the same caps as HTTP, the handshake
/// within the header timeout, then the portal's HTTP service.
pub(super) async fn accept_loop<G, N>(listener: TcpListener, shared: Rc<Shared<G, N>>, tls: Rc<Tls>)
where
    G: Gate + 'static,
    N: Neighbours + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("wifiposd: https accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = super::admit(&shared, peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = tls.acceptor.borrow().clone();
        let (ip, id) = (slot.ip, slot.id);
        let task = tokio::task::spawn_local(async move {
            let limit = slot.shared.limits.header_timeout;
            if let Ok(Ok(tls)) = tokio::time::timeout(limit, acceptor.accept(stream)).await {
                let io = TokioIo::new(Stream::Tls(Box::new(tls)));
                super::connection(&slot.shared, io, peer, true).await;
            }
            drop(slot);
        });
        shared
            .conns
            .borrow_mut()
            .attach(ip, id, task.abort_handle());
    }
}

/// A portal connection, plain or TLS: one type, so hyper's connection code is compiled once
/// for both (it is the largest part of the portal in the binary).
pub(super) enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// `notBefore` and `notAfter` of a DER certificate, as Unix seconds.
fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let (_, cert_body, _) = der(cert)?;
    let (_, tbs, _) = der(cert_body)?;
    let mut rest = tbs;
    let (tag, _, after) = der(rest)?;
    if tag == 0xa0 {
        rest = after; // [0] version
    }
    for _ in 0..3 {
        rest = der(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = der(rest)?;
    let (t1, nb, after) = der(validity)?;
    let (t2, na, _) = der(after)?;
    Some((time(t1, nb)?, time(t2, na)?))
}

/// One DER element: (tag, contents, what follows).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, b.get(head..end)?, b.get(end..)?))
}

/// UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`) to Unix seconds.
fn time(tag: u8, t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let y: i64 = s.get(..2)?.parse().ok()?;
            (if y < 50 { 2000 + y } else { 1900 + y }, s.get(2..)?)
        }
        0x18 if s.len() == 14 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (mo, d, h, mi, se) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_to_unix_seconds() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"261202043718Z"), Some(1_796_186_238));
        assert_eq!(time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(time(0x18, b"2038011903140Z"), None);
        assert_eq!(time(0x17, b"261302043718Z"), None);
    }

    #[test]
    fn broken_der_is_refused_not_a_panic() {
        for b in [
            &b""[..],
            b"\x30",
            b"\x30\x85\xff\xff\xff\xff\xff",
            b"\x30\x03\x02\x01",
        ] {
            assert_eq!(validity(b), None);
        }
    }
}
