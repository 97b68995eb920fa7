//! Data sizes and speeds for the till's command line: `500MB`, `1.5GB`, `200MiB`, `2Mbit`,
//! `512kbit`, mapped to the units of voucher v2's limits (MiB and kbit/s, `VOUCHER.md`).
//!
//! Owns: parsing such text and the range checks with messages a cafe owner understands. Pure.

use crate::voucher::ext::{MAX_DATA_CAP_MIB, MAX_RATE_KBIT, MIN_DATA_CAP_MIB, MIN_RATE_KBIT};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("'{0}' is not a data amount: use a number and a unit, like 500MB, 1.5GB or 200MiB (units: MB, GB, MiB, GiB)")]
    SizeSyntax(String),
    #[error("'{0}' is not a speed: use a number and a unit, like 512kbit or 2Mbit (units: kbit, Mbit, Gbit, per second)")]
    RateSyntax(String),
    #[error("'{0}' is {1} MiB; a data cap is 1 MiB to 4 TiB (4 194 304 MiB)")]
    SizeRange(String, u64),
    #[error("'{0}' is {1} kbit/s; a speed limit is 64 kbit/s to 10 Gbit/s")]
    RateRange(String, u64),
}

/// Splits `1.5GB` into the number 1.5 and the unit `GB`. At most 6 decimals; no sign, no
/// exponent.
fn split(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || int.len() > 12 || frac.len() > 6 || frac.contains('.') {
        return None;
    }
    if !num.bytes().all(|c| c.is_ascii_digit() || c == b'.') || num.ends_with('.') {
        return None;
    }
    Some((num.parse().ok()?, unit.trim()))
}

/// A data amount in MiB (2^20 bytes), rounded up so the guest never gets less than was sold:
/// `MB`/`GB` are 10^6/10^9 bytes (500MB = 477 MiB), `MiB`/`GiB` 2^20/2^30 bytes.
pub fn parse_data_cap_mib(text: &str) -> Result<u32, UnitError> {
    let syntax = || UnitError::SizeSyntax(text.trim().to_owned());
    let (n, unit) = split(text).ok_or_else(syntax)?;
    let bytes = match unit {
        "MB" | "mb" => n * 1e6,
        "GB" | "gb" => n * 1e9,
        "TB" | "tb" => n * 1e12,
        "MiB" | "mib" | "MIB" => n * 1_048_576.0,
        "GiB" | "gib" | "GIB" => n * 1_073_741_824.0,
        "TiB" | "tib" | "TIB" => n * 1_099_511_627_776.0,
        _ => return Err(syntax()),
    };
    let mib = (bytes / 1_048_576.0 - 1e-9).ceil().max(0.0) as u64;
    if !(u64::from(MIN_DATA_CAP_MIB)..=u64::from(MAX_DATA_CAP_MIB)).contains(&mib) {
        return Err(UnitError::SizeRange(text.trim().to_owned(), mib));
    }
    Ok(mib as u32)
}

/// A speed in kbit/s (1 000 bit/s), rounded up: `kbit`, `Mbit`, `Gbit`, each optionally
/// followed by `/s`, or `kbps`, `Mbps`, `Gbps`.
pub fn parse_rate_kbit(text: &str) -> Result<u32, UnitError> {
    let syntax = || UnitError::RateSyntax(text.trim().to_owned());
    let (n, unit) = split(text).ok_or_else(syntax)?;
    let unit = unit.strip_suffix("/s").unwrap_or(unit);
    let kbit = match unit.to_ascii_lowercase().as_str() {
        "kbit" | "kbps" => n,
        "mbit" | "mbps" => n * 1e3,
        "gbit" | "gbps" => n * 1e6,
        _ => return Err(syntax()),
    };
    let kbit = (kbit - 1e-9).ceil().max(0.0) as u64;
    if !(u64::from(MIN_RATE_KBIT)..=u64::from(MAX_RATE_KBIT)).contains(&kbit) {
        return Err(UnitError::RateRange(text.trim().to_owned(), kbit));
    }
    Ok(kbit as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_data_cap_mib("500MiB"), Ok(500));
        assert_eq!(parse_data_cap_mib("500MB"), Ok(477));
        assert_eq!(parse_data_cap_mib(" 1GB "), Ok(954));
        assert_eq!(parse_data_cap_mib("1.5GiB"), Ok(1536));
        assert_eq!(parse_data_cap_mib("4TiB"), Ok(4_194_304));
        assert!(matches!(
            parse_data_cap_mib("5TiB"),
            Err(UnitError::SizeRange(_, 5_242_880))
        ));
        assert!(matches!(
            parse_data_cap_mib("0MB"),
            Err(UnitError::SizeRange(_, 0))
        ));
        for bad in [
            "500", "MB", "5 00MB", "-1MB", "1.MB", "2Mbit", "1e3MB", "1..2GB",
        ] {
            assert!(
                matches!(parse_data_cap_mib(bad), Err(UnitError::SizeSyntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate_kbit("2Mbit"), Ok(2000));
        assert_eq!(parse_rate_kbit("512kbit"), Ok(512));
        assert_eq!(parse_rate_kbit("0.5Mbit/s"), Ok(500));
        assert_eq!(parse_rate_kbit("10Gbit"), Ok(10_000_000));
        assert_eq!(parse_rate_kbit("8 Mbps"), Ok(8000));
        assert!(matches!(
            parse_rate_kbit("63kbit"),
            Err(UnitError::RateRange(_, 63))
        ));
        assert!(matches!(
            parse_rate_kbit("11Gbit"),
            Err(UnitError::RateRange(_, 11_000_000))
        ));
        for bad in ["2", "2MB", "fast", "2 M bit"] {
            assert!(
                matches!(parse_rate_kbit(bad), Err(UnitError::RateSyntax(_))),
                "{bad}"
            );
        }
    }
}

/// Bytes for people: `812 B`, `1.4 MB`, `2.31 GB` (powers of 1 000, as phones show them).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1_000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1_000.0;
    let mut i = 0;
    while v >= 1_000.0 && i + 1 < UNITS.len() {
        v /= 1_000.0;
        i += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

#[cfg(test)]
mod human_tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_as_phones_show_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_000), "1.00 kB");
        assert_eq!(human_bytes(1_400_000), "1.40 MB");
        assert_eq!(human_bytes(52_428_800), "52.4 MB");
        assert_eq!(human_bytes(2_310_000_000), "2.31 GB");
        assert_eq!(human_bytes(u64::MAX), "18446744 TB");
    }
}
