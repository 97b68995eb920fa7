//! `shared/voucher-vectors.json` is the contract between till and router: every valid token
//! decodes to its fields and exact body bytes, signing with the vectors' key reproduces it byte
//! for byte, every invalid token is refused for its stated reason, and every accepted input
//! form yields its token.

#[path = "common/vectors.rs"]
mod shared_vectors;

use serde_json::Value;
use shared_vectors::{assert_fields, assert_public_key, hex, trusted};
use wifipos::keys::{self, Keyring};
use wifipos::voucher::{self, Rejection};

fn vectors() -> Value {
    shared_vectors::load("voucher-vectors.json")
}

#[test]
fn key_material_matches_the_vectors() {
    let v = vectors();
    let key = keys::parse_private_key_pem(v["private_key_pem"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex(&key.to_bytes()),
        v["private_key_seed_hex"].as_str().unwrap()
    );
    assert_public_key(&key.verifying_key(), &v);
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
        assert_fields(&got, f);
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
