//! Admin command latency with hundreds of sessions (goal: well under 10 ms each; openNDS's
//! `ndsctl auth` takes seconds). Starts the release `wifiposd serve` with 500 active sessions
//! and times each command over the control socket: in-process round trips (`control::call`)
//! and whole `wifiposd …` command lines (exec included). Needs root for the nftables table;
//! `scripts/bench-admin` runs it in a throwaway network namespace.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wifipos::admin::{Request, RuleName};
use wifipos::control;
use wifipos::keys::KeyId;
use wifipos::mac::Mac;
use wifipos::policy::Clock;
use wifipos::store::Store;
use wifipos::voucher::Voucher;

const SESSIONS: u32 = 500;
const ROUNDS: usize = 200;

fn mac(i: u32) -> Mac {
    Mac([0x06, 0, 0, 0, (i >> 8) as u8, i as u8])
}

/// Median and 99th percentile in milliseconds.
fn stats(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(t[t.len() / 2]),
        ms(t[(t.len() * 99 / 100).min(t.len() - 1)]),
    )
}

fn time(rounds: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    let mut t = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let s = Instant::now();
        f(i);
        t.push(s.elapsed());
    }
    stats(t)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wifipos.db");
    let sock = dir.path().join("wifiposd.sock");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = KeyId([1, 2, 3, 4]);
    {
        let mut store = Store::open(&db).unwrap();
        for i in 0..SESSIONS {
            let v = Voucher {
                key_id: key,
                serial: u64::from(i),
                issued_at: now as u32,
                redeem_by: 0,
                duration_s: 3600 + i,
                max_devices: 1,
                purchase_ref: format!("R{i}"),
                ext: None,
            };
            store
                .redeem(&v, mac(i), Clock { now, trusted: true })
                .unwrap()
                .unwrap();
        }
    }
    let config = dir.path().join("wifipos.conf");
    std::fs::write(
        &config,
        format!(
            "config wifipos 'main'\n\toption guest_iface 'br-guest'\n\
             \toption portal_port '2050'\n\toption database '{}'\n\
             \toption control_socket '{}'\n",
            db.display(),
            sock.display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_wifiposd");
    let mut daemon = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while control::call(&sock, &Request::Status).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "wifiposd did not start (run as root in a namespace: scripts/bench-admin)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = control::call(&sock, &Request::Status).unwrap();
    assert_eq!(status["sessions"], SESSIONS as usize);
    assert_eq!(status["allowed_in_kernel"], SESSIONS as usize);

    let call = |r: Request| {
        control::call(&sock, &r).unwrap();
    };
    let voucher = |i: usize| format!("{key}:{i}");
    let rows: Vec<(&str, (f64, f64))> = vec![
        ("status", time(ROUNDS, |_| call(Request::Status))),
        (
            "sessions (500 lines)",
            time(ROUNDS, |_| call(Request::Sessions)),
        ),
        (
            "vouchers (50)",
            time(ROUNDS, |_| call(Request::Vouchers { limit: 50 })),
        ),
        (
            "events --since 1h",
            time(ROUNDS, |_| {
                call(Request::Events {
                    since: "1h".into(),
                    limit: 500,
                })
            }),
        ),
        (
            "extend VOUCHER 1h",
            time(ROUNDS, |i| {
                call(Request::Extend {
                    voucher: voucher(i),
                    duration: "1h".into(),
                })
            }),
        ),
        (
            "trust MAC",
            time(ROUNDS, |i| {
                call(Request::Rule {
                    mac: mac(i as u32).to_string(),
                    rule: RuleName::Trusted,
                    on: true,
                })
            }),
        ),
        (
            "kick MAC",
            time(ROUNDS, |i| {
                call(Request::Kick {
                    mac: mac(i as u32).to_string(),
                })
            }),
        ),
        (
            "revoke VOUCHER",
            time(ROUNDS, |i| {
                call(Request::Revoke {
                    target: voucher(ROUNDS + i),
                })
            }),
        ),
    ];
    let cli = |args: &[&str]| {
        let o = Command::new(bin)
            .args(args)
            .arg("--socket")
            .arg(&sock)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let cli_status = time(50, |_| cli(&["status"]));
    let cli_sessions = time(50, |_| cli(&["sessions"]));
    let _ = daemon.kill();
    let _ = daemon.wait();

    println!(
        "admin commands, {SESSIONS} active sessions, {ROUNDS} rounds each, over the control socket"
    );
    println!("{:<24} {:>10} {:>10}", "command", "median ms", "p99 ms");
    for (name, (median, p99)) in rows {
        println!("{name:<24} {median:>10.3} {p99:>10.3}");
    }
    println!("whole command line (exec + connect + answer + print), 50 rounds:");
    for (name, (median, p99)) in [
        ("wifiposd status", cli_status),
        ("wifiposd sessions", cli_sessions),
    ] {
        println!("{name:<24} {median:>10.3} {p99:>10.3}");
    }
}
