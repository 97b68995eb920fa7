//! The ruleset as data: which sets, chains and rules the `inet wifipos` table holds for a given
//! [`Ruleset`], and the walled garden as merged address intervals. Pure: no netlink, no I/O.
//! `netlink.rs` turns this description into one batch; [`ruleset_script`] renders it as nft
//! text for people (logs, docs, tests).

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::Duration;

use super::{FirewallError, Ruleset, TABLE};
use crate::mac::Mac;

/// What a set's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ether,
    Ipv4,
    Ipv6,
    /// `ipv4_addr . ether_addr`: which device opened portal connections from an address.
    Ipv4Ether,
    /// `ipv6_addr . ether_addr`.
    Ipv6Ether,
}

impl KeyType {
    /// The key as nft writes its type.
    pub fn nft_type(self) -> &'static str {
        match self {
            KeyType::Ether => "ether_addr",
            KeyType::Ipv4 => "ipv4_addr",
            KeyType::Ipv6 => "ipv6_addr",
            KeyType::Ipv4Ether => "ipv4_addr . ether_addr",
            KeyType::Ipv6Ether => "ipv6_addr . ether_addr",
        }
    }
}

/// One named set of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSpec {
    pub name: &'static str,
    /// Also the set id inside an install batch (rules refer to sets by name and id).
    pub id: u32,
    pub key: KeyType,
    /// Elements carry their own timeout (`flags timeout`).
    pub timeout: bool,
    /// Elements are address ranges (`flags interval`).
    pub interval: bool,
    /// Filled by the packet path (`flags dynamic`), with this default timeout in seconds and
    /// at most this many elements; `None` for sets only the daemon fills.
    pub dynamic: Option<Dynamic>,
}

/// A set the kernel fills from packets: bounded in size and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dynamic {
    pub timeout_s: u32,
    pub size: u32,
}

/// How long the kernel remembers which MAC sent to the portal from an address (each packet
/// refreshes it): longer than the portal keeps a connection open (60 s), so
/// every request on it is vouched for.
pub const SOURCE_TIMEOUT_S: u32 = 90;
/// (address, MAC) pairs remembered per family. One per device, however many connections it
/// opens; only invented pairs fill it (32 768 new ones within 90 s, about 3 MB of kernel
/// memory per family then). A full set records no new pairs until elements expire; those
/// devices are then told "we cannot see your device" — a denial, never a theft.
pub const SOURCE_SIZE: u32 = 32768;

pub const ALLOWED: SetSpec = SetSpec {
    name: "allowed",
    id: 1,
    key: KeyType::Ether,
    timeout: true,
    interval: false,
    dynamic: None,
};
pub const TRUSTED: SetSpec = SetSpec {
    name: "trusted",
    id: 2,
    key: KeyType::Ether,
    timeout: false,
    interval: false,
    dynamic: None,
};
pub const BLOCKED: SetSpec = SetSpec {
    name: "blocked",
    id: 3,
    key: KeyType::Ether,
    timeout: false,
    interval: false,
    dynamic: None,
};
pub const GARDEN4: SetSpec = SetSpec {
    name: "garden4",
    id: 4,
    key: KeyType::Ipv4,
    timeout: false,
    interval: true,
    dynamic: None,
};
pub const GARDEN6: SetSpec = SetSpec {
    name: "garden6",
    id: 5,
    key: KeyType::Ipv6,
    timeout: false,
    interval: true,
    dynamic: None,
};
/// `ip saddr . ether saddr` of each new connection to the portal: the kernel's word on which
/// device(s) opened connections from an address, which a forged ARP or NDP entry cannot change.
pub const PORTAL4: SetSpec = SetSpec {
    name: "portal4",
    id: 6,
    key: KeyType::Ipv4Ether,
    timeout: true,
    interval: false,
    dynamic: Some(Dynamic {
        timeout_s: SOURCE_TIMEOUT_S,
        size: SOURCE_SIZE,
    }),
};
pub const PORTAL6: SetSpec = SetSpec {
    name: "portal6",
    id: 7,
    key: KeyType::Ipv6Ether,
    timeout: true,
    interval: false,
    dynamic: Some(Dynamic {
        timeout_s: SOURCE_TIMEOUT_S,
        size: SOURCE_SIZE,
    }),
};
pub const SETS: [SetSpec; 7] = [
    ALLOWED, TRUSTED, BLOCKED, GARDEN4, GARDEN6, PORTAL4, PORTAL6,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Forward,
    Input,
}

/// A base chain of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: &'static str,
    pub hook: Hook,
    /// `type nat` (else `type filter`).
    pub nat: bool,
    pub priority: i32,
}

/// dstnat - 5 and filter - 5: just before the distribution's own chains (fw4).
pub const PREROUTING: ChainSpec = ChainSpec {
    name: "prerouting",
    hook: Hook::Prerouting,
    nat: true,
    priority: -105,
};
pub const FORWARD: ChainSpec = ChainSpec {
    name: "forward",
    hook: Hook::Forward,
    nat: false,
    priority: -5,
};
pub const INPUT: ChainSpec = ChainSpec {
    name: "input",
    hook: Hook::Input,
    nat: false,
    priority: -5,
};
pub const CHAIN_SPECS: [ChainSpec; 3] = [PREROUTING, FORWARD, INPUT];

/// One condition of a rule; all of a rule's conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `iifname "x"` (`eq`) or `iifname != "x"`.
    IifName {
        eq: bool,
        name: String,
    },
    OifName {
        eq: bool,
        name: String,
    },
    /// `ether saddr @set` (preceded by `meta iiftype ether` on the wire, as nft does).
    EtherSaddrIn(&'static str),
    /// `ip daddr @set`.
    Ip4DaddrIn(&'static str),
    /// `ip6 daddr @set`.
    Ip6DaddrIn(&'static str),
    /// `meta l4proto tcp`.
    Tcp,
    TcpDport(u16),
    UdpDport(u16),
    /// `ct state established,related`.
    EstablishedRelated,
    IcmpType(u8),
    Icmpv6Type(u8),
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    Return,
    /// `reject with tcp reset` (needs a [`Match::Tcp`] first).
    RejectTcpReset,
    /// `reject with icmpx admin-prohibited`.
    RejectAdminProhibited,
    /// `redirect to :port`.
    Redirect(u16),
    /// `update @set { ip saddr . ether saddr }` (`ip6 saddr` for an IPv6 set), then
    /// on to the next rule: records who opened the connection.
    RecordSource(SetSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub chain: &'static str,
    pub matches: Vec<Match>,
    pub action: Action,
}

/// IPv4 and IPv6 protocol numbers used below.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Refuses interface names the kernel would not take (IFNAMSIZ) or nft could not print back.
pub fn check_iface(iface: &str) -> Result<(), FirewallError> {
    if iface.is_empty()
        || iface.len() > 15
        || !iface
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.@".contains(&c))
    {
        return Err(FirewallError::BadInterface(iface.to_owned()));
    }
    Ok(())
}

/// The rules of the three chains, in order. Reading this function reads the ruleset.
pub fn rules(r: &Ruleset) -> Result<Vec<RuleSpec>, FirewallError> {
    check_iface(&r.guest_iface)?;
    let mut out = Vec::new();
    prerouting_rules(&mut out, &r.guest_iface, r.portal_port);
    forward_rules(&mut out, &r.guest_iface);
    input_rules(&mut out, &r.guest_iface, r.portal_port, r.https_port);
    Ok(out)
}

fn rule(chain: &ChainSpec, matches: Vec<Match>, action: Action) -> RuleSpec {
    RuleSpec {
        chain: chain.name,
        matches,
        action,
    }
}

fn not_from_guest(iface: &str) -> Match {
    Match::IifName {
        eq: false,
        name: iface.to_owned(),
    }
}

/// Guests that may go out keep their port 80; everybody else's lands on the portal.
fn prerouting_rules(out: &mut Vec<RuleSpec>, iface: &str, port: u16) {
    use Action::*;
    let c = &PREROUTING;
    out.push(rule(c, vec![not_from_guest(iface)], Return));
    out.push(rule(c, vec![Match::EtherSaddrIn(ALLOWED.name)], Return));
    out.push(rule(c, vec![Match::EtherSaddrIn(TRUSTED.name)], Return));
    out.push(rule(c, vec![Match::Ip4DaddrIn(GARDEN4.name)], Return));
    out.push(rule(c, vec![Match::Ip6DaddrIn(GARDEN6.name)], Return));
    out.push(rule(
        c,
        vec![Match::Tcp, Match::TcpDport(80)],
        Redirect(port),
    ));
}

/// Guest traffic leaving through another interface: blocked, paid, trusted, garden, or refused
/// fast so phones notice the captive portal at once.
fn forward_rules(out: &mut Vec<RuleSpec>, iface: &str) {
    use Action::*;
    let c = &FORWARD;
    out.push(rule(c, vec![not_from_guest(iface)], Return));
    let to_guest = Match::OifName {
        eq: true,
        name: iface.to_owned(),
    };
    out.push(rule(c, vec![to_guest], Return));
    out.push(rule(c, vec![Match::EtherSaddrIn(BLOCKED.name)], Drop));
    out.push(rule(c, vec![Match::EtherSaddrIn(ALLOWED.name)], Accept));
    out.push(rule(c, vec![Match::EtherSaddrIn(TRUSTED.name)], Accept));
    out.push(rule(c, vec![Match::Ip4DaddrIn(GARDEN4.name)], Accept));
    out.push(rule(c, vec![Match::Ip6DaddrIn(GARDEN6.name)], Accept));
    out.push(rule(c, vec![Match::Tcp], RejectTcpReset));
    out.push(rule(c, vec![], RejectAdminProhibited));
}

/// What a guest may reach on the router itself: DHCP, DNS, the portal, ICMP that IPv6 needs.
fn input_rules(out: &mut Vec<RuleSpec>, iface: &str, port: u16, https: Option<u16>) {
    use Action::*;
    let c = &INPUT;
    out.push(rule(c, vec![not_from_guest(iface)], Return));
    out.push(rule(c, vec![Match::EtherSaddrIn(BLOCKED.name)], Drop));
    // Port 80 was redirected in prerouting, so every portal packet arrives here with the
    // portal's port. Every one of them (not only the first of a connection) records who sent
    // it, so a connection open across a table rebuild is vouched for again by its next packet.
    // The HTTPS portal (when on) is reached directly, and recorded the same way.
    let ports: Vec<u16> = std::iter::once(port).chain(https).collect();
    for p in &ports {
        for set in [PORTAL4, PORTAL6] {
            out.push(rule(
                c,
                vec![Match::Tcp, Match::TcpDport(*p)],
                RecordSource(set),
            ));
        }
    }
    out.push(rule(c, vec![Match::EstablishedRelated], Accept));
    out.push(rule(c, vec![Match::UdpDport(67)], Accept));
    out.push(rule(c, vec![Match::UdpDport(547)], Accept));
    out.push(rule(c, vec![Match::UdpDport(53)], Accept));
    out.push(rule(c, vec![Match::Tcp, Match::TcpDport(53)], Accept));
    for p in &ports {
        out.push(rule(c, vec![Match::Tcp, Match::TcpDport(*p)], Accept));
    }
    // Router and neighbour discovery (133-136) and ping, without which IPv6 does not work.
    for t in [133, 134, 135, 136, 128] {
        out.push(rule(c, vec![Match::Icmpv6Type(t)], Accept));
    }
    out.push(rule(c, vec![Match::IcmpType(8)], Accept));
    out.push(rule(c, vec![Match::Tcp], RejectTcpReset));
    out.push(rule(c, vec![], RejectAdminProhibited));
}

/// Number of rules per chain, in [`CHAIN_SPECS`] order: what `check()` expects to find.
pub fn rule_counts(rules: &[RuleSpec]) -> [usize; 3] {
    let mut n = [0; 3];
    for r in rules {
        if let Some(i) = CHAIN_SPECS.iter().position(|c| c.name == r.chain) {
            n[i] += 1;
        }
    }
    n
}

/// A half-open address range `[start, end)`; `end` is `None` when the range runs to the last
/// address. Used for IPv4 (`u32` as `u128`) and IPv6 alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: u128,
    pub end: Option<u128>,
}

/// The walled-garden prefixes of one family as sorted, merged intervals (overlapping or
/// adjacent prefixes become one, as the kernel's interval sets require). Host bits below the
/// prefix are ignored; prefix lengths beyond the address size are refused.
pub fn garden_intervals(garden: &[(IpAddr, u8)], v4: bool) -> Result<Vec<Interval>, FirewallError> {
    let bits: u32 = if v4 { 32 } else { 128 };
    let mut ranges: Vec<(u128, Option<u128>)> = Vec::new();
    for (addr, len) in garden {
        let a = match (addr, v4) {
            (IpAddr::V4(a), true) => u128::from(u32::from(*a)),
            (IpAddr::V6(a), false) => u128::from(*a),
            _ => continue,
        };
        let len = u32::from(*len);
        if len > bits {
            return Err(FirewallError::BadPrefix(format!("{addr}/{len}")));
        }
        let host_bits = bits - len;
        let size: Option<u128> = 1u128.checked_shl(host_bits);
        let start = match size {
            Some(s) => a & !(s - 1),
            None => 0,
        };
        // The end is one past the range, or none when the range reaches the last address.
        let end = match size.and_then(|s| start.checked_add(s)) {
            Some(e) if v4 && e >= 1u128 << 32 => None,
            other => other,
        };
        ranges.push((start, end));
    }
    ranges.sort();
    let mut out: Vec<Interval> = Vec::new();
    for (start, end) in ranges {
        if let Some(last) = out.last_mut() {
            match last.end {
                None => continue,
                Some(le) if start <= le => {
                    last.end = end.map(|e| e.max(le));
                    continue;
                }
                _ => {}
            }
        }
        out.push(Interval { start, end });
    }
    Ok(out)
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neq = |eq: &bool| if *eq { "" } else { "!= " };
        match self {
            Match::IifName { eq, name } => write!(f, "iifname {}\"{name}\"", neq(eq)),
            Match::OifName { eq, name } => write!(f, "oifname {}\"{name}\"", neq(eq)),
            Match::EtherSaddrIn(s) => write!(f, "ether saddr @{s}"),
            Match::Ip4DaddrIn(s) => write!(f, "ip daddr @{s}"),
            Match::Ip6DaddrIn(s) => write!(f, "ip6 daddr @{s}"),
            Match::Tcp => write!(f, "meta l4proto tcp"),
            Match::TcpDport(p) => write!(f, "tcp dport {p}"),
            Match::UdpDport(p) => write!(f, "udp dport {p}"),
            Match::EstablishedRelated => write!(f, "ct state established,related"),
            Match::IcmpType(t) => write!(f, "icmp type {t}"),
            Match::Icmpv6Type(t) => write!(f, "icmpv6 type {t}"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Accept => write!(f, "accept"),
            Action::Drop => write!(f, "drop"),
            Action::Return => write!(f, "return"),
            Action::RejectTcpReset => write!(f, "reject with tcp reset"),
            Action::RejectAdminProhibited => write!(f, "reject with icmpx admin-prohibited"),
            Action::Redirect(p) => write!(f, "redirect to :{p}"),
            Action::RecordSource(set) => {
                let ip = if set.key == KeyType::Ipv6Ether {
                    "ip6"
                } else {
                    "ip"
                };
                write!(f, "update @{} {{ {ip} saddr . ether saddr }}", set.name)
            }
        }
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            // `tcp dport` implies the protocol match: print it once, as nft does.
            if *m == Match::Tcp && self.matches.iter().any(|x| matches!(x, Match::TcpDport(_))) {
                continue;
            }
            write!(f, "{m} ")?;
        }
        write!(f, "{}", self.action)
    }
}

/// The table as an nft script (create-or-clear, then everything), for people to read. The
/// daemon installs the same description over netlink, not through this text.
pub fn ruleset_script(r: &Ruleset, allowed: &[(Mac, Duration)]) -> Result<String, FirewallError> {
    let rules = rules(r)?;
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    let macs = |list: &[Mac]| list.iter().map(Mac::to_string).collect::<Vec<_>>();
    let allowed_items: Vec<String> = allowed
        .iter()
        .filter(|(_, d)| d.as_secs() >= 1)
        .map(|(m, d)| format!("{m} timeout {}s", d.as_secs()))
        .collect();
    let garden = |v4: bool| -> Vec<String> {
        r.garden
            .iter()
            .filter(|(a, _)| a.is_ipv4() == v4)
            .map(|(a, l)| format!("{a}/{l}"))
            .collect()
    };
    for (set, items) in [
        (ALLOWED, allowed_items),
        (TRUSTED, macs(&r.trusted)),
        (BLOCKED, macs(&r.blocked)),
        (GARDEN4, garden(true)),
        (GARDEN6, garden(false)),
        (PORTAL4, vec![]),
        (PORTAL6, vec![]),
    ] {
        let _ = write!(s, "  set {} {{ type {};", set.name, set.key.nft_type());
        if let Some(d) = set.dynamic {
            let _ = write!(
                s,
                " size {}; flags dynamic,timeout; timeout {}s;",
                d.size, d.timeout_s
            );
        } else if set.timeout {
            s.push_str(" flags timeout;");
        }
        if set.interval {
            s.push_str(" flags interval;");
        }
        if !items.is_empty() {
            let _ = write!(s, " elements = {{ {} }};", items.join(", "));
        }
        s.push_str(" }\n");
    }
    for c in CHAIN_SPECS {
        let (ty, hook, base) = match c.hook {
            Hook::Prerouting => ("nat", "prerouting", "dstnat"),
            Hook::Forward => ("filter", "forward", "filter"),
            Hook::Input => ("filter", "input", "filter"),
        };
        let _ = writeln!(
            s,
            "  chain {} {{\n    type {ty} hook {hook} priority {base} - 5; policy accept;",
            c.name
        );
        for r in rules.iter().filter(|r| r.chain == c.name) {
            let _ = writeln!(s, "    {r}");
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    Ok(s)
}

/// A small ruleset for unit tests.
#[cfg(test)]
pub(crate) fn sample() -> Ruleset {
    Ruleset {
        guest_iface: "br-guest".into(),
        portal_port: 2050,
        https_port: None,
        trusted: vec![Mac([2, 0, 0, 0, 0, 1])],
        blocked: vec![],
        garden: vec![("192.0.2.0".parse().unwrap(), 24)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_builds_the_designed_table() {
        let s = ruleset_script(
            &sample(),
            &[(Mac([2, 0, 0, 0, 0, 9]), Duration::from_secs(90))],
        )
        .unwrap();
        assert!(s.starts_with("table inet wifipos\ndelete table inet wifipos\n"));
        assert!(s.contains("02:00:00:00:00:09 timeout 90s"));
        assert!(s.contains("set trusted { type ether_addr; elements = { 02:00:00:00:00:01 }; }"));
        assert!(s.contains("192.0.2.0/24"));
        assert!(s.contains("tcp dport 80 redirect to :2050"));
        assert!(s.contains("type nat hook prerouting priority dstnat - 5"));
        assert!(!s.contains(" fwd"), "fwd is an nft keyword");
    }

    #[test]
    fn every_chain_starts_by_letting_non_guest_traffic_go_and_ends_in_a_reject_or_redirect() {
        let rules = rules(&sample()).unwrap();
        for c in CHAIN_SPECS {
            let mine: Vec<_> = rules.iter().filter(|r| r.chain == c.name).collect();
            assert_eq!(mine[0].to_string(), "iifname != \"br-guest\" return");
            let last = mine.last().unwrap().action;
            assert!(mine
                .iter()
                .filter(|r| matches!(r.action, Action::RecordSource(_)))
                .all(|r| r.chain == "input"));
            assert!(matches!(
                last,
                Action::RejectAdminProhibited | Action::Redirect(2050)
            ));
        }
        assert_eq!(rule_counts(&rules), [6, 9, 18]);
    }

    #[test]
    fn blocked_comes_before_allowed_in_forward() {
        let rules = rules(&sample()).unwrap();
        let fwd: Vec<String> = rules
            .iter()
            .filter(|r| r.chain == "forward")
            .map(|r| r.to_string())
            .collect();
        let b = fwd.iter().position(|r| r == "ether saddr @blocked drop");
        let a = fwd.iter().position(|r| r == "ether saddr @allowed accept");
        assert!(b.unwrap() < a.unwrap());
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
                ..sample()
            };
            assert!(rules(&r).is_err(), "{bad}");
            assert!(ruleset_script(&r, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn garden_prefixes_merge_into_sorted_intervals() {
        let g: Vec<(IpAddr, u8)> = vec![
            ("10.0.1.0".parse().unwrap(), 24),
            ("10.0.0.0".parse().unwrap(), 24),
            ("10.0.0.77".parse().unwrap(), 32),
            ("192.0.2.9".parse().unwrap(), 24),
            ("2001:db8::".parse().unwrap(), 32),
        ];
        let v4 = garden_intervals(&g, true).unwrap();
        let ip = |s: &str| u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()));
        assert_eq!(
            v4,
            vec![
                Interval {
                    start: ip("10.0.0.0"),
                    end: Some(ip("10.0.2.0"))
                },
                Interval {
                    start: ip("192.0.2.0"),
                    end: Some(ip("192.0.3.0"))
                },
            ]
        );
        assert_eq!(garden_intervals(&g, false).unwrap().len(), 1);
        let all = garden_intervals(&[("0.0.0.0".parse().unwrap(), 0)], true).unwrap();
        assert_eq!(
            all,
            vec![Interval {
                start: 0,
                end: None
            }]
        );
        let top = garden_intervals(&[("255.255.255.255".parse().unwrap(), 32)], true).unwrap();
        assert_eq!(top[0].end, None);
        assert!(garden_intervals(&[("10.0.0.0".parse().unwrap(), 33)], true).is_err());
        let all6 = garden_intervals(&[("::".parse().unwrap(), 0)], false).unwrap();
        assert_eq!(
            all6,
            vec![Interval {
                start: 0,
                end: None
            }]
        );
    }
}
