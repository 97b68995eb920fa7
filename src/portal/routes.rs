//! What the portal answers to each request: probe redirects, pages, redemption (link, typed
//! code, photo), and the RFC 8908 API.
//!
//! Owns: routing, form and photo decoding, the per-device rate limit on redemption attempts.
//! Takes the client's MAC, the clock and the request body from the server; reaches sessions only
//! through the [`Gate`] trait (the daemon wires it to store + firewall). Knows nothing of sockets.

use std::collections::HashMap;

use super::pages::{self, Lang, Refusal};
use crate::mac::Mac;
use crate::voucher::Rejection;

/// A device's access, as the portal shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub seconds_left: u64,
    pub devices: u8,
    pub max_devices: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemError {
    /// The voucher was refused; the customer is told why.
    Refused(Rejection),
    /// Something on the router failed (disk, firewall); nothing was granted.
    Internal(String),
}

/// Sessions as the portal needs them. Redemption verifies the voucher, applies the policy,
/// records it and opens the firewall, all or nothing.
pub trait Gate {
    fn redeem(&mut self, input: &str, mac: Mac, now: i64) -> Result<Access, RedeemError>;
    /// The device's current access; reads only (never writes to flash on a page view).
    fn access(&mut self, mac: Mac, now: i64) -> Option<Access>;
}

impl<G: Gate> Gate for std::rc::Rc<std::cell::RefCell<G>> {
    fn redeem(&mut self, input: &str, mac: Mac, now: i64) -> Result<Access, RedeemError> {
        self.borrow_mut().redeem(input, mac, now)
    }
    fn access(&mut self, mac: Mac, now: i64) -> Option<Access> {
        self.borrow_mut().access(mac, now)
    }
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
    /// `http://10.20.0.1:2050`, without a trailing slash.
    pub portal_url: String,
    pub default_lang: Lang,
    /// Redemption attempts per device per minute.
    pub attempts_per_minute: u32,
}

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

/// Largest photo the page may send: it downscales to at most 1000 px a side.
pub const MAX_PHOTO_SIDE: usize = 1200;

pub struct Portal<G> {
    pub cfg: PortalConfig,
    pub gate: G,
    attempts: RateLimiter,
}

impl<G: Gate> Portal<G> {
    pub fn new(cfg: PortalConfig, gate: G) -> Portal<G> {
        let attempts = RateLimiter::new(cfg.attempts_per_minute);
        Portal {
            cfg,
            gate,
            attempts,
        }
    }

    /// Whether a request with this `Host` is for the portal itself (else it is a redirected
    /// request for some other site, such as an OS probe).
    pub fn is_portal_host(&self, host: Option<&str>) -> bool {
        host.is_none_or(|h| h.eq_ignore_ascii_case(self.cfg.authority()))
    }

    /// The answer to a request for any other site (an OS probe or any page the guest tried to
    /// open, redirected here by nftables): a redirect to the portal.
    pub fn elsewhere(&self) -> Resp {
        Resp::redirect(format!("{}/", self.cfg.portal_url))
    }

    pub fn handle(&mut self, req: &Req) -> Resp {
        let lang = Lang::negotiate(req.accept_language.as_deref(), self.cfg.default_lang);
        if !self.is_portal_host(req.host.as_deref()) {
            return self.elsewhere();
        }
        let method = req.method.as_str();
        let get = method == "GET" || method == "HEAD";
        match (get, method, req.path.as_str()) {
            (true, _, "/" | "/status") => self.home(req, lang),
            (true, _, "/api/captive") => self.captive_api(req),
            (true, _, p) if p.starts_with("/v/") => self.redeem(req, lang, p),
            (false, "POST", "/redeem") => {
                let code = form_field(&req.body, "code").unwrap_or_default();
                self.redeem(req, lang, &code)
            }
            (false, "POST", "/photo") => self.photo(req, lang),
            (true, _, _) => Resp::redirect(format!("{}/", self.cfg.portal_url)),
            _ => Resp {
                status: 405,
                content_type: "text/plain; charset=utf-8",
                location: None,
                body: b"Method not allowed\n".to_vec(),
            },
        }
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
        )
    }

    fn refuse(&self, lang: Lang, status: u16, why: Refusal) -> Resp {
        Resp::html(status, pages::refusal(lang, &self.cfg.venue, &why))
    }

    fn redeem(&mut self, req: &Req, lang: Lang, input: &str) -> Resp {
        let Some(mac) = req.mac else {
            return self.refuse(lang, 403, Refusal::NoMac);
        };
        if !self.attempts.allow(mac, req.now) {
            eprintln!("wifiposd: refused {mac}: rate_limited");
            return self.refuse(lang, 429, Refusal::TooMany);
        }
        match self.gate.redeem(input, mac, req.now) {
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

    fn photo(&mut self, req: &Req, lang: Lang) -> Resp {
        let q = req.query.as_deref().unwrap_or("");
        let dim = |k| form_field(q.as_bytes(), k).and_then(|v| v.parse::<usize>().ok());
        let (Some(w), Some(h)) = (dim("w"), dim("h")) else {
            return self.refuse(lang, 400, Refusal::Photo);
        };
        if w == 0 || h == 0 || w > MAX_PHOTO_SIDE || h > MAX_PHOTO_SIDE || req.body.len() != w * h {
            return self.refuse(lang, 400, Refusal::Photo);
        }
        match decode_qr(w, h, &req.body) {
            Some(text) => self.redeem(req, lang, &text),
            None => {
                eprintln!("wifiposd: photo from {:?}: no QR code found", req.mac);
                self.refuse(lang, 422, Refusal::Photo)
            }
        }
    }

    fn captive_api(&mut self, req: &Req) -> Resp {
        let access = req.mac.and_then(|m| self.gate.access(m, req.now));
        let body = match access {
            Some(a) => format!(
                "{{\"captive\":false,\"user-portal-url\":\"{}/\",\"seconds-remaining\":{},\"can-extend-session\":false}}",
                self.cfg.portal_url, a.seconds_left
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

/// Finds a QR code in a grayscale image and returns its text.
pub fn decode_qr(w: usize, h: usize, px: &[u8]) -> Option<String> {
    if px.len() != w * h {
        return None;
    }
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| px[y * w + x]);
    img.detect_grids()
        .into_iter()
        .find_map(|g| g.decode().ok().map(|(_, text)| text))
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

/// At most `per_minute` redemption attempts per device per minute (a token bucket). Keeps no
/// more than a few thousand devices in memory.
struct RateLimiter {
    per_minute: u32,
    buckets: HashMap<Mac, (f64, i64)>,
}

const MAX_TRACKED: usize = 4096;

impl RateLimiter {
    fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: HashMap::new(),
        }
    }

    fn allow(&mut self, mac: Mac, now: i64) -> bool {
        let cap = f64::from(self.per_minute);
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&mac) {
            self.buckets.retain(|_, (_, at)| now - *at < 60);
            if self.buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let (tokens, at) = self.buckets.entry(mac).or_insert((cap, now));
        let refill = (now - *at).max(0) as f64 * cap / 60.0;
        *tokens = (*tokens + refill).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
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

    #[test]
    fn rate_limit_allows_a_burst_then_refills() {
        let mut r = RateLimiter::new(3);
        let m = Mac([2, 0, 0, 0, 0, 1]);
        assert!(r.allow(m, 0) && r.allow(m, 0) && r.allow(m, 0));
        assert!(!r.allow(m, 1));
        assert!(
            r.allow(Mac([2, 0, 0, 0, 0, 2]), 1),
            "other devices unaffected"
        );
        assert!(r.allow(m, 21), "one attempt back after 20 s");
    }
}
