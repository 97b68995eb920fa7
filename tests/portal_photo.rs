//! The photo path: a phone's picture of a printed voucher — rotated, noisy, downscaled to
//! grayscale as the portal page does — still yields the voucher URL through the router's QR
//! decoder, and junk images yield nothing rather than a panic.

use wifipos::portal::routes::decode_qr;

fn voucher_png_gray(url: &str) -> (usize, Vec<u8>) {
    let png = wifipos::receipt::png(url).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.width, info.height);
    (info.width as usize, buf)
}

/// Rotates by `deg` around the centre onto a larger grey canvas, adds noise, then scales to
/// `out` pixels a side: roughly what a hand-held phone photo looks like after the page's canvas.
fn photograph(side: usize, px: &[u8], deg: f64, out: usize) -> Vec<u8> {
    let (s, c) = deg.to_radians().sin_cos();
    let canvas = side * 3 / 2;
    let mid = canvas as f64 / 2.0;
    let half = side as f64 / 2.0;
    let mut seed = 0x2545_f491_u64;
    let mut img = vec![0u8; out * out];
    for oy in 0..out {
        for ox in 0..out {
            let x = ox as f64 * canvas as f64 / out as f64 - mid;
            let y = oy as f64 * canvas as f64 / out as f64 - mid;
            let (sx, sy) = (c * x + s * y + half, -s * x + c * y + half);
            let v = if sx >= 0.0 && sy >= 0.0 && (sx as usize) < side && (sy as usize) < side {
                px[sy as usize * side + sx as usize]
            } else {
                200
            };
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let noise = ((seed >> 33) % 41) as i32 - 20;
            img[oy * out + ox] = (i32::from(v) * 3 / 4 + 30 + noise).clamp(0, 255) as u8;
        }
    }
    img
}

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
