//! The nftables controller on the real kernel, inside the lab's router namespace: the table as
//! designed, element timeouts that expire by themselves, real packets from the phones, batches
//! of thousands, re-installs that keep paid devices, and recovery after `nft flush ruleset`.

mod common;

use std::time::{Duration, Instant};

use wifipos::firewall::netlink::NetlinkFirewall;
use wifipos::firewall::{Firewall, Health, Ruleset, TableHealth};
use wifipos::mac::Mac;

const PHONE: Mac = Mac([2, 0, 0, 0, 0, 0x10]);
const PHONE2: Mac = Mac([2, 0, 0, 0, 0, 0x11]);
const PHONE3: Mac = Mac([2, 0, 0, 0, 0, 0x12]);

fn rules() -> Ruleset {
    Ruleset {
        guest_iface: "br-guest".into(),
        portal_port: 2050,
        https_port: None,
        trusted: vec![PHONE2],
        blocked: vec![PHONE3],
        garden: vec![],
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn the_installed_table_is_exactly_the_designed_sets_and_chains_and_loads_back() {
    let Some(lab) = common::lab::up("f") else {
        return;
    };
    lab.enter_router();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules(), &[(PHONE, secs(600))]).unwrap();
    assert_eq!(fw.health().unwrap(), Health::Intact);
    let j = lab.nft_json();
    let items = j["nftables"].as_array().unwrap();
    let mut sets: Vec<&str> = items
        .iter()
        .filter_map(|i| i["set"]["name"].as_str())
        .collect();
    let mut chains: Vec<&str> = items
        .iter()
        .filter_map(|i| i["chain"]["name"].as_str())
        .collect();
    sets.sort();
    chains.sort();
    assert_eq!(
        sets,
        ["allowed", "blocked", "garden4", "garden6", "portal4", "portal6", "trusted", "up"]
    );
    let up = items.iter().find(|i| i["set"]["name"] == "up").unwrap();
    assert!(up["set"]["stmt"][0].get("counter").is_some(), "{up}");
    // Download counting: the egress chain of the guest interface, in its own netdev table.
    let netdev = lab.run("router", "nft", &["list", "table", "netdev", "wifipos"]);
    let netdev = String::from_utf8_lossy(&netdev.stdout);
    assert!(
        netdev.contains("set down {\n\t\ttype ether_addr\n\t\tcounter\n"),
        "{netdev}"
    );
    assert!(
        netdev.contains(
            "type filter hook egress device \"br-guest\" priority filter; policy accept;"
        ),
        "{netdev}"
    );
    let portal4 = items
        .iter()
        .find(|i| i["set"]["name"] == "portal4")
        .unwrap();
    assert_eq!(
        portal4["set"]["type"],
        serde_json::json!(["ipv4_addr", "ether_addr"])
    );
    assert_eq!(portal4["set"]["size"], 32768);
    assert_eq!(chains, ["forward", "input", "prerouting"]);
    let allowed = items
        .iter()
        .find(|i| i["set"]["name"] == "allowed")
        .unwrap();
    assert_eq!(allowed["set"]["type"], "ether_addr");
    assert_eq!(allowed["set"]["flags"][0], "timeout");

    // `nft list ruleset` output loads back with `nft -f`, to the same table.
    let listed = lab.run("router", "nft", &["list", "ruleset"]);
    let table = lab.run("router", "nft", &["list", "table", "inet", "wifipos"]);
    let path = std::env::temp_dir().join(format!("{}-ruleset.nft", lab.name));
    std::fs::write(&path, &listed.stdout).unwrap();
    lab.run("router", "nft", &["flush", "ruleset"]);
    let back = lab.run("router", "nft", &["-f", path.to_str().unwrap()]);
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    let again = lab.run("router", "nft", &["list", "table", "inet", "wifipos"]);
    let strip = |o: &std::process::Output| {
        // Timeouts keep running between the two listings.
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter(|w| !w.contains("expires") && !w.ends_with('s'))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(strip(&table), strip(&again));
    // Same contents, but not the table we built: the daemon rebuilds it.
    assert!(matches!(fw.check().unwrap(), TableHealth::Changed(_)));
    fw.install(&rules(), &[(PHONE, secs(600))]).unwrap();
    assert_eq!(fw.check().unwrap(), TableHealth::Intact);
    assert_eq!(fw.health().unwrap(), Health::Intact);
}

#[test]
fn an_element_is_listed_with_its_timeout_and_gone_after_it_expires() {
    let Some(lab) = common::lab::up("t") else {
        return;
    };
    lab.enter_router();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules(), &[]).unwrap();
    fw.allow(&[(PHONE, secs(3))]).unwrap();
    let listed = fw.list_allowed().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, PHONE);
    assert!(
        listed[0].1 > secs(2) && listed[0].1 <= secs(3),
        "{:?}",
        listed[0].1
    );
    // Allowing again refreshes the time instead of failing (EEXIST).
    std::thread::sleep(Duration::from_millis(1500));
    fw.allow(&[(PHONE, secs(3))]).unwrap();
    assert!(fw.list_allowed().unwrap()[0].1 > secs(2));
    std::thread::sleep(Duration::from_millis(3300));
    assert!(fw.list_allowed().unwrap().is_empty());
    // Removing an absent MAC is not an error.
    fw.remove(&[PHONE]).unwrap();
}

#[test]
fn real_packets_unpaid_refused_redirected_paid_pass_until_the_kernel_times_them_out() {
    let Some(lab) = common::lab::up("p") else {
        return;
    };
    lab.enter_router();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules(), &[]).unwrap();
    // A tiny "portal" on the router's portal port, and DNS.
    let portal = std::net::TcpListener::bind("0.0.0.0:2050").unwrap();
    let dns = std::net::UdpSocket::bind("10.20.0.1:53").unwrap();
    let portal_thread = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        for stream in portal.incoming().take(1) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nportal",
            );
        }
    });

    let t = Instant::now();
    assert_eq!(lab.internet("client", false), 0, "unpaid: 8080 refused");
    assert!(
        t.elapsed() < secs(1),
        "refused fast (TCP reset), not timed out"
    );
    let (status, text) = lab.curl("client", &["http://10.99.0.2/generate_204"]);
    assert_eq!(status, 200, "port 80 lands on the portal port: {text}");
    assert!(text.ends_with("portal"));
    portal_thread.join().unwrap();
    let out = lab.run("client", "python3", &["-c", "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'q', ('10.20.0.1', 53))"]);
    assert!(out.status.success());
    dns.set_read_timeout(Some(secs(2))).unwrap();
    let mut b = [0u8; 8];
    assert_eq!(
        dns.recv_from(&mut b).unwrap().0,
        1,
        "DNS to the router works unpaid"
    );

    fw.allow(&[(PHONE, secs(4))]).unwrap();
    assert_eq!(lab.internet("client", false), 204, "paid over IPv4");
    assert_eq!(lab.internet("client", true), 204, "paid over IPv6");
    assert_eq!(lab.internet("client2", false), 204, "trusted passes");
    fw.allow(&[(PHONE3, secs(60))]).unwrap();
    assert_eq!(
        lab.internet("client3", false),
        0,
        "blocked even while allowed"
    );
    std::thread::sleep(secs(5));
    assert_eq!(
        lab.internet("client", false),
        0,
        "the kernel ended it, nobody called us"
    );
}

#[test]
fn reinstalling_keeps_paid_devices_and_a_flushed_table_is_detected_and_rebuilt() {
    let Some(lab) = common::lab::up("r") else {
        return;
    };
    lab.enter_router();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules(), &[]).unwrap();
    fw.allow(&[(PHONE, secs(300))]).unwrap();
    let before = fw.list_allowed().unwrap();
    fw.install(&rules(), &before).unwrap();
    assert_eq!(fw.list_allowed().unwrap().len(), 1);
    assert_eq!(lab.internet("client", false), 204);

    let out = lab.run("router", "nft", &["flush", "ruleset"]);
    assert!(out.status.success());
    assert_eq!(fw.health().unwrap(), Health::Missing);
    fw.install(&rules(), &before).unwrap();
    assert_eq!(fw.health().unwrap(), Health::Intact);
    assert_eq!(fw.list_allowed().unwrap()[0].0, PHONE);
    assert_eq!(lab.internet("client", false), 204);
}

#[test]
fn ten_thousand_macs_go_in_and_out_in_batches() {
    let Some(lab) = common::lab::up("b") else {
        return;
    };
    lab.enter_router();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules(), &[]).unwrap();
    let macs: Vec<(Mac, Duration)> = (0..10_000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            (Mac([0x06, 0, b[0], b[1], b[2], b[3]]), secs(600))
        })
        .collect();
    fw.allow(&macs).unwrap();
    assert_eq!(fw.list_allowed().unwrap().len(), 10_000);
    fw.allow(&macs[..10]).unwrap();
    let gone: Vec<Mac> = macs[..5000].iter().map(|(m, _)| *m).collect();
    fw.remove(&gone).unwrap();
    assert_eq!(fw.list_allowed().unwrap().len(), 5000);
}
