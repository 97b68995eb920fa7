//! What the portal answers to each request: probe redirects, pages, redemption (link, typed
//! code, photo), and the RFC 8908 API.
//!
//! Owns: routing, form decoding, the admission of photo uploads, and charging redemption
//! attempts to the [`Limiter`]. Takes the client's MAC and address, the clock and the request
//! body from the server; reaches sessions only through the [`Gate`] trait (the daemon wires it
//! to store + firewall). Knows nothing of sockets; photos are decoded by `photo`. A
//! redemption the gate wants a central server's word on comes back as [`Answer::Ask`]: the
//! server awaits the question (no borrow held) and hands the verdict to [`Portal::finish`].

use std::net::IpAddr;

use super::limiter::{self, Key, Limiter};
use super::pages::{self, Lang, Refusal};
use super::photo;
use crate::keys::KeyId;
use crate::mac::Mac;
use crate::voucher::Rejection;

/// A device's access, as the portal shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub seconds_left: u64,
    pub devices: u8,
    pub max_devices: u8,
    /// Bytes the voucher may still move, all its devices together (`None`: no data cap).
    pub bytes_left: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemError {
    /// The voucher was refused; the customer is told why.
    Refused(Rejection),
    /// Something on the router failed (disk, firewall); nothing was granted.
    Internal(String),
}

/// A central server's word on a redemption (see [`Gate::ask_central`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Central {
    /// Yes, for at most `session_timeout` seconds if it says so.
    Accept { session_timeout: Option<u32> },
    /// No, with the server's message to the guest, if any.
    Reject { message: Option<String> },
    /// No word (timeout, unreachable, busy): the router's own decision stands.
    Unanswered(String),
}

/// The question to a central server, in flight: it borrows nothing from the gate.
pub type CentralAsk = std::pin::Pin<Box<dyn std::future::Future<Output = Central>>>;

/// Sessions as the portal needs them. Redemption verifies the voucher, applies the policy,
/// records it and opens the firewall, all or nothing.
pub trait Gate {
    fn redeem(&mut self, input: &str, mac: Mac, now: i64) -> Result<Access, RedeemError>;
    /// The device's current access; reads only (never writes to flash on a page view).
    fn access(&mut self, mac: Mac, now: i64) -> Option<Access>;
    /// The voucher `input` names if its signature verifies against a trusted key (cheap: no
    /// store, no firewall). Genuine vouchers are rate-limited per voucher, never per source,
    /// so nobody can lock a paying customer out. `None` treats every input as a guess.
    fn genuine(&mut self, _input: &str) -> Option<(KeyId, u64)> {
        None
    }
    /// The question to ask a central server before redeeming `input` for `mac`, if there is
    /// one to ask (`None`: the gate decides alone, at once).
    fn ask_central(&mut self, _input: &str, _mac: Mac, _now: i64) -> Option<CentralAsk> {
        None
    }
    /// [`Gate::redeem`] with the central server's word.
    fn redeem_with(
        &mut self,
        input: &str,
        mac: Mac,
        now: i64,
        _central: Central,
    ) -> Result<Access, RedeemError> {
        self.redeem(input, mac, now)
    }
}

impl<G: Gate> Gate for std::rc::Rc<std::cell::RefCell<G>> {
    fn redeem(&mut self, input: &str, mac: Mac, now: i64) -> Result<Access, RedeemError> {
        self.borrow_mut().redeem(input, mac, now)
    }
    fn access(&mut self, mac: Mac, now: i64) -> Option<Access> {
        self.borrow_mut().access(mac, now)
    }
    fn genuine(&mut self, input: &str) -> Option<(KeyId, u64)> {
        self.borrow_mut().genuine(input)
    }
    fn ask_central(&mut self, input: &str, mac: Mac, now: i64) -> Option<CentralAsk> {
        self.borrow_mut().ask_central(input, mac, now)
    }
    fn redeem_with(
        &mut self,
        input: &str,
        mac: Mac,
        now: i64,
        central: Central,
    ) -> Result<Access, RedeemError> {
        self.borrow_mut().redeem_with(input, mac, now, central)
    }
}

/// The portal's answer to a request: now, or after a central server's word.
pub enum Answer {
    Now(Resp),
    Ask(Asking),
}

/// A redemption waiting for a central server: await `question`, then [`Portal::finish`].
pub struct Asking {
    pub question: CentralAsk,
    pub pending: Pending,
}

/// What [`Portal::finish`] needs of a redemption that waited.
pub struct Pending {
    input: String,
    mac: Mac,
    lang: Lang,
}

/// The parts of an HTTP request the portal looks at.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    /// `Host` header, if any.
    pub host: Option<String>,
    pub path: String,
    pub query: Option<String>,
    pub accept_language: Option<String>,
    pub body: Vec<u8>,
    /// The client's MAC from the neighbour table, `None` if it is not on the guest network.
    pub mac: Option<Mac>,
    /// The client's address (attempts are charged to it), `None` in-process.
    pub source: Option<IpAddr>,
    /// Wall-clock Unix seconds.
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resp {
    pub status: u16,
    pub content_type: &'static str,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

impl Resp {
    fn html(status: u16, body: String) -> Resp {
        Resp {
            status,
            content_type: "text/html; charset=utf-8",
            location: None,
            body: body.into_bytes(),
        }
    }

    fn redirect(to: String) -> Resp {
        Resp {
            status: 302,
            content_type: "text/html; charset=utf-8",
            body: format!("<a href=\"{}\">Wi-Fi login</a>", pages::esc(&to)).into_bytes(),
            location: Some(to),
        }
    }
}

/// Settings the portal needs from the config.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    pub venue: String,
    /// `http://10.20.0.1:2050` or `https://wifi.example.org`, without a trailing slash.
    pub portal_url: String,
    pub default_lang: Lang,
    /// Attempts per minute per source (IPv4 address, IPv6 /64) and per genuine voucher.
    pub attempts_per_minute: u32,
}

/// Attempts per minute from all sources together that are not genuine vouchers (guesses), as a
/// multiple of `attempts_per_minute` (120 with the default 10): the most refusals the router
/// verifies and records per minute, whatever the number of addresses.
pub const GUESSES_FACTOR: u32 = 12;

impl PortalConfig {
    /// `host[:port]` of the portal URL, to tell portal requests from redirected ones.
    fn authority(&self) -> &str {
        let rest = self
            .portal_url
            .split_once("://")
            .map_or(self.portal_url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }
}

pub use photo::{decode_qr, MAX_PHOTO_SIDE};

/// `POST /photo?live=1…`: a frame of the live camera scanner.
fn is_live(req: &Req) -> bool {
    let q = req.query.as_deref().unwrap_or("");
    form_field(q.as_bytes(), "live").as_deref() == Some("1")
}

pub struct Portal<G> {
    pub cfg: PortalConfig,
    pub gate: G,
    attempts: Limiter,
    /// Live camera frames (`POST /photo?live=1`): a frame without a code costs no attempt,
    /// so frames have their own budget per source and in all.
    frames: Limiter,
}

/// Live camera frames per minute per source (one every 2 s), and in all.
pub const FRAMES_PER_MINUTE: u32 = 30;
pub const FRAMES_GLOBAL_PER_MINUTE: u32 = 240;

impl<G: Gate> Portal<G> {
    pub fn new(cfg: PortalConfig, gate: G) -> Portal<G> {
        let attempts = Limiter::new(
            cfg.attempts_per_minute,
            cfg.attempts_per_minute.saturating_mul(GUESSES_FACTOR),
        );
        Portal {
            cfg,
            gate,
            attempts,
            frames: Limiter::new(FRAMES_PER_MINUTE, FRAMES_GLOBAL_PER_MINUTE),
        }
    }

    /// Whether a request with this `Host` is for the portal itself (else it is a redirected
    /// request for some other site, such as an OS probe).
    pub fn is_portal_host(&self, host: Option<&str>) -> bool {
        host.is_none_or(|h| {
            h.eq_ignore_ascii_case(self.cfg.authority())
                || (self.is_https()
                    && h.strip_suffix(":443")
                        .is_some_and(|h| h.eq_ignore_ascii_case(self.cfg.authority())))
        })
    }

    /// Whether the portal's URL is `https://` (TLS on): then plain HTTP only redirects.
    pub fn is_https(&self) -> bool {
        self.cfg.portal_url.starts_with("https://")
    }

    /// A plain-HTTP request for the portal while TLS is on: to the same path and query
    /// (`/v/CODE?…`) on the https portal.
    pub fn to_https(&self, path_and_query: &str) -> Resp {
        Resp::redirect(format!("{}{path_and_query}", self.cfg.portal_url))
    }

    /// The answer to a request for any other site (an OS probe or any page the guest tried to
    /// open, redirected here by nftables): a redirect to the portal.
    pub fn elsewhere(&self) -> Resp {
        Resp::redirect(format!("{}/", self.cfg.portal_url))
    }

    /// The answer to `req`, or the question to ask a central server first.
    pub fn answer(&mut self, req: &Req) -> Answer {
        let lang = Lang::negotiate(req.accept_language.as_deref(), self.cfg.default_lang);
        if !self.is_portal_host(req.host.as_deref()) {
            return Answer::Now(self.elsewhere());
        }
        let method = req.method.as_str();
        let get = method == "GET" || method == "HEAD";
        Answer::Now(match (get, method, req.path.as_str()) {
            (true, _, "/" | "/status") => self.home(req, lang),
            (true, _, "/api/captive") => self.captive_api(req),
            (true, _, p) if p.starts_with("/v/") => return self.redeem(req, lang, p),
            (false, "POST", "/redeem") => {
                let code = form_field(&req.body, "code").unwrap_or_default();
                return self.redeem(req, lang, &code);
            }
            (false, "POST", "/photo") => return self.photo(req),
            (true, _, _) => Resp::redirect(format!("{}/", self.cfg.portal_url)),
            _ => Resp {
                status: 405,
                content_type: "text/plain; charset=utf-8",
                location: None,
                body: b"Method not allowed\n".to_vec(),
            },
        })
    }

    fn home(&mut self, req: &Req, lang: Lang) -> Resp {
        if let Some(mac) = req.mac {
            if let Some(a) = self.gate.access(mac, req.now) {
                return Resp::html(200, self.success(lang, a));
            }
        }
        Resp::html(200, pages::portal(lang, &self.cfg.venue, None))
    }

    fn success(&self, lang: Lang, a: Access) -> String {
        pages::success(
            lang,
            &self.cfg.venue,
            a.seconds_left,
            a.devices,
            a.max_devices,
            a.bytes_left,
        )
    }

    fn refuse(&self, lang: Lang, status: u16, why: Refusal) -> Resp {
        Resp::html(status, pages::refusal(lang, &self.cfg.venue, &why))
    }

    fn redeem(&mut self, req: &Req, lang: Lang, input: &str) -> Answer {
        let Some(mac) = req.mac else {
            return Answer::Now(self.refuse(lang, 403, Refusal::NoMac));
        };
        let key = match self.gate.genuine(input) {
            Some((key_id, serial)) => Key::Voucher(key_id, serial),
            None => self.source_key(req, mac),
        };
        if !self.attempts.allow(key, req.now) {
            return Answer::Now(self.refuse(lang, 429, Refusal::TooMany));
        }
        if let Some(question) = self.gate.ask_central(input, mac, req.now) {
            let pending = Pending {
                input: input.to_owned(),
                mac,
                lang,
            };
            return Answer::Ask(Asking { question, pending });
        }
        let r = self.gate.redeem(input, mac, req.now);
        Answer::Now(self.redeemed(lang, mac, r))
    }

    /// A redemption that waited for a central server, with its word.
    pub fn finish(&mut self, req: &Req, p: Pending, central: Central) -> Resp {
        let r = self.gate.redeem_with(&p.input, p.mac, req.now, central);
        self.redeemed(p.lang, p.mac, r)
    }

    fn redeemed(&self, lang: Lang, mac: Mac, r: Result<Access, RedeemError>) -> Resp {
        match r {
            Ok(a) => {
                eprintln!(
                    "wifiposd: redeemed {mac}: {} s left, device {}/{}",
                    a.seconds_left, a.devices, a.max_devices
                );
                Resp::html(200, self.success(lang, a))
            }
            Err(RedeemError::Refused(r)) => {
                eprintln!("wifiposd: refused {mac}: {} ({r})", r.code());
                let status = match r {
                    Rejection::Malformed(_) | Rejection::OutOfRange(_) => 400,
                    _ => 403,
                };
                self.refuse(lang, status, Refusal::Voucher(r))
            }
            Err(RedeemError::Internal(e)) => {
                eprintln!("wifiposd: error redeeming for {mac}: {e}");
                Resp::html(
                    503,
                    pages::portal(
                        lang,
                        &self.cfg.venue,
                        Some(
                            "The router could not save your session. Please try again in a moment.",
                        ),
                    ),
                )
            }
        }
    }

    fn source_key(&self, req: &Req, mac: Mac) -> Key {
        req.source
            .map_or(Key::Device(mac), |ip| Key::Source(limiter::source_key(ip)))
    }

    /// Attempts refused by the limiter since the last call (for a periodic log line).
    pub fn take_rate_limited(&mut self) -> u64 {
        self.attempts.take_refused()
    }

    /// Whether a photo upload (`POST /photo?w=W&h=H`, body not read yet) may go on: the device
    /// is known, the size is within bounds and the source has an attempt left (charged here).
    /// Gives the photo's width and height, or the answer to send instead.
    pub fn admit_photo(&mut self, req: &Req) -> Result<(usize, usize), Resp> {
        let lang = Lang::negotiate(req.accept_language.as_deref(), self.cfg.default_lang);
        let q = req.query.as_deref().unwrap_or("");
        let dim = |k| form_field(q.as_bytes(), k).and_then(|v| v.parse::<usize>().ok());
        let (Some(w), Some(h)) = (dim("w"), dim("h")) else {
            return Err(self.refuse(lang, 400, Refusal::Photo));
        };
        if !photo::size_ok(w, h) {
            return Err(self.refuse(lang, 400, Refusal::Photo));
        }
        let Some(mac) = req.mac else {
            return Err(self.refuse(lang, 403, Refusal::NoMac));
        };
        let limiter = if is_live(req) {
            &mut self.frames
        } else {
            &mut self.attempts
        };
        let key = req
            .source
            .map_or(Key::Device(mac), |ip| Key::Source(limiter::source_key(ip)));
        if !limiter.allow(key, req.now) {
            return Err(self.refuse(lang, 429, Refusal::TooMany));
        }
        Ok((w, h))
    }

    /// The answer once an admitted photo was decoded: a redemption of the code it held, or a
    /// refusal when it held none.
    pub fn photo_decoded(&mut self, req: &Req, text: Option<&str>) -> Answer {
        let lang = Lang::negotiate(req.accept_language.as_deref(), self.cfg.default_lang);
        Answer::Now(match text {
            Some(text) => return self.redeem(req, lang, text),
            // A live frame without a code is the normal case while the camera moves: no log.
            None if is_live(req) => self.refuse(lang, 422, Refusal::Photo),
            None => {
                eprintln!("wifiposd: photo from {:?}: no QR code found", req.mac);
                self.refuse(lang, 422, Refusal::Photo)
            }
        })
    }

    /// The router cannot take a photo now (another is being read): try again shortly.
    pub fn photo_busy(&self, req: &Req) -> Resp {
        let lang = Lang::negotiate(req.accept_language.as_deref(), self.cfg.default_lang);
        self.refuse(lang, 503, Refusal::Busy)
    }

    /// `POST /photo` in-process (the body is in `req`): decodes in the calling thread. The
    /// server never uses this path; it decodes off its thread, see `photo::decode`.
    fn photo(&mut self, req: &Req) -> Answer {
        let (w, h) = match self.admit_photo(req) {
            Ok(d) => d,
            Err(r) => return Answer::Now(r),
        };
        if req.body.len() != w * h {
            let lang = Lang::negotiate(req.accept_language.as_deref(), self.cfg.default_lang);
            return Answer::Now(self.refuse(lang, 400, Refusal::Photo));
        }
        let text = decode_qr(w, h, &req.body);
        self.photo_decoded(req, text.as_deref())
    }

    fn captive_api(&mut self, req: &Req) -> Resp {
        let access = req.mac.and_then(|m| self.gate.access(m, req.now));
        let body = match access {
            Some(a) => format!(
                "{{\"captive\":false,\"user-portal-url\":\"{}/\",\"seconds-remaining\":{},{}\"can-extend-session\":false}}",
                self.cfg.portal_url,
                a.seconds_left,
                a.bytes_left
                    .map_or(String::new(), |b| format!("\"bytes-remaining\":{b},"))
            ),
            None => format!(
                "{{\"captive\":true,\"user-portal-url\":\"{}/\"}}",
                self.cfg.portal_url
            ),
        };
        Resp {
            status: 200,
            content_type: "application/captive+json",
            location: None,
            body: body.into_bytes(),
        }
    }
}

/// The value of `key` in an `application/x-www-form-urlencoded` body or query string.
pub fn form_field(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == key)
            .then(|| percent_decode(v))
            .flatten()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_queries_are_decoded() {
        assert_eq!(
            form_field(b"code=AB%2Bc+d&x=1", "code").as_deref(),
            Some("AB+c d")
        );
        assert_eq!(form_field(b"w=640&h=480", "h").as_deref(), Some("480"));
        assert_eq!(form_field(b"code=%ZZ", "code"), None);
        assert_eq!(form_field(b"code=%C3", "code"), None);
        assert_eq!(form_field(b"\xff", "code"), None);
        assert_eq!(form_field(b"a=1", "code"), None);
    }
}
