//! RADIUS packets (`radius::packet`) on arbitrary bytes: an answer from anyone to an
//! accounting or access request (`check_response`, `check_access_answer`), a Disconnect/CoA
//! request from anyone (`check_das_request`), and attributes read back from the outbox
//! (`attributes`, `accounting_request`). Never panics; a request is always within RADIUS's
//! 4096 octets with a true length field; split attributes cover exactly the input; an answer
//! or a Disconnect request built the way a server builds it from the fuzzed attributes is
//! accepted, and a changed byte is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wifipos::radius::packet::{
    access_request, accounting_request, attributes, check_access_answer, check_das_request,
    check_response, das_answer, AccessQuery, MAX_PACKET,
};

fuzz_target!(|data: &[u8]| {
    let (id, delay, rest) = match data {
        [a, b, rest @ ..] => (*a, u32::from(*b), rest),
        _ => return,
    };
    let secret = b"fuzz-secret";
    if let Ok(a) = attributes(rest) {
        assert_eq!(
            a.iter().map(|(_, v)| v.len() + 2).sum::<usize>(),
            rest.len()
        );
    }
    let req = accounting_request(id, rest, delay, secret);
    assert!(req.len() <= MAX_PACKET && req.len() >= 20 + 6 + 18);
    assert_eq!(usize::from(u16::from_be_bytes([req[2], req[3]])), req.len());
    let sent = attributes(&req[20..]).expect("a request is always well formed");
    assert_eq!(
        sent.last().map(|a| a.0),
        Some(80),
        "Message-Authenticator last"
    );
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
        assert!(
            check_response(&resp, &req, secret).is_err(),
            "byte {at} changed"
        );
    }
    // Anything as the answer to an Access-Request, or as a Disconnect/CoA request.
    let q = AccessQuery {
        user_name: String::from_utf8_lossy(rest).into_owned(),
        mac: wifipos::mac::Mac([2, 0, 0, 0, 0, id]),
        nas_id: "fuzz".into(),
        voucher: String::from_utf8_lossy(rest).into_owned(),
        max_devices: id,
        duration_s: delay,
    };
    let areq = access_request(id, &[id; 16], &q, secret);
    assert!(areq.len() <= MAX_PACKET);
    assert!(attributes(&areq[20..]).is_ok());
    let _ = check_access_answer(rest, &areq, secret);
    let _ = check_das_request(rest, secret);
    // A Disconnect-Request signed as a server signs it: accepted (unless its attributes hold
    // a Message-Authenticator that is not one), answered well formed; a changed byte is not.
    let well_formed = attributes(rest).is_ok_and(|a| a.iter().all(|(t, _)| *t != 80));
    if rest.len() + 20 <= MAX_PACKET && well_formed {
        let mut p = vec![40, id, 0, 0];
        p[2..4].copy_from_slice(&((20 + rest.len()) as u16).to_be_bytes());
        let h = md5_of(&[&p[..4], &[0; 16], rest, secret]);
        p.extend_from_slice(&h);
        p.extend_from_slice(rest);
        let got = check_das_request(&p, secret).expect("a signed request");
        let ans = das_answer(&got, None, secret);
        assert!(ans.len() <= MAX_PACKET && attributes(&ans[20..]).is_ok());
        let at = delay as usize % p.len();
        p[at] ^= 0x80;
        assert!(check_das_request(&p, secret).is_err(), "byte {at} changed");
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
