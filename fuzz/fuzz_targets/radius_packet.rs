//! RADIUS accounting packets (`radius::packet`) on arbitrary bytes: an answer from anyone
//! (`check_response`) and attributes read back from the outbox (`attributes`,
//! `accounting_request`). Never panics; a request is always within RADIUS's 4096 octets with a
//! true length field; split attributes cover exactly the input; an answer built the way a
//! server builds it from the fuzzed attributes is accepted, and a changed byte is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wifipos::radius::packet::{accounting_request, attributes, check_response, MAX_PACKET};

fuzz_target!(|data: &[u8]| {
    let (id, delay, rest) = match data {
        [a, b, rest @ ..] => (*a, u32::from(*b), rest),
        _ => return,
    };
    let secret = b"fuzz-secret";
    if let Ok(a) = attributes(rest) {
        assert_eq!(a.iter().map(|(_, v)| v.len() + 2).sum::<usize>(), rest.len());
    }
    let req = accounting_request(id, rest, delay, secret);
    assert!(req.len() <= MAX_PACKET && req.len() >= 20 + 6 + 18);
    assert_eq!(usize::from(u16::from_be_bytes([req[2], req[3]])), req.len());
    let sent = attributes(&req[20..]).expect("a request is always well formed");
    assert_eq!(sent.last().map(|a| a.0), Some(80), "Message-Authenticator last");
    // Anything as an answer: never a panic.
    let _ = check_response(rest, &req, secret);
    // A server's answer carrying `rest` as attributes, if they are well formed.
    if rest.len() + 20 <= MAX_PACKET && attributes(rest).is_ok() {
        let mut resp = vec![5, id, 0, 0];
        resp[2..4].copy_from_slice(&((20 + rest.len()) as u16).to_be_bytes());
        let h = md5_of(&[&resp[..4], &req[4..20], rest, secret]);
        resp.extend_from_slice(&h);
        resp.extend_from_slice(rest);
        assert_eq!(check_response(&resp, &req, secret), Ok(()));
        let at = delay as usize % resp.len();
        resp[at] ^= 0x80;
        assert!(check_response(&resp, &req, secret).is_err(), "byte {at} changed");
    }
});

fn md5_of(parts: &[&[u8]]) -> [u8; 16] {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}
