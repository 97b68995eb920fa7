//! The store's admin side on real SQLite files: device status, a voucher's devices, trusting
//! and blocking MACs, expiry and clock-rebase events, totals and events by time range,
//! migration from a hand-made schema-1 file, damaged files left untouched, and processes (not
//! just threads) racing for a voucher's last slot.

mod common;

use common::fixtures::{at, mac, voucher};
use std::process::{Command, Stdio};

use wifipos::policy::{Clock, FirewallAction, MacRule};
use wifipos::store::{self, Store, StoreError};
use wifipos::voucher::Rejection;

fn kinds(s: &Store) -> Vec<String> {
    s.events(i64::MIN, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn device_status_shows_remaining_time_vouchers_and_slots_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    s.redeem(&voucher(1, 600, 2), mac(1), at(0))
        .unwrap()
        .unwrap();
    s.redeem(&voucher(2, 3600, 3), mac(1), at(100))
        .unwrap()
        .unwrap();
    s.redeem(&voucher(2, 3600, 3), mac(2), at(200))
        .unwrap()
        .unwrap();
    let st = s.device_status(mac(1), 1000).unwrap();
    assert_eq!(st.until, Some(3700));
    assert_eq!(st.remaining_s, 2700);
    assert_eq!(st.rule, None);
    let v: Vec<_> = st
        .vouchers
        .iter()
        .map(|u| (u.serial, u.ends_at, u.devices, u.max_devices))
        .collect();
    assert_eq!(v, [(2, 3700, 2, 3), (1, 600, 1, 2)]);
    let unknown = s.device_status(mac(9), 1000).unwrap();
    assert_eq!((unknown.until, unknown.remaining_s), (None, 0));
    assert!(unknown.vouchers.is_empty());
    // Exactly at the end there is nothing left.
    assert_eq!(s.device_status(mac(1), 3700).unwrap().until, None);
}

#[test]
fn a_vouchers_devices_are_listed_first_come_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    let v = voucher(1, 600, 3);
    s.redeem(&v, mac(5), at(10)).unwrap().unwrap();
    s.redeem(&v, mac(3), at(20)).unwrap().unwrap();
    s.redeem(&v, mac(5), at(30)).unwrap().unwrap();
    let d: Vec<_> = s
        .voucher_devices(v.key_id, 1)
        .unwrap()
        .into_iter()
        .map(|d| (d.mac, d.first_seen, d.last_seen))
        .collect();
    assert_eq!(d, [(mac(5), 10, 30), (mac(3), 20, 20)]);
    assert!(s.voucher_devices(v.key_id, 2).unwrap().is_empty());
}

#[test]
fn blocking_a_paying_device_removes_it_and_unblocking_gives_its_time_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    s.redeem(&voucher(1, 600, 1), mac(1), at(0))
        .unwrap()
        .unwrap();
    let c = s
        .set_rule(mac(1), Some(MacRule::Blocked), "rude", 10)
        .unwrap();
    assert_eq!((c.from, c.to), (None, Some(MacRule::Blocked)));
    assert_eq!(c.session, Some(FirewallAction::Remove { mac: mac(1) }));
    assert!(
        s.active_sessions(20).unwrap().is_empty(),
        "a restart must not let it back in"
    );
    assert_eq!(s.rules().unwrap(), [(mac(1), MacRule::Blocked)]);
    assert_eq!(
        s.device_status(mac(1), 20).unwrap().rule,
        Some(MacRule::Blocked)
    );
    let c = s.set_rule(mac(1), None, "", 30).unwrap();
    assert_eq!(
        c.session,
        Some(FirewallAction::Allow {
            mac: mac(1),
            until: 600
        })
    );
    assert_eq!(s.active_sessions(40).unwrap(), [(mac(1), 600)]);
    let t = s
        .set_rule(mac(7), Some(MacRule::Trusted), "till", 50)
        .unwrap();
    assert_eq!(
        (t.from, t.to, t.session),
        (None, Some(MacRule::Trusted), None)
    );
    // Setting the same rule again changes nothing and logs nothing new.
    s.set_rule(mac(7), Some(MacRule::Trusted), "till", 60)
        .unwrap();
    assert_eq!(kinds(&s), ["redeemed", "mac_rule", "mac_rule", "mac_rule"]);
}

#[test]
fn expiries_are_logged_once_at_the_vouchers_end_and_extension_rearms_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    let v = voucher(1, 600, 1);
    s.redeem(&v, mac(1), at(0)).unwrap().unwrap();
    assert_eq!(s.log_expiries(599).unwrap(), 0);
    assert_eq!(s.log_expiries(600).unwrap(), 1, "exactly at the end");
    assert_eq!(s.log_expiries(700).unwrap(), 0, "once");
    let e = s.events_between(600, 601, 10).unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].kind, store::EV_EXPIRED);
    assert_eq!(e[0].serial, Some(1));
    // Extending an expired voucher counts from now and logs its new expiry later.
    assert_eq!(
        s.extend(v.key_id, 1, 60, 1000).unwrap(),
        Some(vec![FirewallAction::Allow {
            mac: mac(1),
            until: 1060
        }])
    );
    assert_eq!(
        s.extend(v.key_id, 1, 0, 1000).unwrap(),
        None,
        "not positive"
    );
    assert_eq!(
        s.redeem(&v, mac(1), at(1060)).unwrap(),
        Err(Rejection::Expired { ended_at: 1060 })
    );
    assert_eq!(
        kinds(&s),
        [
            "redeemed",
            "voucher_expired",
            "voucher_extended",
            "voucher_expired",
            "expired"
        ]
    );
}

#[test]
fn a_revoked_voucher_logs_no_expiry_and_its_refusal_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    let v = voucher(1, 600, 1);
    s.redeem(&v, mac(1), at(0)).unwrap().unwrap();
    assert_eq!(
        s.revoke(v.key_id, 1, 10).unwrap(),
        [FirewallAction::Remove { mac: mac(1) }]
    );
    assert_eq!(s.log_expiries(10_000).unwrap(), 0);
    assert_eq!(
        s.redeem(&v, mac(1), at(20)).unwrap(),
        Err(Rejection::Revoked)
    );
    assert_eq!(kinds(&s), ["redeemed", "voucher_revoked", "revoked"]);
    let t = s.totals().unwrap();
    assert_eq!((t.redemptions, t.refusals), (1, 1));
}

#[test]
fn totals_and_events_follow_the_time_range_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    s.redeem(&voucher(1, 3600, 2), mac(1), at(100))
        .unwrap()
        .unwrap();
    s.redeem(&voucher(1, 3600, 2), mac(2), at(200))
        .unwrap()
        .unwrap();
    s.redeem(&voucher(2, 1800, 1), mac(3), at(5000))
        .unwrap()
        .unwrap();
    s.redeem(&voucher(2, 1800, 1), mac(4), at(5001))
        .unwrap()
        .unwrap_err();
    s.record_refusal(Some(mac(5)), &Rejection::BadSignature, 5002)
        .unwrap();
    let day1 = s.totals_between(0, 1000).unwrap();
    assert_eq!(
        (
            day1.vouchers_redeemed,
            day1.devices,
            day1.minutes_sold,
            day1.redemptions,
            day1.refusals
        ),
        (1, 2, 60, 2, 0)
    );
    let later = s.totals_between(1000, 10_000).unwrap();
    assert_eq!(
        (
            later.vouchers_redeemed,
            later.minutes_sold,
            later.redemptions,
            later.refusals
        ),
        (1, 30, 1, 2)
    );
    let ev = s.events_between(4000, 5002, 100).unwrap();
    let k: Vec<_> = ev.iter().map(|e| (e.at, e.kind.as_str())).collect();
    // voucher 1 expired at 3700, before the range; the bad signature at 5002 is after it.
    assert_eq!(k, [(5000, "redeemed"), (5001, "device_limit")]);
    assert_eq!(s.events_between(0, i64::MAX, 2).unwrap().len(), 2, "limit");
}

#[test]
fn a_customer_who_paid_before_ntp_synced_keeps_the_time_paid_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    let stale = Clock {
        now: 1_000,
        trusted: false,
    };
    s.redeem(&voucher(1, 3600, 1), mac(1), stale)
        .unwrap()
        .unwrap();
    s.redeem(&voucher(2, 600, 1), mac(2), at(1_500))
        .unwrap()
        .unwrap();
    // NTP moves the clock from 1 100 to 1 000 100.
    let acts = s.clock_jumped(999_000, at(1_000_100)).unwrap();
    assert_eq!(
        acts,
        [FirewallAction::Allow {
            mac: mac(1),
            until: 1_003_600
        }]
    );
    assert_eq!(s.active_sessions(1_000_100).unwrap(), [(mac(1), 1_003_600)]);
    // Only once: it now counts as started on a trusted clock.
    assert!(s.clock_jumped(50, at(1_000_150)).unwrap().is_empty());
    assert!(kinds(&s).contains(&"clock_rebased".to_string()));
}

/// The v1 schema as shipped, with a little data, made by hand.
fn v1_file(path: &std::path::Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(store::SCHEMA_V1).unwrap();
    c.execute_batch(
        "INSERT INTO vouchers VALUES ('abcd0001', 1, 100, 3700, 3600, 2, 'R1', NULL);
         INSERT INTO vouchers VALUES ('abcd0001', 2, NULL, NULL, 0, 0, '', 50);
         INSERT INTO devices VALUES ('abcd0001', 1, '02:00:00:00:00:01', 100, 100);
         INSERT INTO events (at, kind, mac, key_id, serial, detail)
            VALUES (100, 'redeemed', '02:00:00:00:00:01', 'abcd0001', 1, '');
         INSERT INTO events (at, kind, detail) VALUES (50, 'revoked', 'abcd0001:2 (0 devices)');
         PRAGMA user_version = 1;",
    )
    .unwrap();
}

#[test]
fn a_schema_1_database_migrates_forward_and_keeps_sessions_revocations_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    v1_file(&path);
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), store::SCHEMA_VERSION);
    assert_eq!(s.active_sessions(200).unwrap(), [(mac(1), 3700)]);
    let v1 = voucher(1, 3600, 2);
    let again = s.redeem(&v1, mac(2), at(300)).unwrap().unwrap();
    assert_eq!((again.grant.ends_at, again.grant.devices), (3700, 2));
    assert_eq!(
        s.redeem(&voucher(2, 600, 1), mac(3), at(300)).unwrap(),
        Err(Rejection::Revoked)
    );
    assert_eq!(kinds(&s)[..2], ["voucher_revoked", "redeemed"]);
    assert!(s.integrity_ok().unwrap());
    drop(s);
    // Reopening a current file migrates nothing.
    assert_eq!(
        Store::open(&path).unwrap().schema_version().unwrap(),
        store::SCHEMA_VERSION
    );
}

#[test]
fn a_fresh_file_gets_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/new.db");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), store::SCHEMA_VERSION);
    assert!(s.integrity_ok().unwrap());
}

#[test]
fn a_damaged_database_is_refused_with_a_clear_message_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.redeem(&voucher(1, 600, 1), mac(1), at(0))
            .unwrap()
            .unwrap();
    }
    // Keep SQLite's header, scribble over the rest of the first page (the schema).
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(100).take(3000) {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert!(err.to_string().contains("bad.db"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_short_file_is_not_a_database_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.db");
    std::fs::write(&path, b"SQLite").unwrap();
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err}");
    assert!(err.to_string().contains("not SQLite at all"));
    assert_eq!(std::fs::read(&path).unwrap(), b"SQLite");
}

#[test]
fn a_folder_in_place_of_the_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path()).err().expect("refused");
    assert!(
        err.to_string().contains("cannot open the database"),
        "{err}"
    );
}

/// Child side of the process race: waits for the go file, tries once, prints the outcome.
#[test]
#[ignore = "runs only as a child process of the process race"]
fn race_child() {
    let path = std::env::var("WIFIPOS_RACE_DB").expect("WIFIPOS_RACE_DB");
    let n: u32 = std::env::var("WIFIPOS_RACE_N").unwrap().parse().unwrap();
    let go = std::path::PathBuf::from(format!("{path}.go"));
    let mut s = Store::open(path.as_ref()).unwrap();
    while !go.exists() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    match s.redeem(&voucher(7, 3600, 3), mac(100 + n), at(1)).unwrap() {
        Ok(_) => println!("won"),
        Err(why) => println!("lost {}", why.code()),
    }
}

#[test]
fn many_processes_racing_for_the_last_slot_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let v = voucher(7, 3600, 3);
    {
        let mut s = Store::open(&path).unwrap();
        s.redeem(&v, mac(1), at(0)).unwrap().unwrap();
        s.redeem(&v, mac(2), at(0)).unwrap().unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8u32)
        .map(|n| {
            Command::new(&exe)
                .args(["--exact", "race_child", "--ignored", "--nocapture"])
                .env("WIFIPOS_RACE_DB", &path)
                .env("WIFIPOS_RACE_N", n.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::write(format!("{}.go", path.display()), b"").unwrap();
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap())
        .collect();
    let won = outs.iter().filter(|o| o.contains("won")).count();
    let lost = outs
        .iter()
        .filter(|o| o.contains("lost device_limit"))
        .count();
    assert_eq!((won, lost), (1, 7), "{outs:?}");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.voucher_devices(v.key_id, 7).unwrap().len(), 3);
    assert_eq!(s.totals().unwrap().refusals, 7);
}
