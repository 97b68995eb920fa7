//! Usage in the store on real SQLite files: a database written by the previous release
//! (schema 3) migrates with nothing lost, bytes land on the right device and voucher, a data
//! cap ends a voucher for all its devices, and an idle device gives its place on a full
//! voucher to a new one.

mod common;

use common::fixtures::{at, mac, voucher};
use wifipos::policy::FirewallAction;
use wifipos::store::{Delta, Store};
use wifipos::voucher::{Ext, Limits, Rejection};

fn capped(serial: u64, mib: u32, devices: u8) -> wifipos::voucher::Voucher {
    let mut v = voucher(serial, 3600, devices);
    v.ext = Some(Ext::with_limits(Limits {
        data_cap_mib: Some(mib),
        down_kbit: Some(2000),
        up_kbit: None,
    }));
    v
}

fn delta(n: u32, up: u64, down: u64, at: i64) -> Delta {
    Delta {
        mac: mac(n),
        up,
        down,
        active_at: Some(at),
    }
}

#[test]
fn a_schema_3_database_made_by_the_previous_release_migrates_without_losing_anything() {
    // Made by wifipos at 748118e (tests/fixtures/store/make-v3.rs.txt): three vouchers, one
    // with two devices and a refused third, one revoked, one with its device kicked, a
    // trusted MAC, eight events.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    std::fs::copy("tests/fixtures/store/v3-release-748118e.sqlite", &path).unwrap();
    let now = 1_796_200_300;
    let before = {
        let c = rusqlite::Connection::open(&path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 3, "the fixture is a schema 3 file");
        let n = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        (
            n("SELECT COUNT(*) FROM vouchers"),
            n("SELECT COUNT(*) FROM devices"),
            n("SELECT COUNT(*) FROM events"),
            n("SELECT COUNT(*) FROM mac_rules"),
        )
    };
    assert_eq!(before, (3, 3, 8, 1));
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), wifipos::store::SCHEMA_VERSION);
    assert!(s.integrity_ok().unwrap());
    let live = s.active_sessions(now).unwrap();
    assert_eq!(
        live.len(),
        2,
        "R-1's two devices; R-2 revoked, R-3's device kicked"
    );
    assert!(live.iter().all(|(_, until)| *until == 1_796_286_400));
    assert_eq!(s.events(0, 100).unwrap().len(), 8);
    let vs = s.recent_vouchers(10).unwrap();
    assert_eq!(vs.len(), 3);
    assert!(vs
        .iter()
        .all(|v| v.used_bytes == 0 && v.data_cap.is_none() && v.down_kbit.is_none()));
    assert_eq!(vs.iter().filter(|v| v.revoked_at.is_some()).count(), 1);
    assert_eq!(s.rules().unwrap().len(), 1);
    // And it works as a schema 4 database: usage lands on the migrated devices.
    let (m, _) = live[0];
    s.add_usage(&[Delta {
        mac: m,
        up: 10,
        down: 20,
        active_at: Some(now),
    }])
    .unwrap();
    let line = s.sessions(now).unwrap();
    let mine = line.iter().find(|l| l.mac == m).unwrap();
    assert_eq!(
        (mine.up_bytes, mine.down_bytes, mine.voucher_used_bytes),
        (10, 20, 30)
    );
}

#[test]
fn bytes_land_on_the_device_and_its_current_voucher_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let mut s = Store::open(&path).unwrap();
    let v = capped(1, 5, 2);
    s.redeem(&v, mac(1), at(100)).unwrap().unwrap();
    s.redeem(&v, mac(2), at(110)).unwrap().unwrap();
    s.add_usage(&[
        delta(1, 1_000, 3_000_000, 150),
        delta(2, 500, 1_000_000, 150),
    ])
    .unwrap();
    s.add_usage(&[delta(1, 0, 48_576, 160)]).unwrap();
    // A device on no voucher (trusted staff) is skipped, not an error.
    s.add_usage(&[delta(9, 1, 1, 160)]).unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    let sessions = s.sessions(200).unwrap();
    let one = sessions.iter().find(|l| l.mac == mac(1)).unwrap();
    assert_eq!((one.up_bytes, one.down_bytes), (1_000, 3_048_576));
    assert_eq!(one.data_cap, Some(5 << 20));
    assert_eq!(one.voucher_used_bytes, 1_000 + 3_048_576 + 500 + 1_000_000);
    let c = s.capped(200).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].cap, 5 << 20);
    assert_eq!(c[0].used, 4_050_076);
    assert_eq!(c[0].macs, vec![mac(1), mac(2)]);
    assert!(s.any_capped(200).unwrap());
    assert_eq!(s.capped_of(mac(2), 200).unwrap().as_ref(), Some(&c[0]));
    assert_eq!(s.capped_of(mac(9), 200).unwrap(), None, "on no voucher");
    assert_eq!(s.capped_of(mac(1), 100 + 3600).unwrap(), None, "ended");
    assert!(
        !s.any_capped(100 + 3600).unwrap(),
        "ended: no longer watched"
    );
    assert_eq!(s.rates_of(mac(1)).unwrap(), (Some(2000), None));
    assert_eq!(s.rates_of(mac(9)).unwrap(), (None, None));
}

/// An admin's view of usage up to this moment: unsaved bytes are shown inside a transaction
/// and rolled back after, so the file (what a power cut leaves) does not change, and the
/// same bytes saved later count once.
#[test]
fn a_view_of_unsaved_usage_shows_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let mut s = Store::open(&path).unwrap();
    let v = capped(1, 5, 2);
    s.redeem(&v, mac(1), at(100)).unwrap().unwrap();
    s.add_usage(&[delta(1, 100, 200, 150)]).unwrap();
    // What is on disk, as another connection (and a power cut) sees it; and the WAL's size:
    // a commit would append frames to it.
    let other = rusqlite::Connection::open(&path).unwrap();
    let on_disk = || -> (i64, i64) {
        other
            .query_row("SELECT up_bytes, down_bytes FROM devices", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
    };
    let wal_len = || {
        std::fs::metadata(dir.path().join("w.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let wal_before = wal_len();
    let unsaved = [delta(1, 1_000, 2_000, 160)];
    s.begin_unsaved(&unsaved).unwrap();
    let shown = s.sessions(200).unwrap();
    assert_eq!((shown[0].up_bytes, shown[0].down_bytes), (1_100, 2_200));
    assert_eq!(shown[0].voucher_used_bytes, 3_300);
    assert_eq!(on_disk(), (100, 200), "not committed while shown");
    s.end_unsaved();
    assert_eq!(on_disk(), (100, 200), "nothing saved");
    assert!(wal_len() <= wal_before, "no frames appended");
    let after = s.sessions(200).unwrap();
    assert_eq!((after[0].up_bytes, after[0].down_bytes), (100, 200));
    // Saved later, they count once.
    s.add_usage(&unsaved).unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.sessions(200).unwrap()[0].voucher_used_bytes, 3_300);
}

#[test]
fn a_used_up_cap_ends_the_voucher_for_all_its_devices_and_is_refused_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    let v = capped(1, 5, 2);
    s.redeem(&v, mac(1), at(100)).unwrap().unwrap();
    s.redeem(&v, mac(2), at(100)).unwrap().unwrap();
    // mac(2) also holds an uncapped voucher ending later: it keeps that time.
    let other = voucher(2, 7200, 1);
    s.redeem(&other, mac(2), at(100)).unwrap().unwrap();
    s.add_usage(&[delta(1, 0, 6 << 20, 300)]).unwrap();
    let actions = s.end_for_data("abcd0001", 1, 6 << 20, 300).unwrap();
    assert!(actions.contains(&FirewallAction::Remove { mac: mac(1) }));
    assert!(actions.contains(&FirewallAction::Allow {
        mac: mac(2),
        until: 100 + 7200
    }));
    assert!(
        s.end_for_data("abcd0001", 1, 6 << 20, 301)
            .unwrap()
            .is_empty(),
        "only once"
    );
    assert_eq!(s.access(mac(1), 301).unwrap(), None);
    assert_eq!(
        s.redeem(&v, mac(1), at(302)).unwrap(),
        Err(Rejection::DataUsedUp)
    );
    let kinds: Vec<String> = s
        .events(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"data_used_up".to_string()), "{kinds:?}");
    assert!(!kinds.contains(&"voucher_expired".to_string()), "{kinds:?}");
    let summary = &s.recent_vouchers(10).unwrap();
    let one = summary.iter().find(|v| v.serial == 1).unwrap();
    assert_eq!(one.data_used_up_at, Some(300));
    assert_eq!(one.ends_at, Some(300));
}

#[test]
fn an_idle_device_gives_its_place_on_a_full_voucher_and_a_busy_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.db")).unwrap();
    let v = voucher(1, 7200, 1);
    s.redeem(&v, mac(1), at(100)).unwrap().unwrap();
    s.add_usage(&[delta(1, 10, 10, 400)]).unwrap();
    assert_eq!(
        s.redeem(&v, mac(2), at(500)).unwrap(),
        Err(Rejection::DeviceLimit { max_devices: 1 })
    );
    // 10 minutes idle needed: at 999 it moved 599 s ago.
    assert_eq!(s.replace_idle(&v, mac(2), 600, &[], 999).unwrap(), None);
    // Traffic the caller saw but has not saved yet counts too.
    assert_eq!(
        s.replace_idle(&v, mac(2), 600, &[(mac(1), 500)], 1_000)
            .unwrap(),
        None
    );
    assert_eq!(
        s.replace_idle(&v, mac(2), 600, &[(mac(9), 999)], 1_000)
            .unwrap(),
        Some(mac(1))
    );
    let r = s.redeem(&v, mac(2), at(1_000)).unwrap().unwrap();
    assert!(r.grant.new_device);
    assert_eq!(s.access(mac(1), 1_000).unwrap(), None);
    // The bytes of the device that left still count for the voucher.
    let summary = s.recent_vouchers(1).unwrap();
    assert_eq!(summary[0].used_bytes, 20);
    assert_eq!(summary[0].devices, vec![mac(2)]);
    let replaced = s
        .events(0, 100)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "device_replaced")
        .unwrap();
    assert_eq!(replaced.mac.as_deref(), Some(mac(1).to_string().as_str()));
    assert!(
        replaced.detail.contains("idle for 10 min"),
        "{}",
        replaced.detail
    );
    // 0 = never.
    assert_eq!(s.replace_idle(&v, mac(3), 0, &[], 100_000).unwrap(), None);
}
