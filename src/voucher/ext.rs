//! The extension block of voucher version 2 (`VOUCHER.md`, "Version 2"): the typed limits
//! (data cap, download and upload speed) and any other entries, kept so that a decoded voucher
//! re-encodes to the exact bytes that were signed.
//!
//! Owns: parsing the block's entries (structure only: lengths, order, repeats), encoding them,
//! and the range and "unsupported limit" checks of their values. Pure: no I/O.

use super::{Malformed, OutOfRange, Rejection};

/// Longest extension block.
pub const MAX_EXT_LEN: usize = 64;
/// Entry types with a meaning this implementation knows.
pub const DATA_CAP_MIB: u8 = 0x01;
pub const DOWN_KBIT: u8 = 0x02;
pub const UP_KBIT: u8 = 0x03;
/// Types from here on are informational: a router that does not know them ignores them.
pub const FIRST_INFORMATIONAL: u8 = 0x80;
/// Range of `data_cap_mib`: 1 MiB to 4 TiB.
pub const MIN_DATA_CAP_MIB: u32 = 1;
pub const MAX_DATA_CAP_MIB: u32 = 4_194_304;
/// Range of `down_kbit` and `up_kbit`: 64 kbit/s to 10 Gbit/s.
pub const MIN_RATE_KBIT: u32 = 64;
pub const MAX_RATE_KBIT: u32 = 10_000_000;

/// The limits a v2 voucher carries; `None` = no such limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Traffic in MiB (download + upload) that all devices of the voucher may use together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_cap_mib: Option<u32>,
    /// Each device's download speed limit, kbit/s (1 000 bit/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_kbit: Option<u32>,
    /// Each device's upload speed limit, kbit/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_kbit: Option<u32>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.data_cap_mib.is_some() || self.down_kbit.is_some() || self.up_kbit.is_some()
    }

    /// The type of the first limit set, if any (for "unsupported limit" refusals).
    pub fn first_type(&self) -> Option<u8> {
        [
            (DATA_CAP_MIB, self.data_cap_mib),
            (DOWN_KBIT, self.down_kbit),
            (UP_KBIT, self.up_kbit),
        ]
        .into_iter()
        .find_map(|(t, v)| v.map(|_| t))
    }
}

/// One entry of a type this implementation does not know (0x04 … 0xff), kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OtherEntry {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// The extension block of a v2 voucher.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ext {
    pub limits: Limits,
    /// Entries of unknown types, in strictly ascending order of type, all ≥ 0x04.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<OtherEntry>,
}

impl Ext {
    /// An extension block holding only these limits.
    pub fn with_limits(limits: Limits) -> Self {
        Ext {
            limits,
            other: Vec::new(),
        }
    }

    /// The entries, in ascending order of type.
    fn entries(&self) -> Vec<(u8, Vec<u8>)> {
        let l = &self.limits;
        let known = [
            (DATA_CAP_MIB, l.data_cap_mib),
            (DOWN_KBIT, l.down_kbit),
            (UP_KBIT, l.up_kbit),
        ];
        let mut e: Vec<(u8, Vec<u8>)> = known
            .into_iter()
            .filter_map(|(t, v)| v.map(|v| (t, v.to_be_bytes().to_vec())))
            .collect();
        e.extend(self.other.iter().map(|o| (o.kind, o.value.clone())));
        e
    }

    /// The block's bytes (without the `ext_len` byte). Values longer than 255 bytes are
    /// refused by [`Ext::check`]; callers that build blocks call it first.
    pub fn block(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for (t, v) in self.entries() {
            b.push(t);
            b.push(v.len() as u8);
            b.extend_from_slice(&v);
        }
        b
    }

    /// Checks the block against VOUCHER.md: size, order, value ranges, and that every entry
    /// below 0x80 is one this implementation knows.
    pub fn check(&self) -> Result<(), Rejection> {
        // Unknown types start above the known ones and ascend strictly.
        let mut prev = UP_KBIT;
        for o in &self.other {
            if o.kind <= prev {
                return Err(Malformed::LimitOrder(o.kind).into());
            }
            if o.value.len() > usize::from(u8::MAX) {
                return Err(Malformed::ExtTooLong(o.value.len().min(255) as u8).into());
            }
            prev = o.kind;
        }
        let len = self.block().len();
        if len > MAX_EXT_LEN {
            return Err(Malformed::ExtTooLong(len.min(255) as u8).into());
        }
        let l = &self.limits;
        if let Some(v) = l.data_cap_mib {
            if !(MIN_DATA_CAP_MIB..=MAX_DATA_CAP_MIB).contains(&v) {
                return Err(Rejection::OutOfRange(OutOfRange::DataCap(v)));
            }
        }
        for (v, make) in [
            (l.down_kbit, OutOfRange::DownRate as fn(u32) -> OutOfRange),
            (l.up_kbit, OutOfRange::UpRate),
        ] {
            if let Some(v) = v {
                if !(MIN_RATE_KBIT..=MAX_RATE_KBIT).contains(&v) {
                    return Err(Rejection::OutOfRange(make(v)));
                }
            }
        }
        if let Some(o) = self.other.iter().find(|o| o.kind < FIRST_INFORMATIONAL) {
            return Err(Rejection::UnsupportedLimit { kind: o.kind });
        }
        Ok(())
    }
}

/// Parses the block's entries: each `type`, `len`, `value`, filling the block exactly, each type
/// once and in strictly ascending order; a known type must have length 4. Values are not
/// range-checked here (that is [`Ext::check`], after the signature).
pub fn parse(block: &[u8]) -> Result<Ext, Malformed> {
    if block.len() > MAX_EXT_LEN {
        return Err(Malformed::ExtTooLong(block.len().min(255) as u8));
    }
    let mut ext = Ext::default();
    let mut prev: Option<u8> = None;
    let mut at = 0;
    while at < block.len() {
        if block.len() - at < 2 {
            return Err(Malformed::ExtCutShort);
        }
        let (kind, len) = (block[at], usize::from(block[at + 1]));
        at += 2;
        if block.len() - at < len {
            return Err(Malformed::ExtCutShort);
        }
        let value = &block[at..at + len];
        at += len;
        if kind == 0 {
            return Err(Malformed::LimitTypeZero);
        }
        match prev {
            Some(p) if p == kind => return Err(Malformed::LimitRepeated(kind)),
            Some(p) if p > kind => return Err(Malformed::LimitOrder(kind)),
            _ => {}
        }
        prev = Some(kind);
        if (DATA_CAP_MIB..=UP_KBIT).contains(&kind) {
            let v: [u8; 4] = value.try_into().map_err(|_| Malformed::LimitLength {
                kind,
                len: len as u8,
            })?;
            let v = Some(u32::from_be_bytes(v));
            match kind {
                DATA_CAP_MIB => ext.limits.data_cap_mib = v,
                DOWN_KBIT => ext.limits.down_kbit = v,
                _ => ext.limits.up_kbit = v,
            }
        } else {
            ext.other.push(OtherEntry {
                kind,
                value: value.to_vec(),
            });
        }
    }
    Ok(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_keep_unknown_ones() {
        let block = [1, 4, 0, 0, 1, 244, 3, 4, 0, 0, 1, 244, 0x80, 2, b'h', b'i'];
        let e = parse(&block).unwrap();
        assert_eq!(e.limits.data_cap_mib, Some(500));
        assert_eq!(e.limits.down_kbit, None);
        assert_eq!(e.limits.up_kbit, Some(500));
        assert_eq!(e.block(), block);
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn structure_errors() {
        assert_eq!(parse(&[1]), Err(Malformed::ExtCutShort));
        assert_eq!(parse(&[1, 4, 0]), Err(Malformed::ExtCutShort));
        assert_eq!(
            parse(&[2, 4, 0, 0, 1, 0, 1, 4, 0, 0, 1, 0]),
            Err(Malformed::LimitOrder(1))
        );
        assert_eq!(
            parse(&[0x90, 0, 0x90, 0]),
            Err(Malformed::LimitRepeated(0x90))
        );
        assert_eq!(
            parse(&[2, 2, 0, 64]),
            Err(Malformed::LimitLength { kind: 2, len: 2 })
        );
        assert_eq!(parse(&[0x80; 65]), Err(Malformed::ExtTooLong(65)));
        // Found by the fuzzer: a type 0x00 entry sorted before the known ones would not
        // re-encode to the signed bytes.
        assert_eq!(
            parse(&[0, 0, 1, 4, 0, 0, 2, 88]),
            Err(Malformed::LimitTypeZero)
        );
    }

    #[test]
    fn enforceable_unknown_types_are_unsupported_informational_ones_are_not() {
        let e = parse(&[0x04, 0]).unwrap();
        assert_eq!(e.check(), Err(Rejection::UnsupportedLimit { kind: 4 }));
        let e = parse(&[0x7f, 1, 9]).unwrap();
        assert_eq!(e.check(), Err(Rejection::UnsupportedLimit { kind: 0x7f }));
        assert_eq!(parse(&[0x80, 0]).unwrap().check(), Ok(()));
    }

    #[test]
    fn ranges() {
        let mut l = Limits {
            data_cap_mib: Some(0),
            ..Limits::default()
        };
        assert!(matches!(
            Ext::with_limits(l).check(),
            Err(Rejection::OutOfRange(OutOfRange::DataCap(0)))
        ));
        l.data_cap_mib = Some(MAX_DATA_CAP_MIB);
        l.down_kbit = Some(63);
        assert!(matches!(
            Ext::with_limits(l).check(),
            Err(Rejection::OutOfRange(OutOfRange::DownRate(63)))
        ));
        l.down_kbit = Some(64);
        l.up_kbit = Some(MAX_RATE_KBIT + 1);
        assert!(matches!(
            Ext::with_limits(l).check(),
            Err(Rejection::OutOfRange(OutOfRange::UpRate(_)))
        ));
        l.up_kbit = Some(MAX_RATE_KBIT);
        assert_eq!(Ext::with_limits(l).check(), Ok(()));
        assert_eq!(l.first_type(), Some(DATA_CAP_MIB));
    }
}
