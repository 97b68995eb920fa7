//! Footprint and restore of the real daemon: `wifiposd serve` with a real config in a network
//! namespace (the one `scripts/bench-footprint` gives it with `unshare -n`): its RSS idle with
//! no sessions, idle with 5 000 active sessions, under wrk load; and the time from process
//! start to 10 000 sessions programmed in the kernel's `allowed` set. The sessions are put in
//! the database with the library's `Store` beforehand. Needs root, `nft`, `ip` and `wrk`;
//! `WIFIPOSD` names the binary to measure (the release router build). Prints numbers.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use wifipos::keys::{self, KeyId};
use wifipos::mac::Mac;
use wifipos::policy::Clock;
use wifipos::store::{Durability, Store};
use wifipos::voucher::Voucher;

const PORTAL: &str = "10.20.0.1:2050";

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A database with `n` devices each on its own one-day voucher.
fn populate(db: &Path, key_id: KeyId, n: u32) {
    let _ = std::fs::remove_file(db);
    let mut store = Store::open_with(db, Durability::Normal).unwrap();
    let clock = Clock {
        now: now(),
        trusted: true,
    };
    for i in 0..n {
        let v = Voucher {
            key_id,
            serial: u64::from(i) + 1,
            issued_at: clock.now as u32,
            redeem_by: 0,
            duration_s: 86_400,
            max_devices: 1,
            purchase_ref: String::new(),
            ext: None,
        };
        let b = i.to_be_bytes();
        let mac = Mac([0x06, 0x01, b[0], b[1], b[2], b[3]]);
        store.redeem(&v, mac, clock).unwrap().unwrap();
    }
}

struct Daemon {
    child: Child,
    stderr: BufReader<ChildStderr>,
}

impl Daemon {
    /// Starts `wifiposd serve` and returns it with the time from spawn to the "sessions
    /// restored" line (printed after the table and every session are in the kernel).
    fn start(bin: &Path, config: &Path) -> (Daemon, Duration, usize) {
        let t = Instant::now();
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().map(BufReader::new);
        // From here on, dropping the daemon kills and reaps it.
        let mut d = Daemon {
            child,
            stderr: stderr.unwrap(),
        };
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                d.stderr.read_line(&mut line).unwrap() > 0,
                "wifiposd exited before restoring"
            );
            if let Some(n) = line
                .strip_prefix("wifiposd: ")
                .and_then(|l| l.split_once(" sessions restored"))
                .and_then(|(n, _)| n.parse().ok())
            {
                return (d, t.elapsed(), n);
            }
        }
    }

    fn wait_listening(&self) {
        let t = Instant::now();
        while TcpStream::connect(PORTAL).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "portal not up");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// (VmRSS, VmHWM, RssAnon, RssFile, Pss, Private_Dirty) in KiB.
    fn rss(&self) -> [u64; 6] {
        let read =
            |f: &str| std::fs::read_to_string(format!("/proc/{}/{f}", self.child.id())).unwrap();
        let (status, rollup) = (read("status"), read("smaps_rollup"));
        let kib = |text: &str, k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        [
            kib(&status, "VmRSS:"),
            kib(&status, "VmHWM:"),
            kib(&status, "RssAnon:"),
            kib(&status, "RssFile:"),
            kib(&rollup, "Pss:"),
            kib(&rollup, "Private_Dirty:"),
        ]
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stderr, &mut rest);
    }
}

fn report(what: &str, [rss, hwm, anon, file, pss, dirty]: [u64; 6]) {
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "{what:<48} RSS {:>5.2} MiB (anon {anon} KiB, file {file} KiB; PSS {pss} KiB, private dirty {dirty} KiB; peak RSS {:.2} MiB)",
        mib(rss),
        mib(hwm)
    );
}

fn allowed_in_kernel() -> usize {
    let json = sh("nft", &["-j", "list", "set", "inet", "wifipos", "allowed"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o["set"]["elem"].as_array())
        .map_or(0, Vec::len)
}

/// The largest mappings of a process by resident size: where the RSS is.
fn breakdown(pid: u32) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    let mut name = String::new();
    for l in smaps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first()
            .is_some_and(|a| a.contains('-') && !a.ends_with(':'))
        {
            name = f
                .get(5)
                .map_or("[anon]", |n| n.rsplit('/').next().unwrap_or(n))
                .to_owned();
        } else if f.first() == Some(&"Rss:") {
            *by.entry(name.clone()).or_default() += f[1].parse::<u64>().unwrap_or(0);
        }
    }
    let mut v: Vec<_> = by.into_iter().filter(|(_, k)| *k > 0).collect();
    v.sort_by_key(|(_, k)| std::cmp::Reverse(*k));
    let top: Vec<String> = v.iter().take(8).map(|(n, k)| format!("{n} {k}")).collect();
    println!("  by mapping (KiB): {}", top.join(", "));
}

fn wrk(host: &str, conns: u32, secs: u32) -> String {
    let out = sh(
        "wrk",
        &[
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "-H",
            &format!("Host: {host}"),
            &format!("http://{PORTAL}/generate_204"),
        ],
    );
    out.lines()
        .find(|l| l.starts_with("Requests/sec"))
        .unwrap_or("")
        .to_owned()
}

fn main() {
    let bin = PathBuf::from(std::env::var("WIFIPOSD").expect("WIFIPOSD=path/to/wifiposd"));
    sh("ip", &["link", "set", "lo", "up"]);
    let _ = Command::new("ip")
        .args(["link", "add", "br-guest", "type", "bridge"])
        .status();
    let _ = Command::new("ip")
        .args(["addr", "add", "10.20.0.1/24", "dev", "br-guest"])
        .status();
    sh("ip", &["link", "set", "br-guest", "up"]);

    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let key_id = KeyId::of(&key.verifying_key());
    let db = dir.path().join("wifipos.db");
    let config = dir.path().join("wifipos.conf");
    std::fs::write(
        &config,
        format!(
            "config wifipos 'main'\n\
             \toption guest_iface 'br-guest'\n\
             \toption portal_address '10.20.0.1'\n\
             \toption portal_port '2050'\n\
             \toption database '{}'\n\
             \toption venue 'Café Bench'\n\
             \tlist trusted_key '{}'\n",
            db.display(),
            keys::public_key_b64(&key.verifying_key())
        ),
    )
    .unwrap();
    println!(
        "# wifiposd {} ({} bytes)",
        bin.display(),
        std::fs::metadata(&bin).unwrap().len()
    );

    // Idle, nothing in the database.
    let _ = std::fs::remove_file(&db);
    let (d, _, n) = Daemon::start(&bin, &config);
    assert_eq!(n, 0);
    d.wait_listening();
    std::thread::sleep(Duration::from_secs(1));
    report("idle, no sessions", d.rss());
    breakdown(d.child.id());
    d.stop();

    // 5 000 active sessions restored, then under load.
    populate(&db, key_id, 5_000);
    let (d, _, n) = Daemon::start(&bin, &config);
    assert_eq!(n, 5_000);
    d.wait_listening();
    std::thread::sleep(Duration::from_secs(1));
    report("idle, 5 000 active sessions", d.rss());
    breakdown(d.child.id());
    let probes = wrk("connectivitycheck.gstatic.com", 16, 5);
    report("5 000 sessions, after 5 s of wrk probes (16 c)", d.rss());
    let pages = wrk(PORTAL, 16, 5);
    report("5 000 sessions, after 5 s of portal pages", d.rss());
    println!("  probes (302): {probes}; portal page (200): {pages}");
    d.stop();

    // Restore: process start to 10 000 sessions in the kernel's set.
    populate(&db, key_id, 10_000);
    let mut times = Vec::new();
    for _ in 0..5 {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", "wifipos"])
            .status();
        let (d, took, n) = Daemon::start(&bin, &config);
        assert_eq!(n, 10_000);
        assert_eq!(allowed_in_kernel(), 10_000);
        times.push(took);
        d.stop();
    }
    times.sort();
    println!(
        "restore: process start to 10 000 sessions in the kernel set: median {:.1} ms (min {:.1}, max {:.1}, 5 runs)",
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3
    );
}
