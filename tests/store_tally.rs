//! Issue #18, attack 5, in the store: refusals are tallied per minute, kind and device, bounded
//! per minute and in total (a ring), and a database made by the previous schema (2) migrates
//! to the tallying one without losing a row.

mod common;

use common::fixtures::{at, mac, voucher};
use wifipos::store::{self, Store};
use wifipos::voucher::{Malformed, Rejection};

fn rows(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn refusals_of_one_device_in_one_minute_are_one_row_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut s = Store::open(&path).unwrap();
    let why = Rejection::Malformed(Malformed::Empty);
    for i in 0..1000 {
        s.record_refusal(Some(mac(1)), &why, 60_000 + i % 60)
            .unwrap();
    }
    assert_eq!(rows(&path), 1);
    s.record_refusal(Some(mac(1)), &why, 60_060).unwrap();
    s.record_refusal(Some(mac(2)), &why, 60_060).unwrap();
    assert_eq!(rows(&path), 3);
    assert_eq!(s.totals().unwrap().refusals, 1002);
    let ev = s.events(0, 10).unwrap();
    assert!(ev[0].detail.contains("1000 times"), "{:?}", ev[0]);
}

#[test]
fn invented_macs_add_at_most_a_bounded_number_of_rows_per_minute_and_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut s = Store::open(&path).unwrap();
    let why = Rejection::Malformed(Malformed::Empty);
    // 500 invented MACs in one minute.
    for i in 0..500 {
        s.record_refusal(Some(mac(i)), &why, 120).unwrap();
    }
    let per_minute = store::MAX_TALLY_DEVICES_PER_MINUTE + 1;
    assert_eq!(rows(&path), per_minute);
    assert_eq!(s.totals().unwrap().refusals, 500);
    // Minutes on end of it: the ring keeps the newest MAX_TALLY_ROWS (pruned every 64 rows).
    let minutes = store::MAX_TALLY_ROWS / per_minute + 20;
    for m in 0..minutes {
        for i in 0..per_minute as u32 {
            s.record_refusal(Some(mac(i)), &why, 180 + m * 60).unwrap();
        }
    }
    let n = rows(&path);
    assert!(n <= store::MAX_TALLY_ROWS + 64, "{n} rows");
    assert!(n >= store::MAX_TALLY_ROWS - 64, "{n} rows");
    // Sales are never pruned with the tallies.
    s.redeem(&voucher(1, 600, 1), mac(9999), at(1_000_000))
        .unwrap()
        .unwrap();
    assert_eq!(s.totals().unwrap().redemptions, 1);
    assert!(s.integrity_ok().unwrap());
}

#[test]
fn a_schema_2_database_migrates_to_tallies_without_losing_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(store::SCHEMA_V1).unwrap();
        c.execute_batch(store::SCHEMA_V2).unwrap();
        c.execute_batch(
            "INSERT INTO vouchers (key_id, serial, first_redeemed_at, ends_at, duration_s,
                max_devices, purchase_ref) VALUES ('abcd0001', 1, 100, 3700, 3600, 2, 'R1');
             INSERT INTO devices VALUES ('abcd0001', 1, '02:00:00:00:00:01', 100, 100);
             INSERT INTO events (at, kind, mac, key_id, serial, detail)
                VALUES (100, 'redeemed', '02:00:00:00:00:01', 'abcd0001', 1, '');
             INSERT INTO events (at, kind, mac, detail)
                VALUES (101, 'malformed', '02:00:00:00:00:05', 'x'),
                       (102, 'malformed', '02:00:00:00:00:05', 'x'),
                       (103, 'bad_signature', '02:00:00:00:00:06', 'y');
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let before = rows(&path);
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), store::SCHEMA_VERSION);
    assert_eq!(rows(&path), before);
    let t = s.totals().unwrap();
    assert_eq!((t.redemptions, t.refusals), (1, 3));
    assert_eq!(s.active_sessions(200).unwrap(), [(mac(1), 3700)]);
    // Old rows are not tallies: a new refusal in the same minute starts its own row.
    s.record_refusal(Some(mac(5)), &Rejection::Malformed(Malformed::Empty), 104)
        .unwrap();
    s.record_refusal(Some(mac(5)), &Rejection::Malformed(Malformed::Empty), 105)
        .unwrap();
    assert_eq!(rows(&path), before + 1);
    assert_eq!(s.totals().unwrap().refusals, 5);
    assert!(s.integrity_ok().unwrap());
}
