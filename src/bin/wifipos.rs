//! `wifipos`: the till's tool. Makes the signing key, issues vouchers as QR codes and inspects
//! them. Thin: the work is in the library (`keys`, `voucher`, `receipt`).
//!
//! Exit codes: 0 success; 1 `inspect` found the voucher invalid; 2 any error (bad arguments,
//! unreadable key, unwritable output), with a sentence on stderr.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argh::FromArgs;
use wifipos::keys::{self, KeyId, Keyring};
use wifipos::receipt::{self, Paper};
use wifipos::units;
use wifipos::voucher::{self, Ext, Limits, Rejection, Voucher};
use wifipos::{duration, voucher::MAX_REF_LEN};

#[derive(FromArgs)]
/// Sell Wi-Fi through the point of sale: sign vouchers and print them as QR codes.
struct Cli {
    #[argh(subcommand)]
    cmd: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
// Parsed once per run; argh cannot box a subcommand, and 272 bytes on the stack cost nothing.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    Keygen(Keygen),
    Pubkey(Pubkey),
    Issue(Issue),
    Inspect(Inspect),
}

#[derive(FromArgs)]
/// Make a new signing key for this till (PKCS#8 PEM, mode 0600) and print the line that tells
/// the router to trust it.
#[argh(subcommand, name = "keygen")]
struct Keygen {
    /// where to write the private key; an existing file is never overwritten
    #[argh(option)]
    out: PathBuf,
}

#[derive(FromArgs)]
/// Print the public key (base64) and key id of a private key, for the router's config.
#[argh(subcommand, name = "pubkey")]
struct Pubkey {
    /// the private key file (from `wifipos keygen` or `openssl genpkey -algorithm ed25519`)
    #[argh(option)]
    key: PathBuf,
}

#[derive(FromArgs)]
/// Sign one or more vouchers and write them as QR codes.
#[argh(subcommand, name = "issue")]
struct Issue {
    /// the private key file
    #[argh(option)]
    key: PathBuf,
    /// access time from the first use, e.g. 90m, 2h, 1d (1 minute to 365 days)
    #[argh(option)]
    duration: String,
    /// how many devices may share the voucher, 1 to 32 (default 1)
    #[argh(option, default = "1")]
    devices: u8,
    /// the purchase or receipt number, up to 32 bytes of text
    #[argh(option, default = "String::new()")]
    r#ref: String,
    /// the voucher must be used for the first time within this time, e.g. 30d (default: no limit)
    #[argh(option)]
    redeem_within: Option<String>,
    /// the router's portal address printed in the QR (default http://10.20.0.1:2050)
    #[argh(option, default = "String::from(\"http://10.20.0.1:2050\")")]
    portal_url: String,
    /// how many vouchers to make, each with its own serial (default 1)
    #[argh(option, default = "1")]
    count: u32,
    /// png, svg, txt (QR drawn in the terminal), escpos (receipt printer bytes) or json
    #[argh(option, default = "String::from(\"txt\")")]
    format: String,
    /// a file, a directory (one file per voucher, named by serial) or - for standard output
    #[argh(option, default = "PathBuf::from(\"-\")")]
    out: PathBuf,
    /// the venue's name printed on escpos receipts
    #[argh(option, default = "String::new()")]
    venue: String,
    /// receipt paper width in mm for escpos: 58 or 80 (default 80)
    #[argh(option, default = "80")]
    paper: u8,
    /// traffic all devices of the voucher may use together, e.g. 500MB, 2GB, 200MiB (makes a
    /// version 2 voucher; routers refuse limits until they enforce them)
    #[argh(option)]
    data_cap: Option<String>,
    /// each device's download speed limit, e.g. 2Mbit, 512kbit (makes a version 2 voucher)
    #[argh(option)]
    down: Option<String>,
    /// each device's upload speed limit, e.g. 512kbit (makes a version 2 voucher)
    #[argh(option)]
    up: Option<String>,
}

#[derive(FromArgs)]
/// Show a voucher's fields; with --pubkey, also verify it and say why it would be refused.
#[argh(subcommand, name = "inspect")]
struct Inspect {
    /// the token or the URL from the QR code
    #[argh(positional)]
    token: String,
    /// a trusted public key (base64), as in the router's config; may be repeated
    #[argh(option)]
    pubkey: Vec<String>,
    /// print JSON instead of text
    #[argh(switch)]
    json: bool,
}

/// A failure for the operator: the message is the whole story.
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli: Cli = match wifipos::cli::parse("wifipos") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.cmd {
        Cmd::Keygen(c) => keygen(c),
        Cmd::Pubkey(c) => pubkey(c),
        Cmd::Issue(c) => issue(c),
        Cmd::Inspect(c) => return inspect(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("wifipos: {msg}");
            ExitCode::from(2)
        }
    }
}

fn keygen(c: Keygen) -> Result<(), Fail> {
    let key = keys::generate()?;
    keys::write_new_private_key(&c.out, &key)?;
    let public = key.verifying_key();
    println!(
        "Wrote the private key to {} (keep it on the till; it can mint vouchers).",
        c.out.display()
    );
    println!(
        "Key id {}. Add this line to /etc/config/wifipos on the router:",
        KeyId::of(&public)
    );
    println!("\tlist trusted_key '{}'", keys::public_key_b64(&public));
    Ok(())
}

fn pubkey(c: Pubkey) -> Result<(), Fail> {
    let public = keys::read_private_key(&c.key)?.verifying_key();
    println!("{}", keys::public_key_b64(&public));
    println!("key_id {}", KeyId::of(&public));
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
    Txt,
    Escpos,
    Json,
}

impl Format {
    fn parse(s: &str) -> Result<Format, Fail> {
        Ok(match s {
            "png" => Format::Png,
            "svg" => Format::Svg,
            "txt" => Format::Txt,
            "escpos" => Format::Escpos,
            "json" => Format::Json,
            _ => {
                return Err(Fail(format!(
                    "unknown format '{s}': use png, svg, txt, escpos or json"
                )))
            }
        })
    }
    fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
            Format::Txt => "txt",
            Format::Escpos => "bin",
            Format::Json => "json",
        }
    }
}

#[derive(serde::Serialize)]
struct Issued<'a> {
    token: &'a str,
    url: &'a str,
    #[serde(flatten)]
    voucher: &'a Voucher,
}

fn issue(c: Issue) -> Result<(), Fail> {
    let format = Format::parse(&c.format)?;
    let duration_s = duration::parse(&c.duration)?;
    if !(u64::from(voucher::MIN_DURATION_S)..=u64::from(voucher::MAX_DURATION_S))
        .contains(&duration_s)
    {
        return Err(Fail(format!(
            "--duration {} is {}; a voucher lasts from 1 minute to 365 days",
            c.duration,
            duration::format(duration_s)
        )));
    }
    if !(voucher::MIN_DEVICES..=voucher::MAX_DEVICES).contains(&c.devices) {
        return Err(Fail(format!(
            "--devices {} is out of range: a voucher covers 1 to 32 devices",
            c.devices
        )));
    }
    if c.r#ref.len() > MAX_REF_LEN {
        return Err(Fail(format!(
            "--ref is {} bytes; the purchase reference holds at most 32",
            c.r#ref.len()
        )));
    }
    if c.r#ref.chars().any(char::is_control) {
        return Err(Fail("--ref must not contain control characters".into()));
    }
    if c.count == 0 || c.count > 10_000 {
        return Err(Fail("--count must be between 1 and 10000".into()));
    }
    let paper = match c.paper {
        58 => Paper::Mm58,
        80 => Paper::Mm80,
        n => return Err(Fail(format!("--paper {n}: use 58 or 80"))),
    };
    let portal = c.portal_url.trim_end_matches('/');
    if !(portal.starts_with("http://") || portal.starts_with("https://")) {
        return Err(Fail(format!(
            "--portal-url '{}' must start with http:// or https://",
            c.portal_url
        )));
    }
    let limits = Limits {
        data_cap_mib: c
            .data_cap
            .as_deref()
            .map(units::parse_data_cap_mib)
            .transpose()
            .map_err(|e| Fail(format!("--data-cap {e}")))?,
        down_kbit: c
            .down
            .as_deref()
            .map(units::parse_rate_kbit)
            .transpose()
            .map_err(|e| Fail(format!("--down {e}")))?,
        up_kbit: c
            .up
            .as_deref()
            .map(units::parse_rate_kbit)
            .transpose()
            .map_err(|e| Fail(format!("--up {e}")))?,
    };
    // v2 only when a limit is asked for: a v1 voucher stays good on every router.
    let ext = limits.any().then(|| Ext::with_limits(limits));
    let key = keys::read_private_key(&c.key)?;
    let key_id = KeyId::of(&key.verifying_key());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Fail("the till's clock is before 1970".into()))?
        .as_secs();
    let now32 = u32::try_from(now).map_err(|_| Fail("the till's clock is past 2106".into()))?;
    let redeem_by = match &c.redeem_within {
        None => 0,
        Some(w) => u32::try_from(now + duration::parse(w)?)
            .map_err(|_| Fail(format!("--redeem-within {w} ends after 2106")))?,
    };

    let to_dir = c.out.is_dir();
    let to_stdout = c.out.as_os_str() == "-";
    if c.count > 1 && !to_dir && !to_stdout {
        return Err(Fail(format!(
            "--count {} needs --out to be an existing directory (one file per voucher) or -",
            c.count
        )));
    }
    if c.count > 1 && to_stdout && matches!(format, Format::Png | Format::Svg) {
        return Err(Fail(
            "several PNG or SVG images cannot share standard output: give --out a directory".into(),
        ));
    }

    let mut stdout = std::io::stdout().lock();
    for _ in 0..c.count {
        let mut serial = [0u8; 8];
        getrandom::fill(&mut serial).map_err(|e| Fail(format!("random serial: {e}")))?;
        let v = Voucher {
            key_id,
            serial: u64::from_be_bytes(serial),
            issued_at: now32,
            redeem_by,
            duration_s: duration_s as u32,
            max_devices: c.devices,
            purchase_ref: c.r#ref.clone(),
            ext: ext.clone(),
        };
        let token = v.sign(&key)?;
        let url = format!("{portal}/v/{token}");
        let bytes = match format {
            Format::Png => receipt::png(&url)?,
            Format::Svg => receipt::svg(&url)?.into_bytes(),
            Format::Txt => receipt::terminal(&url, &v)?.into_bytes(),
            Format::Escpos => receipt::escpos(&url, &v, &c.venue, paper)?,
            Format::Json => {
                let mut j = serde_json::to_vec(&Issued {
                    token: &token,
                    url: &url,
                    voucher: &v,
                })?;
                j.push(b'\n');
                j
            }
        };
        if to_stdout {
            stdout
                .write_all(&bytes)
                .map_err(|e| Fail(format!("cannot write to standard output: {e}")))?;
        } else {
            let path = if to_dir {
                c.out.join(format!("{:020}.{}", v.serial, format.ext()))
            } else {
                c.out.clone()
            };
            write_file(&path, &bytes)?;
            eprintln!("wrote {}", path.display());
        }
    }
    stdout
        .flush()
        .map_err(|e| Fail(format!("cannot write to standard output: {e}")))?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Fail> {
    std::fs::write(path, bytes).map_err(|e| Fail(format!("cannot write {}: {e}", path.display())))
}

fn inspect(c: Inspect) -> ExitCode {
    let unverified = match voucher::decode(&c.token) {
        Ok(u) => u,
        Err(r) => return report_rejection(&r, c.json),
    };
    let v = unverified.voucher.clone();
    if c.json {
        println!("{}", serde_json::to_string(&v).unwrap_or_default());
    } else {
        print_fields(&v);
    }
    if c.pubkey.is_empty() {
        if !c.json {
            println!("signature      not checked (give --pubkey to verify)");
        }
        return ExitCode::SUCCESS;
    }
    let keyring = match Keyring::from_b64(&c.pubkey) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("wifipos: {e}");
            return ExitCode::from(2);
        }
    };
    match unverified.verify(&keyring) {
        Ok(v) => {
            if !c.json {
                if v.limits().any() {
                    println!(
                        "signature      valid; routers refuse its limits (\"unsupported limit\") until they enforce them"
                    );
                } else {
                    println!("signature      valid: this router would accept the voucher");
                }
            }
            ExitCode::SUCCESS
        }
        Err(r) => report_rejection(&r, c.json),
    }
}

fn print_fields(v: &Voucher) {
    println!("key_id         {}", v.key_id);
    println!("serial         {}", v.serial);
    println!(
        "issued_at      {} ({})",
        v.issued_at,
        duration::utc_date(v.issued_at.into())
    );
    if v.redeem_by == 0 {
        println!("redeem_by      0 (no deadline)");
    } else {
        println!(
            "redeem_by      {} ({})",
            v.redeem_by,
            duration::utc_date(v.redeem_by.into())
        );
    }
    println!(
        "duration_s     {} ({})",
        v.duration_s,
        duration::format(v.duration_s.into())
    );
    println!("max_devices    {}", v.max_devices);
    println!("purchase_ref   {:?}", v.purchase_ref);
    println!("version        {}", v.version());
    if let Some(e) = &v.ext {
        let l = e.limits;
        match l.data_cap_mib {
            Some(m) => println!("data_cap_mib   {m} (all devices together)"),
            None => println!("data_cap_mib   none"),
        }
        match l.down_kbit {
            Some(k) => println!("down_kbit      {k} (per device)"),
            None => println!("down_kbit      none"),
        }
        match l.up_kbit {
            Some(k) => println!("up_kbit        {k} (per device)"),
            None => println!("up_kbit        none"),
        }
        for o in &e.other {
            let kind = if o.kind >= voucher::ext::FIRST_INFORMATIONAL {
                "informational"
            } else {
                "unknown limit"
            };
            println!("entry {:#04x}     {} bytes ({kind})", o.kind, o.value.len());
        }
    }
}

fn report_rejection(r: &Rejection, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::json!({ "rejected": r.code(), "reason": r.to_string() })
        );
    } else {
        println!("REJECTED ({}): {r}", r.code());
    }
    ExitCode::from(1)
}
