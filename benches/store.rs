//! Store throughput: redemptions per second with production durability (WAL,
//! synchronous=FULL, one immediate transaction each) and the file size afterwards; plus
//! voucher signature verifications per second on one core.

use std::time::Instant;

use ed25519_dalek::SigningKey;
use wifipos::keys::{KeyId, Keyring};
use wifipos::mac::Mac;
use wifipos::policy::Clock;
use wifipos::store::{Durability, Store};
use wifipos::voucher::{self, Voucher};

fn main() {
    let n: u32 = std::env::var("BENCH_REDEMPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let key = SigningKey::from_bytes(&[7; 32]);
    let key_id = KeyId::of(&key.verifying_key());
    redemptions(n, key_id, Durability::Full, "synchronous=FULL, production");
    redemptions(
        n,
        key_id,
        Durability::Normal,
        "synchronous=NORMAL, for comparison",
    );

    let ring = Keyring::new([key.verifying_key()]);
    let token = Voucher {
        key_id,
        serial: 1,
        issued_at: 1,
        redeem_by: 0,
        duration_s: 3600,
        max_devices: 3,
        purchase_ref: "PUR1".into(),
        ext: None,
    }
    .sign(&key)
    .unwrap();
    let rounds = 20_000;
    let t = Instant::now();
    for _ in 0..rounds {
        voucher::verify(&token, &ring).unwrap();
    }
    println!(
        "voucher: {:.0} verifications/s on one core",
        f64::from(rounds) / t.elapsed().as_secs_f64()
    );
}

/// `n` redemptions (three devices per voucher, the clock moving on), each its own immediate
/// transaction, then the file size (database + WAL) and the size after pruning at 30 days.
fn redemptions(n: u32, key_id: KeyId, durability: Durability, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let mut store = Store::open_with(&path, durability).unwrap();
    let t = Instant::now();
    let start = 1_764_547_200;
    let mut now = start;
    for i in 0..n {
        let v = Voucher {
            key_id,
            serial: u64::from(i / 3),
            issued_at: 1_764_547_200,
            redeem_by: 1_764_547_200 + 86_400,
            duration_s: 3600,
            max_devices: 3,
            purchase_ref: format!("PUR{i}"),
            ext: None,
        };
        let b = i.to_be_bytes();
        now = start + i64::from(i / 100);
        let clock = Clock { now, trusted: true };
        store
            .redeem(&v, Mac([2, 0, b[0], b[1], b[2], b[3]]), clock)
            .unwrap()
            .unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let size = |dir: &std::path::Path| -> u64 {
        ["bench.db", "bench.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum()
    };
    let t = Instant::now();
    let sessions = store.active_sessions(now).unwrap().len();
    let restore_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(store);
    let mib = |b: u64| b as f64 / 1_048_576.0;
    println!(
        "store: {n} redemptions ({label}) in {secs:.1} s = {:.0} redemptions/s",
        f64::from(n) / secs
    );
    println!(
        "store: database file after {n} redemptions: {:.1} MiB (database + WAL)",
        mib(size(dir.path()))
    );
    println!("store: active_sessions for restore: {sessions} devices in {restore_ms:.1} ms");
    let mut store = Store::open_with(&path, durability).unwrap();
    let pruned = store.prune(now + 40 * 86_400, 30, 30).unwrap();
    drop(store);
    println!(
        "store: after pruning at 30 days: {pruned} rows gone, {:.1} MiB (pages are reused, the file does not shrink)",
        mib(size(dir.path()))
    );
}
