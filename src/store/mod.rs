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
//! Files: this one holds the schema, opening and the shared row helpers; `redeem.rs` the
//! guest's side, `admin.rs` the admin's, `events.rs` the event log, reports and pruning,
//! `usage.rs` traffic and data caps, `outbox.rs` RADIUS accounting's outbox and sessions.
//!
//! Does not touch: nftables, HTTP, the wall clock. It returns [`FirewallAction`]s (and
//! [`policy::RuleChange`]s) for the caller to apply; time is always a parameter.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::keys::KeyId;
use crate::mac::Mac;
use crate::policy::{self, Clock, FirewallAction, Grant, VoucherState};
use crate::voucher::{Rejection, Voucher};

mod admin;
mod events;
mod outbox;
mod redeem;
mod usage;

pub use outbox::{AcctChange, AcctSession, OutboxRecord, MAX_OUTBOX_ROWS};
pub use usage::{Capped, Delta};

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i64 = 5;

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
/// A voucher's data allowance ran out: access ended for all its devices.
pub const EV_DATA_USED_UP: &str = "data_used_up";
/// A device idle for `device_idle_replace` minutes gave its place on a full voucher to a new
/// one (a phone back with a new private MAC address).
pub const EV_REPLACED: &str = "device_replaced";
/// Central authorization on, the RADIUS server did not answer in time: the router decided a
/// redemption alone (what an operator reconciles with HQ's count).
pub const EV_CENTRAL_UNANSWERED: &str = "central_unanswered";

/// Every refusal code, for counting refusals in the event log.
const REFUSAL_KINDS: &str = "'malformed', 'unknown_key', 'bad_signature', 'out_of_range', \
     'revoked', 'deadline_passed', 'expired', 'device_limit', 'unsupported_limit', 'data_used_up'";

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

/// Version 4: usage and limits. A voucher keeps the limits it carries (data cap in bytes,
/// speed limits in kbit/s), the bytes all its devices used together (replaced devices
/// included) and when its data ran out; each device its own bytes each way and when the
/// kernel's counters last saw it move.
pub const SCHEMA_V4: &str = "ALTER TABLE vouchers ADD COLUMN data_cap INTEGER;
     ALTER TABLE vouchers ADD COLUMN down_kbit INTEGER;
     ALTER TABLE vouchers ADD COLUMN up_kbit INTEGER;
     ALTER TABLE vouchers ADD COLUMN used_bytes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE vouchers ADD COLUMN data_used_up_at INTEGER;
     ALTER TABLE devices ADD COLUMN up_bytes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN down_bytes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN last_active INTEGER;";

/// Version 5: RADIUS accounting. The outbox holds records until the server acknowledges them
/// (`kind` is the Acct-Status-Type, `attributes` the encoded attributes without
/// Acct-Delay-Time, `created_at` the event's time); `radius_sessions` the device sessions a
/// Start was queued for and no Stop yet, with when the last Interim-Update was queued and the
/// bytes it reported; when a device leaves its voucher (kicked, replaced, pruned) a trigger
/// keeps its final counts there for the Stop.
pub const SCHEMA_V5: &str = "CREATE TABLE radius_outbox (
        id INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        attributes BLOB NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX radius_outbox_by_kind ON radius_outbox (kind, id);
     CREATE TABLE radius_sessions (
        key_id TEXT NOT NULL,
        serial INTEGER NOT NULL,
        mac TEXT NOT NULL,
        session_id TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        interim_at INTEGER NOT NULL,
        up_bytes INTEGER NOT NULL DEFAULT 0,
        down_bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (key_id, serial, mac)
     ) WITHOUT ROWID;
     CREATE INDEX radius_sessions_by_mac ON radius_sessions (mac);
     CREATE TRIGGER radius_device_gone AFTER DELETE ON devices
     BEGIN
        UPDATE radius_sessions SET up_bytes = OLD.up_bytes, down_bytes = OLD.down_bytes
        WHERE key_id = OLD.key_id AND serial = OLD.serial AND mac = OLD.mac;
     END;";

const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5];

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
    /// Bytes this device moved on that voucher, as last saved (every minute).
    #[serde(default)]
    pub up_bytes: u64,
    #[serde(default)]
    pub down_bytes: u64,
    /// The voucher's data cap in bytes, all its devices together (`None`: no cap).
    #[serde(default)]
    pub data_cap: Option<u64>,
    /// Bytes all the voucher's devices used, as last saved.
    #[serde(default)]
    pub voucher_used_bytes: u64,
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
    /// Bytes all its devices used (devices that were replaced included), as last saved.
    #[serde(default)]
    pub used_bytes: u64,
    /// Its data cap in bytes and speed limits in kbit/s, if it carries them.
    #[serde(default)]
    pub data_cap: Option<u64>,
    #[serde(default)]
    pub down_kbit: Option<u32>,
    #[serde(default)]
    pub up_kbit: Option<u32>,
    /// When its data allowance ran out.
    #[serde(default)]
    pub data_used_up_at: Option<i64>,
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

    /// Bytes the database file, its log and its free pages take.
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
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
