//! Ending a device's open connections when its access ends (expiry, revoke, kick, block):
//! its entries in the kernel's connection tracking are deleted over ctnetlink, both families,
//! redirected ones included. Removing the MAC from the `allowed` set stops new traffic; an
//! established flow that fw4's flow offloading moved to a flowtable no longer passes the
//! forward hook, and only deleting its conntrack entry tears it down.
//!
//! Owns: reading and deleting conntrack entries (`IPCTNL_MSG_CT_GET`/`_DELETE`), and which
//! addresses belong to a device: its neighbour entries on the guest interface now, plus the
//! addresses it was seen with earlier ([`Connections::observe`]). Knows nothing of vouchers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::IpAddr;

use crate::mac::Mac;
use crate::{ifaddr, neigh, nl};

const CT_GET: u16 = (1 << 8) | 1;
const CT_DELETE: u16 = (1 << 8) | 2;
const CT_NEW: u16 = 1 << 8;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const AF_UNSPEC: u8 = 0;
/// How many devices' past addresses are remembered (the oldest memory is dropped beyond).
const SEEN_DEVICES: usize = 4096;
/// How many past addresses per device.
const SEEN_PER_DEVICE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("cannot read or change the kernel's connection tracking over netlink (on OpenWrt this needs kmod-nf-conntrack-netlink): {0}")]
    Netlink(#[from] io::Error),
    #[error("cannot read the neighbour table: {0}")]
    Neighbours(io::Error),
}

/// One tracked connection, as the original direction saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub family: u8,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// Who answers: differs from `dst` for redirected (or DNATed) connections.
    pub reply_src: Option<IpAddr>,
    id: Option<[u8; 4]>,
    zone: Option<[u8; 2]>,
    /// The `CTA_TUPLE_ORIG` attribute as the kernel sent it, to name the entry when deleting.
    orig: Vec<u8>,
}

impl Conn {
    /// The original destination was rewritten to the router (port 80 → the portal).
    pub fn redirected(&self) -> bool {
        self.reply_src.is_some_and(|r| r != self.dst)
    }
}

/// Every tracked connection, IPv4 and IPv6: one dump for both families (`AF_UNSPEC`), as the
/// kernel's walk over the whole hash table is most of the cost.
pub fn list() -> Result<Vec<Conn>, ConntrackError> {
    let sock = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let mut out = Vec::new();
    let req = nl::message(
        CT_GET,
        nl::NLM_F_REQUEST | nl::NLM_F_DUMP,
        1,
        &[AF_UNSPEC, 0, 0, 0],
    );
    nl::dump(&sock, &req, |kind, body| {
        if kind == CT_NEW || kind == CT_GET {
            out.extend(parse_conn(body));
        }
    })?;
    Ok(out)
}

/// Deletes one entry; `Ok(false)` when it was already gone.
pub fn delete(sock: &mnl::Socket, c: &Conn) -> Result<bool, ConntrackError> {
    let mut body = vec![c.family, 0, 0, 0];
    body.extend_from_slice(&c.orig);
    body.resize((body.len() + 3) & !3, 0);
    if let Some(id) = c.id {
        nl::push_attr(&mut body, CTA_ID, &id);
    }
    if let Some(zone) = c.zone {
        nl::push_attr(&mut body, CTA_ZONE, &zone);
    }
    let req = nl::message(CT_DELETE, nl::NLM_F_REQUEST | nl::NLM_F_ACK, 2, &body);
    match nl::request(sock, &req) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(2) => Ok(false), // ENOENT: ended meanwhile
        Err(e) => Err(e.into()),
    }
}

/// Deletes every entry whose original source is one of `ips`; returns how many went.
pub fn end_from(ips: &HashSet<IpAddr>) -> Result<usize, ConntrackError> {
    if ips.is_empty() {
        return Ok(0);
    }
    let doomed: Vec<Conn> = list()?
        .into_iter()
        .filter(|c| ips.contains(&c.src))
        .collect();
    let sock = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let mut n = 0;
    for c in &doomed {
        if delete(&sock, c)? {
            n += 1;
        }
    }
    Ok(n)
}

/// One ctnetlink message body (`nfgenmsg` + attributes) as a [`Conn`].
fn parse_conn(m: &[u8]) -> Option<Conn> {
    let family = *m.first()?;
    let rest = m.get(4..)?;
    let (mut orig, mut reply_src, mut id, mut zone) = (None, None, None, None);
    for (kind, data, raw) in nl::attrs(rest) {
        match kind {
            CTA_TUPLE_ORIG => orig = Some((parse_tuple(data)?, raw.to_vec())),
            CTA_TUPLE_REPLY => reply_src = parse_tuple(data).map(|t| t.0),
            CTA_ID => id = data.try_into().ok(),
            CTA_ZONE => zone = data.try_into().ok(),
            _ => {}
        }
    }
    let ((src, dst, proto, sport, dport), orig) = orig?;
    Some(Conn {
        family,
        proto,
        src,
        dst,
        sport,
        dport,
        reply_src,
        id,
        zone,
        orig,
    })
}

/// A tuple: source, destination, protocol, ports (0 for protocols without).
fn parse_tuple(t: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16, u16)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, 0, 0, 0);
    for (kind, data, _) in nl::attrs(t) {
        match kind {
            CTA_TUPLE_IP => {
                for (k, d, _) in nl::attrs(data) {
                    let ip = match d.len() {
                        4 => <[u8; 4]>::try_from(d).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(d).ok().map(IpAddr::from),
                        _ => None,
                    };
                    match k {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = ip,
                        CTA_IP_V4_DST | CTA_IP_V6_DST => dst = ip,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, d, _) in nl::attrs(data) {
                    match (k, d.len()) {
                        (CTA_PROTO_NUM, 1) => proto = d[0],
                        (CTA_PROTO_SRC_PORT, 2) => sport = u16::from_be_bytes([d[0], d[1]]),
                        (CTA_PROTO_DST_PORT, 2) => dport = u16::from_be_bytes([d[0], d[1]]),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((src?, dst?, proto, sport, dport))
}

/// The addresses that are `macs`' now (neighbour entries on the guest interface, any
/// interface when its index is unknown) or were seen as theirs before, except those another
/// device holds now (DHCP gave a departed device's address to someone else).
pub fn addresses_of(
    macs: &HashSet<Mac>,
    now: &[neigh::Entry],
    ifindex: Option<u32>,
    seen: &HashMap<Mac, BTreeSet<IpAddr>>,
) -> HashSet<IpAddr> {
    let here = |e: &&neigh::Entry| ifindex.is_none_or(|i| e.ifindex == i);
    let taken: HashSet<IpAddr> = now
        .iter()
        .filter(here)
        .filter(|e| !macs.contains(&e.mac))
        .map(|e| e.ip)
        .collect();
    let mut out: HashSet<IpAddr> = now
        .iter()
        .filter(here)
        .filter(|e| macs.contains(&e.mac))
        .map(|e| e.ip)
        .collect();
    for m in macs {
        for ip in seen.get(m).into_iter().flatten() {
            if !taken.contains(ip) {
                out.insert(*ip);
            }
        }
    }
    out
}

/// What the daemon does with connections when access ends.
pub trait Connections {
    /// Remembers which addresses the guest devices hold now (called every second).
    fn observe(&mut self);
    /// Ends every tracked connection of these devices; returns how many.
    fn end(&mut self, macs: &[Mac]) -> Result<usize, ConntrackError>;
    /// Ends the connections of every guest device not in `keep` (at start: whatever ended
    /// while the daemon was down); returns how many.
    fn end_all_but(&mut self, keep: &HashSet<Mac>) -> Result<usize, ConntrackError>;
    /// The guest interface changed (reload).
    fn set_iface(&mut self, _iface: &str) {}
}

/// No connection tracking to clean (`serve --dev`, unit tests).
pub struct Off;

impl Connections for Off {
    fn observe(&mut self) {}
    fn end(&mut self, _: &[Mac]) -> Result<usize, ConntrackError> {
        Ok(0)
    }
    fn end_all_but(&mut self, _: &HashSet<Mac>) -> Result<usize, ConntrackError> {
        Ok(0)
    }
}

/// The kernel's connection tracking, for devices on `iface`.
pub struct Kernel {
    pub iface: String,
    seen: HashMap<Mac, BTreeSet<IpAddr>>,
}

impl Kernel {
    pub fn new(iface: &str) -> Kernel {
        Kernel {
            iface: iface.to_owned(),
            seen: HashMap::new(),
        }
    }

    fn neighbours(&self) -> Result<(Vec<neigh::Entry>, Option<u32>), ConntrackError> {
        let ifindex = ifaddr::index_of(&self.iface).ok();
        let now = neigh::entries().map_err(ConntrackError::Neighbours)?;
        Ok((now, ifindex))
    }
}

impl Connections for Kernel {
    fn set_iface(&mut self, iface: &str) {
        iface.clone_into(&mut self.iface);
        self.seen.clear();
    }

    fn observe(&mut self) {
        let Ok((now, ifindex)) = self.neighbours() else {
            return;
        };
        if self.seen.len() > SEEN_DEVICES {
            self.seen.clear();
        }
        for e in now
            .iter()
            .filter(|e| ifindex.is_none_or(|i| e.ifindex == i))
        {
            let ips = self.seen.entry(e.mac).or_default();
            if ips.len() < SEEN_PER_DEVICE {
                ips.insert(e.ip);
            }
        }
    }

    fn end(&mut self, macs: &[Mac]) -> Result<usize, ConntrackError> {
        if macs.is_empty() {
            return Ok(0);
        }
        let (now, ifindex) = self.neighbours()?;
        let macs: HashSet<Mac> = macs.iter().copied().collect();
        let n = end_from(&addresses_of(&macs, &now, ifindex, &self.seen))?;
        for m in &macs {
            self.seen.remove(m);
        }
        Ok(n)
    }

    fn end_all_but(&mut self, keep: &HashSet<Mac>) -> Result<usize, ConntrackError> {
        let (now, ifindex) = self.neighbours()?;
        let gone: HashSet<Mac> = now
            .iter()
            .filter(|e| ifindex.is_none_or(|i| e.ifindex == i))
            .map(|e| e.mac)
            .filter(|m| !keep.contains(m))
            .collect();
        end_from(&addresses_of(&gone, &now, ifindex, &self.seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(kind: u16, inner: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        nl::push_attr(&mut b, kind | 0x8000, inner);
        b
    }

    fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut ip = Vec::new();
        nl::push_attr(&mut ip, CTA_IP_V4_SRC, &src);
        nl::push_attr(&mut ip, CTA_IP_V4_DST, &dst);
        let mut proto = Vec::new();
        nl::push_attr(&mut proto, CTA_PROTO_NUM, &[6]);
        nl::push_attr(&mut proto, CTA_PROTO_SRC_PORT, &sport.to_be_bytes());
        nl::push_attr(&mut proto, CTA_PROTO_DST_PORT, &dport.to_be_bytes());
        let mut t = nested(CTA_TUPLE_IP, &ip);
        t.extend(nested(CTA_TUPLE_PROTO, &proto));
        t
    }

    #[test]
    fn a_redirected_entry_is_read_with_its_tuple_id_and_zone() {
        let mut m = vec![2, 0, 0, 0]; // AF_INET
        let orig = nested(
            CTA_TUPLE_ORIG,
            &tuple([10, 20, 0, 10], [1, 1, 1, 1], 40000, 80),
        );
        m.extend(&orig);
        m.extend(nested(
            CTA_TUPLE_REPLY,
            &tuple([10, 20, 0, 1], [10, 20, 0, 10], 2050, 40000),
        ));
        nl::push_attr(&mut m, CTA_ID, &[0, 0, 1, 2]);
        nl::push_attr(&mut m, CTA_ZONE, &[0, 3]);
        let c = parse_conn(&m).unwrap();
        assert_eq!(c.src, IpAddr::from([10, 20, 0, 10]));
        assert_eq!(c.dst, IpAddr::from([1, 1, 1, 1]));
        assert_eq!((c.proto, c.sport, c.dport), (6, 40000, 80));
        assert!(c.redirected());
        assert_eq!((c.id, c.zone), (Some([0, 0, 1, 2]), Some([0, 3])));
        assert_eq!(c.orig, orig);
        // Truncated or tuple-less messages are skipped, not misread.
        assert_eq!(parse_conn(&m[..3]), None);
        assert_eq!(parse_conn(&[2, 0, 0, 0]), None);
    }

    #[test]
    fn a_devices_addresses_are_its_neighbours_and_past_ones_nobody_else_holds() {
        let (a, b) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let now = [
            neigh::Entry {
                ifindex: 5,
                ip: ip("10.20.0.10"),
                mac: a,
            },
            neigh::Entry {
                ifindex: 5,
                ip: ip("fd20::10"),
                mac: a,
            },
            neigh::Entry {
                ifindex: 9,
                ip: ip("192.168.1.5"),
                mac: a,
            },
            neigh::Entry {
                ifindex: 5,
                ip: ip("10.20.0.11"),
                mac: b,
            },
        ];
        let mut seen = HashMap::new();
        seen.insert(a, BTreeSet::from([ip("10.20.0.11"), ip("10.20.0.99")]));
        let got = addresses_of(&HashSet::from([a]), &now, Some(5), &seen);
        assert_eq!(
            got,
            HashSet::from([ip("10.20.0.10"), ip("fd20::10"), ip("10.20.0.99")])
        );
        let all = addresses_of(&HashSet::from([a]), &now, None, &HashMap::new());
        assert!(all.contains(&ip("192.168.1.5")));
        assert!(addresses_of(&HashSet::new(), &now, Some(5), &seen).is_empty());
    }
}
