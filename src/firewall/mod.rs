//! The firewall: one nftables table of our own (`inet wifipos`) whose `allowed` set holds paid
//! devices' MACs with a per-element timeout, so the kernel ends each session on time even if
//! the daemon is dead.
//!
//! Owns: the ruleset (rendered by [`ruleset_script`], pure), the [`Firewall`] trait, its
//! netlink implementation ([`netlink::NetlinkFirewall`]) and an in-memory one for tests of
//! callers ([`MemoryFirewall`]). Knows nothing of vouchers, SQL or HTTP: callers say which MACs
//! get how long.

pub mod netlink;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::mac::Mac;

pub const TABLE: &str = "wifipos";
pub const SET_ALLOWED: &str = "allowed";
pub const CHAINS: [&str; 3] = ["prerouting", "forward", "input"];

/// What the ruleset depends on, from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The guest network's device, e.g. `br-guest`.
    pub guest_iface: String,
    pub portal_port: u16,
    pub trusted: Vec<Mac>,
    pub blocked: Vec<Mac>,
    /// Walled garden: reachable before paying, `(address, prefix length)`.
    pub garden: Vec<(IpAddr, u8)>,
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The kernel refused a netlink request.
    #[error("the kernel refused to {op}: {source}")]
    Kernel {
        op: &'static str,
        source: std::io::Error,
    },
    /// `nft` could not be run or refused the ruleset.
    #[error("cannot install the nftables ruleset: {0}")]
    Install(String),
    /// The guest interface name cannot be used in a rule.
    #[error("'{0}' is not a usable interface name")]
    BadInterface(String),
}

/// Whether our table is as we built it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Intact,
    /// The table, a chain or the set is gone (e.g. `nft flush ruleset`): rebuild it.
    Missing,
}

/// Programs the kernel. All lists are applied in batches, never one request per MAC.
pub trait Firewall {
    /// Builds (or replaces) the whole table atomically, with `allowed` already in it, so a
    /// re-install never drops a paid device.
    fn install(
        &mut self,
        rules: &Ruleset,
        allowed: &[(Mac, Duration)],
    ) -> Result<(), FirewallError>;
    /// Lets each MAC through for its duration from now, replacing any time it had.
    fn allow(&mut self, entries: &[(Mac, Duration)]) -> Result<(), FirewallError>;
    /// Takes MACs out of the allowed set; MACs not in it are ignored.
    fn remove(&mut self, macs: &[Mac]) -> Result<(), FirewallError>;
    /// The allowed MACs and the time each has left.
    fn list_allowed(&mut self) -> Result<Vec<(Mac, Duration)>, FirewallError>;
    /// A cheap check that the table is still there, for the daemon to call periodically.
    fn health(&mut self) -> Result<Health, FirewallError>;
}

/// The nft script that builds the table in one transaction: create-or-clear (`table`, `delete
/// table`, then the table), sets with their elements, and the three chains.
pub fn ruleset_script(r: &Ruleset, allowed: &[(Mac, Duration)]) -> Result<String, FirewallError> {
    let iface = &r.guest_iface;
    if iface.is_empty()
        || iface.len() > 15
        || !iface
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.@".contains(&c))
    {
        return Err(FirewallError::BadInterface(iface.clone()));
    }
    let port = r.portal_port;
    let macs = |list: &[Mac]| {
        list.iter()
            .map(Mac::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let elements = |items: String| {
        if items.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {items} }};")
        }
    };
    let allowed_items = allowed
        .iter()
        .filter(|(_, d)| d.as_secs() >= 1)
        .map(|(m, d)| format!("{m} timeout {}s", d.as_secs()))
        .collect::<Vec<_>>()
        .join(", ");
    let garden = |v4: bool| {
        r.garden
            .iter()
            .filter(|(a, _)| a.is_ipv4() == v4)
            .map(|(a, l)| format!("{a}/{l}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n\
  set {SET_ALLOWED} {{ type ether_addr; flags timeout;{} }}\n\
  set trusted {{ type ether_addr;{} }}\n\
  set blocked {{ type ether_addr;{} }}\n\
  set garden4 {{ type ipv4_addr; flags interval;{} }}\n\
  set garden6 {{ type ipv6_addr; flags interval;{} }}\n\
  chain prerouting {{\n\
    type nat hook prerouting priority dstnat - 5; policy accept;\n\
    iifname != \"{iface}\" return\n\
    ether saddr @{SET_ALLOWED} return\n\
    ether saddr @trusted return\n\
    ip daddr @garden4 return\n\
    ip6 daddr @garden6 return\n\
    tcp dport 80 redirect to :{port}\n\
  }}\n\
  chain forward {{\n\
    type filter hook forward priority filter - 5; policy accept;\n\
    iifname != \"{iface}\" return\n\
    oifname \"{iface}\" return\n\
    ether saddr @blocked drop\n\
    ether saddr @{SET_ALLOWED} accept\n\
    ether saddr @trusted accept\n\
    ip daddr @garden4 accept\n\
    ip6 daddr @garden6 accept\n\
    meta l4proto tcp reject with tcp reset\n\
    reject with icmpx admin-prohibited\n\
  }}\n\
  chain input {{\n\
    type filter hook input priority filter - 5; policy accept;\n\
    iifname != \"{iface}\" return\n\
    ether saddr @blocked drop\n\
    ct state established,related accept\n\
    udp dport {{ 67, 547 }} accept\n\
    meta l4proto {{ tcp, udp }} th dport 53 accept\n\
    tcp dport {port} accept\n\
    icmpv6 type {{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, echo-request }} accept\n\
    icmp type echo-request accept\n\
    meta l4proto tcp reject with tcp reset\n\
    reject with icmpx admin-prohibited\n\
  }}\n\
}}\n",
        elements(allowed_items),
        elements(macs(&r.trusted)),
        elements(macs(&r.blocked)),
        elements(garden(true)),
        elements(garden(false)),
    );
    Ok(s)
}

/// An in-memory firewall for tests of callers and for `wifiposd serve --dev`: remembers what it
/// was told, with timeouts measured on a monotonic clock.
#[derive(Debug, Default)]
pub struct MemoryFirewall {
    pub installed: Option<Ruleset>,
    allowed: HashMap<Mac, Instant>,
}

impl MemoryFirewall {
    pub fn new() -> MemoryFirewall {
        MemoryFirewall::default()
    }

    /// Forgets the table, as `nft flush ruleset` would.
    pub fn flush(&mut self) {
        self.installed = None;
        self.allowed.clear();
    }
}

impl Firewall for MemoryFirewall {
    fn install(
        &mut self,
        rules: &Ruleset,
        allowed: &[(Mac, Duration)],
    ) -> Result<(), FirewallError> {
        ruleset_script(rules, allowed)?;
        self.installed = Some(rules.clone());
        self.allowed.clear();
        self.allow(allowed)
    }

    fn allow(&mut self, entries: &[(Mac, Duration)]) -> Result<(), FirewallError> {
        let now = Instant::now();
        for (m, d) in entries {
            self.allowed.insert(*m, now + *d);
        }
        Ok(())
    }

    fn remove(&mut self, macs: &[Mac]) -> Result<(), FirewallError> {
        for m in macs {
            self.allowed.remove(m);
        }
        Ok(())
    }

    fn list_allowed(&mut self) -> Result<Vec<(Mac, Duration)>, FirewallError> {
        let now = Instant::now();
        self.allowed.retain(|_, until| *until > now);
        let mut v: Vec<_> = self
            .allowed
            .iter()
            .map(|(m, until)| (*m, *until - now))
            .collect();
        v.sort();
        Ok(v)
    }

    fn health(&mut self) -> Result<Health, FirewallError> {
        Ok(if self.installed.is_some() {
            Health::Intact
        } else {
            Health::Missing
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Ruleset {
        Ruleset {
            guest_iface: "br-guest".into(),
            portal_port: 2050,
            trusted: vec![Mac([2, 0, 0, 0, 0, 1])],
            blocked: vec![],
            garden: vec![("192.0.2.0".parse().unwrap(), 24)],
        }
    }

    #[test]
    fn the_script_builds_the_designed_table() {
        let s = ruleset_script(
            &rules(),
            &[(Mac([2, 0, 0, 0, 0, 9]), Duration::from_secs(90))],
        )
        .unwrap();
        assert!(s.starts_with("table inet wifipos\ndelete table inet wifipos\n"));
        assert!(s.contains("02:00:00:00:00:09 timeout 90s"));
        assert!(s.contains("set trusted { type ether_addr; elements = { 02:00:00:00:00:01 }; }"));
        assert!(s.contains("192.0.2.0/24"));
        assert!(s.contains("tcp dport 80 redirect to :2050"));
        assert!(!s.contains(" fwd"), "fwd is an nft keyword");
    }

    #[test]
    fn hostile_interface_names_are_refused() {
        for bad in [
            "",
            "br guest",
            "a\"; flush ruleset",
            "averyveryverylongname",
        ] {
            let r = Ruleset {
                guest_iface: bad.into(),
                ..rules()
            };
            assert!(ruleset_script(&r, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_firewall_forgets_expired_and_flushed_entries() {
        let mut f = MemoryFirewall::new();
        assert_eq!(f.health().unwrap(), Health::Missing);
        let m = Mac([2, 0, 0, 0, 0, 5]);
        f.install(&rules(), &[(m, Duration::from_secs(60))])
            .unwrap();
        f.allow(&[(Mac([2, 0, 0, 0, 0, 6]), Duration::ZERO)])
            .unwrap();
        assert_eq!(f.list_allowed().unwrap().len(), 1);
        f.remove(&[m]).unwrap();
        assert!(f.list_allowed().unwrap().is_empty());
        f.flush();
        assert_eq!(f.health().unwrap(), Health::Missing);
    }
}
