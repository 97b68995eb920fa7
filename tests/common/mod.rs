//! Helpers shared by integration tests. Each test binary uses a part of them.
#![allow(dead_code)]

pub mod fixtures;
pub mod freeradius;
pub mod lab;
pub mod till;

/// Waits until `f` holds, checking every 50 ms; panics naming `what` after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The status code of a raw HTTP/1.1 response text, 0 if there is none.
pub fn http_status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

pub fn voucher_png_gray(url: &str) -> (usize, Vec<u8>) {
    gray_png(wifipos::receipt::png(url).unwrap())
}

pub fn voucher_png_gray_file(path: &std::path::Path) -> (usize, Vec<u8>) {
    gray_png(std::fs::read(path).unwrap())
}

/// Decodes a square 8-bit grayscale PNG.
fn gray_png(png: Vec<u8>) -> (usize, Vec<u8>) {
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
pub fn photograph(side: usize, px: &[u8], deg: f64, out: usize) -> Vec<u8> {
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

/// Writes 8-bit grayscale pixels as a PNG file.
pub fn write_gray_png(path: &std::path::Path, side: usize, px: &[u8]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(px).unwrap();
}
