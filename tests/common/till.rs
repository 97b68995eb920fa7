//! A till for the tests that drive the sessions directly: one fixed signing key and vouchers
//! of one hour made with it, and the wall clock they are dated by.

use ed25519_dalek::SigningKey;
use wifipos::keys::KeyId;

pub fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// The key's id, as vouchers and the store name it.
pub fn key_id() -> KeyId {
    KeyId::of(&key().verifying_key())
}

/// A one-hour voucher for `max_devices`, issued at `issued`.
pub fn token(serial: u64, max_devices: u8, issued: i64) -> String {
    wifipos::voucher::Voucher {
        key_id: key_id(),
        serial,
        issued_at: issued as u32,
        redeem_by: 0,
        duration_s: 3600,
        max_devices,
        purchase_ref: String::new(),
        ext: None,
    }
    .sign(&key())
    .unwrap()
}
