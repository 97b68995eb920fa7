//! Admin commands: what `wifiposd status|sessions|vouchers|revoke|kick|extend|trust|block|events`
//! ask of the running daemon, and the answers.
//!
//! Owns: the request and reply types (sent as JSON over the control socket) and carrying out
//! each command against the sessions (store, firewall, open connections); parsing of admin
//! arguments with messages for people is `args`, the text output `text`. Not: the session state
//! and what a revocation or a rule change does to the kernel (`sessions`), the socket
//! (`control`), printing (the `wifiposd` binary).
//!
//! Imports run one way: `sessions` ← `admin` ← `control` ← `daemon` (and `daemon` → `admin`
//! for the handler it hands `control`). `admin` never imports `control` or `daemon`.

mod args;
pub mod text;

pub use args::{parse_duration, parse_mac, parse_since, parse_target, parse_voucher, Target};

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::firewall::Health;
use crate::keys::KeyId;
use crate::mac::Mac;
use crate::policy::MacRule;
use crate::sessions::{self, Sessions};
use crate::store::{Session, Totals, VoucherSummary};

/// One admin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Sessions,
    Vouchers {
        limit: usize,
    },
    /// A MAC, a voucher (`KEYID:SERIAL`, its code or link) or a key id.
    Revoke {
        target: String,
    },
    Kick {
        mac: String,
    },
    Extend {
        voucher: String,
        duration: String,
    },
    /// Sets (`on`) or clears a MAC's trust or block.
    Rule {
        mac: String,
        rule: RuleName,
        on: bool,
    },
    /// `since`: a duration ago (`2h`), a date (`2026-11-25`, UTC) or Unix seconds.
    Events {
        since: String,
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleName {
    Trusted,
    Blocked,
}

impl From<RuleName> for MacRule {
    fn from(r: RuleName) -> MacRule {
        match r {
            RuleName::Trusted => MacRule::Trusted,
            RuleName::Blocked => MacRule::Blocked,
        }
    }
}

/// Why a command did not do what was asked. [`AdminError::exit_code`] is what the command line
/// exits with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum AdminError {
    /// The arguments are wrong (exit 2).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing to act on, or not allowed in its state (exit 1).
    #[error("{0}")]
    Refused(String),
    /// The daemon failed to do it (exit 1).
    #[error("{0}")]
    Internal(String),
    /// The daemon cannot be reached (exit 3).
    #[error("{0}")]
    Unreachable(String),
}

impl AdminError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::BadRequest(_) => 2,
            AdminError::Refused(_) | AdminError::Internal(_) => 1,
            AdminError::Unreachable(_) => 3,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> AdminError {
    AdminError::Internal(e.to_string())
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub now: i64,
    pub clock_trusted: bool,
    pub uptime_s: u64,
    pub venue: String,
    pub portal_url: String,
    /// The interface the portal's address was taken from (`option portal_address` unset).
    #[serde(default)]
    pub portal_address_from: Option<String>,
    pub guest_iface: String,
    /// `intact`, `missing` (being rebuilt) or an error.
    pub table: String,
    /// Devices with time left, per the database.
    pub sessions: usize,
    /// Devices in the kernel's `allowed` set.
    pub allowed_in_kernel: usize,
    pub trusted_macs: usize,
    pub blocked_macs: usize,
    /// Ids of the trusted till keys.
    pub keys: Vec<String>,
    /// The last 24 hours.
    pub last_24h: Totals,
    /// MACs seen on two guest bridge ports at once in the last 24 hours ("MAC: ports").
    #[serde(default)]
    pub clones: Vec<String>,
    /// Bytes moved by the devices with time left, on their current vouchers (down, up).
    #[serde(default)]
    pub traffic: (u64, u64),
    /// The kernel counts downloads too (false before kernel 5.16: no netdev egress hook).
    #[serde(default)]
    pub counts_downloads: bool,
    /// Devices held to a speed limit by the kernel's shaper.
    #[serde(default)]
    pub speed_limited: usize,
    /// RADIUS accounting (`None`: off).
    #[serde(default)]
    pub radius: Option<RadiusStatus>,
    /// Central authorization: the server asked and how long a redemption waits (`None`: off).
    #[serde(default)]
    pub radius_auth: Option<(String, u32)>,
    /// Disconnect/CoA: the UDP port and the addresses taken from (`None`: off).
    #[serde(default)]
    pub radius_coa: Option<(u16, Vec<String>)>,
}

/// RADIUS accounting in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RadiusStatus {
    /// Where it goes (`option radius_server`).
    pub server: String,
    /// Records in the outbox, not acknowledged yet.
    pub waiting: i64,
}

/// A line of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLine {
    #[serde(flatten)]
    pub session: Session,
    pub remaining_s: i64,
    /// Seconds left on the device's element in the kernel (`None`: not in the set).
    pub kernel_s: Option<u64>,
}

/// `vouchers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouchers {
    pub now: i64,
    pub vouchers: Vec<VoucherSummary>,
}

/// What a changing command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// One sentence for people.
    pub message: String,
    /// Vouchers it touched, as `KEYID:SERIAL`.
    pub vouchers: Vec<String>,
    /// Devices whose access changed.
    pub devices: Vec<Mac>,
}

/// Checks a request's arguments without the daemon, so the command line can say what is
/// wrong before it connects.
pub fn validate(req: &Request) -> Result<(), AdminError> {
    match req {
        Request::Status | Request::Sessions | Request::Vouchers { .. } => Ok(()),
        Request::Revoke { target } => parse_target(target).map(drop),
        Request::Kick { mac } | Request::Rule { mac, .. } => parse_mac(mac).map(drop),
        Request::Extend { voucher, duration } => {
            parse_voucher(voucher)?;
            parse_duration(duration).map(drop)
        }
        Request::Events { since, .. } => parse_since(since, 0).map(drop),
    }
}

/// Carries out one request at `now`.
pub fn handle(
    s: &mut Sessions,
    uptime_s: u64,
    req: &Request,
    now: i64,
) -> Result<serde_json::Value, AdminError> {
    match req {
        Request::Status | Request::Sessions | Request::Vouchers { .. } => {
            // Usage up to this moment, not up to the last save: the unsaved counts are
            // applied in a transaction that is rolled back after the view (a page view writes
            // nothing to flash).
            s.read_usage(now);
            let unsaved = s.meter.unsaved();
            let shown = s.store.begin_unsaved(&unsaved);
            if let Err(e) = &shown {
                eprintln!("wifiposd: cannot show the unsaved traffic counts: {e}");
            }
            let out = view(s, uptime_s, req, now);
            if shown.is_ok() {
                s.store.end_unsaved();
            }
            out
        }
        Request::Revoke { target } => json(revoke(s, parse_target(target)?, now)),
        Request::Kick { mac } => json(kick(s, parse_mac(mac)?, now)),
        Request::Extend { voucher, duration } => json(extend(
            s,
            parse_voucher(voucher)?,
            parse_duration(duration)?,
            now,
        )),
        Request::Rule { mac, rule, on } => json(set_rule(s, parse_mac(mac)?, *rule, *on, now)),
        Request::Events { since, limit } => json(
            s.store
                .events(parse_since(since, now)?, (*limit).clamp(1, 100_000))
                .map_err(internal),
        ),
    }
}

/// The read-only views: `status`, `sessions`, `vouchers` (reads only: see [`handle`]).
fn view(
    s: &mut Sessions,
    uptime_s: u64,
    req: &Request,
    now: i64,
) -> Result<serde_json::Value, AdminError> {
    match req {
        Request::Status => json(status(s, uptime_s, now)),
        Request::Sessions => json(sessions(s, now)),
        Request::Vouchers { limit } => json(
            s.store
                .recent_vouchers((*limit).clamp(1, 10_000))
                .map(|vouchers| Vouchers { now, vouchers })
                .map_err(internal),
        ),
        _ => Err(AdminError::BadRequest("not a view".into())),
    }
}

fn json<T: Serialize>(v: Result<T, AdminError>) -> Result<serde_json::Value, AdminError> {
    v.and_then(|v| serde_json::to_value(v).map_err(internal))
}

fn status(s: &mut Sessions, uptime_s: u64, now: i64) -> Result<Status, AdminError> {
    let table = match s.firewall.health() {
        Ok(Health::Intact) => "intact".to_owned(),
        Ok(Health::Missing) => "missing (rebuilt within a second)".to_owned(),
        Err(e) => format!("cannot check: {e}"),
    };
    let allowed = s.firewall.list_allowed().map(|a| a.len()).unwrap_or(0);
    let (trusted, blocked) = sessions::mac_sets(&s.cfg, &s.store.rules().map_err(internal)?);
    let live = s.store.sessions(now).map_err(internal)?;
    let cfg = &s.cfg;
    Ok(Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        now,
        clock_trusted: now >= sessions::CLOCK_SANE_AFTER,
        uptime_s,
        venue: cfg.venue.clone(),
        portal_url: cfg.portal_url(),
        portal_address_from: (!cfg.portal_address_set).then(|| cfg.guest_iface.clone()),
        guest_iface: cfg.guest_iface.clone(),
        table,
        sessions: s.store.active_sessions(now).map_err(internal)?.len(),
        allowed_in_kernel: allowed,
        trusted_macs: trusted.len(),
        blocked_macs: blocked.len(),
        keys: s.keyring.ids().map(|k| k.to_string()).collect(),
        last_24h: s
            .store
            .totals_between(now - 86_400, now + 1)
            .map_err(internal)?,
        clones: s.store.recent_clones(now - 86_400).map_err(internal)?,
        traffic: live
            .iter()
            .fold((0, 0), |(d, u), l| (d + l.down_bytes, u + l.up_bytes)),
        counts_downloads: s.firewall.counts_downloads(),
        speed_limited: live
            .iter()
            .filter(|l| !s.rates_for(l.mac).is_unlimited())
            .count(),
        radius: match cfg.radius() {
            Some((server, _)) => Some(RadiusStatus {
                server: server.to_string(),
                waiting: s.store.outbox_len().map_err(internal)?,
            }),
            None => None,
        },
        radius_auth: cfg
            .radius_auth()
            .map(|(a, _)| (a.to_string(), cfg.radius_timeout_ms)),
        radius_coa: cfg
            .radius_coa()
            .map(|(port, from, _)| (port, from.iter().map(|ip| ip.to_string()).collect())),
    })
}

fn sessions(s: &mut Sessions, now: i64) -> Result<Vec<SessionLine>, AdminError> {
    let kernel: std::collections::HashMap<Mac, u64> = s
        .firewall
        .list_allowed()
        .map_err(internal)?
        .into_iter()
        .map(|(m, d)| (m, d.as_secs()))
        .collect();
    Ok(s.store
        .sessions(now)
        .map_err(internal)?
        .into_iter()
        .map(|session| SessionLine {
            remaining_s: session.ends_at - now,
            kernel_s: kernel.get(&session.mac).copied(),
            session,
        })
        .collect())
}

fn name(key: KeyId, serial: u64) -> String {
    format!("{key}:{serial}")
}

fn revoke(s: &mut Sessions, target: Target, now: i64) -> Result<Done, AdminError> {
    revoke_from(s, target, "", now)
}

/// `revoke`, with `note` (who asked, such as `; by RADIUS Disconnect-Request from ADDR`;
/// empty for the admin) appended to the events.
pub fn revoke_from(
    s: &mut Sessions,
    target: Target,
    note: &str,
    now: i64,
) -> Result<Done, AdminError> {
    let list: Vec<(KeyId, u64)> = match target {
        Target::Voucher(k, n) => vec![(k, n)],
        Target::Key(k) => {
            let serials = s.store.serials_of_key(k).map_err(internal)?;
            if serials.is_empty() {
                return Err(AdminError::Refused(format!(
                    "no voucher of key {k} has been used here; to refuse its vouchers from now \
                     on, remove the key from `list trusted_key` and reload"
                )));
            }
            serials.into_iter().map(|n| (k, n)).collect()
        }
        Target::Mac(mac) => {
            let live = live_vouchers(s, mac, now)?;
            if live.is_empty() {
                return Err(AdminError::Refused(format!(
                    "{mac} has no voucher with time left; nothing to revoke"
                )));
            }
            live
        }
    };
    let mut actions = Vec::new();
    let mut names = Vec::new();
    for (k, n) in list {
        let already = s
            .store
            .voucher(k, n)
            .map_err(internal)?
            .is_some_and(|v| v.revoked_at.is_some());
        if !already {
            actions.extend(s.store.revoke_noting(k, n, note, now).map_err(internal)?);
            names.push(name(k, n));
        }
    }
    if names.is_empty() {
        return Err(AdminError::Refused(match target {
            Target::Voucher(k, n) => format!("voucher {} is already revoked", name(k, n)),
            _ => "every voucher it names is already revoked".to_owned(),
        }));
    }
    let devices = apply(s, &actions, now)?;
    let message = match target {
        Target::Voucher(k, n) if devices.is_empty() => format!(
            "voucher {} revoked; no device was using it, and it will be refused if presented",
            name(k, n)
        ),
        _ => format!(
            "{} voucher(s) revoked ({}); {} device(s) lost that time",
            names.len(),
            names.join(", "),
            devices.len()
        ),
    };
    Ok(Done {
        message,
        vouchers: names,
        devices,
    })
}

/// The vouchers a device is on that still have time.
pub fn live_vouchers(s: &Sessions, mac: Mac, now: i64) -> Result<Vec<(KeyId, u64)>, AdminError> {
    let st = s.store.device_status(mac, now).map_err(internal)?;
    Ok(st
        .vouchers
        .iter()
        .filter(|v| !v.revoked && v.ends_at > now)
        .filter_map(|v| KeyId::from_hex(&v.key_id).map(|k| (k, v.serial)))
        .collect())
}

/// Applies the store's decisions to the firewall; returns the devices concerned.
fn apply(
    s: &mut Sessions,
    actions: &[crate::policy::FirewallAction],
    now: i64,
) -> Result<Vec<Mac>, AdminError> {
    s.apply(actions, now).map_err(internal)?;
    let set: BTreeSet<Mac> = actions.iter().map(|a| a.mac()).collect();
    Ok(set.into_iter().collect())
}

fn kick(s: &mut Sessions, mac: Mac, now: i64) -> Result<Done, AdminError> {
    kick_from(s, mac, None, "", now)
}

/// `kick`, off voucher `only` alone if given, with `note` (who asked; empty for the admin)
/// appended to the events.
pub fn kick_from(
    s: &mut Sessions,
    mac: Mac,
    only: Option<(KeyId, u64)>,
    note: &str,
    now: i64,
) -> Result<Done, AdminError> {
    let mut live = live_vouchers(s, mac, now)?;
    if let Some(v) = only {
        live.retain(|x| *x == v);
    }
    if live.is_empty() {
        return Err(AdminError::Refused(format!(
            "{mac} is not on any voucher with time left; nothing to free"
        )));
    }
    // Its traffic since the last save counts to its vouchers (and its RADIUS Stop): save it
    // while the device is still on them.
    s.read_usage(now);
    if let Err(e) = s.save_usage(now) {
        eprintln!("wifiposd: cannot save the traffic counters: {e}");
    }
    let mut actions = Vec::new();
    for &(k, n) in &live {
        actions.extend(
            s.store
                .kick_noting(k, n, mac, note, now)
                .map_err(internal)?,
        );
    }
    apply(s, &actions, now)?;
    let names: Vec<String> = live.iter().map(|&(k, n)| name(k, n)).collect();
    Ok(Done {
        message: format!(
            "{mac} taken off {}; its slot is free and it is back at the portal",
            names.join(", ")
        ),
        vouchers: names,
        devices: vec![mac],
    })
}

fn extend(s: &mut Sessions, (k, n): (KeyId, u64), secs: u64, now: i64) -> Result<Done, AdminError> {
    let v = name(k, n);
    match s.store.voucher(k, n).map_err(internal)? {
        None => {
            return Err(AdminError::Refused(format!(
                "voucher {v} has not been used here yet; it starts when a customer redeems it"
            )))
        }
        Some(x) if x.revoked_at.is_some() => {
            return Err(AdminError::Refused(format!(
                "voucher {v} is revoked; a revoked voucher cannot be extended"
            )))
        }
        Some(x) if x.ends_at.is_none() => {
            return Err(AdminError::Refused(format!(
                "voucher {v} has not been used here yet; it starts when a customer redeems it"
            )))
        }
        Some(_) => {}
    }
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let Some(actions) = s.store.extend(k, n, secs, now).map_err(internal)? else {
        return Err(AdminError::Refused(format!(
            "voucher {v} cannot be extended"
        )));
    };
    let devices = apply(s, &actions, now)?;
    let ends = s
        .store
        .voucher(k, n)
        .map_err(internal)?
        .and_then(|x| x.ends_at)
        .unwrap_or(now);
    Ok(Done {
        message: format!(
            "voucher {v} extended by {}: it now ends {} ({} left); {} device(s) updated",
            duration::format(secs as u64),
            duration::utc_date(ends),
            duration::format((ends - now).max(0) as u64),
            devices.len()
        ),
        vouchers: vec![v],
        devices,
    })
}

/// Sets a used, unrevoked voucher's end to `ends_at` (earlier or later: a RADIUS server's
/// Session-Timeout), through the same path as `extend`; `why` goes in the event.
pub fn set_end(
    s: &mut Sessions,
    (k, n): (KeyId, u64),
    ends_at: i64,
    why: &str,
    now: i64,
) -> Result<Done, AdminError> {
    let v = name(k, n);
    let Some(actions) = s.store.set_end(k, n, ends_at, why, now).map_err(internal)? else {
        return Err(AdminError::Refused(format!(
            "voucher {v} is not in use here or is revoked"
        )));
    };
    let devices = apply(s, &actions, now)?;
    Ok(Done {
        message: format!(
            "voucher {v} now ends {} ({} left); {} device(s) updated",
            duration::utc_date(ends_at),
            duration::format((ends_at - now).max(0) as u64),
            devices.len()
        ),
        vouchers: vec![v],
        devices,
    })
}

fn set_rule(
    s: &mut Sessions,
    mac: Mac,
    rule: RuleName,
    on: bool,
    now: i64,
) -> Result<Done, AdminError> {
    let current = s.store.device_status(mac, now).map_err(internal)?.rule;
    let want = MacRule::from(rule);
    let (word, option, in_config) = match rule {
        RuleName::Trusted => ("trusted", "trusted_mac", s.cfg.trusted_macs.contains(&mac)),
        RuleName::Blocked => ("blocked", "blocked_mac", s.cfg.blocked_macs.contains(&mac)),
    };
    let new = match (on, current) {
        (true, Some(r)) if r == want => {
            return Err(AdminError::Refused(format!("{mac} is already {word}")))
        }
        (true, _) => Some(want),
        (false, Some(r)) if r == want => None,
        (false, _) if in_config => {
            return Err(AdminError::Refused(format!(
                "{mac} is {word} in the config (`list {option}`); remove it there and reload"
            )))
        }
        (false, _) => return Err(AdminError::Refused(format!("{mac} is not {word}"))),
    };
    let change = s.store.set_rule(mac, new, "admin", now).map_err(internal)?;
    sessions::apply_rules(s).map_err(internal)?;
    if let Some(a) = change.session {
        s.apply(&[a], now).map_err(internal)?;
    }
    if rule == RuleName::Trusted && !on && s.store.access(mac, now).map_err(internal)?.is_none() {
        // Back at the portal: its open connections end as with any other end of access.
        s.end_connections(&[mac], "no longer trusted");
    }
    let message = match (rule, on) {
        (RuleName::Trusted, true) => format!("{mac} is trusted: online without a voucher"),
        (RuleName::Trusted, false) => format!("{mac} is no longer trusted"),
        (RuleName::Blocked, true) => format!("{mac} is blocked: refused everything"),
        (RuleName::Blocked, false) => format!("{mac} is no longer blocked"),
    };
    Ok(Done {
        message,
        vouchers: Vec::new(),
        devices: vec![mac],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json() {
        let r = Request::Rule {
            mac: "02:00:00:00:00:01".into(),
            rule: RuleName::Blocked,
            on: true,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"cmd":"rule","mac":"02:00:00:00:00:01","rule":"blocked","on":true}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let e = AdminError::Refused("no".into());
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"kind":"refused","message":"no"}"#);
    }
}
