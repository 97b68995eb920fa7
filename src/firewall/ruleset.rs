//! The ruleset as data: which sets, chains and rules the `inet wifipos` table holds for a given
//! [`Ruleset`], and the walled garden as merged address intervals. Pure: no netlink, no I/O.
//! `netlink/install.rs` turns this description into one batch; [`ruleset_script`] renders it
//! as nft text for people (logs, docs, tests).

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
    /// Each element carries its own packet and byte counter (a set-level `counter`), which a
    /// matching lookup updates.
    pub counter: bool,
    /// The table the set lives in: `inet wifipos`, or `netdev wifipos` for download counting.
    pub family: Family,
}

/// The two tables of ours: `inet wifipos` (the portal) and `netdev wifipos` (download
/// counting on the guest interface's egress hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Netdev,
}

impl Family {
    /// The family as nft writes it.
    pub fn nft_name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Netdev => "netdev",
        }
    }
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
    counter: false,
    family: Family::Inet,
};
pub const TRUSTED: SetSpec = SetSpec {
    name: "trusted",
    id: 2,
    key: KeyType::Ether,
    timeout: false,
    interval: false,
    dynamic: None,
    counter: false,
    family: Family::Inet,
};
pub const BLOCKED: SetSpec = SetSpec {
    name: "blocked",
    id: 3,
    key: KeyType::Ether,
    timeout: false,
    interval: false,
    dynamic: None,
    counter: false,
    family: Family::Inet,
};
pub const GARDEN4: SetSpec = SetSpec {
    name: "garden4",
    id: 4,
    key: KeyType::Ipv4,
    timeout: false,
    interval: true,
    dynamic: None,
    counter: false,
    family: Family::Inet,
};
pub const GARDEN6: SetSpec = SetSpec {
    name: "garden6",
    id: 5,
    key: KeyType::Ipv6,
    timeout: false,
    interval: true,
    dynamic: None,
    counter: false,
    family: Family::Inet,
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
    counter: false,
    family: Family::Inet,
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
    counter: false,
    family: Family::Inet,
};
/// Paid devices' upload: `ether saddr` of forwarded guest packets, one counter per element.
/// Separate from [`ALLOWED`], whose elements are replaced to change their timeouts (which would
/// reset a counter); elements here are only ever added when absent, and removed.
pub const UP: SetSpec = SetSpec {
    name: "up",
    id: 8,
    key: KeyType::Ether,
    timeout: false,
    interval: false,
    dynamic: None,
    counter: true,
    family: Family::Inet,
};
/// The sets of `inet wifipos`.
pub const SETS: [SetSpec; 8] = [
    ALLOWED, TRUSTED, BLOCKED, GARDEN4, GARDEN6, PORTAL4, PORTAL6, UP,
];

/// Paid devices' download: `ether daddr` of frames leaving the guest interface, one counter
/// per element, in `netdev wifipos`. (In the inet forward hook a packet to a guest carries no
/// guest MAC yet; on the egress hook the frame has its Ethernet header.)
pub const DOWN: SetSpec = SetSpec {
    name: "down",
    id: 9,
    key: KeyType::Ether,
    timeout: false,
    interval: false,
    dynamic: None,
    counter: true,
    family: Family::Netdev,
};
/// The sets of `netdev wifipos`.
pub const NETDEV_SETS: [SetSpec; 1] = [DOWN];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Forward,
    Input,
    /// netdev egress of the guest interface (kernel 5.16 and later).
    Egress,
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
/// The base chain of `netdev wifipos`, on the guest interface's egress hook: counts what each
/// paid device downloads. Priority 0, policy accept: it never drops anything.
pub const DOWN_CHAIN: ChainSpec = ChainSpec {
    name: "down",
    hook: Hook::Egress,
    nat: false,
    priority: 0,
};

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
    /// `ether daddr @set` (only in the netdev egress chain; `meta iiftype ether` on the wire,
    /// as nft does).
    EtherDaddrIn(&'static str),
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
    /// No verdict: on to the next rule. With a lookup in a set with counters, the match
    /// updates the element's counter.
    Continue,
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
    // Counts what paid devices send (the element's counter; no verdict).
    out.push(rule(c, vec![Match::EtherSaddrIn(UP.name)], Continue));
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

/// The rules of `netdev wifipos`'s egress chain: count what paid devices receive.
pub fn egress_rules() -> Vec<RuleSpec> {
    vec![rule(
        &DOWN_CHAIN,
        vec![Match::EtherDaddrIn(DOWN.name)],
        Action::Continue,
    )]
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
            Match::EtherDaddrIn(s) => write!(f, "ether daddr @{s}"),
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
            Action::Continue => Ok(()),
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
            write!(f, "{m}")?;
            if self.action != Action::Continue || Some(m) != self.matches.last() {
                write!(f, " ")?;
            }
        }
        write!(f, "{}", self.action)
    }
}

/// The tables as an nft script (create-or-clear, then everything), for people to read: `inet
/// wifipos`, then `netdev wifipos` (download counting; the daemon leaves it out on kernels
/// without the egress hook). The daemon installs the same description over netlink, not
/// through this text.
pub fn ruleset_script(r: &Ruleset, allowed: &[(Mac, Duration)]) -> Result<String, FirewallError> {
    let rules = rules(r)?;
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    let macs = |list: &[Mac]| list.iter().map(Mac::to_string).collect::<Vec<_>>();
    let paid: Vec<&(Mac, Duration)> = allowed.iter().filter(|(_, d)| d.as_secs() >= 1).collect();
    let allowed_items: Vec<String> = paid
        .iter()
        .map(|(m, d)| format!("{m} timeout {}s", d.as_secs()))
        .collect();
    let counted: Vec<String> = paid.iter().map(|(m, _)| m.to_string()).collect();
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
        (UP, counted.clone()),
    ] {
        set_script(&mut s, &set, &items);
    }
    for c in CHAIN_SPECS {
        let (ty, hook, base) = match c.hook {
            Hook::Prerouting => ("nat", "prerouting", "dstnat"),
            Hook::Forward | Hook::Egress => ("filter", "forward", "filter"),
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
    let _ = write!(
        s,
        "table netdev {TABLE}\ndelete table netdev {TABLE}\ntable netdev {TABLE} {{\n"
    );
    set_script(&mut s, &DOWN, &counted);
    let _ = writeln!(
        s,
        "  chain {} {{\n    type filter hook egress device \"{}\" priority {}; policy accept;",
        DOWN_CHAIN.name, r.guest_iface, DOWN_CHAIN.priority
    );
    for r in egress_rules() {
        let _ = writeln!(s, "    {r}");
    }
    s.push_str("  }\n}\n");
    Ok(s)
}

/// One `set` line of the script.
fn set_script(s: &mut String, set: &SetSpec, items: &[String]) {
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
    if set.counter {
        s.push_str(" counter;");
    }
    if !items.is_empty() {
        let _ = write!(s, " elements = {{ {} }};", items.join(", "));
    }
    s.push_str(" }\n");
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
        assert!(
            s.contains("set up { type ether_addr; counter; elements = { 02:00:00:00:00:09 }; }")
        );
        assert!(s.contains("table netdev wifipos {\n  set down { type ether_addr; counter; elements = { 02:00:00:00:00:09 }; }"));
        assert!(s.contains("type filter hook egress device \"br-guest\" priority 0; policy accept;\n    ether daddr @down\n"));
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
        assert_eq!(rule_counts(&rules), [6, 10, 18]);
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
        let up = fwd.iter().position(|r| r == "ether saddr @up");
        let a = fwd.iter().position(|r| r == "ether saddr @allowed accept");
        // Blocked devices are not counted; paid ones are counted before they are let out.
        assert_eq!(up.unwrap(), b.unwrap() + 1);
        assert_eq!(a.unwrap(), up.unwrap() + 1);
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
