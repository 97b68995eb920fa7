//! Usage end to end in the lab (real daemon, real kernel counters, iperf3 traffic): a data cap
//! shared by two phones ends access for both near the cap, across a daemon restart in the
//! middle, and the counts match what the phones' own interfaces saw; a phone back with a new
//! MAC takes the place of its idle old self, and not before the idle time.
//!
//! Needs root, network namespaces and iperf3 (scripts/setup installs it); under `CI=true` a
//! missing piece fails the test.

#[path = "common/cafe.rs"]
mod cafe;
mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use cafe::Cafe;

const PHONE: &str = "02:00:00:00:00:10";

fn redeem(cafe: &Cafe, phone: &str, url: &str) -> (u16, String) {
    cafe.lab.curl(phone, &[url])
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Bytes the phone's interface received.
fn phone_rx(cafe: &Cafe, phone: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(
        &cafe
            .lab
            .run(phone, "ip", &["-s", "-j", "link", "show", "eth0"])
            .stdout,
    )
    .unwrap();
    v[0]["stats64"]["rx"]["bytes"].as_u64().unwrap()
}

/// An iperf3 server on the upstream (stopped with the lab).
fn iperf_server(cafe: &Cafe) {
    let out = cafe
        .lab
        .run("upstream", "iperf3", &["-s", "-D", "-1", "-p", "5201"]);
    assert!(
        out.status.success(),
        "iperf3 is needed (apt-get install iperf3): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
}

/// Downloads from the upstream at up to `mbit` for at most `secs` (or `bytes`), as a phone.
fn download(cafe: &Cafe, phone: &str, mbit: u32, secs: u32, bytes: Option<&str>) {
    iperf_server(cafe);
    let rate = format!("{mbit}M");
    let t = secs.to_string();
    let mut args = vec![
        "-c",
        "10.99.0.2",
        "-p",
        "5201",
        "-R",
        "-b",
        &rate,
        "--connect-timeout",
        "2000",
    ];
    match bytes {
        Some(n) => args.extend(["-n", n]),
        None => args.extend(["-t", &t]),
    }
    // Cut off mid-stream, iperf3 exits with an error: that is the point, not a failure.
    let mut c = cafe.lab.cmd(phone, "timeout");
    c.arg(format!("{}", secs + 5)).arg("iperf3").args(&args);
    let _ = c.output().unwrap();
}

fn voucher_row(cafe: &Cafe) -> serde_json::Value {
    let v = json(&cafe.admin(&["vouchers", "--json"]));
    v["vouchers"][0].clone()
}

#[test]
fn a_data_cap_ends_access_for_both_phones_near_the_cap_across_a_restart() {
    let Some(cafe) = Cafe::open("uc") else { return };
    let mut daemon = cafe.start();
    let v = cafe.issue(&["--duration", "1h", "--devices", "2", "--data-cap", "8MiB"]);
    let url = v["url"].as_str().unwrap();
    let cap = 8u64 << 20;
    assert_eq!(redeem(&cafe, "client", url).0, 200);
    assert_eq!(redeem(&cafe, "client2", url).0, 200);
    let (b1, b2) = (phone_rx(&cafe, "client"), phone_rx(&cafe, "client2"));

    // Phone 1 takes 3 MB, then the daemon restarts.
    download(&cafe, "client", 50, 10, Some("3M"));
    let rx1 = phone_rx(&cafe, "client") - b1;
    let row = voucher_row(&cafe);
    let first = row["used_bytes"].as_u64().unwrap();
    assert!(first >= 3 << 20, "{row}");
    // A clean stop (SIGTERM, as procd stops it) saves the count; the admin's view above
    // saved nothing (it shows unsaved bytes from a rolled-back transaction). A crash would lose
    // up to the last 60 s, the documented bound.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let _ = daemon.0.wait();
    drop(daemon);
    let _daemon = cafe.start();
    let kept = voucher_row(&cafe)["used_bytes"].as_u64().unwrap();
    eprintln!("before the restart {first} bytes counted, after it {kept} kept");
    // The new daemon counted only the portal's answer to the start check since.
    assert!(
        kept >= first && kept - first < 64 << 10,
        "the clean stop saved it: {first} then {kept}"
    );

    // Phone 2 downloads at 50 Mbit/s until the cap cuts it off.
    let t = Instant::now();
    download(&cafe, "client2", 50, 8, None);
    let row = voucher_row(&cafe);
    let used = row["used_bytes"].as_u64().unwrap();
    eprintln!(
        "cap {cap} bytes; counted {used} when access ended ({} over, {:.1} % of the cap) after {:?}",
        used as i64 - cap as i64,
        (used as f64 - cap as f64) * 100.0 / cap as f64,
        t.elapsed()
    );
    assert!(row["data_used_up_at"].is_i64(), "{row}\n{}", cafe.log());
    assert!(used >= cap, "{row}");
    assert!(used - cap < 2 << 20, "overshoot {} bytes", used - cap);
    // Both phones are out, and told why.
    assert_eq!(cafe.lab.internet("client", false), 0);
    assert_eq!(cafe.lab.internet("client2", false), 0);
    let (_, page) = redeem(&cafe, "client", url);
    assert!(page.contains("data allowance is used up"), "{page}");
    // Phone 1's download, which ended by itself, matches what its interface received (frames,
    // as the router counts them at the guest interface's egress; they include the portal's
    // answers). Phone 2's was cut: frames in flight reach it uncounted.
    let db = rusqlite::Connection::open(cafe.path("wifipos.db")).unwrap();
    let bytes = |mac: &str| -> (i64, i64) {
        db.query_row(
            "SELECT down_bytes, up_bytes FROM devices WHERE mac = ?1",
            [mac],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (down1, up1) = bytes(PHONE);
    let (down2, up2) = bytes("02:00:00:00:00:11");
    let diff = (rx1 as f64 - down1 as f64).abs() / rx1 as f64;
    eprintln!(
        "phone 1 received {rx1} bytes, the router counted {down1} ({:.2} % apart); \
         phone 2 received {} (cut off mid-stream), {down2} counted",
        diff * 100.0,
        phone_rx(&cafe, "client2") - b2
    );
    assert!(diff < 0.02, "{rx1} vs {down1}");
    assert_eq!((down1 + up1 + down2 + up2) as u64, used);
    assert!(cafe.log().contains("used its"), "{}", cafe.log());
}

#[test]
fn a_phone_back_with_a_new_mac_takes_the_place_of_its_idle_self() {
    let Some(cafe) = Cafe::open("um") else { return };
    cafe.write_config("\toption device_idle_replace '1'\n");
    let _daemon = cafe.start();
    let v = cafe.issue(&["--duration", "1h", "--devices", "1"]);
    let url = v["url"].as_str().unwrap();
    assert_eq!(redeem(&cafe, "client", url).0, 200);
    assert_eq!(cafe.lab.internet("client", false), 204);
    let paid_at = Instant::now();

    // The phone forgets the network and comes back with a new private MAC, and so a new
    // DHCP lease (the old address stays vouched for by the old MAC for 90 s: the same address
    // from a new MAC at once would be refused as a neighbour-table forgery).
    let new_mac = "02:00:00:00:0a:10";
    for args in [
        vec!["link", "set", "dev", "eth0", "address", new_mac],
        vec!["addr", "flush", "dev", "eth0"],
        vec!["addr", "add", "10.20.0.40/24", "dev", "eth0"],
        vec!["-6", "addr", "add", "fd20::40/64", "dev", "eth0", "nodad"],
        vec!["route", "replace", "default", "via", "10.20.0.1"],
        vec!["-6", "route", "replace", "default", "via", "fd20::1"],
    ] {
        let o = cafe.lab.run("client", "ip", &args);
        assert!(
            o.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (_, page) = redeem(&cafe, "client", url);
    assert!(
        page.contains("already in use"),
        "refused before the idle time: {page}"
    );
    assert_eq!(cafe.lab.internet("client", false), 0);

    // After a minute without traffic from the old MAC, the new one takes its place.
    let wait = Duration::from_secs(62).saturating_sub(paid_at.elapsed());
    std::thread::sleep(wait);
    let (status, page) = redeem(&cafe, "client", url);
    assert_eq!(status, 200, "{page}\n{}", cafe.log());
    assert_eq!(cafe.lab.internet("client", false), 204);
    let sessions = json(&cafe.admin(&["sessions", "--json"]));
    let macs: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mac"].as_str().unwrap())
        .collect();
    assert_eq!(macs, vec![new_mac], "the old MAC is gone");
    let events = json(&cafe.admin(&["events", "--json"]));
    let replaced = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "device_replaced")
        .unwrap_or_else(|| panic!("{events}"));
    assert_eq!(replaced["mac"], PHONE);
    let nft = cafe.lab.run(
        "router",
        "nft",
        &["list", "set", "inet", "wifipos", "allowed"],
    );
    let set_text = String::from_utf8_lossy(&nft.stdout);
    assert!(!set_text.contains(PHONE), "{set_text}");
    assert!(set_text.contains(new_mac), "{set_text}");
}

/// TCP throughput in Mbit/s from a phone to the upstream's iperf3 on `port` (`down`: -R).
fn iperf_mbit(
    cafe: &Cafe,
    phone: &str,
    port: u16,
    down: bool,
    secs: u32,
    cap: Option<&str>,
) -> f64 {
    let (p, t) = (port.to_string(), secs.to_string());
    let mut args = vec!["-c", "10.99.0.2", "-p", &p, "-t", &t, "-J"];
    if down {
        args.push("-R");
    }
    if let Some(b) = cap {
        args.extend(["-b", b]);
    }
    let out = cafe.lab.run(phone, "iperf3", &args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("{v}"))
        / 1e6
}

#[test]
fn a_speed_limited_voucher_holds_its_phone_while_an_unlimited_phone_runs_free() {
    let Some(cafe) = Cafe::open("us") else { return };
    let _daemon = cafe.start();
    let limited = cafe.issue(&["--duration", "1h", "--down", "2Mbit", "--up", "512kbit"]);
    let free = cafe.issue(&["--duration", "1h"]);
    assert_eq!(
        redeem(&cafe, "client", limited["url"].as_str().unwrap()).0,
        200
    );
    assert_eq!(
        redeem(&cafe, "client2", free["url"].as_str().unwrap()).0,
        200
    );
    for port in ["5201", "5202"] {
        let o = cafe
            .lab
            .run("upstream", "iperf3", &["-s", "-D", "-p", port]);
        assert!(
            o.status.success(),
            "iperf3 -s: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    // The unlimited phone alone, paced at 200 Mbit/s (a rate this shared machine holds
    // steadily; unpaced, veths are CPU-bound and swing with other jobs).
    let solo = iperf_mbit(&cafe, "client2", 5202, true, 4, Some("200M"));
    // Both at once: the limited phone downloads as fast as it may.
    let (limited_down, together) = std::thread::scope(|s| {
        let other = s.spawn(|| iperf_mbit(&cafe, "client2", 5202, true, 6, Some("200M")));
        let mine = iperf_mbit(&cafe, "client", 5201, true, 6, None);
        (mine, other.join().unwrap())
    });
    let limited_up = iperf_mbit(&cafe, "client", 5201, false, 5, None);
    eprintln!(
        "limited phone: {:.0} kbit/s down (limit 2000), {:.0} kbit/s up (limit 512); \
         unlimited phone {together:.1} Mbit/s beside it, {solo:.1} alone ({:.2})",
        limited_down * 1000.0,
        limited_up * 1000.0,
        together / solo
    );
    assert!(
        (limited_down * 1000.0 - 2000.0).abs() <= 300.0,
        "{limited_down} Mbit/s"
    );
    assert!(
        (limited_up * 1000.0 - 512.0).abs() <= 77.0,
        "{limited_up} Mbit/s"
    );
    assert!(together >= 0.9 * solo, "{together} vs {solo} Mbit/s");
    let status = String::from_utf8_lossy(&cafe.admin(&["status"]).stdout).into_owned();
    assert!(status.contains("1 device(s) speed-limited"), "{status}");
}
