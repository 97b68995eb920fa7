//! The photo path: a phone's picture of a printed voucher — rotated, noisy, downscaled to
//! grayscale as the portal page does — still yields the voucher URL through the router's QR
//! decoder, and junk images yield nothing rather than a panic.

mod common;

use common::{photograph, voucher_png_gray};
use wifipos::portal::routes::decode_qr;

#[test]
fn a_rotated_noisy_photo_of_a_voucher_decodes_to_its_url() {
    let url = "http://10.20.0.1:2050/v/AWW2BnMAAAAAAAAAAWks2oAAAAAAAAAOEAMAUHz9hBTPiHg9o9iGlBY2MlZaTK4yEGeKnpZ16tCtitLMz1zWswe5PdUVaLGeRNm1wdX8HJ5OZGLkHiqi5BJtDw";
    let (side, px) = voucher_png_gray(url);
    for deg in [0.0, 8.0, -15.0] {
        let photo = photograph(side, &px, deg, 900);
        assert_eq!(
            decode_qr(900, 900, &photo).as_deref(),
            Some(url),
            "rotated {deg}°"
        );
    }
}

#[test]
fn images_without_a_code_yield_nothing() {
    assert_eq!(decode_qr(64, 64, &[255; 64 * 64]), None);
    let mut seed = 7u64;
    let noise: Vec<u8> = (0..300 * 300)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 56) as u8
        })
        .collect();
    assert_eq!(decode_qr(300, 300, &noise), None);
    assert_eq!(decode_qr(10, 10, &[0; 5]), None, "wrong length");
}
