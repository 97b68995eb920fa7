//! RADIUS accounting packets (RFC 2866) on the wire: the attributes of one record, an
//! Accounting-Request around them with its Request Authenticator, and the check of an
//! Accounting-Response's Response Authenticator. Pure: no sockets, no clock, no store.

use std::net::Ipv4Addr;

use md5::{Digest, Md5};

use crate::mac::Mac;

/// Packet codes (RFC 2866 §3, §4).
pub const ACCOUNTING_REQUEST: u8 = 4;
pub const ACCOUNTING_RESPONSE: u8 = 5;

/// Attribute types used here (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const NAS_PORT_TYPE: u8 = 61;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// NAS-Port-Type Wireless-802.11 (RFC 2865 §5.41, RFC 3580).
const PORT_WIRELESS: u32 = 19;

/// The largest RADIUS packet (RFC 2865 §3).
pub const MAX_PACKET: usize = 4096;

/// Acct-Status-Type (RFC 2866 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusType {
    Start = 1,
    Stop = 2,
    InterimUpdate = 3,
}

impl StatusType {
    pub fn from_code(n: i64) -> Option<StatusType> {
        match n {
            1 => Some(StatusType::Start),
            2 => Some(StatusType::Stop),
            3 => Some(StatusType::InterimUpdate),
            _ => None,
        }
    }
}

/// Acct-Terminate-Cause (RFC 2866 §5.10) for the ways access ends here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminateCause {
    /// A device idle long enough to give its place on a full voucher to a new one.
    IdleTimeout = 4,
    /// The voucher's time ran out, or its data allowance (RFC 2866 has no data-limit cause;
    /// the later values, RFC 3580's 19-22, are about 802.1X ports).
    SessionTimeout = 5,
    /// Revoked or kicked by the venue.
    AdminReset = 6,
}

/// One accounting record, as it is queued: every attribute but Acct-Delay-Time, which
/// depends on when it is (re)sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub status: StatusType,
    /// Unique per device session.
    pub session_id: String,
    /// The voucher, `KEYID:SERIAL`.
    pub user_name: String,
    pub mac: Mac,
    /// Called-Station-Id and NAS-Identifier.
    pub nas_id: String,
    pub framed_ip: Option<Ipv4Addr>,
    /// Seconds since the session started (Interim-Update and Stop).
    pub session_time: u32,
    /// Bytes from the device (upload) and to it (download), for Interim-Update and Stop.
    pub input_octets: u64,
    pub output_octets: u64,
    /// When the event happened (Unix seconds).
    pub event_time: u32,
    /// Stop only.
    pub cause: Option<TerminateCause>,
}

/// A MAC as RFC 3580 §3.21 writes a Calling-Station-Id: `AA-BB-CC-DD-EE-FF`.
pub fn station_id(mac: Mac) -> String {
    let b = mac.0;
    format!(
        "{:02X}-{:02X}-{:02X}-{:02X}-{:02X}-{:02X}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

fn put(out: &mut Vec<u8>, t: u8, v: &[u8]) {
    // Text attributes are at most 253 octets; longer values are cut (never happens with the
    // values built here: the venue name is at most 64 characters).
    let v = &v[..v.len().min(253)];
    out.push(t);
    out.push(v.len() as u8 + 2);
    out.extend_from_slice(v);
}

fn put_u32(out: &mut Vec<u8>, t: u8, n: u32) {
    put(out, t, &n.to_be_bytes());
}

impl Record {
    /// The attributes, encoded, without Acct-Delay-Time.
    pub fn attributes(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(160);
        put_u32(&mut a, attr::ACCT_STATUS_TYPE, self.status as u32);
        put(&mut a, attr::ACCT_SESSION_ID, self.session_id.as_bytes());
        put(&mut a, attr::USER_NAME, self.user_name.as_bytes());
        put(
            &mut a,
            attr::CALLING_STATION_ID,
            station_id(self.mac).as_bytes(),
        );
        put(&mut a, attr::CALLED_STATION_ID, self.nas_id.as_bytes());
        put(&mut a, attr::NAS_IDENTIFIER, self.nas_id.as_bytes());
        put_u32(&mut a, attr::NAS_PORT_TYPE, PORT_WIRELESS);
        if let Some(ip) = self.framed_ip {
            put(&mut a, attr::FRAMED_IP_ADDRESS, &ip.octets());
        }
        if self.status != StatusType::Start {
            put_u32(&mut a, attr::ACCT_SESSION_TIME, self.session_time);
            put_u32(&mut a, attr::ACCT_INPUT_OCTETS, self.input_octets as u32);
            put_u32(&mut a, attr::ACCT_OUTPUT_OCTETS, self.output_octets as u32);
            put_u32(
                &mut a,
                attr::ACCT_INPUT_GIGAWORDS,
                (self.input_octets >> 32) as u32,
            );
            put_u32(
                &mut a,
                attr::ACCT_OUTPUT_GIGAWORDS,
                (self.output_octets >> 32) as u32,
            );
        }
        if let Some(c) = self.cause {
            put_u32(&mut a, attr::ACCT_TERMINATE_CAUSE, c as u32);
        }
        put_u32(&mut a, attr::EVENT_TIMESTAMP, self.event_time);
        a
    }
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-MD5 (RFC 2104) of `parts` under `key`.
fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&md5(&[key]));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner: Vec<&[u8]> = vec![&ipad];
    inner.extend_from_slice(parts);
    let inner = md5(&inner);
    md5(&[&opad, &inner])
}

/// An Accounting-Request: `attributes` (as [`Record::attributes`] made them),
/// Acct-Delay-Time `delay_s` and a Message-Authenticator (RFC 3579 §3.2: HMAC-MD5 of the
/// packet with it and the authenticator zero), with Identifier `id` and the Request
/// Authenticator MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret)
/// (RFC 2866 §3).
pub fn accounting_request(id: u8, attributes: &[u8], delay_s: u32, secret: &[u8]) -> Vec<u8> {
    // Records are far below the limit (about 200 octets) and well formed; anything else (a
    // damaged outbox row) is cut to its well-formed whole attributes that fit, rather than
    // sent malformed.
    let room = MAX_PACKET - 20 - 6 - 18;
    let mut end = 0;
    while end + 2 <= attributes.len() {
        let n = attributes[end + 1] as usize;
        if n < 2 || end + n > attributes.len() || end + n > room {
            break;
        }
        end += n;
    }
    let mut attrs = attributes[..end].to_vec();
    put_u32(&mut attrs, attr::ACCT_DELAY_TIME, delay_s);
    put(&mut attrs, attr::MESSAGE_AUTHENTICATOR, &[0; 16]);
    let len = (20 + attrs.len()) as u16;
    let mut p = Vec::with_capacity(len as usize);
    p.push(ACCOUNTING_REQUEST);
    p.push(id);
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0; 16]);
    p.extend_from_slice(&attrs);
    let ma = hmac_md5(secret, &[&p]);
    let at = p.len() - 16;
    p[at..].copy_from_slice(&ma);
    let auth = md5(&[&p, secret]);
    p[4..20].copy_from_slice(&auth);
    p
}

/// Why an answer was not taken as the server's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("not an Accounting-Response (code {0})")]
    NotAResponse(u8),
    #[error("the answer to another request (identifier {got}, expected {want})")]
    OtherIdentifier { got: u8, want: u8 },
    #[error("a malformed packet")]
    Malformed,
    #[error("its Response Authenticator is wrong: the server's secret differs from option radius_secret, or the answer is forged")]
    BadAuthenticator,
}

/// Checks that `resp` is the server's Accounting-Response to `req`: code 5, the same
/// Identifier, a sane length, and Response Authenticator
/// MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
pub fn check_response(resp: &[u8], req: &[u8], secret: &[u8]) -> Result<(), ResponseError> {
    if resp.len() < 20 || req.len() < 20 {
        return Err(ResponseError::Malformed);
    }
    if resp[0] != ACCOUNTING_RESPONSE {
        return Err(ResponseError::NotAResponse(resp[0]));
    }
    if resp[1] != req[1] {
        return Err(ResponseError::OtherIdentifier {
            got: resp[1],
            want: req[1],
        });
    }
    let len = u16::from_be_bytes([resp[2], resp[3]]) as usize;
    if !(20..=MAX_PACKET).contains(&len) || len > resp.len() {
        return Err(ResponseError::Malformed);
    }
    let resp = &resp[..len];
    attributes(&resp[20..]).map_err(|_| ResponseError::Malformed)?;
    let want = md5(&[&resp[..4], &req[4..20], &resp[20..], secret]);
    if want != resp[4..20] {
        return Err(ResponseError::BadAuthenticator);
    }
    Ok(())
}

/// Splits encoded attributes into (type, value) pairs; `Err` on a length that does not fit.
pub fn attributes(mut b: &[u8]) -> Result<Vec<(u8, &[u8])>, ResponseError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 2 || (b[1] as usize) < 2 || b[1] as usize > b.len() {
            return Err(ResponseError::Malformed);
        }
        let n = b[1] as usize;
        out.push((b[0], &b[2..n]));
        b = &b[n..];
    }
    Ok(out)
}

/// The Acct-Status-Type of encoded attributes (as stored in the outbox).
pub fn status_of(attributes: &[u8]) -> Option<StatusType> {
    self::attributes(attributes)
        .ok()?
        .into_iter()
        .find(|(t, v)| *t == attr::ACCT_STATUS_TYPE && v.len() == 4)
        .and_then(|(_, v)| {
            StatusType::from_code(i64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]])))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Record {
        Record {
            status: StatusType::Start,
            session_id: "020000000001-1767225700".into(),
            user_name: "1a2b3c4d:7".into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            nas_id: "Cafe".into(),
            framed_ip: None,
            session_time: 0,
            input_octets: 0,
            output_octets: 0,
            event_time: 1_767_225_700,
            cause: None,
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Computed independently with Python's hashlib and hmac (the attributes written out by
    /// hand in the same order, the Message-Authenticator as `hmac.new(secret, packet with it
    /// and the authenticator zero, md5)`, then `md5(packet + secret)`); FreeRADIUS accepting
    /// these packets is tested in tests/radius.rs.
    #[test]
    fn request_and_response_authenticators_match_a_known_answer() {
        let req = accounting_request(9, &start().attributes(), 3, b"testing123");
        assert_eq!(req.len(), 130);
        assert_eq!(&req[..4], &[4, 9, 0, 130]);
        assert_eq!(&req[112..114], &[80, 18]);
        assert_eq!(hex(&req[114..]), "aec36b687a75d501b750db3400779f8f");
        assert_eq!(hex(&req[4..20]), "248c07388ae627f3635424674e6c20b2");
        let mut resp = vec![5, 9, 0, 20];
        resp.extend_from_slice(&[0; 16]);
        let want: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&"63c31cfadb30cceea6b4f284c1ab7153"[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .unwrap();
        resp[4..20].copy_from_slice(&want);
        assert_eq!(check_response(&resp, &req, b"testing123"), Ok(()));
        assert_eq!(
            check_response(&resp, &req, b"other"),
            Err(ResponseError::BadAuthenticator)
        );
        let mut other = resp.clone();
        other[1] = 10;
        assert!(matches!(
            check_response(&other, &req, b"testing123"),
            Err(ResponseError::OtherIdentifier { .. })
        ));
        let mut auth_req = resp.clone();
        auth_req[0] = 2;
        assert_eq!(
            check_response(&auth_req, &req, b"testing123"),
            Err(ResponseError::NotAResponse(2))
        );
        assert_eq!(
            check_response(&resp[..19], &req, b"testing123"),
            Err(ResponseError::Malformed)
        );
    }

    #[test]
    fn a_new_delay_changes_the_authenticator_and_stop_carries_octets_and_cause() {
        let a = accounting_request(1, &start().attributes(), 0, b"s");
        let b = accounting_request(1, &start().attributes(), 5, b"s");
        assert_ne!(a[4..20], b[4..20]);
        let stop = Record {
            status: StatusType::Stop,
            session_time: 3600,
            input_octets: (5 << 32) + 7,
            output_octets: 9,
            cause: Some(TerminateCause::AdminReset),
            framed_ip: Some(Ipv4Addr::new(10, 20, 0, 5)),
            ..start()
        };
        let enc = stop.attributes();
        assert_eq!(status_of(&enc), Some(StatusType::Stop));
        let attrs = attributes(&enc).unwrap();
        let get = |t: u8| attrs.iter().find(|a| a.0 == t).map(|a| a.1.to_vec());
        assert_eq!(
            get(attr::ACCT_INPUT_OCTETS),
            Some(7u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            get(attr::ACCT_INPUT_GIGAWORDS),
            Some(5u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            get(attr::ACCT_OUTPUT_OCTETS),
            Some(9u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            get(attr::ACCT_TERMINATE_CAUSE),
            Some(6u32.to_be_bytes().to_vec())
        );
        assert_eq!(get(attr::FRAMED_IP_ADDRESS), Some(vec![10, 20, 0, 5]));
        assert_eq!(
            get(attr::CALLING_STATION_ID),
            Some(b"02-00-00-00-00-01".to_vec())
        );
        assert_eq!(get(attr::ACCT_DELAY_TIME), None, "added when sent");
        assert_eq!(status_of(&start().attributes()), Some(StatusType::Start));
    }

    #[test]
    fn an_oversize_record_is_cut_at_a_whole_attribute() {
        let mut big = Vec::new();
        for _ in 0..40 {
            put(&mut big, attr::USER_NAME, &[b'x'; 200]);
        }
        let p = accounting_request(1, &big, 0, b"s");
        assert!(p.len() <= MAX_PACKET);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len());
        let attrs = attributes(&p[20..]).unwrap();
        assert_eq!(attrs.last().unwrap().0, attr::MESSAGE_AUTHENTICATOR);
        // A damaged row: only its well-formed attributes go.
        let p = accounting_request(1, &[1, 3, b'x', 1, 200, 0], 0, b"s");
        let attrs = attributes(&p[20..]).unwrap();
        let types: Vec<u8> = attrs.iter().map(|a| a.0).collect();
        assert_eq!(
            types,
            [
                attr::USER_NAME,
                attr::ACCT_DELAY_TIME,
                attr::MESSAGE_AUTHENTICATOR
            ]
        );
        // A long secret (over HMAC's 64-octet block) works too.
        let long = [b'k'; 100];
        assert_ne!(
            accounting_request(1, &big, 0, &long),
            accounting_request(1, &big, 0, &long[..99])
        );
    }

    #[test]
    fn malformed_attributes_are_refused() {
        assert!(attributes(&[1]).is_err());
        assert!(attributes(&[1, 1]).is_err());
        assert!(attributes(&[1, 5, 0]).is_err());
        assert_eq!(attributes(&[1, 3, 7]).unwrap(), vec![(1, &[7u8][..])]);
    }
}
