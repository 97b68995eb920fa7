//! `voucher::decode`, `Unverified::verify` and `voucher::verify` (v1 and v2) on arbitrary input,
//! bare and as a portal URL (`…/v/<token>`). Never panics; whatever decodes re-encodes to the same token;
//! whatever verifies passes the range checks and re-signs to the same token.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use wifipos::keys::Keyring;
use wifipos::voucher::{decode, token_from_input, verify};

fn keys() -> &'static (SigningKey, Keyring) {
    static K: OnceLock<(SigningKey, Keyring)> = OnceLock::new();
    K.get_or_init(|| (wifipos_fuzz::signing_key(), wifipos_fuzz::keyring()))
}

fn check(input: &str) {
    let (key, keyring) = keys();
    let token = token_from_input(input);
    let decoded = decode(input);
    let verified = verify(input, keyring);
    match decoded {
        Ok(u) => {
            let raw = URL_SAFE_NO_PAD.decode(token).expect("decoded, so base64");
            assert_eq!(URL_SAFE_NO_PAD.encode(&raw), token, "non-canonical token");
            assert_eq!(u.voucher.body(), u.body(), "fields do not re-encode");
            assert_eq!(&raw[..u.body().len()], u.body());
            assert_eq!(
                u.voucher.version(),
                raw[0],
                "v1 or v2 as the version byte says"
            );
            assert_eq!(u.clone().verify(keyring), verified);
            if let Ok(v) = &verified {
                assert_eq!(v, &u.voucher);
                assert!(v.check().is_ok());
                assert_eq!(v.sign(key).expect("valid, so signable"), token);
            }
        }
        Err(e) => {
            assert_eq!(verified, Err(e.clone()), "verify disagrees with decode");
            assert!(!e.to_string().is_empty());
            assert!(!e.code().is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text);
    let url = format!("{}/v/{text}", wifipos_fuzz::PORTAL_URL);
    check(&url);
    // Unless the text itself holds "/v/" (or makes one with the prefix), both forms carry the
    // same token.
    if !text.contains("/v/") && !text.starts_with("v/") {
        assert_eq!(token_from_input(&url), text.trim());
        assert_eq!(
            decode(&url),
            decode(&text),
            "the URL form decodes differently"
        );
    }
});
