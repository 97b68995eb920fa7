//! The event log: refusals tallied per minute, reason and device (bounded, skipped when the
//! flash is down to its reserve), clones and address conflicts, reports by time range, and
//! pruning old rows. Redemption lives in `redeem.rs`, admin changes in `admin.rs`.

use super::*;

impl Store {
    /// Records a voucher refused before the store was asked (malformed, unknown key, forged).
    pub fn record_refusal(
        &mut self,
        mac: Option<Mac>,
        why: &Rejection,
        now: i64,
    ) -> Result<(), StoreError> {
        let m = mac.map(|m| m.to_string());
        self.tally_now(now, why.code(), m.as_deref(), &why.to_string())
    }

    /// Writes a tally outside a redemption: skipped (and counted) when the filesystem is down
    /// to its reserve; committed with `synchronous=NORMAL` (a power cut may lose the last
    /// tallies, never a redemption, which commits with `FULL` and so syncs them too).
    fn tally_now(
        &mut self,
        now: i64,
        kind: &str,
        mac: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        if free_bytes(&self.dir).is_some_and(|f| f < RESERVE_BYTES) {
            self.dropped_tallies += 1;
            if self.dropped_tallies % 1000 == 1 {
                eprintln!(
                    "wifiposd: the database's filesystem is almost full: refusals are no longer logged ({} so far); sales go on",
                    self.dropped_tallies
                );
            }
            return Ok(());
        }
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let r = tally(&self.conn, now, kind, mac, None, detail);
        self.conn.pragma_update(None, "synchronous", self.sync)?;
        r
    }

    /// Records a MAC seen on several bridge ports (`detail` names them); tallied like refusals.
    pub fn record_clone(&mut self, mac: Mac, detail: &str, now: i64) -> Result<(), StoreError> {
        self.tally_now(now, EV_CLONE, Some(&mac.to_string()), detail)
    }

    /// Records that the central RADIUS server did not answer about `mac`'s redemption
    /// (`detail` says why), so the router decided alone; tallied like refusals.
    pub fn record_unanswered(
        &mut self,
        mac: Mac,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.tally_now(now, EV_CENTRAL_UNANSWERED, Some(&mac.to_string()), detail)
    }

    /// The clones logged since `since`, newest first: one line per MAC, "MAC: detail".
    pub fn recent_clones(&self, since: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT mac, detail FROM events WHERE kind = ?1 AND at >= ?2
             GROUP BY mac ORDER BY MAX(at) DESC LIMIT 20",
        )?;
        let rows = stmt.query_map(params![EV_CLONE, since], |r| {
            Ok(format!(
                "{}: {}",
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get::<_, String>(1)?
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that a request was refused because the neighbour table named another device
    /// (`mac`, the one the table claims) than the connection's packets did.
    pub fn record_conflict(
        &mut self,
        mac: Option<Mac>,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let m = mac.map(|m| m.to_string());
        self.tally_now(now, EV_CONFLICT, m.as_deref(), detail)
    }

    /// Logs the expiry of every voucher whose time is up (once each, at its end). Redemptions,
    /// admin commands and [`Store::prune`] do it too; the daemon may call it now and then.
    pub fn log_expiries(&mut self, now: i64) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = log_expiries(&tx, now)?;
        tx.commit()?;
        Ok(n)
    }

    /// Recent events, oldest first.
    pub fn events(&self, since: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events_between(since, i64::MAX, limit)
    }

    /// Events with `from <= at < to`, oldest first, at most `limit`.
    pub fn events_between(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, kind, mac, key_id, serial,
                    detail || CASE WHEN count > 1 THEN ' (' || count || ' times this minute)' ELSE '' END
             FROM events WHERE at >= ?1 AND at < ?2
             ORDER BY at, id LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![from, to, limit], |r| {
            Ok(Event {
                at: r.get(0)?,
                kind: r.get(1)?,
                mac: r.get(2)?,
                key_id: r.get(3)?,
                serial: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Totals since the beginning (as far as pruning kept the records).
    pub fn totals(&self) -> Result<Totals, StoreError> {
        self.totals_between(i64::MIN, i64::MAX)
    }

    /// Totals for `from <= t < to`.
    pub fn totals_between(&self, from: i64, to: i64) -> Result<Totals, StoreError> {
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM vouchers WHERE first_redeemed_at >= ?1 AND first_redeemed_at < ?2),
                    (SELECT COUNT(DISTINCT mac) FROM devices WHERE first_seen >= ?1 AND first_seen < ?2),
                    (SELECT COALESCE(SUM(duration_s), 0) / 60 FROM vouchers
                        WHERE first_redeemed_at >= ?1 AND first_redeemed_at < ?2),
                    (SELECT COUNT(*) FROM events WHERE at >= ?1 AND at < ?2
                        AND kind IN ('{EV_REDEEMED}', '{EV_REDEEMED_AGAIN}')),
                    (SELECT COALESCE(SUM(count), 0) FROM events WHERE at >= ?1 AND at < ?2
                        AND kind IN ({REFUSAL_KINDS}))"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![from, to], |r| {
                Ok(Totals {
                    vouchers_redeemed: r.get(0)?,
                    devices: r.get(1)?,
                    minutes_sold: r.get(2)?,
                    redemptions: r.get(3)?,
                    refusals: r.get(4)?,
                })
            })?)
    }

    /// Keeps the file small on flash: deletes events older than `keep_event_days`, the devices
    /// of vouchers that ended more than `keep_days` ago, and the vouchers themselves once they
    /// can no longer be presented (their redeem-by deadline is past too). A used voucher
    /// without a deadline stays as a small tombstone forever, or it could be redeemed again.
    /// Revoked vouchers are kept likewise. Returns the number of rows deleted.
    pub fn prune(
        &mut self,
        now: i64,
        keep_days: u32,
        keep_event_days: u32,
    ) -> Result<usize, StoreError> {
        let cutoff = now.saturating_sub(i64::from(keep_days) * 86_400);
        let event_cutoff = now.saturating_sub(i64::from(keep_event_days) * 86_400);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        log_expiries(&tx, now)?;
        let mut n = tx.execute("DELETE FROM events WHERE at < ?1", [event_cutoff])?;
        n += tx.execute(
            "DELETE FROM devices WHERE (key_id, serial) IN (SELECT key_id, serial FROM vouchers
                WHERE ends_at IS NOT NULL AND ends_at < ?1)",
            [cutoff],
        )?;
        n += tx.execute(
            "DELETE FROM vouchers WHERE ends_at IS NOT NULL AND ends_at < ?1 AND revoked_at IS NULL
                AND redeem_by IS NOT NULL AND redeem_by > 0 AND redeem_by < ?1",
            [cutoff],
        )?;
        tx.commit()?;
        Ok(n)
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `dir`, if it can be asked.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points at writable memory for one
    // statvfs structure, which the call fills when it returns 0.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so the structure is initialised.
    let st = unsafe { st.assume_init() };
    // u64 here, narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// Counts a refusal-like event in its minute's row for (kind, device), or starts that row;
/// past [`MAX_TALLY_DEVICES_PER_MINUTE`] rows in a minute further devices share one row
/// without a MAC; every 64th new row trims the tallies to [`MAX_TALLY_ROWS`], oldest first.
pub(super) fn tally(
    conn: &Connection,
    at: i64,
    kind: &str,
    mac: Option<&str>,
    voucher: Option<(&str, i64)>,
    detail: &str,
) -> Result<(), StoreError> {
    let minute = at.div_euclid(60) * 60;
    let bump = |mac: Option<&str>| -> Result<bool, StoreError> {
        Ok(conn
            .prepare_cached(
                "UPDATE events SET count = count + 1 WHERE minute = ?1 AND kind = ?2 AND mac IS ?3",
            )?
            .execute(params![minute, kind, mac])?
            > 0)
    };
    if bump(mac)? {
        return Ok(());
    }
    let rows: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM events WHERE minute = ?1")?
        .query_row([minute], |r| r.get(0))?;
    let (mac, detail) = if rows >= MAX_TALLY_DEVICES_PER_MINUTE {
        if bump(None)? {
            return Ok(());
        }
        (None, "more devices than can be logged one by one")
    } else {
        (mac, detail)
    };
    conn.prepare_cached(
        "INSERT INTO events (at, kind, mac, key_id, serial, detail, minute, count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
    )?
    .execute(params![
        at,
        kind,
        mac,
        voucher.map(|v| v.0),
        voucher.map(|v| v.1),
        detail,
        minute
    ])?;
    if conn.last_insert_rowid() % 64 == 0 {
        conn.prepare_cached(
            "DELETE FROM events WHERE minute IS NOT NULL AND id <= (SELECT id FROM events
                WHERE minute IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        )?
        .execute([MAX_TALLY_ROWS])?;
    }
    Ok(())
}
