//! Human durations for the command lines and the pages: `90m`, `2h`, `1d`, `1h30m`, `2w`, `1y`
//! (365 days).
//!
//! Owns: parsing such text into seconds, formatting seconds and UTC dates back for people. Pure.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("'{0}' is not a duration: use a number and a unit, like 90m, 2h, 1d or 1h30m (units: s, m, h, d, w, y)")]
    Syntax(String),
    #[error("'{0}' is zero; a duration must be positive")]
    Zero(String),
    #[error("'{0}' is too long")]
    TooLong(String),
}

/// Parses `90m`, `2h`, `1d`, `1h30m`, `45s`, `2w` into seconds. A bare number is refused: an
/// operator typing `2` meant hours or minutes, and guessing wrong sells the wrong thing.
pub fn parse(text: &str) -> Result<u64, DurationError> {
    let s = text.trim();
    let syntax = || DurationError::Syntax(s.to_owned());
    if s.is_empty() {
        return Err(syntax());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            'y' => 31_536_000,
            _ => return Err(syntax()),
        };
        if digits.is_empty() || digits.len() > 12 {
            return Err(if digits.is_empty() {
                syntax()
            } else {
                DurationError::TooLong(s.to_owned())
            });
        }
        let n: u64 = digits.parse().map_err(|_| syntax())?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| DurationError::TooLong(s.to_owned()))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(syntax());
    }
    if total == 0 {
        return Err(DurationError::Zero(s.to_owned()));
    }
    Ok(total)
}

/// Formats seconds for people: `2 h`, `1 h 30 min`, `3 d 4 h`, `45 s`.
pub fn format(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "min"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n} {u}"))
        .collect();
    if parts.is_empty() {
        "0 s".into()
    } else {
        parts.join(" ")
    }
}

/// `YYYY-MM-DD HH:MM UTC` for Unix seconds, without a date library (civil-from-days, Howard
/// Hinnant's algorithm).
pub fn utc_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse("90m"), Ok(5400));
        assert_eq!(parse("2h"), Ok(7200));
        assert_eq!(parse("1d"), Ok(86_400));
        assert_eq!(parse("1h30m"), Ok(5400));
        assert_eq!(parse(" 2w "), Ok(1_209_600));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "0",
            "2",
            "-5m",
            "5x",
            "h",
            "1.5h",
            "5m3",
            "99999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("0m"), Err(DurationError::Zero("0m".into())));
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(1_764_547_200), "2025-12-01 00:00 UTC");
        assert_eq!(utc_date(951_825_600), "2000-02-29 12:00 UTC");
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format(7200), "2 h");
        assert_eq!(format(5400), "1 h 30 min");
        assert_eq!(format(93_600), "1 d 2 h");
        assert_eq!(format(0), "0 s");
    }
}
