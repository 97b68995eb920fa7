//! RADIUS accounting's share of the store: the outbox of records waiting for the server's
//! acknowledgement (bounded: the oldest Interim-Updates go first, never a Start or Stop) and
//! the device sessions a Start was queued for. A record and the session change it reports are
//! written in one transaction, so a crash never leaves a Start without its session or a
//! closed session without its Stop. Not: packets (`radius`), sending (`radius::sender`).

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{serial_sql, Store, StoreError};
use crate::mac::Mac;

/// Records the outbox keeps at most (about 200 bytes each): when full, the oldest
/// Interim-Updates are dropped to make room (a later one or the Stop carries the totals).
/// Starts and Stops are never dropped, so the outbox can exceed this by them alone.
pub const MAX_OUTBOX_ROWS: i64 = 10_000;

/// Acct-Status-Type Interim-Update, the only kind dropped when full.
const INTERIM: i64 = 3;

/// One queued record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub id: i64,
    /// When the event happened (Acct-Delay-Time counts from here).
    pub created_at: i64,
    /// Acct-Status-Type.
    pub kind: i64,
    /// Encoded attributes without Acct-Delay-Time.
    pub attributes: Vec<u8>,
    /// Sends so far (the sender stops counting at 10).
    pub tries: i64,
}

/// A device session with a queued Start and no Stop yet, with what the store knows now about
/// its voucher and device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcctSession {
    pub key_id: String,
    pub serial: u64,
    pub mac: Mac,
    pub session_id: String,
    pub started_at: i64,
    /// When its last Interim-Update was queued (at first: when the session began).
    pub interim_at: i64,
    /// The device's bytes each way: as saved now, or its final counts if it left the voucher
    /// (kicked, replaced: kept by the `radius_device_gone` trigger).
    pub up_bytes: u64,
    pub down_bytes: u64,
    /// The device is still on the voucher.
    pub on_voucher: bool,
    pub revoked: bool,
    pub ends_at: Option<i64>,
    pub data_used_up: bool,
}

impl AcctSession {
    /// The session still gives access at `now`.
    pub fn live(&self, now: i64) -> bool {
        self.on_voucher
            && !self.revoked
            && !self.data_used_up
            && self.ends_at.is_some_and(|e| e > now)
    }
}

/// One change to the accounting, written with its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcctChange {
    /// A Start: the session is opened (it began at `started_at`).
    Start {
        key_id: String,
        serial: u64,
        mac: Mac,
        session_id: String,
        started_at: i64,
    },
    /// An Interim-Update reporting these bytes.
    Interim {
        key_id: String,
        serial: u64,
        mac: Mac,
        up_bytes: u64,
        down_bytes: u64,
    },
    /// A Stop: the session is closed.
    Stop {
        key_id: String,
        serial: u64,
        mac: Mac,
    },
}

fn to_sql(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

impl Store {
    /// When `mac` joined the voucher (for its session's Acct-Session-Id), if it is on it.
    pub fn device_first_seen(
        &self,
        key_id: &str,
        serial: u64,
        mac: Mac,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT first_seen FROM devices WHERE key_id = ?1 AND serial = ?2 AND mac = ?3",
            )?
            .query_row(params![key_id, serial_sql(serial), mac.to_string()], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Devices with access now on a live voucher and no accounting session: accounting was
    /// turned on after they joined, or the daemon stopped between a redemption and its Start.
    /// `(key_id, serial, mac, first_seen)`.
    pub fn acct_missing(&self, now: i64) -> Result<Vec<(String, u64, Mac, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.key_id, d.serial, d.mac, d.first_seen
             FROM devices d JOIN vouchers v ON v.key_id = d.key_id AND v.serial = d.serial
             WHERE v.revoked_at IS NULL AND v.ends_at > ?1 AND v.data_used_up_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM radius_sessions r
                   WHERE r.key_id = d.key_id AND r.serial = d.serial AND r.mac = d.mac)
             ORDER BY d.first_seen, d.mac",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, serial, mac, first_seen) = row?;
            if let Ok(mac) = mac.parse() {
                out.push((key, serial as u64, mac, first_seen));
            }
        }
        Ok(out)
    }

    /// The open accounting sessions (of `mac` only, if given).
    pub fn acct_sessions(&self, mac: Option<Mac>) -> Result<Vec<AcctSession>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.key_id, r.serial, r.mac, r.session_id, r.started_at, r.interim_at,
                    COALESCE(d.up_bytes, r.up_bytes), COALESCE(d.down_bytes, r.down_bytes),
                    d.mac IS NOT NULL, v.revoked_at IS NOT NULL, v.ends_at,
                    v.data_used_up_at IS NOT NULL
             FROM radius_sessions r
             LEFT JOIN devices d ON d.key_id = r.key_id AND d.serial = r.serial AND d.mac = r.mac
             LEFT JOIN vouchers v ON v.key_id = r.key_id AND v.serial = r.serial
             WHERE ?1 IS NULL OR r.mac = ?1
             ORDER BY r.started_at, r.mac",
        )?;
        let rows = stmt.query_map([mac.map(|m| m.to_string())], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, bool>(8)?,
                r.get::<_, bool>(9)?,
                r.get::<_, Option<i64>>(10)?,
                r.get::<_, bool>(11)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                key_id,
                serial,
                mac,
                session_id,
                started_at,
                interim_at,
                up,
                down,
                on,
                rev,
                ends,
                used,
            ) = row?;
            let Ok(mac) = mac.parse() else { continue };
            out.push(AcctSession {
                key_id,
                serial: serial as u64,
                mac,
                session_id,
                started_at,
                interim_at,
                up_bytes: up.max(0) as u64,
                down_bytes: down.max(0) as u64,
                on_voucher: on,
                revoked: rev,
                ends_at: ends,
                data_used_up: used,
            });
        }
        Ok(out)
    }

    /// Writes accounting changes and their records (`(change, Acct-Status-Type, attributes)`)
    /// in one transaction, all at `now`; then trims the outbox to [`MAX_OUTBOX_ROWS`] by
    /// dropping the oldest Interim-Updates. Returns how many were dropped.
    pub fn acct_write(
        &mut self,
        records: &[(AcctChange, i64, Vec<u8>)],
        now: i64,
    ) -> Result<usize, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (change, kind, attrs) in records {
            match change {
                AcctChange::Start {
                    key_id,
                    serial,
                    mac,
                    session_id,
                    started_at,
                } => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO radius_sessions
                            (key_id, serial, mac, session_id, started_at, interim_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    )?
                    .execute(params![
                        key_id,
                        serial_sql(*serial),
                        mac.to_string(),
                        session_id,
                        started_at
                    ])?;
                }
                AcctChange::Interim {
                    key_id,
                    serial,
                    mac,
                    up_bytes,
                    down_bytes,
                } => {
                    tx.prepare_cached(
                        "UPDATE radius_sessions SET interim_at = ?4, up_bytes = ?5, down_bytes = ?6
                         WHERE key_id = ?1 AND serial = ?2 AND mac = ?3",
                    )?
                    .execute(params![
                        key_id,
                        serial_sql(*serial),
                        mac.to_string(),
                        now,
                        to_sql(*up_bytes),
                        to_sql(*down_bytes)
                    ])?;
                }
                AcctChange::Stop {
                    key_id,
                    serial,
                    mac,
                } => {
                    tx.prepare_cached(
                        "DELETE FROM radius_sessions WHERE key_id = ?1 AND serial = ?2 AND mac = ?3",
                    )?
                    .execute(params![key_id, serial_sql(*serial), mac.to_string()])?;
                }
            }
            tx.prepare_cached(
                "INSERT INTO radius_outbox (created_at, kind, attributes) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![now, kind, attrs])?;
        }
        let len: i64 = tx.query_row("SELECT COUNT(*) FROM radius_outbox", [], |r| r.get(0))?;
        let dropped = if len > MAX_OUTBOX_ROWS {
            tx.execute(
                "DELETE FROM radius_outbox WHERE id IN
                    (SELECT id FROM radius_outbox WHERE kind = ?1 ORDER BY id LIMIT ?2)",
                params![INTERIM, len - MAX_OUTBOX_ROWS],
            )?
        } else {
            0
        };
        tx.commit()?;
        Ok(dropped)
    }

    /// The oldest record waiting for the server.
    pub fn outbox_oldest(&self) -> Result<Option<OutboxRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, created_at, kind, attributes, tries FROM radius_outbox
                 ORDER BY id LIMIT 1",
            )?
            .query_row([], |r| {
                Ok(OutboxRecord {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    kind: r.get(2)?,
                    attributes: r.get(3)?,
                    tries: r.get(4)?,
                })
            })
            .optional()?)
    }

    /// Counts a send of record `id` (not forced to flash: a lost count only changes a log line).
    pub fn outbox_tried(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE radius_outbox SET tries = tries + 1 WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// The server acknowledged record `id`.
    pub fn outbox_done(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM radius_outbox WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// Records waiting for the server.
    pub fn outbox_len(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM radius_outbox", [], |r| r.get(0))?)
    }
}
