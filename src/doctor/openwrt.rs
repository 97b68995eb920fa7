//! The checks `doctor` makes of OpenWrt's own config, pure: fw4's firewall (does the guest
//! zone let the portal in, and HTTPS; flow offloading), dnsmasq's DHCP (option 114, the
//! portal's name) and the network config that maps the guest device to its zone. Owns the
//! UCI reading these need. Not: the facts' gathering (`gather`), the other checks and the
//! verdict (`doctor`).

use super::{finding, Facts, Finding, Level};
use crate::config::uci::{Package, Section};
use crate::config::Config;

fn words(s: &Section, option: &str) -> Vec<String> {
    s.get(option)
        .map(|o| {
            o.values()
                .flat_map(|v| v.split_whitespace())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn one<'a>(s: &'a Section, option: &str) -> Option<&'a str> {
    s.get(option).and_then(|o| o.values().next())
}

/// The UCI network names (`config interface NAME`) whose device is `iface`.
pub fn networks_of(network: Option<&Package>, iface: &str) -> Vec<String> {
    let Some(n) = network else { return Vec::new() };
    n.sections
        .iter()
        .filter(|s| s.kind == "interface")
        .filter(|s| {
            one(s, "device") == Some(iface) || words(s, "ifname").iter().any(|w| w == iface)
        })
        .filter_map(|s| s.name.clone())
        .collect()
}

/// fw4's zone that holds the guest network (by network name or by device).
pub fn zone_of<'a>(fw: &'a Package, networks: &[String], iface: &str) -> Option<&'a Section> {
    fw.sections.iter().filter(|s| s.kind == "zone").find(|z| {
        words(z, "network").iter().any(|n| networks.contains(n))
            || words(z, "device").iter().any(|d| d == iface)
    })
}

fn covers_port(spec: &[String], port: u16) -> bool {
    spec.is_empty() || spec.iter().any(|p| {
        let (lo, hi) = p.split_once(['-', ':']).unwrap_or((p.as_str(), p.as_str()));
        matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(l), Ok(h)) if l <= port && port <= h)
    })
}

fn covers_tcp(proto: &[String]) -> bool {
    // fw4's default protocol is "tcp udp".
    proto.is_empty()
        || proto
            .iter()
            .any(|p| matches!(p.as_str(), "tcp" | "tcpudp" | "all" | "6"))
}

/// Why fw4 lets the portal port in from the zone `zone` (a rule's name, or the zone's own
/// input policy), or `None`.
pub fn portal_let_in(fw: &Package, zone: &Section, port: u16) -> Option<String> {
    let zname = one(zone, "name").unwrap_or("");
    if one(zone, "input").is_some_and(|p| p.eq_ignore_ascii_case("ACCEPT")) {
        return Some(format!("zone {zname} accepts all input"));
    }
    fw.sections
        .iter()
        .filter(|s| s.kind == "rule")
        .filter(|r| one(r, "enabled") != Some("0"))
        .filter(|r| one(r, "src").is_some_and(|s| s == zname || s == "*"))
        .filter(|r| one(r, "dest").is_none())
        .filter(|r| one(r, "target").is_some_and(|t| t.eq_ignore_ascii_case("ACCEPT")))
        .filter(|r| one(r, "family").is_none_or(|f| f != "ipv6"))
        .filter(|r| {
            ["src_ip", "src_mac", "ipset", "src_port"]
                .iter()
                .all(|o| r.get(o).is_none())
        })
        .filter(|r| covers_tcp(&words(r, "proto")))
        .find(|r| covers_port(&words(r, "dest_port"), port))
        .map(|r| {
            let name = one(r, "name")
                .map(str::to_owned)
                .or_else(|| r.name.clone())
                .unwrap_or_else(|| format!("the rule at line {}", r.line));
            format!("rule {name}")
        })
}

fn fw_fix(zone: &str, port: u16) -> String {
    format!(
        "/usr/libexec/wifipos-firewall add (it lets TCP port {port} and IPv6 neighbour discovery \
         in from zone {zone} as rules wifipos_portal and wifipos_nd, and reloads the firewall)"
    )
}

/// With HTTPS on, fw4 must let its port in from the guest zone too.
pub(super) fn firewall_https(f: &Facts, cfg: &Config) -> Option<Finding> {
    cfg.tls()?;
    let port = cfg.https_port;
    let fw = f.firewall.as_ref()?.as_ref().ok()?;
    let network = f.network.as_ref().and_then(|n| n.as_ref().ok());
    let nets = networks_of(network, &cfg.guest_iface);
    let zone = zone_of(fw, &nets, &cfg.guest_iface)?;
    let zname = one(zone, "name").unwrap_or("guest").to_owned();
    Some(match portal_let_in(fw, zone, port) {
        Some(why) => finding(
            "firewall-https",
            Level::Ok,
            format!("fw4 lets the HTTPS portal port {port} in from zone {zname} ({why})"),
            None,
        ),
        None => finding(
            "firewall-https",
            Level::Blocks,
            format!("fw4's zone {zname} refuses the HTTPS portal port {port}: phones cannot open the https portal"),
            Some(format!("/usr/libexec/wifipos-firewall add (with HTTPS configured it also lets TCP port {port} in as rule wifipos_https)")),
        ),
    })
}

/// With Disconnect/CoA on, fw4 must let UDP to its port in from the WAN zone (the zone that
/// holds network `wan`, else one named `wan`): `wifipos-firewall add` makes rule
/// `wifipos_coa` for the servers' addresses.
pub(super) fn firewall_coa(f: &Facts, cfg: &Config) -> Option<Finding> {
    let (port, _, _) = cfg.radius_coa()?;
    let fw = f.firewall.as_ref()?.as_ref().ok()?;
    let zones = || fw.sections.iter().filter(|s| s.kind == "zone");
    let wan = zones()
        .find(|z| words(z, "network").iter().any(|n| n == "wan"))
        .or_else(|| zones().find(|z| one(z, "name") == Some("wan")));
    let fix = Some(format!(
        "/usr/libexec/wifipos-firewall add (with option radius_coa_port it lets UDP port {port} in from the WAN zone, from the RADIUS servers' addresses only, as rule wifipos_coa)"
    ));
    let Some(wan) = wan else {
        return Some(finding(
            "firewall-coa",
            Level::Warn,
            "fw4 has no WAN zone (one holding network wan, or named wan): Disconnect/CoA requests from the RADIUS server may not reach the router".into(),
            fix,
        ));
    };
    let zname = one(wan, "name").unwrap_or("wan");
    let udp = |r: &&Section| {
        let p = words(r, "proto");
        p.is_empty()
            || p.iter()
                .any(|p| matches!(p.as_str(), "udp" | "tcpudp" | "all" | "17"))
    };
    let rule = fw
        .sections
        .iter()
        .filter(|s| s.kind == "rule")
        .filter(|r| one(r, "enabled") != Some("0"))
        .filter(|r| one(r, "src") == Some(zname) && one(r, "dest").is_none())
        .filter(|r| one(r, "target").is_some_and(|t| t.eq_ignore_ascii_case("ACCEPT")))
        .filter(udp)
        .find(|r| covers_port(&words(r, "dest_port"), port));
    Some(match rule {
        Some(r) => finding(
            "firewall-coa",
            Level::Ok,
            format!(
                "fw4 lets Disconnect/CoA (UDP port {port}) in from zone {zname} (rule {})",
                one(r, "name").or(r.name.as_deref()).unwrap_or("unnamed")
            ),
            None,
        ),
        None => finding(
            "firewall-coa",
            Level::Warn,
            format!("fw4's zone {zname} refuses UDP port {port}: Disconnect/CoA requests from the RADIUS server cannot reach the router (its kicks, revokes and new ends do not apply here)"),
            fix,
        ),
    })
}

pub(super) fn firewall(f: &Facts, cfg: &Config) -> Finding {
    let port = cfg.portal_port;
    let fw = match &f.firewall {
        None => {
            return finding(
                "firewall",
                Level::Note,
                format!(
                    "no {}/config/firewall: no fw4 here to let the portal port in",
                    f.etc
                ),
                None,
            )
        }
        Some(Err(e)) => {
            return finding(
                "firewall",
                Level::Blocks,
                format!("{}/config/firewall is not valid UCI: {e}", f.etc),
                Some("correct it (uci show firewall names the problem)".into()),
            )
        }
        Some(Ok(p)) => p,
    };
    let network = f.network.as_ref().and_then(|n| n.as_ref().ok());
    let nets = networks_of(network, &cfg.guest_iface);
    let Some(zone) = zone_of(fw, &nets, &cfg.guest_iface) else {
        let input = fw
            .sections
            .iter()
            .find(|s| s.kind == "defaults")
            .and_then(|d| one(d, "input"))
            .unwrap_or("REJECT");
        if input.eq_ignore_ascii_case("ACCEPT") {
            return finding(
                "firewall",
                Level::Ok,
                format!(
                    "{} is in no fw4 zone and the default input policy accepts",
                    cfg.guest_iface
                ),
                None,
            );
        }
        return finding(
            "firewall",
            Level::Blocks,
            format!(
                "{} (network {}) is in no fw4 zone: the default input policy {input} refuses the portal port {port}",
                cfg.guest_iface,
                if nets.is_empty() { "unknown".into() } else { nets.join(", ") }
            ),
            Some("add the guest network to a zone (OpenWrt's guest Wi-Fi guide: zone 'guest', input REJECT, forward to wan), then let the portal port in".into()),
        );
    };
    let zname = one(zone, "name").unwrap_or("guest").to_owned();
    match portal_let_in(fw, zone, port) {
        Some(why) => finding(
            "firewall",
            Level::Ok,
            format!("fw4 lets the portal port {port} in from zone {zname} ({why})"),
            None,
        ),
        None => finding(
            "firewall",
            Level::Blocks,
            format!(
                "fw4's zone {zname} refuses the portal port {port} (input {}, no ACCEPT rule for tcp/{port}): phones get no portal",
                one(zone, "input").unwrap_or("REJECT")
            ),
            Some(fw_fix(&zname, port)),
        ),
    }
}

pub(super) fn dhcp(f: &Facts, cfg: &Config) -> Finding {
    let Some(want) = cfg.captive_api_url() else {
        return dhcp_without_https(f);
    };
    let fix = |sec: &str| {
        Some(format!(
            "uci add_list dhcp.{sec}.dhcp_option='114,{want}'; uci commit dhcp; /etc/init.d/dnsmasq reload"
        ))
    };
    let pkg = match &f.dhcp {
        None => {
            return finding(
                "dhcp-114",
                Level::Note,
                format!("no {}/config/dhcp: DHCP option 114 not checked", f.etc),
                None,
            )
        }
        Some(Err(e)) => {
            return finding(
                "dhcp-114",
                Level::Warn,
                format!("{}/config/dhcp is not valid UCI: {e}", f.etc),
                None,
            )
        }
        Some(Ok(p)) => p,
    };
    let network = f.network.as_ref().and_then(|n| n.as_ref().ok());
    let mut nets = networks_of(network, &cfg.guest_iface);
    if nets.is_empty() {
        nets.push("guest".into());
    }
    let Some(sec) = pkg
        .sections
        .iter()
        .filter(|s| s.kind == "dhcp")
        .find(|s| one(s, "interface").is_some_and(|i| nets.iter().any(|n| n == i)))
    else {
        return finding(
            "dhcp-114",
            Level::Warn,
            format!(
                "no DHCP section for the guest network ({}) in {}/config/dhcp",
                nets.join(", "),
                f.etc
            ),
            Some(
                "set up DHCP on the guest network, then add option 114 (see docs/PACKAGING.md)"
                    .into(),
            ),
        );
    };
    let name = sec.name.clone().unwrap_or_else(|| nets[0].clone());
    let have: Vec<String> = sec
        .get("dhcp_option")
        .map(|o| o.values().map(str::to_owned).collect())
        .unwrap_or_default();
    let found = have.iter().find_map(|v| {
        v.strip_prefix("114,")
            .or_else(|| v.strip_prefix("option:114,"))
            .or_else(|| v.strip_prefix("option:captive-portal,"))
    });
    match found {
        Some(url) if url == want => finding(
            "dhcp-114",
            Level::Ok,
            format!("DHCP option 114 tells phones the portal's API ({want})"),
            None,
        ),
        Some(url) => finding(
            "dhcp-114",
            Level::Warn,
            format!("DHCP option 114 points at {url}, but the portal's API is {want}"),
            Some(format!("uci del_list dhcp.{name}.dhcp_option='114,{url}'; then: {}", fix(&name).unwrap_or_default())),
        ),
        None => finding(
            "dhcp-114",
            Level::Warn,
            "no DHCP option 114: phones find the portal only by their OS probes (slower, some show no sign-in prompt)".into(),
            fix(&name),
        ),
    }
}

/// Option 114 entries (`114,URL` and dnsmasq's spellings) in any DHCP section: (section, URL).
fn option_114(pkg: &Package) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sec in pkg.sections.iter().filter(|s| s.kind == "dhcp") {
        for v in sec.get("dhcp_option").into_iter().flat_map(|o| o.values()) {
            let url = v
                .strip_prefix("114,")
                .or_else(|| v.strip_prefix("option:114,"))
                .or_else(|| v.strip_prefix("option:captive-portal,"));
            if let Some(url) = url {
                let name = sec.name.clone().unwrap_or_else(|| "@dhcp[…]".into());
                out.push((name, url.to_owned()));
            }
        }
    }
    out
}

/// Without HTTPS no API URI may be advertised (phones ignore an http one, RFC 8908 §4).
fn dhcp_without_https(f: &Facts) -> Finding {
    let http: Vec<(String, String)> = match &f.dhcp {
        Some(Ok(p)) => option_114(p)
            .into_iter()
            .filter(|(_, u)| u.starts_with("http://"))
            .collect(),
        _ => Vec::new(),
    };
    match http.first() {
        Some((sec, url)) => finding(
            "dhcp-114",
            Level::Warn,
            format!("DHCP option 114 advertises {url}, but phones ignore an http:// captive-portal API (RFC 8908): set up HTTPS or remove it"),
            Some(format!("uci del_list dhcp.{sec}.dhcp_option='114,{url}'; uci commit dhcp; /etc/init.d/dnsmasq reload")),
        ),
        None => finding(
            "dhcp-114",
            Level::Note,
            "HTTPS is off (option portal_hostname, tls_cert, tls_key), so DHCP option 114 is not used; phones find the portal by their OS probes".into(),
            None,
        ),
    }
}

/// With HTTPS on, the guests' DNS (dnsmasq) must answer the portal's name with its address.
pub(super) fn dns_name(f: &Facts, cfg: &Config) -> Option<Finding> {
    let host = cfg.portal_hostname.as_deref()?;
    cfg.tls()?;
    let addr = cfg.portal_address;
    let want = format!("/{host}/{addr}");
    let fix = Some(format!(
        "uci add_list dhcp.@dnsmasq[0].address='{want}'; uci commit dhcp; /etc/init.d/dnsmasq reload"
    ));
    let pkg = match &f.dhcp {
        Some(Ok(p)) => p,
        _ => {
            return Some(finding(
                "dns-name",
                Level::Warn,
                format!(
                    "cannot read {}/config/dhcp: guests must resolve {host} to {addr}",
                    f.etc
                ),
                fix,
            ))
        }
    };
    let answers: Vec<String> = pkg
        .sections
        .iter()
        .filter(|s| s.kind == "dnsmasq")
        .flat_map(|s| s.get("address").into_iter().flat_map(|o| o.values()))
        .filter_map(|v| {
            let rest = v.strip_prefix('/')?;
            let (names, a) = rest.rsplit_once('/')?;
            names
                .split('/')
                .any(|n| n.eq_ignore_ascii_case(host))
                .then(|| a.to_owned())
        })
        .collect();
    Some(if answers.iter().any(|a| a.parse() == Ok(addr)) {
        finding(
            "dns-name",
            Level::Ok,
            format!("dnsmasq answers {host} with the portal address {addr}"),
            None,
        )
    } else if let Some(a) = answers.first() {
        finding(
            "dns-name",
            Level::Blocks,
            format!("dnsmasq answers {host} with {a}, but the portal is at {addr}: phones cannot open the https portal"),
            fix,
        )
    } else {
        finding(
            "dns-name",
            Level::Blocks,
            format!("dnsmasq does not answer {host} with the portal address {addr}: phones cannot open the https portal"),
            fix,
        )
    })
}

pub(super) fn offloading(f: &Facts) -> Finding {
    let on = f
        .firewall
        .as_ref()
        .and_then(|p| p.as_ref().ok())
        .and_then(|p| p.sections.iter().find(|s| s.kind == "defaults"))
        .is_some_and(|d| one(d, "flow_offloading") == Some("1"));
    match (&f.ctnetlink, on) {
        (Ok(n), true) => finding(
            "flow-offloading",
            Level::Ok,
            format!("flow offloading is on; handled: when a device's time ends wifiposd deletes its conntrack entries, which tears down offloaded flows (ctnetlink works, {n} entries)"),
            None,
        ),
        (Ok(_), false) => finding(
            "flow-offloading",
            Level::Ok,
            "flow offloading is off; ended devices' connections are closed over ctnetlink all the same".into(),
            None,
        ),
        (Err(e), true) => finding(
            "flow-offloading",
            Level::Warn,
            format!("flow offloading is on but conntrack cannot be changed over netlink ({e}): a device whose time ends keeps its open connections"),
            Some("opkg install kmod-nf-conntrack-netlink (or turn off flow offloading: uci set firewall.@defaults[0].flow_offloading=0)".into()),
        ),
        (Err(e), false) => finding(
            "flow-offloading",
            Level::Note,
            format!("flow offloading is off; conntrack is not reachable over netlink ({e}), so ended devices' connections end by the firewall alone"),
            Some("opkg install kmod-nf-conntrack-netlink".into()),
        ),
    }
}
