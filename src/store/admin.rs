//! The admin's side of the store: sessions and vouchers as the admin commands show them,
//! revoke, kick, extend, trusted/blocked MACs, and moving times after a clock jump. Redemption
//! lives in `redeem.rs`, the event log in `events.rs`.

use super::*;

impl Store {
    /// Everything about one device: remaining time, its vouchers (devices used/limit each) and
    /// any admin rule. Reads only.
    pub fn device_status(&self, mac: Mac, now: i64) -> Result<DeviceStatus, StoreError> {
        let m = mac.to_string();
        let mut stmt = self.conn.prepare_cached(
            "SELECT v.key_id, v.serial, v.ends_at, v.revoked_at IS NOT NULL, v.max_devices,
                    v.purchase_ref,
                    (SELECT COUNT(*) FROM devices d2 WHERE d2.key_id = v.key_id AND d2.serial = v.serial)
             FROM devices d JOIN vouchers v USING (key_id, serial)
             WHERE d.mac = ?1 ORDER BY v.ends_at DESC, v.key_id, v.serial",
        )?;
        let vouchers = stmt
            .query_map([&m], |r| {
                Ok(VoucherUse {
                    key_id: r.get(0)?,
                    serial: r.get::<_, i64>(1)? as u64,
                    ends_at: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    revoked: r.get(3)?,
                    max_devices: r.get::<_, i64>(4)?.clamp(0, 255) as u8,
                    purchase_ref: r.get(5)?,
                    devices: r.get::<_, i64>(6)?.clamp(0, 255) as u8,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let until = policy::device_until(
            vouchers.iter().filter(|u| !u.revoked).map(|u| u.ends_at),
            now,
        );
        Ok(DeviceStatus {
            until,
            remaining_s: until.map_or(0, |u| u - now),
            vouchers,
            rule: rule_of(&self.conn, &m)?,
        })
    }

    /// The devices on a voucher, first come first. Reads only.
    pub fn voucher_devices(
        &self,
        key_id: KeyId,
        serial: u64,
    ) -> Result<Vec<VoucherDevice>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT mac, first_seen, last_seen FROM devices WHERE key_id = ?1 AND serial = ?2
             ORDER BY first_seen, mac",
        )?;
        let rows = stmt.query_map(params![key_id.to_string(), serial_sql(serial)], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mac, first_seen, last_seen) = row?;
            if let Ok(mac) = mac.parse() {
                out.push(VoucherDevice {
                    mac,
                    first_seen,
                    last_seen,
                });
            }
        }
        Ok(out)
    }

    /// Every device with access now, with the live voucher that ends last, ending soonest
    /// first; blocked devices left out (as in [`Store::active_sessions`]). Reads only.
    pub fn sessions(&self, now: i64) -> Result<Vec<Session>, StoreError> {
        // SQLite takes the bare columns from the row holding MAX(ends_at).
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.mac, v.key_id, v.serial, v.purchase_ref, MAX(v.ends_at), d.first_seen,
                    d.up_bytes, d.down_bytes, v.data_cap, v.used_bytes
             FROM devices d JOIN vouchers v USING (key_id, serial)
             WHERE v.revoked_at IS NULL AND v.ends_at > ?1
               AND d.mac NOT IN (SELECT mac FROM mac_rules WHERE rule = 'blocked')
             GROUP BY d.mac ORDER BY MAX(v.ends_at), d.mac",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Session {
                    mac: Mac([0; 6]),
                    key_id: r.get(1)?,
                    serial: r.get::<_, i64>(2)? as u64,
                    purchase_ref: r.get(3)?,
                    ends_at: r.get(4)?,
                    first_seen: r.get(5)?,
                    up_bytes: r.get::<_, i64>(6)?.max(0) as u64,
                    down_bytes: r.get::<_, i64>(7)?.max(0) as u64,
                    data_cap: r.get::<_, Option<i64>>(8)?.map(|c| c.max(0) as u64),
                    voucher_used_bytes: r.get::<_, i64>(9)?.max(0) as u64,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mac, mut session) = row?;
            if let Ok(mac) = mac.parse() {
                session.mac = mac;
                out.push(session);
            }
        }
        Ok(out)
    }

    /// The `limit` vouchers most recently used (or revoked before use), newest first, with
    /// their devices. Reads only.
    pub fn recent_vouchers(&self, limit: usize) -> Result<Vec<VoucherSummary>, StoreError> {
        self.vouchers_where(
            "1 ORDER BY COALESCE(first_redeemed_at, revoked_at) DESC, key_id, serial LIMIT ?1",
            params![limit.min(i64::MAX as usize) as i64],
        )
    }

    /// One voucher, if the router has seen it (used, or revoked). Reads only.
    pub fn voucher(
        &self,
        key_id: KeyId,
        serial: u64,
    ) -> Result<Option<VoucherSummary>, StoreError> {
        Ok(self
            .vouchers_where(
                "key_id = ?1 AND serial = ?2",
                params![key_id.to_string(), serial_sql(serial)],
            )?
            .pop())
    }

    /// The serials of every voucher of a key the router has seen. Reads only.
    pub fn serials_of_key(&self, key_id: KeyId) -> Result<Vec<u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT serial FROM vouchers WHERE key_id = ?1 ORDER BY serial")?;
        let rows = stmt.query_map([key_id.to_string()], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|r| r.map(|s| s as u64))
            .collect::<Result<_, _>>()?)
    }

    fn vouchers_where(
        &self,
        condition: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<VoucherSummary>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT key_id, serial, purchase_ref, duration_s, max_devices, first_redeemed_at,
                    ends_at, revoked_at, used_bytes, data_cap, down_kbit, up_kbit,
                    data_used_up_at
             FROM vouchers WHERE {condition}"
        ))?;
        let mut out = stmt
            .query_map(args, |r| {
                Ok(VoucherSummary {
                    key_id: r.get(0)?,
                    serial: r.get::<_, i64>(1)? as u64,
                    purchase_ref: r.get(2)?,
                    duration_s: r.get(3)?,
                    max_devices: r.get::<_, i64>(4)?.clamp(0, 255) as u8,
                    first_redeemed_at: r.get(5)?,
                    ends_at: r.get(6)?,
                    revoked_at: r.get(7)?,
                    devices: Vec::new(),
                    used_bytes: r.get::<_, i64>(8)?.max(0) as u64,
                    data_cap: r.get::<_, Option<i64>>(9)?.map(|c| c.max(0) as u64),
                    down_kbit: r.get(10)?,
                    up_kbit: r.get(11)?,
                    data_used_up_at: r.get(12)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT mac FROM devices WHERE key_id = ?1 AND serial = ?2 ORDER BY first_seen, mac",
        )?;
        for v in &mut out {
            v.devices = stmt
                .query_map(params![v.key_id, serial_sql(v.serial)], |r| {
                    r.get::<_, String>(0)
                })?
                .filter_map(|m| m.ok().and_then(|m| m.parse().ok()))
                .collect();
        }
        Ok(out)
    }

    /// Revokes a voucher: its devices lose it at once (keeping time of their other vouchers).
    /// A voucher not yet used is recorded so it is refused when it comes.
    pub fn revoke(
        &mut self,
        key_id: KeyId,
        serial: u64,
        now: i64,
    ) -> Result<Vec<FirewallAction>, StoreError> {
        self.revoke_noting(key_id, serial, "", now)
    }

    /// [`Store::revoke`] with `note` (who asked: `; by RADIUS …`) appended to its event.
    pub fn revoke_noting(
        &mut self,
        key_id: KeyId,
        serial: u64,
        note: &str,
        now: i64,
    ) -> Result<Vec<FirewallAction>, StoreError> {
        let key = key_id.to_string();
        let s = serial_sql(serial);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        log_expiries(&tx, now)?;
        tx.execute(
            "INSERT INTO vouchers (key_id, serial, duration_s, max_devices, revoked_at) VALUES (?1, ?2, 0, 0, ?3)
             ON CONFLICT (key_id, serial) DO UPDATE SET revoked_at = COALESCE(revoked_at, ?3)",
            params![key, s, now],
        )?;
        let macs = devices_of(&tx, &key, s)?;
        let mut ends = Vec::new();
        for m in &macs {
            ends.push((*m, ends_of(&tx, &m.to_string(), now)?));
        }
        event(
            &tx,
            now,
            EV_REVOKED,
            None,
            Some((&key, s)),
            &format!("{} devices lose it{note}", macs.len()),
        )?;
        tx.commit()?;
        Ok(policy::after_loss(&macs, now, |m| {
            ends.iter()
                .find(|(x, _)| *x == m)
                .map(|(_, e)| e.clone())
                .unwrap_or_default()
        }))
    }

    /// Takes one device off a voucher (frees its slot). It keeps the time of its other live
    /// vouchers, or is removed from the firewall. `Ok(None)` if the device was not on it.
    pub fn kick(
        &mut self,
        key_id: KeyId,
        serial: u64,
        mac: Mac,
        now: i64,
    ) -> Result<Option<FirewallAction>, StoreError> {
        self.kick_noting(key_id, serial, mac, "", now)
    }

    /// [`Store::kick`] with `note` (who asked: `; by RADIUS …`) appended to its event.
    pub fn kick_noting(
        &mut self,
        key_id: KeyId,
        serial: u64,
        mac: Mac,
        note: &str,
        now: i64,
    ) -> Result<Option<FirewallAction>, StoreError> {
        let (key, s, m) = (key_id.to_string(), serial_sql(serial), mac.to_string());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM devices WHERE key_id = ?1 AND serial = ?2 AND mac = ?3",
            params![key, s, m],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let ends = ends_of(&tx, &m, now)?;
        event(
            &tx,
            now,
            EV_KICKED,
            Some(&m),
            Some((&key, s)),
            &format!("slot freed{note}"),
        )?;
        tx.commit()?;
        Ok(policy::after_loss(&[mac], now, |_| ends.clone()).pop())
    }

    /// Adds `secs` (> 0) to a used voucher's end, counted from now if its time was up; its
    /// devices get the new time. `Ok(None)` if the voucher was never used, is revoked, or
    /// `secs` is not positive.
    pub fn extend(
        &mut self,
        key_id: KeyId,
        serial: u64,
        secs: i64,
        now: i64,
    ) -> Result<Option<Vec<FirewallAction>>, StoreError> {
        self.change_end(key_id, serial, now, &format!("+{secs} s"), |e| {
            policy::extended_end(e, secs, now)
        })
    }

    /// Sets a used voucher's end to `ends_at` (later or earlier: a RADIUS server's
    /// Session-Timeout); its devices get the new time, and lose access if it is past.
    /// `Ok(None)` if the voucher was never used or is revoked.
    pub fn set_end(
        &mut self,
        key_id: KeyId,
        serial: u64,
        ends_at: i64,
        why: &str,
        now: i64,
    ) -> Result<Option<Vec<FirewallAction>>, StoreError> {
        self.change_end(key_id, serial, now, why, |_| Some(ends_at))
    }

    fn change_end(
        &mut self,
        key_id: KeyId,
        serial: u64,
        now: i64,
        why: &str,
        new_end: impl FnOnce(i64) -> Option<i64>,
    ) -> Result<Option<Vec<FirewallAction>>, StoreError> {
        let (key, s) = (key_id.to_string(), serial_sql(serial));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        log_expiries(&tx, now)?;
        let ends_at: Option<i64> = tx
            .query_row(
                "SELECT ends_at FROM vouchers WHERE key_id = ?1 AND serial = ?2
                 AND ends_at IS NOT NULL AND revoked_at IS NULL",
                params![key, s],
                |r| r.get(0),
            )
            .optional()?;
        let Some(new_end) = ends_at.and_then(new_end) else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE vouchers SET ends_at = ?3, expiry_logged = 0 WHERE key_id = ?1 AND serial = ?2",
            params![key, s, new_end],
        )?;
        let blocked = blocked_macs(&tx)?;
        let mut actions = Vec::new();
        for mac in devices_of(&tx, &key, s)? {
            if blocked.contains(&mac) {
                continue;
            }
            let ends = ends_of(&tx, &mac.to_string(), now)?;
            actions.extend(policy::after_loss(&[mac], now, |_| ends.clone()));
        }
        event(
            &tx,
            now,
            EV_EXTENDED,
            None,
            Some((&key, s)),
            &format!("{why}, ends_at {new_end}"),
        )?;
        tx.commit()?;
        Ok(Some(actions))
    }

    /// Trusts or blocks `mac` (`None` clears its rule). Returns what the firewall must change:
    /// the trusted/blocked sets (from → to) and the device's `allowed` element.
    pub fn set_rule(
        &mut self,
        mac: Mac,
        rule: Option<policy::MacRule>,
        note: &str,
        now: i64,
    ) -> Result<policy::RuleChange, StoreError> {
        let m = mac.to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from = rule_of(&tx, &m)?;
        match rule {
            Some(r) => tx.execute(
                "INSERT INTO mac_rules (mac, rule, since, note) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (mac) DO UPDATE SET rule = ?2, since = ?3, note = ?4",
                params![m, r.code(), now, note],
            )?,
            None => tx.execute("DELETE FROM mac_rules WHERE mac = ?1", [&m])?,
        };
        let change = policy::rule_change(mac, from, rule, ends_of(&tx, &m, now)?, now);
        if from != rule {
            let detail = format!(
                "{} -> {} {note}",
                from.map_or("none", |r| r.code()),
                rule.map_or("none", |r| r.code())
            );
            event(&tx, now, EV_RULE, Some(&m), None, detail.trim_end())?;
        }
        tx.commit()?;
        Ok(change)
    }

    /// Every MAC with an admin rule, with the rule.
    pub fn rules(&self) -> Result<Vec<(Mac, policy::MacRule)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT mac, rule FROM mac_rules ORDER BY mac")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (mac, rule) = row?;
            if let (Ok(mac), Some(rule)) = (mac.parse(), policy::MacRule::from_code(&rule)) {
                out.push((mac, rule));
            }
        }
        Ok(out)
    }

    /// After the wall clock jumped by `by` seconds: vouchers first used while the clock was
    /// not yet trusted are moved by the same amount, so a customer who paid before NTP synced
    /// keeps the time paid for. Once `clock` is trusted they count as started on a trusted
    /// clock. Returns the firewall's new times for their devices.
    pub fn clock_jumped(
        &mut self,
        by: i64,
        clock: Clock,
    ) -> Result<Vec<FirewallAction>, StoreError> {
        let now = clock.now;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let macs: Vec<String> = tx
            .prepare_cached(
                "SELECT DISTINCT d.mac FROM devices d JOIN vouchers v USING (key_id, serial)
                 WHERE v.clock_trusted = 0 AND v.ends_at IS NOT NULL AND v.revoked_at IS NULL",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let n = tx.execute(
            "UPDATE vouchers SET first_redeemed_at = first_redeemed_at + ?1, ends_at = ends_at + ?1,
                clock_trusted = ?2
             WHERE clock_trusted = 0 AND ends_at IS NOT NULL AND revoked_at IS NULL",
            params![by, clock.trusted],
        )?;
        if n == 0 {
            return Ok(Vec::new());
        }
        event(
            &tx,
            now,
            EV_CLOCK,
            None,
            None,
            &format!("{n} vouchers started before the clock was set moved by {by} s"),
        )?;
        let blocked = blocked_macs(&tx)?;
        let mut actions = Vec::new();
        for m in macs {
            let Ok(mac) = m.parse::<Mac>() else { continue };
            if !blocked.contains(&mac) {
                let ends = ends_of(&tx, &m, now)?;
                actions.extend(policy::after_loss(&[mac], now, |_| ends.clone()));
            }
        }
        tx.commit()?;
        Ok(actions)
    }
}
