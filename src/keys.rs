//! Keys as VOUCHER.md defines them: PKCS#8 PEM private keys (the till's), standard-base64 raw
//! public keys (the router's `list trusted_key`), and the 4-byte key_id that picks a key.
//!
//! Owns: parsing and formatting keys, the [`Keyring`] of trusted public keys, and writing a new
//! private key file safely (mode 0600, never over an existing file). Knows nothing of vouchers'
//! layout or of HTTP, SQL and nftables.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// The first 4 bytes of SHA-256 of the raw 32-byte public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        let h = Sha256::digest(key.as_bytes());
        KeyId([h[0], h[1], h[2], h[3]])
    }

    /// Parses 8 hex digits, as printed by [`KeyId`]'s `Display`.
    pub fn from_hex(s: &str) -> Option<KeyId> {
        let s = s.trim();
        if s.len() != 8 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let n = u32::from_str_radix(s, 16).ok()?;
        Some(KeyId(n.to_be_bytes()))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an Ed25519 private key in PKCS#8 PEM form (\"-----BEGIN PRIVATE KEY-----\"); make one with `wifipos keygen`")]
    NotPrivateKey { path: String },
    #[error("{path} already exists; refusing to overwrite a key (move it away first)")]
    Exists { path: String },
    #[error("cannot write the key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the random number generator failed: {0}")]
    Random(String),
    #[error("'{0}' is not a public key: expected standard base64 of 32 bytes, like the line `wifipos keygen` prints")]
    BadPublicKey(String),
    #[error("'{0}' is a weak (small-order) Ed25519 key and cannot be trusted")]
    WeakPublicKey(String),
}

/// Reads a PKCS#8 PEM private key, as written by `wifipos keygen` or
/// `openssl genpkey -algorithm ed25519`.
pub fn read_private_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_private_key_pem(&text).ok_or_else(|| KeyError::NotPrivateKey {
        path: path.display().to_string(),
    })
}

pub fn parse_private_key_pem(text: &str) -> Option<SigningKey> {
    SigningKey::from_pkcs8_pem(text.trim()).ok()
}

pub fn private_key_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(Default::default())
        .map(|z| z.to_string())
        .unwrap_or_default()
}

/// A fresh key from the operating system's random number generator.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `key` as PKCS#8 PEM to a new file with mode 0600; an existing file is never touched.
pub fn write_new_private_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let name = path.display().to_string();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: name.clone() }
        } else {
            KeyError::Write {
                path: name.clone(),
                source,
            }
        }
    })?;
    f.write_all(private_key_pem(key).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|source| KeyError::Write { path: name, source })
}

/// The public key as the router's config wants it: standard base64 with padding.
pub fn public_key_b64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, KeyError> {
    let s = b64.trim();
    let bad = || KeyError::BadPublicKey(s.to_owned());
    let raw: [u8; 32] = STANDARD
        .decode(s)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad())?;
    if key.is_weak() {
        return Err(KeyError::WeakPublicKey(s.to_owned()));
    }
    Ok(key)
}

/// The public keys a router trusts. Several tills or a key rotation mean several keys.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<(KeyId, VerifyingKey)>,
}

impl Keyring {
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Keyring {
        Keyring {
            keys: keys.into_iter().map(|k| (KeyId::of(&k), k)).collect(),
        }
    }

    /// Parses base64 public keys, as listed in the config.
    pub fn from_b64<S: AsRef<str>>(keys: &[S]) -> Result<Keyring, KeyError> {
        let parsed = keys
            .iter()
            .map(|k| parse_public_key(k.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring::new(parsed))
    }

    /// Every trusted key with this id (a 32-bit id can collide; all are tried).
    pub fn by_id(&self, id: KeyId) -> Vec<&VerifyingKey> {
        self.keys
            .iter()
            .filter(|(k, _)| *k == id)
            .map(|(_, v)| v)
            .collect()
    }

    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|(k, _)| *k)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_hex_round_trips() {
        let id = KeyId([0x65, 0xb6, 0x06, 0x73]);
        assert_eq!(id.to_string(), "65b60673");
        assert_eq!(KeyId::from_hex("65b60673"), Some(id));
        assert_eq!(KeyId::from_hex("65b6067"), None);
        assert_eq!(KeyId::from_hex("65b6067z"), None);
    }

    #[test]
    fn public_keys_are_validated() {
        assert!(parse_public_key("abc").is_err());
        assert!(parse_public_key(&STANDARD.encode([0u8; 31])).is_err());
        // The identity point is small-order.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert!(matches!(
            parse_public_key(&STANDARD.encode(ident)),
            Err(KeyError::WeakPublicKey(_))
        ));
    }

    #[test]
    fn pem_round_trips() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let pem = private_key_pem(&k);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            parse_private_key_pem(&pem).unwrap().to_bytes(),
            k.to_bytes()
        );
    }
}
