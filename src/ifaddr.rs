//! The router's network interfaces as the kernel has them: a device's index by name
//! (`RTM_GETLINK`) and its addresses (`RTM_GETADDR`), read over rtnetlink in the calling
//! thread's network namespace. Used to find the portal's address on the guest interface and
//! by `wifiposd doctor`. Owns the choice of "the" IPv4 address of an interface ([`primary_v4`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::nl;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_SECONDARY: u32 = 0x01;
const IFA_F_TENTATIVE: u32 = 0x40;
const IFA_F_DADFAILED: u32 = 0x08;

/// One address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    /// `IFA_F_*` flags (secondary, tentative, …).
    pub flags: u32,
}

impl Addr {
    pub fn secondary(&self) -> bool {
        self.flags & IFA_F_SECONDARY != 0
    }
    /// Not yet (or never) usable: IPv6 duplicate address detection pending or failed.
    pub fn unusable(&self) -> bool {
        self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) != 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IfError {
    #[error("cannot read the router's interfaces over netlink: {0}")]
    Netlink(#[from] std::io::Error),
    #[error("there is no network interface called {0} on this router")]
    NoSuchInterface(String),
}

/// Every interface: `(index, name)`.
pub fn links() -> Result<Vec<(u32, String)>, IfError> {
    let sock = mnl::Socket::new(mnl::Bus::Route)?;
    let req = nl::message(RTM_GETLINK, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 1, &[0; 16]);
    let mut out = Vec::new();
    nl::dump(&sock, &req, |kind, body| {
        if kind == RTM_NEWLINK && body.len() >= 16 {
            let index = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
            let name = nl::attrs(&body[16..])
                .find(|(k, _, _)| *k == IFLA_IFNAME)
                .map(|(_, d, _)| {
                    String::from_utf8_lossy(d.split(|&c| c == 0).next().unwrap_or(&[])).into_owned()
                });
            if let Some(name) = name {
                out.push((index, name));
            }
        }
    })?;
    Ok(out)
}

/// The index of the interface called `name`.
pub fn index_of(name: &str) -> Result<u32, IfError> {
    links()?
        .into_iter()
        .find(|(_, n)| n == name)
        .map(|(i, _)| i)
        .ok_or_else(|| IfError::NoSuchInterface(name.to_owned()))
}

/// Every address of every interface, IPv4 and IPv6, in the kernel's order (an interface's
/// primary IPv4 address before its secondaries).
pub fn addresses() -> Result<Vec<Addr>, IfError> {
    let sock = mnl::Socket::new(mnl::Bus::Route)?;
    let req = nl::message(RTM_GETADDR, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 1, &[0; 8]);
    let mut out = Vec::new();
    nl::dump(&sock, &req, |kind, body| {
        if kind == RTM_NEWADDR {
            if let Some(a) = parse_addr(body) {
                out.push(a);
            }
        }
    })?;
    Ok(out)
}

/// The addresses of the interface called `name`.
pub fn addresses_of(name: &str) -> Result<Vec<Addr>, IfError> {
    let index = index_of(name)?;
    Ok(addresses()?
        .into_iter()
        .filter(|a| a.ifindex == index)
        .collect())
}

/// One `ifaddrmsg` with its attributes.
fn parse_addr(m: &[u8]) -> Option<Addr> {
    if m.len() < 8 {
        return None;
    }
    let (family, prefix, flags8) = (m[0], m[1], m[2]);
    let ifindex = u32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
    let (mut local, mut address, mut flags) = (None, None, u32::from(flags8));
    for (kind, data, _) in nl::attrs(&m[8..]) {
        match kind {
            IFA_LOCAL => local = ip_of(family, data),
            IFA_ADDRESS => address = ip_of(family, data),
            IFA_FLAGS if data.len() == 4 => {
                flags = u32::from_ne_bytes([data[0], data[1], data[2], data[3]])
            }
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on point-to-point
    // links); IPv6 sends only IFA_ADDRESS.
    let ip = local.or(address)?;
    Some(Addr {
        ifindex,
        ip,
        prefix,
        flags,
    })
}

fn ip_of(family: u8, d: &[u8]) -> Option<IpAddr> {
    match (family, d.len()) {
        (2, 4) => Some(IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))),
        (10, 16) => {
            let b: [u8; 16] = d.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The portal's address on an interface: its first primary IPv4 address (the one DHCP hands
/// out as the gateway), else its first IPv4 address at all.
pub fn primary_v4(addrs: &[Addr]) -> Option<Ipv4Addr> {
    let v4 = |a: &&Addr| matches!(a.ip, IpAddr::V4(_)) && !a.unusable();
    addrs
        .iter()
        .filter(v4)
        .find(|a| !a.secondary())
        .or_else(|| addrs.iter().find(v4))
        .and_then(|a| match a.ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str, flags: u32) -> Addr {
        Addr {
            ifindex: 3,
            ip: ip.parse().unwrap(),
            prefix: 24,
            flags,
        }
    }

    #[test]
    fn the_primary_ipv4_address_is_chosen() {
        let a = [
            addr("fd20::1", 0),
            addr("10.20.0.9", IFA_F_SECONDARY),
            addr("10.20.0.1", 0),
        ];
        assert_eq!(primary_v4(&a), Some(Ipv4Addr::new(10, 20, 0, 1)));
        // Only secondaries: the first of them.
        assert_eq!(primary_v4(&a[..2]), Some(Ipv4Addr::new(10, 20, 0, 9)));
        // IPv6 only, or nothing: no portal address.
        assert_eq!(primary_v4(&a[..1]), None);
        assert_eq!(primary_v4(&[]), None);
        assert_eq!(primary_v4(&[addr("10.0.0.1", IFA_F_TENTATIVE)]), None);
    }

    #[test]
    fn an_ifaddrmsg_is_parsed() {
        let mut m = vec![2, 24, 0, 0, 7, 0, 0, 0];
        nl::push_attr(&mut m, IFA_ADDRESS, &[10, 20, 0, 254]);
        nl::push_attr(&mut m, IFA_LOCAL, &[10, 20, 0, 1]);
        nl::push_attr(&mut m, IFA_FLAGS, &IFA_F_SECONDARY.to_ne_bytes());
        let a = parse_addr(&m).unwrap();
        assert_eq!(a.ip, "10.20.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (a.ifindex, a.prefix),
            (u32::from_ne_bytes([7, 0, 0, 0]), 24)
        );
        assert!(a.secondary());
        assert_eq!(parse_addr(&m[..5]), None);
        // An address of the wrong length is not an address.
        let mut bad = vec![10, 64, 0, 0, 1, 0, 0, 0];
        nl::push_attr(&mut bad, IFA_ADDRESS, &[1, 2, 3, 4]);
        assert_eq!(parse_addr(&bad), None);
    }
}
