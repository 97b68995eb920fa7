//! Sessions that survive crashes and reboots: vouchers, their devices, admin MAC rules and an
//! event log in one SQLite file (rusqlite).
//!
//! Owns: the schema and its migrations (`PRAGMA user_version`, one transaction per step;
//! files that are not SQLite, damaged or from a newer wifipos are refused and never written),
//! transactions that read state, ask `policy` and write the outcome (one `BEGIN IMMEDIATE`
//! per redemption, `synchronous=FULL`, WAL, busy timeout, foreign keys), the event log
//! (redemptions, refusals by [`Rejection::code`], revocations, expiries, admin actions), and
//! the queries the daemon and admin need (restore, device status, a voucher's devices, events
//! and totals by time range). Writes only on redemption, refusal, revocation, admin commands
//! and pruning — never on a page view: the file lives on flash.
//!
//! Does not touch: nftables, HTTP, the wall clock. It returns [`FirewallAction`]s (and
//! [`policy::RuleChange`]s) for the caller to apply; time is always a parameter.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::keys::KeyId;
use crate::mac::Mac;
use crate::policy::{self, Clock, FirewallAction, Grant, VoucherState};
use crate::voucher::{Rejection, Voucher};

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i64 = 3;

/// Event kinds besides refusals (which use [`Rejection::code`]).
pub const EV_REDEEMED: &str = "redeemed";
pub const EV_REDEEMED_AGAIN: &str = "redeemed_again";
pub const EV_REVOKED: &str = "voucher_revoked";
pub const EV_EXPIRED: &str = "voucher_expired";
pub const EV_EXTENDED: &str = "voucher_extended";
pub const EV_KICKED: &str = "device_kicked";
pub const EV_RULE: &str = "mac_rule";
pub const EV_CLOCK: &str = "clock_rebased";
pub const EV_UNDONE: &str = "redemption_undone";
/// A request refused because the neighbour table named another device than its packets.
pub const EV_CONFLICT: &str = "address_conflict";
/// One MAC seen on two ports of the guest bridge at once (a clone of a device).
pub const EV_CLONE: &str = "mac_clone";

/// Every refusal code, for counting refusals in the event log.
const REFUSAL_KINDS: &str = "'malformed', 'unknown_key', 'bad_signature', 'out_of_range', \
     'revoked', 'deadline_passed', 'expired', 'device_limit', 'unsupported_limit'";

/// The schema of version 1, kept verbatim: migrations run in order from a file's version.
pub const SCHEMA_V1: &str = "CREATE TABLE vouchers (
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
     CREATE INDEX events_by_time ON events (at);";

/// Version 2: the deadline (so ended vouchers can be forgotten once they can no longer be
/// presented), whether the voucher started on a trusted clock (to rebase it when NTP syncs),
/// whether its expiry is logged, admin MAC rules, and event kinds that do not collide with
/// refusal codes.
pub const SCHEMA_V2: &str = "ALTER TABLE vouchers ADD COLUMN redeem_by INTEGER;
     ALTER TABLE vouchers ADD COLUMN clock_trusted INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE vouchers ADD COLUMN expiry_logged INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX vouchers_unlogged_expiry ON vouchers (ends_at)
        WHERE expiry_logged = 0 AND revoked_at IS NULL;
     CREATE TABLE mac_rules (
        mac TEXT PRIMARY KEY,
        rule TEXT NOT NULL CHECK (rule IN ('trusted', 'blocked')),
        since INTEGER NOT NULL,
        note TEXT NOT NULL DEFAULT ''
     ) WITHOUT ROWID;
     UPDATE events SET kind = 'voucher_revoked' WHERE kind = 'revoked' AND key_id IS NULL;
     UPDATE events SET kind = 'device_kicked' WHERE kind = 'kicked';
     UPDATE events SET kind = 'voucher_extended' WHERE kind = 'extended';";

/// Version 3: refusals are tallied — one row per minute, kind and device with a count — so a
/// flood of refusals writes a bounded number of rows. Rows already there count once.
const SCHEMA_V3: &str = "ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE events ADD COLUMN minute INTEGER;
     CREATE INDEX events_tally ON events (minute, kind, mac) WHERE minute IS NOT NULL;";

const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];

/// Tallied rows (refusals, address conflicts) kept at most: a ring, the oldest go first. About
/// 150 bytes each with the index, so the tallies stay under ~1.5 MB whatever guests do.
pub const MAX_TALLY_ROWS: i64 = 10_000;
/// Distinct devices tallied per minute; refusals of further devices that minute are counted in
/// one row without a MAC (invented MACs cannot add rows without bound).
pub const MAX_TALLY_DEVICES_PER_MINUTE: i64 = 100;
/// Free space on the database's filesystem below which tallies are not written at all (they
/// are counted in memory and reported), so that guests can never take the space a
/// redemption needs. Redemptions and admin changes are always written.
pub const RESERVE_BYTES: u64 = 1 << 20;

/// How hard a commit waits for the flash. Production is `Full`: an acknowledged redemption
/// survives a power cut. `Normal` (WAL) may lose the last commits on power loss, never on a
/// crash of the daemon; for benchmarks and tests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Full,
    Normal,
}

/// Failures, worded for the person who runs the router.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists and does not start with SQLite's header.
    #[error("the database file {path} is not a wifipos database (it is not SQLite at all); it was left untouched. Move it away or set another path in /etc/config/wifipos")]
    NotADatabase { path: PathBuf },
    /// A SQLite file that SQLite itself calls damaged.
    #[error("the database file {path} is damaged ({detail}); it was left untouched. Move it away (wifipos then starts a new one) or restore a backup")]
    Damaged { path: PathBuf, detail: String },
    /// Written by a newer wifipos: opening it could lose what that version stored.
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
    /// Permissions, a read-only or full flash, a path that is a folder…
    #[error("cannot open the database {path}: {source} (is the flash full or read-only?)")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Updating an older database failed; the transaction was rolled back.
    #[error("cannot update the database {path} from schema {from} to {to}: {source}; it was left as it was")]
    Migration {
        path: PathBuf,
        from: i64,
        to: i64,
        source: rusqlite::Error,
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

/// Totals for the admin, over a time range (events older than the pruning age are gone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Vouchers first used in the range.
    pub vouchers_redeemed: i64,
    /// Distinct devices that joined a voucher in the range.
    pub devices: i64,
    /// Minutes of the vouchers first used in the range.
    pub minutes_sold: i64,
    /// Redemptions accepted (first and repeated) in the range.
    pub redemptions: i64,
    /// Redemptions refused, whatever the reason, in the range.
    pub refusals: i64,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub at: i64,
    /// `redeemed`, `redeemed_again`, a refusal code ([`Rejection::code`]) or one of the `EV_*`.
    pub kind: String,
    pub mac: Option<String>,
    pub key_id: Option<String>,
    pub serial: Option<u64>,
    pub detail: String,
}

/// One voucher a device holds, for the admin's status view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VoucherUse {
    pub key_id: String,
    pub serial: u64,
    pub ends_at: i64,
    pub revoked: bool,
    pub devices: u8,
    pub max_devices: u8,
    pub purchase_ref: String,
}

/// Everything the store knows about one device now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceStatus {
    /// The latest end among its live vouchers (`None`: no access through vouchers).
    pub until: Option<i64>,
    /// Seconds left (0 when none).
    pub remaining_s: i64,
    /// Every voucher it is on, live or not, latest end first.
    pub vouchers: Vec<VoucherUse>,
    /// An admin's trust or block.
    pub rule: Option<policy::MacRule>,
}

/// A device on a voucher.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VoucherDevice {
    pub mac: Mac,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// A device with access now, for the admin's list: its latest-ending live voucher.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub mac: Mac,
    pub key_id: String,
    pub serial: u64,
    pub purchase_ref: String,
    pub ends_at: i64,
    /// When the device joined that voucher.
    pub first_seen: i64,
}

/// A voucher as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoucherSummary {
    pub key_id: String,
    pub serial: u64,
    pub purchase_ref: String,
    pub duration_s: i64,
    pub max_devices: u8,
    /// `None`: not used yet (only known here because it was revoked before use).
    pub first_redeemed_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Its devices, first come first.
    pub devices: Vec<Mac>,
}

/// The session store: one SQLite connection. Open one per thread or process; SQLite's locks
/// (immediate transactions, busy timeout) serialise the writers.
pub struct Store {
    conn: Connection,
    /// `synchronous` for redemptions and admin changes (`FULL` in production).
    sync: &'static str,
    /// The folder holding the database, for the free-space check.
    dir: PathBuf,
    /// Tallies not written for want of space, since start.
    pub dropped_tallies: u64,
}

fn serial_sql(serial: u64) -> i64 {
    serial as i64
}

fn sql_code(e: &rusqlite::Error) -> Option<rusqlite::ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        sql_code(e),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

impl Store {
    /// Opens (creating if needed) and migrates the database, committing with
    /// `synchronous=FULL`. A file that is not SQLite, is damaged, or is from a newer schema is
    /// refused and left exactly as it was.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, Durability::Full)
    }

    /// [`Store::open`] with a chosen durability (`Normal` for benchmarks only).
    pub fn open_with(path: &Path, durability: Durability) -> Result<Store, StoreError> {
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
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if n > 0 && (n < 16 || &head != b"SQLite format 3\0") {
                return Err(StoreError::NotADatabase {
                    path: path.to_owned(),
                });
            }
        }
        let open_err = |source: rusqlite::Error| {
            if is_damage(&source) {
                StoreError::Damaged {
                    path: path.to_owned(),
                    detail: source.to_string(),
                }
            } else {
                StoreError::Open {
                    path: path.to_owned(),
                    source,
                }
            }
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // Keep the write-ahead log small on a small flash: checkpoint every ~1 MB and cut the
        // file back after each checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", 256)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", 1 << 20)
            .map_err(open_err)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let mut store = Store {
            conn,
            sync,
            dir,
            dropped_tallies: 0,
        };
        store.migrate(path, version)?;
        Ok(store)
    }

    fn migrate(&mut self, path: &Path, from: i64) -> Result<(), StoreError> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
            let to = i as i64 + 1;
            let mut step = || -> Result<(), rusqlite::Error> {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Another process may have migrated while we waited for the lock.
                let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                if now >= to {
                    return Ok(());
                }
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", to)?;
                tx.commit()
            };
            step().map_err(|source| StoreError::Migration {
                path: path.to_owned(),
                from: i as i64,
                to,
                source,
            })?;
        }
        Ok(())
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

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
        let row: Option<(Option<i64>, Option<i64>)> = tx
            .prepare_cached(
                "SELECT ends_at, revoked_at FROM vouchers WHERE key_id = ?1 AND serial = ?2",
            )?
            .query_row(params![key, serial], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let devices = devices_of(&tx, &key, serial)?;
        let state = VoucherState {
            ends_at: row.and_then(|r| r.0),
            revoked: row.is_some_and(|r| r.1.is_some()),
            devices,
        };
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
                    max_devices, purchase_ref, redeem_by, clock_trusted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (key_id, serial) DO UPDATE SET first_redeemed_at = ?3, ends_at = ?4,
                    duration_s = ?5, max_devices = ?6, purchase_ref = ?7, redeem_by = ?8,
                    clock_trusted = ?9, expiry_logged = 0",
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
                clock.trusted
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

    /// Bytes the database file, its log and its free pages take.
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
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

    /// Every device with access now, with the live voucher that ends last, ending soonest
    /// first; blocked devices left out (as in [`Store::active_sessions`]). Reads only.
    pub fn sessions(&self, now: i64) -> Result<Vec<Session>, StoreError> {
        // SQLite takes the bare columns from the row holding MAX(ends_at).
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.mac, v.key_id, v.serial, v.purchase_ref, MAX(v.ends_at), d.first_seen
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
                    ends_at, revoked_at
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
            &format!("{} devices lose it", macs.len()),
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
        event(&tx, now, EV_KICKED, Some(&m), Some((&key, s)), "slot freed")?;
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
        let Some(new_end) = ends_at.and_then(|e| policy::extended_end(e, secs, now)) else {
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
            &format!("+{secs} s, ends_at {new_end}"),
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

fn rule_of(conn: &Connection, mac: &str) -> Result<Option<policy::MacRule>, StoreError> {
    let rule: Option<String> = conn
        .prepare_cached("SELECT rule FROM mac_rules WHERE mac = ?1")?
        .query_row([mac], |r| r.get(0))
        .optional()?;
    Ok(rule.as_deref().and_then(policy::MacRule::from_code))
}

fn blocked_macs(conn: &Connection) -> Result<Vec<Mac>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT mac FROM mac_rules WHERE rule = 'blocked'")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows
        .filter_map(|r| r.ok().and_then(|m| m.parse().ok()))
        .collect())
}

/// Writes one `voucher_expired` event, at its end, for every voucher whose time is up and not
/// logged yet.
fn log_expiries(conn: &Connection, now: i64) -> Result<usize, StoreError> {
    let n = conn
        .prepare_cached(
            "INSERT INTO events (at, kind, mac, key_id, serial, detail)
             SELECT ends_at, ?2, NULL, key_id, serial,
                    (SELECT COUNT(*) FROM devices d WHERE d.key_id = v.key_id AND d.serial = v.serial)
                        || ' devices'
             FROM vouchers v WHERE expiry_logged = 0 AND revoked_at IS NULL AND ends_at <= ?1",
        )?
        .execute(params![now, EV_EXPIRED])?;
    if n > 0 {
        conn.prepare_cached(
            "UPDATE vouchers SET expiry_logged = 1
             WHERE expiry_logged = 0 AND revoked_at IS NULL AND ends_at <= ?1",
        )?
        .execute([now])?;
    }
    Ok(n)
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
fn tally(
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

fn event(
    conn: &Connection,
    at: i64,
    kind: &str,
    mac: Option<&str>,
    voucher: Option<(&str, i64)>,
    detail: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (at, kind, mac, key_id, serial, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        at,
        kind,
        mac,
        voucher.map(|v| v.0),
        voucher.map(|v| v.1),
        detail
    ])?;
    Ok(())
}
