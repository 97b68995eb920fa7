//! `shared/voucher-vectors.json` is the contract between till and router: every valid token
//! decodes to its fields and exact body bytes, signing with the vectors' key reproduces it byte
//! for byte, every invalid token is refused for its stated reason, and every accepted input
//! form yields its token.

use serde_json::Value;
use wifipos::keys::{self, KeyId, Keyring};
use wifipos::voucher::{self, Rejection};

fn vectors() -> Value {
    let copy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/voucher-vectors.json"
    );
    let text = std::fs::read_to_string(copy).expect("tests/fixtures/voucher-vectors.json");
    // The contract lives in ../shared; our copy must not drift from it.
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/voucher-vectors.json"
    );
    match std::fs::read_to_string(shared) {
        Ok(s) => assert_eq!(s, text, "tests/fixtures copy differs from {shared}"),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{shared} is missing; CI must check the shared contract")
        }
        Err(_) => eprintln!("note: {shared} not found, using the committed copy"),
    }
    serde_json::from_str(&text).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn trusted(v: &Value) -> Keyring {
    Keyring::from_b64(&[v["public_key_b64"].as_str().unwrap()]).unwrap()
}

#[test]
fn key_material_matches_the_vectors() {
    let v = vectors();
    let key = keys::parse_private_key_pem(v["private_key_pem"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex(&key.to_bytes()),
        v["private_key_seed_hex"].as_str().unwrap()
    );
    let public = key.verifying_key();
    assert_eq!(
        keys::public_key_b64(&public),
        v["public_key_b64"].as_str().unwrap()
    );
    assert_eq!(
        KeyId::of(&public).to_string(),
        v["key_id_hex"].as_str().unwrap()
    );
}

#[test]
fn valid_tokens_decode_to_their_fields_and_body_bytes() {
    let v = vectors();
    let ring = trusted(&v);
    let valid = v["valid"].as_array().unwrap();
    assert!(valid.len() >= 4);
    for case in valid {
        let token = case["token"].as_str().unwrap();
        let f = &case["fields"];
        let u = voucher::decode(token).unwrap();
        assert_eq!(hex(u.body()), case["body_hex"].as_str().unwrap());
        let got = u.verify(&ring).unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(f["version"], 1);
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
        assert!((voucher::MIN_TOKEN_LEN..=voucher::MAX_TOKEN_LEN).contains(&token.len()));
    }
}

#[test]
fn signing_with_the_vector_key_reproduces_valid_tokens_byte_for_byte() {
    let v = vectors();
    let key = keys::parse_private_key_pem(v["private_key_pem"].as_str().unwrap()).unwrap();
    for case in v["valid"].as_array().unwrap() {
        let token = case["token"].as_str().unwrap();
        let fields = voucher::decode(token).unwrap().voucher;
        assert_eq!(fields.sign(&key).unwrap(), token);
    }
}

#[test]
fn invalid_tokens_are_refused_for_their_stated_reason() {
    let v = vectors();
    let ring = trusted(&v);
    let invalid = v["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 10);
    for case in invalid {
        let token = case["token"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        let expected = why.split(':').next().unwrap();
        let err = voucher::verify(token, &ring).expect_err(why);
        let got = match err {
            Rejection::Malformed(_) => "malformed",
            Rejection::UnknownKey(_) => "unknown key",
            Rejection::BadSignature => "bad signature",
            Rejection::OutOfRange(_) => "out of range",
            other => panic!("{why}: unexpected {other:?}"),
        };
        assert_eq!(got, expected, "{why}: got {err}");
    }
}

#[test]
fn the_untrusted_key_verifies_nothing() {
    let v = vectors();
    let other = Keyring::from_b64(&[v["untrusted_public_key_b64"].as_str().unwrap()]).unwrap();
    for case in v["valid"].as_array().unwrap() {
        let err = voucher::verify(case["token"].as_str().unwrap(), &other).unwrap_err();
        assert!(matches!(err, Rejection::UnknownKey(_)), "{err:?}");
    }
}

#[test]
fn accepted_input_forms_yield_their_token() {
    let v = vectors();
    let ring = trusted(&v);
    for case in v["accepted_input_forms"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        assert_eq!(voucher::token_from_input(input), token);
        voucher::verify(input, &ring).unwrap();
    }
}
