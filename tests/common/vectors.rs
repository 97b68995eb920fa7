//! The voucher test vectors, shared by voucher_vectors.rs (v1) and voucher_vectors_v2.rs (v2):
//! loading tests/fixtures' copy, checked against the contract in ../shared.
#![allow(dead_code)]

use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use wifipos::keys::{self, KeyId, Keyring};
use wifipos::voucher::Voucher;

/// tests/fixtures/`name` parsed. The contract lives in ../shared/`name`; the committed copy
/// must not drift from it. Under CI=true a missing ../shared fails the test; elsewhere the
/// copy is used, said so on stderr.
pub fn load(name: &str) -> Value {
    let copy = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(&copy).unwrap_or_else(|e| panic!("tests/fixtures/{name}: {e}"));
    let shared = format!("{}/../shared/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read_to_string(&shared) {
        Ok(s) => assert_eq!(s, text, "tests/fixtures copy differs from {shared}"),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{shared} is missing; CI must check the shared contract")
        }
        Err(_) => eprintln!("note: {shared} not found, using the committed copy"),
    }
    serde_json::from_str(&text).unwrap()
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts `public` is the vectors' public key: its base64 and its key id.
pub fn assert_public_key(public: &VerifyingKey, v: &Value) {
    assert_eq!(
        keys::public_key_b64(public),
        v["public_key_b64"].as_str().unwrap()
    );
    assert_eq!(
        KeyId::of(public).to_string(),
        v["key_id_hex"].as_str().unwrap()
    );
}

/// A keyring trusting the vectors' `public_key_b64`.
pub fn trusted(v: &Value) -> Keyring {
    Keyring::from_b64(&[v["public_key_b64"].as_str().unwrap()]).unwrap()
}

/// Asserts a verified voucher carries a valid vector's `fields` (key id, serial, times,
/// duration, devices, purchase reference).
pub fn assert_fields(got: &Voucher, f: &Value) {
    assert_eq!(got.key_id.to_string(), f["key_id_hex"].as_str().unwrap());
    assert_eq!(got.serial, f["serial"].as_u64().unwrap());
    assert_eq!(u64::from(got.issued_at), f["issued_at"].as_u64().unwrap());
    assert_eq!(u64::from(got.redeem_by), f["redeem_by"].as_u64().unwrap());
    assert_eq!(u64::from(got.duration_s), f["duration_s"].as_u64().unwrap());
    assert_eq!(
        u64::from(got.max_devices),
        f["max_devices"].as_u64().unwrap()
    );
    assert_eq!(got.purchase_ref, f["purchase_ref"].as_str().unwrap());
}
