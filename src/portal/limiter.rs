//! The redemption limiter: how many vouchers a guest may try, without letting anyone lock out
//! a paying customer.
//!
//! Owns: token buckets per *source* (an IPv4 address, an IPv6 /64) for inputs that are not a
//! genuine voucher, one shared bucket for all such inputs (so many addresses do not multiply
//! the work), and one bucket per genuine voucher (replaying one bought voucher with invented
//! devices is bounded too). MACs are not keys: a guest can invent them at will. The map holds
//! at most [`MAX_TRACKED`] keys and evicts the least recently used ones, so a flood of new
//! keys costs a fixed amount of memory and only ever frees the attacker's own old buckets.
//! A fresh genuine voucher always finds a full bucket: a real customer is never refused here.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::keys::KeyId;
use crate::mac::Mac;

/// Keys kept at most; when full, the least recently used eighth is dropped.
pub const MAX_TRACKED: usize = 4096;

/// What an attempt is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// Inputs that are not a genuine voucher, by where they came from (IPv4 address or IPv6
    /// /64 prefix, see [`source_key`]).
    Source(IpAddr),
    /// Inputs without a known source address (in-process use): by device.
    Device(Mac),
    /// A genuine voucher (its signature verifies), by key id and serial.
    Voucher(KeyId, u64),
}

/// An IPv4 address as it is; an IPv6 address cut to its /64 (one device may hold many
/// addresses in its prefix).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
    used: u64,
}

pub struct Limiter {
    per_minute: f64,
    global_per_minute: f64,
    buckets: HashMap<Key, Bucket>,
    global: (f64, i64),
    tick: u64,
    /// Attempts refused by the limiter since the last [`Limiter::take_refused`].
    refused: u64,
}

impl Limiter {
    /// `per_minute` attempts per key; inputs that are not genuine vouchers share
    /// `global_per_minute` in all.
    pub fn new(per_minute: u32, global_per_minute: u32) -> Limiter {
        Limiter {
            per_minute: f64::from(per_minute.max(1)),
            global_per_minute: f64::from(global_per_minute.max(1)),
            buckets: HashMap::new(),
            global: (f64::from(global_per_minute.max(1)), i64::MIN),
            tick: 0,
            refused: 0,
        }
    }

    /// Charges one attempt to `key` (and, unless it is a genuine voucher, to the shared
    /// bucket); false if either is empty.
    pub fn allow(&mut self, key: Key, now: i64) -> bool {
        let ok = self.try_allow(key, now);
        if !ok {
            self.refused += 1;
        }
        ok
    }

    fn try_allow(&mut self, key: Key, now: i64) -> bool {
        let shared = !matches!(key, Key::Voucher(..));
        if shared {
            let (tokens, at) = &mut self.global;
            if *at == i64::MIN {
                *at = now;
            }
            *tokens = refill(*tokens, *at, now, self.global_per_minute);
            *at = now;
            if *tokens < 1.0 {
                return false;
            }
        }
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&key) {
            self.evict();
        }
        self.tick += 1;
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: self.per_minute,
            at: now,
            used: 0,
        });
        b.tokens = refill(b.tokens, b.at, now, self.per_minute);
        b.at = now;
        b.used = self.tick;
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        if shared {
            self.global.0 -= 1.0;
        }
        true
    }

    /// Drops the least recently used eighth of the keys.
    fn evict(&mut self) {
        let mut used: Vec<u64> = self.buckets.values().map(|b| b.used).collect();
        let nth = used.len() / 8;
        let (_, cut, _) = used.select_nth_unstable(nth);
        let cut = *cut;
        self.buckets.retain(|_, b| b.used > cut);
    }

    /// Keys held now (never more than [`MAX_TRACKED`]).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// How many attempts were refused since the last call, and resets the count.
    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }
}

fn refill(tokens: f64, at: i64, now: i64, per_minute: f64) -> f64 {
    (tokens + (now - at).max(0) as f64 * per_minute / 60.0).min(per_minute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> Key {
        Key::Source(IpAddr::V4(std::net::Ipv4Addr::from(0x0a14_0000 + i)))
    }

    #[test]
    fn a_source_gets_a_burst_then_a_refill() {
        let mut l = Limiter::new(3, 1000);
        assert!(l.allow(v4(1), 0) && l.allow(v4(1), 0) && l.allow(v4(1), 0));
        assert!(!l.allow(v4(1), 1));
        assert!(l.allow(v4(2), 1), "other sources unaffected");
        assert!(l.allow(v4(1), 21), "one attempt back after 20 s");
        assert_eq!(l.take_refused(), 1);
    }

    #[test]
    fn a_flood_of_new_keys_stays_bounded_and_a_fresh_voucher_passes() {
        let mut l = Limiter::new(10, 60);
        let mut passed = 0;
        for i in 0..100_000u32 {
            let mac = Mac([2, 0xaa, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]);
            if l.allow(Key::Device(mac), i64::from(i / 100)) {
                passed += 1;
            }
            if l.allow(v4(i), i64::from(i / 100)) {
                passed += 1;
            }
            assert!(l.tracked() <= MAX_TRACKED);
        }
        // 1000 s at 60 per minute shared, plus the first burst.
        assert!(passed <= 60 + 1000 + 1, "{passed}");
        assert!(l.allow(Key::Voucher(KeyId([1, 2, 3, 4]), 7), 1000));
    }

    #[test]
    fn replaying_one_voucher_is_bounded_per_voucher() {
        let mut l = Limiter::new(5, 60);
        let k = Key::Voucher(KeyId([1, 2, 3, 4]), 7);
        let n = (0..100).filter(|_| l.allow(k, 0)).count();
        assert_eq!(n, 5);
        assert!(l.allow(Key::Voucher(KeyId([1, 2, 3, 4]), 8), 0));
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let a: IpAddr = "fd20::1:2:3:4".parse().unwrap();
        let b: IpAddr = "fd20::9:9:9:9".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        let m: IpAddr = "::ffff:10.20.0.9".parse().unwrap();
        assert_eq!(source_key(m), "10.20.0.9".parse::<IpAddr>().unwrap());
    }
}
