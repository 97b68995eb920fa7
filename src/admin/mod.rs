//! Admin commands: what `wifiposd status|sessions|vouchers|revoke|kick|extend|trust|block|events`
//! ask of the running daemon, and the answers.
//!
//! Owns: the request and reply types (sent as JSON over the control socket), parsing of admin
//! arguments (MAC, voucher, key id, duration, time) with messages for people, and carrying out
//! each command against the store and the firewall. Not: the socket (`control`) nor printing
//! (the `wifiposd` binary).

pub mod text;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::config;
use crate::daemon::{self, Sessions};
use crate::firewall::Health;
use crate::keys::KeyId;
use crate::mac::Mac;
use crate::policy::MacRule;
use crate::store::{Session, Totals, VoucherSummary};
use crate::{duration, voucher};

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

/// What a revocation or an extension is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Mac(Mac),
    Voucher(KeyId, u64),
    /// Every voucher of a till key.
    Key(KeyId),
}

/// Parses what `revoke` takes: a MAC, `KEYID:SERIAL`, a voucher's code or link, or a key id.
pub fn parse_target(s: &str) -> Result<Target, AdminError> {
    let s = s.trim();
    if let Ok(mac) = s.parse::<Mac>() {
        return Ok(Target::Mac(mac));
    }
    if let Some(key) = KeyId::from_hex(s) {
        return Ok(Target::Key(key));
    }
    parse_voucher(s)
        .map(|(k, n)| Target::Voucher(k, n))
        .map_err(|_| {
            AdminError::BadRequest(format!(
                "'{}' is not a MAC address (aa:bb:cc:dd:ee:ff), a voucher (KEYID:SERIAL as \
                 `wifipos inspect` prints it, or the voucher's code or link) or a key id (8 hex \
                 digits)",
                short(s)
            ))
        })
}

/// A voucher as `KEYID:SERIAL` or its code or link (the signature is not checked: a voucher
/// from a key no longer trusted can still be named).
pub fn parse_voucher(s: &str) -> Result<(KeyId, u64), AdminError> {
    let s = s.trim();
    if let Some(r) = config::parse_revoked(s) {
        return Ok((r.key_id, r.serial));
    }
    match voucher::decode(voucher::token_from_input(s)) {
        Ok(u) => Ok((u.voucher.key_id, u.voucher.serial)),
        Err(why) => Err(AdminError::BadRequest(format!(
            "'{}' is not a voucher: expected KEYID:SERIAL as `wifipos inspect` prints it, or \
             the voucher's code or link ({why})",
            short(s)
        ))),
    }
}

pub fn parse_mac(s: &str) -> Result<Mac, AdminError> {
    s.parse::<Mac>()
        .map_err(|e| AdminError::BadRequest(e.to_string()))
}

/// A positive duration such as `30m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<u64, AdminError> {
    duration::parse(s).map_err(|e| AdminError::BadRequest(e.to_string()))
}

/// `--since`: a duration ago (`2h`), a UTC date or date and time (`2026-11-25`,
/// `2026-11-25T14:30`), or Unix seconds.
pub fn parse_since(s: &str, now: i64) -> Result<i64, AdminError> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad_since(s));
    }
    if let Some(t) = parse_utc(s) {
        return Ok(t);
    }
    match duration::parse(s) {
        Ok(secs) => Ok(now.saturating_sub(secs as i64)),
        Err(_) => Err(bad_since(s)),
    }
}

fn bad_since(s: &str) -> AdminError {
    AdminError::BadRequest(format!(
        "'{}' is not a time: expected a duration ago (such as 2h or 7d), a UTC date (2026-11-25 \
         or 2026-11-25T14:30) or Unix seconds",
        short(s)
    ))
}

/// `YYYY-MM-DD`, optionally with `THH:MM[:SS]` (or a space), read as UTC.
fn parse_utc(s: &str) -> Option<i64> {
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1970..=9999).contains(&y) || !(1..=12).contains(&m) {
        return None;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        28 + i64::from(leap),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=month_days[(m - 1) as usize]).contains(&day) {
        return None;
    }
    let mut secs = 0;
    if let Some(t) = time {
        let parts: Vec<&str> = t.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let n: Vec<i64> = parts
            .iter()
            .map(|p| (p.len() == 2).then(|| p.parse().ok()).flatten())
            .collect::<Option<_>>()?;
        if n[0] > 23 || n[1] > 59 || n.get(2).is_some_and(|s| *s > 59) {
            return None;
        }
        secs = n[0] * 3600 + n[1] * 60 + n.get(2).copied().unwrap_or(0);
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + secs)
}

/// At most 60 characters of what someone typed, for messages.
fn short(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
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
        Request::Status => json(status(s, uptime_s, now)),
        Request::Sessions => json(sessions(s, now)),
        Request::Vouchers { limit } => json(
            s.store
                .recent_vouchers((*limit).clamp(1, 10_000))
                .map(|vouchers| Vouchers { now, vouchers })
                .map_err(internal),
        ),
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
    let (trusted, blocked) = daemon::mac_sets(&s.cfg, &s.store.rules().map_err(internal)?);
    let cfg = &s.cfg;
    Ok(Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        now,
        clock_trusted: now >= daemon::CLOCK_SANE_AFTER,
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
            actions.extend(s.store.revoke(k, n, now).map_err(internal)?);
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
fn live_vouchers(s: &Sessions, mac: Mac, now: i64) -> Result<Vec<(KeyId, u64)>, AdminError> {
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
    let live = live_vouchers(s, mac, now)?;
    if live.is_empty() {
        return Err(AdminError::Refused(format!(
            "{mac} is not on any voucher with time left; nothing to free"
        )));
    }
    let mut actions = Vec::new();
    for &(k, n) in &live {
        actions.extend(s.store.kick(k, n, mac, now).map_err(internal)?);
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
    daemon::apply_rules(s).map_err(internal)?;
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
    fn targets_are_told_apart() {
        assert_eq!(
            parse_target("02:00:00:00:00:10"),
            Ok(Target::Mac("02:00:00:00:00:10".parse().unwrap()))
        );
        let k = KeyId::from_hex("1a2b3c4d").unwrap();
        assert_eq!(parse_target("1a2b3c4d:42"), Ok(Target::Voucher(k, 42)));
        assert_eq!(parse_target(" 1a2b3c4d "), Ok(Target::Key(k)));
        for bad in ["", "xyz", "1a2b3c4d:", "1a2b3c4d:-1", "02:00:00:00:00"] {
            let e = parse_target(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("is not a MAC address"), "{e}");
        }
    }

    #[test]
    fn times_for_since() {
        assert_eq!(parse_since("2h", 10_000), Ok(2_800));
        assert_eq!(parse_since("1767225600", 0), Ok(1_767_225_600));
        assert_eq!(parse_since("2026-01-01", 0), Ok(1_767_225_600));
        assert_eq!(parse_since("2026-01-01T01:02:03", 0), Ok(1_767_229_323));
        assert_eq!(parse_since("2024-02-29 00:00", 0), Ok(1_709_164_800));
        for bad in [
            "",
            "2026-02-30",
            "2023-02-29",
            "2026-13-01",
            "2026-01-01T24:00",
            "soon",
        ] {
            assert!(parse_since(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
    }

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
