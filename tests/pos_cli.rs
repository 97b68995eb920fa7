//! The till's command line, run as a real process: keys, vouchers as PNG/SVG/terminal/ESC-POS/
//! JSON, inspection, and every kind of bad input getting a sentence and exit code 2 (never a
//! panic). QR images are read back by independent decoders (rqrr, and zbarimg when installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wifipos::keys::Keyring;
use wifipos::voucher;

const BIN: &str = env!("CARGO_BIN_EXE_wifipos");
const PORTAL: &str = "http://10.20.0.1:2050";

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run wifipos")
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "wifipos {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail cleanly: exit 2, a `wifipos:` sentence, no panic.
fn fails(args: &[&str], needle: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

struct Till {
    dir: tempfile::TempDir,
    key: PathBuf,
    pubkey: String,
}

fn till() -> Till {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("till.pem");
    let out = ok(&["keygen", "--out", key.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let pubkey = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("list trusted_key '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("keygen prints the UCI line")
        .to_owned();
    Till { dir, key, pubkey }
}

impl Till {
    fn key(&self) -> &str {
        self.key.to_str().unwrap()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn ring(&self) -> Keyring {
        Keyring::from_b64(&[&self.pubkey]).unwrap()
    }
}

fn decode_png_rqrr(path: &Path) -> String {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    decode_gray(w, h, &buf)
}

fn decode_gray(w: usize, h: usize, px: &[u8]) -> String {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| px[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("QR decodes").1
}

#[test]
fn keygen_writes_a_private_key_readable_only_by_its_owner_and_never_overwrites() {
    let t = till();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&t.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&t.key).unwrap();
    assert!(String::from_utf8_lossy(&before).starts_with("-----BEGIN PRIVATE KEY-----"));
    fails(&["keygen", "--out", t.key()], "refusing to overwrite");
    assert_eq!(std::fs::read(&t.key).unwrap(), before);

    let out = ok(&["pubkey", "--key", t.key()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&t.pubkey), "{text}");
    assert!(text.contains("key_id "));
}

#[test]
fn a_key_made_by_openssl_signs_vouchers_the_router_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("openssl.pem");
    let st = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status();
    match st {
        Ok(s) if s.success() => {}
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!("openssl is required in CI"),
        _ => {
            eprintln!("SKIPPED: openssl not available");
            return;
        }
    }
    let k = key.to_str().unwrap();
    let pubkey = String::from_utf8(ok(&["pubkey", "--key", k]).stdout).unwrap();
    let ring = Keyring::from_b64(&[pubkey.lines().next().unwrap()]).unwrap();
    let out = ok(&["issue", "--key", k, "--duration", "1h", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    voucher::verify(j["token"].as_str().unwrap(), &ring).unwrap();
}

#[test]
fn png_voucher_decodes_to_exactly_the_voucher_url() {
    let t = till();
    let png_path = t.path("v.png");
    ok(&[
        "issue",
        "--key",
        t.key(),
        "--duration",
        "2h",
        "--devices",
        "3",
        "--ref",
        "PUR123",
        "--format",
        "png",
        "--out",
        png_path.to_str().unwrap(),
    ]);
    let url = decode_png_rqrr(&png_path);
    let token = url.strip_prefix(&format!("{PORTAL}/v/")).expect(&url);
    let v = voucher::verify(token, &t.ring()).unwrap();
    assert_eq!((v.duration_s, v.max_devices), (7200, 3));
    assert_eq!(v.purchase_ref, "PUR123");

    // A second, unrelated decoder (ZBar) must agree, where it is installed.
    match Command::new("zbarimg")
        .args(["-q", "--raw"])
        .arg(&png_path)
        .output()
    {
        Ok(o) => assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), url),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("zbarimg required in CI"),
        Err(_) => eprintln!("SKIPPED zbarimg check: not installed"),
    }
}

#[test]
fn svg_voucher_renders_and_decodes_to_exactly_the_voucher_url() {
    let t = till();
    let svg_path = t.path("v.svg");
    ok(&[
        "issue",
        "--key",
        t.key(),
        "--duration",
        "90m",
        "--portal-url",
        "http://192.168.8.1:2050/",
        "--format",
        "svg",
        "--out",
        svg_path.to_str().unwrap(),
    ]);
    let data = std::fs::read(&svg_path).unwrap();
    let tree = resvg::usvg::Tree::from_data(&data, &Default::default()).unwrap();
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(&tree, Default::default(), &mut pixmap.as_mut());
    let gray: Vec<u8> = pixmap.data().chunks(4).map(|p| p[0]).collect();
    let url = decode_gray(size.width() as usize, size.height() as usize, &gray);
    let token = url.strip_prefix("http://192.168.8.1:2050/v/").expect(&url);
    assert_eq!(voucher::verify(token, &t.ring()).unwrap().duration_s, 5400);
}

#[test]
fn terminal_output_draws_the_code_and_says_the_terms() {
    let t = till();
    let out = ok(&[
        "issue",
        "--key",
        t.key(),
        "--duration",
        "1d",
        "--devices",
        "2",
        "--redeem-within",
        "30d",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains('█') && text.contains('▀'),
        "half blocks drawn"
    );
    assert!(text.contains("Wi-Fi for 1 d"));
    assert!(text.contains("Up to 2 devices"));
    assert!(text.contains("Use before "));
    let url = text.lines().last().unwrap();
    let v = voucher::verify(url, &t.ring()).unwrap();
    assert!(v.redeem_by > v.issued_at + 29 * 86_400);
}

/// Splits an ESC/POS stream into the commands this receipt uses, failing on anything else.
#[test]
fn escpos_receipt_initialises_prints_the_url_as_a_native_qr_and_cuts() {
    let t = till();
    let out = ok(&[
        "issue",
        "--key",
        t.key(),
        "--duration",
        "2h",
        "--devices",
        "3",
        "--redeem-within",
        "7d",
        "--format",
        "escpos",
        "--venue",
        "Café Nord",
        "--paper",
        "58",
    ]);
    let b = out.stdout;
    assert_eq!(&b[..2], &[0x1b, b'@'], "starts with ESC @");
    assert_eq!(
        &b[b.len() - 4..],
        &[0x1d, b'V', 66, 3],
        "ends with feed and cut"
    );

    // Collect every GS ( k function with its parameters.
    let mut qr_fns = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() {
        if b[i..].starts_with(&[0x1d, b'(', b'k']) {
            let len = usize::from(b[i + 3]) | usize::from(b[i + 4]) << 8;
            let body = &b[i + 5..i + 5 + len];
            assert_eq!(body[0], 49, "cn = 49 (QR code)");
            qr_fns.push((body[1], body[2..].to_vec()));
            i += 5 + len;
        } else {
            i += 1;
        }
    }
    let fns: Vec<u8> = qr_fns.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        fns,
        [65, 67, 69, 80, 81],
        "model, size, error level, store, print"
    );
    assert_eq!(qr_fns[0].1, [50, 0], "model 2");
    assert!((1..=16).contains(&qr_fns[1].1[0]), "module size");
    assert_eq!(qr_fns[2].1, [49], "error correction M");
    assert_eq!(qr_fns[4].1, [48]);
    let stored = &qr_fns[3].1;
    assert_eq!(stored[0], 48);
    let url = std::str::from_utf8(&stored[1..]).unwrap();
    assert!(url.starts_with(&format!("{PORTAL}/v/")));
    voucher::verify(url, &t.ring()).unwrap();

    let text = String::from_utf8_lossy(&b);
    assert!(text.contains("Caf? Nord"), "venue, ASCII-safe");
    assert!(text.contains("Wi-Fi for 2 h") && text.contains("Up to 3 devices"));
    assert!(text.contains("Use before "));
}

#[test]
fn count_writes_distinct_vouchers_named_by_serial() {
    let t = till();
    let dir = t.path("roll");
    std::fs::create_dir(&dir).unwrap();
    ok(&[
        "issue",
        "--key",
        t.key(),
        "--duration",
        "1h",
        "--count",
        "5",
        "--format",
        "json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let mut serials = std::collections::HashSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let serial = j["serial"].as_u64().unwrap();
        assert_eq!(
            path.file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            serial
        );
        let v = voucher::verify(j["url"].as_str().unwrap(), &t.ring()).unwrap();
        assert_eq!(v.serial, serial);
        serials.insert(serial);
    }
    assert_eq!(serials.len(), 5);
}

#[test]
fn inspect_shows_fields_and_names_the_reason_for_a_refusal() {
    let t = till();
    let out = ok(&[
        "issue",
        "--key",
        t.key(),
        "--duration",
        "2h",
        "--ref",
        "R-9",
        "--format",
        "json",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = j["url"].as_str().unwrap();

    let shown = String::from_utf8(ok(&["inspect", url]).stdout).unwrap();
    assert!(shown.contains("duration_s     7200 (2 h)"), "{shown}");
    assert!(shown.contains("\"R-9\"") && shown.contains("not checked"));

    let good = ok(&["inspect", url, "--pubkey", &t.pubkey]);
    assert!(String::from_utf8_lossy(&good.stdout).contains("valid"));

    let other = till();
    let out = run(&["inspect", url, "--pubkey", &other.pubkey]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("REJECTED (unknown_key)"));

    let token = j["token"].as_str().unwrap();
    let mut forged = token.as_bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let out = run(&[
        "inspect",
        std::str::from_utf8(&forged).unwrap(),
        "--pubkey",
        &t.pubkey,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("bad_signature") || said.contains("malformed"),
        "{said}"
    );

    let out = run(&["inspect", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("malformed"));
    fails(&["inspect", url, "--pubkey", "nope"], "is not a public key");
}

#[test]
fn bad_input_gets_a_sentence_and_exit_code_2() {
    let t = till();
    let k = t.key();
    fails(
        &["issue", "--key", "/nonexistent/key.pem", "--duration", "1h"],
        "cannot read the key file",
    );
    let junk = t.path("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    fails(
        &["issue", "--key", junk.to_str().unwrap(), "--duration", "1h"],
        "is not an Ed25519 private key",
    );
    fails(
        &["issue", "--key", k, "--duration", "0"],
        "is not a duration",
    );
    fails(&["issue", "--key", k, "--duration", "0m"], "is zero");
    fails(
        &["issue", "--key", k, "--duration", "-5m"],
        "is not a duration",
    );
    fails(
        &["issue", "--key", k, "--duration", "99y"],
        "1 minute to 365 days",
    );
    fails(
        &["issue", "--key", k, "--duration", "30s"],
        "1 minute to 365 days",
    );
    fails(
        &["issue", "--key", k, "--duration", "1h", "--devices", "0"],
        "1 to 32 devices",
    );
    fails(
        &["issue", "--key", k, "--duration", "1h", "--devices", "33"],
        "1 to 32 devices",
    );
    fails(
        &["issue", "--key", k, "--duration", "1h", "--devices", "999"],
        "devices",
    );
    fails(
        &[
            "issue",
            "--key",
            k,
            "--duration",
            "1h",
            "--ref",
            &"x".repeat(33),
        ],
        "at most 32",
    );
    fails(
        &["issue", "--key", k, "--duration", "1h", "--format", "gif"],
        "unknown format",
    );
    fails(
        &[
            "issue",
            "--key",
            k,
            "--duration",
            "1h",
            "--format",
            "png",
            "--out",
            "/nonexistent/dir/v.png",
        ],
        "cannot write /nonexistent/dir/v.png",
    );
    fails(
        &[
            "issue",
            "--key",
            k,
            "--duration",
            "1h",
            "--count",
            "3",
            "--out",
            t.path("x.png").to_str().unwrap(),
        ],
        "existing directory",
    );
    fails(
        &[
            "issue",
            "--key",
            k,
            "--duration",
            "1h",
            "--portal-url",
            "10.0.0.1",
        ],
        "http://",
    );
    fails(&["frobnicate"], "Unrecognized");
}

/// The token's raw bytes (body and signature).
fn raw(token: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap()
}

#[test]
fn limits_make_a_v2_voucher_and_no_limit_keeps_v1() {
    let t = till();
    let issue = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "issue",
            "--key",
            t.key(),
            "--duration",
            "1h",
            "--ref",
            "T-7",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        serde_json::from_slice(&ok(&args).stdout).unwrap()
    };

    // No limit: exactly today's v1 voucher (version byte 1, 27 + ref + 64 bytes, no "ext").
    let j = issue(&[]);
    let token = j["token"].as_str().unwrap();
    let bytes = raw(token);
    assert_eq!(bytes[0], 1);
    assert_eq!(bytes.len(), 27 + 3 + 64);
    assert!(j.get("ext").is_none(), "{j}");
    let v = voucher::verify(token, &t.ring()).unwrap();
    assert_eq!(v.version(), 1);
    assert_eq!(
        v.sign(&wifipos::keys::read_private_key(&t.key).unwrap())
            .unwrap(),
        token
    );

    // All three: units mapped to MiB and kbit/s (500 MB = 476.8 MiB, rounded up).
    let j = issue(&["--data-cap", "500MB", "--down", "2Mbit", "--up", "512kbit"]);
    let token = j["token"].as_str().unwrap();
    let bytes = raw(token);
    assert_eq!(bytes[0], 2);
    assert_eq!(
        &bytes[27 + 3..bytes.len() - 64],
        &[18, 1, 4, 0, 0, 0x01, 0xdd, 2, 4, 0, 0, 0x07, 0xd0, 3, 4, 0, 0, 0x02, 0x00]
    );
    let v = voucher::verify(token, &t.ring()).unwrap();
    let l = v.limits();
    assert_eq!(
        (l.data_cap_mib, l.down_kbit, l.up_kbit),
        (Some(477), Some(2000), Some(512))
    );
    assert_eq!(j["ext"]["limits"]["data_cap_mib"], 477, "{j}");

    // One limit alone is v2 too, and inspect shows it.
    let j = issue(&["--down", "0.5Mbit"]);
    let url = j["url"].as_str().unwrap();
    assert_eq!(raw(j["token"].as_str().unwrap())[0], 2);
    let shown = String::from_utf8(ok(&["inspect", url, "--pubkey", &t.pubkey]).stdout).unwrap();
    assert!(shown.contains("version        2"), "{shown}");
    assert!(shown.contains("down_kbit      500 (per device)"), "{shown}");
    assert!(shown.contains("data_cap_mib   none"), "{shown}");
    assert!(shown.contains("up_kbit        none"), "{shown}");
    assert!(shown.contains("unsupported limit"), "{shown}");
    let j = issue(&["--data-cap", "2GiB"]);
    let shown = String::from_utf8(ok(&["inspect", j["url"].as_str().unwrap()]).stdout).unwrap();
    assert!(
        shown.contains("data_cap_mib   2048 (all devices together)"),
        "{shown}"
    );
    let json = ok(&["inspect", j["url"].as_str().unwrap(), "--json"]);
    let jj: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(jj["ext"]["limits"]["data_cap_mib"], 2048, "{jj}");
}

#[test]
fn bad_limits_get_a_sentence_and_exit_code_2() {
    let t = till();
    let k = t.key();
    let base = ["issue", "--key", k, "--duration", "1h"];
    let with = |flag: &'static str, value: &'static str| {
        let mut a = base.to_vec();
        a.extend_from_slice(&[flag, value]);
        a
    };
    fails(
        &with("--data-cap", "500"),
        "--data-cap '500' is not a data amount",
    );
    fails(&with("--data-cap", "2Mbit"), "like 500MB");
    fails(&with("--data-cap", "0MB"), "a data cap is 1 MiB to 4 TiB");
    fails(&with("--data-cap", "5TiB"), "a data cap is 1 MiB to 4 TiB");
    fails(&with("--down", "2"), "--down '2' is not a speed");
    fails(&with("--down", "2MB"), "like 512kbit or 2Mbit");
    fails(
        &with("--up", "32kbit"),
        "a speed limit is 64 kbit/s to 10 Gbit/s",
    );
    fails(
        &with("--up", "20Gbit"),
        "a speed limit is 64 kbit/s to 10 Gbit/s",
    );
}
