//! Issue #18, attack 5: refusal events must not fill the flash. Two phones keep inventing MACs
//! (each announced with a gratuitous ARP, as a real device would be) and send bad vouchers
//! (refused as malformed, or as an address conflict when the MAC changed under the address),
//! while the database lives on a 12 MB tmpfs that is already nearly full (a router's overlay).
//! Refusals are tallied per minute, kind and device, bounded per minute and in total, and not
//! written at all when the filesystem is down to its reserve: afterwards a valid voucher
//! still redeems, the database is intact and within its budget.
//!
//! Needs root (namespaces, nftables, mount); skips loudly elsewhere and fails under `CI=true`.

#[path = "common/cafe.rs"]
mod cafe;
mod common;
#[path = "common/phones.rs"]
mod phones;

use std::process::Command;
use std::time::Instant;

use cafe::Cafe;

/// In a phone's namespace, for `secs` seconds: invent a MAC, set it on eth0, announce it with
/// an ARP request for the router, then send `per_mac` bad voucher links; again. Prints the
/// count of each HTTP status and of MACs as JSON.
const FLOOD: &str = r#"
import json, random, socket, struct, subprocess, sys, time
secs, per_mac, seed = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
end = time.monotonic() + secs
rnd = random.Random(seed)
ip = subprocess.check_output(["ip", "-4", "-o", "addr", "show", "eth0"]).split()[3].split(b"/")[0].decode()
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
raw.bind(("eth0", 0))
counts = {"macs": 0}
while time.monotonic() < end:
    counts["macs"] += 1
    mac = bytes([2] + [rnd.randrange(256) for _ in range(5)])
    subprocess.check_call(["ip", "link", "set", "eth0", "address", mac.hex(":")])
    raw.send(b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
             + mac + socket.inet_aton(ip) + b"\x00" * 6 + socket.inet_aton("10.20.0.1"))
    for i in range(per_mac):
        try:
            s = socket.create_connection(("10.20.0.1", 2050), 3)
            s.settimeout(5)
            s.sendall(b"GET /v/AQbogus%d HTTP/1.1\r\nHost: 10.20.0.1:2050\r\nConnection: close\r\n\r\n" % i)
            head = s.recv(64)
            s.close()
            code = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "0"
        except OSError:
            code = "0"
        counts[code] = counts.get(code, 0) + 1
print(json.dumps(counts))
"#;

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 12 MB tmpfs, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_refusal_flood_neither_fills_the_flash_nor_stops_sales() {
    let Some(cafe) = Cafe::open("flood") else {
        return;
    };
    let disk = cafe.path("flash");
    std::fs::create_dir_all(&disk).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=12m",
        "tmpfs",
        disk.to_str().unwrap(),
    ]);
    let _disk = SmallDisk(disk.clone());
    let db = disk.join("wifipos.db");
    cafe.write_config(&format!("\toption database '{}'\n", db.display()));
    let d = cafe.start();
    // The rest of the overlay is taken by other packages: 2 MB stay free.
    let filler = disk.join("other-packages");
    sh(&["fallocate", "-l", "1m", filler.to_str().unwrap()]);
    let free = |p: &std::path::Path| {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let fill = free(&disk).saturating_sub(2 << 20);
    sh(&[
        "fallocate",
        "-l",
        &fill.to_string(),
        filler.to_str().unwrap(),
    ]);
    let size_before = std::fs::metadata(&db).unwrap().len();

    // 15 s by default; `WIFIPOS_FLOOD_SECS=120` for the numbers in BENCHMARKS.md.
    let secs: f64 = std::env::var("WIFIPOS_FLOOD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15.0);
    let t = Instant::now();
    let floods: Vec<_> = ["client3", "client4"]
        .iter()
        .enumerate()
        .map(|(i, host)| {
            cafe.lab
                .cmd(host, "python3")
                .args(["-c", FLOOD, &secs.to_string(), "25", &i.to_string()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let phones: Vec<_> = floods
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let secs = t.elapsed().as_secs_f64();
    let minutes = secs / 60.0;
    let (mut refused, mut macs) = (0u64, 0u64);
    for out in &phones {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("flood answers: {counts}");
        // 400: a bad voucher; 409: the MAC changed under the address (the kernel saw several
        // devices open connections from it). Both are refusals the store tallies.
        refused += counts["400"].as_u64().unwrap_or(0) + counts["409"].as_u64().unwrap_or(0);
        macs += counts["macs"].as_u64().unwrap_or(0);
    }
    assert!(
        refused as f64 >= 50.0 * secs,
        "the flood hardly reached the portal: {refused} refusals in {secs:.0} s"
    );

    let conn = phones::read_db(&db);
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let db_bytes = std::fs::metadata(&db).unwrap().len();
    let wal_bytes = std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len());
    eprintln!(
        "refusal flood: {refused} refusals in {secs:.1} s from {macs} invented MACs: {rows} event rows \
         ({:.0} rows/min), database {size_before} -> {db_bytes} bytes (+{:.0} bytes/min), WAL {wal_bytes} bytes, {} bytes free",
        rows as f64 / minutes,
        (db_bytes.saturating_sub(size_before)) as f64 / minutes,
        free(&disk)
    );
    // Tallied: at most 100 device rows (+ the shared row) per minute, not a row per refusal.
    let minute_spans = (secs / 60.0).ceil() as i64 + 1;
    assert!(
        rows <= minute_spans * 101,
        "{rows} event rows for {refused} refusals in {secs:.0} s: refusals are not tallied"
    );
    // Within its budget: the tallies (at most 10 000 short rows) and a WAL cut back to 1 MB.
    assert!(db_bytes <= 3 << 20, "database {db_bytes} bytes");
    assert!(wal_bytes <= 3 << 19, "write-ahead log {wal_bytes} bytes");
    let counted: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(count), 0) FROM events WHERE kind IN ('malformed', 'address_conflict')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        counted > 0 && counted as u64 <= refused,
        "{counted} of {refused}"
    );
    drop(conn);

    // A paying customer on the same nearly full flash still gets online.
    let v = cafe.issue(&["--duration", "1h"]);
    let url = v["url"].as_str().unwrap();
    let (code, page) = cafe.lab.curl("client", &[url]);
    assert_eq!(code, 200, "{page}\n{}", cafe.log());
    assert!(page.contains("id=\"online\""), "{page}");
    assert!(phones::allowed_macs(&cafe.lab).contains("02:00:00:00:00:10"));
    drop(d);
    assert_eq!(phones::integrity(&db), "ok");
}
