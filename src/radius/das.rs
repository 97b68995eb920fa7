//! Dynamic Authorization (RFC 5176): the UDP listener on `option radius_coa_port` for the
//! RADIUS server's Disconnect-Request and CoA-Request, what each one asks (`decide`, pure) and
//! carrying it out (`carry_out`) through the admin's own kick, revoke and voucher-end paths,
//! so the kernel set, open connections, the RADIUS Stop and speed limits follow as they do for
//! `wifiposd kick/revoke/extend`.
//!
//! Owns: the socket (bound, re-bound or closed as reloads change the port), the sources
//! allowed (the IPs of `radius_server` and `radius_auth_server`, read per datagram), the
//! rate-limited log of dropped datagrams, and the cache of recent answers that makes a
//! retransmission get the same answer without acting twice (RFC 5080 §2.2.2). Not: packet
//! encoding and authenticators (`packet`), the store's changes (`store::admin`), the firewall
//! (`sessions`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::packet::{
    attr, check_das_request, das_answer, error_cause, DasError, DasRequest, COA_REQUEST,
    DISCONNECT_REQUEST, MAX_PACKET,
};
use crate::admin::{self, AdminError, Target};
use crate::keys::KeyId;
use crate::mac::Mac;
use crate::sessions::Sessions;

/// How long an answer is kept for retransmissions of its request.
const ANSWER_KEPT: Duration = Duration::from_secs(30);
/// At most this many answers kept (a server retransmits a handful; a flood of valid requests
/// cannot grow memory).
const ANSWERS_MAX: usize = 1024;
/// One log line per reason at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How often the config is looked at for a new, changed or removed port.
const CONFIG_CHECK: Duration = Duration::from_secs(1);
/// An Event-Timestamp further than this from our clock: a replay, dropped (RFC 5176 §3.1's
/// 300 s default window).
const EVENT_WINDOW_S: i64 = 300;

/// Attributes a request may carry besides the identifiers and Session-Timeout: nothing we
/// act on, nothing we must refuse.
const HARMLESS: [u8; 7] = [
    attr::NAS_IDENTIFIER,
    attr::NAS_IP_ADDRESS,
    attr::NAS_IPV6_ADDRESS,
    attr::EVENT_TIMESTAMP,
    attr::MESSAGE_AUTHENTICATOR,
    attr::STATE,
    attr::PROXY_STATE,
];

/// What a valid request asks, before the store is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// `None`: Disconnect; `Some(s)`: CoA setting the end to now + `s` seconds.
    pub session_timeout: Option<u32>,
    /// Acct-Session-Id.
    pub session: Option<String>,
    /// Calling-Station-Id.
    pub mac: Option<Mac>,
    /// User-Name, `KEYID:SERIAL`.
    pub voucher: Option<(KeyId, u64)>,
}

/// The Error-Cause (RFC 5176 §3.5) of a request refused before the store is looked at.
pub type Cause = u32;

/// A Calling-Station-Id as servers write it: `AA-BB-CC-DD-EE-FF`, `aa:bb:cc:dd:ee:ff` or
/// `aabbccddeeff` (either case).
pub fn parse_station(s: &str) -> Option<Mac> {
    let s = s.trim();
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; 6];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return Some(Mac(out));
    }
    s.parse().ok()
}

/// What `req` asks of the NAS `nas_id`, or the Error-Cause of its NAK: 401 for an attribute
/// we cannot apply, 403 for another NAS-Identifier, 402 for nothing identifying (or a CoA
/// without Session-Timeout), 407 for an identifier we cannot read. Pure.
pub fn decide(req: &DasRequest, nas_id: &str) -> Result<Ask, Cause> {
    let coa = req.code == COA_REQUEST;
    for (t, _) in &req.attrs {
        let ok = HARMLESS.contains(t)
            || matches!(
                *t,
                attr::USER_NAME | attr::CALLING_STATION_ID | attr::ACCT_SESSION_ID
            )
            || (coa && *t == attr::SESSION_TIMEOUT);
        if !ok {
            return Err(error_cause::UNSUPPORTED_ATTRIBUTE);
        }
    }
    if let Some(n) = req.get(attr::NAS_IDENTIFIER) {
        if n != nas_id.as_bytes() {
            return Err(error_cause::NAS_IDENTIFICATION_MISMATCH);
        }
    }
    let present = |t: u8| req.get(t).is_some();
    if !present(attr::USER_NAME)
        && !present(attr::CALLING_STATION_ID)
        && !present(attr::ACCT_SESSION_ID)
    {
        return Err(error_cause::MISSING_ATTRIBUTE);
    }
    let session_timeout = if coa {
        match req.get(attr::SESSION_TIMEOUT) {
            None => return Err(error_cause::MISSING_ATTRIBUTE),
            Some(_) => Some(
                req.number(attr::SESSION_TIMEOUT)
                    .ok_or(error_cause::INVALID_ATTRIBUTE_VALUE)?,
            ),
        }
    } else {
        None
    };
    let bad = error_cause::INVALID_ATTRIBUTE_VALUE;
    let text = |t: u8| -> Result<Option<&str>, Cause> {
        match req.get(t) {
            None => Ok(None),
            Some(_) => req.text(t).map(Some).ok_or(bad),
        }
    };
    let session = text(attr::ACCT_SESSION_ID)?.map(str::to_owned);
    let mac = match text(attr::CALLING_STATION_ID)? {
        None => None,
        Some(s) => Some(parse_station(s).ok_or(bad)?),
    };
    let voucher = match text(attr::USER_NAME)? {
        None => None,
        Some(s) => {
            let r = crate::config::parse_revoked(s).ok_or(bad)?;
            Some((r.key_id, r.serial))
        }
    };
    Ok(Ask {
        session_timeout,
        session,
        mac,
        voucher,
    })
}

/// An Event-Timestamp too far from `now` (a replay of an old request, or a clock far off).
/// Not judged while this router's clock is not set yet (before NTP).
pub fn stale(req: &DasRequest, now: i64) -> bool {
    now >= crate::sessions::CLOCK_SANE_AFTER
        && req
            .number(attr::EVENT_TIMESTAMP)
            .is_some_and(|t| (i64::from(t) - now).abs() > EVENT_WINDOW_S)
}

/// Carries out `ask` at `now`; `from` (the server's address) goes in the log and the events.
/// `Ok` with what was done, or the Error-Cause of the NAK: 503 when no live session, device
/// or voucher matches, 506 when the store or firewall failed.
pub fn carry_out(
    s: &mut Sessions,
    ask: &Ask,
    from: IpAddr,
    now: i64,
) -> Result<admin::Done, Cause> {
    let what = match ask.session_timeout {
        None => "Disconnect-Request",
        Some(_) => "CoA-Request",
    };
    let note = format!("; by RADIUS {what} from {from}");
    let not_found = error_cause::SESSION_CONTEXT_NOT_FOUND;
    let failed = |e: AdminError| match e {
        AdminError::Refused(_) | AdminError::BadRequest(_) => not_found,
        AdminError::Internal(m) | AdminError::Unreachable(m) => {
            eprintln!("wifiposd: RADIUS {what} from {from} failed: {m}");
            error_cause::RESOURCES_UNAVAILABLE
        }
    };
    // The device and the voucher(s) named.
    let mut mac = ask.mac;
    let mut voucher = ask.voucher;
    if let Some(id) = &ask.session {
        let open = s.store.acct_sessions(mac).map_err(|e| {
            eprintln!("wifiposd: RADIUS {what}: cannot read sessions: {e}");
            error_cause::RESOURCES_UNAVAILABLE
        })?;
        let a = open
            .into_iter()
            .find(|a| a.session_id == *id && a.live(now))
            .ok_or(not_found)?;
        let key = KeyId::from_hex(&a.key_id).ok_or(not_found)?;
        if voucher.is_some_and(|v| v != (key, a.serial)) {
            return Err(not_found);
        }
        mac = Some(a.mac);
        voucher = Some((key, a.serial));
    }
    match (mac, ask.session_timeout) {
        (Some(m), None) => admin::kick_from(s, m, voucher, &note, now).map_err(failed),
        (Some(m), Some(secs)) => {
            let mut live = admin::live_vouchers(s, m, now).map_err(failed)?;
            if let Some(v) = voucher {
                live.retain(|x| *x == v);
            }
            if live.is_empty() {
                return Err(not_found);
            }
            let ends_at = now + i64::from(secs);
            let why = format!("Session-Timeout {secs} s{note}");
            let mut done = admin::Done {
                message: String::new(),
                vouchers: Vec::new(),
                devices: Vec::new(),
            };
            for v in live {
                let d = admin::set_end(s, v, ends_at, &why, now).map_err(failed)?;
                done.message = d.message;
                done.vouchers.extend(d.vouchers);
                done.devices.extend(d.devices);
            }
            Ok(done)
        }
        (None, None) => {
            let (k, n) = voucher.ok_or(error_cause::MISSING_ATTRIBUTE)?;
            // A voucher never used here (or whose time is up) is still recorded as revoked
            // (refused if a guest presents it later); with no session to end, the answer is a
            // NAK 503.
            let known = s
                .store
                .voucher(k, n)
                .map_err(|e| failed(AdminError::Internal(e.to_string())))?;
            let live = known
                .as_ref()
                .is_some_and(|v| v.revoked_at.is_none() && v.ends_at.is_some_and(|e| e > now));
            let done = admin::revoke_from(s, Target::Voucher(k, n), &note, now).map_err(failed)?;
            if live {
                Ok(done)
            } else {
                eprintln!("wifiposd: RADIUS {what} from {from}: {}", done.message);
                Err(not_found)
            }
        }
        (None, Some(secs)) => {
            let v = voucher.ok_or(error_cause::MISSING_ATTRIBUTE)?;
            let why = format!("Session-Timeout {secs} s{note}");
            admin::set_end(s, v, now + i64::from(secs), &why, now).map_err(failed)
        }
    }
}

/// Why a datagram was dropped unanswered (each logged at most once per [`LOG_EVERY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dropped {
    Source,
    TooLarge,
    Check(DasCheck),
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DasCheck {
    NotARequest,
    Malformed,
    BadAuthenticator,
}

impl From<&DasError> for DasCheck {
    fn from(e: &DasError) -> DasCheck {
        match e {
            DasError::NotARequest(_) => DasCheck::NotARequest,
            DasError::Malformed => DasCheck::Malformed,
            DasError::BadAuthenticator => DasCheck::BadAuthenticator,
        }
    }
}

impl Dropped {
    fn says(&self) -> &'static str {
        match self {
            Dropped::Source => "from an address that is not radius_server or radius_auth_server",
            Dropped::TooLarge => "larger than 4096 octets",
            Dropped::Check(DasCheck::NotARequest) => "not a Disconnect-Request or CoA-Request",
            Dropped::Check(DasCheck::Malformed) => "malformed",
            Dropped::Check(DasCheck::BadAuthenticator) => {
                "wrong Request Authenticator or Message-Authenticator (not signed with radius_secret)"
            }
            Dropped::Stale => "Event-Timestamp more than 300 s from this router's clock (a replay?)",
        }
    }
}

/// Counts drops per reason and prints at most one line per reason every [`LOG_EVERY`].
#[derive(Default)]
struct DropLog(HashMap<Dropped, (Option<Instant>, u64)>);

impl DropLog {
    fn drop(&mut self, why: Dropped, from: SocketAddr) {
        let e = self.0.entry(why).or_insert((None, 0));
        e.1 += 1;
        if e.0.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            eprintln!(
                "wifiposd: RADIUS Disconnect/CoA port: dropped {} datagram(s) {} (last from {from})",
                e.1,
                why.says()
            );
            *e = (Some(Instant::now()), 0);
        }
    }
}

/// A request as RFC 5080 §2.2.2 tells a retransmission: source, Identifier, Request
/// Authenticator.
type RequestKey = (SocketAddr, u8, [u8; 16]);

/// Recent answers, with when they were sent first.
#[derive(Default)]
struct Answers(HashMap<RequestKey, (Instant, Vec<u8>)>);

impl Answers {
    fn get(&mut self, k: &RequestKey) -> Option<&Vec<u8>> {
        self.0.retain(|_, (t, _)| t.elapsed() < ANSWER_KEPT);
        self.0.get(k).map(|(_, a)| a)
    }

    fn put(&mut self, k: RequestKey, answer: Vec<u8>) {
        if self.0.len() >= ANSWERS_MAX {
            if let Some(oldest) = self.0.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k) {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(k, (Instant::now(), answer));
    }
}

fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// IPv6 on every address (dual-stack: IPv4 arrives v4-mapped), or IPv4 alone where IPv6 is
/// off.
async fn bind(port: u16) -> std::io::Result<UdpSocket> {
    match UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))).await {
        Ok(s) => Ok(s),
        Err(_) => UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await,
    }
}

/// `to` as the socket can send to it: v4-mapped again on an IPv6 socket.
fn reply_to(udp: &UdpSocket, to: SocketAddr) -> SocketAddr {
    match (udp.local_addr(), to.ip()) {
        (Ok(SocketAddr::V6(_)), IpAddr::V4(a)) => {
            SocketAddr::new(a.to_ipv6_mapped().into(), to.port())
        }
        _ => to,
    }
}

/// The port, allowed sources and secret now configured.
fn configured(sessions: &Rc<RefCell<Sessions>>) -> Option<(u16, Vec<IpAddr>, Vec<u8>)> {
    let s = sessions.borrow();
    s.cfg.radius_coa().map(|(port, from, secret)| {
        (
            port,
            from.into_iter().map(|a| a.to_canonical()).collect(),
            secret.to_vec(),
        )
    })
}

/// Listens for as long as the daemon runs (see the module comment).
pub async fn run(sessions: Rc<RefCell<Sessions>>) {
    let mut sock: Option<(u16, UdpSocket)> = None;
    let mut failed_port: Option<u16> = None;
    let mut drops = DropLog::default();
    let mut answers = Answers::default();
    // One more than the largest packet, to tell a too large datagram.
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let want = configured(&sessions).map(|c| c.0);
        if sock.as_ref().map(|s| s.0) != want {
            if let Some((port, _)) = sock.take() {
                eprintln!("wifiposd: RADIUS Disconnect/CoA: no longer listening on UDP {port}");
            }
            if let Some(port) = want {
                match bind(port).await {
                    Ok(s) => {
                        eprintln!("wifiposd: RADIUS Disconnect/CoA: listening on UDP {port}");
                        sock = Some((port, s));
                        failed_port = None;
                    }
                    Err(e) => {
                        if failed_port != Some(port) {
                            eprintln!(
                                "wifiposd: RADIUS Disconnect/CoA: cannot listen on UDP {port}: {e} (trying again)"
                            );
                            failed_port = Some(port);
                        }
                    }
                }
            }
        }
        let Some((_, udp)) = sock.as_ref() else {
            tokio::time::sleep(CONFIG_CHECK).await;
            continue;
        };
        let got = tokio::select! {
            r = udp.recv_from(&mut buf) => r,
            _ = tokio::time::sleep(CONFIG_CHECK) => continue,
        };
        let Ok((n, from)) = got else {
            continue;
        };
        // IPv4 arrives v4-mapped on the dual-stack socket.
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let Some((_, allowed, secret)) = configured(&sessions) else {
            continue;
        };
        if !allowed.contains(&from.ip()) {
            drops.drop(Dropped::Source, from);
            continue;
        }
        if n > MAX_PACKET {
            drops.drop(Dropped::TooLarge, from);
            continue;
        }
        let req = match check_das_request(&buf[..n], &secret) {
            Ok(r) => r,
            Err(e) => {
                drops.drop(Dropped::Check(DasCheck::from(&e)), from);
                continue;
            }
        };
        let key = (from, req.id, req.auth);
        if let Some(a) = answers.get(&key) {
            let _ = udp.send_to(a, reply_to(udp, from)).await;
            continue;
        }
        let now = wall_now();
        if stale(&req, now) {
            drops.drop(Dropped::Stale, from);
            continue;
        }
        let answer = answer(&sessions, &req, from.ip(), &secret, now);
        let _ = udp.send_to(&answer, reply_to(udp, from)).await;
        answers.put(key, answer);
    }
}

/// Decides, carries out and logs one checked request; returns the ACK or NAK to send.
fn answer(
    sessions: &Rc<RefCell<Sessions>>,
    req: &DasRequest,
    from: IpAddr,
    secret: &[u8],
    now: i64,
) -> Vec<u8> {
    let what = match req.code {
        DISCONNECT_REQUEST => "Disconnect-Request",
        _ => "CoA-Request",
    };
    let mut s = sessions.borrow_mut();
    let nas_id = s.cfg.nas_id().to_owned();
    let result = decide(req, &nas_id).and_then(|ask| carry_out(&mut s, &ask, from, now));
    match &result {
        Ok(done) => eprintln!("wifiposd: RADIUS {what} from {from}: {}", done.message),
        Err(cause) => eprintln!("wifiposd: RADIUS {what} from {from}: NAK, Error-Cause {cause}"),
    }
    das_answer(req, result.err(), secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(code: u8, attrs: &[(u8, &[u8])]) -> DasRequest {
        DasRequest {
            code,
            id: 1,
            auth: [0; 16],
            attrs: attrs.iter().map(|(t, v)| (*t, v.to_vec())).collect(),
        }
    }

    const KEY: &[u8] = b"1a2b3c4d:7";

    #[test]
    fn a_station_id_is_read_in_the_three_usual_spellings() {
        let m = Mac([0xaa, 0xbb, 0xcc, 0x0d, 0x0e, 0xff]);
        for s in [
            "AA-BB-CC-0D-0E-FF",
            "aa:bb:cc:0d:0e:ff",
            "aabbcc0d0eff",
            "AABBCC0D0EFF",
        ] {
            assert_eq!(parse_station(s), Some(m), "{s}");
        }
        for s in [
            "",
            "aabbcc0d0ef",
            "aabbcc0d0effa",
            "zz-bb-cc-0d-0e-ff",
            "aa:bb",
        ] {
            assert_eq!(parse_station(s), None, "{s}");
        }
    }

    #[test]
    fn a_disconnect_names_a_device_or_a_voucher() {
        let r = req(
            DISCONNECT_REQUEST,
            &[
                (attr::CALLING_STATION_ID, b"02-00-00-00-00-10"),
                (attr::NAS_IDENTIFIER, b"cafe"),
                (attr::EVENT_TIMESTAMP, &[0, 0, 0, 1]),
                (attr::PROXY_STATE, b"x"),
            ],
        );
        let a = decide(&r, "cafe").unwrap();
        assert_eq!(a.mac, Some(Mac([2, 0, 0, 0, 0, 0x10])));
        assert_eq!(
            (a.session_timeout, a.voucher, a.session),
            (None, None, None)
        );
        let r = req(DISCONNECT_REQUEST, &[(attr::USER_NAME, KEY)]);
        let a = decide(&r, "cafe").unwrap();
        assert_eq!(a.voucher, Some((KeyId::from_hex("1a2b3c4d").unwrap(), 7)));
        let r = req(
            DISCONNECT_REQUEST,
            &[(attr::ACCT_SESSION_ID, b"020000000010-5-7")],
        );
        assert_eq!(
            decide(&r, "cafe").unwrap().session.as_deref(),
            Some("020000000010-5-7")
        );
    }

    #[test]
    fn refusals_have_their_error_cause() {
        let mac: (u8, &[u8]) = (attr::CALLING_STATION_ID, b"02-00-00-00-00-10");
        // Another NAS.
        let r = req(DISCONNECT_REQUEST, &[mac, (attr::NAS_IDENTIFIER, b"other")]);
        assert_eq!(decide(&r, "cafe"), Err(403));
        // Nothing identifying.
        let r = req(DISCONNECT_REQUEST, &[(attr::NAS_IDENTIFIER, b"cafe")]);
        assert_eq!(decide(&r, "cafe"), Err(402));
        // A CoA without Session-Timeout, or with something we cannot apply.
        let r = req(COA_REQUEST, &[mac]);
        assert_eq!(decide(&r, "cafe"), Err(402));
        let r = req(
            COA_REQUEST,
            &[mac, (attr::SESSION_TIMEOUT, &[0, 0, 2, 88]), (11, b"acl")],
        );
        assert_eq!(decide(&r, "cafe"), Err(401));
        // Session-Timeout in a Disconnect is not something a Disconnect applies.
        let r = req(
            DISCONNECT_REQUEST,
            &[mac, (attr::SESSION_TIMEOUT, &[0, 0, 2, 88])],
        );
        assert_eq!(decide(&r, "cafe"), Err(401));
        // Unreadable values.
        let r = req(DISCONNECT_REQUEST, &[(attr::CALLING_STATION_ID, b"phone")]);
        assert_eq!(decide(&r, "cafe"), Err(407));
        let r = req(DISCONNECT_REQUEST, &[(attr::USER_NAME, b"alice")]);
        assert_eq!(decide(&r, "cafe"), Err(407));
        let r = req(COA_REQUEST, &[mac, (attr::SESSION_TIMEOUT, &[1, 2])]);
        assert_eq!(decide(&r, "cafe"), Err(407));
        // A CoA that can be applied.
        let r = req(
            COA_REQUEST,
            &[
                mac,
                (attr::SESSION_TIMEOUT, &[0, 0, 2, 88]),
                (attr::USER_NAME, KEY),
            ],
        );
        let a = decide(&r, "cafe").unwrap();
        assert_eq!(a.session_timeout, Some(600));
        assert!(a.mac.is_some() && a.voucher.is_some());
    }

    #[test]
    fn an_old_event_timestamp_is_stale() {
        let at = |t: u32| {
            req(
                DISCONNECT_REQUEST,
                &[(attr::EVENT_TIMESTAMP, &t.to_be_bytes())],
            )
        };
        let t = 1_800_000_000;
        assert!(!stale(&at(t), t as i64 + 299));
        assert!(stale(&at(t), t as i64 + 301));
        assert!(stale(&at(t + 400), t as i64));
        assert!(!stale(&req(DISCONNECT_REQUEST, &[]), t as i64));
        // A router whose clock is not set yet cannot tell.
        assert!(!stale(&at(t), 5));
    }

    #[test]
    fn answers_are_kept_for_retransmissions_and_bounded() {
        let mut a = Answers::default();
        let from: SocketAddr = "10.99.0.2:5000".parse().unwrap();
        a.put((from, 1, [0; 16]), vec![41]);
        assert_eq!(a.get(&(from, 1, [0; 16])), Some(&vec![41]));
        assert_eq!(a.get(&(from, 2, [0; 16])), None);
        assert_eq!(a.get(&(from, 1, [1; 16])), None);
        for i in 0..2000u32 {
            let mut auth = [0; 16];
            auth[..4].copy_from_slice(&i.to_be_bytes());
            a.put((from, 9, auth), vec![]);
        }
        assert!(a.0.len() <= ANSWERS_MAX);
    }
}
