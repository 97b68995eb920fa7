//! Per-device traffic counters on the real kernel, inside the lab's router namespace: iperf3
//! moves megabytes between a paid phone and the upstream, and what `usage()` reads from the
//! `up` and `down` sets must agree with the phone's own interface counters; counters survive an
//! extension, end with `remove`, and start from zero after `nft flush ruleset` and a rebuild.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use wifipos::firewall::netlink::NetlinkFirewall;
use wifipos::firewall::{Firewall, Ruleset, TableHealth, Usage};
use wifipos::mac::Mac;

/// client (10.20.0.10) and client4 (10.20.0.13) of `scripts/lab`.
const PHONE: Mac = Mac([2, 0, 0, 0, 0, 0x10]);
const IDLE: Mac = Mac([2, 0, 0, 0, 0, 0x13]);

fn rules() -> Ruleset {
    Ruleset {
        guest_iface: "br-guest".into(),
        portal_port: 2050,
        https_port: None,
        trusted: vec![],
        blocked: vec![],
        garden: vec![],
    }
}

/// The phone's eth0 byte counters as it sees them: (tx, rx).
fn phone_bytes(lab: &common::lab::Lab) -> (u64, u64) {
    let out = lab.run("client", "ip", &["-s", "-j", "link", "show", "eth0"]);
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &j[0]["stats64"];
    (
        s["tx"]["bytes"].as_u64().unwrap(),
        s["rx"]["bytes"].as_u64().unwrap(),
    )
}

fn usage_of(fw: &mut NetlinkFirewall, mac: Mac) -> Option<Usage> {
    fw.usage()
        .unwrap()
        .into_iter()
        .find(|(m, _)| *m == mac)
        .map(|(_, u)| u)
}

/// One iperf3 transfer of `bytes` from the phone to the upstream (`reverse`: the other way).
fn iperf(lab: &common::lab::Lab, bytes: &str, reverse: bool) {
    let mut server: Child = lab
        .cmd("upstream", "iperf3")
        .args(["-s", "-1", "-B", "10.99.0.2"])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 (apt-get install iperf3)");
    // Wait until the server listens.
    for _ in 0..100 {
        let ss = lab.run("upstream", "ss", &["-Htln", "sport", "= :5201"]);
        if !ss.stdout.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut args = vec!["-c", "10.99.0.2", "-n", bytes, "-J"];
    if reverse {
        args.push("-R");
    }
    let out = lab.run("client", "iperf3", &args);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // (iperf3's own count of a `-n` transfer at the receiver is at times short by a megabyte
    // or two; the phone's interface counters say what moved, and are what the kernel's are
    // compared with.)
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j["end"]["sum_sent"]["bytes"].as_u64().unwrap() > 0);
    server.wait().unwrap();
}

/// `a` is within 2 % of `b`.
fn close(a: u64, b: u64) -> bool {
    (a as f64 - b as f64).abs() <= b as f64 * 0.02
}

#[test]
fn counters_match_the_phones_interface_survive_an_extension_and_restart_after_a_rebuild() {
    let Some(lab) = common::lab::up("u") else {
        return;
    };
    lab.enter_router();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules(), &[(IDLE, Duration::from_secs(600))])
        .unwrap();
    assert!(fw.counts_downloads(), "{:?}", fw.why_downloads_uncounted());
    assert_eq!(fw.check().unwrap(), TableHealth::Intact);
    assert_eq!(
        fw.usage().unwrap(),
        vec![(IDLE, Usage::default())],
        "installed MACs start at zero"
    );
    fw.allow(&[(PHONE, Duration::from_secs(600))]).unwrap();
    let listed = lab.run("router", "nft", &["list", "table", "netdev", "wifipos"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("hook egress device \"br-guest\" priority filter; policy accept;"),
        "{text}"
    );
    assert!(
        text.contains("02:00:00:00:00:10 counter packets 0 bytes 0"),
        "{text}"
    );

    let (tx0, rx0) = phone_bytes(&lab);
    let u0 = usage_of(&mut fw, PHONE).unwrap();
    iperf(&lab, "8M", false);
    iperf(&lab, "8M", true);
    let (tx1, rx1) = phone_bytes(&lab);
    let u1 = usage_of(&mut fw, PHONE).unwrap();
    let (up, down) = (u1.up_bytes - u0.up_bytes, u1.down_bytes - u0.down_bytes);
    let (tx, rx) = (tx1 - tx0, rx1 - rx0);
    assert!(
        tx > 4 << 20 && rx > 4 << 20,
        "the phone moved only {tx} and {rx} bytes"
    );
    println!(
        "phone sent {tx} B, counted up {up} B ({} packets); phone received {rx} B, counted \
         down {down} B ({} packets)",
        u1.up_packets, u1.down_packets
    );
    assert!(close(up, tx), "up {up} vs phone tx {tx}");
    assert!(close(down, rx), "down {down} vs phone rx {rx}");
    let idle = usage_of(&mut fw, IDLE).unwrap();
    assert_eq!(idle.down_bytes, 0, "download counted for the idle phone");
    assert_eq!(idle.up_bytes, 0);

    // Allowing again (a longer session) keeps the counters.
    fw.allow(&[(PHONE, Duration::from_secs(1200))]).unwrap();
    let u2 = usage_of(&mut fw, PHONE).unwrap();
    assert!(
        u2.up_bytes >= u1.up_bytes && u2.down_bytes >= u1.down_bytes,
        "{u1:?} then {u2:?}"
    );
    iperf(&lab, "4M", true);
    let u3 = usage_of(&mut fw, PHONE).unwrap();
    assert!(
        u3.down_bytes > u2.down_bytes + (4 << 20),
        "{u2:?} then {u3:?}"
    );
    // The kernel timing out `allowed` leaves the counters for the daemon's last read.
    fw.allow(&[(IDLE, Duration::from_secs(1))]).unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    assert!(!fw.list_allowed().unwrap().iter().any(|(m, _)| *m == IDLE));
    assert!(usage_of(&mut fw, IDLE).is_some());

    // The guest bridge deleted and created again (e.g. `/etc/init.d/network restart`): the
    // kernel either drops the egress chain with its device (before 6.16), which check() must
    // report so the daemon rebuilds, or hooks it to the new device of the same name, where it
    // goes on counting.
    let sh = "ip link del br-guest && ip link add br-guest type bridge && \
              for p in g0 g1 g2 g3; do ip link set $p master br-guest; done && \
              ip link set br-guest up && ip addr add 10.20.0.1/24 dev br-guest";
    let out = lab.run("router", "sh", &["-c", sh]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match fw.check().unwrap() {
        TableHealth::Intact => println!("the egress chain followed the new guest bridge"),
        TableHealth::Changed(what) => {
            println!("after the bridge was recreated: {what}");
            assert!(what.contains("netdev"), "{what}");
            fw.install(&rules(), &[(PHONE, Duration::from_secs(600))])
                .unwrap();
        }
        TableHealth::Missing => panic!("the inet table went with the bridge"),
    }
    let before = usage_of(&mut fw, PHONE).unwrap();
    let (_, rx4) = phone_bytes(&lab);
    iperf(&lab, "4M", true);
    let (_, rx5) = phone_bytes(&lab);
    let after = usage_of(&mut fw, PHONE).unwrap();
    assert!(
        close(after.down_bytes - before.down_bytes, rx5 - rx4),
        "{before:?} then {after:?}, phone received {}",
        rx5 - rx4
    );

    // Removing ends the counting.
    fw.remove(&[PHONE, IDLE]).unwrap();
    assert!(fw.usage().unwrap().is_empty());
    let listed = lab.run(
        "router",
        "nft",
        &["list", "set", "netdev", "wifipos", "down"],
    );
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("02:00:00:00:00:10"));

    // Only the netdev table deleted (e.g. the chain went with a recreated guest bridge).
    fw.allow(&[(PHONE, Duration::from_secs(600))]).unwrap();
    lab.run("router", "nft", &["delete", "table", "netdev", "wifipos"]);
    match fw.check().unwrap() {
        TableHealth::Changed(what) => assert!(what.contains("netdev"), "{what}"),
        other => panic!("{other:?}"),
    }
    // Everything flushed: missing; rebuilt with the paid phone, counted from zero.
    iperf(&lab, "4M", false);
    lab.run("router", "nft", &["flush", "ruleset"]);
    assert_eq!(fw.check().unwrap(), TableHealth::Missing);
    assert!(fw.usage().unwrap_err().is_missing());
    fw.install(&rules(), &[(PHONE, Duration::from_secs(600))])
        .unwrap();
    assert_eq!(fw.check().unwrap(), TableHealth::Intact);
    assert_eq!(fw.usage().unwrap(), vec![(PHONE, Usage::default())]);
    iperf(&lab, "4M", false);
    let u = usage_of(&mut fw, PHONE).unwrap();
    assert!(u.up_bytes > 2 << 20 && u.down_bytes > 0, "{u:?}");

    // A firewall that did not build the tables (a restarted daemon) finds and reads them.
    let mut fresh = NetlinkFirewall::new();
    assert_eq!(fresh.check().unwrap(), TableHealth::Intact);
    let again = usage_of(&mut fresh, PHONE).unwrap();
    assert!(again.up_bytes >= u.up_bytes && again.up_bytes < u.up_bytes + 10_000);
}
