//! Issue #18, attack 3: a guest forges the router's neighbour entry for a paying guest's
//! address (ARP "who-has 10.20.0.1 tell <victim>" with its own MAC; one IPv6 Neighbour
//! Advertisement with the override flag) just before the victim's voucher request reaches the
//! portal. The portal must not credit the attacker: it refuses with a clear page (409), the
//! victim keeps its voucher, the event log names the conflict, and once the neighbour entry is
//! true again the victim redeems it.
//!
//! The forged frames are raw packets from python3 (AF_PACKET) in the attacker's namespace.
//! Needs root (namespaces, nftables); skips loudly elsewhere and fails under `CI=true`.

#[path = "common/cafe.rs"]
mod cafe;
mod common;
#[path = "common/phones.rs"]
mod phones;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cafe::Cafe;

/// Sends forged neighbour messages from `ns`'s eth0: `arp VICTIM_IP` (an ARP request for the
/// router that claims VICTIM_IP is at our MAC) or `na VICTIM_IP6` (an unsolicited Neighbour
/// Advertisement with the override flag, target VICTIM_IP6, our MAC as its link-layer address),
/// `count` times, 10 ms apart.
const FORGE: &str = r#"
import socket, struct, sys, time
kind, victim, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = open("/sys/class/net/eth0/address").read().strip()
me = bytes.fromhex(mac.replace(":", ""))
if kind == "arp":
    frame = (b"\xff" * 6 + me + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
             + me + socket.inet_aton(victim) + b"\x00" * 6 + socket.inet_aton("10.20.0.1"))
else:
    src = socket.inet_pton(socket.AF_INET6, victim)
    dst = socket.inet_pton(socket.AF_INET6, "ff02::1")
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + src + b"\x02\x01" + me
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58) + body
    total = sum(struct.unpack("!%dH" % (len(pseudo) // 2), pseudo))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    body = body[:2] + struct.pack("!H", ~total & 0xffff) + body[4:]
    ip6 = struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + src + dst
    frame = b"\x33\x33\x00\x00\x00\x01" + me + b"\x86\xdd" + ip6 + body
for _ in range(count):
    s.send(frame)
    time.sleep(0.01)
"#;

fn forge(cafe: &Cafe, host: &str, kind: &str, victim: &str, count: u32) {
    let out = cafe.lab.run(
        host,
        "python3",
        &["-c", FORGE, kind, victim, &count.to_string()],
    );
    assert!(
        out.status.success(),
        "forging from {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The MAC the router's neighbour table holds for `ip`.
fn neighbour(cafe: &Cafe, ip: &str) -> String {
    let out = cafe
        .lab
        .run("router", "ip", &["-j", "neigh", "show", "to", ip]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["lladdr"].as_str().unwrap_or("").to_owned()
}

/// From the victim's namespace: opens a connection to the portal at `addr`, lets `between` run
/// (the attacker strikes), then sends `GET path` on that connection and returns the status and
/// the body. The answer may be late: while the forged entry stands, the router sends it to the
/// attacker until it re-resolves the victim's address.
fn request_after(
    cafe: &Cafe,
    victim: &str,
    addr: &str,
    path: &str,
    between: impl FnOnce(),
) -> (u16, String) {
    let ns = phones::ns_of(&cafe.lab, victim);
    let addr: SocketAddr = addr.parse().unwrap();
    let conn = std::thread::spawn(move || {
        phones::enter_ns(&ns);
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap()
    })
    .join()
    .unwrap();
    between();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut conn = conn;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 10.20.0.1:2050\r\nAccept-Language: en\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    (common::http_status(&text), text)
}

/// The event log, from the admin command.
fn events(cafe: &Cafe) -> String {
    let out = cafe.admin(&["events", "--since", "1h", "--json"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn redeem_under_attack(v6: bool) {
    let tag = if v6 { "spoof6" } else { "spoof4" };
    let Some(cafe) = Cafe::open(tag) else { return };
    let _d = cafe.start();
    let (victim_ip, portal) = if v6 {
        ("fd20::10", "[fd20::1]:2050")
    } else {
        ("10.20.0.10", "10.20.0.1:2050")
    };
    let (victim_mac, thief_mac) = ("02:00:00:00:00:10", "02:00:00:00:00:11");
    // The router knows the victim (it has talked to it).
    let (code, _) = cafe.lab.curl(
        "client",
        &["-H", "Host: 10.20.0.1:2050", &format!("http://{portal}/")],
    );
    assert_eq!(code, 200);
    assert_eq!(neighbour(&cafe, victim_ip), victim_mac);

    let v = cafe.issue(&["--duration", "1h", "--devices", "1"]);
    let path = format!("/v/{}", v["token"].as_str().unwrap());
    let (code, page) = request_after(&cafe, "client", portal, &path, || {
        if v6 {
            forge(&cafe, "client2", "na", victim_ip, 3);
        } else {
            forge(&cafe, "client2", "arp", victim_ip, 3);
        }
        assert_eq!(
            neighbour(&cafe, victim_ip),
            thief_mac,
            "the forged message did not change the router's neighbour entry"
        );
    });
    let allowed = phones::allowed_macs(&cafe.lab);
    assert!(
        !allowed.contains(thief_mac),
        "the attacker was credited with the victim's voucher: {allowed:?}\n{page}\n{}",
        cafe.log()
    );
    assert_eq!(code, 409, "{page}\n{}", cafe.log());
    assert!(page.contains("Your voucher has NOT been used"), "{page}");
    let ev = events(&cafe);
    assert!(
        ev.contains("address_conflict") && ev.contains(thief_mac) && ev.contains(victim_mac),
        "the event log does not name the conflict: {ev}"
    );

    // The victim's own ARP/NDP traffic puts the entry right again; then its voucher works.
    if v6 {
        forge(&cafe, "client", "na", victim_ip, 1);
    } else {
        forge(&cafe, "client", "arp", victim_ip, 1);
    }
    assert_eq!(neighbour(&cafe, victim_ip), victim_mac);
    let (code, page) = request_after(&cafe, "client", portal, &path, || {});
    assert_eq!(code, 200, "{page}\n{}", cafe.log());
    assert!(page.contains("id=\"online\""), "{page}");
    let allowed = phones::allowed_macs(&cafe.lab);
    assert!(allowed.contains(victim_mac), "{allowed:?}");
    assert!(!allowed.contains(thief_mac), "{allowed:?}");
}

#[test]
fn a_forged_arp_entry_does_not_steal_a_voucher() {
    redeem_under_attack(false);
}

#[test]
fn a_forged_neighbour_advertisement_does_not_steal_a_voucher() {
    redeem_under_attack(true);
}

/// Sends a small UDP datagram to the router every 20 ms for 20 s: frames from this port.
const CHATTER: &str = "import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + 20
while time.monotonic() < end:
    s.sendto(b'x', ('10.20.0.1', 9))
    time.sleep(0.02)
";

/// A clone of a paid device's MAC on a second bridge port: both send, the bridge's forwarding
/// database flips between the two ports, the daemon logs a `mac_clone` event and `status`
/// shows it; blocking is the admin's choice.
#[test]
fn a_cloned_mac_on_two_bridge_ports_is_logged_and_shown_in_status() {
    let Some(cafe) = Cafe::open("clone") else {
        return;
    };
    let _d = cafe.start();
    let paid = "02:00:00:00:00:12";
    let v = cafe.issue(&["--duration", "1h"]);
    let (code, _) = cafe.lab.curl("client3", &[v["url"].as_str().unwrap()]);
    assert_eq!(code, 200);
    let status = cafe.admin(&["status"]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains("CLONE"));
    // client4 takes the paid phone's MAC; both keep talking.
    let out = cafe
        .lab
        .run("client4", "ip", &["link", "set", "eth0", "address", paid]);
    assert!(out.status.success(), "{out:?}");
    let pings: Vec<_> = ["client3", "client4"]
        .iter()
        .map(|h| {
            cafe.lab
                .cmd(h, "python3")
                .args(["-c", CHATTER])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let t = std::time::Instant::now();
    let mut text = String::new();
    // The daemon samples the forwarding database once a second and wants 3 port changes; with
    // both phones sending, each sample finds either port, so this takes a few seconds.
    while t.elapsed() < Duration::from_secs(25) {
        let out = cafe.admin(&["status"]);
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("CLONE") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for mut p in pings {
        let _ = p.kill();
        let _ = p.wait();
    }
    assert!(
        text.contains(&format!("CLONE: {paid}")) && text.contains("g2") && text.contains("g3"),
        "status does not show the clone:\n{text}\n{}",
        cafe.log()
    );
    let ev = events(&cafe);
    assert!(ev.contains("mac_clone"), "{ev}");
    // Nobody else is called a clone.
    assert!(!text.contains("02:00:00:00:00:10"), "{text}");
    let out = cafe.admin(&["block", paid]);
    assert!(out.status.success(), "{out:?}");
}
