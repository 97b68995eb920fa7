//! Admin arguments as people type them: a MAC, a voucher (`KEYID:SERIAL`, its code or its
//! link), a key id, a duration, a time for `--since` — each refused with a message that says
//! what was expected.
//!
//! Owns: parsing only (pure; no store, no sessions). Not: carrying out the commands
//! (`admin`). Imports: `config` (revocation entries), `voucher`, `duration`, `keys`, `mac`.

use super::AdminError;
use crate::keys::KeyId;
use crate::mac::Mac;
use crate::{config, duration, voucher};

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
}
