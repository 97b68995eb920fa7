//! The standing sets and the health check on the real kernel, in the lab's router namespace:
//! trusted, blocked and walled-garden lists replaced in one batch each and enforced on real
//! packets; changes made from outside (a deleted rule, an extra rule, a flushed ruleset) are
//! reported by `check()` and repaired by a rebuild that keeps paid devices.

mod common;

use std::time::Duration;

use wifipos::firewall::netlink::NetlinkFirewall;
use wifipos::firewall::{Firewall, Ruleset, TableHealth};
use wifipos::mac::Mac;

/// client4 in the lab: in no list at first.
const PHONE4: Mac = Mac([2, 0, 0, 0, 0, 0x13]);
const PHONE: Mac = Mac([2, 0, 0, 0, 0, 0x10]);

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

#[test]
fn trusted_blocked_and_garden_lists_are_replaced_in_one_batch_and_enforced() {
    let Some(lab) = common::lab::up("s") else {
        return;
    };
    lab.enter_router();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules(), &[]).unwrap();
    assert_eq!(lab.internet("client4", false), 0, "unpaid, untrusted");

    fw.set_trusted(&[PHONE4]).unwrap();
    assert_eq!(lab.internet("client4", false), 204, "trusted passes");
    assert_eq!(
        lab.internet("client4", true),
        204,
        "trusted passes over IPv6"
    );
    fw.set_blocked(&[PHONE4]).unwrap();
    assert_eq!(lab.internet("client4", false), 0, "blocked beats trusted");
    fw.set_blocked(&[]).unwrap();
    fw.set_trusted(&[]).unwrap();
    assert_eq!(lab.internet("client4", false), 0, "lists emptied");

    // The walled garden: the upstream host (v4 only) is reachable before paying.
    fw.set_garden(&[
        ("10.99.0.0".parse().unwrap(), 30),
        ("10.99.0.2".parse().unwrap(), 32),
        ("192.0.2.0".parse().unwrap(), 24),
        ("2001:db8::".parse().unwrap(), 32),
    ])
    .unwrap();
    assert_eq!(
        lab.internet("client4", false),
        204,
        "garden reachable unpaid"
    );
    assert_eq!(
        lab.internet("client4", true),
        0,
        "fd99::2 is not in the garden"
    );
    let j = lab.nft_json();
    let garden4 = j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["set"]["name"] == "garden4")
        .unwrap()
        .clone();
    assert_eq!(garden4["set"]["flags"][0], "interval");
    let elems = garden4["set"]["elem"].to_string();
    assert!(
        elems.contains("10.99.0.0") && elems.contains("192.0.2.0"),
        "{elems}"
    );
    fw.set_garden(&[]).unwrap();
    assert_eq!(lab.internet("client4", false), 0, "garden emptied");
    assert_eq!(fw.check().unwrap(), TableHealth::Intact);

    // The garden's interval elements load back with `nft -f` too.
    fw.set_garden(&[("10.99.0.2".parse().unwrap(), 32)])
        .unwrap();
    let listed = lab.run("router", "nft", &["list", "ruleset"]);
    let path = std::env::temp_dir().join(format!("{}-garden.nft", lab.name));
    std::fs::write(&path, &listed.stdout).unwrap();
    lab.run("router", "nft", &["flush", "ruleset"]);
    let back = lab.run("router", "nft", &["-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_eq!(
        lab.internet("client4", false),
        204,
        "reloaded garden still works"
    );
}

#[test]
fn changes_from_outside_are_reported_and_a_rebuild_restores_paid_devices() {
    let Some(lab) = common::lab::up("c") else {
        return;
    };
    lab.enter_router();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules(), &[(PHONE, Duration::from_secs(300))])
        .unwrap();
    assert_eq!(fw.check().unwrap(), TableHealth::Intact);

    let nft = |args: &[&str]| {
        let o = lab.run("router", "nft", args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // An admin adds a rule.
    nft(&["add", "rule", "inet", "wifipos", "input", "accept"]);
    match fw.check().unwrap() {
        TableHealth::Changed(what) => assert!(what.contains("input"), "{what}"),
        other => panic!("{other:?}"),
    }
    let paid = fw.list_allowed().unwrap();
    fw.install(&rules(), &paid).unwrap();
    assert_eq!(fw.check().unwrap(), TableHealth::Intact);

    // An admin empties a chain.
    nft(&["flush", "chain", "inet", "wifipos", "forward"]);
    assert!(matches!(fw.check().unwrap(), TableHealth::Changed(_)));
    nft(&["flush", "ruleset"]);
    assert_eq!(fw.check().unwrap(), TableHealth::Missing);
    assert!(
        fw.list_allowed().is_err(),
        "nothing to list without the table"
    );

    // The caller rebuilds from its store: install with the sessions' remaining time.
    fw.install(&rules(), &[(PHONE, Duration::from_secs(250))])
        .unwrap();
    assert_eq!(fw.check().unwrap(), TableHealth::Intact);
    let listed = fw.list_allowed().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].1 > Duration::from_secs(240), "{listed:?}");
    assert_eq!(lab.internet("client", false), 204);
    assert_eq!(lab.internet("client", true), 204);
}
