//! Who opened portal connections, in the kernel's words: the input chain records
//! `ip saddr . ether saddr` of every packet to the portal in the dynamic sets
//! `portal4`/`portal6` (see [`super::ruleset::PORTAL4`]); this module reads them back over
//! netlink. A forged ARP or NDP entry changes the neighbour table, not what the packets
//! carried, so the portal checks the neighbour table's answer against these sets.
//!
//! Owns: the element key layout and the query (a dump of one set for the MACs behind one
//! address). Knows nothing of HTTP or vouchers.

use std::net::IpAddr;

use super::netlink::{dump_elems, SetObj};
use super::ruleset::{SetSpec, PORTAL4, PORTAL6};
use super::{FirewallError, Mac};

/// The set an address's connections are recorded in, and the key prefix for `ip`.
fn set_and_prefix(ip: IpAddr) -> (&'static SetSpec, Vec<u8>) {
    match ip {
        IpAddr::V4(a) => (&PORTAL4, a.octets().to_vec()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (&PORTAL4, v4.octets().to_vec()),
            None => (&PORTAL6, a.octets().to_vec()),
        },
    }
}

/// The whole element key: prefix, MAC, two bytes of padding.
pub fn source_key(ip: IpAddr, mac: Mac) -> Vec<u8> {
    let mut key = set_and_prefix(ip).1;
    key.extend_from_slice(&mac.0);
    key.extend_from_slice(&[0, 0]);
    key
}

/// The MAC in `key` if the key is for `prefix`.
fn mac_in(key: &[u8], prefix: &[u8]) -> Option<Mac> {
    let rest = key.strip_prefix(prefix)?;
    let m: [u8; 6] = rest.get(..6)?.try_into().ok()?;
    Some(Mac(m))
}

/// What the record holds for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The MACs that sent to the portal from the address lately, sorted.
    pub senders: Vec<Mac>,
    /// Elements in the whole set (of at most [`super::ruleset::SOURCE_SIZE`]).
    pub total: usize,
}

impl Seen {
    /// Nine tenths full or more: new senders may have found no room.
    pub fn nearly_full(&self) -> bool {
        self.total >= super::ruleset::SOURCE_SIZE as usize / 10 * 9
    }
}

/// Every MAC the kernel saw send to the portal from `ip` in the last
/// [`super::ruleset::SOURCE_TIMEOUT_S`] seconds (a dump of one set, at most
/// [`super::ruleset::SOURCE_SIZE`] elements).
pub fn openers(ip: IpAddr) -> Result<Seen, FirewallError> {
    let (spec, prefix) = set_and_prefix(ip);
    let set = SetObj::new(spec)?;
    let mut out = Vec::new();
    let mut total = 0;
    dump_elems("list who opened portal connections", &set, |key, _| {
        total += 1;
        if let Some(m) = key.and_then(|k| mac_in(k, &prefix)) {
            out.push(m);
        }
    })?;
    out.sort();
    out.dedup();
    Ok(Seen {
        senders: out,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_register_layout_and_decode_back() {
        let m = Mac([2, 0, 0, 0, 0, 7]);
        let k = source_key("10.20.0.5".parse().unwrap(), m);
        assert_eq!(k, [10, 20, 0, 5, 2, 0, 0, 0, 0, 7, 0, 0]);
        let mapped = source_key("::ffff:10.20.0.5".parse().unwrap(), m);
        assert_eq!(mapped, k, "a mapped address is the IPv4 one");
        let k6 = source_key("fd00::5".parse().unwrap(), m);
        assert_eq!(k6.len(), 24);
        let (_, p) = set_and_prefix("10.20.0.5".parse().unwrap());
        assert_eq!(mac_in(&k, &p), Some(m));
        let (_, other) = set_and_prefix("10.20.0.6".parse().unwrap());
        assert_eq!(mac_in(&k, &other), None);
        assert_eq!(mac_in(&k[..9], &p), None);
    }
}
