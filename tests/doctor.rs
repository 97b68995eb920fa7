//! `wifiposd doctor` in the lab's router against a live daemon, with a fake /etc (the guide's
//! guest zone with input REJECT, flow offloading on, no HTTPS so no DHCP option 114): a good config exits 0
//! with every check ok; without the portal rule in /etc/config/firewall it exits 1 and names
//! the fix; with the daemon gone it exits 1 saying so.
//!
//! Needs root (namespaces); skips loudly elsewhere and fails under `CI=true`.

#[path = "common/cafe.rs"]
mod cafe;
mod common;
#[path = "common/fake_etc.rs"]
mod fake_etc;

use std::path::Path;
use std::process::Output;

use cafe::Cafe;
use fake_etc::{write_etc, FIREWALL, PORTAL_RULE};

fn doctor(cafe: &Cafe, etc: &Path, json: bool) -> Output {
    let mut c = cafe.lab.cmd("router", cafe::WIFIPOSD);
    c.arg("doctor").arg("--etc").arg(etc);
    if json {
        c.arg("--json");
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn doctor_passes_a_good_router_and_names_the_fix_for_a_missing_firewall_rule() {
    let Some(cafe) = Cafe::open("dr") else { return };
    let etc = cafe.path("etc");
    write_etc(&cafe, &etc, &format!("{FIREWALL}{PORTAL_RULE}"));
    let mut daemon = cafe.start();

    let o = doctor(&cafe, &etc, false);
    let out = text(&o);
    eprintln!("{out}");
    assert_eq!(o.status.code(), Some(0), "{out}");
    for check in [
        "config",
        "guest-interface",
        "firewall",
        "flow-offloading",
        "clock",
        "kernel",
        "daemon",
        "database",
    ] {
        assert!(
            out.contains(&format!("[ok    ] {check}: ")),
            "{check}: {out}"
        );
    }
    assert!(out.contains("rule Allow-wifipos-portal"), "{out}");
    // Without HTTPS no API URL is advertised: a note, not a problem.
    assert!(out.contains("dhcp-114: HTTPS is off"), "{out}");
    assert!(out.contains("flow offloading is on; handled"), "{out}");

    // The same as JSON: every finding ok.
    let o = doctor(&cafe, &etc, true);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 9);
    assert!(
        all.iter()
            .all(|x| x["level"] == "ok" || (x["check"] == "dhcp-114" && x["level"] == "note")),
        "{v}"
    );

    // fw4 without our rule: the guest zone refuses the portal port.
    write_etc(&cafe, &etc, FIREWALL);
    let o = doctor(&cafe, &etc, false);
    let out = text(&o);
    eprintln!("{out}");
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("[BLOCKS] firewall: fw4's zone guest refuses the portal port 2050"),
        "{out}"
    );
    assert!(
        out.contains("/usr/libexec/wifipos-firewall add")
            && out.contains("TCP port 2050 and IPv6 neighbour discovery in from zone guest"),
        "{out}"
    );
    let o = doctor(&cafe, &etc, true);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fw = v
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["check"] == "firewall")
        .unwrap();
    assert_eq!(fw["level"], "blocks");
    assert!(fw["fix"].as_str().unwrap().contains("wifipos_portal"));

    // The daemon gone: said, exit 1.
    write_etc(&cafe, &etc, &format!("{FIREWALL}{PORTAL_RULE}"));
    daemon.kill9();
    let o = doctor(&cafe, &etc, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("[BLOCKS] daemon: wifiposd does not answer"),
        "{out}"
    );
}
