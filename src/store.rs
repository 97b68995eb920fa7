//! Sessions that survive crashes and reboots: vouchers, their devices and an event log in one
//! SQLite file (rusqlite).
//!
//! Owns: the schema and its migrations (`PRAGMA user_version`), transactions that read state,
//! ask `policy` and write the outcome (one `BEGIN IMMEDIATE` per redemption, `synchronous=FULL`,
//! WAL), and the queries the daemon and admin need. Writes only on redemption, refusal,
//! revocation and admin commands — never on a page view: the file lives on flash. Knows nothing
//! of nftables or HTTP; returns [`FirewallAction`]s for the caller to apply. Time is always a
//! parameter.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::keys::KeyId;
use crate::mac::Mac;
use crate::policy::{self, Clock, FirewallAction, Grant, VoucherState};
use crate::voucher::{Rejection, Voucher};

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE vouchers (
        key_id TEXT NOT NULL,
        serial INTEGER NOT NULL,
        first_redeemed_at INTEGER,
        ends_at INTEGER,
        duration_s INTEGER NOT NULL,
        max_devices INTEGER NOT NULL,
        purchase_ref TEXT NOT NULL DEFAULT '',
        revoked_at INTEGER,
        PRIMARY KEY (key_id, serial)
     ) WITHOUT ROWID;
     CREATE TABLE devices (
        key_id TEXT NOT NULL,
        serial INTEGER NOT NULL,
        mac TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (key_id, serial, mac),
        FOREIGN KEY (key_id, serial) REFERENCES vouchers ON DELETE CASCADE
     ) WITHOUT ROWID;
     CREATE INDEX devices_by_mac ON devices (mac);
     CREATE INDEX vouchers_by_end ON vouchers (ends_at);
     CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        mac TEXT,
        key_id TEXT,
        serial INTEGER,
        detail TEXT NOT NULL DEFAULT ''
     );
     CREATE INDEX events_by_time ON events (at);",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database file {path} is not a wifipos database (not SQLite at all); it was left untouched. Move it away or set another path in /etc/config/wifipos")]
    NotADatabase { path: PathBuf },
    #[error("the database {path} was written by a newer wifipos (schema {found}, this one knows up to {known}); it was left untouched — upgrade wifipos")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("cannot create the folder for the database {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// A device's access as the portal and admin see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAccess {
    /// The latest end among the device's live vouchers.
    pub until: i64,
    /// Devices and limit of the voucher that ends last.
    pub devices: u8,
    pub max_devices: u8,
}

/// An accepted redemption: the policy's grant and how long the device may stay in the firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redeemed {
    pub grant: Grant,
    pub max_devices: u8,
    /// The device's firewall timeout end: the latest of all its live vouchers.
    pub device_until: i64,
}

/// Totals for the admin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub vouchers_redeemed: i64,
    pub devices: i64,
    pub minutes_sold: i64,
    pub refusals: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub at: i64,
    pub kind: String,
    pub mac: Option<String>,
    pub key_id: Option<String>,
    pub serial: Option<u64>,
    pub detail: String,
}

pub struct Store {
    conn: Connection,
}

fn serial_sql(serial: u64) -> i64 {
    serial as i64
}

impl Store {
    /// Opens (creating if needed) and migrates the database. A file that is not SQLite, or from
    /// a newer schema, is refused and left exactly as it was.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.to_owned(),
                source,
            })?;
        }
        // Check the header before SQLite touches the file (it would otherwise write a WAL).
        if let Ok(mut f) = std::fs::File::open(path) {
            use std::io::Read as _;
            let mut head = [0u8; 16];
            let n = f.read(&mut head).unwrap_or(0);
            if n > 0 && (n < 16 || &head != b"SQLite format 3\0") {
                return Err(StoreError::NotADatabase {
                    path: path.to_owned(),
                });
            }
        }
        let conn = Connection::open(path)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store { conn };
        store.migrate(version)?;
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> Result<(), StoreError> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Redeems `v` (already verified) for `mac`: reads the voucher's state, decides by
    /// `policy`, writes the outcome and an event, all in one immediate transaction. An `Ok(Ok)`
    /// is on disk when this returns.
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
        let row: Option<(Option<i64>, Option<i64>)> = tx
            .query_row(
                "SELECT ends_at, revoked_at FROM vouchers WHERE key_id = ?1 AND serial = ?2",
                params![key, serial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let devices = devices_of(&tx, &key, serial)?;
        let state = VoucherState {
            ends_at: row.and_then(|r| r.0),
            revoked: row.is_some_and(|r| r.1.is_some()),
            devices,
        };
        let outcome = match policy::redeem(v, &state, mac, clock) {
            Err(why) => {
                event(&tx, now, why.code(), Some(&m), Some(v), &why.to_string())?;
                tx.commit()?;
                return Ok(Err(why));
            }
            Ok(g) => g,
        };
        if outcome.first_use {
            tx.execute(
                "INSERT INTO vouchers (key_id, serial, first_redeemed_at, ends_at, duration_s, max_devices, purchase_ref)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (key_id, serial) DO UPDATE SET first_redeemed_at = ?3, ends_at = ?4",
                params![key, serial, now, outcome.ends_at, v.duration_s, v.max_devices, v.purchase_ref],
            )?;
        }
        tx.execute(
            "INSERT INTO devices (key_id, serial, mac, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT DO UPDATE SET last_seen = ?4",
            params![key, serial, m, now],
        )?;
        let kind = if outcome.new_device {
            "redeemed"
        } else {
            "redeemed_again"
        };
        let detail = format!(
            "ends_at {} device {}/{}",
            outcome.ends_at, outcome.devices, v.max_devices
        );
        event(&tx, now, kind, Some(&m), Some(v), &detail)?;
        let device_until = ends_of(&tx, &m, now)?
            .into_iter()
            .max()
            .unwrap_or(outcome.ends_at);
        tx.commit()?;
        Ok(Ok(Redeemed {
            grant: outcome,
            max_devices: v.max_devices,
            device_until,
        }))
    }

    /// Records a voucher refused before the store was asked (malformed, unknown key, forged).
    pub fn record_refusal(
        &mut self,
        mac: Option<Mac>,
        why: &Rejection,
        now: i64,
    ) -> Result<(), StoreError> {
        let m = mac.map(|m| m.to_string());
        event(
            &self.conn,
            now,
            why.code(),
            m.as_deref(),
            None,
            &why.to_string(),
        )?;
        Ok(())
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
                    devices: r.get::<_, i64>(2)? as u8,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Every device with access now and until when (the latest of its live vouchers): what the
    /// firewall must hold after a restart.
    pub fn active_sessions(&self, now: i64) -> Result<Vec<(Mac, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.mac, MAX(v.ends_at) FROM devices d JOIN vouchers v USING (key_id, serial)
             WHERE v.revoked_at IS NULL AND v.ends_at > ?1 GROUP BY d.mac ORDER BY d.mac",
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

    /// Revokes a voucher: its devices lose it at once (keeping time of their other vouchers).
    /// A voucher not yet used is recorded so it is refused when it comes.
    pub fn revoke(
        &mut self,
        key_id: KeyId,
        serial: u64,
        now: i64,
    ) -> Result<Vec<FirewallAction>, StoreError> {
        let key = key_id.to_string();
        let s = serial_sql(serial);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            "revoked",
            None,
            None,
            &format!("{key}:{serial} ({} devices)", macs.len()),
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
            "kicked",
            Some(&m),
            None,
            &format!("{key}:{serial}"),
        )?;
        tx.commit()?;
        Ok(policy::after_loss(&[mac], now, |_| ends.clone()).pop())
    }

    /// Adds `secs` to a used voucher's end; its devices get the new time. `Ok(None)` if the
    /// voucher was never used or is revoked.
    pub fn extend(
        &mut self,
        key_id: KeyId,
        serial: u64,
        secs: i64,
        now: i64,
    ) -> Result<Option<Vec<FirewallAction>>, StoreError> {
        let (key, s) = (key_id.to_string(), serial_sql(serial));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE vouchers SET ends_at = MAX(ends_at, ?3) + ?4
             WHERE key_id = ?1 AND serial = ?2 AND ends_at IS NOT NULL AND revoked_at IS NULL",
            params![key, s, now, secs],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let macs = devices_of(&tx, &key, s)?;
        let mut actions = Vec::new();
        for mac in macs {
            let ends = ends_of(&tx, &mac.to_string(), now)?;
            actions.extend(policy::after_loss(&[mac], now, |_| ends.clone()));
        }
        event(
            &tx,
            now,
            "extended",
            None,
            None,
            &format!("{key}:{serial} +{secs} s"),
        )?;
        tx.commit()?;
        Ok(Some(actions))
    }

    /// Recent events, oldest first.
    pub fn events(&self, since: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, kind, mac, key_id, serial, detail FROM events WHERE at >= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since, limit as i64], |r| {
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

    pub fn totals(&self) -> Result<Totals, StoreError> {
        Ok(self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM vouchers WHERE first_redeemed_at IS NOT NULL),
                    (SELECT COUNT(DISTINCT mac) FROM devices),
                    (SELECT COALESCE(SUM(duration_s), 0) / 60 FROM vouchers WHERE first_redeemed_at IS NOT NULL),
                    (SELECT COUNT(*) FROM events WHERE kind NOT IN ('redeemed', 'redeemed_again', 'revoked'))",
            [],
            |r| {
                Ok(Totals {
                    vouchers_redeemed: r.get(0)?,
                    devices: r.get(1)?,
                    minutes_sold: r.get(2)?,
                    refusals: r.get(3)?,
                })
            },
        )?)
    }

    /// Deletes events and ended vouchers (with their devices) older than `keep_days`, so the
    /// file stays small on flash. Revoked vouchers are kept as long as they could be presented.
    pub fn prune(&mut self, now: i64, keep_days: u32) -> Result<usize, StoreError> {
        let cutoff = now - i64::from(keep_days) * 86_400;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = tx.execute("DELETE FROM events WHERE at < ?1", [cutoff])?;
        n += tx.execute(
            "DELETE FROM vouchers WHERE ends_at IS NOT NULL AND ends_at < ?1 AND revoked_at IS NULL",
            [cutoff],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// `PRAGMA integrity_check` says "ok".
    pub fn integrity_ok(&self) -> Result<bool, StoreError> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(r == "ok")
    }
}

/// The devices on a voucher.
fn devices_of(conn: &Connection, key: &str, serial: i64) -> Result<Vec<Mac>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT mac FROM devices WHERE key_id = ?1 AND serial = ?2")?;
    let rows = stmt.query_map(params![key, serial], |r| r.get::<_, String>(0))?;
    Ok(rows
        .filter_map(|r| r.ok().and_then(|m| m.parse().ok()))
        .collect())
}

/// The ends of a device's live vouchers.
fn ends_of(conn: &Connection, mac: &str, now: i64) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT v.ends_at FROM devices d JOIN vouchers v USING (key_id, serial)
         WHERE d.mac = ?1 AND v.revoked_at IS NULL AND v.ends_at > ?2",
    )?;
    let rows = stmt.query_map(params![mac, now], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn event(
    conn: &Connection,
    at: i64,
    kind: &str,
    mac: Option<&str>,
    v: Option<&Voucher>,
    detail: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (at, kind, mac, key_id, serial, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        at,
        kind,
        mac,
        v.map(|v| v.key_id.to_string()),
        v.map(|v| serial_sql(v.serial)),
        detail
    ])?;
    Ok(())
}
