//! The portal's address from the router: with `option portal_address` unset the daemon takes
//! the guest interface's IPv4 address, serves there and says so in `status`; a guest interface
//! without an IPv4 address (or no such interface) stops it with a sentence naming it.
//!
//! Needs root (namespaces); skips loudly elsewhere and fails under `CI=true`.

#[path = "common/cafe.rs"]
mod cafe;
mod common;

use std::time::Duration;

use cafe::Cafe;

/// The cafe's config without `option portal_address`, for guest interface `iface`.
fn write_config(cafe: &Cafe, iface: &str) {
    let text = format!(
        "config wifipos 'main'\n\
         \toption guest_iface '{iface}'\n\
         \toption database '{}'\n\
         \toption control_socket '{}'\n\
         \t{}\n",
        cafe.path("wifipos.db").display(),
        cafe.socket().display(),
        cafe.trusted,
    );
    std::fs::write(cafe.path("wifipos.conf"), text).unwrap();
}

/// Runs `serve` expecting it to exit: its code and what it said.
fn refused(cafe: &Cafe) -> (Option<i32>, String) {
    let _ = std::fs::remove_file(cafe.path("daemon.log"));
    let mut d = cafe.spawn(&[]);
    for _ in 0..100 {
        if let Some(st) = d.0.try_wait().unwrap() {
            return (st.code(), cafe.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the daemon kept running: {}", cafe.log());
}

#[test]
fn an_unset_portal_address_comes_from_the_guest_interface() {
    let Some(cafe) = Cafe::open("pa") else { return };
    // A second address on br-guest: the primary one is still chosen.
    let o = cafe.lab.run(
        "router",
        "ip",
        &["addr", "add", "10.20.0.77/24", "dev", "br-guest"],
    );
    assert!(o.status.success());
    write_config(&cafe, "br-guest");
    let o = cafe
        .lab
        .cmd("router", cafe::WIFIPOSD)
        .arg("captive-url")
        .arg("--config")
        .arg(cafe.path("wifipos.conf"))
        .output()
        .unwrap();
    // Without HTTPS there is no API URL to advertise (phones ignore an http one).
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    let daemon = cafe.start();
    // The phone is sent to the address the router holds.
    let (status, page) = cafe
        .lab
        .curl("client", &["http://10.99.0.2/hotspot-detect.html"]);
    assert_eq!(status, 302, "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("location: http://10.20.0.1:2050/"),
        "{page}"
    );
    let o = cafe.admin(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("portal http://10.20.0.1:2050 (address from br-guest) on br-guest"),
        "{text}"
    );
    let o = cafe.admin(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["portal_address_from"], "br-guest");
    drop(daemon);

    // An interface without an IPv4 address: refused, naming it.
    let o = cafe.lab.run(
        "router",
        "ip",
        &["link", "add", "br-empty", "type", "bridge"],
    );
    assert!(o.status.success());
    write_config(&cafe, "br-empty");
    let (code, log) = refused(&cafe);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("the guest interface br-empty has no IPv4 address"),
        "{log}"
    );
    // No such interface at all.
    write_config(&cafe, "br-nowhere");
    let (code, log) = refused(&cafe);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("there is no network interface called br-nowhere"),
        "{log}"
    );
}
