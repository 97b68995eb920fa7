//! The voucher contract of `VOUCHER.md`, versions 1 and 2: body layout, signing, the token text
//! and the input forms the portal accepts. Version 2's extension block (limits) is in [`ext`].
//!
//! Owns: encoding and decoding vouchers, signing and strict verification, and the list of
//! reasons a voucher can be refused ([`Rejection`]). Pure: no I/O, no clock. Whether a valid
//! voucher may be used *now* (deadline, expiry, revocation, device limit) is `policy`'s job; it
//! reports those outcomes with the same [`Rejection`] type so every refusal has one vocabulary.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey};

use crate::keys::{KeyId, Keyring};

pub mod ext;
pub use ext::{Ext, Limits};

/// Version 1: no extension block.
pub const VERSION: u8 = 0x01;
/// Version 2: an extension block (limits) after the purchase reference.
pub const VERSION_2: u8 = 0x02;
/// Domain separation prefix signed before a v1 body.
pub const SIGNING_PREFIX: &[u8; 18] = b"WIFIPOS-VOUCHER-V1";
/// Domain separation prefix signed before a v2 body.
pub const SIGNING_PREFIX_V2: &[u8; 18] = b"WIFIPOS-VOUCHER-V2";
/// Fixed part of the body, before the purchase reference.
pub const FIXED_BODY_LEN: usize = 27;
pub const SIGNATURE_LEN: usize = 64;
pub const MAX_REF_LEN: usize = 32;
pub const MIN_DURATION_S: u32 = 60;
pub const MAX_DURATION_S: u32 = 31_536_000;
pub const MIN_DEVICES: u8 = 1;
pub const MAX_DEVICES: u8 = 32;
/// Longest token: 27 + 32 + 64 bytes, base64url without padding.
pub const MAX_TOKEN_LEN: usize = 164;
/// Shortest token: 27 + 0 + 64 bytes.
pub const MIN_TOKEN_LEN: usize = 122;
/// Longest v2 token: 28 + 32 + 64 + 64 bytes.
pub const MAX_TOKEN_LEN_V2: usize = 251;
/// Shortest v2 token: 28 + 0 + 0 + 64 bytes.
pub const MIN_TOKEN_LEN_V2: usize = 123;

/// The fields of a voucher (the signed body), as the till issues them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Voucher {
    #[serde(serialize_with = "ser_key_id")]
    pub key_id: KeyId,
    pub serial: u64,
    /// Unix seconds, UTC.
    pub issued_at: u32,
    /// Unix seconds, UTC; the first redemption must happen before it. 0 = no deadline.
    pub redeem_by: u32,
    /// Seconds of access from the first redemption.
    pub duration_s: u32,
    /// Distinct devices (MAC addresses) that may use the voucher.
    pub max_devices: u8,
    /// The till's purchase or receipt identifier.
    pub purchase_ref: String,
    /// `None` for a version 1 voucher; the extension block (limits) of a version 2 one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<Ext>,
}

fn ser_key_id<S: serde::Serializer>(k: &KeyId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&k.to_string())
}

/// Why the structure of a token is not a voucher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the code is empty")]
    Empty,
    #[error("the code is too long to be a voucher")]
    TooLong,
    #[error("the code ends with '=' padding, which vouchers never have")]
    Padding,
    #[error("the code contains a character that vouchers never have")]
    BadCharacter,
    #[error("the code is not valid base64url")]
    NotBase64,
    #[error("the code is version {0}, this software reads versions 1 and 2")]
    UnsupportedVersion(u8),
    #[error("the purchase reference is {0} bytes, over the 32-byte limit")]
    RefTooLong(u8),
    #[error("the code is {actual} bytes, a voucher of this kind is {expected}")]
    WrongLength { expected: usize, actual: usize },
    #[error("the purchase reference is not UTF-8 text")]
    RefNotUtf8,
    #[error("the purchase reference contains a control character")]
    RefControlChar,
    #[error("the limits block is {0} bytes, over the 64-byte limit")]
    ExtTooLong(u8),
    #[error("the limits block ends in the middle of an entry")]
    ExtCutShort,
    #[error("limit type {0:#04x} is out of order")]
    LimitOrder(u8),
    /// VOUCHER.md assigns no meaning to type 0x00 (limits start at 0x01).
    #[error("limit type 0x00 does not exist")]
    LimitTypeZero,
    #[error("limit type {0:#04x} appears twice")]
    LimitRepeated(u8),
    #[error("limit type {kind:#04x} has {len} bytes, not 4")]
    LimitLength { kind: u8, len: u8 },
}

/// A field outside the range VOUCHER.md allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutOfRange {
    #[error("a duration of {0} s (allowed: 60 s to 365 days)")]
    Duration(u32),
    #[error("a device limit of {0} (allowed: 1 to 32)")]
    MaxDevices(u8),
    #[error("a data cap of {0} MiB (allowed: 1 MiB to 4 194 304 MiB)")]
    DataCap(u32),
    #[error("a download limit of {0} kbit/s (allowed: 64 to 10 000 000)")]
    DownRate(u32),
    #[error("an upload limit of {0} kbit/s (allowed: 64 to 10 000 000)")]
    UpRate(u32),
}

/// Every reason a voucher is refused, one variant per reason `VOUCHER.md` lists. Decoding and
/// verification produce the first four and `UnsupportedLimit`; `policy` produces the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("this is not a valid voucher code: {0}")]
    Malformed(Malformed),
    #[error("this voucher was made by a till this router does not trust (key {0})")]
    UnknownKey(KeyId),
    #[error("this voucher's signature does not match: it was altered or forged")]
    BadSignature,
    #[error("this voucher has {0}")]
    OutOfRange(OutOfRange),
    /// The voucher carries a limit (entry type `kind`) this router cannot enforce.
    #[error(
        "this voucher carries a limit (type {kind:#04x}) that needs newer router software; ask staff"
    )]
    UnsupportedLimit { kind: u8 },
    #[error("this voucher was cancelled by the venue")]
    Revoked,
    #[error("this voucher had to be used for the first time before {redeem_by} (Unix time)")]
    DeadlinePassed { redeem_by: u32 },
    #[error("this voucher's time is used up")]
    Expired { ended_at: i64 },
    #[error("this voucher is already in use on {max_devices} device(s), its limit")]
    DeviceLimit { max_devices: u8 },
    /// The voucher's data allowance (all its devices together) is used up.
    #[error("this voucher's data allowance is used up")]
    DataUsedUp,
    /// The venue chain's RADIUS server answered Access-Reject (with its Reply-Message, if any).
    #[error("the venue's central server refused this voucher{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    CentralRefused { message: Option<String> },
}

impl Rejection {
    /// A stable machine-readable name, for logs, events and the portal's page selection.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::UnknownKey(_) => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::OutOfRange(_) => "out_of_range",
            Rejection::UnsupportedLimit { .. } => "unsupported_limit",
            Rejection::Revoked => "revoked",
            Rejection::DeadlinePassed { .. } => "deadline_passed",
            Rejection::Expired { .. } => "expired",
            Rejection::DeviceLimit { .. } => "device_limit",
            Rejection::DataUsedUp => "data_used_up",
            Rejection::CentralRefused { .. } => "central_refused",
        }
    }
}

impl From<Malformed> for Rejection {
    fn from(m: Malformed) -> Self {
        Rejection::Malformed(m)
    }
}

/// A decoded token whose structure is valid but whose signature has not been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    pub voucher: Voucher,
    body: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl Voucher {
    /// 1, or 2 when the voucher has an extension block.
    pub fn version(&self) -> u8 {
        if self.ext.is_some() {
            VERSION_2
        } else {
            VERSION
        }
    }

    /// The voucher's limits (none for v1).
    pub fn limits(&self) -> Limits {
        self.ext.as_ref().map(|e| e.limits).unwrap_or_default()
    }

    /// The body bytes, laid out as VOUCHER.md says. `purchase_ref` longer than 32 bytes is
    /// refused by [`Voucher::check`]; callers that build vouchers call it first.
    pub fn body(&self) -> Vec<u8> {
        let r = self.purchase_ref.as_bytes();
        let mut b = Vec::with_capacity(FIXED_BODY_LEN + r.len());
        b.push(self.version());
        b.extend_from_slice(&self.key_id.0);
        b.extend_from_slice(&self.serial.to_be_bytes());
        b.extend_from_slice(&self.issued_at.to_be_bytes());
        b.extend_from_slice(&self.redeem_by.to_be_bytes());
        b.extend_from_slice(&self.duration_s.to_be_bytes());
        b.push(self.max_devices);
        b.push(r.len() as u8);
        b.extend_from_slice(r);
        if let Some(e) = &self.ext {
            let block = e.block();
            b.push(block.len().min(255) as u8);
            b.extend_from_slice(&block);
        }
        b
    }

    /// Checks every field against VOUCHER.md's ranges.
    pub fn check(&self) -> Result<(), Rejection> {
        let r = self.purchase_ref.as_bytes();
        if r.len() > MAX_REF_LEN {
            return Err(Malformed::RefTooLong(r.len().min(255) as u8).into());
        }
        if self.purchase_ref.chars().any(char::is_control) {
            return Err(Malformed::RefControlChar.into());
        }
        if !(MIN_DURATION_S..=MAX_DURATION_S).contains(&self.duration_s) {
            return Err(Rejection::OutOfRange(OutOfRange::Duration(self.duration_s)));
        }
        if !(MIN_DEVICES..=MAX_DEVICES).contains(&self.max_devices) {
            return Err(Rejection::OutOfRange(OutOfRange::MaxDevices(
                self.max_devices,
            )));
        }
        match &self.ext {
            Some(e) => e.check(),
            None => Ok(()),
        }
    }

    /// Signs the voucher and returns its token. The key must be the one `key_id` names.
    pub fn sign(&self, key: &SigningKey) -> Result<String, Rejection> {
        self.check()?;
        let body = self.body();
        let sig = key.sign(&signed_message(self.version(), &body));
        let mut raw = body;
        raw.extend_from_slice(&sig.to_bytes());
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// The absolute end of access if first redeemed at `first_redeemed_at`.
    pub fn ends_at(&self, first_redeemed_at: i64) -> i64 {
        first_redeemed_at + i64::from(self.duration_s)
    }
}

fn signed_message(version: u8, body: &[u8]) -> Vec<u8> {
    let prefix = if version == VERSION_2 {
        SIGNING_PREFIX_V2
    } else {
        SIGNING_PREFIX
    };
    let mut m = Vec::with_capacity(prefix.len() + body.len());
    m.extend_from_slice(prefix);
    m.extend_from_slice(body);
    m
}

/// Extracts the token from what a customer typed, pasted or scanned: the bare token or a URL
/// (any scheme, host and port) whose part after the last `/v/` is the token; surrounding white
/// space is trimmed.
pub fn token_from_input(input: &str) -> &str {
    let s = input.trim();
    match s.rfind("/v/") {
        Some(i) => s[i + 3..].trim(),
        None => s,
    }
}

/// Decodes a token (or any accepted input form) into its fields, checking structure only.
pub fn decode(input: &str) -> Result<Unverified, Rejection> {
    let token = token_from_input(input);
    if token.is_empty() {
        return Err(Malformed::Empty.into());
    }
    if token.len() > MAX_TOKEN_LEN_V2 + 8 {
        return Err(Malformed::TooLong.into());
    }
    if token.ends_with('=') {
        return Err(Malformed::Padding.into());
    }
    if !token
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(Malformed::BadCharacter.into());
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| Malformed::NotBase64)?;
    let shortest = FIXED_BODY_LEN + SIGNATURE_LEN;
    if raw.len() < shortest {
        return Err(Malformed::WrongLength {
            expected: shortest,
            actual: raw.len(),
        }
        .into());
    }
    let version = raw[0];
    if version != VERSION && version != VERSION_2 {
        return Err(Malformed::UnsupportedVersion(version).into());
    }
    let ref_len = raw[26];
    if usize::from(ref_len) > MAX_REF_LEN {
        return Err(Malformed::RefTooLong(ref_len).into());
    }
    let ref_end = FIXED_BODY_LEN + usize::from(ref_len);
    let mut body_len = ref_end;
    if version == VERSION_2 {
        // The ext_len byte must be there before it can be read.
        if raw.len() < ref_end + 1 + SIGNATURE_LEN {
            return Err(Malformed::WrongLength {
                expected: ref_end + 1 + SIGNATURE_LEN,
                actual: raw.len(),
            }
            .into());
        }
        let ext_len = raw[ref_end];
        if usize::from(ext_len) > ext::MAX_EXT_LEN {
            return Err(Malformed::ExtTooLong(ext_len).into());
        }
        body_len = ref_end + 1 + usize::from(ext_len);
    }
    if raw.len() != body_len + SIGNATURE_LEN {
        return Err(Malformed::WrongLength {
            expected: body_len + SIGNATURE_LEN,
            actual: raw.len(),
        }
        .into());
    }
    let purchase_ref = std::str::from_utf8(&raw[FIXED_BODY_LEN..ref_end])
        .map_err(|_| Malformed::RefNotUtf8)?
        .to_owned();
    if purchase_ref.chars().any(char::is_control) {
        return Err(Malformed::RefControlChar.into());
    }
    let ext = match version {
        VERSION_2 => Some(ext::parse(&raw[ref_end + 1..body_len])?),
        _ => None,
    };
    let be32 = |at: usize| u32::from_be_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    let mut serial = [0u8; 8];
    serial.copy_from_slice(&raw[5..13]);
    let voucher = Voucher {
        key_id: KeyId([raw[1], raw[2], raw[3], raw[4]]),
        serial: u64::from_be_bytes(serial),
        issued_at: be32(13),
        redeem_by: be32(17),
        duration_s: be32(21),
        max_devices: raw[25],
        purchase_ref,
        ext,
    };
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(&raw[body_len..]);
    let mut body = raw;
    body.truncate(body_len);
    Ok(Unverified {
        voucher,
        body,
        signature,
    })
}

impl Unverified {
    /// The exact body bytes that were signed.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Verifies the signature strictly with the trusted key that `key_id` names, then the
    /// field ranges.
    pub fn verify(self, keyring: &Keyring) -> Result<Voucher, Rejection> {
        let candidates = keyring.by_id(self.voucher.key_id);
        if candidates.is_empty() {
            return Err(Rejection::UnknownKey(self.voucher.key_id));
        }
        let sig = Signature::from_bytes(&self.signature);
        let msg = signed_message(self.body[0], &self.body);
        if !candidates
            .iter()
            .any(|k| k.verify_strict(&msg, &sig).is_ok())
        {
            return Err(Rejection::BadSignature);
        }
        self.voucher.check()?;
        Ok(self.voucher)
    }
}

/// Decodes and verifies in one step: what the router does with a customer's input.
pub fn verify(input: &str, keyring: &Keyring) -> Result<Voucher, Rejection> {
    decode(input)?.verify(keyring)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Voucher {
        Voucher {
            key_id: KeyId([1, 2, 3, 4]),
            serial: 7,
            issued_at: 1_764_547_200,
            redeem_by: 0,
            duration_s: 3600,
            max_devices: 3,
            purchase_ref: "R1".into(),
            ext: None,
        }
    }

    #[test]
    fn input_forms_reduce_to_the_token() {
        assert_eq!(token_from_input("  abc \n"), "abc");
        assert_eq!(token_from_input("http://h:1/v/abc"), "abc");
        assert_eq!(token_from_input("https://h/v/x/v/abc"), "abc");
    }

    #[test]
    fn body_layout_matches_offsets() {
        let b = sample().body();
        assert_eq!(b.len(), 29);
        assert_eq!(b[0], 1);
        assert_eq!(&b[1..5], &[1, 2, 3, 4]);
        assert_eq!(b[12], 7);
        assert_eq!(&b[21..25], &3600u32.to_be_bytes());
        assert_eq!(b[25], 3);
        assert_eq!(b[26], 2);
        assert_eq!(&b[27..], b"R1");
    }

    #[test]
    fn out_of_range_fields_are_refused_before_signing() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut v = sample();
        v.duration_s = 59;
        assert_eq!(
            v.sign(&key),
            Err(Rejection::OutOfRange(OutOfRange::Duration(59)))
        );
        let mut v = sample();
        v.max_devices = 33;
        assert!(matches!(v.sign(&key), Err(Rejection::OutOfRange(_))));
        let mut v = sample();
        v.purchase_ref = "x".repeat(33);
        assert!(matches!(
            v.sign(&key),
            Err(Rejection::Malformed(Malformed::RefTooLong(33)))
        ));
    }

    #[test]
    fn v2_body_appends_the_block_and_is_signed_with_its_own_prefix() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let ring = Keyring::new([key.verifying_key()]);
        let mut v = sample();
        v.key_id = KeyId::of(&key.verifying_key());
        v.ext = Some(Ext::with_limits(Limits {
            down_kbit: Some(2000),
            ..Limits::default()
        }));
        let b = v.body();
        assert_eq!(b[0], 2);
        assert_eq!(&b[29..], &[6, 2, 4, 0, 0, 0x07, 0xd0]);
        let token = v.sign(&key).unwrap();
        assert_eq!(verify(&token, &ring), Ok(v.clone()));
        // The same body signed with the v1 prefix is a bad signature.
        let sig = key.sign(&signed_message(VERSION, &b));
        let mut raw = b;
        raw.extend_from_slice(&sig.to_bytes());
        assert_eq!(
            verify(&URL_SAFE_NO_PAD.encode(raw), &ring),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn garbage_never_panics() {
        for s in ["", "=", "/v/", "AQ", &"A".repeat(500), "AAAA%%%%", "ü"] {
            assert!(decode(s).is_err(), "{s:?}");
        }
    }
}
