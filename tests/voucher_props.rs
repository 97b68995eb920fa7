//! Property tests of the voucher contract: random vouchers round-trip through encode/decode and
//! sign/verify, and no single-bit change to a token survives verification.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use wifipos::keys::{KeyId, Keyring};
use wifipos::voucher::{self, Voucher};

fn arb_voucher() -> impl Strategy<Value = (Voucher, [u8; 32])> {
    (
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        60u32..=31_536_000,
        1u8..=32,
        "[a-zA-Z0-9 é☕#/-]{0,8}",
    )
        .prop_map(
            |(seed, serial, issued_at, redeem_by, duration_s, max_devices, r)| {
                let key = SigningKey::from_bytes(&seed);
                (
                    Voucher {
                        key_id: KeyId::of(&key.verifying_key()),
                        serial,
                        issued_at,
                        redeem_by,
                        duration_s,
                        max_devices,
                        purchase_ref: r,
                        ext: None,
                    },
                    seed,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_vouchers_round_trip((v, seed) in arb_voucher()) {
        let key = SigningKey::from_bytes(&seed);
        let ring = Keyring::new([key.verifying_key()]);
        let token = v.sign(&key).unwrap();
        prop_assert!(token.len() >= voucher::MIN_TOKEN_LEN && token.len() <= voucher::MAX_TOKEN_LEN);
        prop_assert_eq!(&voucher::decode(&token).unwrap().voucher, &v);
        prop_assert_eq!(voucher::verify(&token, &ring).unwrap(), v);
    }

}

proptest! {
    // Each case verifies ~1 000 flipped tokens.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_single_bit_flip_is_rejected((v, seed) in arb_voucher()) {
        let key = SigningKey::from_bytes(&seed);
        let ring = Keyring::new([key.verifying_key()]);
        let raw = URL_SAFE_NO_PAD.decode(v.sign(&key).unwrap()).unwrap();
        for bit in 0..raw.len() * 8 {
            let mut flipped = raw.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let token = URL_SAFE_NO_PAD.encode(&flipped);
            prop_assert!(voucher::verify(&token, &ring).is_err(), "bit {} accepted", bit);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_decoder(s in "\\PC{0,300}") {
        let _ = voucher::decode(&s);
    }
}
