//! `shared/voucher-vectors-v2.json` (VOUCHER.md, "Version 2"): every valid token decodes to its
//! fields, limits and exact body bytes, signing its fields with the vectors' key reproduces it
//! byte for byte, and every invalid token is refused for its stated reason. v1's vectors are
//! `voucher_vectors.rs`.

#[path = "common/vectors.rs"]
mod shared_vectors;

use ed25519_dalek::SigningKey;
use serde_json::Value;
use shared_vectors::{assert_fields, assert_public_key, hex, trusted};
use wifipos::voucher::{self, Rejection};

fn vectors() -> Value {
    shared_vectors::load("voucher-vectors-v2.json")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn signing_key(v: &Value) -> SigningKey {
    let seed: [u8; 32] = unhex(v["private_key_seed_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    SigningKey::from_bytes(&seed)
}

fn limit(f: &Value, name: &str) -> Option<u32> {
    f["limits"]
        .get(name)
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
}

#[test]
fn the_key_matches_the_vectors() {
    let v = vectors();
    assert_public_key(&signing_key(&v).verifying_key(), &v);
}

#[test]
fn valid_tokens_decode_to_their_fields_limits_and_body_bytes() {
    let v = vectors();
    let ring = trusted(&v);
    let valid = v["valid"].as_array().unwrap();
    assert!(valid.len() >= 5);
    for case in valid {
        let token = case["token"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        let f = &case["fields"];
        let u = voucher::decode(token).unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(hex(u.body()), case["body_hex"].as_str().unwrap(), "{why}");
        let got = u.verify(&ring).unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(u64::from(got.version()), f["version"].as_u64().unwrap());
        assert_eq!(got.version(), 2, "{why}");
        assert_fields(&got, f);
        let l = got.limits();
        assert_eq!(l.data_cap_mib, limit(f, "data_cap_mib"), "{why}");
        assert_eq!(l.down_kbit, limit(f, "down_kbit"), "{why}");
        assert_eq!(l.up_kbit, limit(f, "up_kbit"), "{why}");
        assert_eq!(
            f["limits"].as_object().unwrap().len(),
            [l.data_cap_mib, l.down_kbit, l.up_kbit]
                .iter()
                .flatten()
                .count(),
            "{why}: a limit the vector does not name"
        );
        assert!(
            (voucher::MIN_TOKEN_LEN_V2..=voucher::MAX_TOKEN_LEN_V2).contains(&token.len()),
            "{why}: {} characters",
            token.len()
        );
    }
}

#[test]
fn the_largest_vector_is_the_longest_token_and_the_empty_one_the_shortest() {
    let v = vectors();
    let lens: Vec<usize> = v["valid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["token"].as_str().unwrap().len())
        .collect();
    assert_eq!(lens.iter().max(), Some(&voucher::MAX_TOKEN_LEN_V2));
    // ext_len 0 and an empty purchase_ref: 28 + 64 bytes.
    assert_eq!(lens.iter().min(), Some(&voucher::MIN_TOKEN_LEN_V2));
}

#[test]
fn signing_with_the_vector_key_reproduces_valid_tokens_byte_for_byte() {
    let v = vectors();
    let key = signing_key(&v);
    for case in v["valid"].as_array().unwrap() {
        let token = case["token"].as_str().unwrap();
        let fields = voucher::decode(token).unwrap().voucher;
        assert_eq!(fields.sign(&key).unwrap(), token, "{}", case["why"]);
    }
}

#[test]
fn invalid_tokens_are_refused_for_their_stated_reason() {
    let v = vectors();
    let ring = trusted(&v);
    let invalid = v["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 15);
    let mut seen = std::collections::BTreeSet::new();
    for case in invalid {
        let token = case["token"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        let expected = case["reason"].as_str().unwrap();
        let err = voucher::verify(token, &ring).expect_err(why);
        let got = match err {
            Rejection::Malformed(_) => "malformed",
            Rejection::UnknownKey(_) => "unknown key",
            Rejection::BadSignature => "bad signature",
            Rejection::OutOfRange(_) => "out of range",
            Rejection::UnsupportedLimit { .. } => "unsupported limit",
            ref other => panic!("{why}: unexpected {other:?}"),
        };
        assert_eq!(got, expected, "{why}: got {err}");
        seen.insert(got);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "bad signature",
            "malformed",
            "out of range",
            "unsupported limit"
        ]
    );
}

#[test]
fn the_unsupported_limit_refusal_tells_the_guest_to_ask_staff() {
    let v = vectors();
    let ring = trusted(&v);
    let case = v["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["reason"] == "unsupported limit")
        .unwrap();
    let err = voucher::verify(case["token"].as_str().unwrap(), &ring).unwrap_err();
    assert_eq!(err, Rejection::UnsupportedLimit { kind: 0x04 });
    assert_eq!(err.code(), "unsupported_limit");
    let text = err.to_string();
    assert!(
        text.contains("newer router software") && text.contains("ask staff"),
        "{text}"
    );
}
