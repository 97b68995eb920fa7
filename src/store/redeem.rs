//! The guest's side of the store: redeeming a voucher for a device (one immediate transaction,
//! on disk before the customer is told), undoing a redemption the firewall could not grant,
//! and what a device may do now. Admin changes live in `admin.rs`, the event log in
//! `events.rs`.

use super::events::tally;
use super::*;

impl Store {
    /// Redeems `v` (already verified) for `mac`: reads the voucher's state, decides by
    /// `policy`, writes the outcome and an event (a refusal too, with its reason), all in one
    /// immediate transaction. An `Ok(Ok)` is on disk when this returns.
    pub fn redeem(
        &mut self,
        v: &Voucher,
        mac: Mac,
        clock: Clock,
    ) -> Result<Result<Redeemed, Rejection>, StoreError> {
        let key = v.key_id.to_string();
        let serial = serial_sql(v.serial);
        let m = mac.to_string();
        let now = clock.now;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        log_expiries(&tx, now)?;
        let state = voucher_state(&tx, &key, serial)?;
        let who = Some((key.as_str(), serial));
        let outcome = match policy::redeem(v, &state, mac, clock) {
            Err(why) => {
                tally(&tx, now, why.code(), Some(&m), who, &why.to_string())?;
                tx.commit()?;
                return Ok(Err(why));
            }
            Ok(g) => g,
        };
        if outcome.first_use {
            tx.prepare_cached(
                "INSERT INTO vouchers (key_id, serial, first_redeemed_at, ends_at, duration_s,
                    max_devices, purchase_ref, redeem_by, clock_trusted, data_cap, down_kbit,
                    up_kbit)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (key_id, serial) DO UPDATE SET first_redeemed_at = ?3, ends_at = ?4,
                    duration_s = ?5, max_devices = ?6, purchase_ref = ?7, redeem_by = ?8,
                    clock_trusted = ?9, expiry_logged = 0, data_cap = ?10, down_kbit = ?11,
                    up_kbit = ?12",
            )?
            .execute(params![
                key,
                serial,
                now,
                outcome.ends_at,
                v.duration_s,
                v.max_devices,
                v.purchase_ref,
                v.redeem_by,
                clock.trusted,
                v.limits().data_cap_mib.map(|m| i64::from(m) << 20),
                v.limits().down_kbit,
                v.limits().up_kbit
            ])?;
        }
        tx.prepare_cached(
            "INSERT INTO devices (key_id, serial, mac, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT DO UPDATE SET last_seen = ?4",
        )?
        .execute(params![key, serial, m, now])?;
        let kind = if outcome.new_device {
            EV_REDEEMED
        } else {
            EV_REDEEMED_AGAIN
        };
        let detail = format!(
            "ends_at {} device {}/{}",
            outcome.ends_at, outcome.devices, v.max_devices
        );
        event(&tx, now, kind, Some(&m), who, &detail)?;
        let device_until =
            policy::device_until(ends_of(&tx, &m, now)?, now).unwrap_or(outcome.ends_at);
        tx.commit()?;
        Ok(Ok(Redeemed {
            grant: outcome,
            max_devices: v.max_devices,
            device_until,
        }))
    }

    /// What [`Store::redeem`] would decide for `v` and `mac` now, without writing anything
    /// (the question before asking a central server).
    pub fn would_redeem(
        &self,
        v: &Voucher,
        mac: Mac,
        clock: Clock,
    ) -> Result<Result<Grant, Rejection>, StoreError> {
        let state = voucher_state(&self.conn, &v.key_id.to_string(), serial_sql(v.serial))?;
        Ok(policy::redeem(v, &state, mac, clock))
    }

    /// The device's access now, if any. Reads only.
    pub fn access(&self, mac: Mac, now: i64) -> Result<Option<DeviceAccess>, StoreError> {
        let m = mac.to_string();
        let row = self
            .conn
            .prepare_cached(
                "SELECT v.ends_at, v.max_devices,
                        (SELECT COUNT(*) FROM devices d2 WHERE d2.key_id = v.key_id AND d2.serial = v.serial)
                 FROM devices d JOIN vouchers v USING (key_id, serial)
                 WHERE d.mac = ?1 AND v.revoked_at IS NULL AND v.ends_at > ?2
                 ORDER BY v.ends_at DESC LIMIT 1",
            )?
            .query_row(params![m, now], |r| {
                Ok(DeviceAccess {
                    until: r.get(0)?,
                    max_devices: r.get(1)?,
                    devices: r.get::<_, i64>(2)?.clamp(0, 255) as u8,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Every device with access now and until when (the latest of its live vouchers), blocked
    /// devices left out: what the firewall's `allowed` set must hold after a restart.
    pub fn active_sessions(&self, now: i64) -> Result<Vec<(Mac, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.mac, MAX(v.ends_at) FROM devices d JOIN vouchers v USING (key_id, serial)
             WHERE v.revoked_at IS NULL AND v.ends_at > ?1
               AND d.mac NOT IN (SELECT mac FROM mac_rules WHERE rule = 'blocked')
             GROUP BY d.mac ORDER BY d.mac",
        )?;
        let rows = stmt.query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (mac, until) = r?;
            if let Ok(mac) = mac.parse() {
                out.push((mac, until));
            }
        }
        Ok(out)
    }

    /// Takes back a redemption the firewall could not carry out: the device leaves the
    /// voucher and, if that redemption was the voucher's first use, the voucher is unused
    /// again (its clock not started).
    pub fn undo_redemption(
        &mut self,
        key_id: KeyId,
        serial: u64,
        mac: Mac,
        first_use: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let (key, s, m) = (key_id.to_string(), serial_sql(serial), mac.to_string());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM devices WHERE key_id = ?1 AND serial = ?2 AND mac = ?3",
            params![key, s, m],
        )?;
        if first_use {
            tx.execute(
                "DELETE FROM vouchers WHERE key_id = ?1 AND serial = ?2 AND revoked_at IS NULL
                 AND NOT EXISTS (SELECT 1 FROM devices WHERE key_id = ?1 AND serial = ?2)",
                params![key, s],
            )?;
        }
        event(
            &tx,
            now,
            EV_UNDONE,
            Some(&m),
            Some((&key, s)),
            "the firewall could not be updated; nothing was granted",
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// A voucher's state as the policy needs it.
fn voucher_state(
    conn: &rusqlite::Connection,
    key: &str,
    serial: i64,
) -> Result<VoucherState, StoreError> {
    let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT ends_at, revoked_at, data_used_up_at FROM vouchers
             WHERE key_id = ?1 AND serial = ?2",
        )?
        .query_row(params![key, serial], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(VoucherState {
        ends_at: row.and_then(|r| r.0),
        revoked: row.is_some_and(|r| r.1.is_some()),
        data_used_up: row.is_some_and(|r| r.2.is_some()),
        devices: devices_of(conn, key, serial)?,
    })
}
