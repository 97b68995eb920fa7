//! Vouchers, MACs and clocks for store tests (no signatures: the store takes verified vouchers).

use wifipos::keys::KeyId;
use wifipos::mac::Mac;
use wifipos::policy::Clock;
use wifipos::voucher::Voucher;

pub fn voucher(serial: u64, duration_s: u32, max_devices: u8) -> Voucher {
    Voucher {
        key_id: KeyId([0xab, 0xcd, 0, 1]),
        serial,
        issued_at: 1_000,
        redeem_by: 0,
        duration_s,
        max_devices,
        purchase_ref: format!("R{serial}"),
        ext: None,
    }
}

pub fn mac(n: u32) -> Mac {
    let b = n.to_be_bytes();
    Mac([2, 0, b[0], b[1], b[2], b[3]])
}

/// A trusted clock at `now`.
pub fn at(now: i64) -> Clock {
    Clock { now, trusted: true }
}
