//! Usage in the store: the bytes the kernel counted per device, saved every minute and at exit
//! (so a crash loses at most that minute), the vouchers whose data cap is in play, ending a
//! voucher whose data ran out, and giving an idle device's place on a full voucher to a new
//! one. Reading the kernel's counters is the caller's job (`sessions::usage`).

use super::*;

/// Bytes one device moved since the last save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub mac: Mac,
    pub up: u64,
    pub down: u64,
    /// When the counters last saw it move, if they did since the last save.
    pub active_at: Option<i64>,
}

/// A live voucher with a data cap and the devices whose traffic counts against it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    pub key_id: String,
    pub serial: i64,
    /// Bytes all its devices may use together.
    pub cap: u64,
    /// Bytes saved so far (devices that left included).
    pub used: u64,
    pub macs: Vec<Mac>,
}

/// The voucher a device's traffic counts against: its live (or just ended) voucher that ends
/// last, as the portal shows it.
fn current_voucher(conn: &Connection, mac: &str) -> Result<Option<(String, i64)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT v.key_id, v.serial FROM devices d JOIN vouchers v USING (key_id, serial)
             WHERE d.mac = ?1 AND v.revoked_at IS NULL ORDER BY v.ends_at DESC LIMIT 1",
        )?
        .query_row([mac], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// [`Store::add_usage`]'s updates, inside the caller's transaction.
fn add_in(conn: &Connection, deltas: &[Delta]) -> Result<(), StoreError> {
    for d in deltas {
        let m = d.mac.to_string();
        let Some((key, serial)) = current_voucher(conn, &m)? else {
            continue;
        };
        conn.prepare_cached(
            "UPDATE devices SET up_bytes = up_bytes + ?4, down_bytes = down_bytes + ?5,
                last_active = COALESCE(?6, last_active)
             WHERE key_id = ?1 AND serial = ?2 AND mac = ?3",
        )?
        .execute(params![
            key,
            serial,
            m,
            to_sql(d.up),
            to_sql(d.down),
            d.active_at
        ])?;
        conn.prepare_cached(
            "UPDATE vouchers SET used_bytes = used_bytes + ?3 WHERE key_id = ?1 AND serial = ?2",
        )?
        .execute(params![key, serial, to_sql(d.up.saturating_add(d.down))])?;
    }
    Ok(())
}

fn to_sql(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

impl Store {
    /// Adds each device's bytes to its row on its current voucher and to that voucher's total,
    /// in one transaction. Devices on no voucher (trusted, or forgotten) are skipped.
    pub fn add_usage(&mut self, deltas: &[Delta]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        add_in(&tx, deltas)?;
        tx.commit()?;
        Ok(())
    }

    /// Shows `deltas` as if saved, without saving them: they are applied in a transaction that
    /// [`Store::end_unsaved`] rolls back, so reads in between (an admin's view of usage up to
    /// this moment) see them and nothing reaches the flash (a rollback writes nothing; a
    /// savepoint's RELEASE would commit, writing a WAL frame). Nothing else may write between.
    pub fn begin_unsaved(&mut self, deltas: &[Delta]) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN")?;
        if let Err(e) = add_in(&self.conn, deltas) {
            self.end_unsaved();
            return Err(e);
        }
        Ok(())
    }

    /// Rolls back what [`Store::begin_unsaved`] applied.
    pub fn end_unsaved(&mut self) {
        if let Err(e) = self.conn.execute_batch("ROLLBACK") {
            eprintln!("wifiposd: cannot roll back a view of unsaved usage: {e}");
        }
    }

    /// Whether any live voucher has a data cap (then the caller watches the counters closely).
    pub fn any_capped(&self, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM vouchers WHERE data_cap IS NOT NULL AND revoked_at IS NULL
                 AND ends_at > ?1 LIMIT 1",
            )?
            .query_row([now], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Live vouchers with a data cap, each with the devices whose traffic counts against it
    /// (those for which it is the current voucher).
    pub fn capped(&self, now: i64) -> Result<Vec<Capped>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.mac, v.key_id, v.serial, v.data_cap, v.used_bytes
             FROM devices d JOIN vouchers v USING (key_id, serial)
             WHERE v.revoked_at IS NULL AND v.ends_at > ?1
             ORDER BY d.mac, v.ends_at DESC",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out: Vec<Capped> = Vec::new();
        let mut last_mac = String::new();
        for r in rows {
            let (mac, key, serial, cap, used) = r?;
            if mac == last_mac {
                continue; // not this device's current voucher
            }
            last_mac.clone_from(&mac);
            let (Some(cap), Ok(mac)) = (cap, mac.parse::<Mac>()) else {
                continue;
            };
            match out
                .iter_mut()
                .find(|c| c.key_id == key && c.serial == serial)
            {
                Some(c) => c.macs.push(mac),
                None => out.push(Capped {
                    key_id: key,
                    serial,
                    cap: cap.max(0) as u64,
                    used: used.max(0) as u64,
                    macs: vec![mac],
                }),
            }
        }
        Ok(out)
    }

    /// The capped voucher a device's traffic counts against now (its live voucher that ends
    /// last), with that voucher's devices: two indexed lookups, for the portal's pages.
    pub fn capped_of(&self, mac: Mac, now: i64) -> Result<Option<Capped>, StoreError> {
        let row: Option<(String, i64, Option<i64>, i64)> = self
            .conn
            .prepare_cached(
                "SELECT v.key_id, v.serial, v.data_cap, v.used_bytes
                 FROM devices d JOIN vouchers v USING (key_id, serial)
                 WHERE d.mac = ?1 AND v.revoked_at IS NULL AND v.ends_at > ?2
                 ORDER BY v.ends_at DESC LIMIT 1",
            )?
            .query_row(params![mac.to_string(), now], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((key_id, serial, Some(cap), used)) = row else {
            return Ok(None);
        };
        let macs = devices_of(&self.conn, &key_id, serial)?;
        Ok(Some(Capped {
            key_id,
            serial,
            cap: cap.max(0) as u64,
            used: used.max(0) as u64,
            macs,
        }))
    }

    /// Ends a voucher whose data allowance is used up, for all its devices, and logs it. The
    /// devices keep what other live vouchers give them.
    pub fn end_for_data(
        &mut self,
        key_id: &str,
        serial: i64,
        used: u64,
        now: i64,
    ) -> Result<Vec<FirewallAction>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE vouchers SET data_used_up_at = ?3, ends_at = MIN(ends_at, ?3),
                expiry_logged = 1
             WHERE key_id = ?1 AND serial = ?2 AND data_used_up_at IS NULL",
            params![key_id, serial, now],
        )?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let macs = devices_of(&tx, key_id, serial)?;
        event(
            &tx,
            now,
            EV_DATA_USED_UP,
            None,
            Some((key_id, serial)),
            &format!("{used} bytes used by {} devices", macs.len()),
        )?;
        let mut actions = Vec::new();
        for mac in &macs {
            let ends = ends_of(&tx, &mac.to_string(), now)?;
            actions.extend(policy::after_loss(&[*mac], now, |_| ends.clone()));
        }
        tx.commit()?;
        Ok(actions)
    }

    /// A full voucher and a new device: if one of its devices has been idle (no traffic, by the
    /// saved counters and `recent`, the caller's newer "last active" times) for `idle_s`
    /// seconds, it leaves the voucher for `new` and the event log says so. Returns the device that left (the caller takes it out of the firewall and
    /// redeems again), or `None` when every device is in use.
    pub fn replace_idle(
        &mut self,
        v: &Voucher,
        new: Mac,
        idle_s: i64,
        recent: &[(Mac, i64)],
        now: i64,
    ) -> Result<Option<Mac>, StoreError> {
        let key = v.key_id.to_string();
        let serial = serial_sql(v.serial);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let devices: Vec<(Mac, i64)> = tx
            .prepare_cached(
                "SELECT mac, MAX(first_seen, COALESCE(last_active, 0)) FROM devices
                 WHERE key_id = ?1 AND serial = ?2",
            )?
            .query_map(params![key, serial], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .filter_map(|r| r.ok())
            .filter_map(|(m, at)| Some((m.parse().ok()?, at)))
            .map(|(m, at): (Mac, i64)| {
                let newer = recent.iter().filter(|(r, _)| *r == m).map(|(_, t)| *t);
                (m, newer.fold(at, i64::max))
            })
            .collect();
        let Some(old) = policy::idle_to_replace(&devices, now, idle_s) else {
            return Ok(None);
        };
        let m = old.to_string();
        tx.execute(
            "DELETE FROM devices WHERE key_id = ?1 AND serial = ?2 AND mac = ?3",
            params![key, serial, m],
        )?;
        let idle = devices
            .iter()
            .find(|(d, _)| *d == old)
            .map_or(0, |(_, at)| now - at);
        event(
            &tx,
            now,
            EV_REPLACED,
            Some(&m),
            Some((&key, serial)),
            &format!("idle for {} min; its place went to {new}", idle / 60),
        )?;
        tx.commit()?;
        Ok(Some(old))
    }

    /// The speed limits of a device's current voucher, kbit/s (down, up).
    pub fn rates_of(&self, mac: Mac) -> Result<(Option<u32>, Option<u32>), StoreError> {
        let m = mac.to_string();
        let Some((key, serial)) = current_voucher(&self.conn, &m)? else {
            return Ok((None, None));
        };
        let rates = self
            .conn
            .prepare_cached(
                "SELECT down_kbit, up_kbit FROM vouchers WHERE key_id = ?1 AND serial = ?2",
            )?
            .query_row(params![key, serial], |r| {
                Ok((r.get::<_, Option<u32>>(0)?, r.get::<_, Option<u32>>(1)?))
            })?;
        Ok(rates)
    }
}
