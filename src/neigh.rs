//! Which device sent a portal connection: the kernel's neighbour tables (ARP for IPv4, NDP for
//! IPv6, one rtnetlink dump `RTM_GETNEIGH`) checked against the MAC the firewall recorded from
//! the connection's own packets ([`crate::firewall::sources`]).
//!
//! Owns: the [`Neighbours`] trait, the rule that decides between the two answers ([`judge`]),
//! the kernel implementation and a fixed one for `--dev`. Knows nothing of vouchers or HTTP.
//! A client the kernel did not see send to the portal gets no MAC, and so never gets access
//! (unless the whole table is gone: then nothing is enforced and the neighbour table decides);
//! a neighbour entry that names another device than the packets did (a forged ARP or NDP
//! message) is a [`Conflict`]: the request is refused and the conflict reported.

use std::net::{IpAddr, SocketAddr};

use crate::firewall::sources;
use crate::mac::Mac;

/// The neighbour table and the connection's packets name different devices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the neighbour table gives {ip} to {}, but its connection came from {}", show(.neighbour), list(.senders))]
pub struct Conflict {
    pub ip: IpAddr,
    /// The neighbour table's answer.
    pub neighbour: Option<Mac>,
    /// The MACs the kernel saw open portal connections from this address lately.
    pub senders: Vec<Mac>,
}

fn show(m: &Option<Mac>) -> String {
    m.map_or_else(|| "no device".to_owned(), |m| m.to_string())
}

/// At most four MACs, so that a log line stays short whatever guests invent.
fn list(m: &[Mac]) -> String {
    let mut s = m
        .iter()
        .take(4)
        .map(Mac::to_string)
        .collect::<Vec<_>>()
        .join(" and ");
    if m.len() > 4 {
        s.push_str(&format!(" and {} more", m.len() - 4));
    }
    s
}

pub trait Neighbours {
    /// The device that sent the connection from `peer`: `Ok(None)` when it cannot be told,
    /// `Err` when the neighbour table and the connection's packets disagree.
    fn mac_of(&mut self, peer: SocketAddr) -> Result<Option<Mac>, Conflict>;
}

/// Decides who sent a connection from `ip`, given the MACs the kernel saw open portal
/// connections from `ip` lately (`senders`): the one sender, if the neighbour table agrees or
/// has no entry; nobody if the kernel saw nobody (the record expired or is full); a
/// [`Conflict`] when the neighbour table names another device, or several devices opened
/// connections from the address (one of them forging it).
pub fn judge(
    ip: IpAddr,
    neighbour: Option<Mac>,
    senders: Vec<Mac>,
) -> Result<Option<Mac>, Conflict> {
    match (neighbour, senders.as_slice()) {
        (_, []) => Ok(None),
        (Some(n), [one]) if n == *one => Ok(Some(n)),
        (None, [one]) => Ok(Some(*one)),
        _ => Err(Conflict {
            ip,
            neighbour,
            senders,
        }),
    }
}

/// Every device is the same MAC: for `wifiposd serve --dev` on a laptop.
pub struct Fixed(pub Mac);

impl Neighbours for Fixed {
    fn mac_of(&mut self, _peer: SocketAddr) -> Result<Option<Mac>, Conflict> {
        Ok(Some(self.0))
    }
}

/// Where a [`Conflict`] is reported.
pub type Report = Box<dyn FnMut(&Conflict)>;

/// The kernel's neighbour table and the firewall's record of connection sources, as seen from
/// the daemon's network namespace; conflicts go to `on_conflict` (the daemon logs them).
#[derive(Default)]
pub struct Kernel {
    on_conflict: Option<Report>,
}

impl Kernel {
    /// A kernel lookup that hands each conflict to `report`.
    pub fn reporting(report: impl FnMut(&Conflict) + 'static) -> Kernel {
        Kernel {
            on_conflict: Some(Box::new(report)),
        }
    }
}

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// NUD_INCOMPLETE and NUD_FAILED: no usable link-layer address.
const NUD_UNUSABLE: u16 = 0x01 | 0x20;

impl Neighbours for Kernel {
    fn mac_of(&mut self, peer: SocketAddr) -> Result<Option<Mac>, Conflict> {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let neighbour = dump(ip).unwrap_or_else(|e| {
            eprintln!("wifiposd: cannot read the neighbour table: {e}");
            None
        });
        let r = match sources::openers(ip) {
            // The request's own packets were not recorded although there was room: the table
            // was rebuilt between them and now (which empties the record). Only a rebuild does
            // that, never a guest: the neighbour table decides this once.
            Ok(seen) if seen.senders.is_empty() && !seen.nearly_full() => Ok(neighbour),
            Ok(seen) => judge(ip, neighbour, seen.senders),
            // No record set at all: the table is gone (flushed, being rebuilt) and nothing is
            // enforced; trust the neighbour table as before until the daemon rebuilds it.
            Err(e) if e.is_missing() => Ok(neighbour),
            Err(e) => {
                eprintln!("wifiposd: cannot read the portal connection record: {e}");
                judge(ip, neighbour, Vec::new())
            }
        };
        if let Err(c) = &r {
            eprintln!("wifiposd: refused a request: {c}");
            if let Some(report) = self.on_conflict.as_mut() {
                report(c);
            }
        }
        r
    }
}

fn dump(ip: IpAddr) -> std::io::Result<Option<Mac>> {
    let sock = mnl::Socket::new(mnl::Bus::Route)?;
    // ndmsg (12 bytes): the address family, everything else zero.
    let mut ndmsg = [0u8; 12];
    ndmsg[0] = if ip.is_ipv4() { 2 } else { 10 };
    let req = crate::nl::message(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, 1, &ndmsg);
    let mut found = None;
    crate::nl::dump(&sock, &req, |kind, body| {
        if kind == RTM_NEWNEIGH && found.is_none() {
            found = parse_neigh(body, ip);
        }
    })?;
    Ok(found)
}

/// One `ndmsg` with its attributes: the MAC if it belongs to `ip` and is usable.
fn parse_neigh(m: &[u8], ip: IpAddr) -> Option<Mac> {
    if m.len() < 12 {
        return None;
    }
    let state = u16::from_ne_bytes([m[8], m[9]]);
    if state & NUD_UNUSABLE != 0 || state == 0 {
        return None;
    }
    let (mut dst, mut lladdr) = (None, None);
    let mut attrs = &m[12..];
    while attrs.len() >= 4 {
        let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if alen < 4 || alen > attrs.len() {
            break;
        }
        let data = &attrs[4..alen];
        match kind {
            NDA_DST => dst = Some(data),
            NDA_LLADDR if data.len() == 6 => lladdr = data.try_into().ok().map(Mac),
            _ => {}
        }
        attrs = attrs.get((alen + 3) & !3..).unwrap_or(&[]);
    }
    let matches = match (ip, dst) {
        (IpAddr::V4(a), Some(d)) => d == a.octets(),
        (IpAddr::V6(a), Some(d)) => d == a.octets(),
        _ => false,
    };
    if matches {
        lladdr
    } else {
        None
    }
}

/// A usable neighbour entry: which device (MAC) holds which address on which interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Mac,
}

/// Every usable neighbour entry, IPv4 and IPv6 (one rtnetlink dump each).
pub fn entries() -> std::io::Result<Vec<Entry>> {
    let sock = mnl::Socket::new(mnl::Bus::Route)?;
    let mut out = Vec::new();
    for family in [2u8, 10] {
        let req = crate::nl::message(
            RTM_GETNEIGH,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            &[family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        crate::nl::dump(&sock, &req, |kind, body| {
            if kind == RTM_NEWNEIGH {
                out.extend(parse_entry(body));
            }
        })?;
    }
    Ok(out)
}

/// One `ndmsg` as an [`Entry`], if it has an address and a usable MAC.
fn parse_entry(m: &[u8]) -> Option<Entry> {
    if m.len() < 12 {
        return None;
    }
    let ifindex = u32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
    let state = u16::from_ne_bytes([m[8], m[9]]);
    if state & NUD_UNUSABLE != 0 || state == 0 {
        return None;
    }
    let (mut ip, mut mac) = (None, None);
    for (kind, data, _) in crate::nl::attrs(&m[12..]) {
        match (kind, data.len()) {
            (NDA_DST, 4) => ip = <[u8; 4]>::try_from(data).ok().map(IpAddr::from),
            (NDA_DST, 16) => ip = <[u8; 16]>::try_from(data).ok().map(IpAddr::from),
            (NDA_LLADDR, 6) => mac = data.try_into().ok().map(Mac),
            _ => {}
        }
    }
    Some(Entry {
        ifindex,
        ip: ip?,
        mac: mac?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packets_decide_and_a_forged_entry_is_a_conflict() {
        let ip: IpAddr = "10.20.0.5".parse().unwrap();
        let (victim, thief) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        assert_eq!(judge(ip, Some(victim), vec![victim]), Ok(Some(victim)));
        let c = judge(ip, Some(thief), vec![victim]).unwrap_err();
        assert_eq!(
            (c.neighbour, c.senders.clone()),
            (Some(thief), vec![victim])
        );
        assert!(c.to_string().contains("02:00:00:00:00:02"), "{c}");
        assert_eq!(judge(ip, None, vec![victim]), Ok(Some(victim)));
        assert_eq!(judge(ip, Some(victim), vec![]), Ok(None));
        // The thief also opened a connection from the victim's address: nobody is credited.
        assert!(judge(ip, Some(thief), vec![victim, thief]).is_err());
        assert!(judge(ip, Some(victim), vec![victim, thief]).is_err());
        let many: Vec<Mac> = (0..100).map(|i| Mac([2, 0, 0, 0, 1, i])).collect();
        let c = judge(ip, Some(victim), many).unwrap_err().to_string();
        assert!(c.len() < 200 && c.ends_with("and 96 more"), "{c}");
    }

    #[test]
    fn reachable_entry_for_the_address_yields_its_mac() {
        let mut m = vec![2, 0, 0, 0, 5, 0, 0, 0, 0x02, 0, 0, 1]; // family, ifindex 5, REACHABLE
        m.extend_from_slice(&[8, 0, 1, 0, 10, 0, 0, 7]); // NDA_DST 10.0.0.7
        m.extend_from_slice(&[10, 0, 2, 0, 2, 0xaa, 0, 0, 0, 1, 0, 0]); // NDA_LLADDR + pad
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(parse_neigh(&m, ip), Some(Mac([2, 0xaa, 0, 0, 0, 1])));
        assert_eq!(parse_neigh(&m, "10.0.0.8".parse().unwrap()), None);
        m[8] = 0x20; // FAILED
        assert_eq!(parse_neigh(&m, ip), None);
        assert_eq!(parse_neigh(&m[..7], ip), None);
        m[8] = 0x04; // STALE: still the device's address
        let e = parse_entry(&m).unwrap();
        assert_eq!((e.ip, e.mac), (ip, Mac([2, 0xaa, 0, 0, 0, 1])));
        assert_eq!(e.ifindex, u32::from_ne_bytes([5, 0, 0, 0]));
        m[8] = 0x20;
        assert_eq!(parse_entry(&m), None);
    }
}
