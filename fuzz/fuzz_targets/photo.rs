//! The photo upload path: `portal::routes::decode_qr` on arbitrary grayscale pixels, and the
//! whole `POST /photo?w=…&h=…` handler (size checks, QR decoding, redemption through a
//! verifying gate). Input: two bytes of width (big-endian), then pixels, row by row. Never
//! panics; libFuzzer's -timeout bounds the time.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use wifipos::mac::Mac;
use wifipos::portal::photo::MAX_PHOTO_PIXELS;
use wifipos::portal::routes::{decode_qr, MAX_PHOTO_SIDE};
use wifipos::portal::{Answer, Portal, Req};
use wifipos_fuzz::VerifyGate;

thread_local! {
    static PORTAL: RefCell<Portal<VerifyGate>> =
        RefCell::new(Portal::new(wifipos_fuzz::portal_config(), VerifyGate::default()));
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let w = usize::from(u16::from_be_bytes([data[0], data[1]])).clamp(1, MAX_PHOTO_SIDE);
    let px = &data[2..];
    let h = (px.len() / w).min(MAX_PHOTO_SIDE).min(MAX_PHOTO_PIXELS / w);
    if h == 0 {
        return;
    }
    let px = &px[..w * h];
    assert_eq!(decode_qr(w + 1, h, px), None, "a wrong size was decoded");
    let direct = decode_qr(w, h, px);
    let req = Req {
        method: "POST".into(),
        host: Some("10.20.0.1:2050".into()),
        path: "/photo".into(),
        query: Some(format!("w={w}&h={h}")),
        body: px.to_vec(),
        mac: Some(Mac([2, 0, 0, 0, 0, 1])),
        now: 1_764_547_200,
        ..Req::default()
    };
    // The fuzzed gate never asks a central server: every answer is at once.
    let resp = match PORTAL.with(|p| p.borrow_mut().answer(&req)) {
        Answer::Now(r) => r,
        Answer::Ask(_) => panic!("this gate asks no central server"),
    };
    match direct {
        None => assert_eq!(resp.status, 422, "no QR code, but {}", resp.status),
        Some(_) => assert!(
            matches!(resp.status, 200 | 400 | 403 | 429),
            "status {}",
            resp.status
        ),
    }
});
